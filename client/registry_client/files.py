"""File transfers: uploading the files of a directory (only those the organization
lacks, several at a time) and downloading an artifact version's files into a
directory (verified, resumable, never outside it).

`Client.log_artifact` and `Client.download` use these; the bytes move through the
server's FileService streams, or straight to object storage through presigned URLs
when the server's blob store hands them out.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from registry.v1 import file_service_pb2 as pb
from registry.v1 import resources_pb2 as r

from .channel import Stubs
from .errors import RegistryError, from_rpc_error, invalid_argument

CHUNK = 1 << 20  # bytes per upload message
HASH_CHUNK = 1 << 20
FIND_BATCH = 1000  # digests per FindMissingBlobs call
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


def put_part(part: pb.UploadPart, path: Path) -> str:
    """One presigned PUT of a part of `path` (the headers it names included); its ETag."""
    with path.open("rb") as f:
        f.seek(part.offset)
        body = f.read(part.size)
    request = urllib.request.Request(url=part.url, data=body, method="PUT")
    for name, value in [*part.headers.items(), ("Content-Type", "application/octet-stream")]:
        request.add_header(name, value)
    with urllib.request.urlopen(request, timeout=300) as response:
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
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [
            pool.submit(upload_file, stubs, parent, e, root / e.path, presigned, progress)
            for e in missing
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


def _verify(path: Path, digest: str) -> bool:
    return sha256_file(path) == digest


def _finish(partial: Path, out: Path, entry: pb.DownloadUrl) -> None:
    """Moves a verified download into place; drops it when it is not the file."""
    if partial.stat().st_size != entry.size or not _verify(partial, entry.digest):
        partial.unlink()
        raise RegistryError(f"{entry.file}: the bytes received do not match {entry.digest}")
    os.replace(partial, out)


def _download_one(
    stubs: Stubs, version_path: str, entry: pb.DownloadUrl, out: Path, progress: Progress | None
) -> int:
    """Fetches one file into `out` through `out.partial` (resumed when present);
    the bytes received."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    offset = partial.stat().st_size if partial.is_file() else 0
    if offset > entry.size:
        partial.unlink()
        offset = 0
    received = 0
    stream = stubs.files.DownloadArtifactFile(
        pb.DownloadArtifactFileRequest(path=version_path, file=entry.file, offset=offset)
    )
    try:
        with partial.open("ab") as f:
            for message in stream:
                if message.data:
                    f.write(message.data)
                    received += len(message.data)
                    if progress:
                        progress(len(message.data))
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from exc
    _finish(partial, out, entry)
    return received


def fetch_url(url: str, out: Path, entry: pb.DownloadUrl, progress: Progress | None) -> int:
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    offset = partial.stat().st_size if partial.is_file() else 0
    if offset >= entry.size:
        partial.unlink(missing_ok=True)
        offset = 0
    request = urllib.request.Request(url)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    received = 0
    with urllib.request.urlopen(request, timeout=300) as response, partial.open("ab") as f:
        if offset and response.status != 206:
            f.truncate(0)
        while data := response.read(CHUNK):
            f.write(data)
            received += len(data)
            if progress:
                progress(len(data))
    _finish(partial, out, entry)
    return received


def download_files(
    stubs: Stubs,
    listing: pb.GetDownloadUrlsResponse,
    dest: Path,
    *,
    workers: int = WORKERS,
    progress: Progress | None = None,
) -> Transfer:
    """Downloads the files of `listing` (GetDownloadUrls) into `dest`."""
    targets = [(u, safe_destination(dest, u.file)) for u in listing.urls]  # all checked first
    report = Transfer()

    def one(entry: pb.DownloadUrl, out: Path) -> int:
        if out.is_file() and out.stat().st_size == entry.size and _verify(out, entry.digest):
            return -1
        if listing.streamed:
            return _download_one(stubs, listing.canonical_path, entry, out, progress)
        return fetch_url(entry.url, out, entry, progress)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for got in pool.map(lambda t: one(*t), targets):
            if got < 0:
                report.skipped += 1
            else:
                report.files += 1
                report.bytes += got
    return report
