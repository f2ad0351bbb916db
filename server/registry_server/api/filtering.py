"""`filter` strings of list methods: AIP-160 parsed once, compiled to SQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, true

from ..domain.filters import parse_filter
from ..storage.filter_sql import FieldSpec, compile_filter

MAX_FILTER_LENGTH = 2000


def compile_list_filter(
    text: str,
    fields: Mapping[str, FieldSpec | tuple[str, Any]],
    dialect: str,
    field: str = "filter",
) -> ColumnElement[bool]:
    specs = {
        name: spec if isinstance(spec, FieldSpec) else FieldSpec(kind=spec[0], column=spec[1])
        for name, spec in fields.items()
    }
    expr = parse_filter(text, field)
    clause = compile_filter(expr, specs, dialect, field)
    return clause if clause is not None else true()
