"""Undoing a migration loses nothing silently: what changed in its registries goes back
into the legacy registries first (RollbackMigration, and CancelMigration of a running
migration, whose registries are usable from their set-up on).

`plan_undo` compares each team's migrated registry with its legacy registry and lists
(a) the changes that have a legacy equivalent, which `apply_undo` writes into the legacy
registry, and (b) those that have none, the losses: RollbackMigration refuses while
there are any, unless forced.

Carried back, per registered model and the collection migrated from it:
- links made since (in the registry, or forwarded from LinkModelVersion) at their
  collection index, which legacy paths `model:vN` already named (new links got indices
  after the legacy ones), and the model's next index, so no index is ever reused;
- unlinks: a legacy version the copy took over whose link is gone from the collection
  (same index and artifact version);
- aliases, protected ones included, as the collection holds them now;
- tags and descriptions of the collection (-> registered model) and of its versions;
- the deletion of the collection (-> the registered model is deleted);
- the registry's protected aliases, when they changed (-> the team's legacy settings).
A legacy version the copy had not reached (a migration cancelled mid-copy) stays as it
is, with its aliases, unless the collection holds one of those aliases now.

Lost (no legacy equivalent): a collection created in the registry after the migration
(with each of its links of an artifact type other than `model`), a link of another type
in a migrated collection, a registry member whose role there is more than the team gives
them (a user added by hand, another team, a raised role: the migrated team itself, and
its members at their mapped role, are the team's own membership), a registry setting
changed since (description, accepted types, default role, visibility: from the
registry's REGISTRY_UPDATED events), an automation (deleted with the registry).
A link of another team's artifact version is carried back: legacy links accept any
`model` artifact version of the organization.

The comparison reads the teams' legacy and migrated rows once (a few statements for
the whole migration, no per-row queries); `apply_undo` writes only the differences and
records one legacy event for each, as the legacy use cases would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ...domain.names import artifact_version_name, collection_name, model_name, model_version_name
from ...domain.names import collection_version_name as version_name
from ...domain.roles import RegistryRole, Visibility
from ...storage import models as m
from ...storage.db import now_us
from .. import events
from ..legacy import remove_model
from ..legacy_views import model_version_row
from ..registries import MemberRef, member_name, registry_name
from .common import TeamRow, core_table, rowcount

LEGACY_TYPE = "model"  # what legacy links accept
ITEMS_MAX = 200  # listed per kind in a report (then a count of the rest)
# REGISTRY_UPDATED fields that have no legacy equivalent (protected aliases do).
SETTINGS_WITHOUT_LEGACY = (
    "description",
    "visibility",
    "artifact_types",
    "allow_all_artifact_types",
    "default_role",
)


# --- what the legacy registries receive --------------------------------------------------


@dataclass
class NewLink:
    model_id: int
    index: int
    cv: Any  # the collection version row it comes from


@dataclass
class AliasMove:
    model_id: int
    alias: str
    # The legacy version it goes to: ("version", id) or ("new", index of a NewLink).
    target: tuple[str, int]
    index: int
    previous: int | None
    create_time: int


@dataclass
class ModelChanges:
    """What one registered model receives."""

    model: Any  # the registered model row (Core)
    collection: str  # the collection's name, for the events
    deleted: bool = False
    fields: dict[str, Any] = field(default_factory=dict)  # description, tags
    next_index: int | None = None
    unlinks: list[Any] = field(default_factory=list)  # legacy version rows
    version_fields: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)
    links: list[NewLink] = field(default_factory=list)
    aliases: list[AliasMove] = field(default_factory=list)
    removed_aliases: list[tuple[Any, int]] = field(default_factory=list)  # (alias row, index)


@dataclass
class TeamChanges:
    team_id: int
    team: str
    protected_aliases: list[str] | None = None
    protected_before: list[str] = field(default_factory=list)
    models: list[ModelChanges] = field(default_factory=list)


@dataclass
class UndoPlan:
    carried_back: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    teams: list[TeamChanges] = field(default_factory=list)

    def report(self, *, forced: bool, requested_by: str) -> dict[str, Any]:
        """The migration's `rollback_report` (RollbackReport in the API)."""
        return {
            "carried_back": bounded(self.carried_back),
            "losses": bounded(self.losses),
            "forced": forced,
            "requested_by": requested_by,
        }


def bounded(items: Sequence[str]) -> list[str]:
    if len(items) <= ITEMS_MAX:
        return list(items)
    return [*items[:ITEMS_MAX], f"... {len(items) - ITEMS_MAX} more"]


# --- reading both sides --------------------------------------------------------------------


@dataclass
class _Rows:
    teams: dict[int, Any]
    registries: dict[int, Any]  # by team id
    models: dict[int, list[Any]]  # by team id
    versions: dict[int, list[Any]]  # by registered model id
    aliases: dict[int, list[Any]]  # by registered model id
    collections: dict[int, list[Any]]  # by registry id
    collection_versions: dict[int, list[Any]]  # by collection id
    collection_aliases: dict[int, list[Any]]  # by collection id
    members: dict[int, list[Any]]  # by registry id
    settings: dict[int, list[str]]  # changed fields, by registry id
    unlinked: set[str]  # collection versions unlinked in the registries (event resources)
    automations: dict[int, list[Any]]  # by registry id


def _grouped(s: Session, key: str, stmt: Any) -> dict[int, list[Any]]:
    """The rows `stmt` reads, by their column `key`."""
    out: dict[int, list[Any]] = defaultdict(list)
    for row in s.execute(stmt).all():
        out[getattr(row, key)].append(row)
    return out


def _read(s: Session, teams: Sequence[TeamRow]) -> _Rows:
    team_ids = [t.team_id for t in teams]
    registry_ids = [t.target_registry_id for t in teams if t.target_registry_id is not None]
    return _Rows(
        **_read_legacy(s, team_ids),
        **_read_collections(s, registry_ids),
        **_read_registry_changes(s, registry_ids),
    )


def _read_legacy(s: Session, team_ids: list[int]) -> dict[str, Any]:
    """The teams' legacy registries: settings, registered models, versions, aliases."""
    rm, v, a, team = m.RegisteredModel, m.RegisteredModelVersion, m.RegisteredModelAlias, m.Team
    rows_teams = {
        row.id: row
        for row in s.execute(
            select(team.id, team.name, team.legacy_protected_aliases).where(team.id.in_(team_ids))
        ).all()
    }
    models = _grouped(
        s,
        "team_id",
        select(rm.id, rm.team_id, rm.name, rm.description, rm.tags, rm.next_version_index)
        .where(rm.team_id.in_(team_ids))
        .order_by(rm.name),
    )
    versions = _grouped(
        s,
        "registered_model_id",
        select(v.id, v.registered_model_id, *(getattr(v, name) for name in m.LINK_COLUMNS))
        .join(rm, rm.id == v.registered_model_id)
        .where(rm.team_id.in_(team_ids))
        .order_by(v.version_index),
    )
    aliases = _grouped(
        s,
        "registered_model_id",
        select(a.id, a.registered_model_id, a.alias, a.version_id)
        .join(rm, rm.id == a.registered_model_id)
        .where(rm.team_id.in_(team_ids))
        .order_by(a.alias),
    )
    return {"teams": rows_teams, "models": models, "versions": versions, "aliases": aliases}


def _read_collections(s: Session, registry_ids: list[int]) -> dict[str, Any]:
    """The migrated registries, their collections, versions and aliases."""
    c, cv, ca = m.Collection, m.CollectionVersion, m.CollectionAlias
    av, art, proj, team = m.ArtifactVersion, m.Artifact, m.Project, m.Team
    registries = {
        row.migrated_from_team_id: row
        for row in s.execute(
            select(core_table(m.Registry)).where(m.Registry.id.in_(registry_ids))
        ).all()
    }
    collections = _grouped(
        s,
        "registry_id",
        select(core_table(c)).where(c.registry_id.in_(registry_ids)).order_by(c.name),
    )
    collection_versions = _grouped(
        s,
        "collection_id",
        select(
            cv.id,
            cv.collection_id,
            *(getattr(cv, name) for name in m.LINK_COLUMNS),
            art.type,
            team.name.label("a_team"),
            proj.name.label("a_project"),
            art.name.label("a_artifact"),
            av.version_index.label("a_index"),
        )
        .join(c, c.id == cv.collection_id)
        .join(av, av.id == cv.artifact_version_id)
        .join(art, art.id == av.artifact_id)
        .join(proj, proj.id == art.project_id)
        .join(team, team.id == proj.team_id)
        .where(c.registry_id.in_(registry_ids))
        .order_by(cv.version_index),
    )
    collection_aliases = _grouped(
        s,
        "collection_id",
        select(ca.collection_id, ca.alias, ca.version_id, ca.create_time)
        .join(c, c.id == ca.collection_id)
        .where(c.registry_id.in_(registry_ids))
        .order_by(ca.alias),
    )
    return {
        "registries": registries,
        "collections": collections,
        "collection_versions": collection_versions,
        "collection_aliases": collection_aliases,
    }


def _read_registry_changes(s: Session, registry_ids: list[int]) -> dict[str, Any]:
    """What else happened in the migrated registries: members, setting changes (their
    events), unlinks (their events), automations."""
    c, team = m.Collection, m.Team
    members = _grouped(
        s,
        "registry_id",
        select(
            m.RegistryMember.registry_id,
            m.RegistryMember.user_id,
            m.RegistryMember.team_id,
            m.RegistryMember.role,
            m.RegistryMember.team_roles,
            m.User.name.label("user"),
            team.name.label("team"),
        )
        .outerjoin(m.User, m.User.id == m.RegistryMember.user_id)
        .outerjoin(team, team.id == m.RegistryMember.team_id)
        .where(m.RegistryMember.registry_id.in_(registry_ids))
        .order_by(m.RegistryMember.create_time, m.RegistryMember.id),
    )
    settings: dict[int, list[str]] = defaultdict(list)
    for registry_id, details in s.execute(
        select(m.Event.registry_id, m.Event.details)
        .where(m.Event.registry_id.in_(registry_ids), m.Event.type == events.REGISTRY_UPDATED)
        .order_by(m.Event.cursor)
    ).all():
        for name in (details or {}).get("fields", []):
            if name in SETTINGS_WITHOUT_LEGACY and name not in settings[registry_id]:
                settings[registry_id].append(name)
    unlinked = set(
        s.execute(
            select(m.Event.resource).where(
                m.Event.registry_id.in_(registry_ids), m.Event.type == events.VERSION_UNLINKED
            )
        ).scalars()
    )
    automations = _grouped(
        s,
        "registry_id",
        select(m.Automation.registry_id, m.Automation.uid, c.name.label("collection"))
        .outerjoin(c, c.id == m.Automation.collection_id)
        .where(m.Automation.registry_id.in_(registry_ids))
        .order_by(m.Automation.id),
    )
    return {
        "members": members,
        "settings": settings,
        "unlinked": unlinked,
        "automations": automations,
    }


# --- comparing ----------------------------------------------------------------------------


def plan_undo(
    s: Session,
    org: str,
    teams: Sequence[TeamRow],
    mapped_roles: Mapping[int, Mapping[int, RegistryRole]],
) -> UndoPlan:
    """What undoing the migration of `teams` carries back and what it loses (reads only).
    `mapped_roles`: per team, the registry role each member gets from the team."""
    rows = _read(s, teams)
    plan = UndoPlan()
    for undo_team in teams:
        team = rows.teams[undo_team.team_id]
        registry = rows.registries.get(undo_team.team_id)
        if undo_team.target_registry_id is None or registry is None:
            continue  # never set up (or its registry was deleted): nothing happened there
        changes = TeamChanges(team.id, team.name)
        plan.teams.append(changes)
        _compare_models(plan, changes, rows, org, registry, undo_team.cursor)
        _compare_registry(plan, changes, rows, org, team, registry, mapped_roles)
    return plan


def _compare_models(
    plan: UndoPlan, changes: TeamChanges, rows: _Rows, org: str, registry: Any, cursor: int
) -> None:
    collections = rows.collections.get(registry.id, [])
    models = rows.models.get(changes.team_id, [])
    model_ids = {model.id for model in models}
    migrated = {c.migrated_from_model_id: c for c in collections if c.migrated_from_model_id}
    for model in models:
        collection = migrated.get(model.id)
        label = model_name(changes.team, model.name)
        if collection is None:
            changes.models.append(ModelChanges(model, "", deleted=True))
            plan.carried_back.append(
                f"{label}: deleted (its collection "
                f"{collection_name(org, registry.name, model.name)} was deleted)"
            )
            continue
        model_changes = ModelChanges(model, collection_name(org, registry.name, collection.name))
        _compare_model(plan, model_changes, rows, label, (org, registry.name), collection, cursor)
        if model_changes != ModelChanges(model, model_changes.collection):  # anything to do
            changes.models.append(model_changes)
    for collection in collections:
        if collection.migrated_from_model_id in model_ids:
            continue
        name = collection_name(org, registry.name, collection.name)
        links = rows.collection_versions.get(collection.id, [])
        plan.losses.append(
            f"{name}: collection created in the registry after the migration "
            f"({len(links)} version(s) of type {collection.type!r}); the legacy registry of "
            f"teams/{changes.team} has no registered model for it"
        )
        for link in links:
            if link.type != LEGACY_TYPE:
                plan.losses.append(_other_type(org, registry.name, collection.name, link))


def _other_type(org: str, registry: str, collection: str, link: Any) -> str:
    return (
        f"{version_name(org, registry, collection, link.version_index)}: links "
        f"{_artifact(link)} of type {link.type!r}; legacy links accept only {LEGACY_TYPE!r}"
    )


def _artifact(link: Any) -> str:
    return artifact_version_name(link.a_team, link.a_project, link.a_artifact, link.a_index)


def _compare_model(
    plan: UndoPlan,
    changes: ModelChanges,
    rows: _Rows,
    label: str,
    where: tuple[str, str],
    collection: Any,
    cursor: int,
) -> None:
    """One registered model against the collection migrated from it (`where`: the
    organization and registry names)."""
    model = changes.model
    if collection.description != model.description:
        changes.fields["description"] = collection.description
        plan.carried_back.append(f"{label}: description")
    if list(collection.tags or []) != list(model.tags or []):
        changes.fields["tags"] = list(collection.tags or [])
        plan.carried_back.append(f"{label}: tags {list(collection.tags or [])}")
    if collection.next_version_index > model.next_version_index:
        changes.next_index = collection.next_version_index
    legacy = {row.version_index: row for row in rows.versions.get(model.id, [])}
    links = rows.collection_versions.get(collection.id, [])
    by_index = {link.version_index: link for link in links}
    by_artifact = {link.artifact_version_id: link for link in links}
    # Where each collection version is in the legacy registry (`target`): its twin (same
    # index and artifact version: the copy's), or a kept legacy version of the same
    # artifact version, or a new legacy version at its index.
    target: dict[int, tuple[str, int]] = {}
    copied: set[int] = set()  # legacy version ids with a twin
    kept: dict[int, Any] = {}  # legacy versions that stay, by artifact version
    for index, row in legacy.items():
        link = by_index.get(index)
        if link is not None and link.artifact_version_id == row.artifact_version_id:
            target[link.id] = ("version", row.id)
            copied.add(row.id)
            _compare_version(plan, changes, f"{label}/versions/{index}", row, link)
        elif row.id > cursor or (
            # The copy skipped it: its artifact version was linked in the registry before
            # the copy got there (a link unlinked and linked again has an unlink event).
            row.artifact_version_id in by_artifact
            and version_name(*where, collection.name, index) not in rows.unlinked
        ):
            kept[row.artifact_version_id] = row
        else:
            changes.unlinks.append(row)
            plan.carried_back.append(f"{label}/versions/{index}: unlinked")
    stays = copied | {row.id for row in kept.values()}
    for link in links:
        if link.id in target:
            continue
        same = kept.get(link.artifact_version_id)
        if same is not None:
            target[link.id] = ("version", same.id)
        elif link.type != LEGACY_TYPE:
            plan.losses.append(_other_type(*where, collection.name, link))
        elif link.version_index in legacy and legacy[link.version_index].id in stays:
            plan.losses.append(
                f"{changes.collection}/versions/{link.version_index}: links {_artifact(link)}, "
                f"but {label}/versions/{link.version_index} holds another artifact version"
            )
        else:
            target[link.id] = ("new", link.version_index)
            changes.links.append(NewLink(model.id, link.version_index, link))
            plan.carried_back.append(
                f"{label}/versions/{link.version_index}: linked {_artifact(link)}"
            )
    _compare_aliases(plan, changes, rows, label, collection, target, legacy, copied, stays)


def _compare_version(
    plan: UndoPlan, changes: ModelChanges, label: str, row: Any, link: Any
) -> None:
    """A legacy version and its twin: tags and description."""
    fields: dict[str, Any] = {}
    if list(link.tags or []) != list(row.tags or []):
        fields["tags"] = list(link.tags or [])
        plan.carried_back.append(f"{label}: tags {fields['tags']}")
    if link.description != row.description:
        fields["description"] = link.description
        plan.carried_back.append(f"{label}: description")
    if fields:
        changes.version_fields.append((row, fields))


def _compare_aliases(
    plan: UndoPlan,
    changes: ModelChanges,
    rows: _Rows,
    label: str,
    collection: Any,
    target: dict[int, tuple[str, int]],
    legacy: dict[int, Any],
    copied: set[int],
    stays: set[int],
) -> None:
    """The collection's aliases as they are now; a legacy alias the copy never brought
    over (its version was not copied) stays unless the collection holds that alias."""
    model = changes.model
    by_id = {row.id: row for row in legacy.values()}
    links = {link.id: link for link in rows.collection_versions.get(collection.id, [])}
    held = {row.alias: row for row in rows.aliases.get(model.id, [])}
    wanted = {row.alias: row for row in rows.collection_aliases.get(collection.id, [])}
    for alias in sorted(set(held) | set(wanted)):
        now_on = held.get(alias)
        before = by_id[now_on.version_id] if now_on is not None else None
        goes_to = wanted.get(alias)
        if goes_to is None:
            if now_on is not None and before is not None and before.id in copied:
                changes.removed_aliases.append((now_on, before.version_index))
                plan.carried_back.append(
                    f"{label}: alias {alias!r} removed (was on v{before.version_index})"
                )
            continue
        where = target.get(goes_to.version_id)
        if where is None:
            link = links[goes_to.version_id]
            plan.losses.append(
                f"{changes.collection}: alias {alias!r} on v{link.version_index}, a version "
                "that is not carried back"
            )
            if now_on is not None and before is not None and before.id in stays:
                changes.removed_aliases.append((now_on, before.version_index))
            continue
        index = by_id[where[1]].version_index if where[0] == "version" else where[1]
        if before is not None and before.id in stays and before.version_index == index:
            continue
        previous = before.version_index if before is not None else None
        changes.aliases.append(
            AliasMove(model.id, alias, where, index, previous, goes_to.create_time)
        )
        moved = f" (was on v{previous})" if previous is not None else ""
        plan.carried_back.append(f"{label}: alias {alias!r} on v{index}{moved}")


def _compare_registry(
    plan: UndoPlan,
    changes: TeamChanges,
    rows: _Rows,
    org: str,
    team: Any,
    registry: Any,
    mapped_roles: Mapping[int, Mapping[int, RegistryRole]],
) -> None:
    registry_label = registry_name(org, registry.name)
    protected = list(registry.protected_aliases or [])
    if protected != list(team.legacy_protected_aliases or []):
        changes.protected_aliases = protected
        changes.protected_before = list(team.legacy_protected_aliases or [])
        plan.carried_back.append(
            f"teams/{team.name}/legacyRegistrySettings: protected aliases {protected}"
        )
    roles = mapped_roles.get(team.id, {})
    for member in rows.members.get(registry.id, []):
        role = RegistryRole(member.role)
        if member.team_id is not None:
            if member.team_id == team.id and member.team_roles:
                continue  # the team's own membership, as the migration made it
            ref = MemberRef("teams", member.team)
            held = "each member's mapped team role" if member.team_roles else role.name
            plan.losses.append(
                f"{member_name(org, registry.name, ref)}: {ref.name} holds {held} in "
                f"the registry; the legacy registry of teams/{team.name} has no such grant"
            )
            continue
        given = roles.get(member.user_id, RegistryRole.NONE)
        if role <= given:
            continue
        ref = MemberRef("users", member.user)
        gives = f"gives them {given.name}" if given else "does not include them"
        plan.losses.append(
            f"{member_name(org, registry.name, ref)}: {ref.name} holds {role.name} in the "
            f"registry; teams/{team.name} {gives}"
        )
    for name in rows.settings.get(registry.id, []):
        value = getattr(registry, name)
        if name == "visibility":
            value = Visibility(value).name
        elif name == "default_role":
            value = RegistryRole(value).name
        plan.losses.append(
            f"{registry_label}: {name} changed in the registry (now {value!r}); the legacy "
            "registry has no such setting"
        )
    for automation in rows.automations.get(registry.id, []):
        parent = (
            collection_name(org, registry.name, automation.collection)
            if automation.collection
            else registry_label
        )
        plan.losses.append(
            f"{parent}/automations/{automation.uid}: automation; the legacy registry has none"
        )


# --- writing the legacy side --------------------------------------------------------------


def apply_undo(s: Session, org_id: int, plan: UndoPlan, actor: str, migration: str) -> None:
    """Writes `plan` into the legacy registries, one legacy event per change (actor: who
    asked for the undo; details name the migration)."""
    for team in plan.teams:
        out = _LegacyWrites(s, org_id, team, actor, migration)
        for changes in team.models:
            _apply_model(out, changes)
        if team.protected_aliases is not None:
            _apply_protected(out)


@dataclass(frozen=True)
class _LegacyWrites:
    """Where one team's carried-back changes are written, and what their events name."""

    s: Session
    org_id: int
    team: TeamChanges
    actor: str
    migration: str

    def event(self, type: str, resource: str, **details: Any) -> None:
        events.record_event(
            self.s,
            type,
            self.actor,
            resource,
            {**details, "carried_back_by": self.migration},
            org_id=self.org_id,
            team_id=self.team.team_id,
        )

    def version(self, model: str, index: int) -> str:
        return model_version_name(self.team.team, model, index)


def _apply_model(out: _LegacyWrites, changes: ModelChanges) -> None:
    """One registered model's changes, in an order that keeps every write valid: unlinks
    (with their aliases), removed aliases, version fields, new links, alias moves (onto
    old or new versions), then the model's own fields and index counter."""
    now = now_us()
    if changes.deleted:
        _delete_model(out, changes)
        return
    _apply_unlinks(out, changes)
    _apply_removed_aliases(out, changes)
    _apply_version_fields(out, changes, now)
    new_ids = _apply_links(out, changes)
    _apply_alias_moves(out, changes, new_ids)
    _apply_model_fields(out, changes, now)
    out.s.flush()


def _delete_model(out: _LegacyWrites, changes: ModelChanges) -> None:
    s, a, model = out.s, m.RegisteredModelAlias, changes.model
    aliases = sorted(s.execute(select(a.alias).where(a.registered_model_id == model.id)).scalars())
    out.event(
        events.LEGACY_MODEL_DELETED,
        model_name(out.team.team, model.name),
        versions_removed=remove_model(out.s, model.id),
        aliases_removed=aliases,
    )


def _apply_unlinks(out: _LegacyWrites, changes: ModelChanges) -> None:
    v, a = m.RegisteredModelVersion, m.RegisteredModelAlias
    s, model = out.s, changes.model
    for row in changes.unlinks:
        removed = list(s.execute(select(a.alias).where(a.version_id == row.id)).scalars())
        s.execute(delete(a).where(a.version_id == row.id))
        s.execute(delete(v).where(v.id == row.id))
        out.event(
            events.LEGACY_VERSION_UNLINKED,
            out.version(model.name, row.version_index),
            version_index=row.version_index,
            aliases_removed=sorted(removed),
            artifact_version_id=row.artifact_version_id,
            carried_back_from=changes.collection,
        )


def _apply_removed_aliases(out: _LegacyWrites, changes: ModelChanges) -> None:
    a = m.RegisteredModelAlias
    for alias_row, index in changes.removed_aliases:
        if any(row.id == alias_row.version_id for row in changes.unlinks):
            continue  # went with its version
        out.s.execute(delete(a).where(a.id == alias_row.id))
        out.event(
            events.LEGACY_ALIAS_DELETED,
            out.version(changes.model.name, index),
            alias=alias_row.alias,
            version_index=index,
        )


def _apply_version_fields(out: _LegacyWrites, changes: ModelChanges, now: int) -> None:
    v = m.RegisteredModelVersion
    for row, fields in changes.version_fields:
        out.s.execute(update(v).where(v.id == row.id).values(**fields, update_time=now))
        out.event(
            events.LEGACY_VERSION_UPDATED,
            out.version(changes.model.name, row.version_index),
            **events.update_details(fields, row.tags, fields.get("tags")),
        )


def _apply_links(out: _LegacyWrites, changes: ModelChanges) -> dict[int, int]:
    """The new links, at their collection indices; their ids by index."""
    s, model = out.s, changes.model
    new_ids: dict[int, int] = {}
    for link in changes.links:
        cv = link.cv
        row = model_version_row(cv, model.id)
        s.add(row)
        s.flush()
        new_ids[link.index] = row.id
        out.event(
            events.LEGACY_VERSION_LINKED,
            out.version(model.name, link.index),
            version_index=link.index,
            artifact_version=_artifact(cv),
            aliases=[],
            carried_back_from=f"{changes.collection}/versions/{link.index}",
        )
    return new_ids


def _apply_alias_moves(out: _LegacyWrites, changes: ModelChanges, new_ids: dict[int, int]) -> None:
    a = m.RegisteredModelAlias
    s, model = out.s, changes.model
    for move in changes.aliases:
        kind, ref = move.target
        version_id = ref if kind == "version" else new_ids[ref]
        moved = s.execute(
            update(a)
            .where(a.registered_model_id == model.id, a.alias == move.alias)
            .values(version_id=version_id, create_time=move.create_time)
        )
        if not rowcount(moved):
            s.add(
                m.RegisteredModelAlias(
                    registered_model_id=model.id,
                    alias=move.alias,
                    version_id=version_id,
                    create_time=move.create_time,
                )
            )
        out.event(
            events.LEGACY_ALIAS_SET,
            out.version(model.name, move.index),
            alias=move.alias,
            version_index=move.index,
            previous_version_index=move.previous,
        )


def _apply_model_fields(out: _LegacyWrites, changes: ModelChanges, now: int) -> None:
    """Description and tags, the next index, and the update time when anything of the
    model changed."""
    rm, model = m.RegisteredModel, changes.model
    values: dict[str, Any] = dict(changes.fields)
    if changes.next_index is not None:
        values["next_version_index"] = changes.next_index
    if changes.fields:
        values.update(revision=rm.revision + 1, update_time=now)
    elif changes.unlinks or changes.links or changes.aliases or changes.removed_aliases:
        values["update_time"] = now
    if values:
        out.s.execute(update(rm).where(rm.id == model.id).values(**values))
    if changes.fields:
        out.event(
            events.LEGACY_MODEL_UPDATED,
            model_name(out.team.team, model.name),
            **events.update_details(changes.fields, model.tags, changes.fields.get("tags")),
            carried_back_from=changes.collection,
        )


def _apply_protected(out: _LegacyWrites) -> None:
    team = out.team
    out.s.execute(
        update(m.Team)
        .where(m.Team.id == team.team_id)
        .values(
            legacy_protected_aliases=team.protected_aliases,
            legacy_settings_revision=m.Team.legacy_settings_revision + 1,
            legacy_settings_update_time=now_us(),
        )
        .execution_options(synchronize_session=False)
    )
    out.event(
        events.LEGACY_SETTINGS_UPDATED,
        f"teams/{team.team}/legacyRegistrySettings",
        fields=["protected_aliases"],
        protected_aliases_before=team.protected_before,
        protected_aliases=team.protected_aliases,
    )
