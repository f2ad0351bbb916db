"""Turns what people type into the resource names the API takes.

The API speaks full resource names (`organizations/acme/registries/model`); people
type short forms (`model`, `model/resnet`, `acme/wandb-registry-model/resnet:v2`).
Only the shape is checked here; the server validates identifiers and answers
INVALID_ARGUMENT naming the field. Forms that need the caller's organization get
it from `org`, called only when needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .errors import invalid_argument

REGISTRY_PREFIX = "wandb-registry-"
_VERSION_INDEX = re.compile(r"^v(0|[1-9][0-9]*)$")

OrgSource = Callable[[], str]


def _segments(value: str, field: str) -> list[str]:
    if not value:
        raise invalid_argument(field, "is required")
    parts = value.split("/")
    if any(p == "" for p in parts):
        raise invalid_argument(field, f"{value!r}: empty path segment")
    return parts


def _strip_prefix(segment: str) -> str:
    return segment[len(REGISTRY_PREFIX) :] if segment.startswith(REGISTRY_PREFIX) else segment


def organization_name(value: str | None, org: OrgSource) -> str:
    """`acme` or `organizations/acme`; None = the caller's organization."""
    if not value:
        return f"organizations/{org()}"
    if value.startswith("organizations/"):
        parts = _segments(value, "organization")
        if len(parts) != 2:
            raise invalid_argument("organization", f"{value!r} is not organizations/ORG")
        return value
    _segments(value, "organization")
    if "/" in value:
        raise invalid_argument("organization", f"{value!r} is not an organization id")
    return f"organizations/{value}"


def registry_name(value: str, org: OrgSource, field: str = "registry") -> str:
    """`model`, `wandb-registry-model`, `acme/wandb-registry-model` or the full name."""
    parts = _segments(value, field)
    if parts[0] == "organizations":
        if len(parts) != 4 or parts[2] != "registries":
            raise invalid_argument(field, f"{value!r} is not organizations/ORG/registries/REGISTRY")
        return value
    if len(parts) == 1:
        return f"organizations/{org()}/registries/{_strip_prefix(parts[0])}"
    if len(parts) == 2 and parts[1].startswith(REGISTRY_PREFIX):
        return f"organizations/{parts[0]}/registries/{_strip_prefix(parts[1])}"
    raise invalid_argument(
        field, f"{value!r}: expected REGISTRY, ORG/wandb-registry-REGISTRY or a registry name"
    )


@dataclass(frozen=True)
class CollectionRef:
    registry: str  # organizations/{org}/registries/{r}
    collection_id: str

    @property
    def name(self) -> str:
        return f"{self.registry}/collections/{self.collection_id}"


def collection_ref(value: str, org: OrgSource, field: str = "collection") -> CollectionRef:
    """`model/resnet`, `wandb-registry-model/resnet`, `acme/wandb-registry-model/resnet`
    or `organizations/acme/registries/model/collections/resnet`."""
    if ":" in value:
        raise invalid_argument(field, f"{value!r}: a collection takes no ':version'")
    parts = _segments(value, field)
    if parts[0] == "organizations":
        if len(parts) != 6 or parts[2] != "registries" or parts[4] != "collections":
            raise invalid_argument(
                field, f"{value!r} is not organizations/ORG/registries/REGISTRY/collections/C"
            )
        return CollectionRef("/".join(parts[:4]), parts[5])
    if len(parts) == 2:
        registry = _strip_prefix(parts[0])
        return CollectionRef(f"organizations/{org()}/registries/{registry}", parts[1])
    if len(parts) == 3 and parts[1].startswith(REGISTRY_PREFIX):
        return CollectionRef(
            f"organizations/{parts[0]}/registries/{_strip_prefix(parts[1])}", parts[2]
        )
    raise invalid_argument(
        field,
        f"{value!r}: expected REGISTRY/COLLECTION, ORG/wandb-registry-REGISTRY/COLLECTION "
        "or a collection name",
    )


def expand_path(path: str) -> str:
    """Adds the `wandb-registry-` prefix to the short `REGISTRY/COLLECTION[:v]` form.

    Two-segment paths are otherwise only valid with the prefix, so this is unambiguous;
    every other form is passed through for the server to parse.
    """
    head, sep, version = path.partition(":")
    parts = head.split("/")
    if len(parts) == 2 and all(parts) and not parts[0].startswith(REGISTRY_PREFIX):
        head = f"{REGISTRY_PREFIX}{parts[0]}/{parts[1]}"
    return f"{head}{sep}{version}"


def is_resource_name(value: str) -> bool:
    return value.startswith(("organizations/", "teams/", "users/"))


@dataclass(frozen=True)
class CollectionVersionRef:
    """Either a resource name known without a call, or a path to resolve."""

    name: str = ""
    path: str = ""


def collection_version_ref(value: str, org: OrgSource, field: str) -> CollectionVersionRef:
    """`organizations/.../collections/c/versions/3`, or a path such as
    `model/resnet:v3` (named directly) or `model/resnet:production` (resolved)."""
    if value.startswith("organizations/"):
        parts = _segments(value, field)
        if len(parts) != 8 or parts[6] != "versions":
            raise invalid_argument(field, f"{value!r} is not a collection version name")
        return CollectionVersionRef(name=value)
    head, _, version = value.partition(":")
    if _VERSION_INDEX.match(version) and _looks_like_collection(head):
        collection = collection_ref(head, org, field)
        return CollectionVersionRef(name=f"{collection.name}/versions/{version[1:]}")
    # Aliases, `latest` and legacy paths (which may redirect) are resolved by the server.
    return CollectionVersionRef(path=expand_path(value))


def _looks_like_collection(head: str) -> bool:
    parts = head.split("/")
    if not all(parts):
        return False
    return len(parts) == 2 or (len(parts) == 3 and parts[1].startswith(REGISTRY_PREFIX))


def project_name(value: str, field: str = "project") -> str:
    """`team/project` or `teams/team/projects/project`."""
    parts = _segments(value, field)
    if parts[0] == "teams":
        if len(parts) != 4 or parts[2] != "projects":
            raise invalid_argument(field, f"{value!r} is not teams/TEAM/projects/PROJECT")
        return value
    if len(parts) != 2:
        raise invalid_argument(field, f"{value!r}: expected TEAM/PROJECT")
    return f"teams/{parts[0]}/projects/{parts[1]}"


def team_name(value: str, field: str = "team") -> str:
    """`team` or `teams/team`."""
    parts = _segments(value, field)
    if parts[0] == "teams" and len(parts) == 2:
        return value
    if len(parts) != 1:
        raise invalid_argument(field, f"{value!r}: expected TEAM or teams/TEAM")
    return f"teams/{value}"


def user_name(value: str, field: str = "user") -> str:
    """`alice` or `users/alice`."""
    parts = _segments(value, field)
    if parts[0] == "users" and len(parts) == 2:
        return value
    if len(parts) != 1:
        raise invalid_argument(field, f"{value!r}: expected USER or users/USER")
    return f"users/{value}"


def api_key_name(value: str, field: str = "name") -> str:
    """`alice/KEY_ID` or `users/alice/apiKeys/KEY_ID`."""
    parts = _segments(value, field)
    if parts[0] == "users":
        if len(parts) != 4 or parts[2] != "apiKeys":
            raise invalid_argument(field, f"{value!r} is not users/USER/apiKeys/KEY")
        return value
    if len(parts) != 2:
        raise invalid_argument(field, f"{value!r}: expected USER/KEY or users/USER/apiKeys/KEY")
    return f"users/{parts[0]}/apiKeys/{parts[1]}"


def member_name(value: str, field: str = "member") -> str:
    """`users/alice`, `teams/vision`, or a bare user id."""
    parts = _segments(value, field)
    if parts[0] in ("users", "teams") and len(parts) == 2:
        return value
    if len(parts) != 1:
        raise invalid_argument(field, f"{value!r}: expected users/USER or teams/TEAM")
    return f"users/{value}"


def registered_model_ref(value: str, field: str = "registered_model") -> tuple[str, str]:
    """(`teams/{team}`, model id) from `team/model`, `team/model-registry/model` or the name."""
    parts = _segments(value, field)
    if parts[0] == "teams":
        if len(parts) != 4 or parts[2] != "registeredModels":
            raise invalid_argument(field, f"{value!r} is not teams/TEAM/registeredModels/MODEL")
        return f"teams/{parts[1]}", parts[3]
    if len(parts) == 2:
        return f"teams/{parts[0]}", parts[1]
    if len(parts) == 3 and parts[1] == "model-registry":
        return f"teams/{parts[0]}", parts[2]
    raise invalid_argument(field, f"{value!r}: expected TEAM/MODEL or TEAM/model-registry/MODEL")


def migration_name(value: str, org: OrgSource, field: str = "migration") -> str:
    """A migration id in the caller's organization, or the full name."""
    parts = _segments(value, field)
    if parts[0] == "organizations":
        if len(parts) != 4 or parts[2] != "migrations":
            raise invalid_argument(field, f"{value!r} is not organizations/ORG/migrations/ID")
        return value
    if len(parts) != 1:
        raise invalid_argument(field, f"{value!r}: expected a migration id or name")
    return f"organizations/{org()}/migrations/{value}"


def events_parent(value: str | None, org: OrgSource) -> str:
    """None = the caller's organization; otherwise an organization or a registry."""
    if not value:
        return f"organizations/{org()}"
    parts = _segments(value, "parent")
    if parts[0] == "organizations" and len(parts) == 2:
        return value
    return registry_name(value, org, "parent")


def automation_parent(value: str, org: OrgSource, field: str = "parent") -> str:
    """A registry (`model`) or a collection (`model/resnet`), short or full."""
    parts = _segments(value, field)
    if parts[0] == "organizations":
        if len(parts) == 4:
            return registry_name(value, org, field)
        return collection_ref(value, org, field).name
    if len(parts) == 1 or (len(parts) == 2 and parts[1].startswith(REGISTRY_PREFIX)):
        return registry_name(value, org, field)
    return collection_ref(value, org, field).name


def automation_name(value: str, field: str = "name") -> str:
    """The full name an automation was given: `{registry or collection}/automations/{id}`."""
    parts = _segments(value, field)
    if parts[0] != "organizations" or len(parts) not in (6, 8) or parts[-2] != "automations":
        raise invalid_argument(
            field, f"{value!r} is not a registry's or collection's .../automations/ID name"
        )
    return value
