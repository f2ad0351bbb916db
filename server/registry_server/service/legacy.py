"""The legacy team Model Registry (LegacyModelRegistryService use cases).

Rights are team rights (SPEC section 3, `roles.legacy_allows`): any team member views
and uses, team MEMBER also links, edits and sets unprotected aliases, team ADMIN and the
team's model registry admins also manage protected aliases and settings; org admins may
do everything in their organization; everyone else gets NOT_FOUND.

The registry's state gates writes (`legacy_settings`, with the rights checks and the
settings).

Each registered model has its own `v0..vN` index, allocated under a lock on the
registered-model row, which also serializes alias moves. `latest` is not stored: it is
the highest index (see `resolve`), so it cannot be set by hand.

Decisions: linking an artifact version that is already linked returns the existing
link after moving the given aliases onto it (its tags are kept). Unlinking a version, or
deleting a registered model, that carries a protected alias needs the protected-alias
right.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, aliased

from ..domain import names
from ..domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, quote
from ..domain.names import artifact_version_name, model_name, model_version_name
from ..domain.pagination import ListParams
from ..domain.roles import LegacyPermission, LegacyState, Permission
from ..storage import models as m
from ..storage.db import add_created, now_us, revised
from ..storage.filter_sql import FieldSpec, filter_of, filtered, held_alias
from ..storage.paging import page_of, parse_order_by
from ..storage.sql import Sql
from . import events, migrated_legacy
from .artifacts import DESCRIPTION_MAX
from .context import Principal
from .legacy_settings import check_state, legacy_team, require_protected_right, require_right
from .legacy_views import ModelInfo, ModelVersionView
from .organizations import check_etag
from .resolve import ModelVersionInfo, Resolution, resolve_reference
from .rows import lock_or_create, one_or_not_found
from .versions import aliases_by_version, move_aliases, moved_from, version_row

# The legacy tables, by shorter names.
Model = m.RegisteredModel
ModelVersion = m.RegisteredModelVersion
ModelAlias = m.RegisteredModelAlias
TYPE_NOT_ACCEPTED = "ARTIFACT_TYPE_NOT_ACCEPTED"
MODEL_TYPE = "model"


# --- registered models -------------------------------------------------------------------


def _load_model(s: Session, team: m.Team, model: str, *, for_update: bool = False) -> Model:
    stmt = select(Model).where(Model.team_id == team.id, Model.name == model)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return one_or_not_found(s, stmt, model_name(team.name, model))


def _version_count(model_id: Any) -> Any:
    return (
        select(func.count()).where(ModelVersion.registered_model_id == model_id).scalar_subquery()
    )


_MigratedRegistry = aliased(m.Registry, name="migrated_registry")
_MigratedOrg = aliased(m.Organization, name="migrated_org")


def _model_select() -> Any:
    """Registered models with their version count and migrated collection name."""
    return (
        select(
            Model,
            _version_count(Model.id).label("version_count"),
            m.Collection.name.label("collection"),
            _MigratedRegistry.name.label("registry"),
            _MigratedOrg.name.label("org"),
        )
        .outerjoin(m.Collection, m.Collection.id == Model.migrated_collection_id)
        .outerjoin(_MigratedRegistry, _MigratedRegistry.id == m.Collection.registry_id)
        .outerjoin(_MigratedOrg, _MigratedOrg.id == _MigratedRegistry.org_id)
    )


def _model_info(row: Any, team: str) -> ModelInfo:
    migrated = (
        f"organizations/{row.org}/registries/{row.registry}/collections/{row.collection}"
        if row.collection is not None
        else ""
    )
    return ModelInfo(row.RegisteredModel, team, int(row.version_count or 0), migrated)


def create_registered_model(
    s: Session, p: Principal, *, team: str, model_id: str, description: str, tags: Sequence[str]
) -> ModelInfo:
    names.new_id(model_id, "registered_model_id")
    names.text(description, "description", DESCRIPTION_MAX)
    new_tags = names.tags(list(tags), "tags")
    ta = legacy_team(s, p, team, LegacyPermission.WRITE, write=True)
    if s.execute(
        select(Model.id).where(Model.team_id == ta.team.id, Model.name == model_id)
    ).first():
        raise AlreadyExists(f"{model_name(team, model_id)} already exists")
    model = _new_model(s, p, ta.team, model_id, description, new_tags)
    events.scoped_event(s, events.LEGACY_MODEL_CREATED, p, model_name(team, model_id), team=ta.team)
    return ModelInfo(model, team, 0, "")


def _new_model(
    s: Session, p: Principal, team: m.Team, model_id: str, description: str, tags: list[str]
) -> Model:
    model = Model(
        team_id=team.id,
        name=model_id,
        description=description,
        tags=tags,
        created_by_id=p.user_id,
    )
    add_created(s, model)
    return model


def get_registered_model(s: Session, p: Principal, team: str, model: str) -> ModelInfo:
    label = model_name(team, model)
    ta = legacy_team(s, p, team, LegacyPermission.VIEW, write=False, what=label)
    if ta.team.legacy_state == LegacyState.MIGRATED:
        return migrated_legacy.get_model(s, ta.team, model, label)
    row = s.execute(_model_select().where(Model.team_id == ta.team.id, Model.name == model)).first()
    if row is None:
        raise NotFound(f"{label} not found")
    return _model_info(row, team)


MODEL_FILTER_FIELDS: dict[str, FieldSpec] = {
    "name": FieldSpec("string", Model.name),
    "description": FieldSpec("string", Model.description),
    "tag": FieldSpec("tags", Model.tags),
    "create_time": FieldSpec("time", Model.create_time),
    "update_time": FieldSpec("time", Model.update_time),
}
MODEL_ORDER_FIELDS = {
    "name": Model.name,
    "create_time": Model.create_time,
    "update_time": Model.update_time,
}


def list_registered_models(
    s: Session, p: Principal, team: str, ask: ListParams
) -> tuple[list[ModelInfo], str]:
    where = filter_of(s, ask.filter, MODEL_FILTER_FIELDS)
    query = ("registered_models", team, ask.filter, ask.order_by)
    keys = parse_order_by(ask.order_by, MODEL_ORDER_FIELDS, "name", Model.id)
    ta = legacy_team(s, p, team, LegacyPermission.VIEW, write=False)
    if ta.team.legacy_state == LegacyState.MIGRATED:
        return migrated_legacy.list_models(s, ta.team, ask, query)
    stmt = filtered(_model_select().where(Model.team_id == ta.team.id), where)
    page = page_of(s, stmt, keys, ask, query)
    return [_model_info(row, team) for row in page.rows], page.next_page_token


def update_registered_model(
    s: Session,
    p: Principal,
    team: str,
    model: str,
    fields: set[str],
    *,
    description: str,
    tags: Sequence[str],
    etag: str,
) -> ModelInfo:
    names.text(description, "registered_model.description", DESCRIPTION_MAX)
    new_tags = names.tags(list(tags), "registered_model.tags")
    label = model_name(team, model)
    ta = legacy_team(s, p, team, LegacyPermission.WRITE, write=True, what=label)
    row = _load_model(s, ta.team, model, for_update=True)
    check_etag(etag, row.revision, "registered_model.etag")
    details = events.update_details(fields, row.tags, new_tags)
    revised(row, fields, description=description, tags=new_tags)
    s.flush()
    events.scoped_event(s, events.LEGACY_MODEL_UPDATED, p, label, details, team=ta.team)
    return _model_info(s.execute(_model_select().where(Model.id == row.id)).one(), team)


def delete_registered_model(s: Session, p: Principal, team: str, model: str) -> None:
    """Removes the model, its versions and aliases; never the artifact versions."""
    label = model_name(team, model)
    ta = legacy_team(s, p, team, LegacyPermission.WRITE, write=True, what=label)
    row = _load_model(s, ta.team, model, for_update=True)
    aliases = list(
        s.execute(
            select(ModelAlias.alias).where(ModelAlias.registered_model_id == row.id)
        ).scalars()
    )
    require_protected_right(ta, aliases, f"deleting {label}")
    versions = remove_model(s, row.id)
    s.expunge(row)
    events.scoped_event(
        s,
        events.LEGACY_MODEL_DELETED,
        p,
        label,
        {"versions_removed": versions, "aliases_removed": sorted(aliases)},
        team=ta.team,
    )


def remove_model(s: Session, model_id: int) -> int:
    """Deletes a registered model with its versions and aliases (never the artifact
    versions); how many versions it had."""
    versions = s.execute(
        select(func.count()).where(ModelVersion.registered_model_id == model_id)
    ).scalar_one()
    s.execute(delete(ModelAlias).where(ModelAlias.registered_model_id == model_id))
    s.execute(delete(ModelVersion).where(ModelVersion.registered_model_id == model_id))
    s.execute(delete(Model).where(Model.id == model_id))
    return int(versions)


# --- registered-model versions -------------------------------------------------------------

_Linker = aliased(m.User, name="linker")


_ArtifactTeam = aliased(m.Team, name="artifact_team")


def _version_select() -> Any:
    """Versions with linker and the linked artifact version's name parts."""
    return (
        select(
            ModelVersion,
            _Linker.name.label("linked_by"),
            _ArtifactTeam.name.label("a_team"),
            m.Project.name.label("a_project"),
            m.Artifact.name.label("a_artifact"),
            m.ArtifactVersion.version_index.label("a_index"),
        )
        .outerjoin(_Linker, _Linker.id == ModelVersion.linked_by_id)
        .join(m.ArtifactVersion, m.ArtifactVersion.id == ModelVersion.artifact_version_id)
        .join(m.Artifact, m.Artifact.id == m.ArtifactVersion.artifact_id)
        .join(m.Project, m.Project.id == m.Artifact.project_id)
        .join(_ArtifactTeam, _ArtifactTeam.id == m.Project.team_id)
    )


def _version_views(
    s: Session, rows: Sequence[Any], team: m.Team, model: str
) -> list[ModelVersionView]:
    aliases = aliases_by_version(s, ModelAlias, [row.RegisteredModelVersion.id for row in rows])
    return [
        ModelVersionView(
            ModelVersionInfo(
                row=row.RegisteredModelVersion,
                team=team.name,
                team_id=team.id,
                model=model,
                linked_by=row.linked_by or "",
                aliases=aliases[row.RegisteredModelVersion.id],
            ),
            artifact_version_name(row.a_team, row.a_project, row.a_artifact, row.a_index),
        )
        for row in rows
    ]


def _version_view(s: Session, team: m.Team, model: str, version_id: int) -> ModelVersionView:
    row = s.execute(_version_select().where(ModelVersion.id == version_id)).one()
    return _version_views(s, [row], team, model)[0]


def _move_aliases(
    s: Session, model_id: int, version_id: int, aliases: Sequence[str], field: str, what: str
) -> dict[str, int | None]:
    """`versions.move_aliases` of a registered model (its row locked), at most
    ALIASES_PER_VERSION on the version `what`."""
    return move_aliases(
        s,
        ModelAlias,
        ModelVersion,
        "registered_model_id",
        model_id,
        version_id,
        aliases,
        (field, what),
    )


def link_model_version(
    s: Session,
    p: Principal,
    *,
    team: str,
    model_id: str,
    artifact_version: str,
    aliases: Sequence[str],
    tags: Sequence[str],
) -> ModelVersionView:
    """Links an artifact version of type `model`, creating the registered model if needed."""
    names.resource_id(model_id, "registered_model_id")
    wanted = names.new_aliases(list(aliases), "aliases")
    new_tags = names.tags(list(tags), "tags")
    label = model_name(team, model_id)
    ta = legacy_team(s, p, team, LegacyPermission.VIEW, write=False, what=label)
    if ta.team.legacy_state == LegacyState.MIGRATED:  # to the migrated collection
        return migrated_legacy.forward_legacy_link(
            s, p, ta.team, model_id, artifact_version, wanted, new_tags
        )
    check_state(s, ta.team, write=True)
    require_right(ta, LegacyPermission.WRITE, label)
    require_protected_right(ta, wanted, f"linking to {label}")
    source: Resolution = resolve_reference(
        Sql.of(s), p, artifact_version, field="artifact_version", permission=Permission.VIEW
    )
    av = source.artifact_version
    if av.org_id != ta.team.org_id:
        raise NotFound(f"{quote(artifact_version)} not found")
    if av.type != MODEL_TYPE:
        raise FailedPrecondition(
            f"{av.name} has type {av.type!r}; the legacy Model Registry accepts only "
            f"artifacts of type {MODEL_TYPE!r}",
            reason=TYPE_NOT_ACCEPTED,
        )

    def create() -> Model:  # (one named before today's rules exists and keeps working)
        names.new_id(model_id, "registered_model_id")
        return _new_model(s, p, ta.team, model_id, "", [])

    lock_model = (
        select(Model)
        .where(Model.team_id == ta.team.id, Model.name == model_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    model, model_created = lock_or_create(s, lock_model, create)
    existing = s.execute(
        select(ModelVersion).where(
            ModelVersion.registered_model_id == model.id, ModelVersion.artifact_version_id == av.id
        )
    ).scalar_one_or_none()
    now = now_us()
    if existing is not None:
        name = model_version_name(team, model_id, existing.version_index)
        moved = _move_aliases(s, model.id, existing.id, wanted, "aliases", name)
        if moved:
            existing.update_time = now
            model.update_time = now
            events.scoped_event(
                s,
                events.LEGACY_VERSION_LINKED,
                p,
                name,
                {
                    "version_index": existing.version_index,
                    "artifact_version": av.name,
                    "already_linked": True,
                    "aliases": sorted(moved),
                    "moved_from": moved_from(moved),
                },
                team=ta.team,
            )
        return _version_view(s, ta.team, model_id, existing.id)
    index = model.next_version_index
    model.next_version_index = index + 1
    model.update_time = now
    link = ModelVersion(
        registered_model_id=model.id,
        version_index=index,
        artifact_version_id=av.id,
        tags=new_tags,
        linked_by_id=p.user_id,
    )
    add_created(s, link, now)
    name = model_version_name(team, model_id, index)
    moved = _move_aliases(s, model.id, link.id, wanted, "aliases", name)
    events.scoped_event(
        s,
        events.LEGACY_VERSION_LINKED,
        p,
        name,
        {
            "version_index": index,
            "artifact_version": av.name,
            "source_path": source.canonical_path,
            "aliases": sorted(moved),
            "moved_from": moved_from(moved),
            "model_created": model_created,
        },
        team=ta.team,
    )
    return _version_view(s, ta.team, model_id, link.id)


def get_model_version(
    s: Session, p: Principal, team: str, model: str, index: int
) -> ModelVersionView:
    label = model_version_name(team, model, index)
    ta = legacy_team(s, p, team, LegacyPermission.VIEW, write=False, what=label)
    if ta.team.legacy_state == LegacyState.MIGRATED:
        return migrated_legacy.get_model_version(s, ta.team, model, index)
    row = s.execute(
        _version_select()
        .join(Model, Model.id == ModelVersion.registered_model_id)
        .where(
            Model.team_id == ta.team.id, Model.name == model, ModelVersion.version_index == index
        )
    ).first()
    if row is None:
        raise NotFound(f"{label} not found")
    return _version_views(s, [row], ta.team, model)[0]


MODEL_VERSION_FILTER_FIELDS: dict[str, FieldSpec] = {
    "alias": FieldSpec("alias", builder=held_alias(ModelAlias, ModelVersion)),
    "tag": FieldSpec("tags", ModelVersion.tags),
    "version_index": FieldSpec("int", ModelVersion.version_index),
    "create_time": FieldSpec("time", ModelVersion.create_time),
    "metadata": FieldSpec("json_map", m.ArtifactVersion.metadata_),
}
MODEL_VERSION_ORDER_FIELDS = {
    "version_index": ModelVersion.version_index,
    "create_time": ModelVersion.create_time,
}


def list_model_versions(
    s: Session, p: Principal, team: str, model: str, ask: ListParams
) -> tuple[list[ModelVersionView], str]:
    where = filter_of(s, ask.filter, MODEL_VERSION_FILTER_FIELDS)
    query = ("registered_model_versions", model_name(team, model), ask.filter, ask.order_by)
    keys = parse_order_by(
        ask.order_by, MODEL_VERSION_ORDER_FIELDS, "version_index", ModelVersion.id
    )
    label = model_name(team, model)
    ta = legacy_team(s, p, team, LegacyPermission.VIEW, write=False, what=label)
    if ta.team.legacy_state == LegacyState.MIGRATED:
        return migrated_legacy.list_model_versions(s, ta.team, model, ask, query)
    row = _load_model(s, ta.team, model)
    stmt = _version_select().where(ModelVersion.registered_model_id == row.id)
    stmt = filtered(stmt, where)
    page = page_of(s, stmt, keys, ask, query)
    return _version_views(s, page.rows, ta.team, model), page.next_page_token


def update_model_version(
    s: Session,
    p: Principal,
    team: str,
    model: str,
    index: int,
    fields: set[str],
    *,
    description: str,
    tags: Sequence[str],
) -> ModelVersionView:
    names.text(description, "registered_model_version.description", DESCRIPTION_MAX)
    new_tags = names.tags(list(tags), "registered_model_version.tags")
    label = model_version_name(team, model, index)
    ta = legacy_team(s, p, team, LegacyPermission.WRITE, write=True, what=label)
    row = _load_model(s, ta.team, model, for_update=True)
    version = version_row(s, ModelVersion.registered_model_id, row.id, index, label)
    details = events.update_details(fields, version.tags, new_tags)
    revised(version, fields, description=description, tags=new_tags)
    s.flush()
    events.scoped_event(s, events.LEGACY_VERSION_UPDATED, p, label, details, team=ta.team)
    return _version_view(s, ta.team, model, version.id)


def unlink_model_version(s: Session, p: Principal, team: str, model: str, index: int) -> None:
    label = model_version_name(team, model, index)
    ta = legacy_team(s, p, team, LegacyPermission.WRITE, write=True, what=label)
    row = _load_model(s, ta.team, model, for_update=True)
    version = version_row(s, ModelVersion.registered_model_id, row.id, index, label)
    aliases = list(aliases_by_version(s, ModelAlias, [version.id])[version.id])
    require_protected_right(ta, aliases, f"unlinking {label}")
    artifact_version_id = version.artifact_version_id
    s.execute(delete(ModelAlias).where(ModelAlias.version_id == version.id))
    s.execute(delete(ModelVersion).where(ModelVersion.id == version.id))
    s.expunge(version)
    row.update_time = now_us()
    events.scoped_event(
        s,
        events.LEGACY_VERSION_UNLINKED,
        p,
        label,
        {
            "version_index": index,
            "aliases_removed": aliases,
            "artifact_version_id": artifact_version_id,
        },
        team=ta.team,
    )


def set_alias(
    s: Session, p: Principal, team: str, model: str, alias: str, index: int
) -> ModelVersionView:
    """Moves (or adds) `alias` to version `index`; an event when it actually moves."""
    names.new_alias(alias, "alias")
    if index < 0:
        raise InvalidArgument("version_index", "must not be negative")
    label = model_name(team, model)
    ta = legacy_team(s, p, team, LegacyPermission.WRITE, write=True, what=label)
    require_protected_right(ta, [alias], f"setting alias {quote(alias)} on {label}")
    row = _load_model(s, ta.team, model, for_update=True)
    name = model_version_name(team, model, index)
    version = version_row(s, ModelVersion.registered_model_id, row.id, index, name)
    moved = _move_aliases(s, row.id, version.id, [alias], "alias", name)
    if moved:
        row.update_time = now_us()
        events.scoped_event(
            s,
            events.LEGACY_ALIAS_SET,
            p,
            name,
            {"alias": alias, "version_index": index, "previous_version_index": moved[alias]},
            team=ta.team,
        )
    return _version_view(s, ta.team, model, version.id)


def delete_alias(
    s: Session, p: Principal, team: str, model: str, alias: str, index: int | None
) -> ModelVersionView:
    """Removes `alias`; when `index` is given the alias must be on that version."""
    names.existing_alias(alias, "alias")
    label = model_name(team, model)
    ta = legacy_team(s, p, team, LegacyPermission.WRITE, write=True, what=label)
    require_protected_right(ta, [alias], f"removing alias {quote(alias)} from {label}")
    row = _load_model(s, ta.team, model, for_update=True)
    found = s.execute(
        select(ModelAlias, ModelVersion)
        .join(ModelVersion, ModelVersion.id == ModelAlias.version_id)
        .where(ModelAlias.registered_model_id == row.id, ModelAlias.alias == alias)
    ).first()
    if found is None:
        raise NotFound(f"alias {quote(alias)} is not set on {label}")
    version: ModelVersion = found.RegisteredModelVersion
    if index is not None and version.version_index != index:
        raise FailedPrecondition(
            f"alias {quote(alias)} of {label} is on v{version.version_index}, not v{index}",
            reason="ALIAS_MOVED",
        )
    s.execute(delete(ModelAlias).where(ModelAlias.id == found.RegisteredModelAlias.id))
    s.expunge(found.RegisteredModelAlias)
    row.update_time = now_us()
    events.scoped_event(
        s,
        events.LEGACY_ALIAS_DELETED,
        p,
        model_version_name(team, model, version.version_index),
        {"alias": alias, "version_index": version.version_index},
        team=ta.team,
    )
    return _version_view(s, ta.team, model, version.id)
