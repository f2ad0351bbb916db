"""The event outbox: every mutation records its event in its own transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from ..storage import models as m
from ..storage.db import now_us
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


def record_event(
    session: Session,
    *,
    org_id: int,
    type: str,
    actor: Principal | str,
    resource: str,
    details: dict[str, Any] | None = None,
    registry_id: int | None = None,
    team_id: int | None = None,
) -> None:
    """Adds the event to the current transaction (committed or rolled back with it)."""
    session.execute(
        insert(m.Event).values(
            org_id=org_id,
            registry_id=registry_id,
            team_id=team_id,
            type=type,
            actor=actor if isinstance(actor, str) else actor.name,
            resource=resource,
            time=now_us(),
            details=details or {},
        )
    )
