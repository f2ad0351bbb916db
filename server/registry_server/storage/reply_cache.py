"""Serialized replies of the hot reads, kept until the next commit to the database.

The interceptor (`api/interceptors.py`) keeps the replies of a few read-only RPCs
(`KEPT_METHODS`) under the call's method, API key and request bytes, and answers the
same call from here before it authenticates or parses anything.

A `ReplyCache` asks a commit clock for a version that changes with every commit to the
database, by any connection of any process, and empties itself whenever the version
moves; while the clock has no version, nothing is kept and nothing answered. A reply
computed while a commit landed is not kept (`store` asks the clock again). Only the
clock differs between the databases:

- SQLite (`FileCommitClock`): every commit to a file in WAL mode rewrites the wal-index
  header at the start of the `-shm` file, which every connection maps into memory
  (https://www.sqlite.org/walformat.html): its change counter, the last valid frame
  and their checksum. While those 48 bytes stay the same every answer the server gave
  is still the answer, so a hit costs a 48-byte comparison in a mapping of that file
  and a dict lookup. Where the file cannot be mapped (an in-memory database, another
  journal mode), the check is `PRAGMA data_version`, which changes whenever another
  connection commits. It is the slower of the two under load: the driver releases the
  interpreter lock for the statement, and the event loop's thread then waits to get it
  back. Once a second the mapped header is checked against it; should the pragma see a
  commit that the header did not (the mapping no longer the file's), the cache says so
  in the log and uses the pragma from then on.
- PostgreSQL (`storage.commits.CommitListener`): the replica's LISTEN connection, whose
  version moves with every commit notification (and with this replica's own commits);
  none while it is not connected. A call that carries a commit number the replica has
  not heard of yet gets no version either: it is answered from the database.

Keys name the call completely (method, API key, request), so an answer is only given
back to the key it was computed for, after that key authenticated; a revoked key or a
changed grant is a commit, which empties the cache. Entries are bounded in number and
by their serialized size (the oldest go first); an answer larger than
`max_entry_bytes` is never kept.
"""

from __future__ import annotations

import logging
import mmap
import os
import threading
import time
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from typing import Any, Protocol

log = logging.getLogger(__name__)

WAL_INDEX_HEADER_BYTES = 48  # the first of the two copies of the wal-index header
CROSS_CHECK_SECONDS = 1.0


def data_version(conn: Any) -> int:
    cursor = conn.cursor()
    try:
        cursor.execute("PRAGMA data_version")
        version: int = cursor.fetchone()[0]
        return version
    finally:
        cursor.close()


# The wal-index headers this process maps, by the -shm file's (device, inode), and the
# descriptors they were mapped from. Neither is ever closed: closing any descriptor of a
# file releases every POSIX lock this process holds on it, and this process's SQLite
# connections hold theirs on the -shm file (among them the one telling other processes
# that the wal-index is in use; without it the next process to open the database, a
# restarted write child say, would rebuild the wal-index under this one's feet).
_FDS: dict[tuple[int, int], int] = {}
_MAPS: dict[tuple[int, int], mmap.mmap] = {}
_MAPPED_LOCK = threading.Lock()


def _mapped_header(shm_path: str) -> mmap.mmap:
    """The first bytes of `shm_path` mapped read-only, once per process and file.
    FileNotFoundError: no such file yet; ValueError: not sized yet."""
    with _MAPPED_LOCK:
        st = os.stat(shm_path)
        key = (st.st_dev, st.st_ino)
        mapped = _MAPS.get(key)
        if mapped is not None:
            return mapped
        if key not in _FDS:
            fd = os.open(shm_path, os.O_RDONLY)
            opened = os.fstat(fd)
            key = (opened.st_dev, opened.st_ino)  # the file opened, were it replaced since
            _FDS.setdefault(key, fd)  # (a second descriptor of a file stays open too)
        mapped = mmap.mmap(_FDS[key], WAL_INDEX_HEADER_BYTES, access=mmap.ACCESS_READ)
        _MAPS[key] = mapped
        return mapped


class CommitWatch:
    """A value that changes with every commit to the SQLite file of `conn` (the hot
    connection, which must stay open while the watch is used: an open connection keeps
    the `-shm` file from being removed): the mapped wal-index header, or else
    `PRAGMA data_version`."""

    def __init__(self) -> None:
        self._header: memoryview | None = None
        self._map: mmap.mmap | None = None
        self._mappable = True
        self._next_check = 0.0  # monotonic time of the next cross-check (or mapping attempt)
        self._checked: tuple[bytes, int] | None = None  # (header, data_version) then

    @property
    def mapped(self) -> bool:
        return self._header is not None

    def version(self, conn: Any) -> Hashable:
        header = self._header
        if header is None and self._mappable and time.monotonic() >= self._next_check:
            self._next_check = time.monotonic() + CROSS_CHECK_SECONDS
            self._map_header(conn)
            header = self._header
        if header is None:
            return data_version(conn)
        if time.monotonic() >= self._next_check:
            self._cross_check(conn, header)
            if self._header is None:
                return data_version(conn)
        return header.tobytes()

    def _map_header(self, conn: Any) -> None:
        cursor = conn.cursor()
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
            files = {row[1]: row[2] for row in cursor.execute("PRAGMA database_list")}
        finally:
            cursor.close()
        path = files.get("main", "")
        if str(mode).lower() != "wal" or not path:
            self._mappable = False  # in memory, or a journal without a wal-index
            return
        try:
            self._map = _mapped_header(f"{path}-shm")
        except (FileNotFoundError, ValueError):
            return  # not created or not sized yet (nothing has read the file): tried later
        except OSError as e:
            log.warning("hot cache: cannot map %s-shm (%s); using PRAGMA data_version", path, e)
            self._mappable = False
            return
        self._header = memoryview(self._map)[:WAL_INDEX_HEADER_BYTES]
        self._checked = None

    def _cross_check(self, conn: Any, header: memoryview) -> None:
        """Compares the header with the pragma. Both are read only when no commit comes
        between two reads of the header, so that they describe the same commits."""
        self._next_check = time.monotonic() + CROSS_CHECK_SECONDS
        before = header.tobytes()
        version = data_version(conn)
        if header.tobytes() != before:
            return  # a commit came meanwhile: next time
        checked, self._checked = self._checked, (before, version)
        if checked is not None and checked[0] == before and checked[1] != version:
            log.warning(
                "hot cache: a commit changed PRAGMA data_version but not the mapped wal-index "
                "header; using PRAGMA data_version from now on"
            )
            self.close()
            self._mappable = False

    def close(self) -> None:
        """Stops reading the header. The mapping stays (see `_mapped_header`)."""
        if self._header is not None:
            self._header.release()
            self._header = None
        self._map = None


class CommitClock(Protocol):
    """What the cache asks before it answers or keeps."""

    def version(self, after_commit: int = 0) -> Hashable | None:
        """A value that changes with every commit to the database; None when nothing may
        be answered or kept now (or not for a caller that needs commit number
        `after_commit`, which this clock has not seen yet)."""
        ...


class FileCommitClock:
    """SQLite's commit clock: the `CommitWatch` of the hot connection. Every commit to
    the file is seen at once, so `after_commit` never needs waiting for."""

    def __init__(self, connection: Callable[[], AbstractContextManager[Any]]) -> None:
        self.connection = connection  # `Database.loop_connection`
        self.watch = CommitWatch()

    def version(self, after_commit: int = 0) -> Hashable:
        with self.connection() as conn:
            return self.watch.version(conn)


class ReplyCache:
    def __init__(
        self,
        clock: CommitClock,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 16 << 20,
        max_entry_bytes: int = 256 << 10,
    ) -> None:
        self.clock = clock
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._entries: dict[Hashable, bytes] = {}
        self._bytes = 0
        self._version: Hashable | None = None
        self.hits = 0
        self.misses = 0
        self.passed = 0  # lookups the clock had no version for

    def lookup(self, key: Hashable, after_commit: int = 0) -> tuple[bytes | None, Hashable | None]:
        """(the kept answer for `key` or None, the clock's version now). Pass the version
        to `store` with the answer computed next."""
        version = self.clock.version(after_commit)
        if version is None:
            self.passed += 1
            return None, None
        if version != self._version:
            self.clear()
            self._version = version
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry, version

    def store(self, key: Hashable, answer: bytes, seen: Hashable | None) -> None:
        """Keeps `answer` (serialized), computed after a `lookup` that returned the version
        `seen`, unless a commit came since then: the answer may predate it, and a later
        lookup would not know. Evicts the oldest entries when the size budget is spent."""
        size = len(answer)
        # The version never comes back to an earlier one, so an unchanged version also
        # means no lookup in between saw a commit (and cleared).
        if seen is None or size > self.max_entry_bytes or self.clock.version() != seen:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._bytes -= len(previous)
        while self._entries and (
            self._bytes + size > self.max_bytes or len(self._entries) >= self.max_entries
        ):
            oldest = next(iter(self._entries))  # dicts keep insertion order
            self._bytes -= len(self._entries.pop(oldest))
        self._entries[key] = answer
        self._bytes += size

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)
