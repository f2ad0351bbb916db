"""AIP-160 list filters, parsed into a small AST (pure Python; SQL lives in storage).

Parsing happens once per request, before any SQL is built, so every syntax problem
becomes an INVALID_ARGUMENT with a 1-based character position instead of a database
error. Grammar::

    filter     = [ expr ]
    expr       = or_expr { "AND" or_expr }
    or_expr    = unary { "OR" unary }
    unary      = ( "NOT" | "-" ) unary | "(" expr ")" | comparison
    comparison = member op value
    member     = IDENT { "." ( SEGMENT | QUOTED ) }      e.g. metadata."key with space"
    op         = "=" | "!=" | "<" | "<=" | ">" | ">=" | ":"
    value      = QUOTED | NUMBER | "true" | "false" | BAREWORD

Precedence is AIP-160's: NOT (and its `-` prefix) binds tightest, then OR, then AND,
so `a AND b OR c` means `a AND (b OR c)` (a conjunction of alternatives); parentheses
express anything else. Implicit AND by juxtaposition (`a=1 b=2`) is rejected rather than
guessed. Keywords are case-sensitive (uppercase).

Values: single- or double-quoted strings with backslash escapes (\\\\ \\" \\' \\n \\r \\t),
64-bit integers, finite floats (`1.5`, `-2e3`), `true`/`false`, and bare words, which are
strings (`stage = prod`, `run = a/b/c`, `k : *`). Integers with leading zeros stay
strings (`007`). Timestamps are just strings here; storage interprets them per field.

Limits keep parsing and the generated SQL cheap: 2000 characters, nesting depth 32
(parentheses and NOT both count), 64 comparisons.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TypeAlias

from .errors import InvalidArgument, quote

MAX_FILTER_LENGTH = 2000
MAX_DEPTH = 32
MAX_COMPARISONS = 64

OPERATORS: tuple[str, ...] = ("=", "!=", "<", "<=", ">", ">=", ":")
# Longest first, so "<=" is not read as "<" followed by "=".
_LONGEST_FIRST = sorted(OPERATORS, key=len, reverse=True)
KEYWORDS = frozenset({"AND", "OR", "NOT"})

Value: TypeAlias = str | int | float | bool

_WHITESPACE = " \t\r\n"
_QUOTES = "\"'"
_WORD_EXTRA = "_.-*+/@~"
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "r": "\r", "t": "\t"}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+(?:[eE][+-]?[0-9]+)?|[eE][+-]?[0-9]+)")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Comparison:
    """`member op value`; `position` is the 1-based offset of the member in the text."""

    member: tuple[str, ...]
    op: str
    value: Value
    position: int


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr


Expr: TypeAlias = Comparison | And | Or | Not


def parse_filter(text: str, field: str = "filter") -> Expr | None:
    """Parses an AIP-160 filter; None when it is empty. Errors name `field`."""
    return _Parser(text, field).parse()


def filter_error(field: str, message: str, position: int) -> InvalidArgument:
    """`message` about the filter text at `position` (1-based)."""
    return InvalidArgument(field, f"{message} at position {position}")


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in _WORD_EXTRA


class _Parser:
    """Recursive descent straight over the characters: the lexical rules depend on
    context (member vs value, `-` as NOT vs sign), which a separate lexer would muddle."""

    def __init__(self, text: str, field: str) -> None:
        self.text = text
        self.field = field
        self.pos = 0  # 0-based; messages add 1
        self.depth = 0
        self.parens = 0
        self.comparisons = 0

    # --- helpers ---------------------------------------------------------------------

    def error(self, message: str, pos: int | None = None) -> InvalidArgument:
        return filter_error(self.field, message, (self.pos if pos is None else pos) + 1)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def char(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WHITESPACE:
            self.pos += 1

    def word(self) -> str:
        end = self.pos
        while end < len(self.text) and _is_word_char(self.text[end]):
            end += 1
        return self.text[self.pos : end]

    def keyword(self) -> str | None:
        """The keyword at the cursor (after whitespace), without consuming it."""
        self.skip_ws()
        w = self.word()
        return w if w in KEYWORDS else None

    def enter(self, pos: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"nesting is deeper than {MAX_DEPTH} levels", pos)

    def describe_here(self) -> str:
        if self.at_end():
            return "end of filter"
        w = self.word()
        return quote(w) if w else repr(self.char())

    # --- grammar ---------------------------------------------------------------------

    def parse(self) -> Expr | None:
        if len(self.text) > MAX_FILTER_LENGTH:
            raise self.error(
                f"is too long: at most {MAX_FILTER_LENGTH} characters", MAX_FILTER_LENGTH
            )
        for i, ch in enumerate(self.text):
            o = ord(ch)
            if (o < 32 and ch not in _WHITESPACE) or 0x7F <= o <= 0x9F or 0xD800 <= o <= 0xDFFF:
                raise self.error(f"invalid character U+{o:04X}", i)
        self.skip_ws()
        if self.at_end():
            return None
        expr = self.parse_and()
        self.skip_ws()
        if not self.at_end():  # only a stray ")" gets here: parse_and rejects the rest
            raise self.error("unexpected ')' without a matching '('")
        return expr

    def parse_and(self) -> Expr:
        items = [self.parse_or()]
        while True:
            kw = self.keyword()
            if kw == "AND":
                self.pos += 3
                items.append(self.parse_or())
                continue
            if self.at_end() or self.char() == ")":
                break
            expected = "AND, OR or ')'" if self.parens else "AND, OR or end of filter"
            hint = "implicit AND by juxtaposition is not supported, join terms with AND"
            if self.word().upper() in KEYWORDS:
                hint = "AND, OR and NOT must be uppercase"
            raise self.error(f"expected {expected}, got {self.describe_here()} ({hint})")
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_or(self) -> Expr:
        items = [self.parse_unary()]
        while self.keyword() == "OR":
            self.pos += 2
            items.append(self.parse_unary())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_unary(self) -> Expr:
        kw = self.keyword()
        start = self.pos
        if kw == "NOT" or self.char() == "-":
            self.pos += 3 if kw == "NOT" else 1
            self.enter(start)
            item = self.parse_unary()
            self.depth -= 1
            return Not(item)
        if kw is not None:
            raise self.error(f"expected a comparison or '(', got keyword {kw}")
        if self.char() == "(":
            self.pos += 1
            self.enter(start)
            self.parens += 1
            expr = self.parse_and()
            self.skip_ws()
            if self.char() != ")":
                raise self.error(
                    f"expected ')' to close the '(' at position {start + 1}, "
                    f"got {self.describe_here()}"
                )
            self.pos += 1
            self.parens -= 1
            self.depth -= 1
            return expr
        return self.parse_comparison()

    def parse_comparison(self) -> Comparison:
        start = self.pos
        member = self.parse_member()
        self.skip_ws()
        op = self.parse_op()
        self.skip_ws()
        value = self.parse_value()
        self.comparisons += 1
        if self.comparisons > MAX_COMPARISONS:
            raise self.error(f"too many comparisons (at most {MAX_COMPARISONS})", start)
        return Comparison(member, op, value, start + 1)

    def parse_member(self) -> tuple[str, ...]:
        m = _IDENT.match(self.text, self.pos)
        if m is None:
            raise self.error(f"expected a field name, got {self.describe_here()}")
        if m.group() in KEYWORDS:
            raise self.error(f"expected a field name, got keyword {m.group()}")
        parts = [m.group()]
        self.pos = m.end()
        while self.char() == ".":
            self.pos += 1
            if self.char() and self.char() in _QUOTES:
                parts.append(self.parse_string())
                continue
            seg = _SEGMENT.match(self.text, self.pos)
            if seg is None:
                raise self.error(f"expected a field name after '.', got {self.describe_here()}")
            parts.append(seg.group())
            self.pos = seg.end()
        return tuple(parts)

    def parse_op(self) -> str:
        for op in _LONGEST_FIRST:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                return op
        raise self.error(
            f"expected a comparison operator ({', '.join(OPERATORS)}), got {self.describe_here()}"
        )

    def parse_value(self) -> Value:
        ch = self.char()
        if ch and ch in _QUOTES:
            return self.parse_string()
        w = self.word()
        if not w:
            raise self.error(f"expected a value, got {self.describe_here()}")
        if w in KEYWORDS:
            raise self.error(f"expected a value, got keyword {w} (quote it to compare the text)")
        start = self.pos
        self.pos += len(w)
        if w in ("true", "false"):
            return w == "true"
        if _INT.fullmatch(w):
            n = int(w)
            if not _INT64_MIN <= n <= _INT64_MAX:
                raise self.error("integer out of the 64-bit range", start)
            return n
        if _FLOAT.fullmatch(w):
            f = float(w)
            if f in (float("inf"), float("-inf")):
                raise self.error("number out of range", start)
            return f
        return w

    def parse_string(self) -> str:
        quote = self.char()
        start = self.pos
        self.pos += 1
        out: list[str] = []
        while True:
            if self.at_end():
                raise self.error("unterminated string starting", start)
            ch = self.text[self.pos]
            if ch == quote:
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                nxt = self.text[self.pos + 1] if self.pos + 1 < len(self.text) else ""
                if not nxt:
                    raise self.error("unterminated string starting", start)
                if nxt not in _ESCAPES:
                    raise self.error(f"invalid escape sequence '\\{nxt}'")
                out.append(_ESCAPES[nxt])
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
