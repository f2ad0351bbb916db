"""request_id (AIP-155): a retried create returns the first response, changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from ..domain.errors import InvalidArgument
from ..storage.db import Database, now_us
from ..storage.errors import lost_race
from ..storage.queries import requests as q
from ..storage.sql import Sql
from .context import Principal

REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
M = TypeVar("M", bound=Message)


def check_request_id(request_id: str, field: str = "request_id") -> str:
    if request_id and not REQUEST_ID.fullmatch(request_id):
        raise InvalidArgument(field, "must be a UUID (1-64 characters of A-Z, a-z, 0-9, '-', '_')")
    return request_id


def find_answer(sql: Sql, p: Principal, method: str, request_id: str) -> bytes | None:
    """The answer kept for this caller's `request_id` of `method`, serialized."""
    row = sql.one(q.find_answer, {"uid": p.user_id, "method": method, "request_id": request_id})
    return None if row is None else bytes(row[0])


def keep_answer(sql: Sql, p: Principal, method: str, request_id: str, answer: bytes) -> None:
    sql.execute(
        q.keep_answer,
        {
            "uid": p.user_id,
            "method": method,
            "request_id": request_id,
            "response": answer,
            "now": now_us(),
        },
    )


def run_idempotent(
    db: Database,
    p: Principal,
    method: str,
    request_id: str,
    cls: type[M],
    work: Callable[[Session], M],
) -> M:
    """Runs `work` in one write transaction, remembering its response under request_id.

    A transaction that lost a race (`storage.errors.lost_race`) runs once more: a create
    of a name that a concurrent one took first then answers ALREADY_EXISTS from its
    existence check, and a concurrent retry with the same request_id the response the
    winner stored."""
    check_request_id(request_id)

    def once() -> M:
        with db.write() as s:
            if request_id:
                prior = find_answer(Sql.of(s), p, method, request_id)
                if prior is not None:
                    return cls.FromString(prior)
            result = work(s)
            if request_id:
                keep_answer(Sql.of(s), p, method, request_id, result.SerializeToString())
            return result

    try:
        return once()
    except Exception as err:
        if not lost_race(err):
            raise
    return once()
