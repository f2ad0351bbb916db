"""The copy step: the next batch of the running teams' legacy versions (by id after the
cursor, one keyset window across the teams) and their aliases, copied into the
collections by INSERT ... SELECT statements built once per dialect, the cursors moved in
the same transaction. A version linked in the new registry meanwhile wins (`CopyConflict`:
the step is redone skipping conflicts). When the window is empty the teams' copy is
done: collection indices continue after the legacy ones, and verification comes next."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, and_, any_, bindparam, case, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ...domain.roles import MigrationState
from ...storage import models as m
from ...storage.db import now_us
from ...storage.queries.tables import insert_skipping_conflicts
from .common import TeamRow, core_table, migrated_collection, set_state, tune_transaction

LEGACY_TABLES = ("registered_models", "registered_model_versions", "registered_model_aliases")
TARGET_TABLES = ("collections", "collection_versions", "collection_aliases")
# Before the first batch: the legacy tables, and the rows the set-up just added that every
# batch joins (a migration's teams and collections), so batches join by index.
COPY_TABLES = (*LEGACY_TABLES, "migration_teams", "collections")


def _refresh_statistics(s: Session, tables: Sequence[str]) -> None:
    """PostgreSQL plans from table statistics; legacy tables loaded in bulk and target
    tables that grew by the whole migration may not have been analyzed yet, and the
    copy and verification joins must use their indexes. (ANALYZE samples a bounded
    number of rows and takes no lock that blocks reads or writes.)"""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(text(f"ANALYZE {', '.join(tables)}"))


_VERSION_COLUMNS = ("collection_id", *m.LINK_COLUMNS)


@dataclass(frozen=True)
class _CopyStatements:
    """The copy step's statements, built once (bound parameters: migration, after,
    last, limit), so a step spends its time in the database, not building SQL."""

    window: Any
    versions: Any
    versions_skipping_conflicts: Any
    aliases: Any
    cursor: Any


@functools.cache
def _copy_statements(dialect: str) -> _CopyStatements:
    cv_t, ca_t, mt_t = (
        core_table(m.CollectionVersion),
        core_table(m.CollectionAlias),
        core_table(m.MigrationTeam),
    )
    source = _versions_source()
    columns = list(_VERSION_COLUMNS)
    return _CopyStatements(
        window=_window_statement(dialect),
        versions=insert(cv_t).from_select(columns, source),
        # a row a link or alias made in the new registry meanwhile is kept, not
        # overwritten (verification then reports the difference)
        versions_skipping_conflicts=insert_skipping_conflicts(dialect, cv_t).from_select(
            columns, source
        ),
        aliases=insert_skipping_conflicts(dialect, ca_t).from_select(
            ["collection_id", "alias", "version_id", "create_time"], _aliases_source()
        ),
        cursor=update(mt_t).where(
            mt_t.c.migration_id == bindparam("migration"),
            mt_t.c.state == int(MigrationState.RUNNING),
        ),
    )


def _window_statement(dialect: str) -> Any:
    """The next `limit` versions of the running teams after the cursor, by id, counted per
    team, with the last id. The teams are a list, not a join, so the planner estimates
    from the teams' share of the table (a primary-key range scan when they are many); an
    array on PostgreSQL (one parameter, one prepared statement)."""
    v_t, rm_t = core_table(m.RegisteredModelVersion), core_table(m.RegisteredModel)
    v, rm = v_t.c, rm_t.c
    teams = (
        rm.team_id == any_(bindparam("teams", type_=ARRAY(BigInteger)))
        if dialect == "postgresql"
        else rm.team_id.in_(bindparam("teams", expanding=True))
    )
    window = (
        select(v.id.label("id"), rm.team_id.label("team_id"))
        .join(rm_t, rm.id == v.registered_model_id)
        .where(teams, v.id > bindparam("after"))
        .order_by(v.id)
        .limit(bindparam("limit"))
        .subquery("window")
    )
    return select(window.c.team_id, func.count(), func.max(window.c.id)).group_by(window.c.team_id)


def _to_target_collection(legacy: Any, model_id: Any) -> Any:
    """`legacy` (rows carrying a registered model id, `model_id`) joined to the model, its
    running migration team and the collection migrated from it in the team's target
    registry, by the unique (registry_id, name)."""
    rm_t, mt_t = core_table(m.RegisteredModel), core_table(m.MigrationTeam)
    rm, mt = rm_t.c, mt_t.c
    running_team = and_(
        mt.migration_id == bindparam("migration"),
        mt.team_id == rm.team_id,
        mt.state == int(MigrationState.RUNNING),
    )
    return (
        legacy.join(rm_t, rm.id == model_id)
        .join(mt_t, running_team)
        .join(core_table(m.Collection), migrated_collection(mt.target_registry_id))
    )


def _versions_source() -> Any:
    """The window's legacy versions as collection version rows. The window's rows come
    first (MATERIALIZED: a primary-key range scan before any join, so each join after it
    is an index lookup per row whatever the statistics say)."""
    v, c = core_table(m.RegisteredModelVersion).c, core_table(m.Collection).c
    batch = (
        select(v.id, v.registered_model_id, *(v[name] for name in m.LINK_COLUMNS))
        .where(v.id > bindparam("after"), v.id <= bindparam("last"))
        .cte("batch")
        .prefix_with("MATERIALIZED")
    )
    b = batch.c
    return (
        select(c.id, *(b[name] for name in m.LINK_COLUMNS))
        .select_from(_to_target_collection(batch, b.registered_model_id))
        .order_by(b.id)
    )


def _aliases_source() -> Any:
    """The window's aliases (by their version id, an index range scan: few versions have
    one) onto the versions just copied (same collection, index and artifact version; a
    version skipped for a conflict gets none)."""
    v_t, a = core_table(m.RegisteredModelVersion), core_table(m.RegisteredModelAlias).c
    c, cv_t = core_table(m.Collection).c, core_table(m.CollectionVersion)
    v, cv = v_t.c, cv_t.c
    batch_aliases = (
        select(
            a.id,
            a.alias,
            a.create_time,
            v.registered_model_id,
            v.version_index,
            v.artifact_version_id,
        )
        .join(v_t, v.id == a.version_id)
        .where(a.version_id > bindparam("after"), a.version_id <= bindparam("last"))
        .cte("batch_aliases")
        .prefix_with("MATERIALIZED")
    )
    ba = batch_aliases.c
    return (
        select(c.id, ba.alias, cv.id, ba.create_time)
        .select_from(
            _to_target_collection(batch_aliases, ba.registered_model_id).join(
                cv_t,
                and_(
                    cv.collection_id == c.id,
                    cv.version_index == ba.version_index,
                    cv.artifact_version_id == ba.artifact_version_id,
                ),
            )
        )
        .order_by(ba.id)
    )


class CopyConflict(Exception):
    """A copied version collided with one linked in the new registry meanwhile: the step
    is redone in a fresh transaction, keeping theirs."""


def copy_batch(
    s: Session,
    migration: m.Migration,
    running: list[TeamRow],
    batch_size: int,
    *,
    skip_conflicts: bool = False,
) -> None:
    """Copies the next `batch_size` versions of the running teams (by id, after the
    cursor) and their aliases: one statement finds the window's end and per-team counts,
    one INSERT ... SELECT copies the versions, one the aliases, and one moves the cursors,
    all in this transaction. One keyset window over all the teams keeps the scan dense
    when many teams migrate together."""
    dialect = s.get_bind().dialect.name
    sql = _copy_statements(dialect)
    cursor = min(row.cursor for row in running)
    if cursor == 0:
        _refresh_statistics(s, COPY_TABLES)  # once, before the first batch
    params = {"migration": migration.id, "after": cursor}
    teams = [row.team_id for row in running]
    per_team = s.execute(sql.window, {**params, "limit": batch_size, "teams": teams}).all()
    if not per_team:
        _finish_copy(s, migration, running)
        return
    tune_transaction(s, asynchronous_commit=True)  # a batch records no event
    params["last"] = hi = max(int(last) for _, _, last in per_team)
    counts = {int(team_id): int(n) for team_id, n, _ in per_team}
    if skip_conflicts:
        s.execute(sql.versions_skipping_conflicts, params)
    else:
        # A plain INSERT: cheaper per row than ON CONFLICT's speculative insertion; a
        # conflict (a link made in the new registry meanwhile) is rare, and redoes the
        # step with the other statement.
        try:
            s.execute(sql.versions, params)
        except IntegrityError as e:
            raise CopyConflict() from e
    s.execute(sql.aliases, params)
    mt = core_table(m.MigrationTeam).c
    s.execute(
        sql.cursor.values(
            cursor=hi, versions_done=mt.versions_done + case(counts, value=mt.team_id, else_=0)
        ),
        {"migration": migration.id},
    )
    migration.progress_done = migration.progress_done + sum(counts.values())
    migration.update_time = now_us()


def _finish_copy(s: Session, migration: m.Migration, running: list[TeamRow]) -> None:
    """The teams' versions are copied: indices continue after the legacy ones, and
    verification comes next (members follow the teams by themselves)."""
    rm, c = m.RegisteredModel, m.Collection
    targets = [
        (row.target_registry_id, row.team_id)
        for row in running
        if row.target_registry_id is not None
    ]
    legacy_next = (
        select(rm.next_version_index)
        .where(rm.id == c.migrated_from_model_id)
        .correlate(c)
        .scalar_subquery()
    )
    s.execute(
        update(c)
        .where(
            c.registry_id.in_([registry_id for registry_id, _ in targets]),
            c.migrated_from_model_id.is_not(None),
            c.next_version_index < legacy_next,
        )
        .values(next_version_index=legacy_next)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        update(m.MigrationTeam)
        .where(m.MigrationTeam.id.in_([row.id for row in running]))
        .values(state=int(MigrationState.VERIFYING))
        .execution_options(synchronize_session=False)
    )
    migration.update_time = now_us()
    if migration.state == MigrationState.RUNNING:
        _refresh_statistics(s, TARGET_TABLES)
        set_state(s, migration, MigrationState.VERIFYING)
