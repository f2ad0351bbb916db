"""The hot write path: LinkArtifactVersion and AddAlias in a few precompiled statements.

Linking a freshly logged version into a registry collection is what every training
pipeline does at the end of a run. The general use case (`collections.link_version`)
loads ORM objects through the shared resolver and access checks and re-reads the new
link to answer: a dozen statements and milliseconds of CPU, all while holding the
SQLite write lock. Here one statement, built once per dialect with Core and run as
driver SQL on a DB-API connection (on SQLite `Database.write_connection`, on
PostgreSQL an async connection lent by `Database.hot_async_writes`), returns the registry
with the caller's granted role, the row-locked collection (FOR UPDATE on PostgreSQL;
SQLite writes hold BEGIN IMMEDIATE), the source artifact version with the caller's
team role, and whether it is already linked. Then come the inserts (link, aliases,
events, request_id) and one UPDATE of the collection; the reply is built from values
at hand. AddAlias takes the same locked collection, then reads the target version and
where the alias is now in one statement.

Transactions: on SQLite a batch of these changes per transaction, with a savepoint for
each (`run_batch`), in the server's hot write process (`service/write_process.py`,
what `registry-server serve` uses) or else on one thread per database
(`_SqliteWriter`); on PostgreSQL each change is its own transaction, on the event loop
(`storage.hot_async`).

Like `fast_resolve`, this module only does the plain successful change. Anything else
(a source given by registry or legacy path, a missing collection to create, a source
already linked, an access or type rule failing, an expected alias position not met, a
concurrent insert winning) rolls back and returns None before anything is committed,
and the caller runs the general use case, which answers exactly (error or idempotent
reply). Effects match the general path: the same rows, the same events with the same
details keys (VERSION_LINKED, then ALIAS_ADDED per alias), the same reply
(tests/test_fast_link.py compares both paths).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from typing import Any, cast

import psycopg
from sqlalchemy import Table, and_, bindparam, func, insert, literal_column, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from registry.v1 import resources_pb2 as r

from ..domain import names, paths
from ..domain.errors import InvalidArgument
from ..domain.names import CollectionRef
from ..domain.paths import LATEST, ParsedPath, PathKind
from ..domain.roles import RegistryRole, TeamRole
from ..storage import models as m
from ..storage.db import Database, now_us
from ..storage.queries.registries import granted_role_columns, undo_requested
from . import authz_table, events, write_process
from . import collections as colls
from .access import combine_role
from .context import Principal
from .fast_sql import joined_aliases, json_value
from .idempotency import check_request_id
from .resolve import parse_reference

LINK_METHOD = "LinkArtifactVersion"  # idempotency key method, as App.create records it
LINK_ROLE = authz_table.permission(colls.SERVICE, "LinkArtifactVersion").min_role
ALIAS_ROLE = authz_table.permission(colls.SERVICE, "AddAlias").min_role
PROTECTED_ALIAS_ROLE = authz_table.PROTECTED_ALIAS.min_role


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


_org = _table(m.Organization)
_reg = _table(m.Registry)
_coll = _table(m.Collection)
_cv = _table(m.CollectionVersion)
_av = _table(m.ArtifactVersion)
_aa = _table(m.ArtifactAlias)
_art = _table(m.Artifact)
_proj = _table(m.Project)
_team = _table(m.Team)
_tm = _table(m.TeamMember)
_ca = _table(m.CollectionAlias)
_user = _table(m.User)
_events = _table(m.Event)
_keys = _table(m.IdempotencyKey)
# second copies for subqueries and the alias holder
_caller_tm = _tm.alias("caller_tm")
_holder_cv = _cv.alias("holder_cv")
_highest_cv = _cv.alias("highest_cv")
_version_ca = _ca.alias("version_ca")


_ONE: Any = literal_column("1")  # inline: compiled SQL takes only the real parameters


class _Fallback(Exception):
    """Leave this request to the general use case (the transaction rolls back)."""


# --- statements ------------------------------------------------------------------------


def _registry_collection() -> Any:
    """organizations -> registries -> collections, by the names in the request."""
    return _org.join(
        _reg, and_(_reg.c.org_id == _org.c.id, _reg.c.name == bindparam("registry"))
    ).join(_coll, and_(_coll.c.registry_id == _reg.c.id, _coll.c.name == bindparam("collection")))


def _registry_columns() -> tuple[Any, ...]:
    return (
        _reg.c.id,
        _reg.c.org_id,
        _reg.c.visibility,
        _reg.c.default_role,
        _reg.c.artifact_types,
        _reg.c.allow_all_artifact_types,
        _reg.c.protected_aliases,
        *granted_role_columns(_reg.c.id, bindparam("uid")),
        _coll.c.id,
        _coll.c.type,
        _coll.c.next_version_index,
        _reg.c.migration_id,
        undo_requested(_reg.c.migration_id),
    )


def _link_statement(dialect: str, by: str) -> ClauseElement:
    """Registry, locked collection and source version (by "index" or "alias") in one row."""
    caller_team_role = (
        select(_caller_tm.c.role)
        .where(_caller_tm.c.team_id == _team.c.id, _caller_tm.c.user_id == bindparam("uid"))
        .scalar_subquery()
    )
    linked = (
        select(_cv.c.id)
        .where(_cv.c.collection_id == _coll.c.id, _cv.c.artifact_version_id == _av.c.id)
        .exists()
    )
    source = (
        _registry_collection()
        .join(_team, _team.c.name == bindparam("team"))
        .join(_proj, and_(_proj.c.team_id == _team.c.id, _proj.c.name == bindparam("project")))
        .join(_art, and_(_art.c.project_id == _proj.c.id, _art.c.name == bindparam("artifact")))
    )
    if by == "index":
        source = source.join(
            _av, and_(_av.c.artifact_id == _art.c.id, _av.c.version_index == bindparam("index"))
        )
    else:
        source = source.join(
            _aa, and_(_aa.c.artifact_id == _art.c.id, _aa.c.alias == bindparam("alias"))
        ).join(_av, _av.c.id == _aa.c.version_id)
    stmt = (
        select(
            *_registry_columns(),
            _av.c.id,
            _av.c.version_index,
            _av.c.digest,
            _av.c.metadata,
            _av.c.delete_time,
            _art.c.type,
            _team.c.org_id,
            caller_team_role,
            linked,
        )
        .select_from(source)
        .where(_org.c.name == bindparam("org"))
    )
    if dialect == "postgresql":
        stmt = stmt.with_for_update(of=_coll)
    return stmt


def _alias_target_statement(dialect: str) -> ClauseElement:
    """Registry and locked collection for an alias move."""
    stmt = (
        select(*_registry_columns())
        .select_from(_registry_collection())
        .where(_org.c.name == bindparam("org"))
    )
    if dialect == "postgresql":
        stmt = stmt.with_for_update(of=_coll)
    return stmt


def _alias_version_statement(dialect: str) -> ClauseElement:
    """The version an alias goes to (what its reply shows) and where the alias is now.

    Read after the collection lock, so on PostgreSQL it sees every committed move."""
    highest = (
        select(func.max(_highest_cv.c.version_index))
        .where(_highest_cv.c.collection_id == _cv.c.collection_id)
        .scalar_subquery()
    )
    return (
        select(
            _cv.c.id,
            _cv.c.tags,
            _cv.c.description,
            _cv.c.create_time,
            _cv.c.update_time,
            _user.c.name,
            _av.c.version_index,
            _av.c.digest,
            _av.c.metadata,
            _art.c.name,
            _art.c.type,
            _proj.c.name,
            _team.c.name,
            highest,
            joined_aliases(dialect, _version_ca, _cv.c.id),
            _ca.c.id,
            _holder_cv.c.version_index,
        )
        .select_from(
            _cv.join(_av, _av.c.id == _cv.c.artifact_version_id)
            .join(_art, _art.c.id == _av.c.artifact_id)
            .join(_proj, _proj.c.id == _art.c.project_id)
            .join(_team, _team.c.id == _proj.c.team_id)
            .outerjoin(_user, _user.c.id == _cv.c.linked_by_id)
            .outerjoin(
                _ca, and_(_ca.c.collection_id == _cv.c.collection_id, _ca.c.alias == bindparam("a"))
            )
            .outerjoin(_holder_cv, _holder_cv.c.id == _ca.c.version_id)
        )
        .where(_cv.c.collection_id == bindparam("cid"), _cv.c.version_index == bindparam("index"))
    )


def _alias_holders_statement(count: int) -> ClauseElement:
    """Where each of `count` aliases is now in the collection (absent ones give no row)."""
    return (
        select(_ca.c.alias, _ca.c.id, _holder_cv.c.version_index)
        .join(_holder_cv, _holder_cv.c.id == _ca.c.version_id)
        .where(
            _ca.c.collection_id == bindparam("cid"),
            _ca.c.alias.in_([bindparam(f"a{i}") for i in range(count)]),
        )
    )


def _statement(dialect: str, key: str, count: int) -> ClauseElement:
    if key == "link_index":
        return _link_statement(dialect, "index")
    if key == "link_alias":
        return _link_statement(dialect, "alias")
    if key == "alias_target":
        return _alias_target_statement(dialect)
    if key == "alias_version":
        return _alias_version_statement(dialect)
    if key == "alias_holders":
        return _alias_holders_statement(count)
    if key == "registry_share":
        return select(_reg.c.id).where(_reg.c.id == bindparam("rid")).with_for_update(read=True)
    if key == "undo_requested":
        return select(undo_requested(bindparam("mid")))
    if key == "insert_link":
        return (
            insert(_cv)
            .values(
                collection_id=bindparam("cid"),
                version_index=bindparam("index"),
                artifact_version_id=bindparam("av"),
                tags=bindparam("tags"),
                description=bindparam("text"),
                linked_by_id=bindparam("uid"),
                create_time=bindparam("now"),
                update_time=bindparam("now"),
            )
            .returning(_cv.c.id)
        )
    if key == "bump_collection":
        return (
            update(_coll)
            .where(_coll.c.id == bindparam("cid"))
            .values(
                next_version_index=_coll.c.next_version_index + _ONE,
                revision=_coll.c.revision + _ONE,
                update_time=bindparam("now"),
            )
        )
    if key == "move_alias":
        return (
            update(_ca)
            .where(_ca.c.id == bindparam("alias_id"))
            .values(version_id=bindparam("vid"), create_time=bindparam("now"))
        )
    if key == "insert_alias":
        # inline: no implicit RETURNING of the new id
        return (
            insert(_ca)
            .inline()
            .values(
                collection_id=bindparam("cid"),
                alias=bindparam("a"),
                version_id=bindparam("vid"),
                create_time=bindparam("now"),
            )
        )
    if key == "insert_event":
        # inline: no implicit RETURNING of the new id
        return (
            insert(_events)
            .inline()
            .values(
                org_id=bindparam("e_org"),
                registry_id=bindparam("e_registry"),
                team_id=bindparam("e_team"),
                type=bindparam("e_type"),
                actor=bindparam("e_actor"),
                resource=bindparam("e_resource"),
                time=bindparam("e_time"),
                details=bindparam("e_details"),
            )
        )
    if key == "event_lock":
        return select(func.pg_advisory_xact_lock(bindparam("space"), bindparam("e_org")))
    if key == "find_request":
        return select(_keys.c.response).where(
            _keys.c.user_id == bindparam("uid"),
            _keys.c.method == bindparam("method"),
            _keys.c.request_id == bindparam("rid"),
        )
    if key == "insert_request":
        # inline: no implicit RETURNING of the new id
        return (
            insert(_keys)
            .inline()
            .values(
                user_id=bindparam("uid"),
                method=bindparam("method"),
                request_id=bindparam("rid"),
                response=bindparam("body"),
                create_time=bindparam("now"),
            )
        )
    raise KeyError(key)


Params = Callable[[dict[str, Any]], Any]


@cache
def _compiled(dialect: Dialect, key: str, count: int = 0) -> tuple[str, Params]:
    """A statement as driver SQL, and what turns named parameters into the driver's
    (a tuple in statement order for positional drivers, the dict itself otherwise)."""
    compiled = cast(SQLCompiler, _statement(dialect.name, key, count).compile(dialect=dialect))
    order = tuple(compiled.positiontup or ()) if compiled.positional else None
    if order is None:
        return str(compiled), _same
    if len(order) <= 1:
        return str(compiled), lambda params: tuple(params[k] for k in order)
    return str(compiled), itemgetter(*order)


def _same(params: dict[str, Any]) -> dict[str, Any]:
    return params


class _Statements:
    """Runs precompiled statements on one DB-API connection."""

    def __init__(self, conn: Any, dialect: Dialect) -> None:
        self.dialect = dialect
        self.cursor = conn.cursor()

    def run(self, key: str, params: dict[str, Any], count: int = 0) -> Any:
        sql, bind = _compiled(self.dialect, key, count)
        self.cursor.execute(sql, bind(params))
        return self.cursor

    def run_many(self, key: str, rows: Sequence[dict[str, Any]]) -> None:
        if len(rows) == 1:  # psycopg runs executemany as a pipeline: dearer for one row
            self.run(key, rows[0])
        elif rows:
            sql, bind = _compiled(self.dialect, key)
            self.cursor.executemany(sql, [bind(row) for row in rows])

    def close(self) -> None:
        self.cursor.close()


def _json_in(value: Any) -> str:
    return json.dumps(value)


# --- requests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkRequest:
    """A validated LinkArtifactVersion whose source is a project artifact version."""

    org: str
    registry: str
    collection: str
    source: ParsedPath
    aliases: list[str]
    tags: list[str]
    description: str
    request_id: str


@dataclass(frozen=True)
class Written:
    """The reply, and the organization whose events were committed (None: no change)."""

    reply: r.CollectionVersion
    org_id: int | None


def prepare_link(
    org: str,
    registry_id: str,
    *,
    collection_id: str,
    artifact_version: str,
    aliases: Sequence[str],
    tags: Sequence[str],
    description: str,
    request_id: str,
) -> LinkRequest | None:
    """Validates like the general path (same errors, same order) and returns what the
    fast path can do, or None for the general path (other source forms; and, with a
    request_id, any invalid input, since a replayed request_id answers before input
    checks there)."""
    try:
        check_request_id(request_id)
        alias_list, tag_list = colls.validate_link(
            collection_id, artifact_version, aliases, tags, description
        )
    except InvalidArgument:
        if request_id:
            return None
        raise
    try:
        # The general path parses the source after its access checks; a bad reference
        # therefore goes there, to be reported in that order.
        source = parse_reference(artifact_version, "artifact_version")
    except InvalidArgument:
        return None
    if source.kind is not PathKind.PROJECT_ARTIFACT:
        return None
    return LinkRequest(
        org, registry_id, collection_id, source, alias_list, tag_list, description, request_id
    )


# --- transactions ---------------------------------------------------------------------------

Change = Callable[..., Written]  # runs on _Statements inside a transaction


async def _write(db: Database, change: Change, *args: Any) -> Written | None:
    """Runs `change` in a write transaction: on SQLite in the database's hot write
    process if it has one, else through its hot writer thread; on PostgreSQL
    (concurrent writers, network round trips) on the event loop, one transaction per
    change on an async connection (`storage.hot_async`)."""
    if db.is_sqlite:
        process = write_process.write_process(db)
        future = process.submit(change.__name__, args) if process is not None else None
        if future is not None:
            return cast(Written | None, await future)
        return await _sqlite_writer(db).submit(change, *args)
    pool = db.hot_async_writes
    assert pool is not None

    def in_transaction(conn: Any, dialect: Dialect) -> Written:
        sql = _Statements(conn, dialect)
        try:
            return change(sql, *args)
        finally:
            sql.close()

    try:
        return await pool.run(in_transaction, db.write_engine.dialect, transaction=True)
    except (_Fallback, psycopg.IntegrityError):
        return None


@dataclass
class _Job:
    change: Change
    args: tuple[Any, ...]
    future: asyncio.Future[Written | None]
    loop: asyncio.AbstractEventLoop


class _SqliteWriter:
    """One thread that runs the queued hot writes of a SQLite database, a batch of them
    per transaction (group commit).

    SQLite runs one writer at a time, so a pool of threads would only queue on the write
    connection, each waking the event loop on its own. This thread takes every queued
    change, opens one `BEGIN IMMEDIATE` transaction (`Database.write_connection`, the
    connection and lock every other writer uses), runs each change in a SAVEPOINT of its
    own (a change that falls back or fails rolls back alone and is answered alone),
    commits once, and only then answers the whole batch with one wake-up of the event
    loop. Each change is still atomic and acknowledged only once durable as configured;
    the commit's cost is shared. A batch holds the write lock for at most `BATCH_MAX`
    short changes. The thread ends after `IDLE_SECONDS` without work and starts again on
    demand."""

    BATCH_MAX = 64
    IDLE_SECONDS = 2.0

    def __init__(self, db: Database) -> None:
        self.db = db
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, change: Change, *args: Any) -> asyncio.Future[Written | None]:
        loop = asyncio.get_running_loop()
        job = _Job(change, args, loop.create_future(), loop)
        with self._lock:
            self._jobs.put(job)
            if not self._running:
                self._start()
        return job.future

    def _start(self) -> None:
        """Starts the thread (under `_lock`)."""
        self._running = True
        threading.Thread(target=self._serve, name="registry-hot-writer", daemon=True).start()

    def _serve(self) -> None:
        try:
            while True:
                try:
                    batch = [self._jobs.get(timeout=self.IDLE_SECONDS)]
                except queue.Empty:
                    return
                while len(batch) < self.BATCH_MAX:
                    try:
                        batch.append(self._jobs.get_nowait())
                    except queue.Empty:
                        break
                self._answer(batch, self._run_batch(batch))
        finally:
            with self._lock:  # submit() puts under this lock: empty now means idle
                self._running = False
                if not self._jobs.empty():
                    self._start()

    def _run_batch(self, batch: list[_Job]) -> list[Written | BaseException | None]:
        return run_batch(
            self.db,
            [None if job.future.cancelled() else (job.change, job.args) for job in batch],
        )

    @staticmethod
    def _answer(batch: list[_Job], outcomes: list[Written | BaseException | None]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Job, Any]]] = {}
        for job, outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(job.loop, []).append((job, outcome))
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(_deliver, answers)


def run_batch(
    db: Database, changes: Sequence[tuple[Change, tuple[Any, ...]] | None]
) -> list[Written | BaseException | None]:
    """Runs `changes` in one SQLite write transaction, each in a savepoint of its own:
    a change's outcome is its Written, None (it fell back; rolled back alone) or the
    exception it raised (rolled back alone). A change given as None (its caller is
    gone) changes nothing. If BEGIN or COMMIT fails, every outcome is that error."""
    dbapi: Any = db.write_engine.dialect.dbapi
    outcomes: list[Written | BaseException | None] = []
    try:
        with db.write_connection() as conn:
            sql = _Statements(conn, db.write_engine.dialect)
            try:
                for item in changes:
                    if item is None:
                        outcomes.append(None)
                        continue
                    change, args = item
                    sql.cursor.execute("SAVEPOINT hot_write")
                    try:
                        outcome: Written | BaseException | None = change(sql, *args)
                    except (_Fallback, dbapi.IntegrityError):
                        outcome = None
                    except dbapi.Error:
                        raise  # the connection is in trouble: the whole batch fails
                    except Exception as err:  # answered to its own caller only
                        outcome = err
                    if isinstance(outcome, Written):
                        sql.cursor.execute("RELEASE hot_write")
                    else:
                        sql.cursor.execute("ROLLBACK TO hot_write")
                        sql.cursor.execute("RELEASE hot_write")
                    outcomes.append(outcome)
            finally:
                sql.close()
    except Exception as err:  # BEGIN or COMMIT failed: nothing of the batch was kept
        return [err] * len(changes)
    return outcomes


def _deliver(answers: list[tuple[_Job, Any]]) -> None:
    for job, outcome in answers:
        if job.future.done():
            continue
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)


_writers: weakref.WeakKeyDictionary[Database, _SqliteWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def _sqlite_writer(db: Database) -> _SqliteWriter:
    with _writers_lock:
        writer = _writers.get(db)
        if writer is None:
            writer = _writers[db] = _SqliteWriter(db)
        return writer


# --- LinkArtifactVersion ----------------------------------------------------------------


async def link(db: Database, p: Principal, req: LinkRequest) -> Written | None:
    """Links `req.source` as the next version of an existing collection; None when the
    general use case must answer (see the module docstring)."""
    return await _write(db, _link, p, req)


def _link(sql: _Statements, p: Principal, req: LinkRequest) -> Written:
    if req.request_id:
        prior = sql.run(
            "find_request", {"uid": p.user_id, "method": LINK_METHOD, "rid": req.request_id}
        ).fetchone()
        if prior is not None:
            return Written(r.CollectionVersion.FromString(bytes(prior[0])), None)
    source = req.source
    params: dict[str, Any] = {
        "uid": p.user_id,
        "org": req.org,
        "registry": req.registry,
        "collection": req.collection,
        "team": source.root,
        "project": source.container,
        "artifact": source.item,
    }
    if source.version.index is not None:
        key = "link_index"
        params["index"] = source.version.index
    else:
        key = "link_alias"
        params["alias"] = source.version.alias
    row = sql.run(key, params).fetchone()
    if row is None:
        raise _Fallback  # no such registry, collection (to create) or source
    (
        registry_pk, org_id, visibility, default_role, artifact_types, allow_all, protected,
        direct, via_team, collection_pk, collection_type, next_index, migration_pk, undoing,
        av_pk, av_index, digest, metadata, delete_time, artifact_type, team_org_id,
        team_role, already_linked,
    ) = row  # fmt: skip
    role = combine_role(p, org_id, visibility, default_role, direct, via_team)
    if role < LINK_ROLE:
        raise _Fallback
    _require_protected_alias_right(role, protected, req.aliases)
    if team_org_id != p.org_id or not _sees_team(p, team_role) or delete_time is not None:
        raise _Fallback
    if not (allow_all or artifact_type in (json_value(artifact_types) or [])):
        raise _Fallback
    if collection_type != artifact_type or already_linked:
        raise _Fallback
    if migration_pk is not None and _undoing(sql, registry_pk, migration_pk, undoing):
        raise _Fallback  # FAILED_PRECONDITION (REGISTRY_READ_ONLY) from the general path

    now = now_us()
    link_pk = sql.run(
        "insert_link",
        {
            "cid": collection_pk,
            "index": next_index,
            "av": av_pk,
            "tags": _json_in(req.tags),
            "text": req.description,
            "uid": p.user_id,
            "now": now,
        },
    ).fetchone()[0]
    sql.run("bump_collection", {"cid": collection_pk, "now": now})
    version = names.collection_version_name(req.org, req.registry, req.collection, next_index)
    collection = names.collection_name(req.org, req.registry, req.collection)
    source_name = names.artifact_version_name(source.root, source.container, source.item, av_index)
    pending = [
        _event(
            org_id,
            registry_pk,
            p,
            events.VERSION_LINKED,
            version,
            now,
            {
                "collection": collection,
                "version_index": next_index,
                "artifact_version": source_name,
                "artifact_type": artifact_type,
                "aliases": req.aliases,
            },
        )
    ]
    if req.aliases:
        # The version is new: every alias moves onto it (from elsewhere, or from nowhere).
        holders = _alias_holders(sql, collection_pk, req.aliases)
        moved: list[dict[str, Any]] = []
        added: list[dict[str, Any]] = []
        for alias in req.aliases:
            holder = holders.get(alias)
            if holder is not None:
                moved.append({"alias_id": holder[0], "vid": link_pk, "now": now})
            else:
                added.append({"cid": collection_pk, "a": alias, "vid": link_pk, "now": now})
            pending.append(
                _alias_added(org_id, registry_pk, p, version, collection, alias, next_index, now,
                             holder[1] if holder is not None else None)
            )  # fmt: skip
        sql.run_many("move_alias", moved)
        sql.run_many("insert_alias", added)
    _write_events(sql, org_id, pending)
    reply = _version_reply(
        req.org,
        req.registry,
        req.collection,
        next_index,
        artifact_version=source_name,
        aliases=[LATEST, *sorted(req.aliases)],
        tags=req.tags,
        description=req.description,
        linked_by=p.user,
        create_time=now,
        update_time=now,
        metadata=json_value(metadata),
        digest=digest,
        artifact_type=artifact_type,
    )
    if req.request_id:
        sql.run(
            "insert_request",
            {
                "uid": p.user_id,
                "method": LINK_METHOD,
                "rid": req.request_id,
                "body": reply.SerializeToString(),
                "now": now,
            },
        )
    return Written(reply, org_id)


def _undoing(sql: _Statements, registry_pk: int, migration_pk: int, undoing: Any) -> bool:
    """Whether the registry's migration is being undone (`registry_freeze`): on SQLite the
    value read with the registry is current (one writer at a time); on PostgreSQL it is
    read again after taking the registry's share lock, as `check_writable` does."""
    if sql.dialect.name != "postgresql":
        return bool(undoing)
    sql.run("registry_share", {"rid": registry_pk})
    return bool(sql.run("undo_requested", {"mid": migration_pk}).fetchone()[0])


def _sees_team(p: Principal, team_role: int | None) -> bool:
    """The caller may see what the source team logged (team VIEW, as access.team_access)."""
    return p.org_admin or (team_role is not None and team_role != TeamRole.UNSPECIFIED)


def _require_protected_alias_right(
    role: RegistryRole, protected: Any, aliases: Sequence[str]
) -> None:
    if not aliases or role >= PROTECTED_ALIAS_ROLE:
        return
    guarded = set(json_value(protected) or [])
    if any(alias in guarded for alias in aliases):
        raise _Fallback  # PERMISSION_DENIED (PROTECTED_ALIAS) from the general path


def _alias_holders(
    sql: _Statements, collection_pk: int, aliases: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """alias -> (alias row id, version index it is on), for those that exist."""
    params: dict[str, Any] = {"cid": collection_pk}
    params.update({f"a{i}": alias for i, alias in enumerate(aliases)})
    rows = sql.run("alias_holders", params, len(aliases)).fetchall()
    return {alias: (alias_pk, index) for alias, alias_pk, index in rows}


# --- events ------------------------------------------------------------------------------


def _event(
    org_id: int,
    registry_pk: int,
    p: Principal,
    type: str,
    resource: str,
    now: int,
    details: dict[str, Any],
) -> dict[str, Any]:
    """An events row, as events.record_event builds it (registry-scoped)."""
    return {
        "e_org": org_id,
        "e_registry": registry_pk,
        "e_team": None,
        "e_type": type,
        "e_actor": p.name,
        "e_resource": resource,
        "e_time": now,
        "e_details": _json_in(details),
    }


def _alias_added(
    org_id: int,
    registry_pk: int,
    p: Principal,
    version: str,
    collection: str,
    alias: str,
    index: int,
    now: int,
    previous: int | None,
) -> dict[str, Any]:
    return _event(
        org_id,
        registry_pk,
        p,
        events.ALIAS_ADDED,
        version,
        now,
        {
            "alias": alias,
            "collection": collection,
            "version_index": index,
            "previous_version_index": previous,
        },
    )


def _write_events(sql: _Statements, org_id: int, rows: list[dict[str, Any]]) -> None:
    """Inserts the events last, as the session hook does: on PostgreSQL after taking the
    organization's event lock, which orders cursors by commit (see event_log)."""
    if sql.dialect.name == "postgresql":
        sql.run("event_lock", {"space": events.EVENT_LOCK_SPACE, "e_org": org_id})
    sql.run_many("insert_event", rows)


# --- AddAlias ------------------------------------------------------------------------------


async def add_alias(
    db: Database,
    p: Principal,
    ref: CollectionRef,
    index: int,
    alias: str,
    expected_version_index: int | None,
) -> Written | None:
    """Puts `alias` on version `index` (a validated request); None when the general use
    case must answer: every error, including ALIAS_CONFLICT of a failed compare-and-set."""
    return await _write(db, _add_alias, p, ref, index, alias, expected_version_index)


def _add_alias(
    sql: _Statements,
    p: Principal,
    ref: CollectionRef,
    index: int,
    alias: str,
    expected_version_index: int | None,
) -> Written:
    target = sql.run(
        "alias_target",
        {"uid": p.user_id, "org": ref.org, "registry": ref.registry, "collection": ref.collection},
    ).fetchone()
    if target is None:
        raise _Fallback
    (
        registry_pk, org_id, visibility, default_role, _, _, protected, direct, via_team,
        collection_pk,
    ) = target[:10]  # fmt: skip
    role = combine_role(p, org_id, visibility, default_role, direct, via_team)
    if role < ALIAS_ROLE:
        raise _Fallback
    _require_protected_alias_right(role, protected, [alias])
    migration_pk, undoing = target[12:14]
    if migration_pk is not None and _undoing(sql, registry_pk, migration_pk, undoing):
        raise _Fallback  # FAILED_PRECONDITION (REGISTRY_READ_ONLY) from the general path
    found = sql.run("alias_version", {"cid": collection_pk, "index": index, "a": alias}).fetchone()
    if found is None:
        raise _Fallback  # NOT_FOUND from the general path
    (
        version_pk, tags, description, create_time, update_time, linked_by,
        av_index, digest, metadata, artifact, artifact_type, project, team,
        highest, joined_aliases, holder_pk, holder_index,
    ) = found  # fmt: skip
    current = holder_index if holder_pk is not None else -1
    if expected_version_index is not None and expected_version_index != current:
        raise _Fallback  # ABORTED (ALIAS_CONFLICT) from the general path
    aliases = set(joined_aliases.split(",")) if joined_aliases else set()
    changed = holder_pk is None or current != index
    if changed and len(aliases) >= names.ALIASES_PER_VERSION:
        raise _Fallback  # INVALID_ARGUMENT (TOO_MANY_ALIASES) from the general path
    if changed:
        now = now_us()
        if holder_pk is not None:
            sql.run("move_alias", {"alias_id": holder_pk, "vid": version_pk, "now": now})
        else:
            sql.run(
                "insert_alias", {"cid": collection_pk, "a": alias, "vid": version_pk, "now": now}
            )
        version = names.collection_version_name(ref.org, ref.registry, ref.collection, index)
        _write_events(
            sql,
            org_id,
            [
                _alias_added(org_id, registry_pk, p, version, ref.name, alias, index, now,
                             holder_index if holder_pk is not None else None)
            ],
        )  # fmt: skip
        aliases.add(alias)
    ordered = sorted(aliases)
    if index == highest:
        ordered.insert(0, LATEST)
    reply = _version_reply(
        ref.org,
        ref.registry,
        ref.collection,
        index,
        artifact_version=names.artifact_version_name(team, project, artifact, av_index),
        aliases=ordered,
        tags=json_value(tags) or [],
        description=description,
        linked_by=linked_by,
        create_time=create_time,
        update_time=update_time,
        metadata=json_value(metadata),
        digest=digest,
        artifact_type=artifact_type,
    )
    return Written(reply, org_id if changed else None)


# the changes a hot write process may run, by name (service/write_process.py)
CHANGES: dict[str, Change] = {change.__name__: change for change in (_link, _add_alias)}


# --- replies ---------------------------------------------------------------------------------


def _version_reply(
    org: str,
    registry: str,
    collection: str,
    index: int,
    *,
    artifact_version: str,
    aliases: list[str],
    tags: list[str],
    description: str,
    linked_by: str | None,
    create_time: int,
    update_time: int,
    metadata: dict[str, Any] | None,
    digest: str,
    artifact_type: str,
) -> r.CollectionVersion:
    """The CollectionVersion proto, as api.collections.version_proto presents it."""
    reply = r.CollectionVersion(
        name=names.collection_version_name(org, registry, collection, index),
        version_index=index,
        artifact_version=artifact_version,
        aliases=aliases,
        tags=tags,
        description=description,
        linked_by=names.user_name(linked_by) if linked_by else "",
        digest=digest,
        type=artifact_type,
        path=paths.collection_version_path(org, registry, collection, index),
    )
    reply.create_time.FromMicroseconds(create_time)
    reply.update_time.FromMicroseconds(update_time)
    if metadata:
        reply.metadata.update(metadata)
    else:
        reply.metadata.SetInParent()
    return reply
