"""What the precompiled hot statements share (`fast_resolve`, `fast_reads`, `fast_link`,
`fast_migration`): how a version's aliases come back in one column, how JSON columns
are read, and how a Core statement becomes driver SQL run on a DB-API connection."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, literal_column, select
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select


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


@dataclass(frozen=True)
class Compiled:
    """Driver SQL with its parameter order (positional drivers), constant parameters
    (filter values, already through their bind processors) and processors of the rest."""

    sql: str
    order: tuple[str, ...] | None
    constants: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]

    def params(self, values: Mapping[str, Any]) -> Any:
        merged = dict(self.constants)
        for name, value in values.items():
            process = self.processors.get(name)
            merged[name] = process(value) if process is not None and value is not None else value
        if self.order is not None:
            return tuple(merged[name] for name in self.order)
        return merged


def compile_statement(stmt: Select[Any], dialect: Dialect, variables: Sequence[str]) -> Compiled:
    """`stmt` as driver SQL once and for all; `variables` are the parameters given at
    each run, every other bound value is a constant."""
    compiled = stmt.compile(dialect=dialect)
    # Expands IN lists into separate parameters, as SQLAlchemy does at execution time.
    expanded = compiled.construct_expanded_state({name: None for name in variables})
    processors: dict[str, Callable[[Any], Any]] = dict(expanded.processors)
    for name, bind in compiled.binds.items():
        bind_process: Any = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind_process is not None and name not in processors:
            processors[name] = bind_process
    constants = {}
    for name, value in expanded.parameters.items():
        if name in variables:
            continue
        process: Any = processors.get(name)
        constants[name] = process(value) if process is not None and value is not None else value
    order = tuple(expanded.positiontup) if compiled.positional and expanded.positiontup else None
    return Compiled(
        expanded.statement,
        order,
        constants,
        {name: processors[name] for name in variables if name in processors},
    )


def fetch(
    conn: Any, dialect: Dialect, compiled: Compiled, values: Mapping[str, Any], many: bool = False
) -> Any:
    """Runs one statement: its row (or rows). (On PostgreSQL the hot connections are in
    autocommit mode: a lone SELECT opens no transaction and costs one round trip.)"""
    cursor = conn.cursor()
    try:
        cursor.execute(compiled.sql, compiled.params(values))
        return cursor.fetchall() if many else cursor.fetchone()
    finally:
        cursor.close()
