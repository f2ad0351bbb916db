"""The switch, once every team is verified: FAILED when any team mismatched; else, in one
transaction, each registered model redirects to its collection, the legacy registries
become MIGRATED and the migration SUCCEEDED. Before it commits, every redirect is checked
set-based, and a sample of legacy paths is resolved again through the shared resolver
(`service.resolve`), which must answer as it did before the switch; otherwise the switch
rolls back and the migration is FAILED."""

from __future__ import annotations

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from ...domain import paths
from ...domain.errors import RegistryError
from ...domain.roles import LegacyState, MigrationState, OrgRole
from ...storage import models as m
from ...storage.db import Database
from ...storage.sql import Sql
from .. import resolve
from ..context import Principal
from .common import (
    MISMATCHES_MAX,
    Lease,
    Outcome,
    TeamRow,
    actor_of,
    end_migration,
    legacy_state_events,
    let_others_run,
    migrated_collection,
    org_name,
    renew_lease,
    team_rows,
    tune_transaction,
)
from .verify import record_verification

# Legacy paths re-resolved through the shared resolver before the switch commits (the
# set-based checks already cover every path; this proves the resolver agrees).
RESOLVER_SAMPLE_PER_TEAM = 4
RESOLVER_SAMPLE_TOTAL = 8


class _SwitchRejected(Exception):
    """The resolver disagreed after the redirects were set: roll the switch back."""

    def __init__(self, checked: int, mismatches: list[str]) -> None:
        super().__init__("legacy paths resolve differently after the switch")
        self.checked = checked
        self.mismatches = mismatches


def finish_migration(db: Database, migration_id: int, lease: Lease) -> Outcome:
    """All teams verified: FAILED when any mismatched, else redirects + SUCCEEDED."""
    before = _legacy_answers(db, migration_id)
    try:
        with db.write() as s:
            tune_transaction(s)
            migration = renew_lease(s, migration_id, lease)
            if migration is None:
                return Outcome.LOST
            if migration.cancel_requested:
                return Outcome.MORE
            teams = team_rows(s, migration.id)
            failed = [t for t in teams if t.state == MigrationState.FAILED]
            if failed or migration.mismatches:
                migration.error = (
                    f"verification found mismatches in {len(failed)} team(s); the legacy "
                    "registries stay READ_ONLY until the migration is rolled back"
                )
                end_migration(s, migration, MigrationState.FAILED)
                return Outcome.DONE
            _switch(s, migration, teams, before)
            return Outcome.DONE
    except _SwitchRejected as rejected:
        with db.write() as s:
            migration = renew_lease(s, migration_id, lease)
            if migration is None:
                return Outcome.LOST
            record_verification(migration, rejected.checked, rejected.mismatches)
            migration.error = "legacy paths resolve differently after the switch"
            end_migration(s, migration, MigrationState.FAILED)
        return Outcome.DONE


def _legacy_answers(db: Database, migration_id: int) -> dict[str, tuple[str, bool, str]]:
    """What a sample of legacy paths resolves to before the switch, read outside the
    switch's transaction (the legacy registries are read-only: the answers cannot change
    meanwhile, and the switch holds its locks only for the updates and the re-check)."""
    with db.read() as s:
        migration = s.execute(
            select(m.Migration).where(m.Migration.id == migration_id)
        ).scalar_one()
        teams = team_rows(s, migration_id)
        if migration.mismatches or any(t.state == MigrationState.FAILED for t in teams):
            return {}
        principal = _verifier(s, migration, org_name(s, migration.org_id))
        answers: dict[str, tuple[str, bool, str]] = {}
        for path in _path_sample(s, teams):
            let_others_run()
            answers[path] = _resolve_outcome(s, principal, path)
        return answers


def _switch(
    s: Session,
    migration: m.Migration,
    teams: list[TeamRow],
    before: dict[str, tuple[str, bool, str]],
) -> None:
    """Redirects and legacy MIGRATED, then every redirect checked and the sample resolved
    again: SUCCEEDED, or _SwitchRejected (the caller rolls the transaction back)."""
    org = org_name(s, migration.org_id)
    team_names: dict[int, str] = dict(
        s.execute(
            select(m.Team.id, m.Team.name).where(m.Team.id.in_([mt.team_id for mt in teams]))
        ).all()
    )
    principal = _verifier(s, migration, org)
    ids = [t.team_id for t in teams]
    _redirect(s, migration, ids)
    mismatches = _unredirected_models(s, migration)
    mismatches.extend(_resolved_differently(s, principal, org, before))
    checked = len(before) + sum(mt.collections_total for mt in teams)
    if mismatches:
        raise _SwitchRejected(checked, mismatches)
    record_verification(migration, checked, [])
    s.execute(
        delete(m.ActiveTeamMigration).where(m.ActiveTeamMigration.migration_id == migration.id)
    )
    end_migration(s, migration, MigrationState.SUCCEEDED)
    teams_migrated = [(team_id, team_names[team_id]) for team_id in ids]
    legacy_state_events(
        s, migration, org, teams_migrated, LegacyState.MIGRATED, actor_of(s, migration)
    )


def _redirect(s: Session, migration: m.Migration, team_ids: list[int]) -> None:
    """Each registered model of the teams redirects to the collection migrated from it in
    its team's target registry; the legacy registries are MIGRATED to theirs."""
    rm, c, mt = m.RegisteredModel, m.Collection, m.MigrationTeam
    target_registry = (
        select(mt.target_registry_id)
        .where(mt.migration_id == migration.id, mt.team_id == rm.team_id)
        .correlate(rm)
        .scalar_subquery()
    )
    collection_id = (
        select(c.id).where(migrated_collection(target_registry)).correlate(rm).scalar_subquery()
    )
    s.execute(
        update(rm)
        .where(rm.team_id.in_(team_ids))
        .values(migrated_collection_id=collection_id)
        .execution_options(synchronize_session=False)
    )
    s.execute(
        update(m.Team)
        .where(m.Team.id.in_(team_ids))
        .values(
            legacy_state=int(LegacyState.MIGRATED),
            migrated_registry_id=select(mt.target_registry_id)
            .where(mt.migration_id == migration.id, mt.team_id == m.Team.id)
            .correlate(m.Team)
            .scalar_subquery(),
        )
        .execution_options(synchronize_session=False)
    )


def _resolved_differently(
    s: Session, principal: Principal, org: str, before: dict[str, tuple[str, bool, str]]
) -> list[str]:
    """The sampled legacy paths that the resolver, after the redirects, answers otherwise
    than before them, or does not redirect to a registry path."""
    mismatches: list[str] = []
    for path, (legacy_answer, _, _) in before.items():
        let_others_run()
        answer, redirected, canonical = _resolve_outcome(s, principal, path)
        if answer != legacy_answer:
            mismatches.append(
                f"{path}: resolved to {legacy_answer} before, {answer} after the switch"
            )
        elif legacy_answer.startswith("teams/") and not redirected:
            mismatches.append(f"{path}: not redirected to the migrated collection")
        elif redirected and not canonical.startswith(f"{org}/{paths.REGISTRY_PREFIX}"):
            mismatches.append(f"{path}: redirected to {canonical!r}, not a registry path")
    return mismatches


def _unredirected_models(s: Session, migration: m.Migration) -> list[str]:
    """Registered models of the migration's teams that do not redirect to the collection
    migrated from them in their team's target registry (every legacy path, set-based;
    the resolver sample then shows that ResolvePath follows these redirects)."""
    rm, c, mt = m.RegisteredModel, m.Collection, m.MigrationTeam
    rows = s.execute(
        select(m.Team.name, rm.name)
        .select_from(rm)
        .join(mt, and_(mt.migration_id == migration.id, mt.team_id == rm.team_id))
        .join(m.Team, m.Team.id == rm.team_id)
        .outerjoin(c, c.id == rm.migrated_collection_id)
        .where(
            or_(
                c.id.is_(None),
                c.registry_id != mt.target_registry_id,
                c.migrated_from_model_id != rm.id,
            )
        )
        .order_by(m.Team.name, rm.name)
        .limit(MISMATCHES_MAX)
    ).all()
    return [
        f"teams/{team}: registered model {model!r} does not redirect to its migrated collection"
        for team, model in rows
    ]


def _verifier(s: Session, migration: m.Migration, org: str) -> Principal:
    """An admin of the migration's organization, to resolve every path there."""
    return Principal(
        user_id=migration.created_by_id or 0,
        user="migration",
        org_id=migration.org_id,
        org=org,
        org_role=OrgRole.ADMIN,
        service_account=False,
    )


def _path_sample(s: Session, teams: list[TeamRow]) -> list[str]:
    """Legacy paths to re-resolve: per team the first models by name, each with every
    alias, `latest`, its first and its last version; bounded."""
    rm, v, a = m.RegisteredModel, m.RegisteredModelVersion, m.RegisteredModelAlias
    sample: list[str] = []
    for mt in teams:
        team = s.execute(select(m.Team.name).where(m.Team.id == mt.team_id)).scalar_one()
        rows = s.execute(
            select(rm.id, rm.name, func.min(v.version_index), func.max(v.version_index))
            .join(v, v.registered_model_id == rm.id)
            .where(rm.team_id == mt.team_id)
            .group_by(rm.id, rm.name)
            .order_by(rm.name)
            .limit(RESOLVER_SAMPLE_PER_TEAM // 4 + 1)
        ).all()
        aliases: dict[int, list[str]] = {}
        if rows:
            for model_id, alias in s.execute(
                select(a.registered_model_id, a.alias)
                .where(a.registered_model_id.in_([r[0] for r in rows]))
                .order_by(a.alias)
            ).all():
                aliases.setdefault(model_id, []).append(alias)
        team_paths: list[str] = []
        for model_id, name, low, high in rows:
            head = f"{team}/{paths.LEGACY_SEGMENT}/{name}"
            tokens = [*aliases.get(model_id, []), paths.LATEST, f"v{low}", f"v{high}"]
            team_paths.extend(f"{head}:{token}" for token in dict.fromkeys(tokens))
        sample.extend(team_paths[:RESOLVER_SAMPLE_PER_TEAM])
        if len(sample) >= RESOLVER_SAMPLE_TOTAL:
            break
    return sample[:RESOLVER_SAMPLE_TOTAL]


def _resolve_outcome(s: Session, p: Principal, path: str) -> tuple[str, bool, str]:
    """(artifact version name or error code, redirected, canonical path), from the one
    resolver ResolvePath uses."""
    try:
        found = resolve.resolve(Sql.of(s), p, paths.parse_path(path, "path"), allow_deleted=True)
    except RegistryError as e:
        return f"{e.code}:{e.reason}", False, ""
    return found.artifact_version.name, found.redirected, found.canonical_path
