"""What the precompiled hot statements share (`fast_resolve`, `fast_reads`, `fast_link`):
how a version's aliases come back in one column, and how JSON columns are read."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by


def joined_aliases(dialect: str, aliases: Any, version_id: Any) -> Any:
    """A scalar subquery: the aliases in `aliases` (an alias of an alias table) of
    `version_id`, as one comma-joined string (aliases never contain commas). On
    PostgreSQL in the database's collation order, as the general path's ORDER BY;
    SQLite's order is unspecified (`split_aliases` sorts)."""
    comma: Any = literal_column("','")  # inline: the compiled SQL takes only the real parameters
    if dialect == "postgresql":
        agg = func.string_agg(aliases.c.alias, aggregate_order_by(comma, aliases.c.alias))
    else:
        agg = func.group_concat(aliases.c.alias, comma)
    return select(agg).where(aliases.c.version_id == version_id).scalar_subquery()


def split_aliases(joined: str | None, sort: bool = True) -> list[str]:
    """The list `joined_aliases` returned; sorted by code point unless `sort` is off."""
    if not joined:
        return []
    found = joined.split(",")
    return sorted(found) if sort else found


_decode_json = json.JSONDecoder().raw_decode


def json_value(value: Any) -> Any:
    """A JSON column's value. SQLite hands back the text the ORM stored with json.dumps
    (decoded without json.loads' whitespace handling); psycopg already decodes JSONB."""
    if not isinstance(value, str):
        return value
    try:
        return _decode_json(value)[0]
    except ValueError:  # text written by other means, e.g. with leading whitespace
        return json.loads(value)
