"""Collections in a registry and their versions: links (pointers, never copies) to
artifact versions, with the collection's own `vN` index, aliases, tags and search.

Index allocation and alias moves lock the collection row (`SELECT ... FOR UPDATE`
on PostgreSQL; SQLite writes are serialized by BEGIN IMMEDIATE), so concurrent
links get dense, unique indices and an alias is never on two versions. `latest`
is not stored: it is the highest version index of the collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain import names
from ..domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    quote,
)
from ..domain.filters import parse_filter
from ..domain.names import CollectionRef
from ..domain.roles import LegacyPermission, Permission
from ..storage import models as m
from ..storage.db import now_us
from ..storage.filter_sql import FieldSpec, compile_filter
from ..storage.paging import Page, fetch_page, parse_order_by
from ..storage.sql import Sql
from . import authz_table, events, resolve, versions
from .access import RegistryAccess, registry_access, team_access
from .context import Principal
from .organizations import check_etag
from .registries import accepts_type, dialect
from .registry_freeze import check_writable

SERVICE = "CollectionService"
DESCRIPTION_MAX = 64 * 1024


def _perm(rpc: str) -> Permission:
    return authz_table.permission(SERVICE, rpc)


def _protected(registry: m.Registry, aliases: Sequence[str]) -> list[str]:
    protected = set(registry.protected_aliases or [])
    return [a for a in aliases if a in protected]


def _require_protected_alias_right(
    access: RegistryAccess, aliases: Sequence[str], what: str
) -> None:
    """Protected aliases need registry ADMIN (PERMISSION_DENIED, reason PROTECTED_ALIAS)."""
    protected = _protected(access.registry, aliases)
    need = authz_table.PROTECTED_ALIAS.min_role
    if protected and access.role < need:
        raise PermissionDenied(
            f"{what}: protected alias(es) {', '.join(protected)} of registry "
            f"{access.registry.name!r} need registry {need.name} (you have {access.role.name})",
            reason="PROTECTED_ALIAS",
            metadata={"aliases": ",".join(protected)},
        )


# --- loading ------------------------------------------------------------------------


def _load_collection(
    s: Session, p: Principal, ref: CollectionRef, perm: Permission, *, for_update: bool = False
) -> tuple[RegistryAccess, m.Collection]:
    access = registry_access(s, p, ref.org, ref.registry, perm)
    stmt = select(m.Collection).where(
        m.Collection.registry_id == access.registry.id, m.Collection.name == ref.collection
    )
    if for_update:  # every change of a collection or its versions
        check_writable(s, access.registry)
        stmt = stmt.with_for_update()
    collection = s.execute(stmt).scalar_one_or_none()
    if collection is None:
        raise NotFound(f"{ref.name} not found")
    return access, collection


def _load_version(
    s: Session, ref: CollectionRef, collection: m.Collection, index: int
) -> m.CollectionVersion:
    row = s.execute(
        select(m.CollectionVersion).where(
            m.CollectionVersion.collection_id == collection.id,
            m.CollectionVersion.version_index == index,
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{ref.name}/versions/{index} not found")
    return row


# --- collections --------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionView:
    row: m.Collection
    version_count: int
    created_by: str | None


def _collection_select() -> Any:
    count = (
        select(func.count())
        .select_from(m.CollectionVersion)
        .where(m.CollectionVersion.collection_id == m.Collection.id)
        .correlate(m.Collection)
        .scalar_subquery()
    )
    return select(m.Collection, count, m.User.name).outerjoin(
        m.User, m.User.id == m.Collection.created_by_id
    )


def collection_view(s: Session, collection: m.Collection) -> CollectionView:
    """The collection with its version count and creator (no access check: the caller's)."""
    row = s.execute(_collection_select().where(m.Collection.id == collection.id)).one()
    return CollectionView(row[0], row[1], row[2])


def create_collection(
    s: Session,
    p: Principal,
    org: str,
    registry_id: str,
    collection_id: str,
    *,
    artifact_type: str,
    description: str,
    tags: Sequence[str],
) -> CollectionView:
    names.new_id(collection_id, "collection_id")
    names.artifact_type(artifact_type, "collection.type")
    names.text(description, "collection.description", DESCRIPTION_MAX)
    tag_list = names.tags(list(tags), "collection.tags")
    access = registry_access(s, p, org, registry_id, _perm("CreateCollection"))
    check_writable(s, access.registry)
    ref = CollectionRef(org, registry_id, collection_id)
    _require_accepted(access.registry, artifact_type, org)
    if s.execute(
        select(m.Collection.id).where(
            m.Collection.registry_id == access.registry.id, m.Collection.name == collection_id
        )
    ).first():
        raise AlreadyExists(f"{ref.name} already exists")
    collection = _insert_collection(s, p, access, ref, artifact_type, description, tag_list)
    return collection_view(s, collection)


def _require_accepted(registry: m.Registry, artifact_type: str, org: str) -> None:
    if not accepts_type(registry, artifact_type):
        accepted = (
            "any type"
            if registry.allow_all_artifact_types
            else ", ".join(registry.artifact_types or []) or "no type"
        )
        raise FailedPrecondition(
            f"{names.registry_name(org, registry.name)} does not accept artifact type "
            f"{artifact_type!r} (accepts {accepted}); an ADMIN can add it to artifact_types",
            reason="ARTIFACT_TYPE_NOT_ACCEPTED",
            metadata={"artifact_type": artifact_type},
        )


def _insert_collection(
    s: Session,
    p: Principal,
    access: RegistryAccess,
    ref: CollectionRef,
    artifact_type: str,
    description: str,
    tags: list[str],
) -> m.Collection:
    t = now_us()
    collection = m.Collection(
        registry_id=access.registry.id,
        name=ref.collection,
        type=artifact_type,
        description=description,
        tags=tags,
        next_version_index=0,
        created_by_id=p.user_id,
        create_time=t,
        update_time=t,
    )
    s.add(collection)
    s.flush()
    events.record_event(
        s,
        org_id=access.registry.org_id,
        type=events.COLLECTION_CREATED,
        actor=p,
        resource=ref.name,
        details={"type": artifact_type, "tags": tags},
        registry_id=access.registry.id,
    )
    return collection


def get_collection(s: Session, p: Principal, ref: CollectionRef) -> CollectionView:
    _, collection = _load_collection(s, p, ref, _perm("GetCollection"))
    return collection_view(s, collection)


COLLECTION_FILTER = {
    "name": FieldSpec("string", m.Collection.name),
    "tag": FieldSpec("tags", m.Collection.tags),
    "type": FieldSpec("string", m.Collection.type),
    "description": FieldSpec("string", m.Collection.description),
    "create_time": FieldSpec("time", m.Collection.create_time),
    "update_time": FieldSpec("time", m.Collection.update_time),
}
COLLECTION_ORDER = {
    "name": m.Collection.name,
    "create_time": m.Collection.create_time,
    "update_time": m.Collection.update_time,
}


@dataclass(frozen=True)
class Listing:
    """A list request's order and filter, checked before anything is read."""

    keys: list[Any]
    # None, or the filter: compiled for collections; parsed for versions, whose fields
    # depend on the collection (`versions_page` compiles it)
    filter: Any
    page_size: int
    page_token: str
    query: tuple[Any, ...]  # what page tokens are bound to


def collection_listing(
    s: Session,
    *,
    filter: str,
    order_by: str,
    page_size: int,
    page_token: str,
    query: tuple[Any, ...],
) -> Listing:
    keys = parse_order_by(order_by, COLLECTION_ORDER, "name", m.Collection.id)
    clause = compile_filter(parse_filter(filter, "filter"), COLLECTION_FILTER, dialect(s), "filter")
    return Listing(keys, clause, page_size, page_token, query)


def collections_page(
    s: Session, where: ColumnElement[bool], listing: Listing
) -> tuple[list[CollectionView], str]:
    """A page of the collections matching `where` (the caller checked access)."""
    stmt = _collection_select().where(where)
    if listing.filter is not None:
        stmt = stmt.where(listing.filter)
    page = _page(s, stmt, listing)
    return [CollectionView(r[0], r[1], r[2]) for r in page.rows], page.next_page_token


def _page(s: Session, stmt: Any, listing: Listing) -> Page:
    """A keyset page of `stmt`, whose rows start with the listed entity."""
    keys = listing.keys
    return fetch_page(
        s,
        stmt,
        keys,
        size=listing.page_size,
        token=listing.page_token,
        query=listing.query,
        key_of=lambda row: tuple(getattr(row[0], k.column.key) for k in keys),
    )


def list_collections(
    s: Session,
    p: Principal,
    org: str,
    registry_id: str,
    *,
    page_size: int,
    page_token: str,
    filter: str,
    order_by: str,
) -> tuple[list[CollectionView], str]:
    listing = collection_listing(
        s,
        filter=filter,
        order_by=order_by,
        page_size=page_size,
        page_token=page_token,
        query=("collections", org, registry_id, filter, order_by),
    )
    access = registry_access(s, p, org, registry_id, _perm("ListCollections"))
    return collections_page(s, m.Collection.registry_id == access.registry.id, listing)


def update_collection(
    s: Session,
    p: Principal,
    ref: CollectionRef,
    fields: set[str],
    *,
    description: str,
    tags: Sequence[str],
    etag: str,
) -> CollectionView:
    """One event: TAGS_CHANGED when the tags change, COLLECTION_UPDATED otherwise."""
    if "description" in fields:
        names.text(description, "collection.description", DESCRIPTION_MAX)
    tag_list = names.tags(list(tags), "collection.tags") if "tags" in fields else []
    access, collection = _load_collection(s, p, ref, _perm("UpdateCollection"), for_update=True)
    check_etag(etag, collection.revision, "collection.etag")
    details: dict[str, Any] = {"fields": sorted(fields)}
    if "description" in fields:
        collection.description = description
    if "tags" in fields:
        details["previous_tags"] = list(collection.tags or [])
        details["tags"] = tag_list
        collection.tags = tag_list
    collection.revision += 1
    collection.update_time = now_us()
    events.record_event(
        s,
        org_id=access.registry.org_id,
        type=events.TAGS_CHANGED if "tags" in fields else events.COLLECTION_UPDATED,
        actor=p,
        resource=ref.name,
        details=details,
        registry_id=access.registry.id,
    )
    return collection_view(s, collection)


def delete_collection(s: Session, p: Principal, ref: CollectionRef, etag: str) -> None:
    """Deletes the collection and its links (never the artifacts). A collection with a
    protected alias on any version needs registry ADMIN."""
    access, collection = _load_collection(s, p, ref, _perm("DeleteCollection"), for_update=True)
    check_etag(etag, collection.revision, "etag")
    aliases = dict(
        s.execute(
            select(m.CollectionAlias.alias, m.CollectionVersion.version_index)
            .join(m.CollectionVersion, m.CollectionVersion.id == m.CollectionAlias.version_id)
            .where(m.CollectionAlias.collection_id == collection.id)
        ).all()
    )
    _require_protected_alias_right(access, sorted(aliases), f"deleting {ref.name}")
    count = s.execute(
        select(func.count()).where(m.CollectionVersion.collection_id == collection.id)
    ).scalar_one()
    s.execute(delete(m.CollectionAlias).where(m.CollectionAlias.collection_id == collection.id))
    s.execute(delete(m.CollectionVersion).where(m.CollectionVersion.collection_id == collection.id))
    s.execute(delete(m.Collection).where(m.Collection.id == collection.id))
    events.record_event(
        s,
        org_id=access.registry.org_id,
        type=events.COLLECTION_DELETED,
        actor=p,
        resource=ref.name,
        details={"version_count": count, "aliases": aliases},
        registry_id=access.registry.id,
    )


# --- collection versions ------------------------------------------------------------


def update_version(
    s: Session,
    p: Principal,
    ref: CollectionRef,
    index: int,
    fields: set[str],
    *,
    description: str,
    tags: Sequence[str],
) -> versions.VersionView:
    """One event: TAGS_CHANGED when the tags change, COLLECTION_UPDATED otherwise."""
    if "description" in fields:
        names.text(description, "collection_version.description", DESCRIPTION_MAX)
    tag_list = names.tags(list(tags), "collection_version.tags") if "tags" in fields else []
    access, collection = _load_collection(
        s, p, ref, _perm("UpdateCollectionVersion"), for_update=True
    )
    version = _load_version(s, ref, collection, index)
    details: dict[str, Any] = {
        "fields": sorted(fields),
        "collection": ref.name,
        "version_index": index,
    }
    if "description" in fields:
        version.description = description
    if "tags" in fields:
        details["previous_tags"] = list(version.tags or [])
        details["tags"] = tag_list
        version.tags = tag_list
    version.update_time = now_us()
    s.flush()
    events.record_event(
        s,
        org_id=access.registry.org_id,
        type=events.TAGS_CHANGED if "tags" in fields else events.COLLECTION_UPDATED,
        actor=p,
        resource=ref.version_name(index),
        details=details,
        registry_id=access.registry.id,
    )
    return versions.version_by_id(Sql.of(s), ref, version.id)


# --- linking ------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """The artifact version a link points at, with where it was logged."""

    id: int
    version_index: int
    artifact_type: str
    team_id: int
    team: str
    project: str
    artifact: str

    @property
    def name(self) -> str:
        return names.artifact_version_name(
            self.team, self.project, self.artifact, self.version_index
        )


def _resolve_source(s: Session, p: Principal, path_or_name: str, field: str) -> Source:
    """The artifact version named by any path form or version resource name; it must
    have been logged by a team of the caller's organization that the caller can see."""
    found = resolve.resolve_reference(Sql.of(s), p, path_or_name, field=field).artifact_version
    if found.org_id != p.org_id:
        raise NotFound(f"{found.name} not found")
    # Reached through a registry path, the caller may still be outside the source team:
    # only what the caller can see in its team may be linked (NOT_FOUND otherwise).
    team_access(s, p, found.team, LegacyPermission.VIEW, what=found.name)
    return Source(
        found.id,
        found.version_index,
        found.type,
        found.team_id,
        found.team,
        found.project,
        found.artifact,
    )


def _collection_for_link(
    s: Session, p: Principal, access: RegistryAccess, ref: CollectionRef, artifact_type: str
) -> m.Collection:
    """The collection, row-locked; created with the source's type when missing."""
    stmt = (
        select(m.Collection)
        .where(m.Collection.registry_id == access.registry.id, m.Collection.name == ref.collection)
        .with_for_update()
    )
    collection = s.execute(stmt).scalar_one_or_none()
    if collection is not None:
        return collection  # also one named before today's rules: it keeps working
    names.new_id(ref.collection, "collection_id")
    try:
        with s.begin_nested():
            return _insert_collection(s, p, access, ref, artifact_type, "", [])
    except IntegrityError:
        # A concurrent link created it first; use theirs.
        collection = s.execute(stmt).scalar_one_or_none()
        if collection is None:
            raise
        return collection


def validate_link(
    collection_id: str,
    artifact_version: str,
    aliases: Sequence[str],
    tags: Sequence[str],
    description: str,
) -> tuple[list[str], list[str]]:
    """LinkArtifactVersion's input checks, before anything is read: (aliases, tags)
    without duplicates."""
    names.resource_id(collection_id, "collection_id")
    if not artifact_version:
        raise InvalidArgument("artifact_version", "is required (a resource name or any path form)")
    alias_list = names.new_aliases(list(aliases), "aliases")
    tag_list = names.tags(list(tags), "tags")
    names.text(description, "description", DESCRIPTION_MAX)
    return alias_list, tag_list


def link_version(
    s: Session,
    p: Principal,
    org: str,
    registry_id: str,
    collection_id: str,
    *,
    artifact_version: str,
    aliases: Sequence[str],
    tags: Sequence[str],
    description: str,
) -> versions.VersionView:
    """Links (points at) an artifact version; idempotent for the same source version,
    whose existing link still gets the requested aliases. (`fast_link` does the common
    case in fewer statements and leaves everything else here.)"""
    alias_list, tag_list = validate_link(
        collection_id, artifact_version, aliases, tags, description
    )
    ref = CollectionRef(org, registry_id, collection_id)
    access = registry_access(s, p, org, registry_id, _perm("LinkArtifactVersion"))
    _require_protected_alias_right(access, alias_list, f"linking into {ref.name}")
    check_writable(s, access.registry)
    source = _resolve_source(s, p, artifact_version, "artifact_version")
    _require_accepted(access.registry, source.artifact_type, org)
    collection = _collection_for_link(s, p, access, ref, source.artifact_type)
    if collection.type != source.artifact_type:
        raise FailedPrecondition(
            f"{ref.name} holds artifacts of type {collection.type!r}; "
            f"{source.name} is of type {source.artifact_type!r}",
            reason="COLLECTION_TYPE_MISMATCH",
            metadata={"collection_type": collection.type, "artifact_type": source.artifact_type},
        )
    version = s.execute(
        select(m.CollectionVersion).where(
            m.CollectionVersion.collection_id == collection.id,
            m.CollectionVersion.artifact_version_id == source.id,
        )
    ).scalar_one_or_none()
    linked_now = version is None
    if version is None:
        t = now_us()
        version = m.CollectionVersion(
            collection_id=collection.id,
            version_index=collection.next_version_index,
            artifact_version_id=source.id,
            tags=tag_list,
            description=description,
            linked_by_id=p.user_id,
            create_time=t,
            update_time=t,
        )
        collection.next_version_index += 1
        collection.revision += 1
        collection.update_time = t
        s.add(version)
        s.flush()
        events.record_event(
            s,
            org_id=access.registry.org_id,
            type=events.VERSION_LINKED,
            actor=p,
            resource=ref.version_name(version.version_index),
            details={
                "collection": ref.name,
                "version_index": version.version_index,
                "artifact_version": source.name,
                "artifact_type": source.artifact_type,
                "aliases": alias_list,
            },
            registry_id=access.registry.id,
        )
    holders = {alias: _alias_holder(s, collection, alias) for alias in alias_list}
    if not linked_now:  # a new link holds only these (at most ALIASES_PER_VERSION)
        arriving = [
            a for a, held in holders.items() if not held or held[0].version_id != version.id
        ]
        _check_room(s, ref, version, len(arriving), "aliases")
    for alias in alias_list:
        _set_alias(s, p, access, ref, collection, version, alias, holders[alias])
    return versions.version_by_id(Sql.of(s), ref, version.id)


# --- aliases ------------------------------------------------------------------------


def _check_room(
    s: Session, ref: CollectionRef, version: m.CollectionVersion, arriving: int, field: str
) -> None:
    """INVALID_ARGUMENT (TOO_MANY_ALIASES) unless `arriving` more aliases fit on `version`."""
    if not arriving:
        return
    held = s.execute(
        select(func.count())
        .select_from(m.CollectionAlias)
        .where(m.CollectionAlias.version_id == version.id)
    ).scalar_one()
    names.check_alias_count(held + arriving, field, f"{ref.name}/versions/{version.version_index}")


def _alias_holder(
    s: Session, collection: m.Collection, alias: str
) -> tuple[m.CollectionAlias, int] | None:
    row = s.execute(
        select(m.CollectionAlias, m.CollectionVersion.version_index)
        .join(m.CollectionVersion, m.CollectionVersion.id == m.CollectionAlias.version_id)
        .where(m.CollectionAlias.collection_id == collection.id, m.CollectionAlias.alias == alias)
    ).first()
    return (row[0], row[1]) if row else None


def _set_alias(
    s: Session,
    p: Principal,
    access: RegistryAccess,
    ref: CollectionRef,
    collection: m.Collection,
    version: m.CollectionVersion,
    alias: str,
    holder: tuple[m.CollectionAlias, int] | None,
) -> bool:
    """Puts `alias` (now held as `holder`) on `version`, moving it off any other; the
    collection row is locked. Records ALIAS_ADDED; False when it was already there."""
    previous: int | None = None
    if holder is not None:
        row, previous = holder
        if row.version_id == version.id:
            return False
        row.version_id = version.id
        row.create_time = now_us()
    else:
        s.add(
            m.CollectionAlias(
                collection_id=collection.id,
                alias=alias,
                version_id=version.id,
                create_time=now_us(),
            )
        )
    s.flush()
    events.record_event(
        s,
        org_id=access.registry.org_id,
        type=events.ALIAS_ADDED,
        actor=p,
        resource=ref.version_name(version.version_index),
        details={
            "alias": alias,
            "collection": ref.name,
            "version_index": version.version_index,
            "previous_version_index": previous,
        },
        registry_id=access.registry.id,
    )
    return True


def validate_add_alias(alias: str, expected_version_index: int | None) -> None:
    """AddAlias's input checks, before anything is read."""
    names.new_alias(alias, "alias")
    if expected_version_index is not None and expected_version_index < -1:
        raise InvalidArgument("expected_version_index", "must be a version index, or -1 for absent")


def add_alias(
    s: Session,
    p: Principal,
    ref: CollectionRef,
    index: int,
    alias: str,
    expected_version_index: int | None,
) -> versions.VersionView:
    """Sets `alias` on version `index`. With `expected_version_index` it is a
    compare-and-set: ABORTED (ALIAS_CONFLICT) unless the alias is now on that index,
    or absent when -1."""
    validate_add_alias(alias, expected_version_index)
    access, collection = _load_collection(s, p, ref, _perm("AddAlias"), for_update=True)
    _require_protected_alias_right(access, [alias], f"setting alias {quote(alias)}")
    version = _load_version(s, ref, collection, index)
    holder = _alias_holder(s, collection, alias)
    current = holder[1] if holder else -1
    if expected_version_index is not None and expected_version_index != current:
        raise Aborted(
            f"alias {quote(alias)} of {ref.name} is {_where(current)}, "
            f"not {_where(expected_version_index)}; re-read and retry",
            reason="ALIAS_CONFLICT",
            metadata={"current_version_index": str(current)},
        )
    _check_room(s, ref, version, 0 if current == index else 1, "alias")
    _set_alias(s, p, access, ref, collection, version, alias, holder)
    return versions.version_by_id(Sql.of(s), ref, version.id)


def _where(index: int) -> str:
    return f"on v{index}" if index >= 0 else "absent"


def remove_alias(
    s: Session, p: Principal, ref: CollectionRef, index: int, alias: str
) -> versions.VersionView:
    names.existing_alias(alias, "alias")
    access, collection = _load_collection(s, p, ref, _perm("RemoveAlias"), for_update=True)
    _require_protected_alias_right(access, [alias], f"removing alias {quote(alias)}")
    version = _load_version(s, ref, collection, index)
    holder = _alias_holder(s, collection, alias)
    if holder is None or holder[0].version_id != version.id:
        raise NotFound(f"alias {quote(alias)} is not on {ref.name}/versions/{index}")
    s.execute(delete(m.CollectionAlias).where(m.CollectionAlias.id == holder[0].id))
    _alias_removed(s, p, access, ref, alias, index)
    return versions.version_by_id(Sql.of(s), ref, version.id)


def _alias_removed(
    s: Session, p: Principal, access: RegistryAccess, ref: CollectionRef, alias: str, index: int
) -> None:
    events.record_event(
        s,
        org_id=access.registry.org_id,
        type=events.ALIAS_REMOVED,
        actor=p,
        resource=ref.version_name(index),
        details={"alias": alias, "collection": ref.name, "version_index": index},
        registry_id=access.registry.id,
    )


def unlink_version(s: Session, p: Principal, ref: CollectionRef, index: int) -> None:
    """Removes the link (the artifact version stays). Its index is never reused; a
    version carrying a protected alias needs registry ADMIN."""
    access, collection = _load_collection(
        s, p, ref, _perm("UnlinkArtifactVersion"), for_update=True
    )
    version = _load_version(s, ref, collection, index)
    aliases = list(
        s.execute(
            select(m.CollectionAlias.alias)
            .where(m.CollectionAlias.version_id == version.id)
            .order_by(m.CollectionAlias.alias)
        ).scalars()
    )
    _require_protected_alias_right(access, aliases, f"unlinking {ref.name}/versions/{index}")
    artifact = versions.version_by_id(Sql.of(s), ref, version.id).artifact_version
    s.execute(delete(m.CollectionAlias).where(m.CollectionAlias.version_id == version.id))
    s.execute(delete(m.CollectionVersion).where(m.CollectionVersion.id == version.id))
    collection.revision += 1
    collection.update_time = now_us()
    # The aliases went with the version: one ALIAS_REMOVED each keeps alias history exact.
    for alias in aliases:
        _alias_removed(s, p, access, ref, alias, index)
    events.record_event(
        s,
        org_id=access.registry.org_id,
        type=events.VERSION_UNLINKED,
        actor=p,
        resource=ref.version_name(index),
        details={
            "collection": ref.name,
            "version_index": index,
            "artifact_version": artifact,
            "aliases": aliases,
        },
        registry_id=access.registry.id,
    )
