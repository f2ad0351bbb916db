"""The event outbox's writes: every change's events go in last, on PostgreSQL after
the organization's event lock (`service.events`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.sql import ClauseElement, Select

from ..sql import query
from .tables import event

# An event's columns, each bound to the parameter of its name.
_COLUMNS = ("org_id", "registry_id", "team_id", "type", "actor", "resource", "time", "details")


def _values() -> dict[str, Any]:
    return {name: bindparam(name) for name in _COLUMNS}


@query
def insert_event(dialect: str) -> ClauseElement:
    # inline: no implicit RETURNING of the new cursor
    return insert(event).inline().values(**_values())


@query
def insert_event_returning(dialect: str) -> ClauseElement:
    return insert(event).values(**_values()).returning(event.c.cursor)


@query
def event_lock(dialect: str) -> Select[Any]:
    """PostgreSQL: the organization's event lock, held until commit."""
    return select(func.pg_advisory_xact_lock(bindparam("space"), bindparam("org_id")))
