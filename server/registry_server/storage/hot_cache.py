"""Answers of hot reads, kept while the SQLite file is unchanged.

SQLite's `PRAGMA data_version` changes on a connection whenever another
connection, in this process or any other, commits to the file. The hot
connection only reads, so while the value stays the same every answer it gave
is still the answer: a hit costs one pragma and a dict lookup, and any commit
anywhere empties the cache. There is no expiry time and no stale read.

Keys name the call completely (method, caller, request), so an answer is only
given back to a caller for whom it was computed. Entries are bounded in number and
by their serialized size (the oldest go first); an answer larger than
`max_entry_bytes` is never kept.

PostgreSQL has no such counter (a commit on another replica is invisible here
without a query), so the cache is used on SQLite only.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from google.protobuf.message import Message


class HotCache:
    def __init__(
        self,
        *,
        max_entries: int = 10_000,
        max_bytes: int = 16 << 20,
        max_entry_bytes: int = 256 << 10,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self._entries: dict[Hashable, tuple[Message, int]] = {}
        self._bytes = 0
        self._version: int | None = None
        self.hits = 0
        self.misses = 0

    def lookup(self, conn: Any, key: Hashable) -> Message | None:
        """The kept answer for `key`, or None. `conn` is the hot SQLite connection."""
        cursor = conn.cursor()
        try:
            cursor.execute("PRAGMA data_version")
            version = cursor.fetchone()[0]
        finally:
            cursor.close()
        if version != self._version:
            self.clear()
            self._version = version
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        return entry[0]

    def store(self, key: Hashable, answer: Message) -> None:
        """Keep `answer`, computed after the `lookup` of the same key. Evicts the oldest
        entries when the size budget is spent."""
        size = answer.ByteSize()
        if size > self.max_entry_bytes:
            return
        previous = self._entries.pop(key, None)
        if previous is not None:
            self._bytes -= previous[1]
        while self._entries and (
            self._bytes + size > self.max_bytes or len(self._entries) >= self.max_entries
        ):
            oldest = next(iter(self._entries))  # dicts keep insertion order
            self._bytes -= self._entries.pop(oldest)[1]
        self._entries[key] = (answer, size)
        self._bytes += size

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)
