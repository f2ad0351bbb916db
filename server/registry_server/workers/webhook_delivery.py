"""The webhook delivery worker: one background task per replica, all sharing the
database, which delivers the events of automations (`service/webhooks.py`) in three
short steps, none of which holds a transaction open during HTTP:

1. Schedule: for an enabled automation with events past its `event_cursor`, read the
   next batch of its registry's events in cursor order, move `event_cursor` past them
   with a compare-and-set (`WHERE event_cursor = <old>`), and insert one pending
   attempt per matching event, in the same transaction. A replica that loses the
   compare-and-set rolls back, so each event is scheduled once. Cursor order is
   safe to follow on PostgreSQL thanks to the per-organization event lock (see
   `service/event_log.py`). A disabled automation is not scheduled; enabling it again
   moves its cursor to the newest event, so it delivers what happens from then on.
2. Claim: a pending attempt (`time = 0`) whose `next_attempt_time` is due is
   claimed by setting `next_attempt_time` to the end of a lease, again with a
   compare-and-set; a replica that dies mid-delivery leaves the lease to expire and
   another one retries it (at-least-once delivery).
3. Deliver and record (`webhooks.send`, `webhooks.record_attempt`), retried with
   backoff as `service/webhooks.py` describes.

Settings (environment, read on every tick): `webhooks.WebhookConfig`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Select, exists, insert, select, update

from ..api.app import App
from ..service import webhook_http, webhooks
from ..service.secret_box import SecretBox
from ..service.webhook_targets import TargetPolicy
from ..storage import models as m
from ..storage.db import Database, now_us

log = logging.getLogger("registry.webhooks")


class _LostRace(Exception):
    """Another replica scheduled this automation's events first."""


def _with_parent(stmt: Select[*tuple[Any, ...]]) -> Select[*tuple[Any, ...]]:
    """`stmt` on automations, with the names of each one's organization, registry and
    collection (None for a registry's automation) added as its last columns."""
    return (
        stmt.add_columns(m.Organization.name, m.Registry.name, m.Collection.name)
        .join(m.Registry, m.Registry.id == m.Automation.registry_id)
        .join(m.Organization, m.Organization.id == m.Registry.org_id)
        .outerjoin(m.Collection, m.Collection.id == m.Automation.collection_id)
    )


def schedule_automation(db: Database, automation_id: int, batch: int) -> int:
    """Moves one automation past its next batch of events; returns attempts scheduled."""
    try:
        with db.write() as s:
            row = s.execute(
                _with_parent(select(m.Automation)).where(m.Automation.id == automation_id)
            ).first()
            if row is None or not row[0].enabled:
                return 0
            automation, parent = row[0], webhooks.Parent(*row[1:])
            start = automation.event_cursor
            found = s.execute(
                select(m.Event.cursor, m.Event.type, m.Event.resource, m.Event.details)
                .where(m.Event.registry_id == automation.registry_id, m.Event.cursor > start)
                .order_by(m.Event.cursor)
                .limit(batch)
            ).all()
            if not found:
                return 0
            moved = webhooks.changed_rows(
                s,
                update(m.Automation)
                .where(m.Automation.id == automation_id, m.Automation.event_cursor == start)
                .values(event_cursor=found[-1].cursor),
            )
            if moved != 1:
                raise _LostRace
            due = now_us()
            rows = [
                {
                    "automation_id": automation_id,
                    "event_cursor": e.cursor,
                    "attempt": 1,
                    "time": 0,
                    "next_attempt_time": due,
                }
                for e in found
                if webhooks.matches(automation, parent, e.type, e.resource, e.details or {})
            ]
            if rows:
                s.execute(insert(m.Delivery), rows)
            return len(rows)
    except _LostRace:
        return 0


def schedule_deliveries(db: Database, batch: int) -> int:
    """Schedules the automations whose registry has events past their cursor (found
    with one index probe each)."""
    news = exists().where(
        m.Event.registry_id == m.Automation.registry_id, m.Event.cursor > m.Automation.event_cursor
    )
    query = select(m.Automation.id).where(news, m.Automation.enabled).order_by(m.Automation.id)
    with db.read() as s:
        pending = list(s.scalars(query))
    return sum(schedule_automation(db, automation_id, batch) for automation_id in pending)


def claim_due(
    db: Database, limit: int, lease_us: int, box: SecretBox | None
) -> list[webhooks.Claim]:
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
            if webhooks.update_pending(s, delivery_id, due, next_attempt_time=lease_until):
                mine.append(delivery_id)
        if not mine:
            return []
        rows = s.execute(
            _with_parent(
                select(m.Automation, m.Delivery, m.Event)
                .join_from(m.Delivery, m.Automation, m.Automation.id == m.Delivery.automation_id)
                .outerjoin(m.Event, m.Event.cursor == m.Delivery.event_cursor)
            )
            .where(m.Delivery.id.in_(mine))
            .order_by(m.Delivery.id)
        ).all()
        claims: list[webhooks.Claim] = []
        for automation, delivery, event, *parent in rows:
            name = webhooks.automation_name(webhooks.Parent(*parent).name, automation.uid)
            if not automation.enabled:  # disabled after this attempt was scheduled
                disabled = webhook_http.AttemptResult(0, "not sent: the automation is disabled")
                webhooks.finish_attempt(s, delivery.id, lease_until, disabled)
                continue
            claim = webhooks.claim_attempt(s, delivery, automation, event, name, lease_until, box)
            if claim is not None:
                claims.append(claim)
        return claims


async def _attempt(
    db: Database,
    run: Callable[..., Awaitable[Any]],
    claim: webhooks.Claim,
    config: webhooks.WebhookConfig,
    policy: TargetPolicy,
) -> None:
    try:
        result: webhook_http.AttemptResult = await run(
            webhooks.send, claim, policy, config.timeout_s
        )
        if not result.succeeded:
            log.info(
                "webhook %s attempt %d failed: %s", claim.delivery_name, claim.attempt, result.error
            )
        await run(webhooks.record_attempt, db, claim, result, config)
    except asyncio.CancelledError:
        raise
    except Exception as err:  # the lease expires and another worker redoes the attempt
        log.warning("webhook %s attempt %d: %s", claim.delivery_name, claim.attempt, err)


async def run_webhook_worker(app: App) -> None:
    """Background task of a server: schedules, claims and delivers until cancelled
    (blocking steps on the worker pool: `App.run`)."""
    db, run, policy, box = app.db, app.run, app.webhook_policy, app.secret_box
    inflight: set[asyncio.Task[None]] = set()
    try:
        while True:
            config = webhooks.WebhookConfig.from_env()
            try:
                await run(schedule_deliveries, db, config.batch)
                free = config.concurrency - len(inflight)
                if free > 0:
                    for claim in await run(claim_due, db, free, config.lease_us, box):
                        task = asyncio.create_task(_attempt(db, run, claim, config, policy))
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
