"""Keyset pagination over any Core select: `order_by` parsing, the seek condition
and the next page token, shared by every list method."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ..domain.errors import InvalidArgument, quote
from ..domain.pagination import ListParams, decode_token, encode_token, page_size


@dataclass(frozen=True)
class SortKey:
    column: Any
    descending: bool = False


def parse_order_by(
    order_by: str,
    allowed: dict[str, Any],
    default: str,
    tiebreak: Any,
    field: str = "order_by",
) -> list[SortKey]:
    """`"name"`, `"create_time desc"`, `"update_time desc, name"` -> sort keys + `tiebreak`."""
    text = order_by.strip() or default
    keys: list[SortKey] = []
    for part in text.split(","):
        words = part.split()
        if (
            not words
            or len(words) > 2
            or (len(words) == 2 and words[1].lower() not in ("asc", "desc"))
        ):
            raise InvalidArgument(field, f"{quote(part.strip())}: expected FIELD or FIELD desc")
        if words[0] not in allowed:
            raise InvalidArgument(
                field, f"unknown field {quote(words[0])}; allowed: {', '.join(sorted(allowed))}"
            )
        keys.append(SortKey(allowed[words[0]], len(words) == 2 and words[1].lower() == "desc"))
    keys.append(SortKey(tiebreak, keys[-1].descending if keys else False))
    return keys


def _seek(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    clauses = []
    for i, key in enumerate(keys):
        eqs = [keys[j].column == values[j] for j in range(i)]
        cmp = key.column < values[i] if key.descending else key.column > values[i]
        clauses.append(and_(*eqs, cmp))
    return or_(*clauses)


@dataclass
class Page:
    rows: list[Any]
    next_page_token: str


def fetch_page(
    session: Session,
    stmt: Any,
    keys: Sequence[SortKey],
    *,
    size: int,
    token: str,
    query: tuple[Any, ...],
    key_of: Any = None,
) -> Page:
    """Runs `stmt` ordered by `keys`, after the token's position, one page long.

    `query` identifies the listing (parent, filter, order_by) so a token cannot be
    replayed against another one. `key_of(row)` extracts the sort key values from a
    row; by default the attributes of the row's first entity named like the sort key
    columns.
    """
    n = page_size(size)
    after = decode_token(token, query, len(keys))
    if after is not None:
        stmt = stmt.where(_seek(keys, after))
    stmt = stmt.order_by(*[k.column.desc() if k.descending else k.column.asc() for k in keys])
    rows = list(session.execute(stmt.limit(n + 1)).all())
    next_token = ""
    if len(rows) > n:
        rows = rows[:n]
        last = rows[-1]
        key = key_of(last) if key_of else tuple(getattr(last[0], k.column.key) for k in keys)
        next_token = encode_token(tuple(key), query)
    return Page(rows, next_token)


def page_of(
    session: Session,
    stmt: Any,
    keys: Sequence[SortKey],
    ask: ListParams,
    query: tuple[Any, ...],
    key_of: Any = None,
) -> Page:
    """`fetch_page` of a list request (`ask`: its page size and token)."""
    return fetch_page(
        session, stmt, keys, size=ask.page_size, token=ask.page_token, query=query, key_of=key_of
    )
