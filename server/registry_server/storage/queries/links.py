"""LinkArtifactVersion and AddAlias: the row each write checks, and its writes.

`link_target(form)` reads, in one row, the registry with the caller's granted roles,
the collection (on PostgreSQL locked by the same statement, see `saw_locked_row`),
the source artifact version by name (`form` "index" or "alias") or by id ("id"), the
caller's role in the source's team, and whether it is linked there already. The
source is outer-joined: NULL source columns mean no such artifact version. No row
means no such registry or collection (`registries.collection_header` then tells
which).

`alias_target()` reads, for AddAlias, the registry, the collection (locked before by
`lock_collection` on PostgreSQL), version `index` with what its reply shows, and where
the alias is now.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Update, and_, bindparam, func, insert, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql import ClauseElement, Select

from ..sql import query
from .registries import by_name, named_collection, registry_columns
from .resolve import caller_team_role, named_artifact_version
from .tables import (
    artifact,
    artifact_version,
    collection,
    collection_alias,
    collection_version,
    holder_cv,
    project,
    team,
)
from .versions import highest_index, version_columns, with_source, with_version_at

_ONE: Any = literal_column("1")  # inline: compiled SQL takes only the real parameters


@query
def lock_collection(dialect: str) -> Select[Any]:
    """PostgreSQL: the collection's row lock, taken by AddAlias before it reads. (A
    statement that waited for a row lock sees that row as committed meanwhile, but the
    rows it joined as they were when it started: the reads come after, in a statement
    of their own. AddAlias moves aliases under the lock without updating the
    collection, which `saw_locked_row` could not tell.) SQLite serializes its
    writers."""
    return (
        select(collection.c.id)
        .select_from(named_collection(outer=False))
        .where(by_name())
        .with_for_update(of=collection)
    )


@query
def link_target(dialect: str, form: str) -> Select[Any]:
    joined = named_collection(outer=False)
    if form == "id":
        joined = (
            joined.outerjoin(artifact_version, artifact_version.c.id == bindparam("av_id"))
            .outerjoin(artifact, artifact.c.id == artifact_version.c.artifact_id)
            .outerjoin(project, project.c.id == artifact.c.project_id)
            .outerjoin(team, team.c.id == project.c.team_id)
        )
    else:
        joined = joined.outerjoin(team, team.c.name == bindparam("team"))
        joined = named_artifact_version(joined, team, form, outer=True)
    linked = (
        select(collection_version.c.id)
        .where(
            collection_version.c.collection_id == collection.c.id,
            collection_version.c.artifact_version_id == artifact_version.c.id,
        )
        .scalar_subquery()
    )
    stmt = (
        select(
            *registry_columns(),
            collection.c.id,
            collection.c.type,
            collection.c.next_version_index,
            artifact_version.c.id,
            artifact_version.c.version_index,
            artifact_version.c.digest,
            artifact_version.c.metadata,
            artifact_version.c.delete_time,
            artifact.c.type,
            artifact.c.name,
            project.c.name,
            team.c.name,
            team.c.id,
            team.c.org_id,
            caller_team_role(team.c.id),
            linked,
        )
        .select_from(joined)
        .where(by_name())
    )
    if dialect == "postgresql":
        return stmt.add_columns(saw_locked_row()).with_for_update(of=collection)
    return stmt


def saw_locked_row() -> Any:
    """PostgreSQL: whether the collection row that the statement locked (FOR UPDATE) is
    the version its snapshot holds. A statement that waited for the lock of a
    transaction that updated the row (every link does, and every other change of the
    collection's versions) goes on with the row as that transaction left it, but with
    the rows it joined as they were when it began (without that transaction's link,
    say): then false, and the caller reads again, under the lock."""
    seen = collection.alias("seen")
    snapshot_version: Select[Any] = select(literal_column("seen.xmin")).where(
        seen.c.id == collection.c.id
    )
    return (literal_column("collections.xmin") == snapshot_version.scalar_subquery()).label(
        "saw_locked_row"
    )


@query
def alias_target(dialect: str) -> Select[Any]:
    joined = with_source(with_version_at(named_collection(outer=False)), outer=True).outerjoin(
        collection_alias,
        and_(
            collection_alias.c.collection_id == collection.c.id,
            collection_alias.c.alias == bindparam("alias"),
        ),
    )
    return (
        select(
            *registry_columns(),
            collection.c.id,
            collection_alias.c.id,
            holder_cv.c.version_index,
            highest_index(collection.c.id),
            *version_columns(dialect),
        )
        .select_from(joined.outerjoin(holder_cv, holder_cv.c.id == collection_alias.c.version_id))
        .where(by_name())
    )


@query
def alias_count(dialect: str) -> Select[Any]:
    return select(func.count()).where(collection_alias.c.version_id == bindparam("vid"))


@query
def insert_collection(dialect: str) -> ClauseElement:
    """A new collection; a concurrent one of the same name wins (nothing inserted)."""
    values: dict[str, Any] = {
        "registry_id": bindparam("rid"),
        "name": bindparam("name"),
        "type": bindparam("type"),
        "description": bindparam("text"),
        "tags": bindparam("tags"),
        "next_version_index": bindparam("zero"),
        "revision": bindparam("one"),
        "created_by_id": bindparam("uid"),
        "create_time": bindparam("now"),
        "update_time": bindparam("now"),
    }
    if dialect == "postgresql":
        return (
            pg_insert(collection)
            .values(**values)
            .on_conflict_do_nothing(index_elements=["registry_id", "name"])
        )
    return insert(collection).prefix_with("OR IGNORE").values(**values)


@query
def insert_link(dialect: str) -> ClauseElement:
    """The link, RETURNING its id. On PostgreSQL the same statement bumps the collection
    (`bump_collection`, in a CTE): a round trip less per link."""
    stmt = (
        insert(collection_version)
        .values(
            collection_id=bindparam("cid"),
            version_index=bindparam("index"),
            artifact_version_id=bindparam("av"),
            tags=bindparam("tags"),
            description=bindparam("text"),
            linked_by_id=bindparam("uid"),
            create_time=bindparam("now"),
            update_time=bindparam("now"),
        )
        .returning(collection_version.c.id)
    )
    if dialect == "postgresql":
        return stmt.add_cte(_bump_collection().cte("bumped"))
    return stmt


@query
def bump_collection(dialect: str) -> ClauseElement:
    """SQLite: the collection after a link (PostgreSQL's `insert_link` does it)."""
    return _bump_collection()


def _bump_collection() -> Update:
    """The next version index and revision of collection `cid`, updated at `now`."""
    return (
        update(collection)
        .where(collection.c.id == bindparam("cid"))
        .values(
            next_version_index=collection.c.next_version_index + _ONE,
            revision=collection.c.revision + _ONE,
            update_time=bindparam("now"),
        )
    )


@query
def move_alias(dialect: str) -> ClauseElement:
    return (
        update(collection_alias)
        .where(collection_alias.c.id == bindparam("alias_id"))
        .values(version_id=bindparam("vid"), create_time=bindparam("now"))
    )


@query
def insert_alias(dialect: str) -> ClauseElement:
    # inline: no implicit RETURNING of the new id
    return (
        insert(collection_alias)
        .inline()
        .values(
            collection_id=bindparam("cid"),
            alias=bindparam("alias"),
            version_id=bindparam("vid"),
            create_time=bindparam("now"),
        )
    )
