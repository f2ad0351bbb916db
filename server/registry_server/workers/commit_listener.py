"""The commit listener of a replica on PostgreSQL: one `LISTEN` connection on the event
loop that hears every commit to the database, from any replica or process, and so
empties the kept replies (`storage/commits.py`, `storage/reply_cache.py`)."""

from __future__ import annotations

from ..api.app import App


async def listen_for_commits(app: App) -> None:
    """Background task of a server on PostgreSQL (nothing to do on SQLite)."""
    if app.db.commits is not None:
        await app.db.commits.run()
