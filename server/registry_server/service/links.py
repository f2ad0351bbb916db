"""Linking artifact versions into collections, and moving aliases: LinkArtifactVersion
and AddAlias, what every training pipeline does at the end of a run.

Each runs on the connection it is given (`storage.sql.Sql`) inside the caller's write
transaction: SQLite's write child or PostgreSQL's batches on the event loop (a batch of
changes per transaction, `workers.changes`), or an ORM session
(`Sql.of(session)`, e.g. a legacy link forwarded to a migrated collection).

One statement (`storage.queries.links.link_target`) reads the registry with the
caller's granted roles, the row-locked collection, the source artifact version with
the caller's role in its team, and whether it is linked there already; then come the
inserts (link, aliases, events) and one UPDATE of the collection, and the answer is
built from values at hand. What that statement does not find takes the statements
that name it: the registry header for a missing registry or collection, the resolver
for a source given by a registry or legacy path (or one that is missing), and a
missing collection is created with the source's type. AddAlias reads the registry,
the locked collection, the version and where the alias is now in one statement.

Index allocation and alias moves hold the collection row (`FOR UPDATE` on
PostgreSQL; SQLite serializes writers), so concurrent links get dense, unique indices
and an alias is never on two versions. Linking the same source version twice returns
the existing link, which still gets the requested aliases.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..domain import names
from ..domain.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    quote,
)
from ..domain.names import CollectionRef
from ..domain.paths import LATEST, ParsedPath, PathKind
from ..domain.roles import TeamRole
from ..storage.db import now_us
from ..storage.queries import links as q
from ..storage.queries import registries as qr
from ..storage.queries.versions import alias_holders
from ..storage.sql import Query, Sql, json_value
from . import events
from .access import (
    RegistryHeader,
    check_registry_role,
    header_of,
    registry_header,
    require_protected_alias_right,
    require_writable,
)
from .context import Principal
from .resolve import parse_reference, resolve
from .versions import VersionView, perm, version_by_id, view_of

DESCRIPTION_MAX = 64 * 1024


@dataclass(frozen=True)
class Linked:
    """The answer of a link or an alias move, and the organization whose events the
    transaction records (None: nothing changed)."""

    view: VersionView
    org_id: int | None


@dataclass(frozen=True)
class LinkRequest:
    """A LinkArtifactVersion whose input was checked (`link_request`)."""

    collection: CollectionRef
    source: str  # a path of any form, or a version resource name
    aliases: list[str]
    tags: list[str]
    description: str


def link_request(
    ref: CollectionRef,
    artifact_version: str,
    aliases: Sequence[str],
    tags: Sequence[str],
    description: str,
) -> LinkRequest:
    """LinkArtifactVersion's input checks, before anything is read (the source itself
    is parsed after the access checks, so a bad one is reported in that order)."""
    names.resource_id(ref.collection, "collection_id")
    alias_list = names.new_aliases(list(aliases), "aliases")
    tag_list = names.tags(list(tags), "tags")
    names.text(description, "description", DESCRIPTION_MAX)
    return LinkRequest(ref, artifact_version, alias_list, tag_list, description)


def alias_request(alias: str, expected_version_index: int | None) -> None:
    """AddAlias's input checks, before anything is read."""
    names.new_alias(alias, "alias")
    if expected_version_index is not None and expected_version_index < -1:
        raise InvalidArgument("expected_version_index", "must be a version index, or -1 for absent")


def protected_alias_right(header: RegistryHeader, aliases: Sequence[str], what: str) -> None:
    require_protected_alias_right(header.role, header.protected_aliases, aliases, what, header.name)


def _writable(sql: Sql, header: RegistryHeader) -> None:
    require_writable(sql, header.id, header.migration_id, header.name, header.undo_requested)


# --- LinkArtifactVersion ----------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """What `link_target` read: the registry header (with the collection) and the
    source artifact version (`source_id` None: not found by that name)."""

    header: RegistryHeader
    source_id: int | None
    source_index: int
    digest: str
    metadata: Any
    deleted: bool
    artifact_type: str
    artifact: str
    project: str
    team: str
    team_org_id: int | None
    team_role: int | None
    linked_id: int | None

    @property
    def source_name(self) -> str:
        return names.artifact_version_name(
            self.team, self.project, self.artifact, self.source_index
        )


def _read_target(
    sql: Sql, p: Principal, ref: CollectionRef, source: ParsedPath | int
) -> _Target | None:
    """The `link_target` row for a project path or an artifact version id; None when
    the registry or the collection is missing."""
    params: dict[str, Any] = {
        "uid": p.user_id,
        "org": ref.org,
        "registry": ref.registry,
        "collection": ref.collection,
    }
    if isinstance(source, int):
        form = "id"
        params["av_id"] = source
    else:
        params |= {"team": source.root, "project": source.container, "artifact": source.item}
        if source.version.index is not None:
            form = "index"
            params["index"] = source.version.index
        else:
            form = "alias"
            params["alias"] = source.version.alias
    row = sql.one(q.link_target, params, (form,))
    if row is None:
        return None
    if sql.postgres:  # the statement locked the collection (`q.saw_locked_row`)
        if not row[-1]:
            row = sql.one(q.link_target, params, (form,))
        row = row[:-1]
    width = qr.REGISTRY_WIDTH + 3  # the registry, then the collection
    (
        av_pk, av_index, digest, metadata, delete_time, artifact_type, artifact, project,
        team, _team_pk, team_org, team_role, linked,
    ) = row[width:]  # fmt: skip
    return _Target(
        header_of(p, names.registry_name(ref.org, ref.registry), row[:width]),
        av_pk, av_index, digest, metadata, delete_time is not None, artifact_type,
        artifact, project, team, team_org, team_role, linked,
    )  # fmt: skip


def _locked_read(sql: Sql, params: dict[str, Any], read: Query, shape: tuple[str, ...] = ()) -> Any:
    """`read`'s row after the collection's row lock on PostgreSQL; None when the
    collection is missing. (Read
    apart from the lock: a statement that waited for a row lock sees that row as
    committed meanwhile, but the rows it joined as they were when it started.)"""
    if not sql.postgres:
        return sql.one(read, params, shape)
    locked, row = sql.ones([(q.lock_collection, params, ()), (read, params, shape)])
    # (a collection created between the two would not be locked)
    return row if locked is not None else None


def _project_path(text: str) -> ParsedPath | None:
    """The source as a project path, if it is one (`link_target` reads it by name)."""
    try:
        parsed = parse_reference(text, "artifact_version")
    except InvalidArgument:
        return None  # reported by the resolver, after the access checks
    return parsed if parsed.kind is PathKind.PROJECT_ARTIFACT else None


def link(sql: Sql, p: Principal, req: LinkRequest) -> Linked:
    """Links (points at) an artifact version (see the module docstring)."""
    ref = req.collection
    need = perm("LinkArtifactVersion")
    project_path = _project_path(req.source)
    target = _read_target(sql, p, ref, project_path) if project_path is not None else None
    if target is None or target.source_id is None:
        # The registry's checks first, then the source through the resolver (the exact
        # error when it is missing or hidden), then the collection, made when missing.
        header = registry_header(sql, p, ref.org, ref.registry, need, ref.collection)
        protected_alias_right(header, req.aliases, f"linking into {ref.name}")
        _writable(sql, header)
        found = resolve(sql, p, parse_reference(req.source, "artifact_version")).artifact_version
        if found.org_id != p.org_id:
            raise _hidden(found.name)
        target = _read_target(sql, p, ref, found.id)
        if target is None:
            _require_accepted(header, found.type)
            _create_collection(sql, p, header, ref, found.type)
            target = _read_target(sql, p, ref, found.id)
            assert target is not None, "the collection was just created"
    header = target.header
    check_registry_role(header.role, need, header.name)
    protected_alias_right(header, req.aliases, f"linking into {ref.name}")
    _writable(sql, header)
    if target.deleted or not _sees_team(p, target):
        # The resolver names a deleted version; reached through a registry path, the
        # caller may still be outside the source team: only what the caller can see
        # in its team may be linked.
        resolve(sql, p, parse_reference(target.source_name, "artifact_version"))
        raise _hidden(target.source_name)
    _require_accepted(header, target.artifact_type)
    if header.collection_type != target.artifact_type:
        raise FailedPrecondition(
            f"{ref.name} holds artifacts of type {header.collection_type!r}; "
            f"{target.source_name} is of type {target.artifact_type!r}",
            reason="COLLECTION_TYPE_MISMATCH",
            metadata={
                "collection_type": header.collection_type,
                "artifact_type": target.artifact_type,
            },
        )
    if target.linked_id is not None:
        return _onto_existing(sql, p, header, ref, target.linked_id, req.aliases)
    return _new_link(sql, p, header, ref, target, req)


def _hidden(name: str) -> NotFound:
    return NotFound(f"{name} not found")


def _sees_team(p: Principal, target: _Target) -> bool:
    """Whether the caller may see what the source team logged (team VIEW)."""
    if target.team_org_id != p.org_id:
        return False
    return p.org_admin or target.team_role not in (None, TeamRole.UNSPECIFIED)


def _require_accepted(header: RegistryHeader, artifact_type: str) -> None:
    if header.accepts(artifact_type):
        return
    accepted = (
        "any type"
        if header.allow_all_artifact_types
        else ", ".join(header.artifact_types) or "no type"
    )
    raise FailedPrecondition(
        f"{header.name} does not accept artifact type {artifact_type!r} (accepts "
        f"{accepted}); an ADMIN can add it to artifact_types",
        reason="ARTIFACT_TYPE_NOT_ACCEPTED",
        metadata={"artifact_type": artifact_type},
    )


def _create_collection(
    sql: Sql, p: Principal, header: RegistryHeader, ref: CollectionRef, artifact_type: str
) -> None:
    """The collection, with the source's type; a concurrent link that made it first
    wins (no event here then)."""
    names.new_id(ref.collection, "collection_id")
    now = now_us()
    created = sql.execute(
        q.insert_collection,
        {
            "rid": header.id,
            "name": ref.collection,
            "type": artifact_type,
            "text": "",
            "tags": [],
            "zero": 0,
            "one": 1,
            "uid": p.user_id,
            "now": now,
        },
    )
    if created:
        events.scoped_event(
            sql,
            events.COLLECTION_CREATED,
            p,
            ref.name,
            {"type": artifact_type, "tags": []},
            registry=header,
        )


def _new_link(
    sql: Sql,
    p: Principal,
    header: RegistryHeader,
    ref: CollectionRef,
    target: _Target,
    req: LinkRequest,
) -> Linked:
    assert header.collection_id is not None and target.source_id is not None
    now = now_us()
    index = header.next_version_index
    if not sql.postgres:  # (PostgreSQL's insert_link bumps the collection)
        sql.send(q.bump_collection, {"cid": header.collection_id, "now": now})
    version_pk = sql.one(
        q.insert_link,
        {
            "cid": header.collection_id,
            "index": index,
            "av": target.source_id,
            "tags": req.tags,
            "text": req.description,
            "uid": p.user_id,
            "now": now,
        },
    )[0]
    events.scoped_event(
        sql,
        events.VERSION_LINKED,
        p,
        ref.version_name(index),
        {
            "collection": ref.name,
            "version_index": index,
            "artifact_version": target.source_name,
            "artifact_type": target.artifact_type,
            "aliases": req.aliases,
        },
        registry=header,
    )
    # The version is new: every alias moves onto it (from elsewhere, or from nowhere).
    _put_aliases(sql, p, header, ref, version_pk, index, req.aliases, now)
    view = VersionView(
        id=version_pk,
        collection=ref,
        version_index=index,
        artifact_version_id=target.source_id,
        artifact_version=target.source_name,
        aliases=[LATEST, *sorted(req.aliases)],
        tags=req.tags,
        description=req.description,
        linked_by=p.user,
        linked_by_id=p.user_id,
        create_time=now,
        update_time=now,
        metadata=json_value(target.metadata) or {},
        digest=target.digest,
        artifact_type=target.artifact_type,
    )
    return Linked(view, header.org_id)


def _onto_existing(
    sql: Sql,
    p: Principal,
    header: RegistryHeader,
    ref: CollectionRef,
    version_pk: int,
    aliases: Sequence[str],
) -> Linked:
    """The source is linked already: that link, with the requested aliases."""
    holders = _holders(sql, header, aliases)
    arriving = [a for a in aliases if a not in holders or holders[a][1] != version_pk]
    view = version_by_id(sql, ref, version_pk)
    if not arriving:
        return Linked(view, None)
    held = sql.one(q.alias_count, {"vid": version_pk})[0]
    names.check_alias_count(held + len(arriving), "aliases", view.name)
    _put_aliases(sql, p, header, ref, version_pk, view.version_index, arriving, now_us(), holders)
    return Linked(version_by_id(sql, ref, version_pk), header.org_id)


def _holders(
    sql: Sql, header: RegistryHeader, aliases: Sequence[str]
) -> dict[str, tuple[int, int, int]]:
    """alias -> (alias row id, version row id, version index), for those held now."""
    if not aliases:
        return {}
    params: dict[str, Any] = {"cid": header.collection_id}
    params.update({f"a{i}": alias for i, alias in enumerate(aliases)})
    rows = sql.all(alias_holders, params, (len(aliases),))
    return {alias: (alias_pk, version_pk, index) for alias, alias_pk, version_pk, index in rows}


def _put_aliases(
    sql: Sql,
    p: Principal,
    header: RegistryHeader,
    ref: CollectionRef,
    version_pk: int,
    index: int,
    aliases: Sequence[str],
    now: int,
    holders: dict[str, tuple[int, int, int]] | None = None,
) -> None:
    """Puts each alias (not on the version yet) on it, moving it off any other; one
    ALIAS_ADDED event each."""
    if not aliases:
        return
    holders = _holders(sql, header, aliases) if holders is None else holders
    moved, added = [], []
    for alias in aliases:
        holder = holders.get(alias)
        if holder is not None:
            moved.append({"alias_id": holder[0], "vid": version_pk, "now": now})
        else:
            added.append(
                {"cid": header.collection_id, "alias": alias, "vid": version_pk, "now": now}
            )
        _alias_added(sql, p, header, ref, alias, index, holder[2] if holder else None)
    sql.many(q.move_alias, moved)
    sql.many(q.insert_alias, added)


def _alias_added(
    sql: Sql,
    p: Principal,
    header: RegistryHeader,
    ref: CollectionRef,
    alias: str,
    index: int,
    previous: int | None,
) -> None:
    events.scoped_event(
        sql,
        events.ALIAS_ADDED,
        p,
        ref.version_name(index),
        {
            "alias": alias,
            "collection": ref.name,
            "version_index": index,
            "previous_version_index": previous,
        },
        registry=header,
    )


# --- AddAlias ----------------------------------------------------------------------------


def add_alias(
    sql: Sql,
    p: Principal,
    ref: CollectionRef,
    index: int,
    alias: str,
    expected_version_index: int | None,
) -> Linked:
    """Sets `alias` on version `index`. With `expected_version_index` it is a
    compare-and-set: ABORTED (ALIAS_CONFLICT) unless the alias is now on that index,
    or absent when -1."""
    need = perm("AddAlias")
    params = {
        "uid": p.user_id,
        "org": ref.org,
        "registry": ref.registry,
        "collection": ref.collection,
        "index": index,
        "alias": alias,
    }
    row = _locked_read(sql, params, q.alias_target)
    if row is None:  # the exact error: no registry, no access, or no collection
        registry_header(sql, p, ref.org, ref.registry, need)
        raise _hidden(ref.name)
    width = qr.REGISTRY_WIDTH + 1
    header = header_of(p, names.registry_name(ref.org, ref.registry), row[:width])
    check_registry_role(header.role, need, header.name)
    _writable(sql, header)
    protected_alias_right(header, [alias], f"setting alias {quote(alias)}")
    alias_pk, holder_index, highest = row[width : width + 3]
    version = row[width + 3 :]
    if version[0] is None:
        raise _hidden(ref.version_name(index))
    current = holder_index if alias_pk is not None else -1
    if expected_version_index is not None and expected_version_index != current:
        raise Aborted(
            f"alias {quote(alias)} of {ref.name} is {_where(current)}, "
            f"not {_where(expected_version_index)}; re-read and retry",
            reason="ALIAS_CONFLICT",
            metadata={"current_version_index": str(current)},
        )
    view = view_of(ref, highest, version, sort_aliases=True)
    if current == index:
        return Linked(view, None)
    held = [a for a in view.aliases if a != LATEST]
    names.check_alias_count(len(held) + 1, "alias", view.name)
    now = now_us()
    if alias_pk is not None:
        sql.send(q.move_alias, {"alias_id": alias_pk, "vid": view.id, "now": now})
    else:
        sql.send(
            q.insert_alias,
            {"cid": header.collection_id, "alias": alias, "vid": view.id, "now": now},
        )
    _alias_added(sql, p, header, ref, alias, index, holder_index if alias_pk else None)
    aliases = sorted([*held, alias])
    if index == highest:
        aliases.insert(0, LATEST)
    return Linked(dataclasses.replace(view, aliases=aliases), header.org_id)


def _where(index: int) -> str:
    return f"on v{index}" if index >= 0 else "absent"
