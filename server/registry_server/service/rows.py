"""Loading the one row a use case acts on: NOT_FOUND naming the resource when there is
none, or (for a parent that a first child creates) the row inserted on the spot."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..domain.errors import NotFound

T = TypeVar("T")


def one_or_not_found(s: Session, stmt: Select[T], label: str) -> T:
    """The row `stmt` selects; NOT_FOUND "`label` not found" when there is none."""
    row = s.execute(stmt).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{label} not found")
    return row


def lock_or_create(s: Session, lock: Select[T], create: Callable[[], T]) -> tuple[T, bool]:
    """(the row `lock`, a SELECT ... FOR UPDATE, finds, False), else (the row `create()`
    adds to the session, True). When a concurrent request created it first (PostgreSQL
    answers IntegrityError), that one is locked and used."""
    row = s.execute(lock).scalar_one_or_none()
    if row is not None:
        return row, False
    try:
        with s.begin_nested():
            row = create()
    except IntegrityError:
        return s.execute(lock).scalar_one(), False
    return row, True
