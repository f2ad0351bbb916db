"""The writes that run outside the worker pool: LinkArtifactVersion and AddAlias.

A change is a function over a `storage.sql.Sql` in an open write transaction that
returns `Written`: the serialized answer (a LinkArtifactVersion kept under its
request_id in the same transaction, AIP-155) and the organization whose events it
recorded. Where it runs:

    the write child      (`write_child`) every change that has arrived, in one
                         transaction (`run_batch`), so the server's event loop never
                         holds the interpreter lock for a write's Python, nor waits
                         for its statements
    a worker thread      in an ORM session (no child yet, or it died with the change
                         unanswered, or a change the batch left to it)

Both run the same function: only the connection differs. A batch's events and COMMIT
(and on PostgreSQL its WAL flush) come once per batch. A batch runs without
savepoints, unless a change fails after it wrote: it then runs again, a savepoint each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.presenters import version_proto
from ..domain.errors import RegistryError
from ..domain.names import CollectionRef
from ..service import events, idempotency, links
from ..service.context import Principal
from ..storage.db import Database
from ..storage.sql import Sql

log = logging.getLogger("registry.changes")

LINK_METHOD = "LinkArtifactVersion"  # the request_id's method, as App.create records it


@dataclass(frozen=True)
class Written:
    """A change's serialized answer, and the organization whose events it recorded
    (None: nothing changed)."""

    answer: bytes
    org_id: int | None


def link(sql: Sql, p: Principal, req: links.LinkRequest, request_id: str) -> Written:
    """`req`: checked by the servicer (`links.link_request`) before it sent the change."""
    if request_id:
        prior = idempotency.find_answer(sql, p, LINK_METHOD, request_id)
        if prior is not None:
            return Written(prior, None)
    done = links.link(sql, p, req)
    answer = version_proto(done.view).SerializeToString()
    if request_id:
        idempotency.keep_answer(sql, p, LINK_METHOD, request_id, answer)
    return Written(answer, done.org_id)


def add_alias(
    sql: Sql,
    p: Principal,
    ref: CollectionRef,
    index: int,
    alias: str,
    expected_version_index: int | None,
) -> Written:
    done = links.add_alias(sql, p, ref, index, alias, expected_version_index)
    return Written(version_proto(done.view).SerializeToString(), done.org_id)


Change = Callable[..., Written]
CHANGES: dict[str, Change] = {"link": link, "add_alias": add_alias}


def run(sql: Sql, name: str, args: tuple[Any, ...]) -> Written:
    """Change `name` in `sql`'s open transaction, its events written last."""
    written = CHANGES[name](sql, *args)
    events.write_pending(sql)
    return written


Outcome = Written | RegistryError | None


def lock_order(job: tuple[str, tuple[Any, ...]]) -> str:
    """The collection a change locks (every change takes its collection's row lock
    first): a batch takes them in this order, the same in every process, so that two
    batches never wait for each other's locks in a cycle."""
    _name, args = job
    ref = args[1] if len(args) > 1 else None
    if isinstance(ref, links.LinkRequest):
        ref = ref.collection
    return ref.name if isinstance(ref, CollectionRef) else ""


class UndoBatch(Exception):
    """A change of a batch run without savepoints failed after it wrote (or after a
    statement of it failed): only rolling the whole transaction back undoes it."""


def run_batch_in(
    conn: Any,
    dialect: Any,
    jobs: Sequence[tuple[str, tuple[Any, ...]]],
    *,
    savepoints: bool = True,
) -> list[Outcome]:
    """Runs `jobs` (change name, arguments) in the open transaction of `conn` (a DB-API
    connection), in `lock_order`, each in a savepoint of its own: a job's outcome is its
    Written, the RegistryError it raised (rolled back alone), or None when it was not
    run here (an unknown change, a constraint that failed, a fault: rolled back alone,
    the caller runs it again elsewhere). The events of the jobs that succeeded are
    written last, after every row lock (`events.write_pending`). The savepoints are
    never released (a statement less per change): each is nested in the one before,
    and ROLLBACK TO undoes the latest of the name.

    Without `savepoints` (a statement less per change again) a change that fails
    before it wrote anything, as its checks do, leaves nothing to undo; one that fails
    otherwise (`Sql.dirty`) raises UndoBatch, and the caller rolls back and runs the
    batch again with savepoints."""
    integrity_error = dialect.dbapi.IntegrityError
    outbox = Sql(conn, dialect)
    written_events: list[Any] = outbox.info.setdefault(events.PENDING_EVENTS, [])
    outcomes: list[Outcome] = [None] * len(jobs)
    cursor = conn.cursor()
    for i in sorted(range(len(jobs)), key=lambda i: lock_order(jobs[i])):
        name, args = jobs[i]
        if name not in CHANGES:
            continue
        sql = Sql(conn, dialect)
        if savepoints:
            cursor.execute("SAVEPOINT change")
        outcome: Outcome
        try:
            outcome = CHANGES[name](sql, *args)
            sql.settle()
        except Exception as err:
            if not savepoints and sql.dirty:
                raise UndoBatch(name) from err
            outcome = _failed(name, err, integrity_error)
        if isinstance(outcome, Written):
            written_events += sql.info.get(events.PENDING_EVENTS, ())
        elif savepoints:
            cursor.execute("ROLLBACK TO change")
        outcomes[i] = outcome
    cursor.close()
    events.write_pending(outbox)
    return outcomes


def _failed(name: str, err: Exception, integrity_error: type[Exception]) -> RegistryError | None:
    """The outcome of change `name` that raised `err`: a RegistryError is its answer; a
    constraint that failed, or a fault, runs again on a worker thread (which reports a
    fault)."""
    if isinstance(err, RegistryError):
        return err
    if not isinstance(err, integrity_error):
        log.error("change %s failed in a write batch", name, exc_info=err)
    return None


def run_batch(db: Database, jobs: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Outcome]:
    """`run_batch_in` one write transaction, without savepoints unless a change
    has to be undone alone (`UndoBatch`: rolled back, then again with savepoints). If
    BEGIN or COMMIT fails, every outcome is None."""
    dbapi: Any = db.write_engine.dialect.dbapi
    try:
        try:
            with db.write_connection() as conn:
                return run_batch_in(conn, db.write_engine.dialect, jobs, savepoints=False)
        except UndoBatch:
            with db.write_connection() as conn:
                return run_batch_in(conn, db.write_engine.dialect, jobs)
    except (dbapi.Error, RegistryError):  # BEGIN or COMMIT failed: nothing was kept
        return [None] * len(jobs)
