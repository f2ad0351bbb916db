"""request_id (AIP-155): a retried create returns the first response, changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import Message
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..domain.errors import InvalidArgument
from ..storage import models as m
from ..storage.db import Database, now_us
from ..storage.errors import lost_race
from .context import Principal

REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
M = TypeVar("M", bound=Message)


def check_request_id(request_id: str, field: str = "request_id") -> str:
    if request_id and not REQUEST_ID.fullmatch(request_id):
        raise InvalidArgument(field, "must be a UUID (1-64 characters of A-Z, a-z, 0-9, '-', '_')")
    return request_id


def _lookup(s: Session, p: Principal, method: str, request_id: str, cls: type[M]) -> M | None:
    data = s.execute(
        select(m.IdempotencyKey.response).where(
            m.IdempotencyKey.user_id == p.user_id,
            m.IdempotencyKey.method == method,
            m.IdempotencyKey.request_id == request_id,
        )
    ).scalar()
    if data is None:
        return None
    msg = cls()
    msg.ParseFromString(data)
    return msg


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
                prior = _lookup(s, p, method, request_id, cls)
                if prior is not None:
                    return prior
            result = work(s)
            if request_id:
                s.execute(
                    insert(m.IdempotencyKey).values(
                        user_id=p.user_id,
                        method=method,
                        request_id=request_id,
                        response=result.SerializeToString(),
                        create_time=now_us(),
                    )
                )
            return result

    try:
        return once()
    except Exception as err:
        if not lost_race(err):
            raise
    return once()
