"""Resolving a path: one statement per path form and version form (SPEC section 2).

    project_artifact(form)     {team}/{project}/{artifact}:{vN | alias}
    legacy(form)               {team}/model-registry/{model}:{vN | alias | latest}
    collection(key, form)      {org}/wandb-registry-{registry}/{collection}:...
                               by names (`key` "names") or, for a redirected legacy
                               path, by the migrated collection's id (`key` "id")

Each returns one row with what the answer shows and what the access check needs (the
caller's team role, or the registry's granted roles); the parts after the first are
outer-joined, so a row with NULL version columns is a missing version rather than no
row at all. `form` is "index", "alias" or "latest" (the highest index; for project
artifacts `latest` is an alias row like any other).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.sql import Select

from ..sql import joined_aliases, query
from .registries import named_collection, registry_columns
from .tables import (
    artifact,
    artifact_alias,
    artifact_team,
    artifact_version,
    av_aliases,
    caller_membership,
    collection,
    collection_alias,
    collection_version,
    creator,
    cv_aliases,
    highest_cv,
    highest_mv,
    linker,
    model_alias,
    model_aliases,
    model_version,
    org,
    project,
    registered_model,
    registry,
    team,
)
from .versions import highest_index


def artifact_columns(dialect: str) -> tuple[Any, ...]:
    """What `service.resolve.ArtifactVersionInfo` holds, in its order."""
    av = artifact_version.c
    return (
        av.id,
        av.version_index,
        av.digest,
        av.size,
        av.manifest,
        av.metadata,
        av.description,
        av.tags,
        av.producing_run,
        av.create_time,
        av.update_time,
        av.revision,
        av.delete_time,
        artifact_team.c.name,
        artifact_team.c.id,
        artifact_team.c.org_id,
        project.c.name,
        artifact.c.name,
        artifact.c.type,
        creator.c.name,
        joined_aliases(dialect, av_aliases, av.id),
    )


ARTIFACT_WIDTH = 21


def caller_team_role(team_id: Any) -> Any:
    """The caller's (`uid`) role in the team, NULL for non-members."""
    return (
        select(caller_membership.c.role)
        .where(
            caller_membership.c.team_id == team_id,
            caller_membership.c.user_id == bindparam("uid"),
        )
        .scalar_subquery()
    )


def _link_version(
    joined: Any,
    versions: Any,
    parent_column: str,
    parent_id: Any,
    aliases: Any,
    highest: Any,
    form: str,
) -> Any:
    """Outer-joins the link version a version token names: vN (`index`), the highest
    index (`latest`) or an alias row (`alias`); then its linker, its artifact version and
    that version's artifact, project, team (as `artifact_team`) and creator."""
    parent_of = versions.c[parent_column]
    if form == "index":
        on = and_(parent_of == parent_id, versions.c.version_index == bindparam("index"))
        joined = joined.outerjoin(versions, on)
    elif form == "latest":
        top = (
            select(func.max(highest.c.version_index))
            .where(highest.c[parent_column] == parent_id)
            .scalar_subquery()
        )
        joined = joined.outerjoin(
            versions, and_(parent_of == parent_id, versions.c.version_index == top)
        )
    else:
        on = and_(aliases.c[parent_column] == parent_id, aliases.c.alias == bindparam("alias"))
        joined = joined.outerjoin(aliases, on).outerjoin(
            versions, versions.c.id == aliases.c.version_id
        )
    return (
        joined.outerjoin(linker, linker.c.id == versions.c.linked_by_id)
        .outerjoin(artifact_version, artifact_version.c.id == versions.c.artifact_version_id)
        .outerjoin(artifact, artifact.c.id == artifact_version.c.artifact_id)
        .outerjoin(project, project.c.id == artifact.c.project_id)
        .outerjoin(artifact_team, artifact_team.c.id == project.c.team_id)
        .outerjoin(creator, creator.c.id == artifact_version.c.created_by_id)
    )


def named_artifact_version(joined: Any, owner: Any, form: str, *, outer: bool = False) -> Any:
    """`joined` (holding the team `owner`) joined to the project, artifact and artifact
    version the parameters `project`, `artifact` and `index` or `alias` (`form`) name;
    outer joins when `outer`."""

    def join(left: Any, right: Any, on: Any) -> Any:
        return left.outerjoin(right, on) if outer else left.join(right, on)

    joined = join(
        joined,
        project,
        and_(project.c.team_id == owner.c.id, project.c.name == bindparam("project")),
    )
    joined = join(
        joined,
        artifact,
        and_(artifact.c.project_id == project.c.id, artifact.c.name == bindparam("artifact")),
    )
    if form == "index":
        on = and_(
            artifact_version.c.artifact_id == artifact.c.id,
            artifact_version.c.version_index == bindparam("index"),
        )
        return join(joined, artifact_version, on)
    on = and_(
        artifact_alias.c.artifact_id == artifact.c.id, artifact_alias.c.alias == bindparam("alias")
    )
    joined = join(joined, artifact_alias, on)
    return join(joined, artifact_version, artifact_version.c.id == artifact_alias.c.version_id)


@query
def project_artifact(dialect: str, form: str) -> Select[Any]:
    """A project artifact version, with the caller's role in its team."""
    joined = named_artifact_version(artifact_team, artifact_team, form)
    joined = joined.outerjoin(creator, creator.c.id == artifact_version.c.created_by_id)
    return (
        select(*artifact_columns(dialect), caller_team_role(artifact_team.c.id))
        .select_from(joined)
        .where(artifact_team.c.name == bindparam("team"))
    )


def model_version_columns(dialect: str) -> tuple[Any, ...]:
    mv = model_version.c
    return (
        mv.id,
        mv.version_index,
        mv.artifact_version_id,
        mv.tags,
        mv.description,
        mv.linked_by_id,
        mv.create_time,
        mv.update_time,
        linker.c.name,
        joined_aliases(dialect, model_aliases, mv.id),
    )


MODEL_VERSION_WIDTH = 10


@query
def legacy(dialect: str, form: str) -> Select[Any]:
    """A legacy registered-model version: the team (its state, the caller's role in it),
    the registered model's migrated collection, then the version and its artifact
    version (NULL when the version is missing; no row: no such team or model)."""
    joined = team.join(
        registered_model,
        and_(
            registered_model.c.team_id == team.c.id,
            registered_model.c.name == bindparam("model"),
        ),
    )
    joined = _link_version(
        joined,
        model_version,
        "registered_model_id",
        registered_model.c.id,
        model_alias,
        highest_mv,
        form,
    )
    return (
        select(
            team.c.id,
            team.c.org_id,
            team.c.legacy_state,
            registered_model.c.migrated_collection_id,
            caller_team_role(team.c.id),
            *model_version_columns(dialect),
            *artifact_columns(dialect),
        )
        .select_from(joined)
        .where(team.c.name == bindparam("team"))
    )


def collection_version_columns(dialect: str) -> tuple[Any, ...]:
    cv = collection_version.c
    return (
        cv.id,
        cv.version_index,
        cv.tags,
        cv.description,
        cv.linked_by_id,
        cv.create_time,
        cv.update_time,
        linker.c.name,
        joined_aliases(dialect, cv_aliases, cv.id),
        highest_index(collection.c.id),
    )


COLLECTION_VERSION_WIDTH = 10


@query
def registry_collection(dialect: str, key: str, form: str) -> Select[Any]:
    """A registry collection version: the registry with the caller's granted roles, the
    organization's, registry's and collection's names, then the version and its
    artifact version (NULL columns for a missing collection or version)."""
    if key == "names":
        joined = named_collection()
        where = and_(org.c.name == bindparam("org"), registry.c.name == bindparam("registry"))
    else:
        joined = collection.join(registry, registry.c.id == collection.c.registry_id).join(
            org, org.c.id == registry.c.org_id
        )
        where = collection.c.id == bindparam("collection_id")
    joined = _link_version(
        joined,
        collection_version,
        "collection_id",
        collection.c.id,
        collection_alias,
        highest_cv,
        form,
    )
    return (
        select(
            *registry_columns(),
            org.c.name,
            registry.c.name,
            collection.c.id,
            collection.c.name,
            *collection_version_columns(dialect),
            *artifact_columns(dialect),
        )
        .select_from(joined)
        .where(where)
    )
