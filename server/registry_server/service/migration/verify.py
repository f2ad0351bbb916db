"""The verification step: a group of copied teams (up to VERIFY_GROUP_VERSIONS versions
together) compared with their legacy registries, set-based, in a read transaction (no
locks): registries, collections, every version (artifact version, digest, tags,
description, author, time), every alias, and for every principal who could have access on
either side the same allow/deny (planned access changes are listed, not mismatches). The
statements are built once; the result is recorded in a short write, where a team with a
mismatch becomes FAILED."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, exists, func, or_, select, union
from sqlalchemy.orm import Session

from ...domain.roles import MigrationState, OrgRole, TeamRole, Visibility, legacy_allows
from ...storage import models as m
from ...storage.db import Database, now_us
from ..access import effective_role
from ..context import Principal
from .common import (
    COLLECTION_TYPE,
    MISMATCHES_MAX,
    Lease,
    Outcome,
    core_table,
    let_others_run,
    migrated_collection,
    renew_lease,
    tune_transaction,
)
from .member_access import (
    ACCESS_OPERATIONS,
    AccessChange,
    access_change,
    expected_team_role,
    registry_allows,
)

# A verification step compares whole teams of up to this many versions together (at least
# one team): one read-only pass of a few statements, no locks, cheaper per version than
# the copy, and with a fixed cost per step that small groups would pay again and again.
VERIFY_GROUP_VERSIONS = 25_000


@dataclass
class Verification:
    checked: int = 0
    mismatches: list[str] = field(default_factory=list)
    total_mismatches: int = 0
    access_changes: list[AccessChange] = field(default_factory=list)

    def mismatch(self, text: str) -> None:
        self.total_mismatches += 1
        if len(self.mismatches) < MISMATCHES_MAX:
            self.mismatches.append(text)


@dataclass
class _Checked:
    """One team of a verification group: its legacy registry and its target."""

    team: m.Team
    registry: m.Registry
    out: Verification
    versions: int = 0  # legacy versions, as counted by _verify_collections

    @property
    def label(self) -> str:
        return f"teams/{self.team.name}"


def verify_step(db: Database, migration_id: int, lease: Lease, verify_ids: list[int]) -> Outcome:
    """Verifies a group of copied teams (`verify_teams`, a read), then records each
    team's result under a renewed lease: SUCCEEDED, or FAILED with its mismatches. A team
    no longer VERIFYING (an undo was asked for meanwhile) records nothing."""
    results = verify_teams(db, verify_ids)
    with db.write() as s:
        migration = renew_lease(s, migration_id, lease)
        if migration is None:
            return Outcome.LOST
        if migration.cancel_requested:
            return Outcome.MORE
        verifying = {
            mt.id: mt
            for mt in s.execute(
                select(m.MigrationTeam).where(
                    m.MigrationTeam.id.in_(verify_ids),
                    m.MigrationTeam.state == int(MigrationState.VERIFYING),
                )
            ).scalars()
        }
        for mt_id in verify_ids:  # in team order, so mismatches list in team order
            mt = verifying.get(mt_id)
            if mt is None:
                continue
            result = results[mt_id]
            record_verification(migration, result.checked, result.mismatches, result.access_changes)
            mt.state = int(MigrationState.FAILED if result.mismatches else MigrationState.SUCCEEDED)
    return Outcome.MORE


def verify_teams(db: Database, migration_team_ids: Sequence[int]) -> dict[int, Verification]:
    """Independent, set-based comparison of a group of teams' legacy registries with
    their targets, a fixed number of statements for the whole group (read-only; runs
    without blocking anyone). Keyed by migration team id."""
    with db.read() as s:
        tune_transaction(s)
        results: dict[int, Verification] = {}
        group: dict[int, _Checked] = {}  # by team id
        verified: list[int] = []  # their migration team ids
        for mt, team, registry in s.execute(
            select(m.MigrationTeam, m.Team, m.Registry)
            .join(m.Team, m.Team.id == m.MigrationTeam.team_id)
            .outerjoin(m.Registry, m.Registry.id == m.MigrationTeam.target_registry_id)
            .where(m.MigrationTeam.id.in_(list(migration_team_ids)))
            .order_by(m.MigrationTeam.id)
        ).all():
            out = results[mt.id] = Verification()
            if registry is None:
                out.mismatch(
                    f"teams/{team.name}: the target registry {mt.target_name!r} no longer exists"
                )
                continue
            checked = group[team.id] = _Checked(team, registry, out)
            verified.append(mt.id)
            _verify_registry(checked)
        if group:
            params = {"team_migrations": verified, "teams": list(group)}
            _verify_collections(s, params, group)
            _verify_versions(s, params, group)
            _verify_aliases(s, params, group)
            _verify_access(s, params, group)
        for checked in group.values():
            out = checked.out
            if out.total_mismatches > len(out.mismatches):
                out.mismatches.append(
                    f"{checked.label}: ... {out.total_mismatches - len(out.mismatches)} more "
                    "mismatch(es)"
                )
        return results


def record_verification(
    migration: m.Migration,
    checked: int,
    mismatches: list[str],
    access_changes: Sequence[AccessChange] = (),
) -> None:
    """Adds what a verification found to the migration: the values checked, and its
    mismatches and planned access changes as far as MISMATCHES_MAX lists them."""
    migration.verification_checked = migration.verification_checked + checked
    if mismatches:
        listed = list(migration.mismatches or [])
        room = MISMATCHES_MAX - len(listed)
        listed.extend(mismatches[: max(room, 0)])
        migration.mismatches = listed
    if access_changes:
        changes = list(migration.access_changes or [])
        room = MISMATCHES_MAX - len(changes)
        changes.extend(c.as_json() for c in access_changes[: max(room, 0)])
        migration.access_changes = changes
    migration.update_time = now_us()


def _verify_registry(checked: _Checked) -> None:
    out, label, team, registry = checked.out, checked.label, checked.team, checked.registry
    out.checked += 1
    missing = set(team.legacy_protected_aliases or []) - set(registry.protected_aliases or [])
    if missing:
        out.mismatch(
            f"{label}: protected aliases {sorted(missing)} are not protected in {registry.name!r}"
        )
    if registry.visibility != Visibility.RESTRICTED:
        out.mismatch(f"{label}: registry {registry.name!r} is not RESTRICTED")


# Registered models, their versions, collections and collection versions: the tables the
# comparisons join.
_COMPARED_TABLES = (
    core_table(m.RegisteredModel),
    core_table(m.RegisteredModelVersion),
    core_table(m.Collection),
    core_table(m.CollectionVersion),
)


@dataclass(frozen=True)
class _VerifyStatements:
    """Verification's statements, built once (bound parameters: team_migrations, teams,
    suspects and registries are lists; org is an id): building and annotating these
    joins anew for every group would cost more than running them."""

    collections: Any
    versions: Any
    extra: Any
    alias_counts: Any
    aliases: Any
    collection_counts: Any
    people: Any
    candidates: Any


@functools.cache
def _verify_statements() -> _VerifyStatements:
    rm, c, u = core_table(m.RegisteredModel).c, core_table(m.Collection).c, core_table(m.User)
    mt = core_table(m.MigrationTeam).c
    # The group's teams, each with its target registry.
    gt = (
        select(mt.team_id, mt.target_registry_id)
        .where(mt.id.in_(bindparam("team_migrations", expanding=True)))
        .subquery("verified_teams")
    )
    in_group = rm.team_id.in_(bindparam("teams", expanding=True))
    org = bindparam("org", type_=BigInteger())
    a = core_table(m.RegisteredModelAlias)
    return _VerifyStatements(
        collections=_collections_statement(gt, in_group),
        versions=_versions_statement(gt),
        extra=_extra_versions_statement(gt),
        alias_counts=select(rm.team_id, func.count())
        .select_from(a)
        .join(core_table(m.RegisteredModel), rm.id == a.c.registered_model_id)
        .where(in_group)
        .group_by(rm.team_id),
        aliases=_aliases_statement(gt),
        collection_counts=select(c.registry_id, func.count())
        .where(c.registry_id.in_(bindparam("registries", expanding=True)))
        .group_by(c.registry_id),
        people=select(func.count()).select_from(u).where(u.c.org_id == org),
        candidates=_candidates_statement(gt, org),
    )


def _collections_statement(gt: Any, in_group: Any) -> Any:
    """One row per registered model of the group with its collection, and both version
    counts (versions inside the legacy index range; later ones were linked in the
    Registry)."""
    rm_t, v_t, c_t, cv_t = _COMPARED_TABLES
    rm, v, c, cv = rm_t.c, v_t.c, c_t.c, cv_t.c
    legacy_counts = (
        select(v.registered_model_id.label("model_id"), func.count().label("n"))
        .select_from(v_t)
        .join(rm_t, rm.id == v.registered_model_id)
        .where(in_group)
        .group_by(v.registered_model_id)
        .subquery("legacy_counts")
    )
    model = rm_t.alias("source_model")
    migrated_counts = (
        select(cv.collection_id.label("collection_id"), func.count().label("n"))
        .select_from(cv_t)
        .join(c_t, c.id == cv.collection_id)
        .join(gt, gt.c.target_registry_id == c.registry_id)
        .join(model, model.c.id == c.migrated_from_model_id)
        .where(cv.version_index < model.c.next_version_index)
        .group_by(cv.collection_id)
        .subquery("migrated_counts")
    )
    return (
        select(
            rm.team_id,
            rm.name,
            rm.description,
            rm.tags,
            rm.created_by_id,
            rm.create_time,
            rm.next_version_index,
            c.id,
            c.name,
            c.type,
            c.description,
            c.tags,
            c.created_by_id,
            c.create_time,
            c.next_version_index,
            func.coalesce(legacy_counts.c.n, 0),
            func.coalesce(migrated_counts.c.n, 0),
        )
        .select_from(rm_t)
        .join(gt, gt.c.team_id == rm.team_id)
        .outerjoin(
            c_t, and_(c.registry_id == gt.c.target_registry_id, c.migrated_from_model_id == rm.id)
        )
        .outerjoin(legacy_counts, legacy_counts.c.model_id == rm.id)
        .outerjoin(migrated_counts, migrated_counts.c.collection_id == c.id)
        .order_by(rm.team_id, rm.name)
    )


def _versions_statement(gt: Any) -> Any:
    """The group's legacy versions that differ from the collection version of the same
    index (or have none), with both digests: at most MISMATCHES_MAX + 1 per team."""
    rm_t, v_t, c_t, cv_t = _COMPARED_TABLES
    rm, v, c, cv = rm_t.c, v_t.c, c_t.c, cv_t.c
    differs = or_(
        cv.id.is_(None),
        cv.artifact_version_id != v.artifact_version_id,
        cv.tags != v.tags,
        cv.description != v.description,
        cv.linked_by_id.is_distinct_from(v.linked_by_id),
        cv.create_time != v.create_time,
    )
    bad = (
        select(
            rm.team_id.label("team_id"),
            rm.name.label("model"),
            v.version_index.label("index"),
            cv.id.label("cv_id"),
            v.artifact_version_id.label("legacy_av"),
            cv.artifact_version_id.label("new_av"),
            v.tags.label("t1"),
            cv.tags.label("t2"),
            v.description.label("desc1"),
            cv.description.label("desc2"),
            v.linked_by_id.label("by1"),
            cv.linked_by_id.label("by2"),
            v.create_time.label("c1"),
            cv.create_time.label("c2"),
            func.row_number()
            .over(partition_by=rm.team_id, order_by=(rm.name, v.version_index))
            .label("n"),
        )
        .select_from(v_t)
        .join(rm_t, rm.id == v.registered_model_id)
        .join(gt, gt.c.team_id == rm.team_id)
        .outerjoin(c_t, migrated_collection(gt.c.target_registry_id))
        .outerjoin(cv_t, and_(cv.collection_id == c.id, cv.version_index == v.version_index))
        .where(differs)
        .subquery("bad")
    )
    av1 = core_table(m.ArtifactVersion).alias("legacy_av")
    av2 = core_table(m.ArtifactVersion).alias("migrated_av")
    return (
        select(*bad.c, av1.c.digest.label("d1"), av2.c.digest.label("d2"))
        .select_from(bad)
        .outerjoin(av1, av1.c.id == bad.c.legacy_av)
        .outerjoin(av2, av2.c.id == bad.c.new_av)
        .where(bad.c.n <= MISMATCHES_MAX + 1)
        .order_by(bad.c.team_id, bad.c.n)
    )


def _extra_versions_statement(gt: Any) -> Any:
    """Collection versions inside the legacy index range that no legacy version has, for
    the teams bound as `suspects`."""
    rm_t, v_t, c_t, cv_t = _COMPARED_TABLES
    rm, c, cv = rm_t.c, c_t.c, cv_t.c
    legacy = v_t.alias("legacy_version")
    return (
        select(rm.team_id, c.name, cv.version_index)
        .select_from(cv_t)
        .join(c_t, c.id == cv.collection_id)
        .join(rm_t, rm.id == c.migrated_from_model_id)
        .join(gt, and_(gt.c.team_id == rm.team_id, gt.c.target_registry_id == c.registry_id))
        .where(
            rm.team_id.in_(bindparam("suspects", expanding=True)),
            cv.version_index < rm.next_version_index,
            ~exists().where(
                legacy.c.registered_model_id == rm.id, legacy.c.version_index == cv.version_index
            ),
        )
        .order_by(rm.team_id, c.name, cv.version_index)
    )


def _aliases_statement(gt: Any) -> Any:
    """The group's legacy aliases that are not on the collection version of the same
    index: at most MISMATCHES_MAX per team."""
    rm_t, v_t, c_t, cv_t = _COMPARED_TABLES
    a_t, ca_t = core_table(m.RegisteredModelAlias), core_table(m.CollectionAlias)
    rm, v, c, cv, a, ca = rm_t.c, v_t.c, c_t.c, cv_t.c, a_t.c, ca_t.c
    bad_aliases = (
        select(
            rm.team_id.label("team_id"),
            rm.name.label("model"),
            a.alias.label("alias"),
            v.version_index.label("legacy_index"),
            cv.version_index.label("new_index"),
            func.row_number().over(partition_by=rm.team_id, order_by=(rm.name, a.alias)).label("n"),
        )
        .select_from(a_t)
        .join(v_t, v.id == a.version_id)
        .join(rm_t, rm.id == a.registered_model_id)
        .join(gt, gt.c.team_id == rm.team_id)
        .outerjoin(c_t, migrated_collection(gt.c.target_registry_id))
        .outerjoin(ca_t, and_(ca.collection_id == c.id, ca.alias == a.alias))
        .outerjoin(cv_t, cv.id == ca.version_id)
        .where(or_(cv.id.is_(None), cv.version_index != v.version_index))
        .subquery("bad_aliases")
    )
    return (
        select(bad_aliases)
        .where(bad_aliases.c.n <= MISMATCHES_MAX)
        .order_by(bad_aliases.c.team_id, bad_aliases.c.n)
    )


def _candidates_statement(gt: Any, org: Any) -> Any:
    """Who could have access to a team's legacy registry or its target (the
    organization's admins, the team's members, users granted on the target, members of
    teams granted on it), with the user's team role and legacy admin flag."""
    tm, rmem, u = core_table(m.TeamMember), core_table(m.RegistryMember), core_table(m.User)
    granted_team_member = tm.alias("granted_team_member")
    pairs = union(
        select(gt.c.team_id, u.c.id.label("user_id"))
        .select_from(gt)
        .join(u, and_(u.c.org_id == org, u.c.org_role == int(OrgRole.ADMIN))),
        select(tm.c.team_id, tm.c.user_id).join(gt, gt.c.team_id == tm.c.team_id),
        select(gt.c.team_id, rmem.c.user_id)
        .join(gt, gt.c.target_registry_id == rmem.c.registry_id)
        .where(rmem.c.user_id.is_not(None)),
        select(gt.c.team_id, granted_team_member.c.user_id)
        .select_from(rmem)
        .join(gt, gt.c.target_registry_id == rmem.c.registry_id)
        .join(granted_team_member, granted_team_member.c.team_id == rmem.c.team_id),
    ).subquery("candidates")
    team_role = tm.alias("team_role")
    legacy_admin = core_table(m.LegacyRegistryAdmin)
    return (
        select(
            pairs.c.team_id,
            u.c.id,
            u.c.name,
            u.c.org_id,
            u.c.org_role,
            u.c.service_account,
            team_role.c.role,
            legacy_admin.c.user_id.is_not(None).label("legacy_admin"),
        )
        .select_from(pairs)
        .join(u, and_(u.c.id == pairs.c.user_id, u.c.org_id == org))
        .outerjoin(
            team_role, and_(team_role.c.team_id == pairs.c.team_id, team_role.c.user_id == u.c.id)
        )
        .outerjoin(
            legacy_admin,
            and_(legacy_admin.c.team_id == pairs.c.team_id, legacy_admin.c.user_id == u.c.id),
        )
        .order_by(pairs.c.team_id, u.c.name)
    )


def _per_team(s: Session, stmt: Any, params: dict[str, Any]) -> dict[int, int]:
    return {int(key): int(n or 0) for key, n in s.execute(stmt, params).all()}


def _verify_collections(s: Session, params: dict[str, Any], group: dict[int, _Checked]) -> None:
    """Every registered model has its collection: same name, description, tags, creator,
    creation time, and as many versions inside the legacy index range. One row per
    registered model of the group (compared here), each with both version counts."""
    for row in s.execute(_verify_statements().collections, params).all():
        (team_id, name, description, tags, created_by, created, next_index, col_id) = row[:8]
        (col_name, col_type, col_description, col_tags, col_by, col_created, col_next) = row[8:15]
        n_legacy, n_migrated = int(row[15]), int(row[16])
        checked = group[team_id]
        out = checked.out
        out.checked += 1
        checked.versions += n_legacy  # the legacy versions _verify_versions compares
        where = f"{checked.label}: registered model {name!r}"
        if col_id is None:
            out.mismatch(f"{where}: no collection in {checked.registry.name!r}")
            continue
        if col_name != name:
            out.mismatch(f"{where}: collection is named {col_name!r}")
        if col_type != COLLECTION_TYPE:
            out.mismatch(f"{where}: collection type is {col_type!r}")
        if col_description != description:
            out.mismatch(f"{where}: description differs")
        if list(col_tags or []) != list(tags or []):
            out.mismatch(f"{where}: tags differ ({col_tags} != {tags})")
        if col_by != created_by or col_created != created:
            out.mismatch(f"{where}: creation author or time differs")
        if col_next < next_index:
            out.mismatch(f"{where}: next version index would reuse legacy indices")
        if n_legacy != n_migrated:
            out.mismatch(f"{where}: {n_legacy} legacy version(s), {n_migrated} migrated")


def _verify_versions(s: Session, params: dict[str, Any], group: dict[int, _Checked]) -> None:
    """Every legacy version: same index -> same artifact version (the same row, so the
    same digest, metadata and lineage), same tags, description, author and creation
    time. One pass over the group's versions; only differing rows come back (at most
    MISMATCHES_MAX + 1 per team)."""
    sql = _verify_statements()
    for checked in group.values():
        checked.out.checked += checked.versions  # counted by _verify_collections
    suspect: set[int] = set()
    for row in s.execute(sql.versions, params).all():
        checked = group[row.team_id]
        suspect.add(row.team_id)
        where = f"{checked.label}: {row.model}:v{row.index}"
        if row.cv_id is None:
            checked.out.mismatch(f"{where}: missing from the collection")
            continue
        what = [
            name
            for name, legacy, migrated in (
                ("artifact version", row.legacy_av, row.new_av),
                ("digest", row.d1, row.d2),
                ("tags", list(row.t1 or []), list(row.t2 or [])),
                ("description", row.desc1, row.desc2),
                ("linked by", row.by1, row.by2),
                ("creation time", row.c1, row.c2),
            )
            if legacy != migrated
        ]
        checked.out.mismatch(f"{where}: {', '.join(what) or 'metadata or lineage'} differ(s)")
    # Nothing extra inside the legacy index range. With every legacy version found at its
    # index and per-model counts equal (checked above), there can be none: only teams
    # with a mismatch so far are searched.
    suspect |= {team_id for team_id, checked in group.items() if checked.out.total_mismatches}
    if not suspect:
        return
    listed: dict[int, int] = {}
    for team_id, name, index in s.execute(sql.extra, {**params, "suspects": sorted(suspect)}).all():
        listed[team_id] = listed.get(team_id, 0) + 1
        if listed[team_id] > MISMATCHES_MAX:
            continue
        checked = group[team_id]
        checked.out.mismatch(
            f"{checked.label}: {name}:v{index} exists in the collection but not in the legacy model"
        )


def _verify_aliases(s: Session, params: dict[str, Any], group: dict[int, _Checked]) -> None:
    """Every legacy alias (so every `:alias` path) is on the version of the same index."""
    sql = _verify_statements()
    for team_id, n in _per_team(s, sql.alias_counts, params).items():
        group[team_id].out.checked += n
    for row in s.execute(sql.aliases, params).all():
        checked = group[row.team_id]
        where = f"{checked.label}: {row.model}:{row.alias}"
        if row.new_index is None:
            checked.out.mismatch(
                f"{where}: alias missing from the collection (legacy v{row.legacy_index})"
            )
        else:
            checked.out.mismatch(
                f"{where}: on v{row.new_index} in the collection, v{row.legacy_index} in legacy"
            )


def _verify_access(s: Session, params: dict[str, Any], group: dict[int, _Checked]) -> None:
    """For every principal who could have access on either side, and every collection,
    each operation is allowed in the new registry exactly when it was in the legacy one
    (service accounts: as the MEMBER the Registry makes them). Roles in the new registry
    come from `access.effective_role`, the function every RPC checks with; who could have
    access comes from one query for the whole group."""
    sql = _verify_statements()
    first = next(iter(group.values()))
    org = s.execute(
        select(m.Organization).where(m.Organization.id == first.team.org_id)
    ).scalar_one()
    params = {
        **params,
        "org": org.id,
        "registries": [checked.registry.id for checked in group.values()],
    }
    collections = _per_team(s, sql.collection_counts, params)
    everyone = int(s.execute(sql.people, params).scalar_one())
    candidates: dict[int, list[Any]] = {team_id: [] for team_id in group}
    for row in s.execute(sql.candidates, params).all():
        candidates[row.team_id].append(row)
    for team_id, checked in group.items():
        let_others_run()
        per_user = max(collections.get(checked.registry.id, 0), 1) * len(ACCESS_OPERATIONS)
        _verify_team_access(s, checked, org.name, candidates[team_id], per_user, everyone)


def _verify_team_access(
    s: Session, checked: _Checked, org: str, users: list[Any], per_user: int, everyone: int
) -> None:
    out, label, registry = checked.out, checked.label, checked.registry
    for row in users:
        p = Principal(
            user_id=row.id,
            user=row.name,
            org_id=row.org_id,
            org=org,
            org_role=OrgRole(row.org_role),
            service_account=bool(row.service_account),
        )
        team_role = TeamRole(row.role or 0)
        legacy_role = expected_team_role(team_role, p.service_account)
        new_role = effective_role(s, p, registry)
        out.checked += per_user
        agree = True
        for operation, legacy_perm, registry_perm in ACCESS_OPERATIONS:
            before = legacy_allows(legacy_role, bool(row.legacy_admin), p.org_admin, legacy_perm)
            after = registry_allows(new_role, registry_perm)
            if before != after:
                agree = False
                out.mismatch(
                    f"{label}: users/{row.name} {'could' if before else 'could not'} "
                    f"{operation} in the legacy registry but {'can' if after else 'cannot'} "
                    f"in {registry.name!r} (role {new_role.name})"
                )
        # As expected; where the expectation is not the legacy right itself (a planned
        # change, such as a team VIEWER service account's), it is listed.
        change = (
            access_change(
                row.name,
                f"organizations/{org}/registries/{registry.name}",
                team_role,
                bool(row.legacy_admin),
                p.service_account,
                new_role,
                org_admin=p.org_admin,
            )
            if agree and legacy_role != team_role
            else None
        )
        if change is not None:
            out.access_changes.append(change)
    # Everyone else: no team role, no grant, not an admin, RESTRICTED registry -> no
    # access on either side (the registry's visibility was checked above).
    out.checked += (everyone - len(users)) * per_user
