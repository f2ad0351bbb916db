"""Compile a parsed AIP-160 filter (`domain.filters`) into a SQLAlchemy boolean expression.

Each list endpoint declares which members it accepts with a `FieldSpec` map; anything
else is INVALID_ARGUMENT, so a filter can never reach a column it was not meant to.
All user values (including metadata keys) travel as bind parameters, never as SQL text.

Every comparison compiles to a two-valued predicate (never SQL NULL): a missing
metadata key, a NULL column or a JSON value of another type makes the comparison false,
so `!=` and `NOT` are exact complements of `=` (`metadata.k != 1` also matches rows
without `k`; `tag != "x"` matches rows whose tags lack "x").
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal, cast, get_args

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

from ..domain.errors import InvalidArgument, quote
from ..domain.filters import (
    OPERATORS,
    And,
    Comparison,
    Expr,
    Not,
    Or,
    Value,
    filter_error,
    parse_filter,
)

Kind = Literal["string", "int", "bool", "time", "tags", "json_map", "alias"]

_ALL = frozenset(OPERATORS)
_ORDERED = frozenset({"=", "!=", "<", "<=", ">", ">="})
_EQUALITY = frozenset({"=", "!=", ":"})
DEFAULT_OPS: Mapping[str, frozenset[str]] = {
    "string": _ALL,
    "int": _ORDERED,
    "time": _ORDERED,
    "bool": frozenset({"=", "!="}),
    "tags": _EQUALITY,
    "json_map": _ALL,
    "alias": _EQUALITY,
}
SUPPORTED_DIALECTS = frozenset({"sqlite", "postgresql"})
METADATA_KEY_MAX = 128

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def held_alias(alias_table: Any, version_table: Any) -> Callable[[str, str], Any]:
    """The builder of an "alias" field of versions whose aliases `alias_table` (an ORM
    class with `version_id` and `alias`) holds: the version holds the alias (`=`) or
    not (`!=`)."""

    def build(value: str, op: str) -> Any:
        has = sa.exists().where(
            alias_table.version_id == version_table.id, alias_table.alias == value
        )
        return ~has if op == "!=" else has

    return build


@dataclass(frozen=True)
class FieldSpec:
    """How one filter member maps to SQL.

    `column` is a Column / ORM attribute / ColumnElement (all kinds but "alias").
    "json_map" is registered under its prefix (e.g. "metadata") and matches members
    `metadata.KEY`. "alias" calls `builder(value, op)` with op "=" or "!=" (":" arrives
    as "=") and uses the returned boolean expression (typically `[~]exists(...)`) as is.
    `ops` narrows or widens the operators accepted; default depends on `kind`.
    """

    kind: Kind
    column: Any = None
    builder: Callable[..., Any] | None = None
    ops: frozenset[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(Kind):
            raise ValueError(f"unknown FieldSpec kind {self.kind!r}")
        if self.kind == "alias" and self.builder is None:
            raise ValueError("FieldSpec(kind='alias') needs a builder")
        if self.kind != "alias" and self.column is None:
            raise ValueError(f"FieldSpec(kind={self.kind!r}) needs a column")
        if self.ops is not None and not self.ops <= _ALL:
            raise ValueError(f"unknown operators {sorted(self.ops - _ALL)}")

    @property
    def allowed_ops(self) -> frozenset[str]:
        return self.ops if self.ops is not None else DEFAULT_OPS[self.kind]


def filter_of(s: Any, text: str, fields: Mapping[str, FieldSpec]) -> ColumnElement[bool] | None:
    """A list request's `filter` (AIP-160 text) compiled for `fields` in the dialect of
    the session `s`; None for no filter."""
    return compile_filter(parse_filter(text, "filter"), fields, s.get_bind().dialect.name)


def filtered(stmt: Any, clause: ColumnElement[bool] | None) -> Any:
    """`stmt` narrowed by `clause` (a `filter_of`), when there is one."""
    return stmt if clause is None else stmt.where(clause)


def compile_filter(
    expr: Expr | None,
    fields: Mapping[str, FieldSpec],
    dialect_name: str,
    field: str = "filter",
) -> ColumnElement[bool] | None:
    """The WHERE clause for `expr` (None for no filter). Errors name `field`."""
    if dialect_name not in SUPPORTED_DIALECTS:
        raise ValueError(f"unsupported dialect {dialect_name!r}")
    if expr is None:
        return None
    return _Compiler(fields, dialect_name, field).compile(expr)


def parse_rfc3339_micros(text: str, field: str = "filter", position: int = 0) -> int:
    """RFC 3339 timestamp -> integer microseconds since the epoch (the schema's unit)."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise filter_error(
            field, "expected an RFC 3339 timestamp such as 2024-01-01T00:00:00Z", position
        )
    y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
    try:
        tz = UTC
        if not z:
            if int(om) > 59:
                raise ValueError(om)
            offset = timedelta(hours=int(oh), minutes=int(om))
            tz = timezone(-offset if sign == "-" else offset)
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=tz)
    except ValueError:
        raise filter_error(field, "expected a valid RFC 3339 date and time", position) from None
    micros = int(((frac or "") + "000000")[:6])
    return (dt - _EPOCH) // timedelta(microseconds=1) + micros


def _nullable(column: Any) -> bool:
    """Whether NULL must be handled; unknown expressions are assumed nullable."""
    for candidate in (column, getattr(column, "expression", None)):
        nullable = getattr(candidate, "nullable", None)
        if isinstance(nullable, bool):
            return nullable
    return True


def _int64(value: int) -> Any:
    """Bound as BIGINT: PostgreSQL would otherwise cast it to the column's type (maybe
    INTEGER) and fail with "out of range" instead of just not matching."""
    return sa.literal(value, sa.BigInteger())


def _like_contains(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_COMPARE: Mapping[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _ordered(left: Any, op: str, right: Any) -> ColumnElement[bool]:
    return cast(ColumnElement[bool], _COMPARE[op](left, right))


class _Compiler:
    def __init__(self, fields: Mapping[str, FieldSpec], dialect: str, field: str) -> None:
        self.fields = fields
        self.pg = dialect == "postgresql"
        self.field = field

    def compile(self, expr: Expr) -> ColumnElement[bool]:
        if isinstance(expr, Comparison):
            return self.comparison(expr)
        if isinstance(expr, And):
            return sa.and_(*(self.compile(i) for i in expr.items))
        if isinstance(expr, Or):
            return sa.or_(*(self.compile(i) for i in expr.items))
        if isinstance(expr, Not):
            return sa.not_(self.compile(expr.item))
        raise TypeError(f"not a filter expression: {expr!r}")

    # --- resolution and value checks -----------------------------------------------

    def error(self, c: Comparison, message: str) -> InvalidArgument:
        return filter_error(self.field, message, c.position)

    def resolve(self, c: Comparison) -> tuple[str, FieldSpec, str | None]:
        """(display name, spec, metadata key or None)."""
        # Exact names first ("create_time", "owner.name"), unless a quoted part has a dot.
        if all("." not in part for part in c.member):
            name = ".".join(c.member)
            spec = self.fields.get(name)
            if spec is not None and spec.kind != "json_map":
                return name, spec, None
        head = c.member[0]
        spec = self.fields.get(head)
        if spec is not None and spec.kind == "json_map":
            if len(c.member) == 1:
                raise self.error(c, f"field '{head}' needs a key, as in {head}.<key>")
            if len(c.member) > 2:
                raise self.error(
                    c,
                    f"nested keys are not supported in '{head}'; "
                    f'quote a key that contains dots, as in {head}."a.b"',
                )
            return head, spec, self.check_key(c, c.member[1])
        allowed = ", ".join(
            f"{n}.<key>" if s.kind == "json_map" else n for n, s in sorted(self.fields.items())
        )
        raise InvalidArgument(
            self.field,
            f"unknown field {quote('.'.join(c.member))} at position {c.position}; "
            f"allowed: {allowed or '(none)'}",
        )

    def check_key(self, c: Comparison, key: str) -> str:
        if not 1 <= len(key) <= METADATA_KEY_MAX or any(
            ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F for ch in key
        ):
            raise self.error(
                c,
                f"invalid key {quote(key)}: must be 1-{METADATA_KEY_MAX} characters "
                "without control characters",
            )
        return key

    def text_value(self, c: Comparison, name: str) -> str:
        v = c.value
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            raise self.error(c, f"field '{name}' expects a string; quote the value")
        return v

    # --- comparisons ---------------------------------------------------------------

    def comparison(self, c: Comparison) -> ColumnElement[bool]:
        name, spec, key = self.resolve(c)
        if c.op not in spec.allowed_ops:
            allowed = " ".join(op for op in OPERATORS if op in spec.allowed_ops)
            raise self.error(
                c, f"operator '{c.op}' is not supported for field '{name}' (use one of {allowed})"
            )
        kind = spec.kind
        if kind == "string":
            text = self.text_value(c, name)
            if c.op == ":":
                return self.null_safe(
                    spec.column, "=", spec.column.ilike(_like_contains(text), escape="\\")
                )
            return self.column_compare(spec.column, c.op, text)
        if kind == "int":
            if isinstance(c.value, bool) or not isinstance(c.value, int):
                raise self.error(c, f"expected an integer for field '{name}'")
            return self.column_compare(spec.column, c.op, _int64(c.value))
        if kind == "time":
            if not isinstance(c.value, str):
                raise self.error(
                    c,
                    'expected a quoted RFC 3339 timestamp such as "2024-01-01T00:00:00Z" '
                    f"for field '{name}'",
                )
            micros = parse_rfc3339_micros(c.value, self.field, c.position)
            return self.column_compare(spec.column, c.op, _int64(micros))
        if kind == "bool":
            if not isinstance(c.value, bool):
                raise self.error(c, f"expected true or false for field '{name}'")
            return self.column_compare(spec.column, c.op, c.value)
        if kind == "tags":
            has = self.tags_contain(spec.column, self.text_value(c, name))
            return sa.not_(has) if c.op == "!=" else has
        if kind == "alias":
            assert spec.builder is not None
            return cast(
                ColumnElement[bool],
                spec.builder(self.text_value(c, name), "!=" if c.op == "!=" else "="),
            )
        assert key is not None
        return self.json_compare(c, name, spec.column, key)

    def null_safe(self, column: Any, op: str, predicate: Any) -> ColumnElement[bool]:
        """TRUE/FALSE even when `column` is NULL (`!=` counts NULL as different)."""
        if not _nullable(column):
            return cast(ColumnElement[bool], predicate)
        if op == "!=":
            return sa.or_(column.is_(None), predicate)
        return sa.and_(column.is_not(None), predicate)

    def column_compare(self, column: Any, op: str, value: Any) -> ColumnElement[bool]:
        return self.null_safe(column, op, _ordered(column, op, value))

    def tags_contain(self, column: Any, value: str) -> ColumnElement[bool]:
        if self.pg:
            contains = sa.type_coerce(column, JSONB()).contains([value])
            return self.null_safe(column, "=", contains)
        each = sa.func.json_each(column).table_valued("value", "type")
        return (
            sa.select(sa.literal(1))
            .select_from(each)
            .where(each.c.type == "text", each.c.value == value)
            .exists()
        )

    def json_compare(self, c: Comparison, name: str, column: Any, key: str) -> ColumnElement[bool]:
        value: Value = c.value
        op = c.op
        if op == ":" and value == "*":
            return self.json_has_key(column, key)
        if op == ":" and not isinstance(value, str):
            op = "="  # `:` on a number or boolean is equality
        if isinstance(value, bool) and op not in ("=", "!="):
            raise self.error(c, f"operator '{op}' needs a number or a string, not {value}")
        if op == "!=":
            return sa.not_(self.json_predicate(column, key, "=", value))
        return self.json_predicate(column, key, op, value)

    def json_has_key(self, column: Any, key: str) -> ColumnElement[bool]:
        if self.pg:
            return self.null_safe(column, "=", sa.type_coerce(column, JSONB()).has_key(key))
        each = sa.func.json_each(column).table_valued("key")
        return sa.select(sa.literal(1)).select_from(each).where(each.c.key == key).exists()

    def json_predicate(self, column: Any, key: str, op: str, value: Value) -> ColumnElement[bool]:
        """`column[key] op value`, true only when the JSON value has the value's type."""
        if self.pg:
            return self.pg_json_predicate(column, key, op, value)
        each = sa.func.json_each(column).table_valued("key", "value", "type")
        if isinstance(value, bool):
            cond = each.c.type == ("true" if value else "false")
        elif isinstance(value, int | float):
            cond = sa.and_(each.c.type.in_(["integer", "real"]), _ordered(each.c.value, op, value))
        elif op == ":":
            cond = sa.and_(
                each.c.type == "text", each.c.value.ilike(_like_contains(value), escape="\\")
            )
        else:
            cond = sa.and_(each.c.type == "text", _ordered(each.c.value, op, value))
        return sa.select(sa.literal(1)).select_from(each).where(each.c.key == key, cond).exists()

    def pg_json_predicate(
        self, column: Any, key: str, op: str, value: Value
    ) -> ColumnElement[bool]:
        doc = sa.type_coerce(column, JSONB())
        # coalesce: a missing key gives NULL, and the predicate must stay two-valued.
        json_type = sa.func.coalesce(sa.func.jsonb_typeof(doc[key]), "")
        text = doc[key].astext
        if isinstance(value, bool):
            return sa.and_(json_type == "boolean", text == ("true" if value else "false"))
        if isinstance(value, int | float):
            # CASE, not AND, guards the cast: PostgreSQL may evaluate AND operands in any
            # order, and casting a JSON string would fail the whole query. NUMERIC (not
            # float) because jsonb numbers may exceed the float range.
            number = sa.case((json_type == "number", sa.cast(text, sa.Numeric())), else_=None)
            bound = sa.literal(
                Decimal(repr(value)) if isinstance(value, float) else Decimal(value), sa.Numeric()
            )
            return sa.and_(json_type == "number", _ordered(number, op, bound))
        if op == ":":
            return sa.and_(json_type == "string", text.ilike(_like_contains(value), escape="\\"))
        return sa.and_(json_type == "string", _ordered(text, op, value))
