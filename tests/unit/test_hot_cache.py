"""The hot-read cache (storage/hot_cache.py) on its own: entries bounded by size and
count, a reply computed across a commit is not kept, and the commit watch (the WAL
index header, or the pragma when the header cannot be read or misses a commit).
Through the server: tests/api/test_hot_cache.py."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

from registry_server.storage.hot_cache import CommitWatch, HotCache


def test_entries_are_bounded_by_size() -> None:
    cache = HotCache(max_bytes=3000, max_entry_bytes=1500)
    conn = sqlite3.connect(":memory:")

    def answer(n: int) -> bytes:
        return b"x" * n

    def keep(c: HotCache, key: str, n: int) -> None:
        _, seen = c.lookup(conn, key)
        c.store(conn, key, answer(n), seen)

    assert cache.lookup(conn, "a")[0] is None
    keep(cache, "a", 1001)
    keep(cache, "b", 1001)
    keep(cache, "too big", 2000)
    assert cache.lookup(conn, "too big")[0] is None
    assert cache.lookup(conn, "a")[0] == answer(1001)
    keep(cache, "c", 1001)  # over the budget: the oldest entry goes
    assert cache.lookup(conn, "a")[0] is None
    assert cache.lookup(conn, "b")[0] is not None and cache.lookup(conn, "c")[0] is not None
    assert len(cache) == 2

    few = HotCache(max_entries=2)
    for key in ("a", "b", "c"):
        keep(few, key, 10)
    assert len(few) == 2 and few.lookup(conn, "a")[0] is None  # the oldest went
    assert few.lookup(conn, "b")[0] is not None and few.lookup(conn, "c")[0] is not None


def _hot_and_other(directory: object, name: str) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """Two connections to a new WAL file with a table `t`: one that has read (as the hot
    connection has), one to commit with."""
    path = f"{directory}/{name}"
    hot, other = (sqlite3.connect(path, isolation_level=None) for _ in range(2))
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("CREATE TABLE t (x INTEGER)")
    hot.execute("SELECT count(*) FROM t").fetchone()
    return hot, other


def test_a_reply_computed_across_a_commit_is_not_kept(tmp_path: object) -> None:
    hot, other = _hot_and_other(tmp_path, "race.db")
    cache = HotCache()
    kept, seen = cache.lookup(hot, "k")
    assert kept is None
    other.execute("INSERT INTO t VALUES (1)")  # lands while the reply is being computed
    cache.store(hot, "k", b"maybe from before the insert", seen)
    assert cache.lookup(hot, "k")[0] is None and len(cache) == 0
    kept, seen = cache.lookup(hot, "k")
    cache.store(hot, "k", b"after", seen)
    assert cache.lookup(hot, "k")[0] == b"after"


def test_the_commit_watch_reads_the_wal_index_header(tmp_path: object) -> None:
    """Every commit by another connection changes the watched value, reads do not, and the
    value comes from the mapped `-shm` header (no statement per call)."""
    hot, other = _hot_and_other(tmp_path, "watch.db")
    path = f"{tmp_path}/watch.db"
    watch = CommitWatch()
    first = watch.version(hot)
    assert watch.mapped and isinstance(first, bytes) and len(first) == 48
    hot.execute("SELECT count(*) FROM t").fetchone()
    assert watch.version(hot) == first
    seen = {first}
    for i in range(3):
        other.execute("INSERT INTO t VALUES (?)", (i,))
        now = watch.version(hot)
        assert now not in seen
        seen.add(now)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next commit restarts the WAL
    other.execute("INSERT INTO t VALUES (9)")
    now = watch.version(hot)
    assert now not in seen
    insert = (
        f"import sqlite3; sqlite3.connect({path!r}, isolation_level=None)"
        ".execute('INSERT INTO t VALUES (10)')"
    )
    subprocess.run([sys.executable, "-c", insert], check=True)  # another process
    assert watch.version(hot) != now


def test_the_commit_watch_falls_back_to_the_pragma() -> None:
    memory = sqlite3.connect(":memory:")
    watch = CommitWatch()
    assert watch.version(memory) == watch.version(memory) and not watch.mapped


def test_a_header_that_misses_a_commit_hands_over_to_the_pragma(tmp_path: object) -> None:
    hot, other = _hot_and_other(tmp_path, "stuck.db")
    watch = CommitWatch()
    watch.version(hot)
    assert watch.mapped
    watch._header = memoryview(bytes(48))  # as if the mapping were no longer the file's
    watch._next_check = 0.0
    before = watch.version(hot)  # the first cross-check notes header and pragma
    other.execute("INSERT INTO t VALUES (1)")
    watch._next_check = 0.0
    after = watch.version(hot)  # the pragma moved, the header did not
    assert not watch.mapped and after != before
    other.execute("INSERT INTO t VALUES (2)")
    assert watch.version(hot) != after  # from now on the pragma answers
