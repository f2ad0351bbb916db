"""The retention loop: every replica deletes old events, request_id answers and finished
webhook deliveries (the statements and what is kept: `service/retention.py`)."""

from __future__ import annotations

import asyncio
import logging
import random

from ..api.app import App
from ..service.retention import prune

log = logging.getLogger("registry.retention")

INTERVAL_SECONDS = 3_600.0  # between two rounds, with up to 10% of jitter


async def run_retention(app: App) -> None:
    """Background task of a server: a round now, then one every INTERVAL_SECONDS
    (jittered, so replicas do not all prune at once), each on the worker pool."""
    retention = app.settings.retention
    if not retention.prunes:
        return
    while True:
        try:
            done = await app.run(prune, app.db, retention)
            if any(done.values()):
                log.info("retention deleted %s", done)
        except Exception:  # the next round tries again
            log.exception("retention round failed")
        await asyncio.sleep(INTERVAL_SECONDS * (1 + random.random() / 10))
