"""Unit tests of the AIP-160 filter parser and its SQL compiler.

SQL tests run against in-memory SQLite and, when REGISTRY_TEST_POSTGRES_URL is set,
against PostgreSQL (temporary tables with unique names, dropped at the end), because the
two dialects compile tags and metadata comparisons very differently.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects.postgresql import JSONB

try:
    import registry_server  # noqa: F401
except ImportError:  # not installed: run from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))

from registry_server.domain.errors import InvalidArgument
from registry_server.domain.filters import (
    MAX_COMPARISONS,
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    And,
    Comparison,
    Expr,
    Not,
    Or,
    parse_filter,
)
from registry_server.storage.filter_sql import (
    FieldSpec,
    compile_filter,
    parse_rfc3339_micros,
)

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")
PG_URL = os.environ.get("REGISTRY_TEST_POSTGRES_URL", "")
HYPOTHESIS = settings(database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def c(*member: str, op: str = "=", value: Any = 1, position: int = 1) -> Comparison:
    return Comparison(tuple(member), op, value, position)


def strip_positions(expr: Expr | None) -> Expr:
    """The tree without positions, to compare structure only."""
    assert expr is not None
    if isinstance(expr, Comparison):
        return replace(expr, position=0)
    if isinstance(expr, Not):
        return Not(strip_positions(expr.item))
    items = tuple(strip_positions(i) for i in expr.items)
    return And(items) if isinstance(expr, And) else Or(items)


def parse_error(text: str, field: str = "filter") -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_filter(text, field)
    assert info.value.field == field
    return str(info.value.field_violations[0].description)


# --- parser: structure ---------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "   ", "\t\n\r "])
def test_empty_filter_is_none(text: str) -> None:
    assert parse_filter(text) is None


def test_single_comparison_and_position() -> None:
    assert parse_filter("  name = 'x'") == Comparison(("name",), "=", "x", 3)


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">=", ":"])
def test_every_operator(op: str) -> None:
    assert parse_filter(f"size{op}5") == c("size", op=op, value=5)
    assert parse_filter(f"size {op} 5") == c("size", op=op, value=5)


def test_or_binds_tighter_than_and_as_in_aip_160() -> None:
    a, b, d = (c(n, position=0) for n in "abd")
    assert strip_positions(parse_filter("a=1 OR b=1 AND d=1")) == And((Or((a, b)), d))
    assert strip_positions(parse_filter("a=1 AND b=1 OR d=1")) == And((a, Or((b, d))))
    assert strip_positions(parse_filter("(a=1 AND b=1) OR d=1")) == Or((And((a, b)), d))
    assert strip_positions(parse_filter("a=1 OR b=1 OR d=1")) == Or((a, b, d))


def test_not_binds_tightest() -> None:
    assert strip_positions(parse_filter("NOT a=1 AND b=1")) == And(
        (Not(c("a", position=0)), c("b", position=0))
    )
    assert strip_positions(parse_filter("-a=1 OR b=1")) == Or(
        (Not(c("a", position=0)), c("b", position=0))
    )


def test_parentheses_override_precedence() -> None:
    got = strip_positions(parse_filter("(a=1 OR b=1) AND NOT (d=1 OR e=1)"))
    a, b, d, e = (c(n, position=0) for n in "abde")
    assert got == And((Or((a, b)), Not(Or((d, e)))))


def test_chains_are_flat_and_redundant_parentheses_vanish() -> None:
    got = strip_positions(parse_filter("a=1 AND b=1 AND ((d=1))"))
    assert got == And(tuple(c(n, position=0) for n in "abd"))


@pytest.mark.parametrize(
    "text",
    ["NOT(a=1)", "NOT (a=1)", "-(a=1)", "- a=1", "NOT\na=1", "-a=1"],
)
def test_negation_forms(text: str) -> None:
    assert strip_positions(parse_filter(text)) == Not(c("a", position=0))


def test_double_negation_is_kept() -> None:
    got = strip_positions(parse_filter("NOT -a=1"))
    assert got == Not(Not(c("a", position=0)))


def test_keyword_boundaries() -> None:
    assert parse_filter("NOTE=1") == c("NOTE")
    assert parse_filter("ORDER=1") == c("ORDER")
    assert strip_positions(parse_filter('a="x"AND b=2')) == And(
        (c("a", value="x", position=0), c("b", value=2, position=0))
    )


# --- parser: members and values ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "member"),
    [
        ("metadata.accuracy = 1", ("metadata", "accuracy")),
        ('metadata."key with space" = 1', ("metadata", "key with space")),
        ("metadata.'a.b' = 1", ("metadata", "a.b")),
        ('metadata."q\\"uote" = 1', ("metadata", 'q"uote')),
        ("metadata.learning-rate = 1", ("metadata", "learning-rate")),
        ("metadata.2024 = 1", ("metadata", "2024")),
        ("_a.b.c = 1", ("_a", "b", "c")),
    ],
)
def test_members(text: str, member: tuple[str, ...]) -> None:
    got = parse_filter(text)
    assert isinstance(got, Comparison)
    assert got.member == member


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('"hello world"', "hello world"),
        ("'single'", "single"),
        ('"a\\"b"', 'a"b'),
        ("'it\\'s'", "it's"),
        ('"tab\\there"', "tab\there"),
        ('"line\\nbreak\\r"', "line\nbreak\r"),
        ('"back\\\\slash"', "back\\slash"),
        ('"it\'s"', "it's"),
        ("'say \"hi\"'", 'say "hi"'),
        ('""', ""),
        ('"2024-01-01T00:00:00Z"', "2024-01-01T00:00:00Z"),
        ('"42"', "42"),
        ("42", 42),
        ("-7", -7),
        ("0", 0),
        ("-0", 0),
        ("9223372036854775807", 2**63 - 1),
        ("-9223372036854775808", -(2**63)),
        ("1.5", 1.5),
        ("-0.25", -0.25),
        ("1e3", 1000.0),
        ("-2.5E-3", -0.0025),
        ("1e+2", 100.0),
        ("true", True),
        ("false", False),
        ("True", "True"),
        ("007", "007"),
        ("1.2.3", "1.2.3"),
        (".5", ".5"),
        ("prod", "prod"),
        ("my-model_v2", "my-model_v2"),
        ("entity/project/run", "entity/project/run"),
        ("*", "*"),
        ("-abc", "-abc"),
        ("naïve", "naïve"),
    ],
)
def test_values(literal: str, value: Any) -> None:
    got = parse_filter(f"a = {literal}")
    assert isinstance(got, Comparison)
    assert got.value == value
    assert type(got.value) is type(value)


def test_positions_are_one_based_character_offsets() -> None:
    text = 'a:"éé" OR (size > 2 AND NOT name:"x")'
    got = parse_filter(text)
    assert isinstance(got, Or)
    first, second = got.items
    assert isinstance(first, Comparison) and first.position == 1
    assert isinstance(second, And)
    size, neg = second.items
    assert isinstance(size, Comparison) and size.position == text.index("size") + 1 == 12
    assert isinstance(neg, Not) and isinstance(neg.item, Comparison)
    assert neg.item.position == text.index("name") + 1


# --- parser: errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment", "position"),
    [
        ("a=1 b=2", "implicit AND", 5),
        ("a=1 and b=2", "must be uppercase", 5),
        ("a=1 (b=2)", "implicit AND", 5),
        ("(a=1 b=2)", "expected AND, OR or ')'", 6),
        ("(a=1", "expected ')' to close the '(' at position 1", 5),
        ("((a=1)", "expected ')' to close the '(' at position 1", 7),
        ("a=1)", "unexpected ')'", 4),
        ("()", "expected a field name", 2),
        ("a=", "expected a value, got end of filter", 3),
        ("a==1", "expected a value", 3),
        ("a = (b)", "expected a value", 5),
        ("a", "expected a comparison operator", 2),
        ("a ! 1", "expected a comparison operator", 3),
        ("a =! 1", "expected a value", 4),
        ("a ~ 1", "expected a comparison operator", 3),
        ("= 1", "expected a field name", 1),
        ("1 = 1", "expected a field name", 1),
        ('"a" = 1', "expected a field name", 1),
        ("a. = 1", "expected a field name after '.'", 3),
        ("a.b. = 1", "expected a field name after '.'", 5),
        ("AND = 1", "keyword AND", 1),
        ("a=1 AND", "expected a field name, got end of filter", 8),
        ("a=1 OR OR b=1", "keyword OR", 8),
        ("NOT", "expected a field name", 4),
        ("NOT.x = 1", "keyword NOT", 1),
        ("a = AND", "keyword AND", 5),
        ("a = 'x", "unterminated string starting", 5),
        ('a = "x\\"', "unterminated string starting", 5),
        ('a = "x\\', "unterminated string starting", 5),
        ('a = "\\q"', "invalid escape sequence '\\q'", 6),
        ('metadata."x = 1', "unterminated string starting", 10),
        ("a = 9223372036854775808", "integer out of the 64-bit range", 5),
        ("a = -9223372036854775809", "integer out of the 64-bit range", 5),
        ("a = 1e400", "number out of range", 5),
        ("a = 1\x00", "invalid character U+0000", 6),
        ("a = '\x1b'", "invalid character U+001B", 6),
        ("a = '\ud800'", "invalid character U+D800", 6),
        ("a = 1 \u00a0", "expected AND, OR or end of filter", 7),
        ("a = 'x' 'y'", "implicit AND", 9),
    ],
)
def test_syntax_errors_name_the_position(text: str, fragment: str, position: int) -> None:
    description = parse_error(text)
    assert fragment in description
    assert description.endswith(f"at position {position}"), description


def test_error_names_the_request_field() -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_filter("a =", field="query")
    assert info.value.field == "query"
    assert info.value.message.startswith("query: ")
    assert info.value.code == "INVALID_ARGUMENT"


def test_length_limit() -> None:
    value = "x" * (MAX_FILTER_LENGTH - len('a = ""'))
    assert parse_filter(f'a = "{value}"') is not None
    assert parse_error(f'a = "{value}x"').endswith(f"at position {MAX_FILTER_LENGTH + 1}")


@pytest.mark.parametrize(
    "make",
    [
        lambda n: "(" * n + "a=1" + ")" * n,
        lambda n: "NOT " * n + "a=1",
        lambda n: "-" * n + "a=1",
        lambda n: "(NOT " * (n // 2) + "-" * (n % 2) + "a=1" + ")" * (n // 2),
    ],
)
def test_depth_limit(make: Callable[[int], str]) -> None:
    assert parse_filter(make(MAX_DEPTH)) is not None
    assert "nesting is deeper than 32 levels" in parse_error(make(MAX_DEPTH + 1))


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert "nesting" in parse_error("(" * 998 + "a=1" + ")" * 998)
    assert "nesting" in parse_error("-" * 1999 + "a")


def test_comparison_limit() -> None:
    ok = " AND ".join(["a=1"] * MAX_COMPARISONS)
    assert isinstance(parse_filter(ok), And)
    description = parse_error(ok + " OR b=1")
    assert "too many comparisons" in description
    assert description.endswith(f"at position {len(ok) + 5}")


# --- parser: properties --------------------------------------------------------------

_TOKENS = [
    "a", "metadata", "tag", ".", '"', "'", "\\", "(", ")", "AND", "OR", "NOT", "and", "-",
    "=", "!=", "<", "<=", ">", ">=", ":", "!", "*", "1", "-2.5e3", "1e999", "007", "true",
    " ", "\n", "x y", "\x00", "é", "\ud800", "99999999999999999999",
]  # fmt: skip


@HYPOTHESIS
@given(st.one_of(st.text(max_size=2100), st.lists(st.sampled_from(_TOKENS)).map("".join)))
def test_parser_only_raises_invalid_argument(text: str) -> None:
    try:
        parse_filter(text)
    except InvalidArgument as e:
        assert re.search(r"at position \d+$", e.field_violations[0].description)


_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT_RE = re.compile(r"[A-Za-z0-9_-]+")


def _quote(s: str) -> str:
    escaped = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\r", "\\r").replace("\t", "\\t") + '"'


def render(expr: Expr) -> str:
    """Filter text for an AST; parenthesised so that parsing gives the same tree."""
    if isinstance(expr, Comparison):
        member = expr.member[0] + "".join(
            "." + (p if _SEGMENT_RE.fullmatch(p) else _quote(p)) for p in expr.member[1:]
        )
        v = expr.value
        value = (
            ("true" if v else "false")
            if isinstance(v, bool)
            else _quote(v)
            if isinstance(v, str)
            else repr(v)
        )
        return f"{member} {expr.op} {value}"
    if isinstance(expr, Not):
        return f"NOT {render(expr.item)}"
    joiner = " AND " if isinstance(expr, And) else " OR "
    return "(" + joiner.join(render(i) for i in expr.items) + ")"


_text = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=12)
_values = st.one_of(
    _text | st.just(""),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
)
_comparisons = st.builds(
    Comparison,
    member=st.tuples(
        st.from_regex(_IDENT_RE, fullmatch=True).filter(lambda s: s not in ("AND", "OR", "NOT"))
    ).flatmap(lambda head: st.lists(_text, max_size=2).map(lambda rest: head + tuple(rest))),
    op=st.sampled_from(["=", "!=", "<", "<=", ">", ">=", ":"]),
    value=_values,
    position=st.just(0),
)


def depth(expr: Expr) -> int:
    """Nesting as the parser counts it: parentheses (And/Or as rendered) and NOT."""
    if isinstance(expr, Comparison):
        return 0
    if isinstance(expr, Not):
        return 1 + depth(expr.item)
    return 1 + max(depth(i) for i in expr.items)


def _trees(leaves: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.recursive(
        leaves,
        lambda sub: st.one_of(
            st.lists(sub, min_size=2, max_size=3).map(lambda xs: And(tuple(xs))),
            st.lists(sub, min_size=2, max_size=3).map(lambda xs: Or(tuple(xs))),
            sub.map(Not),
        ),
        max_leaves=8,
    )


@HYPOTHESIS
@given(_trees(_comparisons))
def test_render_then_parse_round_trips(expr: Expr) -> None:
    assume(depth(expr) <= MAX_DEPTH)
    got = parse_filter(render(expr))
    assert got is not None
    assert strip_positions(got) == expr


# --- RFC 3339 ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01.000001Z", 1_000_001),
        ("1970-01-01t00:00:00.5z", 500_000),
        ("1970-01-01 00:00:00.123456789Z", 123_456),
        ("1970-01-01T01:00:00+01:00", 0),
        ("1969-12-31T23:00:00-01:00", 0),
        ("1969-12-31T23:59:59.999999Z", -1),
        ("2024-02-29T12:00:00Z", 1_709_208_000_000_000),
        ("0001-01-01T00:00:00+01:00", -62_135_600_400_000_000),
        ("9999-12-31T23:59:59.999999-23:59", 253_402_387_139_999_999),
    ],
)
def test_rfc3339(text: str, micros: int) -> None:
    assert parse_rfc3339_micros(text) == micros


@pytest.mark.parametrize(
    "text",
    [
        "2024-01-01",
        "2024-01-01T00:00:00",
        "2024-02-30T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "0000-01-01T00:00:00Z",
        "2024-01-01T00:00:00+24:00",
        "2024-01-01T00:00:00+01:60",
        "2024-01-01T00:00:60Z",
        "yesterday",
        "\uff12\uff10\uff12\uff14-01-01T00:00:00Z",  # fullwidth digits,
    ],
)
def test_rfc3339_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="at position 7"):
        parse_rfc3339_micros(text, "filter", 7)


# --- SQL: schema, data, fixtures -----------------------------------------------------


def t(text: str) -> int:
    return int(parse_rfc3339_micros(text))


ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "name": "resnet-50",
        "size": 100,
        "create_time": t("2024-01-01T00:00:00Z"),
        "delete_time": None,
        "archived": False,
        "tags": ["prod", "vision"],
        "metadata": {
            "accuracy": 0.91,
            "epochs": 10,
            "stage": "prod",
            "ok": True,
            "a.b": 1,
            "with space": "x",
            'qu"ote': 7,
            "a') OR 1=1 --": "s",
        },
    },
    {
        "id": 2,
        "name": "bert_base",
        "size": 250,
        "create_time": t("2024-06-01T12:00:00Z"),
        "delete_time": t("2024-07-01T00:00:00Z"),
        "archived": True,
        "tags": ["nlp"],
        "metadata": {"accuracy": "high", "epochs": 3, "stage": "Staging", "ok": False},
    },
    {
        "id": 3,
        "name": "100%_model",
        "size": 0,
        "create_time": t("2023-12-31T23:59:59.5Z"),
        "delete_time": None,
        "archived": False,
        "tags": [],
        "metadata": {"accuracy": 0.5, "note": "50% off_x", "big": 10**30, "epochs": "ten"},
    },
    {
        "id": 4,
        "name": "Empty",
        "size": -5,
        "create_time": 0,
        "delete_time": None,
        "archived": False,
        "tags": ["prod"],
        "metadata": sa.null(),
    },
    {
        "id": 5,
        "name": "x",
        "size": 7,
        "create_time": t("2025-01-01T00:00:00+02:00"),
        "delete_time": None,
        "archived": False,
        "tags": ["vision", "nlp"],
        "metadata": {"list": [1, 2], "obj": {"a": 1}, "n": None, "stage": "prod"},
    },
]
ALL = [1, 2, 3, 4, 5]
ALIASES = [(1, "latest"), (1, "best"), (2, "staging")]


def make_tables(metadata: sa.MetaData, suffix: str, temporary: bool) -> tuple[sa.Table, ...]:
    prefixes = ["TEMPORARY"] if temporary else []
    items = sa.Table(
        f"filter_items_{suffix}",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("create_time", sa.BigInteger, nullable=False),
        sa.Column("delete_time", sa.BigInteger, nullable=True),
        sa.Column("archived", sa.Boolean, nullable=False),
        sa.Column("tags", JsonType, nullable=False),
        sa.Column("metadata", JsonType, nullable=True),
        prefixes=prefixes,
    )
    aliases = sa.Table(
        f"filter_aliases_{suffix}",
        metadata,
        sa.Column("item_id", sa.Integer, nullable=False),
        sa.Column("alias", sa.String(64), nullable=False),
        prefixes=prefixes,
    )
    return items, aliases


def make_fields(items: sa.Table, aliases: sa.Table) -> dict[str, FieldSpec]:
    def alias_builder(value: str, op: str) -> Any:
        exists = (
            sa.select(sa.literal(1))
            .where(aliases.c.item_id == items.c.id, aliases.c.alias == value)
            .exists()
        )
        return ~exists if op == "!=" else exists

    return {
        "name": FieldSpec("string", items.c.name),
        "size": FieldSpec("int", items.c.size),
        "create_time": FieldSpec("time", items.c.create_time),
        "delete_time": FieldSpec("time", items.c.delete_time),
        "archived": FieldSpec("bool", items.c.archived),
        "tag": FieldSpec("tags", items.c.tags),
        "metadata": FieldSpec("json_map", items.c.metadata),
        "alias": FieldSpec("alias", builder=alias_builder),
    }


@dataclass
class Db:
    conn: sa.Connection
    items: sa.Table
    fields: dict[str, FieldSpec]

    @property
    def dialect(self) -> str:
        return self.conn.dialect.name

    def ids(self, text: str) -> list[int]:
        where = compile_filter(parse_filter(text), self.fields, self.dialect)
        stmt = sa.select(self.items.c.id).order_by(self.items.c.id)
        if where is not None:
            stmt = stmt.where(where)
        try:
            return list(self.conn.execute(stmt).scalars())
        finally:
            self.conn.rollback()  # also clears an aborted PostgreSQL transaction


@pytest.fixture(
    scope="module",
    params=[
        "sqlite",
        pytest.param(
            "postgresql",
            marks=pytest.mark.skipif(not PG_URL, reason="REGISTRY_TEST_POSTGRES_URL not set"),
        ),
    ],
)
def db(request: pytest.FixtureRequest) -> Iterator[Db]:
    pg = request.param == "postgresql"
    engine = sa.create_engine(PG_URL if pg else "sqlite://")
    metadata = sa.MetaData()
    items, aliases = make_tables(metadata, uuid.uuid4().hex[:12], temporary=pg)
    conn = engine.connect()  # one connection: PostgreSQL temporary tables live in it
    try:
        metadata.create_all(conn)
        conn.execute(items.insert(), ROWS)
        conn.execute(aliases.insert(), [{"item_id": i, "alias": a} for i, a in ALIASES])
        conn.commit()
        yield Db(conn, items, make_fields(items, aliases))
    finally:
        conn.rollback()
        metadata.drop_all(conn)
        conn.commit()
        conn.close()
        engine.dispose()


# --- SQL: results --------------------------------------------------------------------

CASES: list[tuple[str, list[int]]] = [
    ("", ALL),
    # string
    ('name = "bert_base"', [2]),
    ("name = x", [5]),
    ('name != "bert_base"', [1, 3, 4, 5]),
    ("name = 100", []),
    ('name : "NET"', [1]),
    ('name : "%"', [3]),
    ('name : "_"', [2, 3]),
    ('name : "0%_"', [3]),
    ('name : "t_b"', [2]),
    ('name : "s%t"', []),
    ('name : ""', ALL),
    ('name >= "resnet"', [1, 5]),
    # int
    ("size > 50", [1, 2]),
    ("size <= 0", [3, 4]),
    ("size = -5", [4]),
    ("size != 100", [2, 3, 4, 5]),
    ("size >= 7 AND size < 250", [1, 5]),
    ("size < 9223372036854775807 AND size > -9223372036854775808", ALL),
    ("size = 4294967296", []),
    # time
    ('create_time >= "2024-01-01T00:00:00Z"', [1, 2, 5]),
    ('create_time < "2024-01-01T00:00:00Z"', [3, 4]),
    ('create_time > "2023-12-31T23:59:59.4Z"', [1, 2, 3, 5]),
    ('create_time = "2024-12-31T22:00:00Z"', [5]),
    ('create_time = "1970-01-01T00:00:00Z"', [4]),
    ('create_time <= "2024-01-01T01:00:00+01:00"', [1, 3, 4]),
    ('create_time > "0001-01-01T00:00:00Z" AND create_time < "9999-12-31T23:59:59Z"', ALL),
    # nullable time: NULL is "different" and never ordered
    ('delete_time > "2024-01-01T00:00:00Z"', [2]),
    ('delete_time != "2024-07-01T00:00:00Z"', [1, 3, 4, 5]),
    ('NOT delete_time > "2024-01-01T00:00:00Z"', [1, 3, 4, 5]),
    ('delete_time < "2030-01-01T00:00:00Z" OR delete_time >= "2030-01-01T00:00:00Z"', [2]),
    # bool
    ("archived = true", [2]),
    ("archived != true", [1, 3, 4, 5]),
    ("archived = false", [1, 3, 4, 5]),
    # tags
    ('tag = "prod"', [1, 4]),
    ("tag : prod", [1, 4]),
    ('tag != "prod"', [2, 3, 5]),
    ("tag = vision AND tag = nlp", [5]),
    ("-tag = nlp", [1, 3, 4]),
    ('tag = "pro"', []),
    ('tag = "PROD"', []),
    # metadata: numbers
    ("metadata.accuracy > 0.9", [1]),
    ("metadata.accuracy >= 0.5", [1, 3]),
    ("metadata.accuracy != 0.5", [1, 2, 4, 5]),
    ("metadata.epochs = 10", [1]),
    ("metadata.epochs = 10.0", [1]),
    ("metadata.epochs : 10", [1]),
    ("metadata.epochs < 5", [2]),
    ("metadata.big > 1e29", [3]),
    ("metadata.big > 0 AND metadata.big < 1e31", [3]),
    ('metadata."a.b" = 1', [1]),
    ('metadata."qu\\"ote" = 7', [1]),
    # metadata: strings
    ('metadata.accuracy = "high"', [2]),
    ('metadata.accuracy = "0.91"', []),
    ('metadata.epochs = "ten"', [3]),
    ("metadata.epochs = ten", [3]),
    ("metadata.stage = prod", [1, 5]),
    ('metadata.stage : "STAG"', [2]),
    ('metadata.note < "6"', [3]),
    ('metadata.note : "%"', [3]),
    ('metadata.note : "f_x"', [3]),
    ('metadata.note : "f%x"', []),
    ('metadata."with space" = x', [1]),
    # metadata: booleans
    ("metadata.ok = true", [1]),
    ("metadata.ok = false", [2]),
    ("metadata.ok : true", [1]),
    ("metadata.ok != true", [2, 3, 4, 5]),
    ('metadata.ok = "true"', []),
    # metadata: presence and other JSON types
    ("metadata.stage : *", [1, 2, 5]),
    ('metadata.stage : "*"', [1, 2, 5]),
    ("metadata.n : *", [5]),
    ("metadata.obj : *", [5]),
    ("NOT metadata.stage : *", [3, 4]),
    ("metadata.list = 1", []),
    ('metadata.obj = "x"', []),
    ("metadata.n = 0", []),
    ("metadata.missing != 1", ALL),
    ("metadata.accuracy > 0.9 OR metadata.epochs = ten", [1, 3]),
    # alias
    ("alias = latest", [1]),
    ("alias : staging", [2]),
    ("alias != latest", [2, 3, 4, 5]),
    ("alias = nope", []),
    ("alias = best AND alias = latest", [1]),
    # boolean structure and precedence
    ("tag = prod AND size > 50 OR name = x", [1]),  # AIP-160: OR binds tighter
    ("(tag = prod AND size > 50) OR name = x", [1, 5]),
    ("tag = prod AND (size > 50 OR name = x)", [1]),
    ("NOT (tag = prod OR (size > 200 AND NOT archived = false))", [3, 5]),
    ("-(-(tag = prod))", [1, 4]),
    ("NOT (metadata.epochs < 5 OR metadata.epochs > 5)", [3, 4, 5]),
    ("size < 0 OR size > 200 OR metadata.stage = prod", [1, 2, 4, 5]),
    # injection attempts: bound parameters, so they match nothing and do not error
    ('name = "x\' OR 1=1 --"', []),
    ("name = 'x\\' OR \\'1\\'=\\'1'", []),
    ('name : "%\' OR 1=1 --"', []),
    ('metadata."a\') OR 1=1 --" = 1', []),
    ('metadata."a\') OR 1=1 --" = s', [1]),
    ("metadata.\"' || 1 || '\" : *", []),
    ('metadata."$.x" = 1', []),
    ('metadata."\\"]\')); DROP TABLE x; --" = "y"', []),
    ('tag = "\\"]\') OR 1=1 --"', []),
    ("alias = \"x' OR '1'='1\"", []),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_filter_returns_exact_rows(db: Db, text: str, expected: list[int]) -> None:
    assert db.ids(text) == expected


def test_not_is_the_complement_of_every_case(db: Db) -> None:
    """Two-valued logic: NOT never drops rows where a comparison hit a NULL."""
    for text, expected in CASES:
        if text:
            assert db.ids(f"NOT ({text})") == [i for i in ALL if i not in expected], text


def test_data_survives_injection_attempts(db: Db) -> None:
    db.ids('metadata."x\'); DELETE FROM items; --" : *')
    assert db.ids("") == ALL


@HYPOTHESIS
@given(
    _trees(
        st.builds(
            Comparison,
            member=st.one_of(
                st.sampled_from(
                    [
                        *[("name",), ("size",), ("create_time",), ("delete_time",)],
                        *[("archived",), ("tag",), ("alias",), ("metadata",), ("nope",)],
                        ("metadata", "a", "b"),
                    ]
                ),
                _text.map(lambda k: ("metadata", k)),
            ),
            op=st.sampled_from(["=", "!=", "<", "<=", ">", ">=", ":"]),
            value=st.one_of(_values, st.sampled_from(["*", "2024-01-01T00:00:00Z"])),
            position=st.just(1),
        )
    )
)
def test_any_ast_compiles_and_runs_or_is_invalid_argument(db: Db, expr: Expr) -> None:
    assume(depth(expr) <= MAX_DEPTH)
    text = render(expr)
    with contextlib.suppress(InvalidArgument):
        db.ids(text)


# --- SQL: compile-time errors and API ------------------------------------------------

_STATIC_ITEMS, _STATIC_ALIASES = make_tables(sa.MetaData(), "static", temporary=False)
FIELDS = make_fields(_STATIC_ITEMS, _STATIC_ALIASES)


def compile_error(text: str, fields: dict[str, FieldSpec] | None = None) -> str:
    with pytest.raises(InvalidArgument) as info:
        compile_filter(
            parse_filter(text), FIELDS if fields is None else fields, "sqlite", field="filter"
        )
    assert info.value.field == "filter"
    return str(info.value.field_violations[0].description)


def test_unknown_field_lists_allowed_fields() -> None:
    assert compile_error("size = 1 AND owner = x") == (
        "unknown field 'owner' at position 14; allowed: alias, archived, create_time, "
        "delete_time, metadata.<key>, name, size, tag"
    )
    assert "unknown field 'name.x'" in compile_error("name.x = 1")
    assert "(none)" in compile_error("a = 1", {})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('size = "10"', "expected an integer for field 'size' at position 1"),
        ("size = 1.5", "expected an integer"),
        ("size = true", "expected an integer"),
        ("create_time > 5", "expected a quoted RFC 3339 timestamp"),
        ('create_time > "yesterday"', "expected an RFC 3339 timestamp"),
        ('create_time > "2024-02-30T00:00:00Z"', "valid RFC 3339 date"),
        ("archived = 1", "expected true or false for field 'archived'"),
        ("archived = yes", "expected true or false"),
        ("name = 1.5", "field 'name' expects a string; quote the value"),
        ("tag < x", "operator '<' is not supported for field 'tag' (use one of = != :)"),
        ("alias > a", "operator '>' is not supported for field 'alias'"),
        ("size : 1", "operator ':' is not supported for field 'size'"),
        ('create_time : "2024-01-01T00:00:00Z"', "operator ':' is not supported"),
        ("archived < true", "operator '<' is not supported"),
        ("metadata = 1", "field 'metadata' needs a key"),
        ("metadata.a.b = 1", "nested keys are not supported"),
        ('metadata."" = 1', "invalid key ''"),
        (f'metadata."{"k" * 129}" = 1', "must be 1-128 characters"),
        ("metadata.ok < true", "operator '<' needs a number or a string"),
    ],
)
def test_compile_errors(text: str, fragment: str) -> None:
    description = compile_error(text)
    assert fragment in description
    assert re.search(r"at position \d+", description)


def test_error_position_points_at_the_comparison() -> None:
    assert compile_error("size = 1 OR (tag = a AND size = x)").endswith("position 26")


def test_metadata_key_of_128_characters_is_fine() -> None:
    compile_filter(parse_filter(f'metadata."{"k" * 128}" = 1'), FIELDS, "sqlite")


def test_key_control_characters_rejected_even_in_hand_built_asts() -> None:
    with pytest.raises(InvalidArgument, match="invalid key"):
        compile_filter(c("metadata", "a\x00b", position=3), FIELDS, "sqlite")


def test_ops_override() -> None:
    fields = {"name": FieldSpec("string", _STATIC_ITEMS.c.name, ops=frozenset({"="}))}
    assert compile_filter(parse_filter("name = a"), fields, "sqlite") is not None
    assert "operator ':'" in compile_error("name : a", fields)


def test_exact_dotted_field_name_wins() -> None:
    fields = {"owner.name": FieldSpec("string", _STATIC_ITEMS.c.name)}
    assert compile_filter(parse_filter("owner.name = a"), fields, "sqlite") is not None
    assert "unknown field" in compile_error('owner."name" = a AND owner.x = 1', fields)


def test_none_and_dialect() -> None:
    assert compile_filter(None, FIELDS, "sqlite") is None
    with pytest.raises(ValueError):
        compile_filter(parse_filter("size = 1"), FIELDS, "mysql")


def test_fieldspec_validation() -> None:
    with pytest.raises(ValueError):
        FieldSpec("alias")
    with pytest.raises(ValueError):
        FieldSpec("string")
    with pytest.raises(ValueError):
        FieldSpec(cast(Any, "bogus"), _STATIC_ITEMS.c.name)
    with pytest.raises(ValueError):
        FieldSpec("string", _STATIC_ITEMS.c.name, ops=frozenset({"=="}))
    assert FieldSpec("tags", _STATIC_ITEMS.c.tags).allowed_ops == frozenset({"=", "!=", ":"})


def test_alias_builder_receives_normalised_op() -> None:
    calls: list[tuple[str, str]] = []

    def builder(value: str, op: str) -> Any:
        calls.append((value, op))
        return sa.true()

    fields = {"alias": FieldSpec("alias", builder=builder)}
    for text in ("alias = a", "alias : b", "alias != c", "alias = 7"):
        compile_filter(parse_filter(text), fields, "postgresql")
    assert calls == [("a", "="), ("b", "="), ("c", "!="), ("7", "=")]


def dialect_for(name: str) -> sa.Dialect:
    """A dialect to compile with, without a database or its driver."""
    return sa.create_mock_engine(f"{name}://", executor=lambda *a, **k: None).dialect


@pytest.mark.parametrize("dialect", [dialect_for("sqlite"), dialect_for("postgresql+psycopg")])
def test_user_text_is_bound_never_inlined(dialect: sa.Dialect) -> None:
    text = (
        'metadata."a\') OR 1=1 --" = 1 AND metadata."k\'x" : * AND '
        'metadata."z\'z" : "v\'v" AND name = "n\' OR 1=1" AND tag = "t\'--"'
    )
    where = compile_filter(parse_filter(text), FIELDS, dialect.name)
    assert where is not None
    sql = str(sa.select(_STATIC_ITEMS.c.id).where(where).compile(dialect=dialect))
    for fragment in ("OR 1=1", "k'x", "z'z", "v'v", "t'--"):
        assert fragment not in sql


def test_postgresql_numeric_comparison_is_guarded() -> None:
    where = compile_filter(parse_filter("metadata.a > 1"), FIELDS, "postgresql")
    assert where is not None
    sql = str(where.compile(dialect=dialect_for("postgresql+psycopg")))
    assert "jsonb_typeof" in sql
    assert re.search(r"CASE WHEN .* THEN CAST\(.* AS NUMERIC\) END", sql)
