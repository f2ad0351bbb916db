"""Content made through the API, as a client makes it: manifests, projects, artifact
versions, labs (a team with a project), registries, grants, links and aliases, and
the events an organization or registry lists."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import struct_pb2

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import event_service_pb2 as epb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs

from .world import Person, World, unique


def struct(data: dict[str, Any]) -> Any:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def files(*names: str, salt: str = "") -> list[r.ManifestEntry]:
    """Manifest entries with digests derived from the names (and salt)."""
    return [
        r.ManifestEntry(
            path=n,
            digest="sha256:" + hashlib.sha256(f"{salt}{n}".encode()).hexdigest(),
            size=len(n) + len(salt),
            ref=f"s3://bucket/{salt}{n}",
        )
        for n in names
    ]


def new_project(person: Person, team: str, project: str | None = None) -> str:
    project = project or unique("proj")
    return person.stubs.artifacts.CreateProject(
        apb.CreateProjectRequest(parent=f"teams/{team}", project_id=project)
    ).name


def log(
    person: Person,
    project: str,
    artifact: str,
    *,
    salt: str,
    type: str = "model",
    aliases: tuple[str, ...] = (),
    tags: tuple[str, ...] = (),
    metadata: dict[str, object] | None = None,
    run_id: str = "",
    names: tuple[str, ...] = ("model.pt", "config.json"),
) -> r.ArtifactVersion:
    md = struct_pb2.Struct()
    md.update(metadata or {})
    return person.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=project,
            artifact_id=artifact,
            type=type,
            manifest=files(*names, salt=salt),
            metadata=md,
            aliases=list(aliases),
            tags=list(tags),
            run_id=run_id,
        )
    )


@dataclass
class Lab:
    """A team with a project where its members log artifact versions."""

    team: str
    project: str
    owner: Person

    @property
    def parent(self) -> str:
        return f"teams/{self.team}/projects/{self.project}"


def make_lab(world: World, owner: Person, members: dict[Person, int] | None = None) -> Lab:
    team = world.team("lab", members or {}, owner=owner)
    project = unique("proj")
    owner.stubs.artifacts.CreateProject(
        apb.CreateProjectRequest(parent=f"teams/{team}", project_id=project)
    )
    return Lab(team, project, owner)


def log_version(
    lab: Lab,
    artifact: str = "resnet",
    *,
    type: str = "model",
    metadata: dict[str, Any] | None = None,
    by: Person | None = None,
) -> r.ArtifactVersion:
    """Logs a version with fresh content (so it is never deduplicated)."""
    meta = struct_pb2.Struct()
    meta.update(metadata or {})
    digest = "sha256:" + uuid.uuid4().hex * 2
    return (by or lab.owner).stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=lab.parent,
            artifact_id=artifact,
            type=type,
            manifest=[
                r.ManifestEntry(
                    path="weights.bin", digest=digest, size=123, ref="s3://bucket/weights.bin"
                )
            ],
            metadata=meta,
        )
    )


def create_registry(
    world: World,
    person: Person | None = None,
    *,
    visibility: int = r.VISIBILITY_RESTRICTED,
    types: Sequence[str] = ("model",),
    protected: Sequence[str] = (),
    allow_all: bool = False,
) -> str:
    return str(
        (person or world.admin)
        .stubs.registries.CreateRegistry(
            rpb.CreateRegistryRequest(
                parent=world.org_name,
                registry_id=unique("reg"),
                registry=r.Registry(
                    visibility=visibility,
                    artifact_types=list(types),
                    protected_aliases=list(protected),
                    allow_all_artifact_types=allow_all,
                ),
            )
        )
        .name
    )


def grant(world: World, registry: str, member: str, role: int) -> None:
    world.admin.stubs.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(registry=registry, member=member, role=role)
    )


def member_lab_and_registry(
    world: World, owner: Person, *, visibility: int = r.VISIBILITY_RESTRICTED
) -> tuple[Lab, str]:
    """A lab of `owner`'s to log versions in, and a new registry where `owner` is MEMBER."""
    lab = make_lab(world, owner)
    registry = create_registry(world, visibility=visibility)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    return lab, registry


def registry_path(registry: str, collection: str, version: str = "") -> str:
    """The short path of a collection (`version`: ":alias", ":v3" or "" for latest)."""
    return f"wandb-registry-{registry.rsplit('/', 1)[1]}/{collection}{version}"


def link(
    person: Person,
    registry: str,
    collection: str,
    source: str,
    aliases: Sequence[str] = (),
    *,
    tags: Sequence[str] = (),
    description: str = "",
    request_id: str = "",
) -> r.CollectionVersion:
    return person.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=registry,
            collection_id=collection,
            artifact_version=source,
            aliases=list(aliases),
            tags=list(tags),
            description=description,
            request_id=request_id,
        )
    )


def add_alias(
    person: Person, version: str, alias: str, expected: int | None = None
) -> r.CollectionVersion:
    req = cpb.AddAliasRequest(collection_version=version, alias=alias)
    if expected is not None:
        req.expected_version_index = expected
    return person.stubs.collections.AddAlias(req)


def list_events(stubs: Stubs, parent: str, filter: str = "", page_size: int = 0) -> list[r.Event]:
    out: list[r.Event] = []
    token = ""
    while True:
        page = stubs.events.ListEvents(
            epb.ListEventsRequest(
                parent=parent, filter=filter, page_size=page_size, page_token=token
            )
        )
        out.extend(page.events)
        token = page.next_page_token
        if not token:
            return out
