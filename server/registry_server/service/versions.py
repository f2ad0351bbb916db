"""Reading collection versions: GetCollectionVersion, ListCollectionVersions, and the
version every write of a version answers with.

Each read is the statements of `storage.queries.versions` run on the connection it is
given (`storage.sql.Sql`): the event loop's, a worker thread's session, the write
child's. One statement finds the registry, the caller's granted roles, the collection
and the version together, outer-joined, so the same row says which part is missing:
NOT_FOUND for the registry, the collection or the version, PERMISSION_DENIED for a
visible registry the caller may not read. `latest` is not stored: it is the highest
version index of the collection.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..domain import names, paths
from ..domain.errors import InvalidArgument, NotFound
from ..domain.names import CollectionRef
from ..domain.pagination import ListParams, decode_token, encode_token, page_size
from ..domain.roles import Permission
from ..storage.db import now_us
from ..storage.queries import registries as qr
from ..storage.queries import versions as q
from ..storage.sql import Sql, json_value, split_aliases
from . import authz_table
from .access import check_registry_role, header_of, registry_header
from .context import Principal
from .rows import one_or_not_found

SERVICE = "CollectionService"
_INT32_MAX = 2**31 - 1  # version_index is an INTEGER column


def perm(rpc: str) -> Permission:
    return authz_table.permission(SERVICE, rpc)


@dataclass(frozen=True, slots=True)
class VersionView:
    """A collection version with what its proto shows of the artifact version."""

    id: int
    collection: CollectionRef
    version_index: int
    artifact_version_id: int
    artifact_version: str  # teams/{t}/projects/{p}/artifacts/{a}/versions/{n}
    aliases: list[str]  # `latest` first when it is the newest
    tags: list[str]
    description: str
    linked_by: str  # user id, "" when unknown
    linked_by_id: int | None
    create_time: int
    update_time: int
    metadata: dict[str, Any]
    digest: str
    artifact_type: str

    @property
    def name(self) -> str:
        return self.collection.version_name(self.version_index)

    @property
    def path(self) -> str:
        ref = self.collection
        return paths.collection_version_path(
            ref.org, ref.registry, ref.collection, self.version_index
        )


def view_of(
    ref: CollectionRef, highest: int | None, row: Sequence[Any], *, sort_aliases: bool
) -> VersionView:
    """The view of a row of `version_columns()` (`sort_aliases`: not sorted by the
    database, i.e. SQLite)."""
    (
        pk, index, av_pk, tags, description, create_time, update_time, linker_pk, linker,
        av_index, digest, metadata, artifact, artifact_type, project, team, joined,
    ) = row  # fmt: skip
    return link_view(
        ref,
        highest,
        (pk, index, tags, description, linker_pk, create_time, update_time, linker, joined),
        (av_pk, names.artifact_version_name(team, project, artifact, av_index)),
        (json_value(metadata) or {}, digest, artifact_type),
        sort_aliases=sort_aliases,
    )


def link_view(
    ref: CollectionRef,
    highest: int | None,
    link: Sequence[Any],
    artifact_version: tuple[int, str],
    content: tuple[dict[str, Any], str, str],
    *,
    sort_aliases: bool,
) -> VersionView:
    """The view of a collection version from its `link` columns (id, index, tags,
    description, linker id, create and update time, linker, joined aliases), its
    artifact version's (id, name) and that version's (metadata, digest, type)."""
    pk, index, tags, description, linker_pk, create_time, update_time, linker, joined = link
    aliases = split_aliases(joined, sort_aliases)
    if index == highest:
        aliases.insert(0, paths.LATEST)  # `latest` first, as CollectionService presents it
    metadata, digest, artifact_type = content
    return VersionView(
        id=pk,
        collection=ref,
        version_index=index,
        artifact_version_id=artifact_version[0],
        artifact_version=artifact_version[1],
        aliases=aliases,
        tags=json_value(tags) or [],
        description=description,
        linked_by=linker or "",
        linked_by_id=linker_pk,
        create_time=create_time,
        update_time=update_time,
        metadata=metadata,
        digest=digest,
        artifact_type=artifact_type,
    )


def aliases_by_version(
    s: Session, alias_model: Any, version_ids: Sequence[int]
) -> dict[int, tuple[str, ...]]:
    """The aliases of many versions in one query (`alias_model`: an alias table of
    artifact or registered-model versions), in code point order as everywhere."""
    found: dict[int, list[str]] = defaultdict(list)
    if version_ids:
        for version_id, alias in s.execute(
            select(alias_model.version_id, alias_model.alias).where(
                alias_model.version_id.in_(list(version_ids))
            )
        ).all():
            found[version_id].append(alias)
    return {vid: tuple(sorted(found.get(vid, ()))) for vid in version_ids}


def move_aliases(
    s: Session,
    alias_table: Any,
    version_table: Any,
    owner: str,
    owner_id: int,
    version_id: int,
    aliases: Sequence[str],
    count: tuple[str, str] | None = None,
) -> dict[str, int | None]:
    """Points each of `aliases` at version `version_id` of the owner whose aliases
    `alias_table` holds (its column `owner` is `owner_id`; the owner's row locked).
    Returns alias -> index of the version it was on before (None: new), for those that
    moved. `count`: (field, version name) when the version may hold only so many
    (INVALID_ARGUMENT naming field). Alias rows with a `create_time` record the move."""
    wanted = list(aliases)
    if not wanted:
        return {}
    current = {
        row[0].alias: row
        for row in s.execute(
            select(alias_table, version_table.version_index)
            .join(version_table, version_table.id == alias_table.version_id)
            .where(getattr(alias_table, owner) == owner_id, alias_table.alias.in_(wanted))
            .execution_options(populate_existing=True)
        ).all()
    }
    arriving = [a for a in wanted if a not in current or current[a][0].version_id != version_id]
    if count is not None and arriving:
        held = s.execute(
            select(func.count())
            .select_from(alias_table)
            .where(alias_table.version_id == version_id)
        ).scalar_one()
        names.check_alias_count(held + len(arriving), *count)
    stamp = {"create_time": now_us()} if hasattr(alias_table, "create_time") else {}
    moved: dict[str, int | None] = {}
    for alias in wanted:
        row = current.get(alias)
        if row is None:
            s.add(alias_table(**{owner: owner_id}, alias=alias, version_id=version_id, **stamp))
            moved[alias] = None
        elif row[0].version_id != version_id:
            row[0].version_id = version_id
            for key, value in stamp.items():
                setattr(row[0], key, value)
            moved[alias] = row[1]
    s.flush()
    return moved


def moved_from(moved: dict[str, int | None]) -> dict[str, int]:
    """The aliases of a `move_aliases` that were on another version, and its index."""
    return {a: i for a, i in moved.items() if i is not None}


def version_row(
    s: Session, owner: Any, owner_id: int, index: int, label: str, *, fresh: bool = False
) -> Any:
    """Version `index` among those `owner` (the owner column of a version table: an
    artifact's, a registered model's, a collection's) holds for `owner_id`; NOT_FOUND
    naming `label` when there is none. `fresh`: reloaded over what the session holds."""
    table = owner.class_
    stmt = select(table).where(owner == owner_id, table.version_index == index)
    if fresh:
        stmt = stmt.execution_options(populate_existing=True)
    return one_or_not_found(s, stmt, label)


def get_version(
    sql: Sql, p: Principal, ref: CollectionRef, index: int, rpc: str = "GetCollectionVersion"
) -> VersionView:
    """Version `index` of the collection, if the caller may read it there."""
    row = sql.one(
        q.version,
        {
            "uid": p.user_id,
            "org": ref.org,
            "registry": ref.registry,
            "collection": ref.collection,
            "index": index if index <= _INT32_MAX else -1,
        },
    )
    registry = names.registry_name(ref.org, ref.registry)
    if row is None:
        raise NotFound(f"{registry} not found")
    header = header_of(p, registry, row)
    check_registry_role(header.role, perm(rpc), registry)
    if header.collection_id is None:
        raise NotFound(f"{ref.name} not found")
    start = qr.REGISTRY_WIDTH + 3
    version = row[start + 1 :]
    if version[0] is None:
        raise NotFound(f"{ref.version_name(index)} not found")
    return view_of(ref, row[start], version, sort_aliases=not sql.postgres)


def version_at(sql: Sql, ref: CollectionRef, collection_pk: int, index: int) -> VersionView | None:
    """Version `index` of the collection with row id `collection_pk` (the caller checked
    access); None when there is none."""
    if index > _INT32_MAX:
        return None
    row = sql.one(q.version_in_collection, {"cid": collection_pk, "index": index})
    return None if row is None else view_of(ref, row[0], row[1:], sort_aliases=not sql.postgres)


def version_by_id(sql: Sql, ref: CollectionRef, version_pk: int) -> VersionView:
    """The version with row id `version_pk`, as a write answers with it (the caller
    checked access)."""
    row = sql.one(q.version_by_id, {"id": version_pk})
    return view_of(ref, row[0], row[1:], sort_aliases=not sql.postgres)


@dataclass(frozen=True)
class PageRequest:
    """A list request's page size, statement and position, checked before anything is
    read (INVALID_ARGUMENT: page size, filter, order, token)."""

    size: int
    compiled: Any
    after: tuple[Any, ...] | None
    key_columns: tuple[str, ...]
    query_id: tuple[Any, ...]  # what page tokens are bound to


def page_request(sql: Sql, ask: ListParams, query_id: tuple[Any, ...]) -> PageRequest:
    size = page_size(ask.page_size)
    keys = q.order_keys(ask.order_by)
    compiled = q.page.compiled(sql.dialect, (ask.filter, ask.order_by, bool(ask.page_token)))
    after = decode_token(ask.page_token, query_id, len(keys))
    columns = tuple(k.column.key for k in keys)
    if after is not None and not all(map(q.key_fits, columns, after)):
        raise InvalidArgument("page_token", "is not a page token returned by this method")
    return PageRequest(size, compiled, after, columns, query_id)


def list_versions(
    sql: Sql, p: Principal, ref: CollectionRef, ask: ListParams
) -> tuple[list[VersionView], str]:
    """One page, and the token of the next ("" on the last)."""
    request = page_request(sql, ask, ("collection-versions", ref.name, ask.filter, ask.order_by))
    header = registry_header(
        sql, p, ref.org, ref.registry, perm("ListCollectionVersions"), ref.collection
    )
    if header.collection_id is None:
        raise NotFound(f"{ref.name} not found")
    return versions_page(sql, ref, header.collection_id, request)


def versions_page(
    sql: Sql, ref: CollectionRef, collection_pk: int, request: PageRequest
) -> tuple[list[VersionView], str]:
    """A page of the collection's versions (the caller checked access)."""
    values: dict[str, Any] = {q.COLLECTION_ID: collection_pk, q.LIMIT: request.size + 1}
    for i, value in enumerate(request.after or ()):
        values[q.AFTER.format(i)] = value
    rows = sql.scan(request.compiled, values)
    next_token = ""
    if len(rows) > request.size:
        rows = rows[: request.size]
        last = rows[-1][1:]
        next_token = encode_token(
            tuple(last[q.KEY_POSITION[name]] for name in request.key_columns), request.query_id
        )
    sort = not sql.postgres
    return [view_of(ref, row[0], row[1:], sort_aliases=sort) for row in rows], next_token
