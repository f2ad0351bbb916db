"""The blob store interface: what the file use cases (service/files.py) need of a store.

Every method blocks; the servicers call them on worker threads. A blob's key is its
organization and its sha256 hex digest; a store never trusts what it is given: a
`BlobWriter` hashes and counts every byte and refuses to keep a blob whose digest or
size differs from the declared one.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


class StoreFull(Exception):
    """The store has no room for the blob (ENOSPC, quota)."""


class Mismatch(Exception):
    """What was written is not what was declared."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PresignedPart:
    url: str
    part_number: int  # 0: a single PUT of the whole blob
    offset: int
    size: int
    headers: dict[str, str]  # the PUT must carry them (signed)


class BlobWriter(ABC):
    """One upload: `write` the chunks, then `commit` (verified) or `abort`."""

    def __init__(self, hex_digest: str, size: int) -> None:
        self.hex_digest = hex_digest
        self.size = size
        self.received = 0
        self._hash = hashlib.sha256()

    def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.size:
            raise Mismatch("size", f"more than the declared {self.size} bytes were sent")
        self._hash.update(chunk)
        self._write(chunk)

    def verify(self) -> None:
        if self.received != self.size:
            raise Mismatch("size", f"{self.received} bytes were sent, {self.size} declared")
        got = self._hash.hexdigest()
        if got != self.hex_digest:
            raise Mismatch("digest", f"the bytes sent hash to sha256:{got[:16]}...")

    def commit(self, replace: bool = True) -> None:
        """Verifies, then makes the blob visible under its digest (atomically). With
        `replace` False (the organization stores the blob already) a blob already
        under its digest is left as it is and the bytes written are dropped: the
        stored copy is never written over, even with bytes that verified."""
        try:
            self.verify()
            self._commit(replace)
        except BaseException:
            self.abort()
            raise

    @abstractmethod
    def _write(self, chunk: bytes) -> None: ...

    @abstractmethod
    def _commit(self, replace: bool) -> None: ...

    @abstractmethod
    def abort(self) -> None:
        """Drops what was written (idempotent)."""


def check_whole(hex_digest: str, data: bytes) -> None:
    """`Mismatch` unless `data` hashes to `hex_digest`."""
    got = hashlib.sha256(data).hexdigest()
    if got != hex_digest:
        raise Mismatch("digest", f"the bytes sent hash to sha256:{got[:16]}...")


class BlobStore(ABC):
    kind: str  # "file" or "s3"
    # Whether clients move the bytes themselves (presigned URLs) instead of streaming.
    presigns: bool = False

    @property
    @abstractmethod
    def location(self) -> str:
        """What `--blob-store` names it (no credentials)."""

    @abstractmethod
    def writer(self, org_id: int, hex_digest: str, size: int) -> BlobWriter: ...

    def put_many(self, org_id: int, blobs: Sequence[tuple[str, bytes]]) -> None:
        """Keeps whole blobs, (hex digest, bytes) each, that `check_whole` passed."""
        for hex_digest, data in blobs:
            writer = self.writer(org_id, hex_digest, len(data))
            try:
                writer.write(data)
            except BaseException:
                writer.abort()
                raise
            writer.commit()

    @abstractmethod
    def read(self, org_id: int, hex_digest: str, offset: int, chunk: int) -> Iterator[bytes]:
        """The blob's bytes from `offset`, in chunks of at most `chunk` bytes."""

    @abstractmethod
    def exists(self, org_id: int, hex_digest: str) -> bool: ...

    @abstractmethod
    def delete(self, org_id: int, hex_digest: str) -> None:
        """Removes the blob; nothing happens when it is not there."""

    def remove_stale_partials(self, older_than: float) -> int:
        """Removes uploads left unfinished (a killed client or server) that started more
        than `older_than` seconds ago; the number removed."""
        return 0

    # --- presigned transfers (stores with `presigns`) ---

    def upload_parts(
        self, org_id: int, hex_digest: str, size: int, ttl: float
    ) -> tuple[str, list[PresignedPart]]:
        raise NotImplementedError

    def complete_upload(
        self, org_id: int, hex_digest: str, size: int, upload_id: str, etags: list[str]
    ) -> None:
        """Verifies a presigned upload and puts it under its digest unless a blob is
        there already (never written over); `Mismatch` when it is not the declared blob."""
        raise NotImplementedError

    def download_url(self, org_id: int, hex_digest: str, ttl: float) -> str:
        raise NotImplementedError
