"""Webhook automations on a registry or a collection, and their delivery worker.

An automation names event types, an optional alias regex, a URL and a secret.
The worker (one per replica, all sharing the database) works in three short
steps, none of which holds a transaction open during HTTP:

1. Schedule: for an automation with events past its `event_cursor`, read the next
   batch of its registry's events in cursor order, move `event_cursor` past them
   with a compare-and-set (`WHERE event_cursor = <old>`), and insert one pending
   attempt per matching event, in the same transaction. A replica that loses the
   compare-and-set rolls back, so each event is scheduled once. Cursor order is
   safe to follow on PostgreSQL thanks to the per-organization event lock (see
   `event_log`).
2. Claim: a pending attempt (`time = 0`) whose `next_attempt_time` is due is
   claimed by setting `next_attempt_time` to the end of a lease, again with a
   compare-and-set; a replica that dies mid-delivery leaves the lease to expire and
   another one retries it (at-least-once delivery).
3. Deliver and record: POST `{"event": ..., "automation": name}` with
   `X-Registry-Signature: sha256=<hex HMAC-SHA256 of the body with the secret>`,
   `X-Registry-Event` (the event cursor, the same on every retry: receivers dedupe
   on it), `X-Registry-Event-Type`, `X-Registry-Delivery` (this attempt's id, as in
   ListDeliveries) and `X-Registry-Attempt`. The attempt row gets its time, status
   and error; on a network error, a timeout, 408, 429 or 5xx a next attempt is
   scheduled after `backoff * 2^(attempt-1)`, up to `max_attempts` attempts. Other
   4xx answers are final. Redirects are not followed. Deliveries of one automation
   may arrive out of order while earlier ones are being retried.

Settings (environment, read on every worker tick): REGISTRY_WEBHOOK_BACKOFF_MS
(1000), REGISTRY_WEBHOOK_MAX_ATTEMPTS (5), REGISTRY_WEBHOOK_TIMEOUT_S (5),
REGISTRY_WEBHOOK_POLL_MS (250), REGISTRY_WEBHOOK_CONCURRENCY (4).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.client
import json
import logging
import os
import re
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, Update, delete, exists, func, insert, select, update
from sqlalchemy.orm import Session

from ..domain import names
from ..domain.errors import InvalidArgument, NotFound
from ..domain.roles import Permission
from ..storage import models as m
from ..storage.db import Database, now_us
from ..storage.paging import Page, SortKey, fetch_page
from . import authz_table, events
from .access import registry_access
from .context import Principal
from .registry_freeze import check_writable

log = logging.getLogger("registry.webhooks")

SERVICE = "EventService"
ALIAS_REGEX_MAX = 256
URL_MAX = 2048
SECRET_MAX = 256
EVENT_TYPES_MAX = 64
ERROR_MAX = 1000
RESPONSE_READ_MAX = 64 * 1024
BACKOFF_CAP_US = 3600 * 1_000_000
RETRYABLE_STATUS = frozenset({408, 429})

# Every event type the service records (the constants of `service/events.py`).
KNOWN_EVENT_TYPES = frozenset(
    value
    for key, value in vars(events).items()
    if isinstance(value, str) and key.isupper() and key == value
)


def _perm(rpc: str) -> Permission:
    return authz_table.permission(SERVICE, rpc)


# --- validation -----------------------------------------------------------------------


def validate_event_types(values: Sequence[str], field: str) -> list[str]:
    if not values:
        raise InvalidArgument(field, "is required: at least one event type")
    if len(values) > EVENT_TYPES_MAX:
        raise InvalidArgument(field, f"at most {EVENT_TYPES_MAX} event types")
    out: list[str] = []
    for i, value in enumerate(values):
        if value not in KNOWN_EVENT_TYPES:
            raise InvalidArgument(
                f"{field}[{i}]",
                f"unknown event type {value!r}; known: {', '.join(sorted(KNOWN_EVENT_TYPES))}",
            )
        if value not in out:
            out.append(value)
    return out


def _slow_pattern(parsed: Any, inside_repeat: bool = False) -> bool:
    """Nested repetition, or alternation under repetition: exponential backtracking."""
    from re import _constants as c  # type: ignore[attr-defined]

    repeat_ops = {c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", c.MAX_REPEAT)}
    for op, av in parsed:
        children: list[Any] = []
        repeats = False
        if op in repeat_ops:
            repeats = av[1] > 1
            if inside_repeat and repeats:
                return True
            children = [av[2]]
        elif op == c.BRANCH:
            if inside_repeat:
                return True
            children = list(av[1])
        elif op == c.SUBPATTERN:
            children = [av[-1]]
        elif op == getattr(c, "ATOMIC_GROUP", None):
            children = [av]
        elif op in (c.ASSERT, c.ASSERT_NOT):
            children = [av[1]]
        elif op == c.GROUPREF_EXISTS:
            children = [x for x in av[1:] if x is not None]
        if any(_slow_pattern(child, inside_repeat or repeats) for child in children):
            return True
    return False


def validate_alias_regex(value: str, field: str) -> str:
    """At most 256 characters, a valid Python regex, and no catastrophic backtracking."""
    if not value:
        return ""
    if len(value) > ALIAS_REGEX_MAX:
        raise InvalidArgument(field, f"must be at most {ALIAS_REGEX_MAX} characters")
    try:
        re.compile(value)
    except re.error as err:
        raise InvalidArgument(field, f"is not a valid regular expression: {err}") from None
    try:
        from re import _parser  # type: ignore[attr-defined]

        slow = _slow_pattern(_parser.parse(value))
    except (ImportError, AttributeError):  # another Python: keep the compile check only
        slow = False
    if slow:
        raise InvalidArgument(
            field,
            "must not nest repetitions or repeat alternations (they can take exponential "
            "time); use character classes, e.g. ^(prod|staging)-[a-z0-9-]+$",
        )
    return value


def validate_url(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > URL_MAX:
        raise InvalidArgument(field, f"must be at most {URL_MAX} characters")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as err:
        raise InvalidArgument(field, f"is not a valid URL: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidArgument(field, "must be an http:// or https:// URL with a host")
    if not value.isascii() or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise InvalidArgument(
            field, "must be ASCII without spaces (percent-encode others; punycode for hosts)"
        )
    _ = port
    return value


def validate_secret(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required (it signs every delivery)")
    if len(value) > SECRET_MAX:
        raise InvalidArgument(field, f"must be at most {SECRET_MAX} characters")
    return value


# --- names ------------------------------------------------------------------------------

REGISTRY_PATTERN = "organizations/{org}/registries/{registry}"
COLLECTION_PATTERN = REGISTRY_PATTERN + "/collections/{collection}"


@dataclass(frozen=True)
class Parent:
    org: str
    registry: str
    collection: str | None

    @property
    def name(self) -> str:
        base = f"organizations/{self.org}/registries/{self.registry}"
        return f"{base}/collections/{self.collection}" if self.collection else base


def parse_parent(value: str, field: str) -> Parent:
    """A registry or collection name."""
    if len(value.split("/")) == 6:
        v = names.parse(value, COLLECTION_PATTERN, field)
        return Parent(v["org"], v["registry"], v["collection"])
    if len(value.split("/")) != 4:
        raise InvalidArgument(
            field, f"{value!r} is not of the form {REGISTRY_PATTERN} or {COLLECTION_PATTERN}"
        )
    v = names.parse(value, REGISTRY_PATTERN, field)
    return Parent(v["org"], v["registry"], None)


def parse_automation_name(value: str, field: str) -> tuple[Parent, str]:
    head, sep, uid = value.rpartition("/automations/")
    if not sep:
        raise InvalidArgument(
            field, f"{value!r} is not of the form {{registry or collection}}/automations/{{id}}"
        )
    parent = parse_parent(head, field)
    names.parse(f"automations/{uid}", "automations/{automation}", field)
    return parent, uid


def automation_name(parent: str, uid: str) -> str:
    return f"{parent}/automations/{uid}"


@dataclass(frozen=True)
class Target:
    """A checked automation parent."""

    parent: Parent
    registry: m.Registry
    collection_id: int | None


def _target(s: Session, p: Principal, parent: Parent, rpc: str) -> Target:
    registry = registry_access(s, p, parent.org, parent.registry, _perm(rpc)).registry
    if parent.collection is None:
        return Target(parent, registry, None)
    collection_id = s.execute(
        select(m.Collection.id).where(
            m.Collection.registry_id == registry.id, m.Collection.name == parent.collection
        )
    ).scalar()
    if collection_id is None:
        raise NotFound(f"{parent.name} not found")
    return Target(parent, registry, collection_id)


def _scope_clause(target: Target) -> Any:
    clause = m.Automation.registry_id == target.registry.id
    if target.collection_id is None:
        return clause & m.Automation.collection_id.is_(None)
    return clause & (m.Automation.collection_id == target.collection_id)


# --- automations ------------------------------------------------------------------------


def create_automation(
    s: Session,
    p: Principal,
    parent: str,
    *,
    event_types: Sequence[str],
    alias_regex: str,
    url: str,
    secret: str,
) -> tuple[m.Automation, str]:
    """The automation and its name; it sees events recorded after it."""
    where = parse_parent(parent, "parent")
    types = validate_event_types(event_types, "automation.event_types")
    regex = validate_alias_regex(alias_regex, "automation.alias_regex")
    validate_url(url, "automation.url")
    validate_secret(secret, "automation.secret")
    target = _target(s, p, where, "CreateAutomation")
    check_writable(s, target.registry)
    uid = uuid.uuid4().hex
    name = automation_name(where.name, uid)
    events.record_event(
        s,
        org_id=target.registry.org_id,
        type=events.AUTOMATION_CREATED,
        actor=p,
        resource=name,
        details={"event_types": types, "alias_regex": regex, "host": urlsplit(url).hostname or ""},
        registry_id=target.registry.id,
    )
    # Everything up to and including our own event is history, not news. With the
    # organization's event lock held, no lower cursor of this organization can still
    # be in flight.
    start = s.execute(
        select(func.max(m.Event.cursor)).where(m.Event.org_id == target.registry.org_id)
    ).scalar()
    automation = m.Automation(
        uid=uid,
        org_id=target.registry.org_id,
        registry_id=target.registry.id,
        collection_id=target.collection_id,
        event_types=types,
        alias_regex=regex,
        url=url,
        secret=secret,
        created_by_id=p.user_id,
        create_time=now_us(),
        event_cursor=int(start or 0),
    )
    s.add(automation)
    s.flush()
    return automation, name


def list_automations(
    s: Session, p: Principal, parent: str, *, page_size: int, page_token: str
) -> Page:
    """Rows of (Automation, creator name or None) directly under `parent`, oldest first."""
    where = parse_parent(parent, "parent")
    target = _target(s, p, where, "ListAutomations")
    stmt = (
        select(m.Automation, m.User.name)
        .outerjoin(m.User, m.User.id == m.Automation.created_by_id)
        .where(_scope_clause(target))
    )
    return fetch_page(
        s,
        stmt,
        [SortKey(m.Automation.id)],
        size=page_size,
        token=page_token,
        query=("automations", where.name),
        key_of=lambda row: (row[0].id,),
    )


def _automation(
    s: Session, p: Principal, name: str, field: str, rpc: str
) -> tuple[Target, m.Automation]:
    where, uid = parse_automation_name(name, field)
    try:
        target = _target(s, p, where, rpc)
    except NotFound:
        raise NotFound(f"{name} not found") from None
    automation = s.execute(
        select(m.Automation).where(_scope_clause(target), m.Automation.uid == uid)
    ).scalar_one_or_none()
    if automation is None:
        raise NotFound(f"{name} not found")
    return target, automation


def delete_automation(s: Session, p: Principal, name: str) -> None:
    target, automation = _automation(s, p, name, "name", "DeleteAutomation")
    s.execute(delete(m.Delivery).where(m.Delivery.automation_id == automation.id))
    s.execute(delete(m.Automation).where(m.Automation.id == automation.id))
    events.record_event(
        s,
        org_id=target.registry.org_id,
        type=events.AUTOMATION_DELETED,
        actor=p,
        resource=name,
        registry_id=target.registry.id,
    )


def list_deliveries(
    s: Session, p: Principal, parent: str, *, page_size: int, page_token: str
) -> Page:
    """Rows of (Delivery,): attempts made so far (pending ones are not shown), oldest first."""
    _, automation = _automation(s, p, parent, "parent", "ListDeliveries")
    stmt = select(m.Delivery).where(m.Delivery.automation_id == automation.id, m.Delivery.time > 0)
    return fetch_page(
        s,
        stmt,
        [SortKey(m.Delivery.id)],
        size=page_size,
        token=page_token,
        query=("deliveries", parent),
        key_of=lambda row: (row[0].id,),
    )


# --- matching -----------------------------------------------------------------------------


def event_aliases(details: dict[str, Any]) -> list[str]:
    """Aliases an event is about: `details.alias` and `details.aliases`."""
    found: list[str] = []
    if isinstance(details.get("alias"), str):
        found.append(details["alias"])
    if isinstance(details.get("aliases"), list):
        found.extend(a for a in details["aliases"] if isinstance(a, str))
    return found


def matches(
    event_types: Sequence[str],
    alias_pattern: re.Pattern[str] | None,
    collection_name: str | None,
    type_: str,
    resource: str,
    details: dict[str, Any],
) -> bool:
    """Whether an event of the automation's registry triggers it.

    Collection automations see events about the collection and what lies beneath
    it; the regex must match a whole alias, and only applies to events with one."""
    if type_ not in event_types:
        return False
    if collection_name is not None and not (
        resource == collection_name or resource.startswith(collection_name + "/")
    ):
        return False
    if alias_pattern is not None:
        aliases = event_aliases(details)
        if aliases and not any(alias_pattern.fullmatch(a) for a in aliases):
            return False
    return True


# --- the worker -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookConfig:
    backoff_ms: int = 1000
    max_attempts: int = 5
    timeout_s: float = 5.0
    poll_ms: int = 250
    concurrency: int = 4
    batch: int = 200

    @classmethod
    def from_env(cls) -> WebhookConfig:
        def number(key: str, default: float, low: float) -> float:
            raw = os.environ.get(key, "")
            try:
                return max(low, float(raw)) if raw else default
            except ValueError:
                log.warning("ignoring %s=%r: not a number", key, raw)
                return default

        return cls(
            backoff_ms=int(number("REGISTRY_WEBHOOK_BACKOFF_MS", cls.backoff_ms, 1)),
            max_attempts=int(number("REGISTRY_WEBHOOK_MAX_ATTEMPTS", cls.max_attempts, 1)),
            timeout_s=number("REGISTRY_WEBHOOK_TIMEOUT_S", cls.timeout_s, 0.1),
            poll_ms=int(number("REGISTRY_WEBHOOK_POLL_MS", cls.poll_ms, 10)),
            concurrency=int(number("REGISTRY_WEBHOOK_CONCURRENCY", cls.concurrency, 1)),
        )

    def backoff_us(self, attempt: int) -> int:
        """Delay before attempt `attempt + 1`."""
        return int(min(BACKOFF_CAP_US, self.backoff_ms * 1000 * 2 ** min(attempt - 1, 32)))

    @property
    def lease_us(self) -> int:
        return int(max(30.0, 3 * self.timeout_s) * 1_000_000)


def _changed(s: Session, statement: Update) -> int:
    """Rows an UPDATE changed: the outcome of a compare-and-set."""
    return int(cast(CursorResult[Any], s.execute(statement)).rowcount)


class _LostRace(Exception):
    """Another replica scheduled this automation's events first."""


def automations_with_news(s: Session) -> list[int]:
    """Automations whose registry has events past their cursor (one index probe each)."""
    news = exists().where(
        m.Event.registry_id == m.Automation.registry_id, m.Event.cursor > m.Automation.event_cursor
    )
    return list(s.execute(select(m.Automation.id).where(news).order_by(m.Automation.id)).scalars())


def schedule_automation(db: Database, automation_id: int, batch: int) -> int:
    """Moves one automation past its next batch of events; returns attempts scheduled."""
    try:
        with db.write() as s:
            row = s.execute(
                select(m.Automation, m.Organization.name, m.Registry.name, m.Collection.name)
                .join(m.Registry, m.Registry.id == m.Automation.registry_id)
                .join(m.Organization, m.Organization.id == m.Registry.org_id)
                .outerjoin(m.Collection, m.Collection.id == m.Automation.collection_id)
                .where(m.Automation.id == automation_id)
            ).first()
            if row is None:
                return 0
            automation, org, registry, collection = row
            start = automation.event_cursor
            found = s.execute(
                select(m.Event.cursor, m.Event.type, m.Event.resource, m.Event.details)
                .where(m.Event.registry_id == automation.registry_id, m.Event.cursor > start)
                .order_by(m.Event.cursor)
                .limit(batch)
            ).all()
            if not found:
                return 0
            moved = _changed(
                s,
                update(m.Automation)
                .where(m.Automation.id == automation_id, m.Automation.event_cursor == start)
                .values(event_cursor=found[-1].cursor),
            )
            if moved != 1:
                raise _LostRace
            collection_name = (
                f"organizations/{org}/registries/{registry}/collections/{collection}"
                if automation.collection_id is not None
                else None
            )
            pattern = re.compile(automation.alias_regex) if automation.alias_regex else None
            due = now_us()
            rows = [
                {
                    "automation_id": automation_id,
                    "event_cursor": e.cursor,
                    "attempt": 1,
                    "status_code": 0,
                    "error": "",
                    "succeeded": False,
                    "time": 0,
                    "next_attempt_time": due,
                }
                for e in found
                if matches(
                    automation.event_types,
                    pattern,
                    collection_name,
                    e.type,
                    e.resource,
                    e.details or {},
                )
            ]
            if rows:
                s.execute(insert(m.Delivery), rows)
            return len(rows)
    except _LostRace:
        return 0


def schedule_deliveries(db: Database, batch: int) -> int:
    with db.read() as s:
        pending = automations_with_news(s)
    return sum(schedule_automation(db, automation_id, batch) for automation_id in pending)


@dataclass(frozen=True)
class Claim:
    """One attempt this replica may make until `lease_until`."""

    delivery_id: int
    attempt: int
    event_cursor: int
    event_type: str
    automation_id: int
    automation: str
    url: str
    secret: str
    body: bytes
    lease_until: int

    @property
    def delivery_name(self) -> str:
        return f"{self.automation}/deliveries/{self.delivery_id}"


def rfc3339(micros: int) -> str:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_json(e: m.Event) -> dict[str, Any]:
    return {
        "cursor": e.cursor,
        "type": e.type,
        "actor": e.actor,
        "resource": e.resource,
        "time": rfc3339(e.time),
        "details": e.details or {},
    }


def claim_due(db: Database, limit: int, lease_us: int) -> list[Claim]:
    """Claims up to `limit` due attempts (compare-and-set on next_attempt_time)."""
    now = now_us()
    due_filter = (m.Delivery.next_attempt_time <= now, m.Delivery.time == 0)
    with db.read() as s:
        if s.execute(select(m.Delivery.id).where(*due_filter).limit(1)).first() is None:
            return []
    lease_until = now + lease_us
    with db.write() as s:
        candidates = s.execute(
            select(m.Delivery.id, m.Delivery.next_attempt_time)
            .where(*due_filter)
            .order_by(m.Delivery.next_attempt_time)
            .limit(limit)
        ).all()
        mine: list[int] = []
        for delivery_id, due in candidates:
            won = _changed(
                s,
                update(m.Delivery)
                .where(
                    m.Delivery.id == delivery_id,
                    m.Delivery.time == 0,
                    m.Delivery.next_attempt_time == due,
                )
                .values(next_attempt_time=lease_until),
            )
            if won == 1:
                mine.append(delivery_id)
        if not mine:
            return []
        rows = s.execute(
            select(
                m.Delivery,
                m.Automation,
                m.Event,
                m.Organization.name,
                m.Registry.name,
                m.Collection.name,
            )
            .join(m.Automation, m.Automation.id == m.Delivery.automation_id)
            .join(m.Registry, m.Registry.id == m.Automation.registry_id)
            .join(m.Organization, m.Organization.id == m.Registry.org_id)
            .outerjoin(m.Collection, m.Collection.id == m.Automation.collection_id)
            .outerjoin(m.Event, m.Event.cursor == m.Delivery.event_cursor)
            .where(m.Delivery.id.in_(mine))
            .order_by(m.Delivery.id)
        ).all()
        claims: list[Claim] = []
        for delivery, automation, event, org, registry, collection in rows:
            parent = f"organizations/{org}/registries/{registry}"
            if automation.collection_id is not None:
                parent += f"/collections/{collection}"
            name = automation_name(parent, automation.uid)
            if event is None:  # cannot happen while the organization exists
                _finish(s, delivery.id, lease_until, 0, "the event no longer exists", False)
                continue
            body = json.dumps(
                {"event": event_json(event), "automation": name},
                separators=(",", ":"),
                sort_keys=True,
            ).encode()
            claims.append(
                Claim(
                    delivery_id=delivery.id,
                    attempt=delivery.attempt,
                    event_cursor=delivery.event_cursor,
                    event_type=event.type,
                    automation_id=automation.id,
                    automation=name,
                    url=automation.url,
                    secret=automation.secret,
                    body=body,
                    lease_until=lease_until,
                )
            )
        return claims


def signature(secret: str, body: bytes) -> str:
    """The `X-Registry-Signature` header value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AttemptResult:
    status_code: int
    error: str

    @property
    def succeeded(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        if self.succeeded:
            return False
        return (
            self.status_code == 0 or self.status_code >= 500 or self.status_code in RETRYABLE_STATUS
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx becomes an HTTPError: a failed attempt


_OPENER = urllib.request.build_opener(_NoRedirects)


def send(claim: Claim, timeout: float) -> AttemptResult:
    """One blocking HTTP POST (run on a worker thread)."""
    request = urllib.request.Request(
        claim.url,
        data=claim.body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "artifact-registry-webhooks/1",
            "X-Registry-Signature": signature(claim.secret, claim.body),
            "X-Registry-Event": str(claim.event_cursor),
            "X-Registry-Event-Type": claim.event_type,
            "X-Registry-Delivery": str(claim.delivery_id),
            "X-Registry-Attempt": str(claim.attempt),
        },
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            response.read(RESPONSE_READ_MAX)
            status = int(response.status)
        return AttemptResult(status, "" if 200 <= status < 300 else f"HTTP {status}")
    except urllib.error.HTTPError as err:
        err.close()
        return AttemptResult(err.code, f"HTTP {err.code}: {err.reason}"[:ERROR_MAX])
    except urllib.error.URLError as err:
        return AttemptResult(0, str(err.reason)[:ERROR_MAX] or "connection failed")
    except (OSError, http.client.HTTPException, ValueError) as err:
        return AttemptResult(0, (f"{type(err).__name__}: {err}")[:ERROR_MAX])


def _finish(
    s: Session, delivery_id: int, lease_until: int, status: int, error: str, succeeded: bool
) -> bool:
    done = _changed(
        s,
        update(m.Delivery)
        .where(
            m.Delivery.id == delivery_id,
            m.Delivery.time == 0,
            m.Delivery.next_attempt_time == lease_until,
        )
        .values(
            time=now_us(),
            status_code=status,
            error=error,
            succeeded=succeeded,
            next_attempt_time=None,
        ),
    )
    return done == 1


def record_attempt(
    db: Database, claim: Claim, result: AttemptResult, config: WebhookConfig
) -> None:
    """Stores the attempt; schedules the next one when it failed and may be retried."""
    with db.write() as s:
        if not _finish(
            s,
            claim.delivery_id,
            claim.lease_until,
            result.status_code,
            result.error,
            result.succeeded,
        ):
            return  # automation deleted, or our lease ran out and another replica took over
        if result.retryable and claim.attempt < config.max_attempts:
            s.execute(
                insert(m.Delivery).values(
                    automation_id=claim.automation_id,
                    event_cursor=claim.event_cursor,
                    attempt=claim.attempt + 1,
                    status_code=0,
                    error="",
                    succeeded=False,
                    time=0,
                    next_attempt_time=now_us() + config.backoff_us(claim.attempt),
                )
            )


async def _attempt(
    db: Database, run: Callable[..., Awaitable[Any]], claim: Claim, config: WebhookConfig
) -> None:
    try:
        result: AttemptResult = await run(send, claim, config.timeout_s)
        if not result.succeeded:
            log.info(
                "webhook %s attempt %d failed: %s", claim.delivery_name, claim.attempt, result.error
            )
        await run(record_attempt, db, claim, result, config)
    except asyncio.CancelledError:
        raise
    except Exception as err:  # the lease expires and another worker redoes the attempt
        log.warning("webhook %s attempt %d: %s", claim.delivery_name, claim.attempt, err)


async def run_delivery_worker(db: Database, run: Callable[..., Awaitable[Any]]) -> None:
    """The background task: schedule, claim and deliver until cancelled.

    `run` runs a blocking function on a worker thread (App.run)."""
    inflight: set[asyncio.Task[None]] = set()
    try:
        while True:
            config = WebhookConfig.from_env()
            try:
                await run(schedule_deliveries, db, config.batch)
                free = config.concurrency - len(inflight)
                if free > 0:
                    for claim in await run(claim_due, db, free, config.lease_us):
                        task = asyncio.create_task(_attempt(db, run, claim, config))
                        inflight.add(task)
                        task.add_done_callback(inflight.discard)
            except asyncio.CancelledError:
                raise
            except Exception as err:  # a database outage must not end the worker
                log.warning(
                    "webhook worker tick failed: %s", err, exc_info=log.isEnabledFor(logging.DEBUG)
                )
            await asyncio.sleep(config.poll_ms / 1000)
    finally:
        for task in inflight:
            task.cancel()
        await asyncio.gather(*inflight, return_exceptions=True)
