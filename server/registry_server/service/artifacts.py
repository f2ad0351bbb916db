"""Projects, artifact versions, aliases, usage and lineage (ArtifactService use cases).

Artifacts belong to a team's project; team rights govern them (`access.team_access`):
any team member (and org admins) may view and use, team MEMBER and above (and the
team's model registry admins) may create projects and versions and change them.

Versions are `v0..vN` per artifact, allocated under a lock on the artifact row
(`SELECT ... FOR UPDATE` on PostgreSQL; SQLite write transactions are IMMEDIATE and
already serialize), which also serializes alias moves. `latest` is a stored alias
that follows the newest version and falls back to the highest non-deleted one when
its version is deleted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..domain import names, paths
from ..domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, quote
from ..domain.metadata import merged as merged_metadata
from ..domain.names import artifact_version_name
from ..domain.pagination import ListParams
from ..domain.paths import LATEST, ParsedPath, PathKind, Version
from ..domain.roles import LegacyPermission
from ..storage import models as m
from ..storage.db import add_created, now_us, revised
from ..storage.filter_sql import FieldSpec, filter_of, filtered, held_alias
from ..storage.paging import Page, page_of, parse_order_by
from ..storage.sql import Sql
from . import access, events, files
from .context import Principal
from .organizations import check_etag
from .resolve import DELETED_REASON, ArtifactVersionInfo, artifact_info, resolve
from .rows import lock_or_create, one_or_not_found
from .versions import aliases_by_version, move_aliases, moved_from, version_row

DESCRIPTION_MAX = 64 * 1024
RUN_ID_MAX = 256
MANIFEST_MAX_ENTRIES = 10_000
MANIFEST_PATH_MAX = 1024
REF_MAX = 2048
# Manifest entry digests: ALGORITHM:HEX, the hex digits counted per algorithm.
DIGEST_HEX_DIGITS = {"sha256": 64, "md5": 32}
HEX = re.compile(r"[0-9A-Fa-f]+")
TYPE_MISMATCH = "ARTIFACT_TYPE_MISMATCH"


# --- input validation ---------------------------------------------------------------


def validate_manifest(
    entries: Sequence[dict[str, Any]], field: str = "manifest"
) -> list[dict[str, Any]]:
    """Checks each entry; returns them in request order (errors name `manifest[i]` by
    the request's index; `content_digest` and storage sort them by path)."""
    if len(entries) > MANIFEST_MAX_ENTRIES:
        raise InvalidArgument(field, f"at most {MANIFEST_MAX_ENTRIES} entries (got {len(entries)})")
    seen: set[str] = set()
    out: list[dict[str, Any]] = []
    for i, e in enumerate(entries):
        where = f"{field}[{i}]"
        path, digest, size, ref = e["path"], e["digest"], e["size"], e["ref"]
        _check_entry_path(path, f"{where}.path")
        if path in seen:
            raise InvalidArgument(f"{where}.path", f"duplicate path {quote(path)}")
        seen.add(path)
        digest = check_digest(digest, f"{where}.digest")
        if size < 0:
            raise InvalidArgument(f"{where}.size", "must not be negative")
        if len(ref) > REF_MAX or not ref.isprintable():
            raise InvalidArgument(f"{where}.ref", f"must be at most {REF_MAX} printable characters")
        out.append({"path": path, "digest": digest, "size": size, "ref": ref})
    for i, e in enumerate(out):
        # a path that is another entry's directory could not be written out as files
        parts = e["path"].split("/")
        for depth in range(1, len(parts)):
            directory = "/".join(parts[:depth])
            if directory in seen:
                raise InvalidArgument(
                    f"{field}[{i}].path",
                    f"{quote(e['path'])} is inside {quote(directory)}, which is a file",
                )
    return out


def check_digest(digest: str, field: str) -> str:
    """`sha256:` and 64 hex digits, or `md5:` and 32; returned with lowercase digits
    (the same bytes, the same digest)."""
    algorithm, _, value = digest.partition(":")
    digits = DIGEST_HEX_DIGITS.get(algorithm)
    if digits is None:
        raise InvalidArgument(
            field, f"must be sha256:<64 hex digits> or md5:<32 hex digits> (got {quote(digest)})"
        )
    if len(value) != digits or not HEX.fullmatch(value):
        raise InvalidArgument(
            field,
            f"a {algorithm} digest needs exactly {digits} hex digits after '{algorithm}:' "
            f"(got {quote(digest)})",
        )
    return f"{algorithm}:{value.lower()}"


def _check_entry_path(path: str, field: str) -> None:
    if len(path) > MANIFEST_PATH_MAX or not path.isprintable():
        raise InvalidArgument(field, f"must be at most {MANIFEST_PATH_MAX} printable characters")
    if path.startswith("/"):
        raise InvalidArgument(field, f"{quote(path)} must be relative (no leading '/')")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidArgument(
                field, f"{quote(path)} must not contain empty, '.' or '..' segments"
            )


def content_digest(manifest: Iterable[dict[str, Any]]) -> str:
    """sha256 over the manifest entries sorted by path: equal content, equal digest."""
    canonical = sorted((e["path"], e["digest"], e["size"], e["ref"]) for e in manifest)
    data = json.dumps(canonical, separators=(",", ":"), ensure_ascii=False).encode()
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_run_id(run_id: str, field: str = "run_id") -> str:
    if not run_id:
        return run_id
    if len(run_id) > RUN_ID_MAX or not run_id.isprintable() or run_id != run_id.strip():
        raise InvalidArgument(
            field, f"must be at most {RUN_ID_MAX} printable characters without edge spaces"
        )
    return run_id


def check_description(value: str, field: str) -> str:
    return names.text(value, field, DESCRIPTION_MAX)


# --- projects -------------------------------------------------------------------------


def create_project(
    s: Session, p: Principal, *, team: str, project_id: str, description: str
) -> m.Project:
    names.new_id(project_id, "project_id")
    if paths.reserved_project_id(project_id):
        raise InvalidArgument(
            "project_id",
            f"{quote(project_id)} is reserved: '{paths.LEGACY_SEGMENT}' and "
            f"'{paths.REGISTRY_PREFIX}*' would make paths ambiguous",
        )
    check_description(description, "description")
    t = access.team_access(s, p, team, LegacyPermission.WRITE).team
    if s.execute(
        select(m.Project.id).where(m.Project.team_id == t.id, m.Project.name == project_id)
    ).first():
        raise AlreadyExists(f"teams/{team}/projects/{project_id} already exists")
    project = m.Project(team_id=t.id, name=project_id, description=description)
    add_created(s, project)
    events.scoped_event(s, events.PROJECT_CREATED, p, f"teams/{team}/projects/{project_id}", team=t)
    return project


def get_project(s: Session, p: Principal, team: str, project: str) -> m.Project:
    label = f"teams/{team}/projects/{project}"
    t = access.team_access(s, p, team, LegacyPermission.VIEW, what=label).team
    return _project(s, t, project, label)


def _project(s: Session, team: m.Team, project: str, label: str) -> m.Project:
    stmt = select(m.Project).where(m.Project.team_id == team.id, m.Project.name == project)
    return one_or_not_found(s, stmt, label)


PROJECT_FILTER_FIELDS: dict[str, FieldSpec] = {
    "name": FieldSpec("string", m.Project.name),
    "description": FieldSpec("string", m.Project.description),
    "create_time": FieldSpec("time", m.Project.create_time),
}
PROJECT_ORDER_FIELDS = {"name": m.Project.name, "create_time": m.Project.create_time}


def list_projects(s: Session, p: Principal, team: str, ask: ListParams) -> Page:
    where = filter_of(s, ask.filter, PROJECT_FILTER_FIELDS)
    keys = parse_order_by(ask.order_by, PROJECT_ORDER_FIELDS, "name", m.Project.id)
    t = access.team_access(s, p, team, LegacyPermission.VIEW).team
    stmt = filtered(select(m.Project).where(m.Project.team_id == t.id), where)
    query = ("projects", team, ask.filter, ask.order_by)
    return page_of(s, stmt, keys, ask, query)


# --- artifacts ------------------------------------------------------------------------


def _artifact(
    s: Session,
    p: Principal,
    team: str,
    project: str,
    artifact: str,
    perm: LegacyPermission,
    *,
    for_update: bool = False,
) -> tuple[access.TeamAccess, m.Artifact]:
    """The artifact after the team check; locked when `for_update` (serializes writes)."""
    label = f"teams/{team}/projects/{project}/artifacts/{artifact}"
    ta = access.team_access(s, p, team, perm, what=label)
    stmt = (
        select(m.Artifact)
        .join(m.Project, m.Project.id == m.Artifact.project_id)
        .where(
            m.Project.team_id == ta.team.id, m.Project.name == project, m.Artifact.name == artifact
        )
    )
    if for_update:
        stmt = stmt.with_for_update(of=m.Artifact).execution_options(populate_existing=True)
    return ta, one_or_not_found(s, stmt, label)


def _user_name(s: Session, user_id: int | None) -> str:
    if user_id is None:
        return ""
    return s.execute(select(m.User.name).where(m.User.id == user_id)).scalar() or ""


def _aliases(s: Session, version: m.ArtifactVersion) -> tuple[str, ...]:
    return aliases_by_version(s, m.ArtifactAlias, [version.id])[version.id]


def _info(
    s: Session,
    version: m.ArtifactVersion,
    team: m.Team,
    project: str,
    artifact: m.Artifact,
    created_by: str | None = None,
    aliases: tuple[str, ...] | None = None,
) -> ArtifactVersionInfo:
    """The version as ArtifactService shows it; its creator and aliases read unless given."""
    return artifact_info(
        version,
        team=team.name,
        team_id=team.id,
        org_id=team.org_id,
        project=project,
        artifact=artifact.name,
        type=artifact.type,
        created_by=created_by if created_by is not None else _user_name(s, version.created_by_id),
        aliases=aliases if aliases is not None else _aliases(s, version),
    )


def _move_aliases(
    s: Session, artifact_id: int, version_id: int, aliases: Sequence[str]
) -> dict[str, int | None]:
    """`versions.move_aliases` of an artifact (its row locked)."""
    return move_aliases(
        s, m.ArtifactAlias, m.ArtifactVersion, "artifact_id", artifact_id, version_id, aliases
    )


def _lock_or_create_artifact(
    s: Session, project: m.Project, artifact_id: str, type_: str
) -> tuple[m.Artifact, bool]:
    """The artifact, locked; created by its first version (one named before today's
    rules exists already and keeps working)."""

    def create() -> m.Artifact:
        names.new_id(artifact_id, "artifact_id")
        artifact = m.Artifact(project_id=project.id, name=artifact_id, type=type_)
        add_created(s, artifact)
        return artifact

    stmt = (
        select(m.Artifact)
        .where(m.Artifact.project_id == project.id, m.Artifact.name == artifact_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return lock_or_create(s, stmt, create)


def create_artifact_version(
    s: Session,
    p: Principal,
    *,
    team: str,
    project: str,
    artifact_id: str,
    type_: str,
    manifest: Sequence[dict[str, Any]],
    metadata: dict[str, Any],
    description: str,
    aliases: Sequence[str],
    tags: Sequence[str],
    run_id: str,
) -> tuple[ArtifactVersionInfo, bool]:
    """Logs a version: (the version, whether it was reused). Identical content (same
    digest) logged again to the same artifact returns the existing version with what
    was asked for applied to it (`_relog`)."""
    names.resource_id(artifact_id, "artifact_id")
    names.artifact_type(type_, "type")
    entries = validate_manifest(manifest)
    check_description(description, "description")
    wanted_aliases = names.new_aliases(list(aliases), "aliases")
    wanted_tags = names.tags(list(tags), "tags")
    check_run_id(run_id)
    digest = content_digest(entries)

    label = f"teams/{team}/projects/{project}"
    ta = access.team_access(s, p, team, LegacyPermission.WRITE, what=label)
    files.require_stored(s, ta.team.org_id, ta.team.id, entries)
    entries.sort(key=lambda e: e["path"])  # the canonical order
    proj = _project(s, ta.team, project, label)
    artifact, created = _lock_or_create_artifact(s, proj, artifact_id, type_)
    if artifact.type != type_:
        raise FailedPrecondition(
            f"{label}/artifacts/{artifact_id} has type {artifact.type!r}, not {quote(type_)}",
            reason=TYPE_MISMATCH,
        )
    if not created:
        same = s.execute(
            select(m.ArtifactVersion)
            .where(
                m.ArtifactVersion.artifact_id == artifact.id,
                m.ArtifactVersion.digest == digest,
                m.ArtifactVersion.delete_time.is_(None),
            )
            .order_by(m.ArtifactVersion.version_index)
            .limit(1)
        ).scalar_one_or_none()
        if same is not None:
            asked = Relog(metadata, description, wanted_aliases, wanted_tags, run_id)
            return _relog(s, p, ta.team, project, artifact, same, asked), True

    now = now_us()
    index = artifact.next_version_index
    artifact.next_version_index = index + 1
    artifact.update_time = now
    version = m.ArtifactVersion(
        artifact_id=artifact.id,
        version_index=index,
        digest=digest,
        size=sum(e["size"] for e in entries),
        manifest=entries,
        metadata_=metadata,
        description=description,
        tags=wanted_tags,
        producing_run=run_id,
        created_by_id=p.user_id,
    )
    add_created(s, version, now)
    moved = _move_aliases(s, artifact.id, version.id, [LATEST, *wanted_aliases])
    name = artifact_version_name(team, project, artifact_id, index)
    events.scoped_event(
        s,
        events.ARTIFACT_VERSION_CREATED,
        p,
        name,
        {
            "version_index": index,
            "type": type_,
            "digest": digest,
            "aliases": sorted(moved) if moved else [],
            "moved_from": moved_from(moved),
            "producing_run": run_id,
            "artifact_created": created,
        },
        team=ta.team,
    )
    return _info(s, version, ta.team, project, artifact, created_by=p.user), False


@dataclass(frozen=True)
class Relog:
    """What a CreateArtifactVersion of identical content asked for (validated)."""

    metadata: dict[str, Any]
    description: str
    aliases: list[str]
    tags: list[str]
    run_id: str


def _relog(
    s: Session,
    p: Principal,
    team: m.Team,
    project: str,
    artifact: m.Artifact,
    version: m.ArtifactVersion,
    asked: Relog,
) -> ArtifactVersionInfo:
    """Identical content logged again: `version` (the artifact row locked) gets what was
    asked for, nothing is dropped. Aliases move to it (`latest` stays on the newest
    version), tags are added to its own, metadata keys are set over its own, a
    description replaces its own, and the run is recorded: as the producing run when it
    has none, else as a run that logged it again (`GetLineage`'s `logging_runs`). One
    ARTIFACT_VERSION_UPDATED event (details `relogged: true`) when anything changed."""
    name = artifact_version_name(team.name, project, artifact.name, version.version_index)
    held = set(_aliases(s, version)) - {LATEST}
    arriving = [a for a in asked.aliases if a not in held]
    names.check_alias_count(len(held) + len(arriving), "aliases", name)
    own_tags = list(version.tags or [])
    new_tags = [t for t in asked.tags if t not in own_tags]
    if len(own_tags) + len(new_tags) > names.TAGS_MAX:
        raise InvalidArgument("tags", f"at most {names.TAGS_MAX} tags, also with those {name} has")
    own_metadata = dict(version.metadata_ or {})
    new_metadata = merged_metadata(own_metadata, asked.metadata, "metadata")

    fields: list[str] = []
    details: dict[str, Any] = {"relogged": True}
    if arriving:
        moved = _move_aliases(s, artifact.id, version.id, arriving)
        fields.append("aliases")
        details.update(aliases_added=arriving, moved_from=moved_from(moved))
    if new_tags:
        fields.append("tags")
        details["tags_before"] = own_tags
        version.tags = own_tags + new_tags
    if new_metadata != own_metadata:
        fields.append("metadata")
        details["metadata_keys"] = sorted(
            k for k, v in asked.metadata.items() if k not in own_metadata or own_metadata[k] != v
        )
        version.metadata_ = new_metadata
    if asked.description and asked.description != version.description:
        fields.append("description")
        version.description = asked.description
    recorded_as = _record_run(s, p, version, asked.run_id)
    if recorded_as:
        fields.append(recorded_as)
    if not fields:
        return _info(s, version, team, project, artifact)  # nothing new: no change, no event
    if asked.run_id:
        details["run_id"] = asked.run_id
    revised(version)
    s.flush()
    events.scoped_event(
        s, events.ARTIFACT_VERSION_UPDATED, p, name, {"fields": fields, **details}, team=team
    )
    return _info(s, version, team, project, artifact)


def _record_run(s: Session, p: Principal, version: m.ArtifactVersion, run_id: str) -> str:
    """Records `run_id` as having logged `version` (the artifact row locked): as its
    producing run when it has none, else among the runs that logged it again. Returns
    the field that changed, "" when the run was recorded already (or none is given)."""
    if not run_id or run_id == version.producing_run:
        return ""
    if not version.producing_run:
        version.producing_run = run_id
        return "producing_run"
    recorded = s.execute(
        select(m.ArtifactLogRun.run_id).where(
            m.ArtifactLogRun.version_id == version.id, m.ArtifactLogRun.run_id == run_id
        )
    ).first()
    if recorded is not None:
        return ""
    s.add(
        m.ArtifactLogRun(
            version_id=version.id, run_id=run_id, user_id=p.user_id, create_time=now_us()
        )
    )
    return "logging_runs"


def get_artifact_version(
    s: Session, p: Principal, team: str, project: str, artifact: str, index: int
) -> ArtifactVersionInfo:
    """Also returns deleted versions (with delete_time set)."""
    parsed = ParsedPath(PathKind.PROJECT_ARTIFACT, team, project, artifact, Version(index=index))
    try:
        return resolve(Sql.of(s), p, parsed, allow_deleted=True).artifact_version
    except NotFound:
        raise NotFound(
            f"{artifact_version_name(team, project, artifact, index)} not found"
        ) from None


VERSION_FILTER_FIELDS: dict[str, FieldSpec] = {
    "alias": FieldSpec("alias", builder=held_alias(m.ArtifactAlias, m.ArtifactVersion)),
    "tag": FieldSpec("tags", m.ArtifactVersion.tags),
    "metadata": FieldSpec("json_map", m.ArtifactVersion.metadata_),
    "version_index": FieldSpec("int", m.ArtifactVersion.version_index),
    "create_time": FieldSpec("time", m.ArtifactVersion.create_time),
    "digest": FieldSpec("string", m.ArtifactVersion.digest),
    "producing_run": FieldSpec("string", m.ArtifactVersion.producing_run),
}
VERSION_ORDER_FIELDS = {
    "version_index": m.ArtifactVersion.version_index,
    "create_time": m.ArtifactVersion.create_time,
}


def list_artifact_versions(
    s: Session,
    p: Principal,
    team: str,
    project: str,
    artifact: str,
    ask: ListParams,
    show_deleted: bool,
) -> tuple[list[ArtifactVersionInfo], str]:
    where = filter_of(s, ask.filter, VERSION_FILTER_FIELDS)
    keys = parse_order_by(ask.order_by, VERSION_ORDER_FIELDS, "version_index", m.ArtifactVersion.id)
    ta, art = _artifact(s, p, team, project, artifact, LegacyPermission.VIEW)
    stmt = (
        select(m.ArtifactVersion, m.User.name)
        .outerjoin(m.User, m.User.id == m.ArtifactVersion.created_by_id)
        .where(m.ArtifactVersion.artifact_id == art.id)
    )
    stmt = filtered(stmt, where)
    if not show_deleted:
        stmt = stmt.where(m.ArtifactVersion.delete_time.is_(None))
    parent = f"teams/{team}/projects/{project}/artifacts/{artifact}"
    query = ("artifact_versions", parent, ask.filter, ask.order_by, show_deleted)
    page = page_of(s, stmt, keys, ask, query)
    aliases = aliases_by_version(s, m.ArtifactAlias, [row[0].id for row in page.rows])
    infos = [
        _info(s, row[0], ta.team, project, art, row[1] or "", aliases[row[0].id])
        for row in page.rows
    ]
    return infos, page.next_page_token


UPDATABLE_VERSION_FIELDS = {"description", "metadata", "tags", "aliases"}


def update_artifact_version(
    s: Session,
    p: Principal,
    team: str,
    project: str,
    artifact: str,
    index: int,
    fields: set[str],
    *,
    description: str,
    metadata: dict[str, Any],
    tags: Sequence[str],
    aliases: Sequence[str],
    etag: str,
) -> ArtifactVersionInfo:
    """Changes the fields in `fields`; `aliases` is the version's whole alias set."""
    check_description(description, "artifact_version.description")
    new_tags = names.tags(list(tags), "artifact_version.tags")
    new_aliases = names.aliases(list(aliases), "artifact_version.aliases")
    name = artifact_version_name(team, project, artifact, index)
    ta, art = _artifact(s, p, team, project, artifact, LegacyPermission.WRITE, for_update=True)
    version = version_row(s, m.ArtifactVersion.artifact_id, art.id, index, name, fresh=True)
    check_etag(etag, version.revision, "artifact_version.etag")
    if version.delete_time is not None:
        raise FailedPrecondition(f"{name} was deleted", reason=DELETED_REASON)
    details: dict[str, Any] = {"fields": sorted(fields)}
    if "aliases" in fields:
        current = set(_aliases(s, version))
        removed = sorted(current - set(new_aliases))
        if LATEST in removed:
            raise InvalidArgument(
                "artifact_version.aliases",
                f"'{LATEST}' moves to the newest version by itself and cannot be removed",
            )
        added = [a for a in new_aliases if a not in current]
        for a in added:  # those it holds already may predate today's rules
            names.new_alias(a, f"artifact_version.aliases[{list(aliases).index(a)}]")
        names.check_alias_count(len(set(new_aliases) - {LATEST}), "artifact_version.aliases", name)
        moved = _move_aliases(s, art.id, version.id, added)
        if removed:
            s.execute(
                delete(m.ArtifactAlias).where(
                    m.ArtifactAlias.version_id == version.id, m.ArtifactAlias.alias.in_(removed)
                )
            )
        details.update(aliases_added=added, aliases_removed=removed, moved_from=moved_from(moved))
    if "metadata" in fields:
        version.metadata_ = metadata
    if "tags" in fields:
        details["tags_before"] = list(version.tags or [])
    revised(version, fields, description=description, tags=new_tags)
    s.flush()
    events.scoped_event(s, events.ARTIFACT_VERSION_UPDATED, p, name, details, team=ta.team)
    return _info(s, version, ta.team, project, art)


def delete_artifact_version(
    s: Session, p: Principal, team: str, project: str, artifact: str, index: int
) -> None:
    """Soft delete: links stay but cannot be used; its aliases are removed and `latest`
    falls back to the highest remaining version."""
    name = artifact_version_name(team, project, artifact, index)
    ta, art = _artifact(s, p, team, project, artifact, LegacyPermission.WRITE, for_update=True)
    version = version_row(s, m.ArtifactVersion.artifact_id, art.id, index, name, fresh=True)
    if version.delete_time is not None:
        raise NotFound(f"{name} was already deleted", reason=DELETED_REASON)
    now = now_us()
    version.delete_time = now
    version.update_time = now
    version.revision += 1
    removed = list(_aliases(s, version))
    s.execute(delete(m.ArtifactAlias).where(m.ArtifactAlias.version_id == version.id))
    latest_to: int | None = None
    if LATEST in removed:
        fallback = s.execute(
            select(m.ArtifactVersion)
            .where(
                m.ArtifactVersion.artifact_id == art.id,
                m.ArtifactVersion.delete_time.is_(None),
                m.ArtifactVersion.id != version.id,
            )
            .order_by(m.ArtifactVersion.version_index.desc())
            .limit(1)
        ).scalar_one_or_none()
        if fallback is not None:
            s.add(m.ArtifactAlias(artifact_id=art.id, alias=LATEST, version_id=fallback.id))
            latest_to = fallback.version_index
    s.flush()
    events.scoped_event(
        s,
        events.ARTIFACT_VERSION_DELETED,
        p,
        name,
        {"aliases_removed": removed, "latest_moved_to": latest_to},
        team=ta.team,
    )
