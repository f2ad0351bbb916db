"""Unit tests of the one path parser (domain/paths.py) and of version-name references
(service/resolve.parse_reference): every form, a round-trip property, and malformed
paths each rejected with the field named."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry_server.domain import names
from registry_server.domain.errors import InvalidArgument
from registry_server.domain.paths import (
    LATEST,
    MAX_PATH,
    ParsedPath,
    PathKind,
    Version,
    format_path,
    parse_path,
    reserved_project_id,
)
from registry_server.service.resolve import parse_reference

# --- every form -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "team/proj/art:v3",
            ParsedPath(PathKind.PROJECT_ARTIFACT, "team", "proj", "art", Version(3)),
        ),
        (
            "team/proj/art:prod",
            ParsedPath(PathKind.PROJECT_ARTIFACT, "team", "proj", "art", Version(alias="prod")),
        ),
        (
            "team/proj/art",
            ParsedPath(PathKind.PROJECT_ARTIFACT, "team", "proj", "art", Version(alias=LATEST)),
        ),
        (
            "team/proj/my model.v2:v0",
            ParsedPath(PathKind.PROJECT_ARTIFACT, "team", "proj", "my model.v2", Version(0)),
        ),
        (
            "team/model-registry/m:v1",
            ParsedPath(PathKind.LEGACY_MODEL, "team", "", "m", Version(1)),
        ),
        (
            "team/model-registry/m",
            ParsedPath(PathKind.LEGACY_MODEL, "team", "", "m", Version(alias=LATEST)),
        ),
        (
            "acme/wandb-registry-model/coll:staging",
            ParsedPath(
                PathKind.REGISTRY_COLLECTION, "acme", "model", "coll", Version(alias="staging")
            ),
        ),
        (
            "wandb-registry-model/coll:v12",
            ParsedPath(PathKind.REGISTRY_COLLECTION, "", "model", "coll", Version(12)),
        ),
        (
            "wandb-registry-team-mr-migrated/coll",
            ParsedPath(
                PathKind.REGISTRY_COLLECTION,
                "",
                "team-mr-migrated",
                "coll",
                Version(alias=LATEST),
            ),
        ),
        # a team may be called like a registry prefix: three parts make it a project path
        (
            "wandb-registry-x/proj/art:v1",
            ParsedPath(PathKind.PROJECT_ARTIFACT, "wandb-registry-x", "proj", "art", Version(1)),
        ),
    ],
)
def test_every_form(path: str, expected: ParsedPath) -> None:
    assert parse_path(path) == expected


def test_latest_is_the_default_version() -> None:
    for path in ("t/p/a", "t/model-registry/m", "o/wandb-registry-r/c", "wandb-registry-r/c"):
        assert parse_path(path) == parse_path(f"{path}:latest")
        assert parse_path(path).format() == f"{path}:latest"


def test_reserved_project_ids() -> None:
    assert reserved_project_id("model-registry")
    assert reserved_project_id("wandb-registry-anything")
    assert not reserved_project_id("model-registry-2")
    assert not reserved_project_id("my-wandb-registry-x")


# --- malformed paths ------------------------------------------------------------------

MALFORMED = [
    "",
    "a",
    "a/b",
    "a/b/c/d",
    "/a/b",
    "a/b/",
    "a//c",
    "a/b/c:",
    ":v1",
    "a/b/c:v1:v2",
    "a/b/c:bad alias",
    "a/b/c:v1\n",
    "team\n/b/c",
    "a/b/c:prod\n",
    "a/b/c\t",
    "Team/b/c",
    "-team/b/c",
    "a/./c",
    "a/../c",
    "a/ b/c",
    "a/b/c ",
    "a/b#/c",
    "a/b/c?x",
    "a/b%20/c",
    "a/b/c~1",
    "a/b\\x/c",
    "a/wandb-registry-/c",
    "wandb-registry-/c",
    "wandb-registry-x/",
    "x/wandb-registry-y/z/w",
    "a/model-registry/",
    "a/b/" + "x" * 200,
    "a/b/c:" + "x" * 200,
    "a/b/" + "c" * MAX_PATH,
]


@pytest.mark.parametrize("path", MALFORMED)
def test_malformed_paths_are_rejected_naming_the_field(path: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_path(path, "source_path")
    assert err.value.field == "source_path"
    assert err.value.field_violations[0].field == "source_path"
    assert err.value.code == "INVALID_ARGUMENT"


# --- round trip (hypothesis) -----------------------------------------------------------


def _valid_resource_id(value: str) -> bool:
    try:
        names.resource_id(value, "x")
    except InvalidArgument:
        return False
    return True


principal_ids = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,30}", fullmatch=True)
resource_ids = st.text(
    st.characters(categories=("L", "N", "P", "S"), exclude_characters="/\\#?%:~") | st.just(" "),
    min_size=1,
    max_size=40,
).filter(_valid_resource_id)
project_ids = resource_ids.filter(lambda p: not reserved_project_id(p))
aliases = st.from_regex(r"[A-Za-z0-9_.-]{1,30}", fullmatch=True).filter(
    lambda a: not names.VERSION_TOKEN.fullmatch(a)
)
versions = st.one_of(
    st.integers(min_value=0, max_value=10**18 - 1).map(lambda n: Version(index=n)),
    aliases.map(lambda a: Version(alias=a)),
)
parsed_paths = st.one_of(
    st.builds(
        ParsedPath,
        st.just(PathKind.PROJECT_ARTIFACT),
        principal_ids,
        project_ids,
        resource_ids,
        versions,
    ),
    st.builds(
        ParsedPath,
        st.just(PathKind.LEGACY_MODEL),
        principal_ids,
        st.just(""),
        resource_ids,
        versions,
    ),
    st.builds(
        ParsedPath,
        st.just(PathKind.REGISTRY_COLLECTION),
        principal_ids | st.just(""),
        resource_ids,
        resource_ids,
        versions,
    ),
)


@settings(max_examples=400, deadline=None)
@given(parsed_paths)
def test_round_trip(parsed: ParsedPath) -> None:
    text = parsed.format()
    if len(text) > MAX_PATH:
        return
    again = parse_path(text)
    assert again == parsed
    assert again.format() == text  # format(parse(p)) == p
    assert format_path(again.kind, again.root, again.container, again.item, again.version) == text


@settings(max_examples=200, deadline=None)
@given(parsed_paths)
def test_round_trip_without_version_means_latest(parsed: ParsedPath) -> None:
    text = parsed.format().rsplit(":", 1)[0]
    if len(text) > MAX_PATH - len(":latest"):
        return
    assert parse_path(text) == parse_path(f"{text}:latest")
    assert parse_path(text).version == Version(alias=LATEST)


@settings(max_examples=300, deadline=None)
@given(parsed_paths, st.sampled_from(["\n", "\x00", "/", "//", ":", "::"]), st.data())
def test_corrupted_paths_fail_with_the_field_or_parse_to_something_else(
    parsed: ParsedPath, junk: str, data: st.DataObject
) -> None:
    """Inserting separators or control characters never yields the same path silently."""
    text = parsed.format()
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    broken = text[:at] + junk + text[at:]
    try:
        again = parse_path(broken, "p")
    except InvalidArgument as e:
        assert e.field == "p"
        return
    assert junk in ("/", "//", ":", "::") and again != parsed


# --- version names as references ------------------------------------------------------


def test_version_names_become_paths() -> None:
    assert parse_reference("teams/t/projects/p/artifacts/a/versions/3", "f") == ParsedPath(
        PathKind.PROJECT_ARTIFACT, "t", "p", "a", Version(3)
    )
    assert parse_reference("teams/t/registeredModels/m/versions/v2", "f") == ParsedPath(
        PathKind.LEGACY_MODEL, "t", "", "m", Version(2)
    )
    assert parse_reference(
        "organizations/o/registries/r/collections/c/versions/0", "f"
    ) == ParsedPath(PathKind.REGISTRY_COLLECTION, "o", "r", "c", Version(0))
    assert parse_reference("t/p/a:prod", "f") == parse_path("t/p/a:prod")
    for bad in (
        "teams/t/projects/p/artifacts/a",
        "teams/t/projects/p/artifacts/a/versions/x",
        "teams/t/registeredModels/m/versions/-1",
        "organizations/o/registries/r/collections/c",
        "teams/t\n/projects/p/artifacts/a/versions/1",
        "teams/a/b/c/d/e/f/g/h/i",
    ):
        with pytest.raises(InvalidArgument) as err:
            parse_reference(bad, "artifact_version")
        assert err.value.field == "artifact_version"
