"""Retention: old events, request_id answers and webhook deliveries are deleted.

Each replica prunes in the background (`workers/retention.py`), a bounded batch per
transaction, so a large backlog never holds a long lock. What is kept whatever its age:

- events that alias history replays (`event_log.ALIAS_HISTORY_TYPES` and the legacy
  ones it maps), and the ones undoing a migration reads (registry setting changes,
  migration state changes): GetAliasHistory and RollbackMigration answer from them;
- webhook deliveries still pending (not attempted yet, or due again).

A window of 0 keeps everything of that kind. A WatchEvents or ListEvents that asks for
cursors older than the event window gets what is still kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from ..storage import models as m
from ..storage.db import Database, now_us
from . import events
from .event_log import ALIAS_HISTORY_TYPES, LEGACY_ALIAS_HISTORY_TYPES

DAY_US = 86_400 * 1_000_000
HOUR_US = 3_600 * 1_000_000
BATCH = 5_000  # rows per delete transaction

# Event types kept whatever their age (module docstring).
KEPT_EVENT_TYPES = frozenset(
    {
        *ALIAS_HISTORY_TYPES,
        *LEGACY_ALIAS_HISTORY_TYPES,
        events.REGISTRY_UPDATED,
        events.MIGRATION_STATE_CHANGED,
    }
)


@dataclass(frozen=True)
class Retention:
    """How long each kind is kept (0: for ever)."""

    event_days: float = 0.0
    request_id_hours: float = 168.0  # a week of safe retries (AIP-155)
    delivery_days: float = 30.0

    @property
    def prunes(self) -> bool:
        return bool(self.event_days or self.request_id_hours or self.delivery_days)


def _drain(db: Database, key: Any, *conditions: Any) -> int:
    """Deletes the rows matching `conditions` of the table whose primary key is `key`, in
    transactions of up to BATCH rows; how many it deleted."""
    total = 0
    while True:
        with db.write() as s:
            ids = list(s.execute(select(key).where(*conditions).limit(BATCH)).scalars())
            if ids:
                s.execute(delete(key.class_).where(key.in_(ids)))
        total += len(ids)
        if len(ids) < BATCH:
            return total


def prune(db: Database, retention: Retention, now: int | None = None) -> dict[str, int]:
    """One round: the rows deleted per kind."""
    now = now_us() if now is None else now
    done = {"events": 0, "request_ids": 0, "deliveries": 0}
    if retention.event_days:
        done["events"] = _drain(
            db,
            m.Event.cursor,
            m.Event.time < now - int(retention.event_days * DAY_US),
            m.Event.type.not_in(sorted(KEPT_EVENT_TYPES)),
        )
    if retention.request_id_hours:
        done["request_ids"] = _drain(
            db,
            m.IdempotencyKey.id,
            m.IdempotencyKey.create_time < now - int(retention.request_id_hours * HOUR_US),
        )
    if retention.delivery_days:
        done["deliveries"] = _drain(
            db,
            m.Delivery.id,
            m.Delivery.next_attempt_time.is_(None),  # attempted, and not due again
            m.Delivery.time > 0,
            m.Delivery.time < now - int(retention.delivery_days * DAY_US),
        )
    return done
