"""Names (SPEC section 2, "Names"), the pure parts: ids and aliases created under
W&B's rules round-trip through the path parser, and a message quotes at most ~200
characters of the caller's input."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registry_server.api.status import MESSAGE_MAX_BYTES, bounded
from registry_server.domain import names
from registry_server.domain.errors import QUOTE_MAX, quote, shorten
from registry_server.domain.paths import PathKind, Version, format_path, parse_path

_new_id = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", fullmatch=True)


_new_alias = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}", fullmatch=True).filter(
    lambda a: a != "latest" and not names.LOOKS_LIKE_VERSION.fullmatch(a)
)


@given(
    kind=st.sampled_from(list(PathKind)),
    root=st.from_regex(r"[a-z0-9][a-z0-9_\-]{0,20}", fullmatch=True),
    container=_new_id.filter(lambda c: c != "model-registry" and not c.startswith("wandb-")),
    item=_new_id,
    version=st.one_of(
        st.integers(min_value=0, max_value=10**6).map(lambda i: Version(index=i)),
        _new_alias.map(lambda a: Version(alias=a)),
    ),
)
def test_names_created_under_the_rules_round_trip_through_paths(
    kind: PathKind, root: str, container: str, item: str, version: Version
) -> None:
    for name in (container, item):
        assert names.new_id(name, "id") == name and names.resource_id(name, "id") == name
    if version.alias is not None:
        assert names.new_alias(version.alias, "alias") == version.alias
    container = "" if kind is PathKind.LEGACY_MODEL else container
    text = format_path(kind, root, container, item, version)
    if len(text) <= 512:
        parsed = parse_path(text)
        assert (parsed.kind, parsed.root, parsed.container, parsed.item, parsed.version) == (
            kind, root, container, item, version,
        )  # fmt: skip
        assert parsed.format() == text


def test_messages_quote_at_most_200_characters_of_the_input() -> None:
    assert quote("abc") == "'abc'"
    long = "x" * 20_000
    assert quote(long) == repr("x" * QUOTE_MAX) + f"...({20_000 - QUOTE_MAX} more)"
    assert shorten(long, 10) == "x" * 10 + "...(19990 more)"
    # the status guard bounds what anything raised, in UTF-8 bytes
    text = "\U0001f600" * 5000
    fitted = bounded(text, MESSAGE_MAX_BYTES)
    assert len(fitted.encode()) <= MESSAGE_MAX_BYTES and fitted.endswith("more)")
    assert bounded("short", MESSAGE_MAX_BYTES) == "short"
