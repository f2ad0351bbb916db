"""request_id (AIP-155): the first answer of a create, kept under its request id."""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, insert, select
from sqlalchemy.sql import ClauseElement, Select

from ..sql import query
from .tables import request_key


@query
def find_answer(dialect: str) -> Select[Any]:
    return select(request_key.c.response).where(
        request_key.c.user_id == bindparam("uid"),
        request_key.c.method == bindparam("method"),
        request_key.c.request_id == bindparam("request_id"),
    )


@query
def keep_answer(dialect: str) -> ClauseElement:
    # inline: no implicit RETURNING of the new id
    return (
        insert(request_key)
        .inline()
        .values(
            user_id=bindparam("uid"),
            method=bindparam("method"),
            request_id=bindparam("request_id"),
            response=bindparam("response"),
            create_time=bindparam("now"),
        )
    )
