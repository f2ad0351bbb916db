"""Keyset pagination over any select: `order_by` parsing (AIP-132), the seek condition
and the next page token, shared by every list method.

A list method names the fields a caller may sort by (`parse_order_by`'s `allowed`);
`fetch_page` binds each page token to the listing and to the order it was issued for,
so a token from another `order_by` is INVALID_ARGUMENT."""

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
    """`"name"`, `"create_time desc"`, `"update_time desc, name"` -> sort keys + `tiebreak`.

    An empty `order_by` means `default`; an empty `default`, the tiebreak alone."""
    text = order_by.strip() or default
    keys: list[SortKey] = []
    for part in text.split(",") if text else ():
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


def seek(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows after `values` in the order of `keys` (values: literals or bind parameters)."""
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
) -> Page:
    """Runs `stmt` ordered by `keys`, after the token's position, one page long.

    `query` identifies the listing (parent, filter) so a token cannot be replayed
    against another one; the order is added to it here. The next token holds the last
    row's sort key values, each read from the row's entity of the key's class, or else
    from the row's column of the key's name.
    """
    n = page_size(size)
    query = (*query, [(str(k.column), k.descending) for k in keys])
    after = decode_token(token, query, len(keys))
    if after is not None:
        stmt = stmt.where(seek(keys, after))
    stmt = stmt.order_by(*[k.column.desc() if k.descending else k.column.asc() for k in keys])
    rows = list(session.execute(stmt.limit(n + 1)).all())
    next_token = ""
    if len(rows) > n:
        rows = rows[:n]
        last = rows[-1]
        key = tuple(_key_value(last, k.column) for k in keys)
        next_token = encode_token(key, query)
    return Page(rows, next_token)


def _key_value(row: Any, column: Any) -> Any:
    entity = getattr(column, "class_", None)  # a mapped attribute such as m.Event.time
    if entity is not None:
        for item in row:
            if isinstance(item, entity):
                return getattr(item, column.key)
    return getattr(row, column.key)


def page_of(
    session: Session, stmt: Any, keys: Sequence[SortKey], ask: ListParams, query: tuple[Any, ...]
) -> Page:
    """`fetch_page` of a list request (`ask`: its page size and token)."""
    return fetch_page(session, stmt, keys, size=ask.page_size, token=ask.page_token, query=query)
