"""The event outbox: every mutation records its event in its own transaction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session

from ..storage.db import now_us
from ..storage.queries import events as q
from ..storage.sql import Sql
from .context import Principal

# Event types (EventService). Kept as strings: they are part of the public contract.
VERSION_LINKED = "VERSION_LINKED"
VERSION_UNLINKED = "VERSION_UNLINKED"
ALIAS_ADDED = "ALIAS_ADDED"
ALIAS_REMOVED = "ALIAS_REMOVED"
TAGS_CHANGED = "TAGS_CHANGED"
COLLECTION_CREATED = "COLLECTION_CREATED"
COLLECTION_UPDATED = "COLLECTION_UPDATED"
COLLECTION_DELETED = "COLLECTION_DELETED"
REGISTRY_CREATED = "REGISTRY_CREATED"
REGISTRY_UPDATED = "REGISTRY_UPDATED"
REGISTRY_DELETED = "REGISTRY_DELETED"
MEMBER_ADDED = "MEMBER_ADDED"
MEMBER_UPDATED = "MEMBER_UPDATED"
MEMBER_REMOVED = "MEMBER_REMOVED"
ARTIFACT_VERSION_CREATED = "ARTIFACT_VERSION_CREATED"
ARTIFACT_VERSION_UPDATED = "ARTIFACT_VERSION_UPDATED"
ARTIFACT_VERSION_DELETED = "ARTIFACT_VERSION_DELETED"
ARTIFACT_VERSION_USED = "ARTIFACT_VERSION_USED"
PROJECT_CREATED = "PROJECT_CREATED"
ORGANIZATION_CREATED = "ORGANIZATION_CREATED"
ORGANIZATION_UPDATED = "ORGANIZATION_UPDATED"
USER_CREATED = "USER_CREATED"
USER_UPDATED = "USER_UPDATED"
SERVICE_ADMIN_GRANTED = "SERVICE_ADMIN_GRANTED"
SERVICE_ADMIN_REVOKED = "SERVICE_ADMIN_REVOKED"
API_KEY_CREATED = "API_KEY_CREATED"
API_KEY_REVOKED = "API_KEY_REVOKED"
TEAM_CREATED = "TEAM_CREATED"
TEAM_MEMBER_ADDED = "TEAM_MEMBER_ADDED"
TEAM_MEMBER_UPDATED = "TEAM_MEMBER_UPDATED"
TEAM_MEMBER_REMOVED = "TEAM_MEMBER_REMOVED"
LEGACY_MODEL_CREATED = "LEGACY_MODEL_CREATED"
LEGACY_MODEL_UPDATED = "LEGACY_MODEL_UPDATED"
LEGACY_MODEL_DELETED = "LEGACY_MODEL_DELETED"
LEGACY_VERSION_LINKED = "LEGACY_VERSION_LINKED"
LEGACY_VERSION_UPDATED = "LEGACY_VERSION_UPDATED"
LEGACY_VERSION_UNLINKED = "LEGACY_VERSION_UNLINKED"
LEGACY_ALIAS_SET = "LEGACY_ALIAS_SET"
LEGACY_ALIAS_DELETED = "LEGACY_ALIAS_DELETED"
LEGACY_SETTINGS_UPDATED = "LEGACY_SETTINGS_UPDATED"
MIGRATION_STATE_CHANGED = "MIGRATION_STATE_CHANGED"
AUTOMATION_CREATED = "AUTOMATION_CREATED"
AUTOMATION_DELETED = "AUTOMATION_DELETED"
AUTOMATION_UPDATED = "AUTOMATION_UPDATED"
# Recorded by TestAutomation and sent to the tested automation only (never subscribed).
AUTOMATION_TESTED = "AUTOMATION_TESTED"

# First key of the two-key advisory lock serializing an organization's events (PostgreSQL).
EVENT_LOCK_SPACE = 0x45564E54  # "EVNT"
# Session.info key: organizations whose events this transaction recorded.
PENDING_EVENT_ORGS = "registry_pending_event_orgs"
# Session.info key: event rows waiting for the commit.
PENDING_EVENTS = "registry_pending_events"


class Outbox(Protocol):
    """Where a transaction collects what it writes at commit: an ORM session, or a
    `storage.sql.Sql` (which shares its session's `info` when it has one)."""

    @property
    def info(self) -> dict[Any, Any]: ...


def record_event(
    target: Outbox,
    type: str,
    actor: Principal | str,
    resource: str,
    details: dict[str, Any] | None = None,
    *,
    org_id: int,
    registry_id: int | None = None,
    team_id: int | None = None,
) -> None:
    """Adds the event to the current transaction (committed or rolled back with it).

    The row is written just before commit (`write_pending`: by the session hook, or by
    whoever commits a `Sql` transaction). On PostgreSQL that step first takes the
    organization's event lock, held until commit, so an organization's event cursors
    commit in cursor order and a reader of `cursor > last` can never skip a
    late-committing lower cursor (see `event_log`). Taking it last, after every row
    lock the transaction needs, keeps it out of lock-order deadlocks and holds it only
    for the commit itself. SQLite serializes all writes already.
    """
    target.info.setdefault(PENDING_EVENTS, []).append(
        {
            "org_id": org_id,
            "registry_id": registry_id,
            "team_id": team_id,
            "type": type,
            "actor": actor if isinstance(actor, str) else actor.name,
            "resource": resource,
            "time": now_us(),
            "details": details or {},
        }
    )
    # Read after commit by the event hub (workers/event_hub.py) to wake this replica's
    # watchers at once.
    target.info.setdefault(PENDING_EVENT_ORGS, set()).add(org_id)


class _Scope(Protocol):
    """A team or a registry: what an event is scoped to."""

    @property
    def id(self) -> int: ...

    @property
    def org_id(self) -> int: ...


def scoped_event(
    target: Outbox,
    type: str,
    actor: Principal | str,
    resource: str,
    details: dict[str, Any] | None = None,
    *,
    team: _Scope | None = None,
    registry: _Scope | None = None,
) -> None:
    """`record_event` of a change in `team` or in `registry` (an event of its
    organization, scoped to it)."""
    scope = team or registry
    assert scope is not None
    record_event(
        target,
        type,
        actor,
        resource,
        details,
        org_id=scope.org_id,
        team_id=team.id if team is not None else None,
        registry_id=registry.id if registry is not None else None,
    )


def update_details(fields: Iterable[str], tags_before: Any, tags: Any) -> dict[str, Any]:
    """An update event's details: the fields changed, and the tags before and after when
    they are among them."""
    details: dict[str, Any] = {"fields": sorted(fields)}
    if "tags" in fields:
        details.update(tags_before=list(tags_before or []), tags=tags)
    return details


def write_pending(sql: Sql) -> int:
    """Writes the transaction's pending events (on PostgreSQL after the event locks of
    their organizations); the cursor of the last, 0 when there were none."""
    rows = sql.info.pop(PENDING_EVENTS, None)
    if not rows:
        return 0
    if sql.postgres:
        for org_id in sorted({row["org_id"] for row in rows}):
            sql.send(q.event_lock, {"space": EVENT_LOCK_SPACE, "org_id": org_id})
    last = 0
    for start in range(0, len(rows), q.EVENTS_PER_INSERT):
        chunk = rows[start : start + q.EVENTS_PER_INSERT]
        cursors = sql.all(q.insert_events, q.event_params(chunk), (len(chunk),))
        last = max(int(row[0]) for row in cursors)
    return last


def drop_pending(target: Outbox) -> None:
    """Forgets the events of a transaction (or savepoint) that rolled back."""
    target.info.pop(PENDING_EVENTS, None)
    target.info.pop(PENDING_EVENT_ORGS, None)


@event.listens_for(Session, "before_commit")
def _write_pending_events(session: Session) -> None:
    if session.info.get(PENDING_EVENTS):
        write_pending(Sql.of(session))


def record_event_now(session: Session, **fields: Any) -> int:
    """`record_event`, written at once (with any still pending): returns its cursor.
    The organization's event lock is then held until commit, so call it after every
    row lock the transaction takes, and keep the rest of the transaction short."""
    record_event(session, **fields)
    return write_pending(Sql.of(session))


@event.listens_for(Session, "after_rollback")
def _drop_pending_events(session: Session) -> None:
    session.info.pop(PENDING_EVENTS, None)
