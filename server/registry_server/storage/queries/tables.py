"""Core tables and the table aliases the statements share, declared once."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .. import models as m


def _table(model: Any) -> Table:
    return cast(Table, model.__table__)


def insert_skipping_conflicts(dialect: str, table: Any) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING in `dialect` (a row already there is kept)."""
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing()
    return sqlite_insert(table).on_conflict_do_nothing()


org = _table(m.Organization)
user = _table(m.User)
team = _table(m.Team)
team_member = _table(m.TeamMember)
registry_admin = _table(m.LegacyRegistryAdmin)
project = _table(m.Project)
artifact = _table(m.Artifact)
artifact_version = _table(m.ArtifactVersion)
artifact_alias = _table(m.ArtifactAlias)
registry = _table(m.Registry)
registry_member = _table(m.RegistryMember)
collection = _table(m.Collection)
collection_version = _table(m.CollectionVersion)
collection_alias = _table(m.CollectionAlias)
registered_model = _table(m.RegisteredModel)
model_version = _table(m.RegisteredModelVersion)
model_alias = _table(m.RegisteredModelAlias)
migration = _table(m.Migration)
migration_team = _table(m.MigrationTeam)
event = _table(m.Event)
request_key = _table(m.IdempotencyKey)

# Second copies, for subqueries and outer joins over a table the statement already uses.
linker = user.alias("linker")
creator = user.alias("creator")
highest_cv = collection_version.alias("highest_cv")
holder_cv = collection_version.alias("holder_cv")
cv_aliases = collection_alias.alias("cv_aliases")
av_aliases = artifact_alias.alias("av_aliases")
model_aliases = model_alias.alias("model_aliases")
highest_mv = model_version.alias("highest_mv")
artifact_team = team.alias("artifact_team")
caller_membership = team_member.alias("caller_membership")
