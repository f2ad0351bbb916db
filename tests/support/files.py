"""File contents through the FileService, as a client sends and fetches them: the
blob store the test servers use, uploads of bytes, manifest entries for them and
downloads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from registry.v1 import file_service_pb2 as fpb
from registry.v1 import resources_pb2 as r

from .world import Person

CHUNK = 1 << 20


def blob_store_for_tests(directory: Path) -> str:
    """The blob store of the suite's servers: a directory of the session."""
    return directory.as_uri()


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def entry(path: str, data: bytes) -> r.ManifestEntry:
    return r.ManifestEntry(path=path, digest=digest_of(data), size=len(data))


def chunks(
    parent: str, data: bytes, *, digest: str = "", size: int | None = None
) -> Iterator[fpb.UploadBlobRequest]:
    """UploadBlob's messages for `data` (declaring `digest` and `size` when given)."""
    first = fpb.UploadBlobRequest(
        parent=parent,
        digest=digest or digest_of(data),
        size=len(data) if size is None else size,
        data=data[:CHUNK],
    )
    yield first
    for i in range(CHUNK, len(data), CHUNK):
        yield fpb.UploadBlobRequest(data=data[i : i + CHUNK])


def upload(person: Person, parent: str, data: bytes) -> fpb.Blob:
    return person.stubs.files.UploadBlob(chunks(parent, data))


def download(person: Person, path: str, file: str, offset: int = 0, run_id: str = "") -> bytes:
    stream = person.stubs.files.DownloadArtifactFile(
        fpb.DownloadArtifactFileRequest(path=path, file=file, offset=offset, run_id=run_id)
    )
    return b"".join(message.data for message in stream)


def missing(person: Person, parent: str, *blobs: bytes) -> list[str]:
    answer = person.stubs.files.FindMissingBlobs(
        fpb.FindMissingBlobsRequest(
            parent=parent, blobs=[fpb.BlobRef(digest=digest_of(b), size=len(b)) for b in blobs]
        )
    )
    return [b.digest for b in answer.missing]
