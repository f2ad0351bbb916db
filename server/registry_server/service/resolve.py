"""Path resolution: every path form (SPEC section 2) and every version resource name
to the artifact version it names, with the access check, in a few indexed queries.

This is the hottest read path, shared by ResolvePath, UseArtifactVersion, the link
methods (LinkArtifactVersion, LinkModelVersion) and migration verification:

    resolution = resolve_reference(session, principal, text, field="artifact_version")

`text` is a path (`team/project/artifact:v3`, `team/model-registry/model:prod`,
`org/wandb-registry-model/collection`, `wandb-registry-model/collection:latest`) or a
version resource name (`teams/t/projects/p/artifacts/a/versions/3`,
`teams/t/registeredModels/m/versions/3`, `organizations/o/registries/r/collections/c/versions/3`).

Queries: one joined lookup (scope, link row, artifact version and names, the caller's
team role), one for all aliases of what was found, and for registry paths the
caller's granted registry role. Legacy paths of a MIGRATED team are forwarded to the
collection its registered model became (`redirected=True`); NOT_FOUND once that
collection was deleted, as the legacy reads answer (`migrated_legacy`).

Access: project and legacy paths need team membership (any role) or org admin; registry
paths need `permission` in the registry (USE by default: a RESTRICTED_VIEWER may see but
not use). A forwarded legacy path is allowed by the legacy team rights or the registry
role, whichever allows. Invisible things answer NOT_FOUND; a deleted artifact version
answers NOT_FOUND with reason ARTIFACT_VERSION_DELETED unless `allow_deleted`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, func, literal, select, union_all
from sqlalchemy.orm import Session, aliased

from ..domain import names, paths
from ..domain.errors import InvalidArgument, NotFound, quote
from ..domain.paths import LATEST, ParsedPath, PathKind, Version
from ..domain.roles import LegacyState, Permission, RegistryRole
from ..storage import models as m
from . import access
from .authz_table import REGISTRY_PATH_USE
from .context import Principal

DELETED_REASON = "ARTIFACT_VERSION_DELETED"

# Aliased tables: the artifact's own team differs from a legacy path's team.
_ArtifactTeam = aliased(m.Team, name="artifact_team")
_Creator = aliased(m.User, name="creator")
_Linker = aliased(m.User, name="linker")
_OtherCollectionVersion = aliased(m.CollectionVersion, name="other_cv")
_OtherModelVersion = aliased(m.RegisteredModelVersion, name="other_rmv")
_HighestCollectionVersion = aliased(m.CollectionVersion, name="highest_cv")


# --- what a resolution returns -------------------------------------------------------


@dataclass(frozen=True)
class ArtifactVersionInfo:
    """An artifact version row with the names needed to present it."""

    row: m.ArtifactVersion
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
        return artifact_version_name(self.team, self.project, self.artifact, self.row.version_index)

    @property
    def path(self) -> str:
        return paths.format_path(
            PathKind.PROJECT_ARTIFACT,
            self.team,
            self.project,
            self.artifact,
            Version(index=self.row.version_index),
        )

    @property
    def deleted(self) -> bool:
        return self.row.delete_time is not None


@dataclass(frozen=True)
class CollectionVersionInfo:
    row: m.CollectionVersion
    org: str
    registry: str
    registry_id: int
    collection: str
    linked_by: str
    aliases: tuple[str, ...]

    @property
    def name(self) -> str:
        return (
            f"organizations/{self.org}/registries/{self.registry}/collections/"
            f"{self.collection}/versions/{self.row.version_index}"
        )

    @property
    def path(self) -> str:
        return paths.format_path(
            PathKind.REGISTRY_COLLECTION,
            self.org,
            self.registry,
            self.collection,
            Version(index=self.row.version_index),
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
        return paths.format_path(
            PathKind.LEGACY_MODEL, self.team, "", self.model, Version(index=self.row.version_index)
        )


@dataclass(frozen=True)
class Resolution:
    kind: PathKind
    artifact_version: ArtifactVersionInfo
    collection_version: CollectionVersionInfo | None
    model_version: ModelVersionInfo | None
    canonical_path: str
    redirected: bool
    # The registry the path went through (for events and automation scopes).
    registry_id: int | None = None


def artifact_version_name(team: str, project: str, artifact: str, index: int) -> str:
    return f"teams/{team}/projects/{project}/artifacts/{artifact}/versions/{index}"


def model_version_name(team: str, model: str, index: int) -> str:
    return f"teams/{team}/registeredModels/{model}/versions/{index}"


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
                version = Version(index=int(v["n"]))
                if kind is PathKind.PROJECT_ARTIFACT:
                    return ParsedPath(kind, v["team"], v["project"], v["artifact"], version)
                if kind is PathKind.LEGACY_MODEL:
                    return ParsedPath(kind, v["team"], "", v["model"], version)
                return ParsedPath(kind, v["org"], v["registry"], v["collection"], version)
        raise names_error(text, field)
    return paths.parse_path(text, field)


def names_error(text: str, field: str) -> InvalidArgument:
    return InvalidArgument(
        field,
        f"{quote(text)} is neither a path nor an artifact, registered-model or collection "
        "version name",
    )


def resolve_reference(
    s: Session,
    p: Principal,
    text: str,
    *,
    field: str = "path",
    permission: Permission = REGISTRY_PATH_USE,
    allow_deleted: bool = False,
) -> Resolution:
    """Resolves a path or version name (see the module docstring)."""
    return resolve_parsed(
        s, p, parse_reference(text, field), permission=permission, allow_deleted=allow_deleted
    )


def resolve_path(
    s: Session,
    p: Principal,
    path: str,
    *,
    field: str = "path",
    permission: Permission = REGISTRY_PATH_USE,
    allow_deleted: bool = False,
) -> Resolution:
    return resolve_parsed(
        s, p, paths.parse_path(path, field), permission=permission, allow_deleted=allow_deleted
    )


def resolve_parsed(
    s: Session,
    p: Principal,
    parsed: ParsedPath,
    *,
    permission: Permission = REGISTRY_PATH_USE,
    allow_deleted: bool = False,
) -> Resolution:
    if parsed.kind is PathKind.PROJECT_ARTIFACT:
        result = _resolve_project(s, p, parsed)
    elif parsed.kind is PathKind.LEGACY_MODEL:
        result = _resolve_legacy(s, p, parsed, permission)
    else:
        result = _resolve_registry(s, p, parsed, permission)
    if result.artifact_version.deleted and not allow_deleted:
        raise NotFound(
            f"{result.canonical_path} names artifact version {result.artifact_version.name}, "
            "which was deleted",
            reason=DELETED_REASON,
        )
    return result


# --- statements ------------------------------------------------------------------------


def _artifact_columns() -> tuple[Any, ...]:
    return (
        m.ArtifactVersion,
        m.Artifact.name.label("artifact_name"),
        m.Artifact.type.label("artifact_type"),
        m.Project.name.label("project_name"),
        _ArtifactTeam.name.label("artifact_team"),
        _ArtifactTeam.id.label("artifact_team_id"),
        _ArtifactTeam.org_id.label("artifact_org_id"),
        _Creator.name.label("created_by"),
    )


def _join_artifact(stmt: Select[Any], version_id: Any, *, outer: bool) -> Select[Any]:
    """Joins the artifact version with id `version_id` and its artifact, project, team."""
    return (
        stmt.join(m.ArtifactVersion, m.ArtifactVersion.id == version_id, isouter=outer)
        .join(m.Artifact, m.Artifact.id == m.ArtifactVersion.artifact_id, isouter=outer)
        .join(m.Project, m.Project.id == m.Artifact.project_id, isouter=outer)
        .join(_ArtifactTeam, _ArtifactTeam.id == m.Project.team_id, isouter=outer)
        .outerjoin(_Creator, _Creator.id == m.ArtifactVersion.created_by_id)
    )


def _team_role(p: Principal, team_id: Any) -> Any:
    """The caller's role in the team (NULL for non-members), as a scalar subquery."""
    return (
        select(m.TeamMember.role)
        .where(m.TeamMember.team_id == team_id, m.TeamMember.user_id == p.user_id)
        .scalar_subquery()
        .label("team_role")
    )


def artifact_info(row: Any, aliases: tuple[str, ...]) -> ArtifactVersionInfo:
    """ArtifactVersionInfo from a row selected with `_artifact_columns()`."""
    return ArtifactVersionInfo(
        row=row.ArtifactVersion,
        team=row.artifact_team,
        team_id=row.artifact_team_id,
        org_id=row.artifact_org_id,
        project=row.project_name,
        artifact=row.artifact_name,
        type=row.artifact_type,
        created_by=row.created_by or "",
        aliases=aliases,
    )


def _aliases(
    s: Session,
    artifact_version_id: int,
    collection_version_id: int | None = None,
    model_version_id: int | None = None,
) -> dict[str, tuple[str, ...]]:
    """Aliases of the artifact version and of the link version, in one query."""
    parts = [
        select(literal("a").label("owner"), m.ArtifactAlias.alias).where(
            m.ArtifactAlias.version_id == artifact_version_id
        )
    ]
    if collection_version_id is not None:
        parts.append(
            select(literal("c").label("owner"), m.CollectionAlias.alias).where(
                m.CollectionAlias.version_id == collection_version_id
            )
        )
    if model_version_id is not None:
        parts.append(
            select(literal("l").label("owner"), m.RegisteredModelAlias.alias).where(
                m.RegisteredModelAlias.version_id == model_version_id
            )
        )
    found: dict[str, list[str]] = {"a": [], "c": [], "l": []}
    for owner, alias in s.execute(union_all(*parts)).all():
        found[owner].append(alias)
    return {k: tuple(sorted(v)) for k, v in found.items()}


def _not_found(parsed: ParsedPath) -> NotFound:
    return NotFound(f"path {quote(parsed.format())} not found")


def _allowed_in_team(p: Principal, team_org_id: int, team_role: int | None) -> bool:
    return team_org_id == p.org_id and (p.org_admin or team_role is not None)


# --- project artifacts -----------------------------------------------------------------


def _resolve_project(s: Session, p: Principal, parsed: ParsedPath) -> Resolution:
    version = parsed.version
    stmt = (
        select(*_artifact_columns(), _team_role(p, _ArtifactTeam.id))
        .select_from(_ArtifactTeam)
        .join(
            m.Project,
            and_(m.Project.team_id == _ArtifactTeam.id, m.Project.name == parsed.container),
        )
        .join(
            m.Artifact, and_(m.Artifact.project_id == m.Project.id, m.Artifact.name == parsed.item)
        )
    )
    if version.index is not None:
        stmt = stmt.join(
            m.ArtifactVersion,
            and_(
                m.ArtifactVersion.artifact_id == m.Artifact.id,
                m.ArtifactVersion.version_index == version.index,
            ),
        )
    else:
        stmt = stmt.join(
            m.ArtifactAlias,
            and_(
                m.ArtifactAlias.artifact_id == m.Artifact.id, m.ArtifactAlias.alias == version.alias
            ),
        ).join(m.ArtifactVersion, m.ArtifactVersion.id == m.ArtifactAlias.version_id)
    stmt = stmt.outerjoin(_Creator, _Creator.id == m.ArtifactVersion.created_by_id).where(
        _ArtifactTeam.name == parsed.root
    )
    row = s.execute(stmt).first()
    if row is None or not _allowed_in_team(p, row.artifact_org_id, row.team_role):
        raise _not_found(parsed)
    aliases = _aliases(s, row.ArtifactVersion.id)
    info = artifact_info(row, aliases["a"])
    return Resolution(PathKind.PROJECT_ARTIFACT, info, None, None, info.path, False)


# --- legacy registered models --------------------------------------------------------


def _version_join(
    stmt: Select[Any],
    version_table: Any,
    parent_column: Any,
    parent_id: Any,
    alias_table: Any,
    other_versions: Any,
    version: Version,
    *,
    outer: bool,
) -> Select[Any]:
    """Joins the link version a version token names: vN, `latest` (the highest index)
    or an alias row."""
    parent_of = getattr(version_table, parent_column)
    if version.index is not None:
        cond = and_(parent_of == parent_id, version_table.version_index == version.index)
        return stmt.join(version_table, cond, isouter=outer)
    if version.alias == LATEST:
        highest = (
            select(func.max(other_versions.version_index))
            .where(getattr(other_versions, parent_column) == parent_id)
            .scalar_subquery()
        )
        cond = and_(parent_of == parent_id, version_table.version_index == highest)
        return stmt.join(version_table, cond, isouter=outer)
    alias_parent = getattr(alias_table, parent_column)
    return stmt.join(
        alias_table,
        and_(alias_parent == parent_id, alias_table.alias == version.alias),
        isouter=outer,
    ).join(version_table, version_table.id == alias_table.version_id, isouter=outer)


def _resolve_legacy(
    s: Session, p: Principal, parsed: ParsedPath, permission: Permission
) -> Resolution:
    stmt = (
        select(
            m.Team.id.label("team_id"),
            m.Team.org_id.label("team_org_id"),
            m.Team.legacy_state,
            m.RegisteredModel.migrated_collection_id,
            _team_role(p, m.Team.id),
            m.RegisteredModelVersion,
            _Linker.name.label("linked_by"),
            *_artifact_columns(),
        )
        .select_from(m.Team)
        .join(
            m.RegisteredModel,
            and_(m.RegisteredModel.team_id == m.Team.id, m.RegisteredModel.name == parsed.item),
        )
    )
    stmt = _version_join(
        stmt,
        m.RegisteredModelVersion,
        "registered_model_id",
        m.RegisteredModel.id,
        m.RegisteredModelAlias,
        _OtherModelVersion,
        parsed.version,
        outer=True,
    )
    stmt = stmt.outerjoin(_Linker, _Linker.id == m.RegisteredModelVersion.linked_by_id)
    stmt = _join_artifact(stmt, m.RegisteredModelVersion.artifact_version_id, outer=True).where(
        m.Team.name == parsed.root
    )
    row = s.execute(stmt).first()
    if row is None or row.team_org_id != p.org_id:
        raise _not_found(parsed)
    team_allows = _allowed_in_team(p, row.team_org_id, row.team_role)
    if row.legacy_state == LegacyState.MIGRATED:
        if row.migrated_collection_id is None:  # its collection was deleted since
            raise _not_found(parsed)
        return _resolve_collection(
            s,
            p,
            parsed,
            m.Collection.id == row.migrated_collection_id,
            permission,
            team_allows=team_allows,
            redirected=True,
        )
    if not team_allows or row.RegisteredModelVersion is None:
        raise _not_found(parsed)
    link: m.RegisteredModelVersion = row.RegisteredModelVersion
    aliases = _aliases(s, row.ArtifactVersion.id, model_version_id=link.id)
    info = ModelVersionInfo(
        row=link,
        team=parsed.root,
        team_id=row.team_id,
        model=parsed.item,
        linked_by=row.linked_by or "",
        aliases=aliases["l"],
    )
    return Resolution(
        PathKind.LEGACY_MODEL,
        artifact_info(row, aliases["a"]),
        None,
        info,
        info.path,
        False,
    )


# --- registry collections ---------------------------------------------------------------


def _resolve_registry(
    s: Session, p: Principal, parsed: ParsedPath, permission: Permission
) -> Resolution:
    org = parsed.root or p.org
    where = and_(
        m.Organization.name == org,
        m.Registry.name == parsed.container,
        m.Collection.name == parsed.item,
    )
    return _resolve_collection(s, p, parsed, where, permission, team_allows=False, redirected=False)


def _resolve_collection(
    s: Session,
    p: Principal,
    parsed: ParsedPath,
    where: Any,
    permission: Permission,
    *,
    team_allows: bool,
    redirected: bool,
) -> Resolution:
    stmt = (
        select(
            m.Registry,
            m.Organization.name.label("org_name"),
            m.Collection.name.label("collection_name"),
            m.CollectionVersion,
            _Linker.name.label("linked_by"),
            select(func.max(_HighestCollectionVersion.version_index))
            .where(_HighestCollectionVersion.collection_id == m.Collection.id)
            .scalar_subquery()
            .label("highest"),
            *_artifact_columns(),
        )
        .select_from(m.Collection)
        .join(m.Registry, m.Registry.id == m.Collection.registry_id)
        .join(m.Organization, m.Organization.id == m.Registry.org_id)
    )
    stmt = _version_join(
        stmt,
        m.CollectionVersion,
        "collection_id",
        m.Collection.id,
        m.CollectionAlias,
        _OtherCollectionVersion,
        parsed.version,
        outer=False,
    )
    stmt = stmt.outerjoin(_Linker, _Linker.id == m.CollectionVersion.linked_by_id)
    stmt = _join_artifact(stmt, m.CollectionVersion.artifact_version_id, outer=False).where(where)
    row = s.execute(stmt).first()
    if row is None:
        raise _not_found(parsed)
    registry: m.Registry = row.Registry
    if not team_allows:
        role = access.effective_role(s, p, registry)
        if role == RegistryRole.NONE:
            raise _not_found(parsed)
        access.check_registry_role(
            role, permission, f"organizations/{row.org_name}/registries/{registry.name}"
        )
    link: m.CollectionVersion = row.CollectionVersion
    aliases = _aliases(s, row.ArtifactVersion.id, collection_version_id=link.id)
    info = CollectionVersionInfo(
        row=link,
        org=row.org_name,
        registry=registry.name,
        registry_id=registry.id,
        collection=row.collection_name,
        linked_by=row.linked_by or "",
        # `latest` first, as CollectionService presents it
        aliases=((LATEST,) if link.version_index == row.highest else ()) + aliases["c"],
    )
    return Resolution(
        PathKind.REGISTRY_COLLECTION,
        artifact_info(row, aliases["a"]),
        info,
        None,
        info.path,
        redirected,
        registry_id=registry.id,
    )
