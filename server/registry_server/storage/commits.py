"""Commit numbers on PostgreSQL: how a write learns its number, and how a replica hears
of every commit.

Numbering (the SQL is `migrations/commit_numbers.py`). Every table has a statement
trigger that marks the transaction on its first change; a deferred trigger then runs
once, at COMMIT, and takes the next value of `SEQUENCE` under a transaction lock
(`COMMIT_LOCK`), held until the commit is visible. Numbers therefore follow commit
order, whatever process commits (a server, the migration runner, the command line, a
person with psql): a commit numbered N is visible before N + 1 is handed out. The
same trigger sends `NOTIFY registry_commits, 'N'`, which PostgreSQL delivers in commit
order too; and on sessions that ask for it (`REPORT_SETTING`, set by `session_options`
on every connection the registry opens) it raises the notice `registry commit N`,
which arrives in the reply to COMMIT itself: a write learns its number without a
round trip of its own.

What a number means. Once a commit numbered N has completed, every commit numbered up
to N is visible to any read that starts later. So a replica that has heard of N (or
made it) can answer from what it computed afterwards; and a client that was told N
can ask any replica for state at least that new (`x-registry-after-commit`).

The per-call note. `begin_call` gives the call (the interceptor's task; worker threads
run in a copy of its context, see `App.run`) a `CommitNote`; each commit reported on
any of the call's connections raises it (`notice_handler`). A write unit that
committed nothing reports the newest number handed out instead (`LAST_NUMBER_SQL`):
whatever it read was committed under a number no larger, so a client that waits for
that number misses nothing it was shown (a retried create answered from its first
reply, an alias moved to where it already was).

`CommitListener` is a replica's ear: one dedicated connection that LISTENs on the
server's event loop. It implements the commit clock of `storage.reply_cache`: its
version changes with every commit heard of, and it has none (nothing kept, nothing
answered from what was kept) while it is not connected. A dropped connection is
opened again with growing pauses; after reconnecting, `seen` is read again under the
commit lock (so no commit numbered up to it is still becoming visible) and the kept
replies start empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from dataclasses import dataclass
from typing import Any

import psycopg

log = logging.getLogger("registry.commits")

CHANNEL = "registry_commits"
SEQUENCE = "registry_commit_seq"
# (first key, second key) of the two-key advisory lock that numbers commits one at a time
COMMIT_LOCK = (0x434D4954, 0)  # "CMIT"
REPORT_SETTING = "registry.report_commits"
NOTICE_PREFIX = "registry commit "
LAST_NUMBER_SQL = f"SELECT pg_sequence_last_value('{SEQUENCE}')"
LISTENER_NAME = "registry-commit-listener"  # its session in pg_stat_activity


def session_options(options: str | None) -> str:
    """libpq `options` for a registry connection: the caller's, and the setting that
    makes the commit trigger report each commit's number to this session."""
    return f"{options or ''} -c {REPORT_SETTING}=on".strip()


@dataclass
class CommitNote:
    """The commits of one call: the highest number, and how many were reported."""

    seq: int = 0
    count: int = 0

    def observe(self, seq: int) -> None:
        self.count += 1
        if seq > self.seq:
            self.seq = seq


_note: contextvars.ContextVar[CommitNote | None] = contextvars.ContextVar(
    "registry_commit_note", default=None
)


def begin_call() -> CommitNote:
    """A new note for the current call (task), where its commits are recorded."""
    note = CommitNote()
    _note.set(note)
    return note


def current_note() -> CommitNote | None:
    return _note.get()


def notice_handler(diagnostic: psycopg.errors.Diagnostic) -> None:
    """psycopg notice handler of every registry connection: records the number of a
    commit of this session in the current call's note (outside a call, nobody asks)."""
    message = diagnostic.message_primary or ""
    if not message.startswith(NOTICE_PREFIX):
        return
    note = _note.get()
    if note is not None:
        with contextlib.suppress(ValueError):
            note.observe(int(message[len(NOTICE_PREFIX) :]))


class CommitListener:
    """The commits this replica has heard of: a commit clock for the kept replies and a
    floor for the verified-key cache (`seen`)."""

    RETRY_SECONDS = 0.1  # the first pause before connecting again; doubles up to MAX
    MAX_RETRY_SECONDS = 5.0
    PING_SECONDS = 5.0  # idle this long, the connection is checked with a statement

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.retry_seconds = self.RETRY_SECONDS
        self.connected = False
        # Every commit numbered up to `seen` is visible to reads that start now.
        self.seen = 0
        self.backend_pid: int | None = None  # of the listening session, while connected
        self._version = 0

    def version(self, after_commit: int = 0) -> int | None:
        """The commit clock (`storage.reply_cache.CommitClock`): None while not listening,
        or when the caller needs commit `after_commit`, not heard of yet."""
        if not self.connected or after_commit > self.seen:
            return None
        return self._version

    def committed(self, seq: int | None) -> None:
        """A commit has completed: heard of, or made by this process (numbered `seq`;
        None when its number is unknown). Whatever was computed before it is not kept,
        unless it is already known: when `seen` reached it the version moved, and what
        was computed since then reflects it (so this replica's own commits, heard of
        again, empty nothing)."""
        if seq is not None and seq <= self.seen:
            return
        self._version += 1
        if seq is not None:
            self.seen = seq

    async def run(self) -> None:
        """Listens until cancelled, connecting again whenever the connection is lost."""
        pause = self.retry_seconds
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.conninfo,
                    autocommit=True,
                    application_name=LISTENER_NAME,
                    connect_timeout=10,
                )
            except psycopg.Error as err:
                log.warning("cannot listen for commits (%s); again in %.1fs", err, pause)
            else:
                try:
                    await self._listen(conn)
                except psycopg.Error as err:
                    log.warning("the commit listener's connection was lost (%s)", err)
                except Exception:
                    log.exception("the commit listener failed")
                finally:
                    if self.connected:
                        pause = self.retry_seconds
                    self._lost()
                    await conn.close()
            await asyncio.sleep(pause)
            pause = min(pause * 2, self.MAX_RETRY_SECONDS)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(f"LISTEN {CHANNEL}")
        # Listening first, then reading the last number under the commit lock: every
        # commit numbered up to it is visible now, and every later one will be heard of.
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", COMMIT_LOCK)
            cursor = await conn.execute(LAST_NUMBER_SQL)
            row = await cursor.fetchone()
        self.committed(int(row[0]) if row and row[0] is not None else 0)
        self.backend_pid = conn.info.backend_pid
        self.connected = True
        log.info("listening for commits (seen %d)", self.seen)
        while True:
            async for notify in conn.notifies(timeout=self.PING_SECONDS):
                self._heard(notify.payload)
            await conn.execute("SELECT 1")  # a connection that went away unnoticed fails here

    def _heard(self, payload: str) -> None:
        try:
            seq: int | None = int(payload)
        except ValueError:  # not one of ours: a commit all the same
            seq = None
        self.committed(seq)

    def _lost(self) -> None:
        self.connected = False
        self.backend_pid = None
        self._version += 1
