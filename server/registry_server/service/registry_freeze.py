"""A migrated registry refuses writes once its migration is being undone.

Rolling back (or cancelling) a migration carries every change made in its registries
back into the legacy registries (`carry_back`), then removes the registries. A write
that landed between the carry-back and the removal would be acknowledged and then lost,
so from the request on, every write to those registries answers FAILED_PRECONDITION
`REGISTRY_READ_ONLY` (reads keep working). The registries are frozen exactly while
their migration has `cancel_requested` set: no state of its own to keep in step.

Writes and the request serialize like legacy writes and StartMigration do: on
PostgreSQL a write to a migrated registry takes a share lock on the registry row and
then reads its migration in a new statement (so a request committed meanwhile is seen),
and the request takes the registries' rows FOR UPDATE before it computes what to carry
back. A write either commits before the request reads (and is carried back) or sees the
freeze. SQLite serializes writers already. Registries that no migration created pay
nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain.errors import FailedPrecondition
from ..storage import models as m

READ_ONLY_REASON = "REGISTRY_READ_ONLY"


def undo_requested(migration_id: Any) -> Any:
    """SQL: whether the migration with id `migration_id` (a column or a parameter) is
    being undone (NULL when there is none)."""
    return (
        select(m.Migration.cancel_requested).where(m.Migration.id == migration_id).scalar_subquery()
    )


def check_writable(s: Session, registry: m.Registry, what: str = "") -> None:
    """FAILED_PRECONDITION when `registry` was created by a migration that is being
    undone; call it in every write to a registry, after the access checks."""
    if registry.migration_id is None:
        return
    if s.get_bind().dialect.name == "postgresql":
        s.execute(
            select(m.Registry.id).where(m.Registry.id == registry.id).with_for_update(read=True)
        )
    row = s.execute(
        select(m.Migration.uid, m.Organization.name, m.Team.name)
        .join(m.Organization, m.Organization.id == m.Migration.org_id)
        .outerjoin(m.Team, m.Team.id == registry.migrated_from_team_id)
        .where(m.Migration.id == registry.migration_id, m.Migration.cancel_requested.is_(True))
    ).first()
    if row is None:
        return
    uid, org, team = row
    migration = f"organizations/{org}/migrations/{uid}"
    legacy = f"the legacy Model Registry of teams/{team}" if team else "the legacy registry"
    raise FailedPrecondition(
        f"{what or f'organizations/{org}/registries/{registry.name}'} is read-only: "
        f"{migration} is being undone and its changes are going back into {legacy}, "
        "which is writable again once that ends",
        reason=READ_ONLY_REASON,
        metadata={"migration": migration, **({"team": f"teams/{team}"} if team else {})},
    )


def freeze(s: Session, migration_id: int) -> None:
    """The request's side (PostgreSQL): waits for writes in flight to the migration's
    registries, and holds them off until the request commits."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(
            select(m.Registry.id).where(m.Registry.migration_id == migration_id).with_for_update()
        )
