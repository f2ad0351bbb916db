"""Reading the event log: list, watch, visibility and alias history.

Visibility (checked in SQL, never per event in Python): an event about a registry
(`registry_id` set) is visible to whoever may see that registry
(`access.visible_registries_clause`, i.e. effective role >= RESTRICTED_VIEWER); an
event about a team (`team_id` set) to the team's members; an event carrying both
needs both; an organization-level event (neither set: users, keys, the organization
itself) to the organization's admins only. Organization admins (and service admins)
see every event of the organization. Events of a deleted registry stay visible to
admins only, since nobody else holds a role in it any more.

Cursor order across concurrent writers. Event cursors come from an identity column.
On PostgreSQL, identity values are handed out at INSERT time but become visible at
COMMIT, so a transaction holding cursor 10 can commit after one holding cursor 11;
a reader that has seen 11 and asks for `cursor > 11` would skip 10 for good. We
rule that out by serializing event writers per organization: `events.record_event`
takes `pg_advisory_xact_lock(EVENT_LOCK_SPACE, org_id)` before inserting, held until
the transaction ends (the lock is released after the commit is visible). Within one
organization, cursors are therefore allocated and made visible in the same order.
Every reader here (lists, watchers, the webhook scheduler) reads within one
organization, so `cursor > last` never misses a late commit. The cost is that two
transactions writing events of the same organization run their tail (from the
first event to commit) one after the other; mutations are short, so this is cheap,
and other organizations are unaffected. SQLite serializes all writes already.

Watching. A watcher first replays `cursor > after_cursor`, then waits for a wake-up
from the replica's event hub (`workers/event_hub.py`: at once for this process's
commits, within ~150 ms for other replicas', one indexed MAX per watched
organization for all watchers together) and reads again from its last cursor. It
also re-reads every few seconds without a wake-up, as a safety net. Since
a watcher only ever reads `cursor > last` and advances `last` to what it sent, a
client that reconnects with its last cursor misses nothing and sees nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select
from sqlalchemy.orm import Session

from ..domain import names
from ..domain.errors import InvalidArgument, NotFound, quote
from ..domain.filters import And, Comparison, Expr, Not, Or, parse_filter
from ..domain.pagination import ListParams
from ..domain.roles import Permission
from ..storage import models as m
from ..storage.filter_sql import FieldSpec, compile_filter
from ..storage.paging import Page, page_of, parse_order_by
from . import authz_table, events
from .access import registry_access, visible_registries_clause
from .context import Principal
from .organizations import get_org

SERVICE = "EventService"
ORG_PATTERN = "organizations/{org}"
REGISTRY_PATTERN = "organizations/{org}/registries/{registry}"
COLLECTION_PATTERN = "organizations/{org}/registries/{registry}/collections/{collection}"
WATCH_BATCH = 500
ALIAS_HISTORY_MAX_EVENTS = 100_000


def like_prefix(prefix: str) -> str:
    """A LIKE pattern (escape character `\\`) matching strings that start with `prefix`."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def under(column: Any, name: str) -> ColumnElement[bool]:
    """`column` is the resource `name` itself or a resource beneath it."""
    return or_(column == name, column.like(like_prefix(name + "/"), escape="\\"))


# --- filter -----------------------------------------------------------------------

# `resource : "p"` is a prefix match; the parser gives every field one meaning per
# operator, so `:` comparisons on `resource` are renamed to this member before
# compiling. The parser never produces a member containing a space.
_RESOURCE_PREFIX = "resource (prefix)"


def _resource_prefix(value: str, op: str) -> ColumnElement[bool]:
    return m.Event.resource.like(like_prefix(value), escape="\\")


EVENT_FILTER: dict[str, FieldSpec] = {
    "type": FieldSpec("string", m.Event.type),
    "actor": FieldSpec("string", m.Event.actor),
    # `=` / `!=` exact; `:` prefix (below).
    "resource": FieldSpec("string", m.Event.resource, ops=frozenset({"=", "!=", ":"})),
    _RESOURCE_PREFIX: FieldSpec("alias", builder=_resource_prefix, ops=frozenset({":"})),
    "time": FieldSpec("time", m.Event.time),
    "cursor": FieldSpec("int", m.Event.cursor),
}


def _rewrite_resource_prefix(expr: Expr) -> Expr:
    if isinstance(expr, Comparison):
        if expr.member == ("resource",) and expr.op == ":":
            return replace(expr, member=(_RESOURCE_PREFIX,))
        return expr
    if isinstance(expr, And):
        return And(tuple(_rewrite_resource_prefix(i) for i in expr.items))
    if isinstance(expr, Or):
        return Or(tuple(_rewrite_resource_prefix(i) for i in expr.items))
    if isinstance(expr, Not):
        return Not(_rewrite_resource_prefix(expr.item))
    return expr


def compile_event_filter(s: Session, text: str) -> ColumnElement[bool] | None:
    """The SQL condition of an events filter: type, actor, resource, time, cursor.

    `resource = "x"` is exact, `resource : "x"` matches every resource name that
    starts with "x" (e.g. a registry name selects the registry and everything in it);
    other fields are INVALID_ARGUMENT.
    """
    expr = parse_filter(text, "filter")
    if expr is None:
        return None
    dialect = s.get_bind().dialect.name
    return compile_filter(_rewrite_resource_prefix(expr), EVENT_FILTER, dialect, "filter")


# --- parent and visibility ------------------------------------------------------------


@dataclass(frozen=True)
class EventQuery:
    """A checked ListEvents / WatchEvents request: the organization (and registry) its
    parent names, and its filter."""

    org_id: int
    registry_id: int | None
    clause: ColumnElement[bool] | None


def event_query(s: Session, p: Principal, parent: str, filter: str) -> EventQuery:
    """`parent` is `organizations/{org}` (members of it) or a registry name (VIEW on it)."""
    clause = compile_event_filter(s, filter)
    segments = parent.split("/")
    if len(segments) == 4 and segments[2] == "registries":
        v = names.parse(parent, REGISTRY_PATTERN, "parent")
        # The registry's own events need what seeing the registry needs.
        registry = registry_access(s, p, v["org"], v["registry"], Permission.VIEW).registry
        return EventQuery(registry.org_id, registry.id, clause)
    if len(segments) != 2:
        raise InvalidArgument(
            "parent", f"{quote(parent)} is not of the form {ORG_PATTERN} or {REGISTRY_PATTERN}"
        )
    org = get_org(s, p, names.parse(parent, ORG_PATTERN, "parent")["org"], "parent")
    return EventQuery(org.id, None, clause)


def visible_events(p: Principal, q: EventQuery) -> Select[Any]:
    """`SELECT events` the query selects that `p` may see (the rule of the module
    docstring)."""
    stmt = select(m.Event).where(m.Event.org_id == q.org_id)
    if q.clause is not None:
        stmt = stmt.where(q.clause)
    if q.registry_id is not None:
        stmt = stmt.where(m.Event.registry_id == q.registry_id)
    if p.org_admin and p.org_id == q.org_id:
        return stmt
    my_teams = select(m.TeamMember.team_id).where(m.TeamMember.user_id == p.user_id)
    return stmt.outerjoin(m.Registry, m.Registry.id == m.Event.registry_id).where(
        or_(m.Event.registry_id.is_not(None), m.Event.team_id.is_not(None)),
        or_(
            m.Event.registry_id.is_(None),
            and_(m.Registry.id.is_not(None), visible_registries_clause(p)),
        ),
        or_(m.Event.team_id.is_(None), m.Event.team_id.in_(my_teams)),
    )


# --- list and watch ----------------------------------------------------------------


EVENT_ORDER = {"cursor": m.Event.cursor, "time": m.Event.time}


def list_events(s: Session, p: Principal, parent: str, ask: ListParams) -> Page:
    """Rows of (Event,), oldest first unless `order_by` says otherwise, keyset-paged."""
    keys = parse_order_by(ask.order_by, EVENT_ORDER, "cursor", m.Event.cursor)
    stmt = visible_events(p, event_query(s, p, parent, ask.filter))
    return page_of(s, stmt, keys, ask, ("events", parent, ask.filter))


def prepare_watch(
    s: Session, p: Principal, parent: str, filter: str, after_cursor: int
) -> EventQuery:
    if after_cursor < 0:
        raise InvalidArgument("after_cursor", "must not be negative")
    return event_query(s, p, parent, filter)


def read_after(s: Session, p: Principal, q: EventQuery, after: int) -> list[m.Event]:
    """The next visible events after cursor `after` (visibility re-evaluated each time)."""
    stmt = visible_events(p, q).where(m.Event.cursor > after)
    return list(s.execute(stmt.order_by(m.Event.cursor).limit(WATCH_BATCH)).scalars())


def latest_cursors(s: Session, org_ids: Sequence[int]) -> dict[int, int]:
    """Newest cursor per organization: one indexed MAX each, in one round trip."""
    if not org_ids:
        return {}
    columns = [
        select(func.max(m.Event.cursor))
        .where(m.Event.org_id == org_id)
        .scalar_subquery()
        .label(f"o{i}")
        for i, org_id in enumerate(org_ids)
    ]
    row = s.execute(select(*columns)).one()
    return {org_id: int(row[i] or 0) for i, org_id in enumerate(org_ids)}


# --- alias history -----------------------------------------------------------------

# Events that can move or end an alias of a collection.
ALIAS_HISTORY_TYPES = (
    events.ALIAS_ADDED,
    events.ALIAS_REMOVED,
    events.VERSION_LINKED,
    events.VERSION_UNLINKED,
    events.COLLECTION_DELETED,
)
# The same for a legacy registered model, as the collection event each one amounts to: a
# migrated collection's history starts with its registered model's.
LEGACY_ALIAS_HISTORY_TYPES = {
    events.LEGACY_ALIAS_SET: events.ALIAS_ADDED,
    events.LEGACY_ALIAS_DELETED: events.ALIAS_REMOVED,
    events.LEGACY_VERSION_LINKED: events.VERSION_LINKED,
    events.LEGACY_VERSION_UNLINKED: events.VERSION_UNLINKED,
    events.LEGACY_MODEL_DELETED: events.COLLECTION_DELETED,
}


@dataclass
class AliasAssignment:
    version_index: int
    from_time: int
    to_time: int | None
    actor: str


@dataclass(frozen=True)
class AliasHistory:
    assignments: list[AliasAssignment]
    version_index_at_time: int  # -1 when no time was asked or nothing held the alias


def _version_index(details: dict[str, Any], resource: str) -> int | None:
    value = details.get("version_index")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    head, _, last = resource.rpartition("/versions/")
    if head and last.removeprefix("v").isdigit():
        return int(last.removeprefix("v"))
    return None


def event_aliases(details: dict[str, Any]) -> list[str]:
    """Aliases an event is about: `details.alias` and `details.aliases`."""
    found: list[str] = []
    if isinstance(details.get("alias"), str):
        found.append(details["alias"])
    if isinstance(details.get("aliases"), list):
        found.extend(a for a in details["aliases"] if isinstance(a, str))
    return found


def fold_alias_history(rows: Iterable[Any], alias: str) -> list[AliasAssignment]:
    """Replays (type, time, actor, resource, details) rows, oldest first, into assignments."""
    out: list[AliasAssignment] = []
    current: AliasAssignment | None = None

    def close(at: int) -> None:
        nonlocal current
        if current is not None:
            current.to_time = at
            current = None

    for type_, time, actor, resource, details in rows:
        details = details or {}
        if type_ in (events.ALIAS_ADDED, events.VERSION_LINKED):
            if alias not in event_aliases(details):
                continue
            index = _version_index(details, resource)
            if index is None or (current is not None and current.version_index == index):
                continue
            close(time)
            current = AliasAssignment(index, time, None, actor)
            out.append(current)
        elif type_ == events.ALIAS_REMOVED:
            if alias in event_aliases(details):
                close(time)
        elif type_ == events.VERSION_UNLINKED:
            index = _version_index(details, resource)
            if current is not None and (
                index == current.version_index or alias in event_aliases(details)
            ):
                close(time)
        elif type_ == events.COLLECTION_DELETED:
            close(time)
    return out


def alias_history(
    s: Session, p: Principal, collection: str, alias: str, at_time: int | None
) -> AliasHistory:
    """Which versions held `alias` of `collection`, when, and who moved it there.

    Works from the event log alone, so it also answers for a deleted collection
    (while its registry exists and is visible). A collection a migration made from a
    registered model answers with that model's legacy history first (its events, with
    their times and actors: the legacy registry is read-only from the migration's start
    on, so they all come before the registry's own), then the registry's."""
    v = names.parse(collection, COLLECTION_PATTERN, "collection")
    names.alias(alias, "alias")
    registry = registry_access(
        s, p, v["org"], v["registry"], authz_table.permission(SERVICE, "GetAliasHistory")
    ).registry
    wanted = and_(
        m.Event.registry_id == registry.id,
        m.Event.type.in_(ALIAS_HISTORY_TYPES),
        under(m.Event.resource, collection),
    )
    if registry.migrated_from_team_id is not None:
        team = s.execute(
            select(m.Team.name).where(m.Team.id == registry.migrated_from_team_id)
        ).scalar_one_or_none()
        if team is not None:
            wanted = or_(
                wanted,
                and_(
                    m.Event.team_id == registry.migrated_from_team_id,
                    m.Event.registry_id.is_(None),
                    m.Event.type.in_(list(LEGACY_ALIAS_HISTORY_TYPES)),
                    under(m.Event.resource, f"teams/{team}/registeredModels/{v['collection']}"),
                ),
            )
    rows = [
        (LEGACY_ALIAS_HISTORY_TYPES.get(type_, type_), *rest)
        for type_, *rest in s.execute(
            select(m.Event.type, m.Event.time, m.Event.actor, m.Event.resource, m.Event.details)
            .where(m.Event.org_id == registry.org_id, wanted)
            .order_by(m.Event.cursor)
            .limit(ALIAS_HISTORY_MAX_EVENTS)
        ).all()
    ]
    if not rows:
        exists = s.execute(
            select(m.Collection.id).where(
                m.Collection.registry_id == registry.id, m.Collection.name == v["collection"]
            )
        ).first()
        if exists is None:
            raise NotFound(f"{collection} not found")
    assignments = fold_alias_history(rows, alias)
    at = -1
    if at_time is not None:
        for a in assignments:
            if a.from_time <= at_time and (a.to_time is None or at_time < a.to_time):
                at = a.version_index
    return AliasHistory(assignments, at)
