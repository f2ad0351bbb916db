"""File transfers: uploading the files of a directory (only those the organization
lacks, several at a time) and downloading an artifact version's files into a
directory (verified, resumable, never outside it).

`Client.log_artifact` and `Client.download` use these; the bytes move through the
server's FileService streams (files under `BATCH_FILE` bytes several to a
BatchUploadBlobs or BatchDownloadArtifactFiles call), or straight to object storage
through presigned URLs when the server's blob store hands them out.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from registry.v1 import file_service_pb2 as pb
from registry.v1 import resources_pb2 as r

from .channel import Stubs
from .errors import (
    FailedPreconditionError,
    NotFoundError,
    RegistryError,
    UnavailableError,
    from_rpc_error,
    invalid_argument,
)

CHUNK = 1 << 20  # bytes per upload message
HASH_CHUNK = 1 << 20
PUT_BLOCK = 8 << 20  # bytes read and sent at a time by a presigned PUT
FIND_BATCH = 1000  # digests per FindMissingBlobs call
BATCH_FILE = 1 << 20  # smaller files go in BatchUploadBlobs (BatchDownloadArtifactFiles)
BATCH_BYTES = 1 << 20  # calls of at most this many bytes (the server takes 4 MiB)
BATCH_BLOBS = 1000
PARTIAL_SUFFIX = ".partial"
WORKERS = 8

Progress = Callable[[int], None]  # told the number of bytes just moved


@dataclass
class Transfer:
    """What a transfer moved: files and bytes sent or received (skipped ones aside)."""

    files: int = 0
    bytes: int = 0
    skipped: int = 0  # present already (upload: stored; download: whole in dest)


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK):
            digest.update(chunk)
            if progress:
                progress(len(chunk))
    return f"sha256:{digest.hexdigest()}"


def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc


# --- upload ------------------------------------------------------------------------------


def _chunks(
    parent: str, entry: r.ManifestEntry, path: Path, progress: Progress | None
) -> Iterator[pb.UploadBlobRequest]:
    with path.open("rb") as f:
        first = True
        while True:
            data = f.read(CHUNK)
            if first:
                yield pb.UploadBlobRequest(
                    parent=parent, digest=entry.digest, size=entry.size, data=data
                )
                first = False
            elif data:
                yield pb.UploadBlobRequest(data=data)
            if progress and data:
                progress(len(data))
            if len(data) < CHUNK:
                return


def _file_range(path: Path, offset: int, size: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(offset)
        while size > 0 and (block := f.read(min(PUT_BLOCK, size))):
            size -= len(block)
            yield block


@contextlib.contextmanager
def _store_errors(what: str) -> Iterator[None]:
    """A presigned request's failure as the client's errors (so the command line exits
    as it does for a failed call): a refused URL (expired, or its signature no longer
    matches) FAILED_PRECONDITION (ask for new URLs), a missing object NOT_FOUND, a store
    that is down or answers 5xx UNAVAILABLE."""
    try:
        yield
    except urllib.error.HTTPError as err:
        message = f"{what}: the store answered HTTP {err.code} {err.reason}"
        if err.code == 404:
            raise NotFoundError(message, code=grpc.StatusCode.NOT_FOUND) from err
        if err.code in (400, 401, 403):
            raise FailedPreconditionError(
                message + " (the URL may have expired: ask for new ones)",
                code=grpc.StatusCode.FAILED_PRECONDITION,
            ) from err
        raise UnavailableError(message, code=grpc.StatusCode.UNAVAILABLE) from err
    except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
        raise UnavailableError(
            f"{what}: the store could not be reached ({err})", code=grpc.StatusCode.UNAVAILABLE
        ) from err


def put_part(part: pb.UploadPart, path: Path) -> str:
    """One presigned PUT of a part of `path` (the headers it names included), read from
    the file as it is sent (a part may be 5 GiB); its ETag."""
    body = _file_range(path, part.offset, part.size)
    request = urllib.request.Request(url=part.url, data=body, method="PUT")
    headers = [*part.headers.items(), ("Content-Type", "application/octet-stream")]
    for name, value in [*headers, ("Content-Length", str(part.size))]:
        request.add_header(name, value)
    with (
        _store_errors(f"uploading {path.name}"),
        urllib.request.urlopen(request, timeout=300) as response,
    ):
        return str(response.headers.get("ETag", ""))


def upload_file(
    stubs: Stubs,
    parent: str,
    entry: r.ManifestEntry,
    path: Path,
    presigned: bool,
    progress: Progress | None = None,
) -> None:
    """Uploads one file: streamed through the server, or PUT to presigned URLs."""
    if not presigned:
        _call(stubs.files.UploadBlob, _chunks(parent, entry, path, progress))
        return
    start = _call(
        stubs.files.StartBlobUpload,
        pb.StartBlobUploadRequest(parent=parent, digest=entry.digest, size=entry.size),
    )
    if start.existed:
        return
    etags = []
    for part in start.parts:
        etags.append(put_part(part, path))
        if progress:
            progress(part.size)
    _call(
        stubs.files.CompleteBlobUpload,
        pb.CompleteBlobUploadRequest(
            parent=parent,
            digest=entry.digest,
            size=entry.size,
            upload_id=start.upload_id,
            etags=etags if start.upload_id else [],
        ),
    )


T = TypeVar("T")


def batches(items: Sequence[T], size_of: Callable[[T], int]) -> Iterator[list[T]]:
    """Small files (`size_of` bytes each), grouped for BatchUploadBlobs (or
    BatchDownloadArtifactFiles) calls."""
    batch: list[T] = []
    size = 0
    for item in items:
        if batch and (size + size_of(item) > BATCH_BYTES or len(batch) == BATCH_BLOBS):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += size_of(item)
    if batch:
        yield batch


def upload_batch(
    stubs: Stubs,
    parent: str,
    root: Path,
    entries: Sequence[r.ManifestEntry],
    progress: Progress | None = None,
) -> None:
    """Uploads small files in one BatchUploadBlobs call (one at a time through
    UploadBlob on a server without it)."""
    blobs = [
        pb.BlobData(digest=e.digest, size=e.size, data=(root / e.path).read_bytes())
        for e in entries
    ]
    try:
        stubs.files.BatchUploadBlobs(pb.BatchUploadBlobsRequest(parent=parent, blobs=blobs))
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise from_rpc_error(exc) from exc
        for e in entries:
            upload_file(stubs, parent, e, root / e.path, False, progress)
        return
    if progress:
        progress(sum(e.size for e in entries))


def upload_files(
    stubs: Stubs,
    parent: str,
    root: Path,
    entries: Sequence[r.ManifestEntry],
    *,
    workers: int = WORKERS,
    progress: Progress | None = None,
) -> Transfer:
    """Uploads the files of `entries` (without `ref`, under `root`) the organization
    does not store yet, `workers` at a time."""
    first_path: dict[str, r.ManifestEntry] = {}
    for e in entries:
        if not e.ref:
            first_path.setdefault(e.digest, e)
    wanted = list(first_path.values())
    missing: list[r.ManifestEntry] = []
    presigned = False
    for i in range(0, len(wanted), FIND_BATCH):
        batch = wanted[i : i + FIND_BATCH]
        answer = _call(
            stubs.files.FindMissingBlobs,
            pb.FindMissingBlobsRequest(
                parent=parent,
                blobs=[pb.BlobRef(digest=e.digest, size=e.size) for e in batch],
            ),
        )
        presigned = answer.presigned
        missing += [first_path[b.digest] for b in answer.missing]
    report = Transfer(files=len(missing), skipped=len(wanted) - len(missing))
    report.bytes = sum(e.size for e in missing)
    small = [] if presigned else [e for e in missing if e.size < BATCH_FILE]
    large = [e for e in missing if presigned or e.size >= BATCH_FILE]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(upload_file, stubs, parent, e, root / e.path, presigned, progress)
            for e in large
        ]
        futures += [
            pool.submit(upload_batch, stubs, parent, root, batch, progress)
            for batch in batches(small, lambda e: e.size)
        ]
        for future in futures:
            future.result()
    return report


# --- download --------------------------------------------------------------------------


def safe_destination(dest: Path, path: str) -> Path:
    """Where the manifest path `path` goes under `dest`; refuses any path that would
    leave it (absolute, `..`, empty segments, NUL, a link out of `dest`)."""
    if not path or "\x00" in path or path.startswith("/") or "\\" in path:
        raise invalid_argument("manifest.path", f"{path[:200]!r} is not a safe relative path")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise invalid_argument("manifest.path", f"{path[:200]!r} is not a safe relative path")
    root = dest.resolve()
    out = root.joinpath(*parts)
    if not out.parent.resolve().is_relative_to(root):
        raise invalid_argument("manifest.path", f"{path[:200]!r} leads outside {str(dest)!r}")
    return out


def check_layout(paths: Sequence[str]) -> None:
    """Refuses paths that cannot all be written: one that is a directory of another
    (`a` and `a/b`), which would otherwise fail half-way with an OSError."""
    files = set(paths)
    for path in paths:
        parts = path.split("/")
        for end in range(1, len(parts)):
            if (directory := "/".join(parts[:end])) in files:
                raise invalid_argument(
                    "manifest.path",
                    f"{path[:200]!r} needs {directory[:200]!r} as a directory, "
                    "but the version has a file there",
                )


def _verify(path: Path, digest: str) -> bool:
    return sha256_file(path) == digest


def _present(entry: pb.DownloadUrl, out: Path) -> bool:
    """Whether `out` is the file already."""
    return out.is_file() and out.stat().st_size == entry.size and _verify(out, entry.digest)


def _partial(out: Path, size: int) -> tuple[Path, int]:
    """`out.partial` and how many bytes of it to keep (0 when it cannot be a prefix)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    offset = partial.stat().st_size if partial.is_file() else 0
    if offset > size:
        partial.unlink()
        offset = 0
    return partial, offset


def _receive(
    partial: Path,
    offset: int,
    out: Path,
    entry: pb.DownloadUrl,
    chunks: Iterable[bytes],
    progress: Progress | None,
) -> int:
    """Appends `chunks` to `partial` from `offset`, hashing as they arrive (what was
    there before is hashed first), and moves it to `out` when it is the file; the bytes
    received."""
    digest = hashlib.sha256()
    received = 0
    with partial.open("r+b" if offset else "wb") as f:
        while offset and (block := f.read(min(HASH_CHUNK, offset - f.tell()))):
            digest.update(block)
        f.truncate(offset)
        f.seek(offset)
        for data in chunks:
            f.write(data)
            digest.update(data)
            received += len(data)
            if progress:
                progress(len(data))
    if offset + received != entry.size or f"sha256:{digest.hexdigest()}" != entry.digest:
        partial.unlink()
        raise RegistryError(f"{entry.file}: the bytes received do not match {entry.digest}")
    os.replace(partial, out)
    return received


def _download_one(
    stubs: Stubs, version_path: str, entry: pb.DownloadUrl, out: Path, progress: Progress | None
) -> int:
    """Streams one file into `out` through `out.partial` (resumed when present)."""
    partial, offset = _partial(out, entry.size)
    stream = stubs.files.DownloadArtifactFile(
        pb.DownloadArtifactFileRequest(path=version_path, file=entry.file, offset=offset)
    )
    try:
        chunks = (data for message in stream if (data := message.data))  # one copy each
        return _receive(partial, offset, out, entry, chunks, progress)
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc


def download_batch(
    stubs: Stubs,
    version_path: str,
    targets: Sequence[tuple[pb.DownloadUrl, Path]],
    progress: Progress | None,
) -> list[int]:
    """Downloads small files in one BatchDownloadArtifactFiles call (one at a time
    through DownloadArtifactFile on a server without it), each verified before it is
    moved into place; the bytes received of each (-1: whole in dest already)."""
    todo = [(e, out) for e, out in targets if not _present(e, out)]
    got = [-1] * (len(targets) - len(todo))
    if not todo:
        return got
    request = pb.BatchDownloadArtifactFilesRequest(
        path=version_path, files=[e.file for e, _ in todo]
    )
    try:
        answer = stubs.files.BatchDownloadArtifactFiles(request)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.UNIMPLEMENTED:
            raise from_rpc_error(exc) from exc
        return got + [_download_one(stubs, version_path, e, out, progress) for e, out in todo]
    for (e, out), sent in zip(todo, answer.files, strict=True):
        partial, _ = _partial(out, e.size)
        got.append(_receive(partial, 0, out, e, [sent.data], progress))
    return got


def fetch_url(url: str, out: Path, entry: pb.DownloadUrl, progress: Progress | None) -> int:
    """GETs one file from a presigned URL into `out` through `out.partial` (resumed
    with a Range request when present)."""
    partial, offset = _partial(out, entry.size)
    if offset == entry.size:  # all there (a store answers 416 to a range past the end)
        return _receive(partial, offset, out, entry, [], progress)
    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    with (
        _store_errors(f"downloading {entry.file}"),
        urllib.request.urlopen(request, timeout=300) as response,
    ):
        if offset and response.status != 206:
            offset = 0  # the store sent the whole file
        chunks = iter(lambda: response.read(CHUNK), b"")
        return _receive(partial, offset, out, entry, chunks, progress)


def download_files(
    stubs: Stubs,
    listing: pb.GetDownloadUrlsResponse,
    dest: Path,
    *,
    workers: int = WORKERS,
    progress: Progress | None = None,
) -> Transfer:
    """Downloads the files of `listing` (GetDownloadUrls) into `dest` (from a store
    that streams, files under `BATCH_FILE` bytes several to a call)."""
    targets = [(u, safe_destination(dest, u.file)) for u in listing.urls]  # all checked first
    check_layout([u.file for u in listing.urls])
    report = Transfer()
    path = listing.canonical_path
    small = [t for t in targets if listing.streamed and t[0].size < BATCH_FILE]
    large = [t for t in targets if not listing.streamed or t[0].size >= BATCH_FILE]

    def one(entry: pb.DownloadUrl, out: Path) -> list[int]:
        if _present(entry, out):
            return [-1]
        if listing.streamed:
            return [_download_one(stubs, path, entry, out, progress)]
        return [fetch_url(entry.url, out, entry, progress)]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(one, *t) for t in large]
        futures += [
            pool.submit(download_batch, stubs, path, batch, progress)
            for batch in batches(small, lambda t: t[0].size)
        ]
        for future in futures:
            for got in future.result():
                if got < 0:
                    report.skipped += 1
                else:
                    report.files += 1
                    report.bytes += got
    return report
