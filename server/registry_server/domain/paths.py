"""The one parser for every path form users and code type (SPEC section 2).

    {team}/{project}/{artifact}[:{version}]            project artifact
    {team}/model-registry/{model}[:{version}]          legacy registered model
    {org}/wandb-registry-{registry}/{collection}[:{version}]
    wandb-registry-{registry}/{collection}[:{version}]   (caller's organization)

`version` is `vN`, an alias, or absent (= `latest`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from . import names
from .errors import InvalidArgument, quote

LEGACY_SEGMENT = "model-registry"
REGISTRY_PREFIX = "wandb-registry-"
LATEST = names.LATEST
MAX_PATH = 512


class PathKind(Enum):
    PROJECT_ARTIFACT = "project_artifact"
    LEGACY_MODEL = "legacy_model"
    REGISTRY_COLLECTION = "registry_collection"


@dataclass(frozen=True)
class Version:
    """Exactly one of index and alias is set."""

    index: int | None = None
    alias: str | None = None

    def __str__(self) -> str:
        return f"v{self.index}" if self.index is not None else str(self.alias)


@dataclass(frozen=True)
class ParsedPath:
    kind: PathKind
    # team for project artifacts and legacy models; org (or "" if omitted) for registries
    root: str
    # project, or registry id (without the prefix); "" for legacy models
    container: str
    # artifact, registered model or collection
    item: str
    version: Version

    def format(self) -> str:
        return format_path(self.kind, self.root, self.container, self.item, self.version)


def format_path(kind: PathKind, root: str, container: str, item: str, version: Version) -> str:
    if kind is PathKind.PROJECT_ARTIFACT:
        head = f"{root}/{container}/{item}"
    elif kind is PathKind.LEGACY_MODEL:
        head = f"{root}/{LEGACY_SEGMENT}/{item}"
    else:
        head = f"{REGISTRY_PREFIX}{container}/{item}"
        if root:
            head = f"{root}/{head}"
    return f"{head}:{version}"


def parse_version(token: str, field: str) -> Version:
    if names.VERSION_TOKEN.fullmatch(token):
        return Version(index=int(token[1:]))
    if not names.ALIAS.fullmatch(token):
        raise InvalidArgument(
            field, f"version {quote(token)} must be vN or an alias (A-Z, a-z, 0-9, '_', '.', '-')"
        )
    return Version(alias=token)


@lru_cache(maxsize=4096)  # pure, and the same paths come back (every job resolves them)
def parse_path(path: str, field: str = "path") -> ParsedPath:
    if not path:
        raise InvalidArgument(field, "is required")
    if len(path) > MAX_PATH:
        raise InvalidArgument(field, f"must be at most {MAX_PATH} characters")
    if not path.isprintable():
        # Checked here because the id patterns end in `$`, which also matches before a
        # trailing newline: "team\n/p/a" or "a/b/c:v1\n" would otherwise parse.
        raise InvalidArgument(field, f"{quote(path)} must not contain control characters")
    head, sep, ver = path.partition(":")
    if sep and not ver:
        raise InvalidArgument(field, f"{quote(path)}: empty version after ':'")
    if ":" in ver:
        raise InvalidArgument(field, f"{quote(path)}: more than one ':'")
    version = parse_version(ver, field) if sep else Version(alias=LATEST)
    parts = head.split("/")
    if any(p == "" for p in parts):
        raise InvalidArgument(field, f"{quote(path)}: empty path segment")
    if len(parts) == 2 and parts[0].startswith(REGISTRY_PREFIX):
        registry, item = parts[0][len(REGISTRY_PREFIX) :], parts[1]
        _check(registry, item, field, path)
        return ParsedPath(PathKind.REGISTRY_COLLECTION, "", registry, item, version)
    if len(parts) != 3:
        raise InvalidArgument(
            field,
            f"{quote(path)} is not a path: expected team/project/artifact, "
            "team/model-registry/model, org/wandb-registry-REGISTRY/collection "
            "or wandb-registry-REGISTRY/collection, optionally followed by :vN or :alias",
        )
    root, middle, item = parts
    if not names.PRINCIPAL_ID.fullmatch(root):
        raise InvalidArgument(
            field, f"{quote(path)}: {quote(root)} is not a team or organization id"
        )
    if middle == LEGACY_SEGMENT:
        _check(None, item, field, path)
        return ParsedPath(PathKind.LEGACY_MODEL, root, "", item, version)
    if middle.startswith(REGISTRY_PREFIX):
        registry = middle[len(REGISTRY_PREFIX) :]
        _check(registry, item, field, path)
        return ParsedPath(PathKind.REGISTRY_COLLECTION, root, registry, item, version)
    _check(middle, item, field, path)
    return ParsedPath(PathKind.PROJECT_ARTIFACT, root, middle, item, version)


def _check(container: str | None, item: str, field: str, path: str) -> None:
    try:
        if container is not None:
            names.resource_id(container, field)
        names.resource_id(item, field)
    except InvalidArgument as e:
        raise InvalidArgument(
            field, f"{quote(path)}: {e.field_violations[0].description}"
        ) from None


def reserved_project_id(project_id: str) -> bool:
    """Project ids that would make paths ambiguous."""
    return project_id == LEGACY_SEGMENT or project_id.startswith(REGISTRY_PREFIX)


def artifact_version_path(team: str, project: str, artifact: str, index: int) -> str:
    return format_path(PathKind.PROJECT_ARTIFACT, team, project, artifact, Version(index))


def model_version_path(team: str, model: str, index: int) -> str:
    return format_path(PathKind.LEGACY_MODEL, team, "", model, Version(index))


def collection_version_path(org: str, registry: str, collection: str, index: int) -> str:
    return format_path(PathKind.REGISTRY_COLLECTION, org, registry, collection, Version(index))
