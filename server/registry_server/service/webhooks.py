"""Webhook automations on a registry or a collection, and their deliveries.

An automation names event types, an optional alias regex, a URL (checked by
`webhook_targets`: https only unless allowed, no internal addresses) and a secret
(stored sealed under the server's key when it has one: `secret_box`). Every
replica's delivery worker (`workers/webhook_delivery.py`) schedules one attempt per
matching event and claims due attempts; this module builds and sends an attempt and
records its outcome:

POST `{"event": ..., "automation": name}` signed with the Standard Webhooks scheme
(`registry_client.webhooks`): `webhook-id` (the same on every attempt of one event:
receivers dedupe on it), `webhook-timestamp`, `webhook-signature`; also
`X-Registry-Event` (the cursor), `X-Registry-Event-Type`, `X-Registry-Delivery` (this
attempt's id, as in ListDeliveries) and `X-Registry-Attempt`. `webhook_http` checks the
addresses again and connects to a checked one (DNS rebinding); redirects are not
followed. The attempt row gets its time, status and error; on a network error, a
timeout, 408, 429 or 5xx a next attempt is scheduled after `backoff * 2^(attempt-1)`,
up to `max_attempts` attempts. Other answers, a refused address and a secret this
server cannot decrypt are final. Deliveries of one automation may arrive out of order
while earlier ones are being retried.

Settings (environment, read on every worker tick): REGISTRY_WEBHOOK_BACKOFF_MS
(1000), REGISTRY_WEBHOOK_MAX_ATTEMPTS (5), REGISTRY_WEBHOOK_TIMEOUT_S (5),
REGISTRY_WEBHOOK_POLL_MS (250), REGISTRY_WEBHOOK_CONCURRENCY (4).
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit

from sqlalchemy import CursorResult, Update, delete, func, insert, select, update
from sqlalchemy.orm import Session

from registry_client import webhooks as standard_webhooks

from ..domain import names
from ..domain.errors import InvalidArgument, NotFound, quote
from ..domain.pagination import ListParams
from ..storage import models as m
from ..storage.db import Database, add_created, now_us
from ..storage.paging import Page, page_of, parse_order_by
from . import authz_table, events, webhook_http
from .access import registry_access
from .context import Principal
from .event_log import COLLECTION_PATTERN, REGISTRY_PATTERN, event_aliases
from .organizations import check_etag
from .registry_freeze import check_writable
from .secret_box import SecretBox, SecretUnavailable, open_secret
from .webhook_http import ERROR_MAX, AttemptResult
from .webhook_targets import TargetPolicy, TargetRefused, parse_target

log = logging.getLogger("registry.webhooks")

SERVICE = "EventService"
ALIAS_REGEX_MAX = 256
SECRET_MAX = 256
EVENT_TYPES_MAX = 64
BACKOFF_CAP_US = 3600 * 1_000_000
USER_AGENT = "artifact-registry-webhooks/2"

# Every event type the service records (the constants of `service/events.py`), but the
# test ping, which only TestAutomation sends.
KNOWN_EVENT_TYPES = frozenset(
    value
    for key, value in vars(events).items()
    if isinstance(value, str) and key.isupper() and key == value
) - {events.AUTOMATION_TESTED}
UPDATABLE = frozenset({"enabled", "url", "event_types", "alias_regex", "secret"})


# --- validation -----------------------------------------------------------------------


@dataclass(frozen=True)
class AutomationSpec:
    """An automation's fields as a create or update request brings them."""

    event_types: list[str]
    alias_regex: str
    url: str
    secret: str
    enabled: bool


def check_spec(
    spec: AutomationSpec, fields: Collection[str], policy: TargetPolicy, *, rotating: bool
) -> AutomationSpec:
    """`spec` with the named `fields` checked and its event types without repeats;
    INVALID_ARGUMENT names the first bad one. An empty secret on create means "make
    one"; a rotation (`rotating`) must bring its own. A secret is never quoted back."""
    if "secret" in fields and not spec.secret and rotating:
        raise InvalidArgument(
            "automation.secret",
            "is required to rotate it: replies never carry a secret after creation, so "
            "choose it (whsec_ and the base64 of 32 random bytes)",
        )
    if "event_types" in fields:
        spec = replace(spec, event_types=_event_types(spec.event_types))
    if "alias_regex" in fields:
        _check_alias_regex(spec.alias_regex)
    if "url" in fields:
        # The URL's form and any literal address; host names are resolved by
        # `webhook_targets.check_url`, off the transaction.
        try:
            parse_target(spec.url, policy)
        except TargetRefused as err:
            raise InvalidArgument("automation.url", str(err)) from None
    if spec.secret:
        _check_secret(spec.secret)
    return spec


def _event_types(values: Sequence[str]) -> list[str]:
    field = "automation.event_types"
    if not values:
        raise InvalidArgument(field, "is required: at least one event type")
    if len(values) > EVENT_TYPES_MAX:
        raise InvalidArgument(field, f"at most {EVENT_TYPES_MAX} event types")
    for i, value in enumerate(values):
        if value not in KNOWN_EVENT_TYPES:
            raise InvalidArgument(
                f"{field}[{i}]",
                f"unknown event type {quote(value)}; known: {', '.join(sorted(KNOWN_EVENT_TYPES))}",
            )
    return list(dict.fromkeys(values))


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


def _check_alias_regex(value: str) -> None:
    """At most 256 characters, a valid Python regex, and no catastrophic backtracking."""
    field = "automation.alias_regex"
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


def _check_secret(value: str) -> None:
    """A Standard Webhooks secret."""
    if len(value) > SECRET_MAX:
        raise InvalidArgument("automation.secret", f"must be at most {SECRET_MAX} characters")
    try:
        standard_webhooks.secret_key(value)
    except ValueError as err:
        raise InvalidArgument(
            "automation.secret",
            f"{err} (e.g. whsec_ and the base64 of 32 random bytes); leave it empty on "
            "create and the server makes one",
        ) from None


# --- names ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Parent:
    """A registry or a collection: where automations live."""

    org: str
    registry: str
    collection: str | None

    @property
    def name(self) -> str:
        if self.collection is None:
            return names.registry_name(self.org, self.registry)
        return names.collection_name(self.org, self.registry, self.collection)


def parse_parent(value: str, field: str) -> Parent:
    if len(value.split("/")) == 6:
        v = names.parse(value, COLLECTION_PATTERN, field)
        return Parent(v["org"], v["registry"], v["collection"])
    if len(value.split("/")) != 4:
        raise InvalidArgument(
            field, f"{quote(value)} is not of the form {REGISTRY_PATTERN} or {COLLECTION_PATTERN}"
        )
    v = names.parse(value, REGISTRY_PATTERN, field)
    return Parent(v["org"], v["registry"], None)


def parse_automation_name(value: str, field: str) -> tuple[Parent, str]:
    head, sep, uid = value.rpartition("/automations/")
    if not sep:
        raise InvalidArgument(
            field,
            f"{quote(value)} is not of the form {{registry or collection}}/automations/{{id}}",
        )
    parent = parse_parent(head, field)
    names.parse(f"automations/{uid}", "automations/{automation}", field)
    return parent, uid


def automation_name(parent: str, uid: str) -> str:
    return f"{parent}/automations/{uid}"


@dataclass(frozen=True)
class Scope:
    """A checked automation parent: its registry, and the collection's id for a collection."""

    registry: m.Registry
    collection_id: int | None


def _scope(s: Session, p: Principal, parent: Parent, rpc: str) -> Scope:
    permission = authz_table.permission(SERVICE, rpc)
    registry = registry_access(s, p, parent.org, parent.registry, permission).registry
    if parent.collection is None:
        return Scope(registry, None)
    collection_id = s.execute(
        select(m.Collection.id).where(
            m.Collection.registry_id == registry.id, m.Collection.name == parent.collection
        )
    ).scalar()
    if collection_id is None:
        raise NotFound(f"{parent.name} not found")
    return Scope(registry, collection_id)


def _scope_clause(scope: Scope) -> Any:
    """Automations directly under the parent (`== None` compiles to IS NULL)."""
    return (m.Automation.registry_id == scope.registry.id) & (
        m.Automation.collection_id == scope.collection_id
    )


# --- automations ------------------------------------------------------------------------


def automation_secret(automation: m.Automation, box: SecretBox | None) -> str:
    """The plaintext secret; SecretUnavailable when it is sealed and cannot be opened."""
    if automation.secret_sealed:
        return open_secret(automation.secret_sealed, automation.uid, box)
    return automation.secret


def store_secret(automation: m.Automation, secret: str, box: SecretBox | None) -> None:
    """Sealed, bound to the automation's uid, when the server has a key."""
    if box is None:
        automation.secret, automation.secret_sealed = secret, None
    else:
        automation.secret, automation.secret_sealed = "", box.seal(secret, automation.uid)


def signing_key(secret: str) -> bytes:
    """A `whsec_` secret's key bytes; a secret stored before secrets had that form
    signs with its UTF-8 bytes."""
    try:
        return standard_webhooks.secret_key(secret)
    except ValueError:
        return secret.encode()


def _latest_cursor(s: Session, org_id: int) -> int:
    # With the organization's event lock held (we recorded an event), no lower cursor
    # of this organization can still be in flight.
    found = s.execute(select(func.max(m.Event.cursor)).where(m.Event.org_id == org_id)).scalar()
    return int(found or 0)


def authorize(s: Session, p: Principal, name: str, field: str, rpc: str) -> None:
    """The access check of `rpc` on a registry/collection or automation `name`, made
    before the host of a new URL is resolved (DNS only for callers who may write)."""
    if "/automations/" in name:
        _automation(s, p, name, field, rpc)
    else:
        _scope(s, p, parse_parent(name, field), rpc)


def create_automation(
    s: Session, p: Principal, parent: str, spec: AutomationSpec, box: SecretBox | None
) -> tuple[m.Automation, str, str]:
    """The automation, its name and its secret (made here when `spec` has none). It sees
    events recorded after it (while enabled)."""
    where = parse_parent(parent, "parent")
    scope = _scope(s, p, where, "CreateAutomation")
    check_writable(s, scope.registry)
    uid = uuid.uuid4().hex
    name = automation_name(where.name, uid)
    secret = spec.secret or standard_webhooks.new_secret()
    events.scoped_event(
        s,
        events.AUTOMATION_CREATED,
        p,
        name,
        {
            "event_types": spec.event_types,
            "alias_regex": spec.alias_regex,
            "host": urlsplit(spec.url).hostname or "",
            "enabled": spec.enabled,
        },
        registry=scope.registry,
    )
    automation = m.Automation(
        uid=uid,
        org_id=scope.registry.org_id,
        registry_id=scope.registry.id,
        collection_id=scope.collection_id,
        event_types=spec.event_types,
        alias_regex=spec.alias_regex,
        url=spec.url,
        enabled=spec.enabled,
        created_by_id=p.user_id,
        event_cursor=_latest_cursor(s, scope.registry.org_id),
    )
    store_secret(automation, secret, box)
    add_created(s, automation)
    return automation, name, secret


AUTOMATION_ORDER = {
    "create_time": m.Automation.create_time,
    "update_time": m.Automation.update_time,
}


def list_automations(s: Session, p: Principal, parent: str, ask: ListParams) -> Page:
    """Rows of (Automation, creator name or None) directly under `parent`, oldest first
    unless `order_by` says otherwise."""
    keys = parse_order_by(ask.order_by, AUTOMATION_ORDER, "", m.Automation.id)
    where = parse_parent(parent, "parent")
    scope = _scope(s, p, where, "ListAutomations")
    stmt = (
        select(m.Automation, m.User.name)
        .outerjoin(m.User, m.User.id == m.Automation.created_by_id)
        .where(_scope_clause(scope))
    )
    return page_of(s, stmt, keys, ask, ("automations", where.name))


def _automation(
    s: Session, p: Principal, name: str, field: str, rpc: str
) -> tuple[Scope, m.Automation]:
    where, uid = parse_automation_name(name, field)
    try:
        scope = _scope(s, p, where, rpc)
    except NotFound:
        raise NotFound(f"{name} not found") from None
    automation = s.execute(
        select(m.Automation).where(_scope_clause(scope), m.Automation.uid == uid)
    ).scalar_one_or_none()
    if automation is None:
        raise NotFound(f"{name} not found")
    return scope, automation


def creator_name(s: Session, automation: m.Automation) -> str | None:
    if automation.created_by_id is None:
        return None
    return s.execute(select(m.User.name).where(m.User.id == automation.created_by_id)).scalar()


def get_automation(s: Session, p: Principal, name: str) -> m.Automation:
    return _automation(s, p, name, "name", "GetAutomation")[1]


def update_automation(
    s: Session,
    p: Principal,
    name: str,
    fields: Collection[str],
    spec: AutomationSpec,
    etag: str,
    box: SecretBox | None,
) -> m.Automation:
    """Changes the `fields` (UPDATABLE) to the values of `spec`; a URL must have been
    checked with `webhook_targets.check_url`. Writing `secret` rotates it."""
    scope, automation = _automation(s, p, name, "automation.name", "UpdateAutomation")
    check_writable(s, scope.registry)
    check_etag(etag, automation.revision, "automation.etag")
    enabling = "enabled" in fields and spec.enabled and not automation.enabled
    for changed in ("event_types", "alias_regex", "url", "enabled"):
        if changed in fields:
            setattr(automation, changed, getattr(spec, changed))
    if "secret" in fields:
        store_secret(automation, spec.secret, box)
    details: dict[str, Any] = {"fields": sorted(fields)}
    if "enabled" in fields:
        details["enabled"] = spec.enabled
    if "url" in fields:
        details["host"] = urlsplit(spec.url).hostname or ""
    events.scoped_event(s, events.AUTOMATION_UPDATED, p, name, details, registry=scope.registry)
    if enabling:  # what happened while it was off is not news (nor is this event)
        automation.event_cursor = _latest_cursor(s, scope.registry.org_id)
    automation.revision += 1
    automation.update_time = now_us()
    s.flush()
    return automation


def delete_automation(s: Session, p: Principal, name: str) -> None:
    scope, automation = _automation(s, p, name, "name", "DeleteAutomation")
    s.execute(delete(m.Delivery).where(m.Delivery.automation_id == automation.id))
    s.execute(delete(m.Automation).where(m.Automation.id == automation.id))
    events.scoped_event(s, events.AUTOMATION_DELETED, p, name, registry=scope.registry)


DELIVERY_ORDER = {"time": m.Delivery.time}


def list_deliveries(s: Session, p: Principal, parent: str, ask: ListParams) -> Page:
    """Rows of (Delivery,): attempts made so far (pending ones are not shown), oldest first
    unless `order_by` says otherwise."""
    keys = parse_order_by(ask.order_by, DELIVERY_ORDER, "", m.Delivery.id)
    _, automation = _automation(s, p, parent, "parent", "ListDeliveries")
    stmt = select(m.Delivery).where(m.Delivery.automation_id == automation.id, m.Delivery.time > 0)
    return page_of(s, stmt, keys, ask, ("deliveries", parent))


def get_delivery(s: Session, delivery_id: int) -> m.Delivery:
    found = s.get(m.Delivery, delivery_id)
    if found is None:
        raise NotFound(f"delivery {delivery_id} not found")
    return found


def reseal_secrets(s: Session, box: SecretBox) -> int:
    """Seals every automation secret with `box`'s first key (key rotation, or a key
    configured after secrets were stored in plaintext); SecretUnavailable (and the
    caller rolls back) when one cannot be opened."""
    count = 0
    for automation in s.execute(select(m.Automation).order_by(m.Automation.id)).scalars():
        if automation.secret_sealed and box.sealed_with_current_key(automation.secret_sealed):
            continue
        store_secret(automation, automation_secret(automation, box), box)
        count += 1
    s.flush()
    return count


# --- matching -----------------------------------------------------------------------------


def matches(
    automation: m.Automation, parent: Parent, type_: str, resource: str, details: dict[str, Any]
) -> bool:
    """Whether an event of the automation's registry triggers it.

    Collection automations see events about the collection and what lies beneath
    it; the regex must match a whole alias, and only applies to events with one."""
    if type_ not in automation.event_types:
        return False
    if parent.collection is not None and not (
        resource == parent.name or resource.startswith(parent.name + "/")
    ):
        return False
    aliases = event_aliases(details)
    if automation.alias_regex and aliases:
        return any(re.fullmatch(automation.alias_regex, a) for a in aliases)
    return True


# --- deliveries ---------------------------------------------------------------------------


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


def changed_rows(s: Session, statement: Update) -> int:
    """Rows an UPDATE changed: the outcome of a compare-and-set."""
    return int(cast(CursorResult[Any], s.execute(statement)).rowcount)


@dataclass(frozen=True)
class Claim:
    """One attempt this replica may make until `lease_until`."""

    delivery_id: int
    attempt: int
    event_cursor: int
    event_type: str
    automation_id: int
    automation: str
    webhook_id: str
    url: str
    secret: str
    body: bytes
    lease_until: int
    retry: bool = True  # a failed attempt may be followed by another

    @property
    def delivery_name(self) -> str:
        return f"{self.automation}/deliveries/{self.delivery_id}"


def webhook_id(automation_uid: str, event_cursor: int) -> str:
    """The `webhook-id` of an automation's delivery of one event (every attempt)."""
    return f"msg_{automation_uid}_{event_cursor}"


def rfc3339(micros: int) -> str:
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim_attempt(
    s: Session,
    delivery: m.Delivery,
    automation: m.Automation,
    event: m.Event | None,
    name: str,
    lease_until: int,
    box: SecretBox | None,
    *,
    retry: bool = True,
) -> Claim | None:
    """The attempt to make, or None after recording why it cannot be made."""
    if event is None:  # cannot happen while the organization exists
        finish_attempt(s, delivery.id, lease_until, AttemptResult(0, "the event no longer exists"))
        return None
    try:
        secret = automation_secret(automation, box)
    except SecretUnavailable as err:
        not_sent = AttemptResult(0, f"not sent: {err}"[:ERROR_MAX])
        finish_attempt(s, delivery.id, lease_until, not_sent)
        return None
    event_json = {
        "cursor": event.cursor,
        "type": event.type,
        "actor": event.actor,
        "resource": event.resource,
        "time": rfc3339(event.time),
        "details": event.details or {},
    }
    body = json.dumps(
        {"event": event_json, "automation": name}, separators=(",", ":"), sort_keys=True
    ).encode()
    return Claim(
        delivery_id=delivery.id,
        attempt=delivery.attempt,
        event_cursor=delivery.event_cursor,
        event_type=event.type,
        automation_id=automation.id,
        automation=name,
        webhook_id=webhook_id(automation.uid, delivery.event_cursor),
        url=automation.url,
        secret=secret,
        body=body,
        lease_until=lease_until,
        retry=retry,
    )


def send(claim: Claim, policy: TargetPolicy, timeout: float) -> AttemptResult:
    """One blocking POST (run on a worker thread), with Standard Webhooks' three
    headers and the registry's own."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": claim.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": standard_webhooks.signature(
            signing_key(claim.secret), claim.webhook_id, timestamp, claim.body
        ),
        "X-Registry-Event": str(claim.event_cursor),
        "X-Registry-Event-Type": claim.event_type,
        "X-Registry-Delivery": str(claim.delivery_id),
        "X-Registry-Attempt": str(claim.attempt),
    }
    return webhook_http.post(claim.url, claim.body, headers, policy=policy, timeout=timeout)


def update_pending(s: Session, delivery_id: int, expected: int | None, **values: Any) -> bool:
    """Compare-and-set on a pending attempt: changes it only while it is pending with
    `next_attempt_time = expected` (its due time, or the end of its claimer's lease)."""
    done = changed_rows(
        s,
        update(m.Delivery)
        .where(
            m.Delivery.id == delivery_id,
            m.Delivery.time == 0,
            m.Delivery.next_attempt_time == expected,
        )
        .values(**values),
    )
    return done == 1


def finish_attempt(s: Session, delivery_id: int, lease_until: int, result: AttemptResult) -> bool:
    return update_pending(
        s,
        delivery_id,
        lease_until,
        time=now_us(),
        status_code=result.status_code,
        error=result.error,
        succeeded=result.succeeded,
        next_attempt_time=None,
    )


# Attempts this process finished, by outcome (`record_attempt`; api/metrics.py reads them).
_outcomes: dict[str, int] = {}
_outcomes_lock = threading.Lock()


def delivery_outcomes() -> dict[str, int]:
    """How many attempts this process finished, by outcome: succeeded, retrying (failed,
    another attempt scheduled), failed (no more attempts) or refused (never sent)."""
    with _outcomes_lock:
        return dict(_outcomes)


def _outcome(result: AttemptResult, retried: bool) -> str:
    if result.succeeded:
        return "succeeded"
    if result.refused:
        return "refused"
    return "retrying" if retried else "failed"


def record_attempt(
    db: Database, claim: Claim, result: AttemptResult, config: WebhookConfig
) -> None:
    """Stores the attempt; schedules the next one when it failed and may be retried."""
    retried = claim.retry and result.retryable and claim.attempt < config.max_attempts
    with db.write() as s:
        if not finish_attempt(s, claim.delivery_id, claim.lease_until, result):
            return  # automation deleted, or our lease ran out and another replica took over
        if retried:
            s.execute(
                insert(m.Delivery).values(
                    automation_id=claim.automation_id,
                    event_cursor=claim.event_cursor,
                    attempt=claim.attempt + 1,
                    time=0,
                    next_attempt_time=now_us() + config.backoff_us(claim.attempt),
                )
            )
    outcome = _outcome(result, retried)
    with _outcomes_lock:
        _outcomes[outcome] = _outcomes.get(outcome, 0) + 1


def test_automation(
    db: Database,
    p: Principal,
    name: str,
    policy: TargetPolicy,
    box: SecretBox | None,
    config: WebhookConfig,
) -> int:
    """Records an AUTOMATION_TESTED event, sends it to this automation now (enabled or
    not; never retried) and returns the id of the attempt, as ListDeliveries lists it."""
    with db.write() as s:
        scope, automation = _automation(s, p, name, "name", "TestAutomation")
        lease_until = now_us() + config.lease_us
        delivery = m.Delivery(
            automation_id=automation.id,
            event_cursor=0,  # set below, once the event has its cursor
            attempt=1,
            time=0,
            next_attempt_time=lease_until,  # claimed by this call
        )
        s.add(delivery)
        s.flush()
        # The event lock comes last (after the row locks above): see record_event_now.
        delivery.event_cursor = events.record_event_now(
            s,
            org_id=scope.registry.org_id,
            type=events.AUTOMATION_TESTED,
            actor=p,
            resource=name,
            details={"host": urlsplit(automation.url).hostname or ""},
            registry_id=scope.registry.id,
        )
        s.flush()
        delivery_id = delivery.id
        event = s.get(m.Event, delivery.event_cursor)
        claim = claim_attempt(s, delivery, automation, event, name, lease_until, box, retry=False)
    if claim is not None:
        record_attempt(db, claim, send(claim, policy, config.timeout_s), config)
    return delivery_id
