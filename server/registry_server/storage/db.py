"""Engines and the unit of work: one short transaction per RPC.

SQLite: WAL, foreign keys, busy_timeout; reads on a pool of connections, writes
on a single connection that opens `BEGIN IMMEDIATE`, so writers queue instead of
failing on lock upgrades. PostgreSQL: psycopg 3, one pool for sessions, the servers'
precompiled hot reads on async autocommit connections of the event loop
(`async_reads`), and row locks where a write must serialize (alias moves, version
indices). Every PostgreSQL connection reports the numbers of its commits to the call
that made them (`storage.commits`), and `commits` is the replica's listener for
everyone's.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, inspect, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, QueuePool

from ..domain.errors import FailedPrecondition, Unavailable
from . import commits
from .async_pool import GENERIC_PLANS, READS, AsyncPool
from .errors import database_unavailable, is_busy

DEFAULT_SQLITE_FILE = "registry.db"
WRITE_LOCK_TIMEOUT_SECONDS = 30.0
WRITE_LOCK_POLL_SECONDS = 0.001


def normalize_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def now_us() -> int:
    return time.time_ns() // 1000


def add_created(s: Session, row: Any, at: int | None = None) -> None:
    """An insert of `row`, created and updated `at` (default: now), flushed: its id is
    set and its columns' defaults are filled in."""
    row.create_time = row.update_time = now_us() if at is None else at
    s.add(row)
    s.flush()


def revised(row: Any, mask: Collection[str] | None = None, **values: Any) -> None:
    """An update of `row`: each of `values` set (only those named in `mask`, an update
    mask, when given), then a new revision counted (`revision`, which link rows do not
    have, and `update_time`)."""
    for name, value in values.items():
        if mask is None or name in mask:
            setattr(row, name, value)
    if hasattr(row, "revision"):
        row.revision += 1
    row.update_time = now_us()


class Database:
    def __init__(self, url: str, *, pool_size: int = 8, session: str | None = None) -> None:
        """`session`: PostgreSQL connections get this application_name and prepare
        every statement at its first run with a generic plan (as `AsyncPool`'s do), for
        a process that runs the same few statements all day (the write child)."""
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        # PostgreSQL: hot reads on the event loop (storage/async_pool.py)
        self.async_reads: AsyncPool | None = None
        # PostgreSQL: the commits this replica has heard of (run by the server)
        self.commits: commits.CommitListener | None = None
        if self.is_sqlite:
            self.read_engine = self._sqlite_engine(immediate=False, pool_size=pool_size)
            self.write_engine = self._sqlite_engine(immediate=True, pool_size=1)
        else:
            parsed = make_url(self.url)
            options = parsed.query.get("options")  # the caller's libpq options, kept
            connect_args: dict[str, Any] = {"options": commits.session_options(_one(options))}
            if session is not None:
                connect_args["application_name"] = session
                connect_args["prepare_threshold"] = 0
                connect_args["options"] += f" -c {GENERIC_PLANS}"
            self.read_engine = create_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=False,
                pool_recycle=1800,
                connect_args=connect_args,
            )
            event.listen(self.read_engine, "connect", _report_commits)
            self.write_engine = self.read_engine
            conninfo = parsed.set(drivername="postgresql").render_as_string(False)
            self.async_reads = AsyncPool(conninfo, pool_size, READS)
            self.commits = commits.CommitListener(conninfo)
        self._reader = sessionmaker(self.read_engine, expire_on_commit=False)
        self._loop_lock = threading.Lock()
        self._loop_sqlite: Any = None
        self._writer = sessionmaker(self.write_engine, expire_on_commit=False)

    @property
    def is_memory(self) -> bool:
        """An in-memory SQLite database (this process's only: no other can open it)."""
        return self.url in ("sqlite://", "sqlite:///:memory:")

    @property
    def dialect(self) -> str:
        return self.read_engine.dialect.name

    def _sqlite_engine(self, *, immediate: bool, pool_size: int) -> Engine:
        memory = self.is_memory
        engine = create_engine(
            self.url,
            poolclass=NullPool if memory else QueuePool,
            connect_args={"check_same_thread": False, "timeout": 30},
            **({} if memory else {"pool_size": pool_size, "max_overflow": 0, "pool_timeout": 60}),
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            # A write connection waits for the write lock in `begin_immediate` only.
            cur.execute(f"PRAGMA busy_timeout={0 if immediate else 30000}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            if immediate:
                begin_immediate(conn.connection.dbapi_connection)
            else:
                conn.exec_driver_sql("BEGIN")

        return engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        with translate_db_errors(), self._reader() as session, session.begin():
            yield session

    @contextmanager
    def loop_connection(self) -> Iterator[Any]:
        """SQLite's connection for the precompiled hot reads: one long-lived autocommit
        connection (each SELECT sees one consistent snapshot), used from the event loop.
        (PostgreSQL's hot reads run on `async_reads`.) Driver errors become UNAVAILABLE
        like everywhere else."""
        assert self.is_sqlite, "PostgreSQL's hot reads run on async_reads"
        with translate_db_errors(), self._loop_lock:
            if self._loop_sqlite is None:
                self._loop_sqlite = self.read_engine.raw_connection()
            yield self._loop_sqlite

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A write transaction, committed when the block ends. Within a call on
        PostgreSQL, the call's note (`storage.commits`) gets the commit's number, or the
        newest number when the transaction changed nothing."""
        note = commits.current_note() if self.commits is not None else None
        reported = note.count if note is not None else 0
        with translate_db_errors(), self._writer() as session, session.begin():
            yield session
        if note is not None and note.count == reported:
            note.observe(self.last_commit_number())

    def last_commit_number(self) -> int:
        """PostgreSQL: the newest commit number handed out (0 before the first)."""
        with translate_db_errors(), self.read_engine.connect() as conn:
            return int(conn.exec_driver_sql(commits.LAST_NUMBER_SQL).scalar() or 0)

    @contextmanager
    def write_connection(self) -> Iterator[Any]:
        """A write connection inside one transaction (on SQLite `BEGIN IMMEDIATE`, as
        `write()` opens it), for the precompiled hot writes of the write child (no ORM
        session: its unit of work costs more than the writes). Commits when the block
        ends, rolls back when it raises. Connection failures become UNAVAILABLE as in
        `write()`; other driver errors (IntegrityError, ...) propagate unchanged."""
        raw = self.write_engine.raw_connection()
        try:
            with translate_db_errors():
                if self.is_sqlite:
                    begin_immediate(raw.dbapi_connection)
                try:
                    yield raw
                except BaseException:
                    raw.rollback()
                    raise
                raw.commit()
        finally:
            raw.close()

    def dispose(self) -> None:
        if self._loop_sqlite is not None:
            self._loop_sqlite.close()
            self._loop_sqlite = None
        self.read_engine.dispose()
        if self.write_engine is not self.read_engine:
            self.write_engine.dispose()

    # --- schema ------------------------------------------------------------------

    def schema_state(self) -> str:
        """'empty', 'current' or 'outdated'."""
        from .migrate import head_revision

        with self.read_engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            if not tables or tables == {"alembic_version"}:
                return "empty"
            if "alembic_version" not in tables:
                return "outdated"
            rev = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        return "current" if rev == head_revision() else "outdated"


def _one(value: str | tuple[str, ...] | None) -> str | None:
    return " ".join(value) if isinstance(value, tuple) else value


def _report_commits(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.add_notice_handler(commits.notice_handler)


def begin_immediate(dbapi_conn: Any) -> None:
    """`BEGIN IMMEDIATE` on an SQLite write connection, waiting up to
    WRITE_LOCK_TIMEOUT_SECONDS for another process's write transaction by trying again
    every WRITE_LOCK_POLL_SECONDS. SQLite's own busy handler sleeps up to 100 ms between
    tries and so keeps missing the moments between another process's back-to-back
    transactions (a migration runner's steps): a call's write could wait for a whole
    migration. Within one process writers queue for the one write connection instead."""
    deadline = time.monotonic() + WRITE_LOCK_TIMEOUT_SECONDS
    cur = dbapi_conn.cursor()
    try:
        while True:
            try:
                cur.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as e:
                if not is_busy(e) or time.monotonic() > deadline:
                    raise
            time.sleep(WRITE_LOCK_POLL_SECONDS)
    finally:
        cur.close()


@contextmanager
def translate_db_errors() -> Iterator[None]:
    """Connection-level database failures become UNAVAILABLE with a clear message."""
    try:
        yield
    except OperationalError as e:
        raise database_unavailable(e.orig or e) from e
    except sqlite3.OperationalError as e:  # from `begin_immediate`, unwrapped
        raise database_unavailable(e) from e
    except DBAPIError as e:
        if e.connection_invalidated:
            raise Unavailable(
                "the database connection was lost; retry", reason="DATABASE_UNAVAILABLE"
            ) from e
        raise


def require_current_schema(db: Database, *, auto_upgrade_empty: bool = True) -> None:
    from .migrate import upgrade

    state = db.schema_state()
    if state == "current":
        return
    if state == "empty" and auto_upgrade_empty:
        upgrade(db.url)
        return
    raise FailedPrecondition(
        "the database schema is not up to date; run: registry-server db upgrade "
        f"--database-url {safe_url(db.url)}",
        reason="SCHEMA_OUTDATED",
    )


def safe_url(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<database url>"


def describe_database(url: str) -> str:
    """`url` for messages: without its password, a SQLite file by its absolute path and,
    when the file is not there yet, said to be new."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return safe_url(url)
    path = Path(str(parsed.database)).resolve()
    return f"sqlite:///{path}" + ("" if path.exists() else " (a new file)")


def env_url() -> str:
    """REGISTRY_DATABASE_URL, else registry.db in the working directory."""
    return (
        os.environ.get("REGISTRY_DATABASE_URL") or f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"
    )
