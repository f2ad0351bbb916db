"""Resource names (AIP-122) and identifier rules: one place for both."""

from __future__ import annotations

import re

from .errors import InvalidArgument

# Organizations, users and teams are path roots: short, lowercase, URL-safe.
PRINCIPAL_ID = re.compile(r"^[a-z0-9](?:[a-z0-9_-]{0,62})$")
# Projects, artifacts, registered models, registries, collections: anything
# printable except the characters that break paths and URLs.
_FORBIDDEN = set("/\\#?%:~")
RESOURCE_ID_MAX = 128
ALIAS = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
VERSION_TOKEN = re.compile(r"^v(0|[1-9][0-9]{0,17})$")
ARTIFACT_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
TAG_MAX = 128
TAGS_MAX = 100


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
    if not value:
        raise InvalidArgument(field, "is required")
    if len(value) > RESOURCE_ID_MAX:
        raise InvalidArgument(field, f"must be at most {RESOURCE_ID_MAX} characters")
    if value != value.strip() or value in (".", ".."):
        raise InvalidArgument(field, "must not start or end with spaces, nor be '.' or '..'")
    bad = sorted({c for c in value if c in _FORBIDDEN or not c.isprintable()})
    if bad:
        raise InvalidArgument(
            field, f"must not contain / \\ # ? % : ~ or control characters (found {''.join(bad)!r})"
        )
    return value


def alias(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument(field, "is required")
    if not ALIAS.fullmatch(value):
        raise InvalidArgument(field, "must be 1-128 characters of A-Z, a-z, 0-9, '_', '.', '-'")
    if VERSION_TOKEN.fullmatch(value):
        raise InvalidArgument(field, "must not look like a version index (vN)")
    return value


def aliases(values: list[str] | tuple[str, ...], field: str) -> list[str]:
    out: list[str] = []
    for i, v in enumerate(values):
        alias(v, f"{field}[{i}]")
        if v not in out:
            out.append(v)
    return out


def tags(values: list[str] | tuple[str, ...], field: str) -> list[str]:
    if len(values) > TAGS_MAX:
        raise InvalidArgument(field, f"at most {TAGS_MAX} tags")
    out: list[str] = []
    for i, v in enumerate(values):
        if not v or len(v) > TAG_MAX or not v.isprintable() or v != v.strip():
            raise InvalidArgument(
                f"{field}[{i}]", f"must be 1-{TAG_MAX} printable characters without edge spaces"
            )
        if v not in out:
            out.append(v)
    return out


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
        raise InvalidArgument(field, f"{name!r} is not of the form {pattern}")
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
                    field, f"{name!r} is not of the form {pattern}: {p} {why}"
                ) from None
            out[var] = part
        elif part != p:
            raise InvalidArgument(field, f"{name!r} is not of the form {pattern}")
        collection = p
    return out


def version_number(token: str, field: str) -> int:
    """`3` or `v3` -> 3."""
    t = token[1:] if token.startswith("v") else token
    if not t.isdigit() or (len(t) > 1 and t[0] == "0") or len(t) > 18:
        raise InvalidArgument(field, f"{token!r} is not a version number (N or vN)")
    return int(t)


def org_name(org: str) -> str:
    return f"organizations/{org}"


def user_name(user: str) -> str:
    return f"users/{user}"


def team_name(team: str) -> str:
    return f"teams/{team}"
