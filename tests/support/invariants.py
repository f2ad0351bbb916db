"""Invariants over every collection of a database, whatever happened to the server:
one version per alias per collection (and the unique constraint that guarantees it),
no link to a missing artifact version, version indices unique and dense,
`next_version_index` one past the highest, and exactly one event per change
(replaying a collection's events gives exactly its versions and aliases)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session, aliased

from registry_server.storage import models as m
from registry_server.storage.db import Database

HISTORY_TYPES = (
    "COLLECTION_CREATED",
    "VERSION_LINKED",
    "VERSION_UNLINKED",
    "ALIAS_ADDED",
    "ALIAS_REMOVED",
)


@dataclass
class CollectionState:
    """A collection as stored, keyed by its resource name."""

    id: int
    name: str
    next_version_index: int
    migrated: bool
    versions: dict[int, str] = field(default_factory=dict)  # index -> artifact version name
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> index


def _collections(s: Session) -> dict[str, CollectionState]:
    rows = s.execute(
        select(
            m.Collection.id,
            m.Organization.name,
            m.Registry.name,
            m.Collection.name,
            m.Collection.next_version_index,
            m.Collection.migrated_from_model_id,
        )
        .join(m.Registry, m.Registry.id == m.Collection.registry_id)
        .join(m.Organization, m.Organization.id == m.Registry.org_id)
    ).all()
    by_id = {
        cid: CollectionState(
            cid,
            f"organizations/{org}/registries/{registry}/collections/{name}",
            next_index,
            migrated is not None,
        )
        for cid, org, registry, name, next_index, migrated in rows
    }
    for cid, index, team, project, artifact, av_index in s.execute(
        select(
            m.CollectionVersion.collection_id,
            m.CollectionVersion.version_index,
            m.Team.name,
            m.Project.name,
            m.Artifact.name,
            m.ArtifactVersion.version_index,
        )
        .join(m.ArtifactVersion, m.ArtifactVersion.id == m.CollectionVersion.artifact_version_id)
        .join(m.Artifact, m.Artifact.id == m.ArtifactVersion.artifact_id)
        .join(m.Project, m.Project.id == m.Artifact.project_id)
        .join(m.Team, m.Team.id == m.Project.team_id)
    ).all():
        by_id[cid].versions[index] = (
            f"teams/{team}/projects/{project}/artifacts/{artifact}/versions/{av_index}"
        )
    for cid, alias, index in s.execute(
        select(
            m.CollectionAlias.collection_id,
            m.CollectionAlias.alias,
            m.CollectionVersion.version_index,
        ).join(m.CollectionVersion, m.CollectionVersion.id == m.CollectionAlias.version_id)
    ).all():
        by_id[cid].aliases[alias] = index
    return {c.name: c for c in by_id.values()}


def _history(s: Session) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Collection name -> its (type, details) events in cursor order, starting at its last
    COLLECTION_CREATED (a deleted and re-created collection starts afresh)."""
    history: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for type_, resource, details in s.execute(
        select(m.Event.type, m.Event.resource, m.Event.details)
        .where(m.Event.type.in_(HISTORY_TYPES))
        .order_by(m.Event.cursor)
    ).all():
        if type_ == "COLLECTION_CREATED":
            history[resource] = [(type_, details or {})]
        else:
            history[(details or {}).get("collection", "")].append((type_, details or {}))
    return history


def alias_events(url: str) -> dict[tuple[str, str], list[tuple[Any, int]]]:
    """(collection, alias) -> (previous_version_index, version_index) of its ALIAS_ADDED
    events in cursor order."""
    db = Database(url)
    try:
        with db.read() as s:
            history = _history(s)
    finally:
        db.dispose()
    out: dict[tuple[str, str], list[tuple[Any, int]]] = defaultdict(list)
    for collection, events in history.items():
        for type_, details in events:
            if type_ == "ALIAS_ADDED":
                out[(collection, details["alias"])].append(
                    (details.get("previous_version_index"), details["version_index"])
                )
    return out


def _replay(state: CollectionState, events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Replays a collection's events; they must produce exactly its stored versions and
    aliases, with every alias move starting where the previous one left the alias."""
    out: list[str] = []
    name = state.name
    if not events or events[0][0] != "COLLECTION_CREATED":
        return [f"{name}: no COLLECTION_CREATED event"]
    linked: dict[int, str] = {}
    aliases: dict[str, int] = {}
    links = 0
    for type_, d in events[1:]:
        index = int(d.get("version_index", -1))
        if type_ == "VERSION_LINKED":
            links += 1
            if index in linked:
                out.append(f"{name}: v{index} linked twice")
            linked[index] = d.get("artifact_version", "")
        elif type_ == "VERSION_UNLINKED":
            if linked.pop(index, None) is None:
                out.append(f"{name}: v{index} unlinked but not linked")
            if any(at == index for at in aliases.values()):
                out.append(f"{name}: v{index} unlinked with its aliases")
        elif type_ == "ALIAS_ADDED":
            alias = d.get("alias", "")
            if d.get("previous_version_index") != aliases.get(alias):
                out.append(
                    f"{name}: alias {alias!r} moved from v{d.get('previous_version_index')} "
                    f"but was on v{aliases.get(alias)}"
                )
            if index not in linked:
                out.append(f"{name}: alias {alias!r} put on v{index}, which is not linked")
            aliases[alias] = index
        elif type_ == "ALIAS_REMOVED":
            alias = d.get("alias", "")
            if aliases.pop(alias, None) != index:
                out.append(f"{name}: alias {alias!r} removed from v{index}, where it was not")
    if linked != state.versions:
        extra = sorted(set(state.versions) - set(linked))
        lost = sorted(set(linked) - set(state.versions))
        moved = sorted(
            i for i in set(linked) & set(state.versions) if linked[i] != state.versions[i]
        )
        out.append(
            f"{name}: versions differ from their events (without an event {extra[:5]}, "
            f"with an event but missing {lost[:5]}, pointing elsewhere {moved[:5]})"
        )
    if aliases != state.aliases:
        out.append(f"{name}: aliases {state.aliases} but events say {aliases}")
    if links != state.next_version_index:
        out.append(
            f"{name}: {links} VERSION_LINKED events for next_version_index "
            f"{state.next_version_index}"
        )
    return out


def invariant_violations(url: str) -> list[str]:
    """Everything wrong with the collections of the database (empty when all holds)."""
    db = Database(url)
    out: list[str] = []
    try:
        inspector = inspect(db.read_engine)
        for table, columns in (
            ("collection_aliases", ("collection_id", "alias")),
            ("collection_versions", ("collection_id", "version_index")),
        ):
            uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
            if columns not in uniques:
                out.append(f"no unique constraint on {table}{columns}")
        with db.read() as s:
            cv, ca, av = m.CollectionVersion, m.CollectionAlias, m.ArtifactVersion
            for cid, alias, n in s.execute(
                select(ca.collection_id, ca.alias, func.count())
                .group_by(ca.collection_id, ca.alias)
                .having(func.count() > 1)
            ).all():
                out.append(f"alias {alias!r} of collection {cid} is on {n} versions")
            for (vid,) in s.execute(
                select(cv.id).outerjoin(av, av.id == cv.artifact_version_id).where(av.id.is_(None))
            ).all():
                out.append(f"collection version {vid} points at a missing artifact version")
            holder = aliased(m.CollectionVersion)
            for alias_id, alias in s.execute(
                select(ca.id, ca.alias)
                .outerjoin(holder, holder.id == ca.version_id)
                .where((holder.id.is_(None)) | (holder.collection_id != ca.collection_id))
            ).all():
                out.append(f"alias {alias!r} ({alias_id}) is not on a version of its collection")
            collections = _collections(s)
            history = _history(s)
        for name, state in sorted(collections.items()):
            indices = sorted(state.versions)
            top = indices[-1] if indices else -1
            unlinked = any(t == "VERSION_UNLINKED" for t, _ in history.get(name, []))
            if state.migrated or unlinked:
                # Migrated collections keep the legacy indices, gaps included.
                if state.next_version_index <= top:
                    out.append(f"{name}: next_version_index {state.next_version_index} <= v{top}")
            else:
                if indices != list(range(len(indices))):
                    out.append(f"{name}: indices not dense: {indices[:10]}...")
                if state.next_version_index != top + 1:
                    out.append(f"{name}: next_version_index {state.next_version_index}, max v{top}")
            if not state.migrated:
                out.extend(_replay(state, history.get(name, [])))
    finally:
        db.dispose()
    return out
