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
from typing import Any, cast

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from ..domain import names
from ..domain.errors import AlreadyExists, FailedPrecondition, NotFound, quote
from ..domain.names import CollectionRef
from ..domain.pagination import ListParams
from ..domain.roles import Permission
from ..storage import models as m
from ..storage.db import add_created, revised
from ..storage.filter_sql import FieldSpec, filter_of
from ..storage.paging import fetch_page, parse_order_by
from ..storage.sql import Sql
from . import events, versions
from .access import RegistryAccess, registry_access, require_protected_alias_right
from .context import Principal
from .organizations import check_etag
from .registries import accepts_type
from .registry_freeze import check_writable
from .rows import one_or_not_found
from .versions import perm as _perm  # CollectionService's permissions

DESCRIPTION_MAX = 64 * 1024


def _require_protected_alias_right(
    access: RegistryAccess, aliases: Sequence[str], what: str
) -> None:
    registry = access.registry
    require_protected_alias_right(
        access.role, registry.protected_aliases or (), aliases, what, registry.name
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
    return access, one_or_not_found(s, stmt, ref.name)


def _version_row(
    s: Session, ref: CollectionRef, collection: m.Collection, index: int
) -> m.CollectionVersion:
    label = ref.version_name(index)
    row: m.CollectionVersion = versions.version_row(
        s, m.CollectionVersion.collection_id, collection.id, index, label
    )
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
    collection = m.Collection(
        registry_id=access.registry.id,
        name=collection_id,
        type=artifact_type,
        description=description,
        tags=tag_list,
        created_by_id=p.user_id,
    )
    add_created(s, collection)
    events.scoped_event(
        s,
        events.COLLECTION_CREATED,
        p,
        ref.name,
        {"type": artifact_type, "tags": tag_list},
        registry=access.registry,
    )
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
    filter: ColumnElement[bool] | None
    page_size: int
    page_token: str
    query: tuple[Any, ...]  # what page tokens are bound to


def collection_listing(s: Session, ask: ListParams, query: tuple[Any, ...]) -> Listing:
    keys = parse_order_by(ask.order_by, COLLECTION_ORDER, "name", m.Collection.id)
    clause = filter_of(s, ask.filter, COLLECTION_FILTER)
    return Listing(keys, clause, ask.page_size, ask.page_token, query)


def collections_page(
    s: Session, where: ColumnElement[bool], listing: Listing
) -> tuple[list[CollectionView], str]:
    """A page of the collections matching `where` (the caller checked access)."""
    stmt = _collection_select().where(where)
    if listing.filter is not None:
        stmt = stmt.where(listing.filter)
    page = fetch_page(
        s, stmt, listing.keys, size=listing.page_size, token=listing.page_token, query=listing.query
    )
    return [CollectionView(r[0], r[1], r[2]) for r in page.rows], page.next_page_token


def list_collections(
    s: Session, p: Principal, org: str, registry_id: str, ask: ListParams
) -> tuple[list[CollectionView], str]:
    listing = collection_listing(
        s, ask, ("collections", org, registry_id, ask.filter, ask.order_by)
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
    tag_list = _checked_update(fields, description, tags, "collection")
    access, collection = _load_collection(s, p, ref, _perm("UpdateCollection"), for_update=True)
    check_etag(etag, collection.revision, "collection.etag")
    details: dict[str, Any] = {"fields": sorted(fields)}
    _revise(s, p, access, collection, ref.name, fields, details, description, tag_list)
    return collection_view(s, collection)


def _checked_update(
    fields: set[str], description: str, tags: Sequence[str], kind: str
) -> list[str]:
    """Checks the masked fields of an update of a `kind` (its proto field); the tags."""
    if "description" in fields:
        names.text(description, f"{kind}.description", DESCRIPTION_MAX)
    return names.tags(list(tags), f"{kind}.tags") if "tags" in fields else []


def _revise(
    s: Session,
    p: Principal,
    access: RegistryAccess,
    row: m.Collection | m.CollectionVersion,
    name: str,
    fields: set[str],
    details: dict[str, Any],
    description: str,
    tags: list[str],
) -> None:
    """Sets the masked fields of a collection or version; one event: TAGS_CHANGED when the
    tags change, COLLECTION_UPDATED otherwise."""
    if "tags" in fields:
        details["previous_tags"] = list(row.tags or [])
        details["tags"] = tags
    revised(row, fields, description=description, tags=tags)
    s.flush()
    kind = events.TAGS_CHANGED if "tags" in fields else events.COLLECTION_UPDATED
    events.scoped_event(s, kind, p, name, details, registry=access.registry)


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
    events.scoped_event(
        s,
        events.COLLECTION_DELETED,
        p,
        ref.name,
        {"version_count": count, "aliases": aliases},
        registry=access.registry,
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
    tag_list = _checked_update(fields, description, tags, "collection_version")
    access, collection = _load_collection(
        s, p, ref, _perm("UpdateCollectionVersion"), for_update=True
    )
    version = _version_row(s, ref, collection, index)
    details: dict[str, Any] = {
        "fields": sorted(fields),
        "collection": ref.name,
        "version_index": index,
    }
    _revise(s, p, access, version, ref.version_name(index), fields, details, description, tag_list)
    return versions.version_by_id(Sql.of(s), ref, version.id)


# --- aliases ------------------------------------------------------------------------


def remove_alias(
    s: Session, p: Principal, ref: CollectionRef, index: int, alias: str
) -> versions.VersionView:
    names.existing_alias(alias, "alias")
    access, collection = _load_collection(s, p, ref, _perm("RemoveAlias"), for_update=True)
    _require_protected_alias_right(access, [alias], f"removing alias {quote(alias)}")
    version = _version_row(s, ref, collection, index)
    removed = s.execute(
        delete(m.CollectionAlias).where(
            m.CollectionAlias.collection_id == collection.id,
            m.CollectionAlias.alias == alias,
            m.CollectionAlias.version_id == version.id,
        )
    )
    if not cast(CursorResult[Any], removed).rowcount:
        raise NotFound(f"alias {quote(alias)} is not on {ref.name}/versions/{index}")
    _alias_removed(s, p, access, ref, alias, index)
    return versions.version_by_id(Sql.of(s), ref, version.id)


def _alias_removed(
    s: Session, p: Principal, access: RegistryAccess, ref: CollectionRef, alias: str, index: int
) -> None:
    events.scoped_event(
        s,
        events.ALIAS_REMOVED,
        p,
        ref.version_name(index),
        {"alias": alias, "collection": ref.name, "version_index": index},
        registry=access.registry,
    )


def unlink_version(s: Session, p: Principal, ref: CollectionRef, index: int) -> None:
    """Removes the link (the artifact version stays). Its index is never reused; a
    version carrying a protected alias needs registry ADMIN."""
    access, collection = _load_collection(
        s, p, ref, _perm("UnlinkArtifactVersion"), for_update=True
    )
    version = _version_row(s, ref, collection, index)
    aliases = list(versions.aliases_by_version(s, m.CollectionAlias, [version.id])[version.id])
    _require_protected_alias_right(access, aliases, f"unlinking {ref.name}/versions/{index}")
    artifact = versions.version_by_id(Sql.of(s), ref, version.id).artifact_version
    s.execute(delete(m.CollectionAlias).where(m.CollectionAlias.version_id == version.id))
    s.execute(delete(m.CollectionVersion).where(m.CollectionVersion.id == version.id))
    revised(collection)
    # The aliases went with the version: one ALIAS_REMOVED each keeps alias history exact.
    for alias in aliases:
        _alias_removed(s, p, access, ref, alias, index)
    events.scoped_event(
        s,
        events.VERSION_UNLINKED,
        p,
        ref.version_name(index),
        {
            "collection": ref.name,
            "version_index": index,
            "artifact_version": artifact,
            "aliases": aliases,
        },
        registry=access.registry,
    )
