"""The replica's event hub: wakes the WatchEvents streams of this replica when their
organization may have new events (`service/event_log.py`, "Watching").

Wake-ups come at once when this process commits an event of the organization (a
SQLAlchemy `after_commit` hook; the links and alias moves that run outside a session
wake the hub themselves) and from a poller (`run_event_hub`, a background task) that
reads the newest cursor of each watched organization every ~150 ms, which catches
writes of other replicas sharing the database. Closing the hub (at shutdown) ends
the streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from ..api.app import App
from ..service import event_log, events

log = logging.getLogger("registry.events")


class EventHub:
    """`run()` is the poller; `close()` wakes every watcher with `closed` set."""

    interval = 0.15  # seconds between polls

    def __init__(self, read: Callable[[Callable[[Session], Any]], Awaitable[Any]]) -> None:
        self._read = read
        self._waiters: dict[int, set[asyncio.Event]] = {}
        self._latest: dict[int, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def subscribe(self, org_id: int) -> asyncio.Event:
        self._loop = asyncio.get_running_loop()
        waiter = asyncio.Event()
        self._waiters.setdefault(org_id, set()).add(waiter)
        return waiter

    def unsubscribe(self, org_id: int, waiter: asyncio.Event) -> None:
        waiting = self._waiters.get(org_id)
        if waiting is not None:
            waiting.discard(waiter)
            if not waiting:
                del self._waiters[org_id]
                self._latest.pop(org_id, None)

    def watching(self, org_id: int) -> int:
        """How many streams of this replica follow the organization."""
        return len(self._waiters.get(org_id, ()))

    def wake(self, org_ids: Iterable[int]) -> None:
        """Event-loop thread only."""
        for org_id in org_ids:
            for waiter in self._waiters.get(org_id, ()):
                waiter.set()

    def wake_threadsafe(self, org_ids: Iterable[int]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.wake, frozenset(org_ids))

    async def run(self) -> None:
        """Polls the newest cursor of every watched organization until cancelled."""
        self._loop = asyncio.get_running_loop()
        self.closed = False
        try:
            while True:
                await asyncio.sleep(self.interval)
                org_ids = list(self._waiters)
                if not org_ids:
                    continue
                try:
                    latest: dict[int, int] = await self._read(
                        functools.partial(event_log.latest_cursors, org_ids=org_ids)
                    )
                except Exception as err:  # retried next tick; watchers also self-poll
                    log.warning("event poll failed: %s", err)
                    continue
                changed = [o for o, c in latest.items() if self._latest.get(o) != c]
                self._latest.update(latest)
                self.wake(changed)
        finally:
            self.close()

    def close(self) -> None:
        self.closed = True
        for waiting in self._waiters.values():
            for waiter in waiting:
                waiter.set()


# One hub per App (the App's servicers and its poller share it).
_hubs: weakref.WeakKeyDictionary[App, EventHub] = weakref.WeakKeyDictionary()


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    org_ids = session.info.pop(events.PENDING_EVENT_ORGS, None)
    if org_ids:
        for hub in list(_hubs.values()):
            hub.wake_threadsafe(org_ids)


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(events.PENDING_EVENT_ORGS, None)


def hub_for(app: App) -> EventHub:
    hub = _hubs.get(app)
    if hub is None:
        hub = _hubs[app] = EventHub(app.read)
    return hub


async def run_event_hub(app: App) -> None:
    """Background task: polls for other replicas' events; closing it ends watch streams."""
    await hub_for(app).run()
