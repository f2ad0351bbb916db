"""Path resolution: every path form (SPEC section 2) and every version resource name
to the artifact version it names, with the access check, in one statement.

This is the hottest read path, shared by ResolvePath, UseArtifactVersion, the link
methods (LinkArtifactVersion, LinkModelVersion) and migration verification:

    resolution = resolve_reference(sql, principal, text, field="artifact_version")

`text` is a path (`team/project/artifact:v3`, `team/model-registry/model:prod`,
`org/wandb-registry-model/collection`, `wandb-registry-model/collection:latest`) or a
version resource name (`teams/t/projects/p/artifacts/a/versions/3`,
`teams/t/registeredModels/m/versions/3`, `organizations/o/registries/r/collections/c/versions/3`).
`sql` is any connection (`storage.sql.Sql`): the event loop's, or a session's.

Each form is one statement of `storage.queries.resolve` with the access check's inputs
in the same row; a legacy path of a MIGRATED team whose registered model was migrated
takes a second one, for the migrated collection (`redirected=True`); NOT_FOUND once that
collection was deleted, as the legacy reads answer (`migrated_legacy`).

Access: project and legacy paths need team membership (any role) or org admin; registry
paths need `permission` in the registry (USE by default: a RESTRICTED_VIEWER may see but
not use). A forwarded legacy path is allowed by the legacy team rights or the registry
role, whichever allows. Invisible things answer NOT_FOUND; a deleted artifact version
answers NOT_FOUND with reason ARTIFACT_VERSION_DELETED unless `allow_deleted`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..domain import names, paths
from ..domain.errors import InvalidArgument, NotFound, quote
from ..domain.names import CollectionRef, artifact_version_name, model_version_name
from ..domain.paths import LATEST, ParsedPath, PathKind
from ..domain.roles import LegacyState, Permission, RegistryRole
from ..storage import models as m
from ..storage.queries import registries as qr
from ..storage.queries import resolve as q
from ..storage.sql import Sql, json_value, split_aliases
from .access import check_registry_role, header_of
from .authz_table import REGISTRY_PATH_USE
from .context import Principal
from .versions import VersionView, link_view

DELETED_REASON = "ARTIFACT_VERSION_DELETED"


# --- what a resolution returns -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ArtifactVersionInfo:
    """An artifact version with the names needed to present it."""

    id: int
    version_index: int
    digest: str
    size: int
    manifest: list[dict[str, Any]]
    metadata: dict[str, Any]
    description: str
    tags: list[str]
    producing_run: str
    create_time: int
    update_time: int
    revision: int
    delete_time: int | None
    team: str
    team_id: int
    org_id: int
    project: str
    artifact: str
    type: str
    created_by: str  # user id, "" when unknown
    aliases: tuple[str, ...]

    @property
    def name(self) -> str:
        return artifact_version_name(self.team, self.project, self.artifact, self.version_index)

    @property
    def path(self) -> str:
        return paths.artifact_version_path(
            self.team, self.project, self.artifact, self.version_index
        )

    @property
    def deleted(self) -> bool:
        return self.delete_time is not None


def artifact_info(
    version: m.ArtifactVersion,
    *,
    team: str,
    team_id: int,
    org_id: int,
    project: str,
    artifact: str,
    type: str,
    created_by: str,
    aliases: Sequence[str],
) -> ArtifactVersionInfo:
    """The info of an ORM row (the artifact use cases' own reads and writes)."""
    return ArtifactVersionInfo(
        id=version.id,
        version_index=version.version_index,
        digest=version.digest,
        size=version.size,
        manifest=list(version.manifest or []),
        metadata=dict(version.metadata_ or {}),
        description=version.description,
        tags=list(version.tags or []),
        producing_run=version.producing_run,
        create_time=version.create_time,
        update_time=version.update_time,
        revision=version.revision,
        delete_time=version.delete_time,
        team=team,
        team_id=team_id,
        org_id=org_id,
        project=project,
        artifact=artifact,
        type=type,
        created_by=created_by,
        aliases=tuple(aliases),
    )


def _artifact_of(row: Sequence[Any], sort: bool) -> ArtifactVersionInfo:
    """The info of a row of `artifact_columns()`."""
    (
        pk, index, digest, size, manifest, metadata, description, tags, producing_run,
        create_time, update_time, revision, delete_time, team, team_pk, org_pk, project,
        artifact, artifact_type, creator, joined,
    ) = row  # fmt: skip
    return ArtifactVersionInfo(
        id=pk,
        version_index=index,
        digest=digest,
        size=size,
        manifest=json_value(manifest) or [],
        metadata=json_value(metadata) or {},
        description=description,
        tags=json_value(tags) or [],
        producing_run=producing_run,
        create_time=create_time,
        update_time=update_time,
        revision=revision,
        delete_time=delete_time,
        team=team,
        team_id=team_pk,
        org_id=org_pk,
        project=project,
        artifact=artifact,
        type=artifact_type,
        created_by=creator or "",
        aliases=tuple(split_aliases(joined, sort)),
    )


@dataclass(frozen=True)
class ModelVersionInfo:
    """A legacy registered-model version (a link to an artifact version)."""

    row: m.RegisteredModelVersion
    team: str
    team_id: int
    model: str
    linked_by: str
    aliases: tuple[str, ...]

    @property
    def name(self) -> str:
        return model_version_name(self.team, self.model, self.row.version_index)

    @property
    def path(self) -> str:
        return paths.model_version_path(self.team, self.model, self.row.version_index)


@dataclass(frozen=True)
class Resolution:
    kind: PathKind
    artifact_version: ArtifactVersionInfo
    collection_version: VersionView | None
    model_version: ModelVersionInfo | None
    canonical_path: str
    redirected: bool
    # The registry the path went through (for events and automation scopes).
    registry_id: int | None = None


# --- entry points ----------------------------------------------------------------------

_NAME_PATTERNS = (
    (
        "teams/{team}/projects/{project}/artifacts/{artifact}/versions/{n}",
        PathKind.PROJECT_ARTIFACT,
    ),
    ("teams/{team}/registeredModels/{model}/versions/{n}", PathKind.LEGACY_MODEL),
    (
        "organizations/{org}/registries/{registry}/collections/{collection}/versions/{n}",
        PathKind.REGISTRY_COLLECTION,
    ),
)


def parse_reference(text: str, field: str) -> ParsedPath:
    """A path, or a version resource name turned into the equivalent path."""
    if not text.isprintable():
        raise InvalidArgument(field, f"{quote(text)} must not contain control characters")
    head = text.split("/", 1)[0]
    if head in ("teams", "organizations") and text.count("/") > 3:
        segments = text.count("/") + 1
        for pattern, kind in _NAME_PATTERNS:
            if pattern.count("/") + 1 == segments and pattern.startswith(head):
                v = names.parse(text, pattern, field)
                version = paths.Version(index=int(v["n"]))
                if kind is PathKind.PROJECT_ARTIFACT:
                    return ParsedPath(kind, v["team"], v["project"], v["artifact"], version)
                if kind is PathKind.LEGACY_MODEL:
                    return ParsedPath(kind, v["team"], "", v["model"], version)
                return ParsedPath(kind, v["org"], v["registry"], v["collection"], version)
        raise InvalidArgument(
            field,
            f"{quote(text)} is neither a path nor an artifact, registered-model or "
            "collection version name",
        )
    return paths.parse_path(text, field)


def resolve_reference(
    sql: Sql,
    p: Principal,
    text: str,
    *,
    field: str = "path",
    permission: Permission = REGISTRY_PATH_USE,
    allow_deleted: bool = False,
) -> Resolution:
    """Resolves a path or version name (see the module docstring)."""
    return resolve(
        sql, p, parse_reference(text, field), permission=permission, allow_deleted=allow_deleted
    )


def resolve(
    sql: Sql,
    p: Principal,
    parsed: ParsedPath,
    *,
    permission: Permission = REGISTRY_PATH_USE,
    allow_deleted: bool = False,
) -> Resolution:
    if parsed.kind is PathKind.PROJECT_ARTIFACT:
        result = _resolve_project(sql, p, parsed)
    elif parsed.kind is PathKind.LEGACY_MODEL:
        result = _resolve_legacy(sql, p, parsed, permission)
    else:
        result = _resolve_collection(sql, p, parsed, permission, None, team_allows=False)
    if result.artifact_version.deleted and not allow_deleted:
        raise NotFound(
            f"{result.canonical_path} names artifact version {result.artifact_version.name}, "
            "which was deleted",
            reason=DELETED_REASON,
        )
    return result


# --- the three forms -------------------------------------------------------------------


def _version_params(parsed: ParsedPath, latest_is_alias: bool) -> tuple[str, dict[str, Any]]:
    """The statement form of the version token and its parameter."""
    version = parsed.version
    if version.index is not None:
        return "index", {"index": version.index}
    if version.alias == LATEST and not latest_is_alias:
        return "latest", {}
    return "alias", {"alias": version.alias}


def _not_found(parsed: ParsedPath) -> NotFound:
    return NotFound(f"path {quote(parsed.format())} not found")


def _allowed_in_team(p: Principal, team_org_id: int, team_role: int | None) -> bool:
    return team_org_id == p.org_id and (p.org_admin or team_role is not None)


def _resolve_project(sql: Sql, p: Principal, parsed: ParsedPath) -> Resolution:
    # an artifact's `latest` is an alias row like any other
    form, params = _version_params(parsed, latest_is_alias=True)
    row = sql.one(
        q.project_artifact,
        {
            "uid": p.user_id,
            "team": parsed.root,
            "project": parsed.container,
            "artifact": parsed.item,
            **params,
        },
        (form,),
    )
    if row is None:
        raise _not_found(parsed)
    info = _artifact_of(row[: q.ARTIFACT_WIDTH], not sql.postgres)
    if not _allowed_in_team(p, info.org_id, row[q.ARTIFACT_WIDTH]):
        raise _not_found(parsed)
    return Resolution(PathKind.PROJECT_ARTIFACT, info, None, None, info.path, False)


def _resolve_legacy(
    sql: Sql, p: Principal, parsed: ParsedPath, permission: Permission
) -> Resolution:
    form, params = _version_params(parsed, latest_is_alias=False)
    row = sql.one(
        q.legacy, {"uid": p.user_id, "team": parsed.root, "model": parsed.item, **params}, (form,)
    )
    if row is None or row[1] != p.org_id:
        raise _not_found(parsed)
    team_pk, team_org, legacy_state, migrated_collection, team_role = row[:5]
    team_allows = _allowed_in_team(p, team_org, team_role)
    if legacy_state == LegacyState.MIGRATED:
        if migrated_collection is None:  # its collection was deleted since
            raise _not_found(parsed)
        return _resolve_collection(
            sql, p, parsed, permission, migrated_collection, team_allows=team_allows
        )
    version = row[5 : 5 + q.MODEL_VERSION_WIDTH]
    if not team_allows or version[0] is None:
        raise _not_found(parsed)
    sort = not sql.postgres
    (
        pk, index, av_pk, tags, description, linker_pk, create_time, update_time, linker,
        joined,
    ) = version  # fmt: skip
    link = m.RegisteredModelVersion(  # a transient view, never added to a session
        id=pk,
        version_index=index,
        artifact_version_id=av_pk,
        tags=json_value(tags) or [],
        description=description,
        linked_by_id=linker_pk,
        create_time=create_time,
        update_time=update_time,
    )
    info = ModelVersionInfo(
        link, parsed.root, team_pk, parsed.item, linker or "", tuple(split_aliases(joined, sort))
    )
    artifact = _artifact_of(row[5 + q.MODEL_VERSION_WIDTH :], sort)
    return Resolution(PathKind.LEGACY_MODEL, artifact, None, info, info.path, False)


def _resolve_collection(
    sql: Sql,
    p: Principal,
    parsed: ParsedPath,
    permission: Permission,
    collection_pk: int | None,
    *,
    team_allows: bool,
) -> Resolution:
    """A registry path (`collection_pk` None), or a legacy one redirected to the
    collection with that id."""
    form, params = _version_params(parsed, latest_is_alias=False)
    if collection_pk is None:
        key = "names"
        params |= {
            "org": parsed.root or p.org,
            "registry": parsed.container,
            "collection": parsed.item,
        }
    else:
        key = "id"
        params["collection_id"] = collection_pk
    row = sql.one(q.registry_collection, {"uid": p.user_id, **params}, (key, form))
    if row is None:
        raise _not_found(parsed)
    width = qr.REGISTRY_WIDTH
    org, registry, collection_id, collection = row[width : width + 4]
    header = header_of(p, names.registry_name(org, registry), row[:width])
    version = row[width + 4 : width + 4 + q.COLLECTION_VERSION_WIDTH]
    if not team_allows and header.role == RegistryRole.NONE:
        raise _not_found(parsed)
    if collection_id is None or version[0] is None:
        raise _not_found(parsed)  # (a caller who sees the registry may list it anyway)
    if not team_allows:
        check_registry_role(header.role, permission, header.name)
    sort = not sql.postgres
    artifact = _artifact_of(row[width + 4 + q.COLLECTION_VERSION_WIDTH :], sort)
    view = link_view(
        CollectionRef(org, registry, collection),
        version[-1],  # the collection's highest index
        version[:-1],
        (artifact.id, artifact.name),
        (artifact.metadata, artifact.digest, artifact.type),
        sort_aliases=sort,
    )
    return Resolution(
        PathKind.REGISTRY_COLLECTION,
        artifact,
        view,
        None,
        view.path,
        collection_pk is not None,
        registry_id=header.id,
    )
