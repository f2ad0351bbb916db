"""Legacy Model Registries built through the API (a team with a project `train` and an
artifact `weights`, registered models, links, aliases, settings), and what they show:
every legacy path, a byte-for-byte snapshot, how a path resolves."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf.message import Message

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import resources_pb2 as r

from .content import struct
from .errors import OK
from .servers import ServerThread
from .world import Person, World, make_world


@dataclass
class LegacyTeam:
    """A team with a project `train` and an artifact `weights` of type model."""

    world: World
    id: str
    owner: Person
    versions: list[str] = field(default_factory=list)  # artifact version names

    @property
    def name(self) -> str:
        return f"teams/{self.id}"

    def log(self, n: int, *, by: Person | None = None) -> None:
        stubs = (by or self.owner).stubs
        if not self.versions:
            stubs.artifacts.CreateProject(
                apb.CreateProjectRequest(parent=self.name, project_id="train")
            )
        for _ in range(n):
            i = len(self.versions)
            av = stubs.artifacts.CreateArtifactVersion(
                apb.CreateArtifactVersionRequest(
                    parent=f"{self.name}/projects/train",
                    artifact_id="weights",
                    type="model",
                    manifest=[
                        r.ManifestEntry(
                            path="model.pt",
                            digest="sha256:"
                            + hashlib.sha256(f"{self.id}-{i}".encode()).hexdigest(),
                            size=10 + i,
                            ref="s3://bucket/model.pt",
                        )
                    ],
                    metadata=struct({"accuracy": 0.5 + i / 100, "step": i}),
                    description=f"weights #{i}",
                    run_id=f"run-{i}",
                )
            )
            self.versions.append(av.name)

    def model(self, model: str, description: str = "", tags: tuple[str, ...] = ()) -> None:
        self.owner.stubs.legacy.CreateRegisteredModel(
            lpb.CreateRegisteredModelRequest(
                parent=self.name,
                registered_model_id=model,
                description=description,
                tags=list(tags),
            )
        )

    def link(
        self,
        model: str,
        version: int,
        *aliases: str,
        by: Person | None = None,
        tags: tuple[str, ...] = (),
    ) -> r.RegisteredModelVersion:
        return (by or self.owner).stubs.legacy.LinkModelVersion(
            lpb.LinkModelVersionRequest(
                parent=self.name,
                registered_model_id=model,
                artifact_version=self.versions[version],
                aliases=list(aliases),
                tags=list(tags),
            )
        )

    def settings(self, protected: tuple[str, ...] = (), admins: tuple[Person, ...] = ()) -> None:
        self.owner.stubs.legacy.UpdateLegacyRegistrySettings(
            lpb.UpdateLegacyRegistrySettingsRequest(
                team=self.name,
                protected_aliases=list(protected),
                registry_admins=[p.name for p in admins],
            )
        )


def legacy_team(world: World, key: str, owner: Person, members: dict[Person, int]) -> LegacyTeam:
    return LegacyTeam(world, world.team(key, members, owner=owner), owner)


def legacy_only_world(
    server: ServerThread, root_stubs: Any
) -> tuple[World, LegacyTeam, LegacyTeam]:
    world = make_world(server, root_stubs)
    owner = world.person("owner")
    viewer = world.person("viewer")
    a = legacy_team(world, "ml", owner, {viewer: r.TEAM_ROLE_VIEWER})
    b = legacy_team(world, "cv", owner, {})
    for team in (a, b):
        team.log(3)
        team.settings(protected=("production",), admins=(viewer,) if team is a else ())
        team.model("resnet", "card", ("t",))
        team.link("resnet", 0, "production")
        team.link("resnet", 1, "staging", tags=("x",))
        team.link("bert", 2)
    return world, a, b


def legacy_paths(team: LegacyTeam, admin: Person) -> list[str]:
    """Every legacy path of the team: each version, each alias, and `latest`."""
    out: list[str] = []
    models = admin.stubs.legacy.ListRegisteredModels(
        lpb.ListRegisteredModelsRequest(parent=team.name, page_size=1000)
    ).registered_models
    for model in models:
        model_id = model.name.rsplit("/", 1)[-1]
        head = f"{team.id}/model-registry/{model_id}"
        out.append(f"{head}:latest")
        for v in list_model_versions(admin, model.name):
            out.append(f"{head}:v{v.version_index}")
            out.extend(f"{head}:{a}" for a in v.aliases)
    return out


def list_model_versions(person: Person, model: str) -> list[r.RegisteredModelVersion]:
    return list(
        person.stubs.legacy.ListRegisteredModelVersions(
            lpb.ListRegisteredModelVersionsRequest(parent=model, page_size=1000)
        ).registered_model_versions
    )


def legacy_snapshot(team: LegacyTeam, admin: Person) -> dict[str, Any]:
    """Everything the legacy registry shows, byte for byte."""
    stubs = admin.stubs
    models = stubs.legacy.ListRegisteredModels(
        lpb.ListRegisteredModelsRequest(parent=team.name, page_size=1000)
    ).registered_models
    snapshot: dict[str, Any] = {
        "settings": stubs.legacy.GetLegacyRegistrySettings(
            lpb.GetLegacyRegistrySettingsRequest(team=team.name)
        ).SerializeToString(deterministic=True),
        "models": [m.SerializeToString(deterministic=True) for m in models],
    }
    for model in models:
        snapshot[model.name] = [
            v.SerializeToString(deterministic=True) for v in list_model_versions(admin, model.name)
        ]
    for path in legacy_paths(team, admin):
        snapshot[path] = outcome(stubs.artifacts.ResolvePath, apb.ResolvePathRequest(path=path))
    return snapshot


def outcome(fn: Callable[[Any], Message], request: Message) -> tuple[grpc.StatusCode, bytes]:
    """(status, response bytes or b"") of a call, for exact comparisons."""
    try:
        return OK, fn(request).SerializeToString(deterministic=True)
    except grpc.RpcError as e:
        return e.code(), b""


def resolve(person: Person, path: str) -> tuple[grpc.StatusCode, str, bool, str]:
    """(status, artifact version, redirected, canonical path)."""
    try:
        found = person.stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=path))
    except grpc.RpcError as e:
        return e.code(), "", False, ""
    return OK, found.artifact_version.name, found.redirected, found.canonical_path
