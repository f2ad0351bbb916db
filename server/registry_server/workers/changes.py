"""The writes that run outside the worker pool: LinkArtifactVersion and AddAlias.

A change is a function over a `storage.sql.Sql` in an open write transaction that
returns `Written`: the serialized answer (a LinkArtifactVersion kept under its
request_id in the same transaction, AIP-155) and the organization whose events it
recorded. Where it runs:

    SQLite       the write child (`write_child`): every change that has arrived in one
                 transaction, a savepoint each (`run_batch`), so the server's event
                 loop never holds the interpreter lock for a write's Python
    PostgreSQL   the event loop, one transaction each, on the async write pool
                 (`storage.hot_async`): the loop serves other calls while it waits
    otherwise    a worker thread, in an ORM session (no child yet, or it died with the
                 change unanswered)

Every place runs the same function: only the connection differs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

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


def link(
    sql: Sql,
    p: Principal,
    ref: CollectionRef,
    artifact_version: str,
    aliases: Sequence[str],
    tags: Sequence[str],
    description: str,
    request_id: str,
) -> Written:
    if request_id:
        prior = idempotency.find_answer(sql, p, LINK_METHOD, request_id)
        if prior is not None:
            return Written(prior, None)
    req = links.link_request(ref, artifact_version, aliases, tags, description)
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


def run_batch(db: Database, jobs: Sequence[tuple[str, tuple[Any, ...]]]) -> list[Outcome]:
    """Runs `jobs` (change name, arguments) in one SQLite write transaction, each in a
    savepoint of its own: a job's outcome is its Written, the RegistryError it raised
    (rolled back alone), or None when it was not run here (an unknown change, a
    constraint that failed: rolled back alone, the caller runs it again elsewhere). If
    BEGIN or COMMIT fails, every outcome is None."""
    dbapi: Any = db.write_engine.dialect.dbapi
    outcomes: list[Outcome] = []
    try:
        with db.write_connection() as conn:
            cursor = conn.cursor()
            for name, args in jobs:
                sql = Sql(conn, db.write_engine.dialect)
                if name not in CHANGES:
                    outcomes.append(None)
                    continue
                cursor.execute("SAVEPOINT change")
                outcome: Outcome
                try:
                    outcome = run(sql, name, args)
                except RegistryError as err:
                    outcome = err
                except dbapi.IntegrityError:
                    outcome = None
                except Exception:  # a fault: run again on a worker thread, which reports it
                    log.exception("change %s failed in the write child", name)
                    outcome = None
                if isinstance(outcome, Written):
                    cursor.execute("RELEASE change")
                else:
                    events.drop_pending(sql)
                    cursor.execute("ROLLBACK TO change")
                    cursor.execute("RELEASE change")
                outcomes.append(outcome)
            cursor.close()
    except (dbapi.Error, RegistryError):  # BEGIN or COMMIT failed: nothing was kept
        return [None] * len(jobs)
    return outcomes


async def run_on_loop(db: Database, name: str, args: tuple[Any, ...]) -> Written | None:
    """PostgreSQL: the change in a transaction of its own on the event loop's write
    pool; None when it lost a race on a unique key (the caller runs it again)."""
    pool = db.hot_async_writes
    assert pool is not None

    def in_transaction(conn: Any, dialect: Any) -> Written:
        return run(Sql(conn, dialect), name, args)

    try:
        return await pool.run(in_transaction, db.write_engine.dialect, transaction=True)
    except psycopg.IntegrityError:
        return None
