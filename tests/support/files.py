"""File contents through the FileService, as a client sends and fetches them: the
blob store the test servers use, uploads of bytes, manifest entries for them and
downloads, through the session server or another one (`file_server`, a file:// store
whatever the session's)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import select

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import file_service_pb2 as fpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_client.errors import RegistryError
from registry_client.files import fetch_url, upload_file
from registry_server.storage import models as m

from .s3 import moto_server
from .servers import ServerThread, database_kind
from .world import Person, World

CHUNK = 1 << 20


@contextlib.contextmanager
def blob_store_for_tests(directory: Path) -> Iterator[str]:
    """The blob store of the suite's servers: a directory of the session with SQLite,
    moto's S3-protocol server with PostgreSQL (REGISTRY_TEST_BLOB_STORE=file|s3 picks
    one whatever the database)."""
    kind = os.environ.get("REGISTRY_TEST_BLOB_STORE") or (
        "s3" if database_kind() == "postgres" else "file"
    )
    if kind == "s3":
        with moto_server() as location:
            yield location
    else:
        yield directory.as_uri()


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


def presigned(person: Person, parent: str) -> bool:
    """Whether the server's store takes uploads through presigned URLs."""
    return bool(
        person.stubs.files.FindMissingBlobs(fpb.FindMissingBlobsRequest(parent=parent)).presigned
    )


def upload(person: Person, parent: str, data: bytes) -> None:
    """Uploads `data` as the client does, whichever way the server's store takes it."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "blob"
        path.write_bytes(data)
        try:
            upload_file(person.stubs, parent, entry("blob", data), path, presigned(person, parent))
        except RegistryError as err:  # the call's own error, as the stubs raise it
            raise err.__cause__ or err from None


def download(person: Person, path: str, file: str, offset: int = 0, run_id: str = "") -> bytes:
    """A file's bytes from `offset`, as the client fetches them from this store."""
    listing = person.stubs.files.GetDownloadUrls(
        fpb.GetDownloadUrlsRequest(path=path, files=[file], run_id=run_id)
    )
    if listing.streamed:
        stream = person.stubs.files.DownloadArtifactFile(
            fpb.DownloadArtifactFileRequest(path=path, file=file, offset=offset)
        )
        return b"".join(message.data for message in stream)
    (url,) = listing.urls
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "file"
        fetch_url(url.url, out, url, None)
        return out.read_bytes()[offset:]


def missing(person: Person, parent: str, *blobs: bytes) -> list[str]:
    answer = person.stubs.files.FindMissingBlobs(
        fpb.FindMissingBlobsRequest(
            parent=parent, blobs=[fpb.BlobRef(digest=digest_of(b), size=len(b)) for b in blobs]
        )
    )
    return [b.digest for b in answer.missing]


def stubs_of(server: ServerThread, person: Person) -> Stubs:
    return Stubs.on(open_channel(server.target, person.key))


def log_files(
    person: Person, parent: str, files: dict[str, bytes], **kw: object
) -> r.ArtifactVersion:
    for data in files.values():
        upload(person, parent, data)
    return person.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=parent,
            artifact_id=str(kw.get("artifact", "weights")),
            type="model",
            manifest=[entry(path, data) for path, data in files.items()],
        )
    )


def log_on(
    server: ServerThread, person: Person, parent: str, files: dict[str, bytes], **refs: str
) -> r.ArtifactVersion:
    """A version of `files` (and reference entries `refs`: path -> ref) logged through
    `server`, each file uploaded in a batch of its own."""
    stubs = stubs_of(server, person)
    for data in files.values():
        stubs.files.BatchUploadBlobs(batch(parent, data))
    manifest = [entry(path, data) for path, data in files.items()]
    for path, ref in refs.items():
        manifest.append(entry(path, b"elsewhere"))
        manifest[-1].ref = ref
    return stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=parent, artifact_id="batch", type="model", manifest=manifest
        )
    )


def batch(parent: str, *blobs: bytes) -> fpb.BatchUploadBlobsRequest:
    return fpb.BatchUploadBlobsRequest(
        parent=parent,
        blobs=[fpb.BlobData(digest=digest_of(b), size=len(b), data=b) for b in blobs],
    )


def fetch(path: str, *files: str, run_id: str = "") -> fpb.BatchDownloadArtifactFilesRequest:
    return fpb.BatchDownloadArtifactFilesRequest(path=path, files=files, run_id=run_id)


def org_of(server: ServerThread, world: World) -> int:
    with server.app.db.read() as s:
        return s.execute(
            select(m.Organization.id).where(m.Organization.name == world.org)
        ).scalar_one()


def kept(server: ServerThread, world: World, data: bytes) -> bool:
    """Whether the store holds `data` under its name for the world's organization."""
    return server.app.blobs.exists(org_of(server, world), digest_of(data).removeprefix("sha256:"))


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    """Writes `files` (relative path -> bytes) under `root`; `root`."""
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root
