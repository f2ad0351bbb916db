"""Hot reads of collection versions and registry roles on precompiled Core statements.

GetCollectionVersion, ListCollectionVersions and GetEffectiveRole (the caller's own
role) are what dashboards and jobs poll. Like `fast_resolve`, each is answered by
statements built once per dialect (for a list, once per filter and order too), run
as driver SQL on a DB-API connection lent by `App.hot_read` (SQLite's
`Database.hot_connection`, PostgreSQL's `storage.hot_async`), without an ORM session:

- GetCollectionVersion: one statement (registry, collection, the caller's granted
  role, the version with its artifact version, linker, aliases and `latest`);
- ListCollectionVersions: one statement for the registry, collection and role, one
  for the page (the filter compiled by `storage.filter_sql`, keyset seek, aliases
  per row and `latest`); page tokens are `domain.pagination` tokens of the same
  query as `service.collections.list_versions`, so both paths accept each other's;
- GetEffectiveRole: one statement for the registry and the caller's granted role.

They only answer the successful case. Anything else (bad input, not found, not
allowed, another principal's role, a SQLite page that would hold the event loop too
long) returns None and the caller runs the general use case, which produces the exact
error. Both paths return the same response (tests/test_fast_reads.py checks it).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    and_,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select

from registry.v1 import collection_service_pb2 as pb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r

from ..domain import names, paths
from ..domain.errors import RegistryError
from ..domain.filters import parse_filter
from ..domain.pagination import decode_token, encode_token, page_size
from ..domain.roles import RegistryRole
from ..storage import models as m
from ..storage.filter_sql import FieldSpec, compile_filter
from ..storage.paging import SortKey, parse_order_by
from . import authz_table
from .access import combine_role, granted_role_columns
from .collections import CollectionRef, artifact_version_name, version_name, version_path
from .context import Principal
from .fast_sql import (
    Compiled,
    compile_statement,
    fetch,
    joined_aliases,
    json_value,
    split_aliases,
)
from .registries import registry_name

_org = m.Organization.__table__
_reg = m.Registry.__table__
_coll = m.Collection.__table__
_cv = m.CollectionVersion.__table__
_av = m.ArtifactVersion.__table__
_art = m.Artifact.__table__
_proj = m.Project.__table__
_team = m.Team.__table__
_ca = m.CollectionAlias.__table__
_linker = m.User.__table__.alias("linker")
_highest_cv = m.CollectionVersion.__table__.alias("highest_cv")
_ca_list = m.CollectionAlias.__table__.alias("cv_aliases")

# Parameters the statements take besides the filter's own (their names never clash
# with SQLAlchemy's anonymous `<name>_<n>` parameters).
_COLLECTION_ID = "hot_collection_id"
_LIMIT = "hot_limit"
_AFTER = "hot_after_{}"
_INT32_MAX = 2**31 - 1  # version_index is an INTEGER column

# A filtered page may scan a whole collection. On SQLite the hot connection is used on
# the event loop, so a page statement that has used this many seconds of the loop
# thread's CPU is interrupted and the general path (on a worker thread) answers
# instead; a page of 50 takes about 0.1 ms. CPU time, not wall time, so that a busy
# machine preempting the thread does not push ordinary pages off the hot path. The
# clock is read every `_SQLITE_PROGRESS_STEP` virtual machine instructions (a page of
# 50 runs about 3,000).
SQLITE_LOOP_BUDGET = 0.005
_SQLITE_PROGRESS_STEP = 1_000


def _min_role(service: str, rpc: str) -> RegistryRole:
    return authz_table.permission(service, rpc).min_role


GET_VERSION_ROLE = _min_role("CollectionService", "GetCollectionVersion")
LIST_VERSIONS_ROLE = _min_role("CollectionService", "ListCollectionVersions")
EFFECTIVE_ROLE_ROLE = _min_role("RegistryService", "GetEffectiveRole")


# --- statements -----------------------------------------------------------------------


def _registry_columns() -> tuple[Any, ...]:
    granted = granted_role_columns(_reg.c.id, bindparam("uid"))
    return (_reg.c.org_id, _reg.c.visibility, _reg.c.default_role, *granted)


def _registry_where() -> ColumnElement[bool]:
    return and_(_org.c.name == bindparam("org"), _reg.c.name == bindparam("registry"))


def _highest_index(collection_id: Any) -> Any:
    """The collection's highest version index: what `latest` points at."""
    return (
        select(func.max(_highest_cv.c.version_index))
        .where(_highest_cv.c.collection_id == collection_id)
        .scalar_subquery()
    )


def _version_columns(dialect: str) -> tuple[Any, ...]:
    """What a CollectionVersion proto shows, in the order `_VersionProtos.make` reads it."""
    return (
        _cv.c.id,
        _cv.c.version_index,
        _cv.c.tags,
        _cv.c.description,
        _cv.c.create_time,
        _cv.c.update_time,
        _linker.c.name,
        _av.c.version_index,
        _av.c.digest,
        _av.c.metadata,
        _art.c.name,
        _art.c.type,
        _proj.c.name,
        _team.c.name,
        joined_aliases(dialect, _ca_list, _cv.c.id),
    )


# Where `_version_columns` has the columns a page can be sorted by.
_KEY_POSITION = {"id": 0, "version_index": 1, "create_time": 4, "update_time": 5}


def _with_source(stmt: Select[Any]) -> Select[Any]:
    """Joins a select over `_cv` with the artifact version it links and its names."""
    return (
        stmt.join(_av, _av.c.id == _cv.c.artifact_version_id)
        .join(_art, _art.c.id == _av.c.artifact_id)
        .join(_proj, _proj.c.id == _art.c.project_id)
        .join(_team, _team.c.id == _proj.c.team_id)
        .outerjoin(_linker, _linker.c.id == _cv.c.linked_by_id)
    )


@cache
def _role_statement() -> Select[Any]:
    """GetEffectiveRole: the registry and the caller's granted role."""
    return (
        select(*_registry_columns())
        .select_from(_org.join(_reg, _reg.c.org_id == _org.c.id))
        .where(_registry_where())
    )


@cache
def _collection_statement() -> Select[Any]:
    """ListCollectionVersions' header: the registry, the caller's role, the collection."""
    return (
        select(*_registry_columns(), _coll.c.id)
        .select_from(
            _org.join(_reg, _reg.c.org_id == _org.c.id).join(
                _coll, _coll.c.registry_id == _reg.c.id
            )
        )
        .where(_registry_where(), _coll.c.name == bindparam("collection"))
    )


@cache
def _version_statement(dialect: str) -> Select[Any]:
    """GetCollectionVersion: registry, role, `latest` and the version, in one row."""
    stmt = select(
        *_registry_columns(), _highest_index(_coll.c.id), *_version_columns(dialect)
    ).select_from(
        _org.join(_reg, _reg.c.org_id == _org.c.id)
        .join(_coll, _coll.c.registry_id == _reg.c.id)
        .join(
            _cv,
            and_(_cv.c.collection_id == _coll.c.id, _cv.c.version_index == bindparam("index")),
        )
    )
    return _with_source(stmt).where(_registry_where(), _coll.c.name == bindparam("collection"))


# The same members, kinds and columns as `service.collections._version_filter`, with
# the collection as a parameter so that one compiled statement serves every collection.
def _alias_condition(value: str, op: str) -> ColumnElement[bool]:
    cond: ColumnElement[bool]
    if value == paths.LATEST:
        cond = _cv.c.version_index == _highest_index(bindparam(_COLLECTION_ID))
    else:
        # The collection is redundant (an alias row has its version's collection) but
        # lets PostgreSQL, which runs this as a hashed subplan, look the alias up by
        # (collection, alias) instead of reading that alias in every collection.
        cond = (
            select(_ca.c.id)
            .where(
                _ca.c.version_id == _cv.c.id,
                _ca.c.collection_id == bindparam(_COLLECTION_ID),
                _ca.c.alias == value,
            )
            .exists()
        )
    return ~cond if op == "!=" else cond


VERSION_FILTER: Mapping[str, FieldSpec] = {
    "alias": FieldSpec("alias", builder=_alias_condition),
    "tag": FieldSpec("tags", _cv.c.tags),
    "metadata": FieldSpec("json_map", _av.c.metadata),
    "version_index": FieldSpec("int", _cv.c.version_index),
    "description": FieldSpec("string", _cv.c.description),
    "create_time": FieldSpec("time", _cv.c.create_time),
    "update_time": FieldSpec("time", _cv.c.update_time),
}
VERSION_ORDER = {
    "version_index": _cv.c.version_index,
    "create_time": _cv.c.create_time,
    "update_time": _cv.c.update_time,
}


def _seek(keys: Sequence[SortKey]) -> ColumnElement[bool]:
    """Rows after the token's key (`storage.paging`'s seek, on parameters)."""
    after = [bindparam(_AFTER.format(i), type_=k.column.type) for i, k in enumerate(keys)]
    clauses = []
    for i, key in enumerate(keys):
        eqs = [keys[j].column == after[j] for j in range(i)]
        cmp = key.column < after[i] if key.descending else key.column > after[i]
        clauses.append(and_(*eqs, cmp))
    return or_(*clauses)


# --- compiled SQL ---------------------------------------------------------------------


@cache
def _compiled_role(dialect: Dialect) -> Compiled:
    return compile_statement(_role_statement(), dialect, ("uid", "org", "registry"))


@cache
def _compiled_collection(dialect: Dialect) -> Compiled:
    return compile_statement(
        _collection_statement(), dialect, ("uid", "org", "registry", "collection")
    )


@cache
def _compiled_version(dialect: Dialect) -> Compiled:
    return compile_statement(
        _version_statement(dialect.name),
        dialect,
        ("uid", "org", "registry", "collection", "index"),
    )


@dataclass(frozen=True)
class _PageQuery:
    compiled: Compiled
    key_columns: tuple[str, ...]  # column names of the sort key, tiebreak last


@lru_cache(maxsize=512)
def _page_query(dialect: Dialect, filter: str, order_by: str, after: bool) -> _PageQuery:
    """The page statement of one (filter, order_by), with or without a seek, compiled
    once; INVALID_ARGUMENT (not cached) for a bad filter or order."""
    keys = parse_order_by(order_by, VERSION_ORDER, "version_index", _cv.c.id)
    clause = compile_filter(parse_filter(filter, "filter"), VERSION_FILTER, dialect.name)
    stmt = _with_source(
        select(_highest_index(bindparam(_COLLECTION_ID)), *_version_columns(dialect.name))
    ).where(_cv.c.collection_id == bindparam(_COLLECTION_ID, type_=BigInteger))
    if clause is not None:
        stmt = stmt.where(clause)
    variables = [_COLLECTION_ID, _LIMIT]
    if after:
        stmt = stmt.where(_seek(keys))
        variables += [_AFTER.format(i) for i in range(len(keys))]
    stmt = stmt.order_by(
        *[k.column.desc() if k.descending else k.column.asc() for k in keys]
    ).limit(bindparam(_LIMIT, type_=Integer))
    return _PageQuery(
        compile_statement(stmt, dialect, variables), tuple(k.column.key for k in keys)
    )


def _fits(column: str, value: Any) -> bool:
    """Whether a token's key value can be bound to its (integer) sort column."""
    bits = 63 if isinstance(_cv.c[column].type, BigInteger) else 31
    return type(value) is int and -(2**bits) <= value < 2**bits


# --- results --------------------------------------------------------------------------


_REGISTRY_WIDTH = 5  # the columns of `_registry_columns`


def _role(p: Principal, header: Sequence[Any]) -> RegistryRole:
    """The caller's effective role, from the `_registry_columns` the statement returned."""
    return combine_role(p, *header[:_REGISTRY_WIDTH])


def _allowed(p: Principal, header: Sequence[Any], need: RegistryRole) -> RegistryRole | None:
    role = _role(p, header)
    return role if role != RegistryRole.NONE and role >= need else None


def _set_time(field: Any, micros: int) -> None:
    """Timestamp.FromMicroseconds, on the message's own field."""
    seconds, rest = divmod(micros, 1_000_000)
    field.seconds = seconds
    field.nanos = rest * 1000


class _VersionProtos:
    """`api.collections.version_proto` of rows of `_version_columns`, for one collection."""

    def __init__(self, ref: CollectionRef, highest: int | None, dialect: Dialect) -> None:
        # names and paths end in the version index: format them once, append the index
        self.name_prefix = version_name(ref.org, ref.registry, ref.collection, 0)[:-1]
        self.path_prefix = version_path(ref.org, ref.registry, ref.collection, 0)[:-1]
        self.highest = highest
        self.sort_aliases = dialect.name != "postgresql"

    def make(
        self, new: Callable[..., r.CollectionVersion], row: Sequence[Any]
    ) -> r.CollectionVersion:
        """The proto of `row`, created by `new`: the message class, or a repeated field's
        `add` (which builds the message in place instead of copying it in)."""
        (
            _id, index, tags, description, create_time, update_time, linker,
            av_index, digest, metadata, artifact, artifact_type, project, team, joined,
        ) = row  # fmt: skip
        aliases = split_aliases(joined, self.sort_aliases)
        if index == self.highest:
            aliases.insert(0, paths.LATEST)
        version = new(
            name=f"{self.name_prefix}{index}",
            version_index=index,
            artifact_version=artifact_version_name(team, project, artifact, av_index),
            aliases=aliases,
            tags=json_value(tags) or (),
            description=description,
            linked_by=names.user_name(linker) if linker else "",
            digest=digest,
            type=artifact_type,
            path=f"{self.path_prefix}{index}",
        )
        _set_time(version.create_time, create_time)
        _set_time(version.update_time, update_time)
        data = json_value(metadata)
        if data:
            version.metadata.update(data)
        else:
            version.metadata.SetInParent()  # present though empty, as `struct({})` makes it
        return version


# --- the reads ------------------------------------------------------------------------


def get_collection_version(
    conn: Any, dialect: Dialect, p: Principal, ref: CollectionRef, index: int
) -> r.CollectionVersion | None:
    """The version if the caller may view it, else None (see module doc)."""
    if index > _INT32_MAX:
        return None
    row = fetch(
        conn,
        dialect,
        _compiled_version(dialect),
        {
            "uid": p.user_id,
            "org": ref.org,
            "registry": ref.registry,
            "collection": ref.collection,
            "index": index,
        },
    )
    if row is None or _allowed(p, row, GET_VERSION_ROLE) is None:
        return None
    highest, version = row[_REGISTRY_WIDTH], row[_REGISTRY_WIDTH + 1 :]
    return _VersionProtos(ref, highest, dialect).make(r.CollectionVersion, version)


def list_collection_versions(
    conn: Any,
    dialect: Dialect,
    p: Principal,
    ref: CollectionRef,
    *,
    page_size_value: int,
    page_token: str,
    filter: str,
    order_by: str,
) -> pb.ListCollectionVersionsResponse | None:
    """One page as `service.collections.list_versions` returns it, or None."""
    try:
        size = page_size(page_size_value)
        query = _page_query(dialect, filter, order_by, bool(page_token))
        after = decode_token(
            page_token,
            ("collection-versions", ref.name, filter, order_by),
            len(query.key_columns),
        )
    except RegistryError:
        return None
    if after is not None and not all(map(_fits, query.key_columns, after)):
        return None  # a forged token: leave it to the general path
    header = fetch(
        conn,
        dialect,
        _compiled_collection(dialect),
        {"uid": p.user_id, "org": ref.org, "registry": ref.registry, "collection": ref.collection},
    )
    if header is None or _allowed(p, header, LIST_VERSIONS_ROLE) is None:
        return None
    values: dict[str, Any] = {_COLLECTION_ID: header[_REGISTRY_WIDTH], _LIMIT: size + 1}
    for i, value in enumerate(after or ()):
        values[_AFTER.format(i)] = value
    rows = _fetch_page(conn, dialect, query.compiled, values)
    if rows is None:
        return None
    next_token = ""
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1][1:]
        next_token = encode_token(
            tuple(last[_KEY_POSITION[name]] for name in query.key_columns),
            ("collection-versions", ref.name, filter, order_by),
        )
    response = pb.ListCollectionVersionsResponse(next_page_token=next_token)
    protos = _VersionProtos(ref, rows[0][0] if rows else None, dialect)
    add = response.collection_versions.add
    for row in rows:
        protos.make(add, row[1:])
    return response


def _fetch_page(
    conn: Any, dialect: Dialect, compiled: Compiled, values: Mapping[str, Any]
) -> list[Any] | None:
    """The page's rows; None when the SQLite statement used up its time on the event
    loop (`SQLITE_LOOP_BUDGET`)."""
    if dialect.name != "sqlite":
        return list(fetch(conn, dialect, compiled, values, many=True))
    deadline = time.thread_time() + SQLITE_LOOP_BUDGET

    def progress() -> int:
        return 1 if time.thread_time() > deadline else 0

    conn.set_progress_handler(progress, _SQLITE_PROGRESS_STEP)
    try:
        return list(fetch(conn, dialect, compiled, values, many=True))
    except sqlite3.OperationalError as e:
        if "interrupted" in str(e):
            return None
        raise
    finally:
        conn.set_progress_handler(None, 0)


def get_effective_role(
    conn: Any, dialect: Dialect, p: Principal, org: str, registry_id: str, principal: str
) -> rpb.GetEffectiveRoleResponse | None:
    """The caller's own role in the registry, or None (another principal, or no access)."""
    if principal and principal != p.name:
        return None
    header = fetch(
        conn,
        dialect,
        _compiled_role(dialect),
        {"uid": p.user_id, "org": org, "registry": registry_id},
    )
    if header is None:
        return None
    role = _allowed(p, header, EFFECTIVE_ROLE_ROLE)
    if role is None:
        return None
    return rpb.GetEffectiveRoleResponse(
        registry=registry_name(org, registry_id),
        principal=p.name,
        role=r.RegistryRole.Name(int(role)),
    )


__all__ = [
    "SQLITE_LOOP_BUDGET",
    "VERSION_FILTER",
    "VERSION_ORDER",
    "get_collection_version",
    "get_effective_role",
    "list_collection_versions",
]
