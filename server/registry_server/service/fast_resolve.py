"""The hot read path: a registry path resolved by one precompiled Core statement.

`org/wandb-registry-model/resnet:production` is what every training and serving
job resolves at start-up. This module answers it with a single statement built
once per version form (index, alias, latest) and dialect: registry, collection,
collection version, artifact version with its names, the caller's granted role,
the collection's highest index and both alias lists, with no ORM session.

It only answers the successful case. Anything else (not found, insufficient role,
deleted artifact version, a legacy or project path) returns None and the caller
falls back to `resolve.resolve_parsed`, which produces the exact error. Both paths
return the same response (tests/test_fast_resolve.py checks it).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, func, select
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select

from registry.v1 import artifact_service_pb2 as pb
from registry.v1 import resources_pb2 as r

from ..domain import names, paths
from ..domain.paths import LATEST, ParsedPath, PathKind, Version
from ..storage import models as m
from .access import combine_role, granted_role_columns
from .authz_table import REGISTRY_PATH_USE
from .collections import artifact_version_name
from .context import Principal
from .fast_sql import joined_aliases, json_value, split_aliases

_org = m.Organization.__table__
_reg = m.Registry.__table__
_coll = m.Collection.__table__
_cv = m.CollectionVersion.__table__
_cv2 = m.CollectionVersion.__table__.alias("highest_cv")
_av = m.ArtifactVersion.__table__
_art = m.Artifact.__table__
_proj = m.Project.__table__
_team = m.Team.__table__
_linker = m.User.__table__.alias("linker")
_creator = m.User.__table__.alias("creator")
_ca = m.CollectionAlias.__table__
# separate names for the alias-list subqueries (`_ca` also joins the alias form)
_ca_list = m.CollectionAlias.__table__.alias("cv_aliases")
_aa_list = m.ArtifactAlias.__table__.alias("av_aliases")


@cache
def _statement(dialect: str, by: str) -> Select[Any]:
    """The resolve statement for `by` in ("index", "alias", "latest"), built once."""
    granted = granted_role_columns(_reg.c.id, bindparam("uid"))
    highest = (
        select(func.max(_cv2.c.version_index))
        .where(_cv2.c.collection_id == _coll.c.id)
        .scalar_subquery()
    )
    stmt = select(
        _reg.c.id,
        _reg.c.org_id,
        _reg.c.visibility,
        _reg.c.default_role,
        _org.c.name,
        _cv.c.version_index,
        _cv.c.tags,
        _cv.c.description,
        _cv.c.create_time,
        _cv.c.update_time,
        _linker.c.name,
        _av.c.version_index,
        _av.c.digest,
        _av.c.size,
        _av.c.manifest,
        _av.c.metadata,
        _av.c.description,
        _av.c.tags,
        _av.c.producing_run,
        _av.c.create_time,
        _av.c.update_time,
        _av.c.revision,
        _av.c.delete_time,
        _art.c.name,
        _art.c.type,
        _proj.c.name,
        _team.c.name,
        _creator.c.name,
        *granted,
        highest,
        joined_aliases(dialect, _ca_list, _cv.c.id),
        joined_aliases(dialect, _aa_list, _av.c.id),
    ).select_from(
        _org.join(_reg, _reg.c.org_id == _org.c.id).join(_coll, _coll.c.registry_id == _reg.c.id)
    )
    if by == "index":
        stmt = stmt.join(
            _cv,
            and_(_cv.c.collection_id == _coll.c.id, _cv.c.version_index == bindparam("index")),
        )
    elif by == "latest":
        stmt = stmt.join(
            _cv, and_(_cv.c.collection_id == _coll.c.id, _cv.c.version_index == highest)
        )
    else:
        stmt = stmt.join(
            _ca, and_(_ca.c.collection_id == _coll.c.id, _ca.c.alias == bindparam("alias"))
        ).join(_cv, _cv.c.id == _ca.c.version_id)
    return (
        stmt.join(_av, _av.c.id == _cv.c.artifact_version_id)
        .join(_art, _art.c.id == _av.c.artifact_id)
        .join(_proj, _proj.c.id == _art.c.project_id)
        .join(_team, _team.c.id == _proj.c.team_id)
        .outerjoin(_linker, _linker.c.id == _cv.c.linked_by_id)
        .outerjoin(_creator, _creator.c.id == _av.c.created_by_id)
        .where(
            _org.c.name == bindparam("org"),
            _reg.c.name == bindparam("registry"),
            _coll.c.name == bindparam("collection"),
        )
    )


@cache
def _compiled(dialect: Dialect, by: str) -> tuple[str, tuple[str, ...] | None]:
    """The statement as driver SQL, and the parameter order for positional drivers."""
    compiled = _statement(dialect.name, by).compile(dialect=dialect)
    order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else None
    return str(compiled), order


def resolve_registry_path(
    conn: Any, dialect: Dialect, p: Principal, parsed: ParsedPath
) -> pb.ResolvePathResponse | None:
    """The response for a registry path the caller may use, or None (see module doc).

    `conn` is a DB-API connection (`HotReader` lends one): the statement runs as
    precompiled driver SQL, with no SQLAlchemy execution layer in between."""
    if parsed.kind is not PathKind.REGISTRY_COLLECTION:
        return None
    version = parsed.version
    params: dict[str, Any] = {
        "uid": p.user_id,
        "org": parsed.root or p.org,
        "registry": parsed.container,
        "collection": parsed.item,
    }
    if version.index is not None:
        by = "index"
        params["index"] = version.index
    elif version.alias == LATEST:
        by = "latest"
    else:
        by = "alias"
        params["alias"] = version.alias
    sql, order = _compiled(dialect, by)
    cursor = conn.cursor()
    try:
        cursor.execute(sql, tuple(params[k] for k in order) if order else params)
        row = cursor.fetchone()
    finally:
        cursor.close()
    if row is None:
        return None
    (
        _registry_id, org_id, visibility, default_role, org_name,
        cv_index, cv_tags, cv_description, cv_create, cv_update, linker,
        av_index, digest, size, manifest, metadata, av_description, av_tags,
        producing_run, av_create, av_update, revision, delete_time,
        artifact, artifact_type, project, team, creator,
        direct, via_team, highest, collection_aliases, artifact_aliases,
    ) = row  # fmt: skip
    role = combine_role(p, org_id, visibility, default_role, direct, via_team)
    if role < REGISTRY_PATH_USE.min_role or delete_time is not None:
        return None
    manifest, metadata = json_value(manifest), json_value(metadata)
    cv_tags, av_tags = json_value(cv_tags), json_value(av_tags)
    av_name = artifact_version_name(team, project, artifact, av_index)
    cv_aliases = split_aliases(collection_aliases)
    if cv_index == highest:
        cv_aliases.insert(0, LATEST)
    cv_path = paths.format_path(
        PathKind.REGISTRY_COLLECTION, org_name, parsed.container, parsed.item, Version(cv_index)
    )
    meta = r.ArtifactVersion().metadata  # an empty Struct to fill
    if metadata:
        meta.update(metadata)
    av = r.ArtifactVersion(
        name=av_name,
        version_index=av_index,
        type=artifact_type,
        digest=digest,
        size=size,
        manifest=[r.ManifestEntry(**entry) for entry in manifest or ()],
        metadata=meta,
        description=av_description,
        aliases=split_aliases(artifact_aliases),
        tags=av_tags or [],
        producing_run=producing_run,
        created_by=names.user_name(creator) if creator else "",
        etag=f'W/"{revision}"',
        path=paths.format_path(
            PathKind.PROJECT_ARTIFACT, team, project, artifact, Version(av_index)
        ),
    )
    av.create_time.FromMicroseconds(av_create)
    av.update_time.FromMicroseconds(av_update)
    cv = r.CollectionVersion(
        name=(
            f"organizations/{org_name}/registries/{parsed.container}/collections/"
            f"{parsed.item}/versions/{cv_index}"
        ),
        version_index=cv_index,
        artifact_version=av_name,
        aliases=cv_aliases,
        tags=cv_tags or [],
        description=cv_description,
        linked_by=names.user_name(linker) if linker else "",
        metadata=meta,
        digest=digest,
        type=artifact_type,
        path=cv_path,
    )
    cv.create_time.FromMicroseconds(cv_create)
    cv.update_time.FromMicroseconds(cv_update)
    return pb.ResolvePathResponse(
        artifact_version=av, collection_version=cv, canonical_path=cv_path, redirected=False
    )
