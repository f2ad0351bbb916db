"""Content-addressed file storage: the bytes behind manifest entries.

One interface (`base.BlobStore`), chosen with `registry-server serve --blob-store`:

    file://DIR             files under DIR (`file.FileBlobStore`); the default is
                           `registry-blobs` beside the SQLite file
    s3://BUCKET/PREFIX     an S3-compatible object store (`s3.S3BlobStore`)

Blobs are keyed by organization and sha256 digest; which ones exist is recorded in
the `blobs` table (storage/queries/blobs.py), never inferred from the store.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from ..db import Database
from .base import BlobStore, BlobWriter, StoreFull
from .checksums import S3Checksums, checksums_mode

__all__ = [
    "BlobStore",
    "BlobWriter",
    "S3Checksums",
    "StoreFull",
    "default_location",
    "open_store",
]


def default_location(db: Database) -> str:
    """`registry-blobs` beside the SQLite file; in the working directory otherwise."""
    database = make_url(db.url).database if db.is_sqlite else None
    if database and database != ":memory:":
        return (Path(database).resolve().parent / "registry-blobs").as_uri()
    return (Path.cwd() / "registry-blobs").as_uri()


def open_store(location: str, s3_checksums: str = S3Checksums.read_back) -> BlobStore:
    """The store a `--blob-store` value names; an s3:// one trusts the store's checksums
    as `s3_checksums` says (`auto` probes the store here)."""
    checksums = checksums_mode(s3_checksums)
    if location.startswith("file://"):
        from .file import FileBlobStore

        return FileBlobStore(Path(location.removeprefix("file://")))
    if location.startswith("s3://"):
        from .s3 import S3BlobStore

        return S3BlobStore.from_location(location, checksums)
    raise ValueError(f"--blob-store must be file://DIR or s3://BUCKET/PREFIX (got {location!r})")
