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

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import names
from ..storage import models as m
from ..storage.sql import Sql
from . import access

READ_ONLY_REASON = access.READ_ONLY_REASON


def check_writable(s: Session, registry: m.Registry, what: str = "") -> None:
    """FAILED_PRECONDITION when `registry` was created by a migration that is being
    undone (`access.require_writable`); call it in every write to a registry, after the
    access checks."""
    if registry.migration_id is None:  # registries no migration created pay nothing
        return
    org = s.get(m.Organization, registry.org_id)
    name = what or names.registry_name(org.name if org else "", registry.name)
    access.require_writable(Sql.of(s), registry.id, registry.migration_id, name)


def freeze(s: Session, migration_id: int) -> None:
    """The request's side (PostgreSQL): waits for writes in flight to the migration's
    registries, and holds them off until the request commits."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(
            select(m.Registry.id).where(m.Registry.migration_id == migration_id).with_for_update()
        )
