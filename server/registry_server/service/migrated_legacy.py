"""The legacy Model Registry of a MIGRATED team, answered by the registry it became.

Reads (GetRegisteredModel, ListRegisteredModels, GetRegisteredModelVersion,
ListRegisteredModelVersions) answer from the collection each registered model became,
marked `redirected`, through the collection use cases' own statements, so code that
knows only legacy names sees what was linked, tagged, described and aliased there since:
versions keep their index (`{team}/model-registry/{m}:vN` names collection version vN,
as ResolvePath redirects it), and a registered model lists as its collection does. Only
registered models that existed before the migration have a legacy name: collections
created in the registry afterwards are not listed, and one whose collection was deleted
answers NOT_FOUND. Access is the legacy one (team rights, checked by the caller), as
for ResolvePath's redirected legacy paths.

LinkModelVersion on such a team is forwarded to the collection link use case (with its
access checks and event); the legacy name of its answer reads back with
GetRegisteredModelVersion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..domain import names, paths
from ..domain.errors import FailedPrecondition, NotFound
from ..domain.names import CollectionRef, model_version_name
from ..domain.pagination import ListParams
from ..storage import models as m
from ..storage.sql import Sql
from . import collections, links, versions
from .context import Principal
from .legacy_views import ModelInfo, ModelVersionView, model_version_row
from .resolve import ModelVersionInfo


def _org(s: Session, team: m.Team) -> str:
    return s.execute(
        select(m.Organization.name).where(m.Organization.id == team.org_id)
    ).scalar_one()


def _migrated_collection(
    s: Session, team: m.Team, model: str
) -> tuple[CollectionRef, m.Collection] | None:
    """The collection registered model `model` became (None: no such model, or its
    collection was deleted)."""
    row = s.execute(
        select(m.Collection, m.Registry.name)
        .join(m.RegisteredModel, m.RegisteredModel.migrated_collection_id == m.Collection.id)
        .join(m.Registry, m.Registry.id == m.Collection.registry_id)
        .where(m.RegisteredModel.team_id == team.id, m.RegisteredModel.name == model)
    ).first()
    if row is None:
        return None
    collection, registry = row
    return CollectionRef(_org(s, team), registry, collection.name), collection


def _collection_or_not_found(
    s: Session, team: m.Team, model: str, label: str
) -> tuple[CollectionRef, m.Collection]:
    found = _migrated_collection(s, team, model)
    if found is None:
        raise NotFound(f"{label} not found")
    return found


# --- registered models -------------------------------------------------------------------


def _model_info(team: m.Team, view: collections.CollectionView, name: str) -> ModelInfo:
    c = view.row
    row = m.RegisteredModel(  # a transient view, never added to the session
        name=c.name,
        description=c.description,
        tags=list(c.tags or []),
        revision=c.revision,
        create_time=c.create_time,
        update_time=c.update_time,
    )
    return ModelInfo(row, team.name, view.version_count, name, redirected=True)


def get_model(s: Session, team: m.Team, model: str, label: str) -> ModelInfo:
    ref, collection = _collection_or_not_found(s, team, model, label)
    return _model_info(team, collections.collection_view(s, collection), ref.name)


def list_models(
    s: Session, team: m.Team, ask: ListParams, query: tuple[Any, ...]
) -> tuple[list[ModelInfo], str]:
    """The registered models of the team that still have their collection, as those
    collections are now (filtered and ordered on the collections' fields)."""
    listing = collections.collection_listing(s, ask, (*query, "redirected"))
    migrated = select(m.RegisteredModel.migrated_collection_id).where(
        m.RegisteredModel.team_id == team.id
    )
    views, token = collections.collections_page(s, m.Collection.id.in_(migrated), listing)
    if not views:
        return [], token
    registry = s.execute(
        select(m.Registry.name).where(m.Registry.id == views[0].row.registry_id)
    ).scalar_one()
    org = _org(s, team)
    return [
        _model_info(team, v, names.collection_name(org, registry, v.row.name)) for v in views
    ], token


# --- versions ------------------------------------------------------------------------------


def legacy_view(team: m.Team, model: str, view: versions.VersionView) -> ModelVersionView:
    """The legacy view of a collection version (same index, aliases but `latest`)."""
    info = ModelVersionInfo(
        row=model_version_row(view, 0),  # a transient view, never added to the session
        team=team.name,
        team_id=team.id,
        model=model,
        linked_by=view.linked_by,
        aliases=tuple(a for a in view.aliases if a != paths.LATEST),
    )
    return ModelVersionView(info, view.artifact_version, view.name)


def get_model_version(s: Session, team: m.Team, model: str, index: int) -> ModelVersionView:
    label = model_version_name(team.name, model, index)
    ref, collection = _collection_or_not_found(s, team, model, label)
    view = versions.version_at(Sql.of(s), ref, collection.id, index)
    if view is None:
        raise NotFound(f"{label} not found")
    return legacy_view(team, model, view)


def list_model_versions(
    s: Session, team: m.Team, model: str, ask: ListParams, query: tuple[Any, ...]
) -> tuple[list[ModelVersionView], str]:
    sql = Sql.of(s)
    request = versions.page_request(sql, ask, (*query, "redirected"))
    ref, collection = _collection_or_not_found(s, team, model, names.model_name(team.name, model))
    views, token = versions.versions_page(sql, ref, collection.id, request)
    return [legacy_view(team, model, v) for v in views], token


# --- links ----------------------------------------------------------------------------------


def forward_legacy_link(
    s: Session,
    p: Principal,
    team: m.Team,
    registered_model_id: str,
    artifact_version_ref: str,
    aliases: Sequence[str],
    tags: Sequence[str] = (),
) -> ModelVersionView:
    """LinkModelVersion on a MIGRATED team: a registered model that existed before the
    migration gets the link in its migrated collection; a new name fails, naming the new
    registry. The answer's index is the collection's, so its legacy name and the legacy
    path `{team}/model-registry/{m}:vN` (redirected) name it."""
    found = _migrated_collection(s, team, registered_model_id)
    if found is None:
        org = _org(s, team)
        registry = (
            s.execute(
                select(m.Registry.name).where(m.Registry.id == team.migrated_registry_id)
            ).scalar_one_or_none()
            if team.migrated_registry_id is not None
            else None
        )
        where = f"organizations/{org}/registries/{registry}" if registry else "the Registry"
        path = (
            f" ({org}/{paths.REGISTRY_PREFIX}{registry}/{registered_model_id})" if registry else ""
        )
        raise FailedPrecondition(
            f"the legacy Model Registry of teams/{team.name} is read-only: it was migrated "
            f"to {where}; registered model {registered_model_id!r} has no collection there "
            f"from before the migration, so link it there{path} with LinkArtifactVersion",
            reason="LEGACY_REGISTRY_READ_ONLY",
            metadata={"registry": where, "team": f"teams/{team.name}"},
        )
    ref, _ = found
    request = links.link_request(ref, artifact_version_ref, aliases, tags, "")
    return legacy_view(team, registered_model_id, links.link(Sql.of(s), p, request).view)
