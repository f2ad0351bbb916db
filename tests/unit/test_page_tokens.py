"""The page-token codec: any key round-trips; garbage is INVALID_ARGUMENT naming
`page_token`, never another error."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from registry_server.domain.errors import InvalidArgument
from registry_server.domain.pagination import decode_token, encode_token


@given(
    key=st.lists(st.one_of(st.integers(), st.text(max_size=10)), max_size=4),
    query=st.tuples(st.text(max_size=10)),
)
def test_page_tokens_round_trip(key: list[Any], query: tuple[str]) -> None:
    token = encode_token(tuple(key), query)
    assert decode_token(token, query, len(key)) == tuple(key)


@given(token=st.text(max_size=200))
def test_page_token_garbage_is_invalid_argument(token: str) -> None:
    try:
        decode_token(token, ("q",), 2)
    except InvalidArgument as e:
        assert e.field == "page_token"
