"""Backups of a SQLite database (`registry-server backup` / `restore`).

A backup is SQLite's online backup of the whole file, page by page, into a new file:
a consistent snapshot taken while servers, the write child and the migration runner
keep writing (each step copies a few hundred pages and lets writers in between). A
restore copies a backup back into the database the servers use, which must not be
served meanwhile, then brings its schema up to date. PostgreSQL has pg_dump and
pg_restore for both (README, Backups).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import make_url

from ..domain.errors import FailedPrecondition, InvalidArgument
from .db import normalize_url
from .migrate import upgrade

PAGES_PER_STEP = 256


def _sqlite_file(url: str, field: str) -> Path:
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite":
        raise FailedPrecondition(
            "backup and restore copy SQLite files; for PostgreSQL use pg_dump and "
            "pg_restore (README, Backups)",
            reason="NOT_SQLITE",
        )
    if not parsed.database or parsed.database == ":memory:":
        raise InvalidArgument(field, "names no database file")
    return Path(parsed.database)


def _copy(source: Path, destination: Path) -> int:
    """SQLite's online backup of `source` into `destination`; the pages copied."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    try:
        dst = sqlite3.connect(destination)
        try:
            src.backup(dst, pages=PAGES_PER_STEP)
            pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
            dst.execute("PRAGMA journal_mode=WAL")
        finally:
            dst.close()
    finally:
        src.close()
    return pages


def backup(url: str, destination: Path) -> int:
    """Writes a snapshot of the database at `url` to `destination` (a new file)."""
    source = _sqlite_file(url, "database_url")
    if not source.exists():
        raise FailedPrecondition(f"{source} does not exist", reason="NO_DATABASE")
    if destination.exists():
        raise FailedPrecondition(
            f"{destination} exists already; a backup goes into a new file", reason="EXISTS"
        )
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    pages = _copy(source, partial)
    partial.rename(destination)  # never a half-written backup under the final name
    return pages


def restore(source: Path, url: str, *, force: bool = False) -> None:
    """Replaces the database at `url` with the backup `source` and upgrades its schema."""
    target = _sqlite_file(url, "database_url")
    if not source.exists():
        raise FailedPrecondition(f"{source} does not exist", reason="NO_BACKUP")
    if target.exists() and target.stat().st_size > 0 and not force:
        raise FailedPrecondition(
            f"{target} already holds a database; stop the servers and add --force to replace it",
            reason="EXISTS",
        )
    for leftover in (target.with_name(target.name + suffix) for suffix in ("-wal", "-shm")):
        leftover.unlink(missing_ok=True)
    _copy(source, target)
    upgrade(f"sqlite:///{target}")
