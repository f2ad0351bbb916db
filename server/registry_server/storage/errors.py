"""How a driver's connection-level failure is answered, wherever it surfaces (ORM
sessions, the SQLite hot connections, PostgreSQL's event-loop pools)."""

from __future__ import annotations

from ..domain.errors import Unavailable


def database_unavailable(err: BaseException) -> Unavailable:
    """UNAVAILABLE for a driver error: DATABASE_BUSY when SQLite gave up waiting for its
    lock (retrying is the remedy), else DATABASE_UNAVAILABLE with the first line of the
    driver's message."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else type(err).__name__
    if "database is locked" in first:
        return Unavailable("the database is busy; retry", reason="DATABASE_BUSY")
    return Unavailable(f"the database is unavailable: {first}", reason="DATABASE_UNAVAILABLE")
