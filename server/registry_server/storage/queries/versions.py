"""Collection versions: one version with its registry, collection and the caller's
granted roles (outer joins tell which part is missing), a page of a collection's
versions for any filter and order, and where aliases are now."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import BigInteger, ColumnElement, Integer, and_, bindparam, func, select
from sqlalchemy.sql import Select

from ...domain import paths
from ...domain.filters import parse_filter
from ..filter_sql import FieldSpec, compile_filter
from ..paging import SortKey, parse_order_by, seek
from ..sql import Query, joined_aliases, query
from .registries import by_name, collection_columns, named_collection, registry_columns
from .tables import (
    artifact,
    artifact_version,
    collection,
    collection_alias,
    collection_version,
    cv_aliases,
    highest_cv,
    holder_cv,
    linker,
    project,
    team,
)

# Parameters the page statements take besides the filter's own (their names never clash
# with SQLAlchemy's anonymous `<name>_<n>` parameters).
COLLECTION_ID = "q_collection_id"
LIMIT = "q_limit"
AFTER = "q_after_{}"


def highest_index(collection_id: Any) -> Any:
    """The collection's highest version index: what `latest` points at."""
    return (
        select(func.max(highest_cv.c.version_index))
        .where(highest_cv.c.collection_id == collection_id)
        .scalar_subquery()
    )


def version_columns(dialect: str) -> tuple[Any, ...]:
    """What a collection version shows (`service.versions.VersionView`), in its order."""
    cv = collection_version.c
    return (
        cv.id,
        cv.version_index,
        cv.artifact_version_id,
        cv.tags,
        cv.description,
        cv.create_time,
        cv.update_time,
        cv.linked_by_id,
        linker.c.name,
        artifact_version.c.version_index,
        artifact_version.c.digest,
        artifact_version.c.metadata,
        artifact.c.name,
        artifact.c.type,
        project.c.name,
        team.c.name,
        joined_aliases(dialect, cv_aliases, cv.id),
    )


# Where `version_columns` has the columns a page can be sorted by.
KEY_POSITION = {"id": 0, "version_index": 1, "create_time": 5, "update_time": 6}


def with_source(joined: Any, *, outer: bool = False) -> Any:
    """`joined` (which has `collection_versions`) joined with the artifact version each
    version links and its names, and the linker."""
    return (
        joined.join(
            artifact_version,
            artifact_version.c.id == collection_version.c.artifact_version_id,
            isouter=outer,
        )
        .join(artifact, artifact.c.id == artifact_version.c.artifact_id, isouter=outer)
        .join(project, project.c.id == artifact.c.project_id, isouter=outer)
        .join(team, team.c.id == project.c.team_id, isouter=outer)
        .outerjoin(linker, linker.c.id == collection_version.c.linked_by_id)
    )


def with_version_at(joined: Any) -> Any:
    """`joined` (which has the collection) outer-joined to its version `index`."""
    return joined.outerjoin(
        collection_version,
        and_(
            collection_version.c.collection_id == collection.c.id,
            collection_version.c.version_index == bindparam("index"),
        ),
    )


@query
def version(dialect: str) -> Select[Any]:
    """Registry, granted roles, collection, `latest` and version `index`, in one row;
    NULL collection or version columns when either is missing (no row: no registry)."""
    return (
        select(
            *registry_columns(),
            *collection_columns(),
            highest_index(collection.c.id),
            *version_columns(dialect),
        )
        .select_from(with_source(with_version_at(named_collection()), outer=True))
        .where(by_name())
    )


def _with_latest(dialect: str, latest_of: Any) -> Select[Any]:
    """Collection versions with the highest index of collection `latest_of`."""
    return select(highest_index(latest_of), *version_columns(dialect)).select_from(
        with_source(collection_version)
    )


@query
def version_by_id(dialect: str) -> Select[Any]:
    """A version by its row id, with `latest` (the caller checked access)."""
    cv = collection_version.c
    return _with_latest(dialect, cv.collection_id).where(cv.id == bindparam("id"))


@query
def version_in_collection(dialect: str) -> Select[Any]:
    """Version `index` of collection `cid`, with `latest` (the caller checked access)."""
    cv = collection_version.c
    return _with_latest(dialect, cv.collection_id).where(
        cv.collection_id == bindparam("cid"), cv.version_index == bindparam("index")
    )


# The same members, kinds and columns for every collection, with the collection as a
# parameter so that one compiled statement serves them all.
def _alias_condition(value: str, op: str) -> ColumnElement[bool]:
    cond: ColumnElement[bool]
    if value == paths.LATEST:
        cond = collection_version.c.version_index == highest_index(bindparam(COLLECTION_ID))
    else:
        # The collection is redundant (an alias row has its version's collection) but
        # lets PostgreSQL, which runs this as a hashed subplan, look the alias up by
        # (collection, alias) instead of reading that alias in every collection.
        cond = (
            select(collection_alias.c.id)
            .where(
                collection_alias.c.version_id == collection_version.c.id,
                collection_alias.c.collection_id == bindparam(COLLECTION_ID),
                collection_alias.c.alias == value,
            )
            .exists()
        )
    return ~cond if op == "!=" else cond


VERSION_FILTER: Mapping[str, FieldSpec] = {
    "alias": FieldSpec("alias", builder=_alias_condition),
    "tag": FieldSpec("tags", collection_version.c.tags),
    "metadata": FieldSpec("json_map", artifact_version.c.metadata),
    "version_index": FieldSpec("int", collection_version.c.version_index),
    "description": FieldSpec("string", collection_version.c.description),
    "create_time": FieldSpec("time", collection_version.c.create_time),
    "update_time": FieldSpec("time", collection_version.c.update_time),
}
VERSION_ORDER = {
    "version_index": collection_version.c.version_index,
    "create_time": collection_version.c.create_time,
    "update_time": collection_version.c.update_time,
}


def order_keys(order_by: str) -> list[SortKey]:
    """The page's sort keys (INVALID_ARGUMENT for a bad order), id last."""
    return parse_order_by(order_by, VERSION_ORDER, "version_index", collection_version.c.id)


def _seek(keys: Sequence[SortKey]) -> ColumnElement[bool]:
    """Rows after the token's key (as `storage.paging.seek`, on bind parameters)."""
    return seek(keys, [bindparam(AFTER.format(i), type_=k.column.type) for i, k in enumerate(keys)])


def _page(dialect: str, filter: str, order_by: str, after: bool) -> Select[Any]:
    keys = order_keys(order_by)
    clause = compile_filter(parse_filter(filter, "filter"), VERSION_FILTER, dialect)
    stmt = _with_latest(dialect, bindparam(COLLECTION_ID)).where(
        collection_version.c.collection_id == bindparam(COLLECTION_ID, type_=BigInteger)
    )
    if clause is not None:
        stmt = stmt.where(clause)
    if after:
        stmt = stmt.where(_seek(keys))
    return stmt.order_by(
        *[k.column.desc() if k.descending else k.column.asc() for k in keys]
    ).limit(bindparam(LIMIT, type_=Integer))


# One statement per (filter, order, seek or not); parsed and compiled on first use
# (INVALID_ARGUMENT, not compiled, for a bad filter or order).
page = Query(_page)


def key_fits(column: str, value: Any) -> bool:
    """Whether a token's key value can be bound to its (integer) sort column."""
    bits = 63 if isinstance(collection_version.c[column].type, BigInteger) else 31
    return type(value) is int and -(2**bits) <= value < 2**bits


@query
def alias_holders(dialect: str, count: int) -> Select[Any]:
    """Where each of `count` aliases (`a0`, `a1`, ...) is now in collection `cid`: (alias,
    alias row id, version row id, version index); absent ones give no row."""
    return (
        select(
            collection_alias.c.alias,
            collection_alias.c.id,
            holder_cv.c.id,
            holder_cv.c.version_index,
        )
        .join(holder_cv, holder_cv.c.id == collection_alias.c.version_id)
        .where(
            collection_alias.c.collection_id == bindparam("cid"),
            collection_alias.c.alias.in_([bindparam(f"a{i}") for i in range(count)]),
        )
    )
