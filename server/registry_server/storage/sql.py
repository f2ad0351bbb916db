"""Statements built once, run on any DB-API connection: the one way the hot use cases
(resolve, collection versions, links, aliases, roles, migration snapshots) talk SQL.

A `Query` is a SQLAlchemy Core statement, built once per dialect (and per shape, for
statements that vary with a filter or a list length) and compiled to driver SQL, with
its parameter order and bind processors worked out once. `Sql` runs queries on one
DB-API connection, whichever it is:

    Sql(conn, dialect)         SQLite's hot connection, the write child's connection,
                               PostgreSQL's async connections lent to a greenlet
                               (`storage.async_pool`)
    Sql.of(session)            the connection of an ORM session's transaction

so one use case serves the event loop, a worker thread, the write child and a session.
`Sql.info` is where a transaction collects what it writes at commit (the event outbox,
`service.events`): an ORM session's own `info`, or the Sql's when it has no session.
`Sql.dirty` tells whether a statement run through it wrote or failed (a batch of
changes needs a savepoint to undo such a change alone, `workers.changes`).
"""

from __future__ import annotations

import contextlib
import json
import operator
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement


@dataclass(frozen=True)
class Compiled:
    """Driver SQL with its parameter order (positional drivers), constant parameters
    (filter values, already through their bind processors) and processors of the rest;
    `writes`: an INSERT, UPDATE or DELETE."""

    sql: str
    order: tuple[str, ...] | None
    constants: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]
    writes: bool = False
    # the positional parameters out of the merged values (None: named parameters)
    _ordered: Callable[[Mapping[str, Any]], tuple[Any, ...]] | None = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        order = self.order
        ordered: Any = None
        if order is not None and len(order) > 1:
            ordered = operator.itemgetter(*order)  # a tuple of the values
        elif order is not None:  # one or no parameter: itemgetter gives no tuple
            ordered = lambda merged: tuple(merged[name] for name in order)  # noqa: E731
        object.__setattr__(self, "_ordered", ordered)

    def params(self, values: Mapping[str, Any]) -> Any:
        """The driver's parameters: `values` (every variable) with the constants, each
        through its bind processor (None stays None)."""
        merged = {**self.constants, **values} if self.constants else dict(values)
        for name, process in self.processors.items():
            value = merged.get(name)
            if value is not None:
                merged[name] = process(value)
        ordered = self._ordered
        return merged if ordered is None else ordered(merged)


def compile_statement(
    stmt: ClauseElement, dialect: Dialect, variables: Sequence[str] | None = None
) -> Compiled:
    """`stmt` as driver SQL once and for all. `variables` are the parameters given at
    each run, every other bound value is a constant (None: the `bindparam`s without a
    value are given at each run; values in the statement, such as a filter's literals,
    are constants)."""
    compiled: Any = stmt.compile(dialect=dialect)
    if variables is None:
        names = tuple(
            name
            for name, bind in compiled.binds.items()
            if bind.value is None and bind.callable is None
        )
    else:
        names = tuple(variables)
    # Expands IN lists into separate parameters, as SQLAlchemy does at execution time.
    expanded = compiled.construct_expanded_state({name: None for name in names})
    processors: dict[str, Callable[[Any], Any]] = dict(expanded.processors)
    for name, bind in compiled.binds.items():
        bind_process: Any = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind_process is not None and name not in processors:
            processors[name] = bind_process
    constants = {}
    for name, value in expanded.parameters.items():
        if name in names:
            continue
        process: Any = processors.get(name)
        constants[name] = process(value) if process is not None and value is not None else value
    order = tuple(expanded.positiontup) if compiled.positional and expanded.positiontup else None
    return Compiled(
        expanded.statement,
        order,
        constants,
        {name: processors[name] for name in names if name in processors},
        writes=bool(getattr(stmt, "is_dml", False)),
    )


class Query:
    """A statement built by `build(dialect_name, *shape)` and compiled once per dialect
    and shape (`shape`: whatever changes the SQL, e.g. a list length or a filter). The
    most recently used `SHAPES_KEPT` compiled shapes are kept."""

    SHAPES_KEPT = 512

    __slots__ = ("_build", "_compiled", "_lock", "name")

    def __init__(self, build: Callable[..., ClauseElement]) -> None:
        self._build = build
        self._compiled: OrderedDict[Hashable, Compiled] = OrderedDict()
        self._lock = threading.Lock()
        self.name = build.__name__

    def compiled(self, dialect: Dialect, shape: tuple[Hashable, ...] = ()) -> Compiled:
        key = (dialect.name, shape)
        found = self._compiled.get(key)
        if found is None:
            found = compile_statement(self._build(dialect.name, *shape), dialect)
            with self._lock:  # worker threads compile too
                self._compiled[key] = found
                if len(self._compiled) > self.SHAPES_KEPT:
                    self._compiled.popitem(last=False)
        elif shape:
            with contextlib.suppress(KeyError):  # dropped by another thread meanwhile
                self._compiled.move_to_end(key)
        return found

    def __repr__(self) -> str:
        return f"Query({self.name})"


def query(build: Callable[..., ClauseElement]) -> Query:
    """Decorator: a module-level `Query` of `build`."""
    return Query(build)


# A statement that may scan (a filtered page) gets this much of the loop thread's CPU on
# SQLite's event-loop connection; then it is interrupted and the use case runs again on
# a worker thread (`App.query`). A page of 50 takes about 0.1 ms. CPU time, not wall
# time, so that a busy machine preempting the thread does not push ordinary pages off
# the loop. The clock is read every `_SQLITE_PROGRESS_STEP` virtual machine
# instructions (a page of 50 runs about 3,000).
SQLITE_LOOP_BUDGET = 0.005
_SQLITE_PROGRESS_STEP = 1_000


class LoopBudgetExceeded(Exception):
    """A bounded statement on the event loop's connection ran out of its budget."""


class Sql:
    """Runs `Query`s (or `Compiled` SQL) on one DB-API connection (module docstring)."""

    __slots__ = ("conn", "dialect", "dirty", "info", "loop_budget")

    def __init__(
        self,
        conn: Any,
        dialect: Dialect,
        info: dict[str, Any] | None = None,
        *,
        loop_budget: bool = False,
    ) -> None:
        self.conn = conn
        self.dialect = dialect
        self.info: dict[str, Any] = {} if info is None else info
        self.loop_budget = loop_budget  # SQLite's event-loop connection: bound `scan`
        self.dirty = False  # a statement wrote or failed (module docstring)

    @classmethod
    def of(cls, session: Session) -> Sql:
        """The connection of `session`'s transaction; its outbox is the session's.
        Statements go through SQLAlchemy's execution there (`Connection.exec_driver_sql`),
        so engine events (statement counts, error translation) see them as the ORM's."""
        connection = session.connection()
        return cls(_EngineConnection(connection), connection.dialect, session.info)

    @property
    def postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    def _compiled(self, q: Query | Compiled, shape: tuple[Hashable, ...]) -> Compiled:
        return q if isinstance(q, Compiled) else q.compiled(self.dialect, shape)

    def run(
        self, q: Query | Compiled, values: Mapping[str, Any], shape: tuple[Hashable, ...] = ()
    ) -> Any:
        """Executes; the open cursor (the caller fetches from it and closes it)."""
        compiled = self._compiled(q, shape)
        self.dirty |= compiled.writes
        cursor = self.conn.cursor()
        try:
            cursor.execute(compiled.sql, compiled.params(values))
        except BaseException:
            self.dirty = True
            cursor.close()
            raise
        return cursor

    def execute(
        self, q: Query | Compiled, values: Mapping[str, Any], shape: tuple[Hashable, ...] = ()
    ) -> int:
        """Executes a write; the number of rows it touched."""
        cursor = self.run(q, values, shape)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def send(
        self, q: Query | Compiled, values: Mapping[str, Any], shape: tuple[Hashable, ...] = ()
    ) -> None:
        """Executes a write (or a lock) whose outcome the caller does not read (its
        error is raised here, or, on a connection that defers replies, by `settle`)."""
        self.run(q, values, shape).close()

    def settle(self) -> None:
        """Waits for every statement sent and not read yet (raising the first error);
        nothing to wait for on other connections."""
        settle = getattr(self.conn, "settle", None)
        if settle is not None:
            settle()

    def one(
        self, q: Query | Compiled, values: Mapping[str, Any], shape: tuple[Hashable, ...] = ()
    ) -> Any:
        """The first row, or None."""
        cursor = self.run(q, values, shape)
        try:
            return cursor.fetchone()
        finally:
            cursor.close()

    def ones(
        self, statements: Sequence[tuple[Query | Compiled, Mapping[str, Any], tuple[Hashable, ...]]]
    ) -> list[Any]:
        """The first row (or None) of each statement, in order, all executed before any
        is read. Each statement runs after the one before it completed (e.g. reads
        after the lock they need)."""
        cursors: list[Any] = []
        try:
            for q, values, shape in statements:
                cursors.append(self.run(q, values, shape))
            return [cursor.fetchone() for cursor in cursors]
        finally:
            for cursor in cursors:
                cursor.close()

    def all(
        self, q: Query | Compiled, values: Mapping[str, Any], shape: tuple[Hashable, ...] = ()
    ) -> list[Any]:
        cursor = self.run(q, values, shape)
        try:
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def scan(
        self, q: Query | Compiled, values: Mapping[str, Any], shape: tuple[Hashable, ...] = ()
    ) -> list[Any]:
        """`all`, for a statement whose cost depends on the data (a filtered page): on
        SQLite's event-loop connection bounded by SQLITE_LOOP_BUDGET (LoopBudgetExceeded)."""
        if not self.loop_budget:
            return self.all(q, values, shape)
        deadline = time.thread_time() + SQLITE_LOOP_BUDGET

        def progress() -> int:
            return 1 if time.thread_time() > deadline else 0

        self.conn.set_progress_handler(progress, _SQLITE_PROGRESS_STEP)
        try:
            return self.all(q, values, shape)
        except sqlite3.OperationalError as e:
            if "interrupted" in str(e):
                raise LoopBudgetExceeded from None
            raise
        finally:
            self.conn.set_progress_handler(None, 0)

    def many(self, q: Query, rows: Sequence[Mapping[str, Any]]) -> None:
        """Executes a write once per row, sent as by `send`."""
        if len(rows) == 1:  # psycopg runs executemany as a pipeline: dearer for one row
            self.send(q, rows[0])
        elif rows:
            compiled = q.compiled(self.dialect)
            self.dirty = True
            cursor = self.conn.cursor()
            try:
                cursor.executemany(compiled.sql, [compiled.params(row) for row in rows])
            finally:
                cursor.close()


class _EngineCursor:
    """A DB-API cursor's surface over `Connection.exec_driver_sql`."""

    __slots__ = ("_connection", "_result")

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._result: Any = None

    def execute(self, sql: str, params: Any = None) -> _EngineCursor:
        self._result = self._connection.exec_driver_sql(sql, params)
        return self

    def executemany(self, sql: str, rows: Sequence[Any]) -> None:
        self._result = self._connection.exec_driver_sql(sql, list(rows))

    def fetchone(self) -> Any:
        return self._result.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._result.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self._result.rowcount)

    def close(self) -> None:
        if self._result is not None and self._result.returns_rows:
            self._result.close()


class _EngineConnection:
    __slots__ = ("_connection",)

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def cursor(self) -> _EngineCursor:
        return _EngineCursor(self._connection)


# --- column helpers the statements share ------------------------------------------------


def joined_aliases(dialect: str, aliases: Any, version_id: Any) -> Any:
    """A scalar subquery: the aliases in `aliases` (an alias of an alias table) of
    `version_id`, as one comma-joined string (aliases never contain commas). On
    PostgreSQL in code point order (`COLLATE "C"`), as Python sorts them; SQLite's order
    is unspecified (`split_aliases` sorts)."""
    comma: Any = literal_column("','")  # inline: the compiled SQL takes only the real parameters
    if dialect == "postgresql":
        order = aliases.c.alias.collate("C")
        agg = func.string_agg(aliases.c.alias, aggregate_order_by(comma, order))
    else:
        agg = func.group_concat(aliases.c.alias, comma)
    return select(agg).where(aliases.c.version_id == version_id).scalar_subquery()


def split_aliases(joined: str | None, sort: bool = True) -> list[str]:
    """The list `joined_aliases` returned; sorted by code point unless `sort` is off."""
    if not joined:
        return []
    found = joined.split(",")
    return sorted(found) if sort else found


_decode_json = json.JSONDecoder().raw_decode


def json_value(value: Any) -> Any:
    """A JSON column's value. SQLite hands back the text the ORM stored with json.dumps
    (decoded without json.loads' whitespace handling); psycopg already decodes JSONB."""
    if not isinstance(value, str):
        return value
    try:
        return _decode_json(value)[0]
    except ValueError:  # text written by other means, e.g. with leading whitespace
        return json.loads(value)
