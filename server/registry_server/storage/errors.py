"""How a driver's connection-level failure is answered, wherever it surfaces (ORM
sessions, the SQLite hot connections, PostgreSQL's event-loop pools)."""

from __future__ import annotations

from ..domain.errors import Unavailable


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def is_busy(err: BaseException) -> bool:
    """SQLite could not take its lock (another connection or process holds it)."""
    return "database is locked" in _first_line(err)


def database_unavailable(err: BaseException) -> Unavailable:
    """UNAVAILABLE for a driver error: DATABASE_BUSY when SQLite gave up waiting for its
    lock (retrying is the remedy), else DATABASE_UNAVAILABLE with the first line of the
    driver's message."""
    first = _first_line(err)
    if is_busy(err):
        return Unavailable("the database is busy; retry", reason="DATABASE_BUSY")
    return Unavailable(f"the database is unavailable: {first}", reason="DATABASE_UNAVAILABLE")
