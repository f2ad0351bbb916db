"""The event outbox's writes: every change's events go in last, on PostgreSQL after
the organization's event lock (`service.events`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.sql import ClauseElement, Select

from ..sql import query
from .tables import event

# An event's columns; row i of a statement binds each to the parameter `name_i`.
_COLUMNS = ("org_id", "registry_id", "team_id", "type", "actor", "resource", "time", "details")

# Rows per INSERT (`insert_events`): a statement per batch of changes on PostgreSQL
# (at most `workers.changes.BATCH_MAX` of them), and few distinct statements to prepare.
EVENTS_PER_INSERT = 32


def event_params(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The parameters of `insert_events` for `rows`."""
    return {f"{name}_{i}": row[name] for i, row in enumerate(rows) for name in _COLUMNS}


@query
def insert_events(dialect: str, count: int) -> ClauseElement:
    """`count` events in one statement, returning their cursors."""
    # typed: past the first row SQLAlchemy does not take the column's type (JSON)
    rows = [
        {name: bindparam(f"{name}_{i}", type_=event.c[name].type) for name in _COLUMNS}
        for i in range(count)
    ]
    return insert(event).values(rows).returning(event.c.cursor)


@query
def event_lock(dialect: str) -> Select[Any]:
    """PostgreSQL: the organization's event lock, held until commit."""
    return select(func.pg_advisory_xact_lock(bindparam("space"), bindparam("org_id")))
