"""Resource names (AIP-122) and identifier rules: one place for both.

Two rules per kind of name. What is created from now on (new ids and new aliases)
follows W&B's rules (`new_id`, `new_alias`); what is looked up (names in paths,
resource names, aliases to remove) only has to be well-formed (`resource_id`,
`alias`), so that names created under the older, looser rules keep working and
migrate unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import InvalidArgument, quote

# Organizations, users and teams are path roots: short, lowercase, URL-safe.
PRINCIPAL_ID = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})$")
# Well-formed ids of projects, artifacts, registered models, registries, collections
# (lookups): anything printable except the characters that break paths and URLs.
_FORBIDDEN = set("/\\#?%:~")
RESOURCE_ID_MAX = 128
ALIAS = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
VERSION_TOKEN = re.compile(r"^v(0|[1-9][0-9]{0,17})$")
ARTIFACT_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TAG_MAX = 128
TAGS_MAX = 100
# What is created from now on (W&B's rules): ASCII letters, digits, '-', '_' and '.',
# starting with a letter or digit; aliases are never `latest` by hand nor `v<digits>`.
NEW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
NEW_ALIAS_MAX = 64
LATEST = "latest"
LOOKS_LIKE_VERSION = re.compile(r"v[0-9]+")
# Aliases a version holds at most (`latest` aside): artifact versions, collection
# versions and legacy registered-model versions alike.
ALIASES_PER_VERSION = 100
_NEW_CHARACTERS = "ASCII letters, digits, '-', '_' or '.', starting with a letter or digit"


def principal_id(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not PRINCIPAL_ID.fullmatch(value):
        raise InvalidArgument(
            field,
            "must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit",
        )
    return value


def resource_id(value: str, field: str) -> str:
    """A well-formed id to look up (see `new_id` for one to create)."""
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > RESOURCE_ID_MAX:
        raise InvalidArgument(field, f"must be at most {RESOURCE_ID_MAX} characters")
    if value != value.strip() or value in (".", ".."):
        raise InvalidArgument(field, "must not start or end with spaces, nor be '.' or '..'")
    if value.isprintable() and _FORBIDDEN.isdisjoint(value):
        return value
    bad = sorted({c for c in value if c in _FORBIDDEN or not c.isprintable()})
    raise InvalidArgument(
        field,
        f"must not contain / \\ # ? % : ~ or control characters (found {quote(''.join(bad))})",
    )


def new_id(value: str, field: str) -> str:
    """The id of a registry, collection, project, artifact or registered model being
    created: 1-128 of ASCII letters, digits, '-', '_' and '.', starting with a letter
    or digit."""
    return _new_name(value, field, RESOURCE_ID_MAX)


def _new_name(value: str, field: str, max_len: int) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > max_len:
        raise InvalidArgument(field, f"must be at most {max_len} characters (got {len(value)})")
    if not NEW_ID.fullmatch(value):
        raise InvalidArgument(field, f"{quote(value)} must be {_NEW_CHARACTERS}")
    return value


def alias(value: str, field: str) -> str:
    """A well-formed alias to look up or remove (see `new_alias` for one to set)."""
    if not value:
        raise InvalidArgument(field, "is required")
    if not ALIAS.fullmatch(value):
        raise InvalidArgument(
            field, f"{quote(value)} must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', '-'"
        )
    if VERSION_TOKEN.fullmatch(value):
        raise InvalidArgument(field, f"{quote(value)} must not look like a version index (vN)")
    return value


def aliases(values: list[str] | tuple[str, ...], field: str) -> list[str]:
    """Well-formed aliases (lookups), without duplicates."""
    return _distinct(values, field, alias)


def _distinct(
    values: list[str] | tuple[str, ...], field: str, check: Callable[[str, str], str]
) -> list[str]:
    """`values` without duplicates, each checked by `check` naming `field[i]`."""
    out: list[str] = []
    for i, v in enumerate(values):
        check(v, f"{field}[{i}]")
        if v not in out:
            out.append(v)
    return out


def existing_alias(value: str, field: str) -> str:
    """An alias named to remove or to protect: well-formed (it may predate the rules of
    `new_alias`), and never `latest`, which moves to the newest version by itself."""
    alias(value, field)
    if value == LATEST:
        raise InvalidArgument(
            field,
            f"'{LATEST}' always points at the newest version: it cannot be set, removed or "
            "protected by hand",
        )
    return value


def existing_aliases(values: list[str] | tuple[str, ...], field: str) -> list[str]:
    """`existing_alias` each, without duplicates."""
    return _distinct(values, field, existing_alias)


def new_alias(value: str, field: str) -> str:
    """An alias being set by hand: 1-64 of ASCII letters, digits, '-', '_' and '.',
    starting with a letter or digit; never `latest` (it moves to the newest version by
    itself) nor `v<digits>` (a version index)."""
    _new_name(value, field, NEW_ALIAS_MAX)
    if value == LATEST:
        raise InvalidArgument(
            field, f"'{LATEST}' moves to the newest version by itself and cannot be set by hand"
        )
    if LOOKS_LIKE_VERSION.fullmatch(value):
        raise InvalidArgument(field, f"{quote(value)} looks like a version index (vN)")
    return value


def new_aliases(values: list[str] | tuple[str, ...], field: str) -> list[str]:
    """Aliases being set by hand (`new_alias` each), without duplicates; at most
    ALIASES_PER_VERSION in one request."""
    if len(values) > ALIASES_PER_VERSION:
        raise InvalidArgument(field, f"at most {ALIASES_PER_VERSION} aliases (got {len(values)})")
    return _distinct(values, field, new_alias)


def check_alias_count(count: int, field: str, what: str) -> None:
    """INVALID_ARGUMENT (TOO_MANY_ALIASES) when `what` would hold more than
    ALIASES_PER_VERSION aliases (`count`, `latest` aside)."""
    if count > ALIASES_PER_VERSION:
        raise InvalidArgument(
            field,
            f"{what} would hold {count} aliases; a version holds at most "
            f"{ALIASES_PER_VERSION} (besides '{LATEST}')",
            reason="TOO_MANY_ALIASES",
        )


def tag(value: str, field: str) -> str:
    if not value or len(value) > TAG_MAX or not value.isprintable() or value != value.strip():
        raise InvalidArgument(
            field, f"must be 1-{TAG_MAX} printable characters without edge spaces"
        )
    return value


def tags(values: list[str] | tuple[str, ...], field: str) -> list[str]:
    """Tags (`tag` each), without duplicates; at most TAGS_MAX."""
    if len(values) > TAGS_MAX:
        raise InvalidArgument(field, f"at most {TAGS_MAX} tags")
    return _distinct(values, field, tag)


def artifact_type(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not ARTIFACT_TYPE.fullmatch(value):
        raise InvalidArgument(field, "must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    return value


def text(value: str, field: str, max_len: int) -> str:
    if len(value) > max_len:
        raise InvalidArgument(field, f"must be at most {max_len} characters")
    return value


# --- resource names -----------------------------------------------------------------

_SEG = {
    "organizations": principal_id,
    "users": principal_id,
    "teams": principal_id,
}


def parse(name: str, pattern: str, field: str) -> dict[str, str]:
    """Parses `name` against `pattern` such as `organizations/{org}/registries/{registry}`.

    Collection names of the form `.../versions/{n}` accept `n` or `vN`. Returns the
    variables; raises INVALID_ARGUMENT naming `field` when the name does not match.
    """
    if not name:
        raise InvalidArgument(field, f"is required (expected {pattern})")
    parts = name.split("/")
    pat = pattern.split("/")
    if len(parts) != len(pat):
        raise InvalidArgument(field, f"{quote(name)} is not of the form {pattern}")
    out: dict[str, str] = {}
    collection = ""
    for part, p in zip(parts, pat, strict=True):
        if p.startswith("{"):
            var = p[1:-1]
            try:
                if collection in _SEG:
                    _SEG[collection](part, field)
                elif collection == "versions":
                    part = str(version_number(part, field))
                else:
                    resource_id(part, field)
            except InvalidArgument as e:
                why = e.field_violations[0].description
                raise InvalidArgument(
                    field, f"{quote(name)} is not of the form {pattern}: {p} {why}"
                ) from None
            out[var] = part
        elif part != p:
            raise InvalidArgument(field, f"{quote(name)} is not of the form {pattern}")
        collection = p
    return out


def version_number(token: str, field: str) -> int:
    """`3` or `v3` -> 3."""
    t = token[1:] if token.startswith("v") else token
    if not t.isdigit() or (len(t) > 1 and t[0] == "0") or len(t) > 18:
        raise InvalidArgument(field, f"{quote(token)} is not a version number (N or vN)")
    return int(t)


def org_name(org: str) -> str:
    return f"organizations/{org}"


def user_name(user: str) -> str:
    return f"users/{user}"


def team_name(team: str) -> str:
    return f"teams/{team}"


# --- resource name templates (AIP-122): every name the API returns is built here --------


def registry_name(org: str, registry: str) -> str:
    return f"organizations/{org}/registries/{registry}"


def collection_name(org: str, registry: str, collection: str) -> str:
    return f"organizations/{org}/registries/{registry}/collections/{collection}"


def collection_version_name(org: str, registry: str, collection: str, index: int) -> str:
    return f"organizations/{org}/registries/{registry}/collections/{collection}/versions/{index}"


def artifact_version_name(team: str, project: str, artifact: str, index: int) -> str:
    return f"teams/{team}/projects/{project}/artifacts/{artifact}/versions/{index}"


def model_name(team: str, model: str) -> str:
    return f"teams/{team}/registeredModels/{model}"


def model_version_name(team: str, model: str, index: int) -> str:
    return f"teams/{team}/registeredModels/{model}/versions/{index}"


def migration_name(org: str, uid: str) -> str:
    return f"organizations/{org}/migrations/{uid}"


def etag(revision: int) -> str:
    """A weak etag (AIP-154) of a row's revision counter."""
    return f'W/"{revision}"'


@dataclass(frozen=True)
class CollectionRef:
    """A collection by its organization's, registry's and own ids."""

    org: str
    registry: str
    collection: str

    @property
    def name(self) -> str:
        return collection_name(self.org, self.registry, self.collection)

    def version_name(self, index: int) -> str:
        return collection_version_name(self.org, self.registry, self.collection, index)
