"""FileService: proto <-> use cases in service/files.py, bytes through the blob store.

Uploads are hashed and written on worker threads, a chunk at a time (the event loop
only moves messages), and never held whole in memory; downloads read a chunk at a
time the same way. A batch of small files (BatchUploadBlobs) is one message: all its
blobs are checked, then the missing ones written and fsynced together, then recorded
in one transaction. So is a batch of small files downloaded (BatchDownloadArtifactFiles):
one resolve, then all its files read on one worker thread.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from typing import Any, TypeVar

import grpc
from sqlalchemy.orm import Session

from registry.v1 import file_service_pb2 as pb
from registry.v1 import file_service_pb2_grpc as pb_grpc

from ..domain.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from ..service import artifacts as svc
from ..service import files, lineage
from ..service.context import Principal
from ..service.resolve import ArtifactVersionInfo, Resolution
from ..storage.blobs import StoreFull
from ..storage.blobs.base import Mismatch, check_whole
from .app import App
from .interceptors import current_principal
from .settings import Settings

# Bytes per download message: 256 KiB streamed 1.6-3x faster than 1 MiB or 4 MiB on
# loopback, with less server CPU and memory (python -m bench.files --big-mib 256).
CHUNK = 256 << 10
SHA256 = files.SHA256
# BatchUploadBlobs: bytes of data and blobs per request (the server takes messages of
# up to 16 MiB; a few batches in flight stay well inside the memory budget).
BATCH_BYTES = 4 << 20
BATCH_BLOBS = 1000
STORE_FULL = "BLOB_STORE_FULL"
WRONG_TRANSFER = "BLOB_STORE_TRANSFER"
T = TypeVar("T")


def check_blob(digest: str, size: int, field: str, settings: Settings) -> str:
    """A declared file (sha256 only, within --max-file-size); its lowercase hex digest."""
    prefix = f"{field}." if field else ""
    digest = svc.check_digest(digest, f"{prefix}digest")
    if not digest.startswith(SHA256):
        raise InvalidArgument(f"{prefix}digest", "must be a sha256 digest")
    if size < 0:
        raise InvalidArgument(f"{prefix}size", "must not be negative")
    if size > settings.max_file_size:
        raise InvalidArgument(
            f"{prefix}size", f"{size} bytes is more than this server's {settings.max_file_size}"
        )
    return digest.removeprefix(SHA256)


def check_files_per_version(count: int, settings: Settings, field: str = "manifest") -> None:
    if count > settings.max_files_per_version:
        raise InvalidArgument(
            field, f"at most {settings.max_files_per_version} files per version (got {count})"
        )


def store_full(err: StoreFull) -> ResourceExhausted:
    return ResourceExhausted(
        f"the blob store has no room for this file ({str(err)[:200]}); "
        "downloads and other calls are still served",
        reason=STORE_FULL,
    )


async def settle(future: asyncio.Future[Any] | None) -> None:
    """Waits until `future` (work on a worker thread) is done; its outcome is dropped."""
    if future is not None:
        await asyncio.wait([future])
        if not future.cancelled():
            future.exception()


class FileServicer(pb_grpc.FileServiceServicer):
    def __init__(self, app: App) -> None:
        self.app = app

    def _streamed(self, rpc: str) -> None:
        if self.app.blobs.presigns:
            raise FailedPrecondition(
                f"this server's blob store moves bytes through presigned URLs; use {rpc}",
                reason=WRONG_TRANSFER,
            )

    async def _begin_upload(self, p: Principal, parent: str, digest: str) -> files.UploadStart:
        """Where the upload goes, whether the blob is stored already and whether the
        project's team holds it. A blob without a row needs no write: there is nothing
        gc could take while its bytes arrive."""
        start = await self.app.read(lambda s: files.upload_target(s, p, parent, digest))
        if not start.stored:
            return start
        org_id = start.target.org_id
        stored = await self.app.write(lambda s: files.touch_upload(s, org_id, digest))
        return files.UploadStart(start.target, stored, start.held and stored)

    async def FindMissingBlobs(
        self, request: pb.FindMissingBlobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.FindMissingBlobsResponse:
        p = current_principal()
        settings = self.app.settings
        check_files_per_version(len(request.blobs), settings, "blobs")
        digests = [
            SHA256 + check_blob(b.digest, b.size, f"blobs[{i}]", settings)
            for i, b in enumerate(request.blobs)
        ]
        missing = await self.app.write(lambda s: files.find_missing(s, p, request.parent, digests))
        return pb.FindMissingBlobsResponse(
            missing=[request.blobs[i] for i in missing], presigned=self.app.blobs.presigns
        )

    async def UploadBlob(
        self,
        requests: AsyncIterator[pb.UploadBlobRequest],
        context: grpc.aio.ServicerContext,
    ) -> pb.Blob:
        p = current_principal()
        first = await anext(requests, None)
        if first is None or not first.parent:
            raise InvalidArgument("parent", "the first message carries parent, digest and size")
        hex_digest = check_blob(first.digest, first.size, "", self.app.settings)
        digest, size = SHA256 + hex_digest, first.size
        self._streamed("StartBlobUpload")
        start = await self._begin_upload(p, first.parent, digest)
        if start.held:
            return pb.Blob(digest=digest, size=size, existed=True)
        target = start.target
        # Stored but not held: the bytes are verified all the same, then dropped
        writer = self.app.blobs.writer(target.org_id, hex_digest, size)  # opens nothing yet
        committed = False
        writing: asyncio.Future[None] | None = None  # the previous chunk, while one arrives
        try:
            message: pb.UploadBlobRequest | None = first
            while message is not None:
                if data := message.data:  # (each access copies the bytes)
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(self.app.run(writer.write, data))
                message = await anext(requests, None)
            if writing is not None:
                await writing
            await self.app.run(writer.commit, not start.stored)
            committed = True
        except Mismatch as err:
            raise InvalidArgument(err.field, f"{err}; nothing was kept") from None
        except StoreFull as err:
            raise store_full(err) from None
        finally:
            if not committed:
                # On a worker thread, after a write or commit still running there (the
                # writer's lock); shielded, so that it runs to its end even when this
                # call is cancelled (again) while it waits.
                aborting = asyncio.get_running_loop().run_in_executor(
                    self.app.executor, writer.abort
                )
                await asyncio.shield(aborting)
        await self.app.write(lambda s: files.record_upload(s, target, digest, size))
        return pb.Blob(digest=digest, size=size, existed=start.stored)

    async def BatchUploadBlobs(
        self, request: pb.BatchUploadBlobsRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchUploadBlobsResponse:
        p = current_principal()
        blobs = request.blobs
        if len(blobs) > BATCH_BLOBS:
            raise InvalidArgument("blobs", f"at most {BATCH_BLOBS} per call (got {len(blobs)})")
        sizes = [len(b.data) for b in blobs]
        total = sum(sizes)
        if total > BATCH_BYTES:
            raise InvalidArgument(
                "blobs",
                f"at most {BATCH_BYTES} bytes of data per call (got {total}); "
                "send larger files with UploadBlob",
            )
        hexes = []
        for i, (b, sent) in enumerate(zip(blobs, sizes, strict=True)):
            hexes.append(check_blob(b.digest, b.size, f"blobs[{i}]", self.app.settings))
            if sent != b.size:
                raise InvalidArgument(
                    f"blobs[{i}].size", f"{sent} bytes were sent, {b.size} declared"
                )
        self._streamed("StartBlobUpload")
        digests = [SHA256 + h for h in hexes]
        target, stored = await self.app.read(
            lambda s: files.batch_target(s, p, request.parent, digests)
        )
        skip = set(stored)
        while True:
            try:
                written = await self.app.run(self._put_batch, target.org_id, hexes, blobs, skip)
            except StoreFull as err:
                raise store_full(err) from None
            record = functools.partial(
                files.record_batch, target=target, written=written, stored=set(stored)
            )
            lost = await self.app.write(record)
            if not lost:
                break
            stored -= lost  # gc took them after they were found: their bytes go again
            skip = set(digests) - lost
        return pb.BatchUploadBlobsResponse(
            blobs=[
                pb.Blob(digest=d, size=b.size, existed=d in stored)
                for d, b in zip(digests, blobs, strict=True)
            ]
        )

    def _put_batch(
        self, org_id: int, hexes: list[str], blobs: Sequence[pb.BlobData], skip: set[str]
    ) -> dict[str, int]:
        """Checks every blob of a batch (those the organization stores too: the team
        proves it has their bytes), then writes those not in `skip`; digest -> size of
        those written."""
        todo = {}
        for i, (hex_digest, blob) in enumerate(zip(hexes, blobs, strict=True)):
            data = blob.data  # a copy of the message's bytes on each access
            try:
                check_whole(hex_digest, data)
            except Mismatch as err:
                raise InvalidArgument(f"blobs[{i}].digest", f"{err}; nothing was kept") from None
            if SHA256 + hex_digest not in skip:
                todo[hex_digest] = data
        self.app.blobs.put_many(org_id, list(todo.items()))
        return {SHA256 + h: len(data) for h, data in todo.items()}

    async def _resolve(
        self, p: Principal, path: str, run_id: str, pick: Callable[[ArtifactVersionInfo], T]
    ) -> tuple[Resolution, T]:
        """Resolves `path` as UseArtifactVersion does, and `pick`s what to send of the
        version (raising for a request it refuses). A `run_id` is recorded as a consumer
        in the same transaction, so a download refused by `pick` records no run."""
        if run_id:
            svc.check_run_id(run_id)

            def use(s: Session) -> tuple[Resolution, T]:
                resolution = lineage.use_artifact_version(s, p, path, "path", run_id)
                return resolution, pick(resolution.artifact_version)

            return await self.app.write(use)
        resolution = await self.app.query(lambda sql: files.resolve_for_download(sql, p, path))
        return resolution, pick(resolution.artifact_version)

    async def DownloadArtifactFile(
        self, request: pb.DownloadArtifactFileRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DownloadArtifactFileResponse]:
        p = current_principal()
        if request.offset < 0:
            raise InvalidArgument("offset", "must not be negative")

        def pick(version: ArtifactVersionInfo) -> files.FileToSend:
            wanted = files.file_of(version, request.file)
            if request.offset > wanted.size:
                raise InvalidArgument("offset", f"is past the file's {wanted.size} bytes")
            self._streamed("GetDownloadUrls")
            return wanted

        _, wanted = await self._resolve(p, request.path, request.run_id, pick)
        version = wanted.version
        header = pb.DownloadArtifactFileResponse(
            digest=SHA256 + wanted.hex_digest, size=wanted.size, artifact_version=version.name
        )
        if request.offset == wanted.size:
            yield header
            return
        first, rest = await self.app.run(
            self._open, version.org_id, wanted.hex_digest, request.offset
        )
        header.data = first
        if request.offset + len(first) >= wanted.size:  # a small file: one message
            rest.close()
            yield header
            return
        # the next chunk is read while this one is sent
        reading = asyncio.ensure_future(self.app.run(next, rest, None))
        try:
            yield header
            while (data := await reading) is not None:
                reading = asyncio.ensure_future(self.app.run(next, rest, None))
                yield pb.DownloadArtifactFileResponse(data=data)
        finally:
            await settle(reading)  # never close the file under a read still running
            rest.close()

    async def BatchDownloadArtifactFiles(
        self, request: pb.BatchDownloadArtifactFilesRequest, context: grpc.aio.ServicerContext
    ) -> pb.BatchDownloadArtifactFilesResponse:
        p = current_principal()
        names = list(request.files)
        if not names:
            raise InvalidArgument("files", "is required")
        if len(names) > BATCH_BLOBS:
            raise InvalidArgument("files", f"at most {BATCH_BLOBS} per call (got {len(names)})")

        def pick(version: ArtifactVersionInfo) -> list[files.FileToSend]:
            wanted = files.stored_files(version, names)
            total = sum(f.size for f in wanted)
            if total > BATCH_BYTES:
                raise InvalidArgument(
                    "files",
                    f"at most {BATCH_BYTES} bytes of data per call (got {total}); "
                    "fetch larger files with DownloadArtifactFile",
                )
            self._streamed("GetDownloadUrls")
            return wanted

        resolution, wanted = await self._resolve(p, request.path, request.run_id, pick)
        version = resolution.artifact_version
        datas = await self.app.run(self._read_batch, version.org_id, wanted)
        return pb.BatchDownloadArtifactFilesResponse(
            artifact_version=version.name,
            files=[
                pb.ArtifactFileData(
                    file=f.path, digest=SHA256 + f.hex_digest, size=f.size, data=data
                )
                for f, data in zip(wanted, datas, strict=True)
            ],
        )

    def _read_batch(self, org_id: int, wanted: Sequence[files.FileToSend]) -> list[bytes]:
        """The whole bytes of each of `wanted` (small files)."""
        out = []
        for f in wanted:
            try:
                out.append(b"".join(self.app.blobs.read(org_id, f.hex_digest, 0, max(f.size, 1))))
            except FileNotFoundError:
                raise NotFound(f"the bytes of sha256:{f.hex_digest[:16]}... are missing") from None
        return out

    def _open(self, org_id: int, hex_digest: str, offset: int) -> tuple[bytes, Generator[bytes]]:
        """The first chunk from `offset`, and the chunks after it."""
        chunks = self.app.blobs.read(org_id, hex_digest, offset, CHUNK)
        try:
            first = next(chunks)
        except (FileNotFoundError, StopIteration):
            raise NotFound(f"the bytes of sha256:{hex_digest[:16]}... are missing") from None

        def rest() -> Generator[bytes]:
            yield from chunks

        return first, rest()

    def _presigned(self, rpc: str) -> None:
        if not self.app.blobs.presigns:
            raise FailedPrecondition(
                f"this server's blob store streams bytes; use {rpc}", reason=WRONG_TRANSFER
            )

    async def _start(
        self, p: Principal, parent: str, digest: str, size: int
    ) -> tuple[str, files.UploadStart]:
        """(hex digest, where it goes and what is stored and held) of a presigned upload."""
        hex_digest = check_blob(digest, size, "", self.app.settings)
        self._presigned("UploadBlob")
        start = await self._begin_upload(p, parent, SHA256 + hex_digest)
        return hex_digest, start

    async def StartBlobUpload(
        self, request: pb.StartBlobUploadRequest, context: grpc.aio.ServicerContext
    ) -> pb.StartBlobUploadResponse:
        p = current_principal()
        hex_digest, start = await self._start(p, request.parent, request.digest, request.size)
        if start.held:
            return pb.StartBlobUploadResponse(existed=True)
        # Stored but not held: the team sends the bytes like a new file (existed stays
        # false, which tells it nothing); they are verified, then dropped
        store = self.app.blobs
        upload_id, parts = await self.app.run(
            store.upload_parts,
            start.target.org_id,
            hex_digest,
            request.size,
            self.app.settings.download_url_ttl,
        )
        return pb.StartBlobUploadResponse(
            upload_id=upload_id,
            parts=[
                pb.UploadPart(
                    url=part.url,
                    part_number=part.part_number,
                    offset=part.offset,
                    size=part.size,
                    headers=part.headers,
                )
                for part in parts
            ],
        )

    async def CompleteBlobUpload(
        self, request: pb.CompleteBlobUploadRequest, context: grpc.aio.ServicerContext
    ) -> pb.Blob:
        p = current_principal()
        hex_digest, start = await self._start(p, request.parent, request.digest, request.size)
        digest, size = SHA256 + hex_digest, request.size
        target = start.target
        store = self.app.blobs
        try:
            await self.app.run(
                store.complete_upload,
                target.org_id,
                hex_digest,
                size,
                request.upload_id,
                list(request.etags),
            )
        except Mismatch as err:
            if start.held:  # the team holds it already: this upload's bytes are not needed
                return pb.Blob(digest=digest, size=size, existed=True)
            raise InvalidArgument(err.field, f"{err}; nothing was kept") from None
        await self.app.write(lambda s: files.record_upload(s, target, digest, size))
        return pb.Blob(digest=digest, size=size, existed=start.stored)

    async def GetDownloadUrls(
        self, request: pb.GetDownloadUrlsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetDownloadUrlsResponse:
        p = current_principal()
        names = list(request.files)
        check_files_per_version(len(names), self.app.settings, "files")
        resolution, wanted = await self._resolve(
            p, request.path, request.run_id, lambda version: files.stored_files(version, names)
        )
        version = resolution.artifact_version
        store = self.app.blobs
        ttl = self.app.settings.download_url_ttl
        urls = [
            pb.DownloadUrl(file=f.path, digest=SHA256 + f.hex_digest, size=f.size) for f in wanted
        ]
        if store.presigns:
            signed = await self.app.run(
                lambda: [store.download_url(version.org_id, f.hex_digest, ttl) for f in wanted]
            )
            for url, link in zip(urls, signed, strict=True):
                url.url = link
        return pb.GetDownloadUrlsResponse(
            artifact_version=version.name,
            canonical_path=resolution.canonical_path,
            urls=urls,
            ttl_seconds=int(ttl) if store.presigns else 0,
            streamed=not store.presigns,
        )
