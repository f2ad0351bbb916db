"""How a driver's connection-level failure is answered, wherever it surfaces (ORM
sessions, the SQLite hot connections, PostgreSQL's event-loop pools)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from ..domain.errors import Unavailable

# PostgreSQL's serialization failure and deadlock detected: the transaction lost a race.
_LOST_RACE_SQLSTATES = frozenset({"40001", "40P01"})


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


def lost_race(err: BaseException) -> bool:
    """Whether `err`, or the driver error behind it, says the transaction lost a race to
    a concurrent one and would see the winner if run again: a constraint the other
    satisfied first (on PostgreSQL a create's INSERT waits for the winner's commit, then
    meets the unique key its existence check could not see yet), a serialization
    failure or a deadlock."""
    seen: BaseException | None = err
    while seen is not None:
        if isinstance(seen, IntegrityError):
            return True
        driver = getattr(seen, "orig", seen)
        if getattr(driver, "sqlstate", None) in _LOST_RACE_SQLSTATES:
            return True
        seen = seen.__cause__
    return False
