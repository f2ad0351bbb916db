"""PostgreSQL reads on the event loop.

The reads that `App.query` runs (path resolution, collection versions, effective roles:
`storage/queries/`) are plain functions over a DB-API connection: a statement or two,
then the view built from the rows. On SQLite they run on the event loop against the
local file. On PostgreSQL each statement is a network round trip, which a worker thread
used to wait for: every call then paid the hand-off to the thread and back, with the
interpreter lock passed between them. Here they run on the event loop too: `run` starts
the read in a greenlet (as SQLAlchemy's asyncio extension does) and lends it
`LentConnection`, whose cursor awaits psycopg's AsyncConnection at each `execute` and
`fetch*`, so the loop serves other calls during the round trip. The same functions run
on SQLite's `Database.loop_connection`. (The hot writes, links and alias moves, run in
the write child, `workers.write_child`: a batch here waited behind every call the loop
had queued, at each of its round trips.)

Connections (per event loop, at most `size` of them): autocommit (each SELECT is its
own snapshot; nothing to roll back when one goes back), statements prepared on first
use and planned generically (`force_generic_plan`: these are point lookups by unique
keys, where planning cost more than running; measured 2 ms of planning for 0.4 ms of
execution of the resolve statement). Idle ones are reused, new ones
opened on demand, and callers beyond `size` wait for a free slot. A connection that
the driver reports broken (a database restart), that a cancelled call left in the
middle of a statement, or that is not idle after the read, is closed and dropped;
connection failures answer UNAVAILABLE, as everywhere else.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from sqlalchemy.engine import Dialect
from sqlalchemy.util import await_only, greenlet_spawn

from . import commits
from .errors import database_unavailable

R = TypeVar("R")
READS = "registry-hot-read"  # what the pool's sessions are called in pg_stat_activity
# Point lookups by unique keys, where planning costs more than running (module docstring)
GENERIC_PLANS = "plan_cache_mode=force_generic_plan"


class _Cursor:
    """A cursor of `LentConnection`: each call awaits psycopg's, except `close`, which
    hands the driver's cursor back to the connection for the next statement (closing
    a client-side cursor is no round trip, and a new one costs more than reusing one)."""

    __slots__ = ("_cursor", "_lent")

    def __init__(self, cursor: psycopg.AsyncCursor[Any], lent: LentConnection) -> None:
        self._cursor = cursor
        self._lent: LentConnection | None = lent

    def execute(self, sql: str, params: Any = None) -> _Cursor:
        await_only(self._cursor.execute(sql, params))
        return self

    def fetchone(self) -> Any:
        return await_only(self._cursor.fetchone())

    def fetchall(self) -> list[Any]:
        return await_only(self._cursor.fetchall())

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    def executemany(self, sql: str, rows: Any) -> None:
        await_only(self._cursor.executemany(sql, rows))

    def close(self) -> None:
        if self._lent is not None:  # once: a cursor spared twice would serve two callers
            self._lent.spare.append(self._cursor)
            self._lent = None


class LentConnection:
    """An AsyncConnection seen as a DB-API connection from inside `run`'s greenlet."""

    __slots__ = ("_conn", "spare")

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self.spare: list[psycopg.AsyncCursor[Any]] = []  # closed cursors, to reuse

    @property
    def driver_connection(self) -> psycopg.AsyncConnection[Any]:
        """The driver's connection (the name SQLAlchemy's pooled connections use)."""
        return self._conn

    def cursor(self) -> _Cursor:
        spare = self.spare
        return _Cursor(spare.pop() if spare else self._conn.cursor(), self)


@dataclass
class _LoopPool:
    slots: asyncio.Semaphore
    idle: list[psycopg.AsyncConnection[Any]] = field(default_factory=list)
    closing: set[asyncio.Task[None]] = field(default_factory=set)


def _call(fn: Callable[[Any, Dialect], R], conn: Any, dialect: Dialect) -> R:
    """The read, in its greenlet (a named frame: tests look for it)."""
    return fn(conn, dialect)


class AsyncPool:
    def __init__(self, conninfo: str, size: int, application_name: str) -> None:
        self.conninfo = conninfo
        self.size = size
        self.application_name = application_name
        options = conninfo_to_dict(conninfo).get("options")  # the caller's, kept
        self.options = commits.session_options(None if options is None else str(options))
        self.options += f" -c {GENERIC_PLANS}"
        self.lend: Callable[..., Any] = LentConnection
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopPool] = (
            weakref.WeakKeyDictionary()
        )

    async def run(self, fn: Callable[[Any, Dialect], R], dialect: Dialect) -> R:
        """`fn(connection, dialect)` on a connection of this event loop's pool."""
        pool = self._pool()
        async with pool.slots:
            conn = pool.idle.pop() if pool.idle else await self._connect()
            reusable = True
            try:
                result: R = await greenlet_spawn(_call, fn, self.lend(conn), dialect)
                return result
            except psycopg.OperationalError as err:
                raise database_unavailable(err) from err
            except BaseException as err:
                # An error of the read leaves the session idle; a cancelled call may
                # have left a statement running.
                reusable = isinstance(err, Exception)
                raise
            finally:
                if reusable and self._idle_and_sound(conn):
                    pool.idle.append(conn)
                else:
                    self._close_later(pool, conn)

    async def aclose(self) -> None:
        """Closes this event loop's idle connections (at shutdown, calls finished)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is None:
            return
        idle, pool.idle = pool.idle, []
        for conn in idle:
            await conn.close()
        if pool.closing:
            await asyncio.gather(*pool.closing, return_exceptions=True)

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            pool = self._pools[loop] = _LoopPool(asyncio.Semaphore(self.size))
        return pool

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.conninfo,
                autocommit=True,
                prepare_threshold=0,
                application_name=self.application_name,
                connect_timeout=10,
                options=self.options,
            )
            conn.add_notice_handler(commits.notice_handler)
        except psycopg.OperationalError as err:
            raise database_unavailable(err) from err
        return conn

    @staticmethod
    def _idle_and_sound(conn: psycopg.AsyncConnection[Any]) -> bool:
        return (
            not conn.closed
            and not conn.broken
            and conn.info.transaction_status == TransactionStatus.IDLE
        )

    @staticmethod
    def _close_later(pool: _LoopPool, conn: psycopg.AsyncConnection[Any]) -> None:
        """Drops the connection; closing it is a round trip, not the caller's to wait for
        (nor a cancelled caller's to skip)."""
        task = asyncio.get_running_loop().create_task(conn.close())
        pool.closing.add(task)
        task.add_done_callback(pool.closing.discard)
