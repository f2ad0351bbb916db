"""Alias moves are atomic: many clients moving the same alias at once leave it on exactly
one version, and every acknowledged move is observable, in order, in the event log.

Each of THREADS clients (a distinct user) alternates the alias between two versions of
its own, so every call is a real move; the event log must then hold exactly one event
per acknowledged call, chained (each move starts where the previous one ended), each
client's moves in the order it made them, and the alias must end where the last event
put it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from google.protobuf import field_mask_pb2
from sqlalchemy import func, select

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import resources_pb2 as r
from registry_server.storage import models as m

from .conftest import Person, ServerThread, World
from .test_artifacts import events_of, files, new_project

THREADS = 8
MOVES = 25


def run_clients(people: list[Person], move: Callable[[Person, int], None]) -> list[list[int]]:
    """Each client i moves the alias MOVES times, alternating versions 2i and 2i+1."""
    start = threading.Barrier(len(people))

    def client(i: int) -> list[int]:
        targets = [2 * i + (k % 2) for k in range(MOVES)]
        start.wait()
        for target in targets:
            move(people[i], target)  # raises if not acknowledged
        return targets

    with ThreadPoolExecutor(len(people)) as pool:
        return list(pool.map(client, range(len(people))))


def check_order(
    moves: list[tuple[str, int, int | None]],
    issued: dict[str, list[int]],
    initial: int | None,
) -> int:
    """moves: (actor, to, from) in cursor order. Returns where the alias ends."""
    assert len(moves) == sum(len(t) for t in issued.values())
    position = initial
    for actor, to, previous in moves:
        assert previous == position, (
            f"move to v{to} by {actor} started from v{previous}, not v{position}"
        )
        position = to
    by_actor: dict[str, list[int]] = {}
    for actor, to, _ in moves:
        by_actor.setdefault(actor, []).append(to)
    assert by_actor == issued
    assert position is not None
    return position


def test_concurrent_artifact_alias_moves(world: World, server: ServerThread) -> None:
    people = [world.person(f"mover{i}") for i in range(THREADS)]
    team = world.team("race", dict.fromkeys(people, r.TEAM_ROLE_MEMBER))
    project = new_project(world.admin, team)
    stubs = world.admin.stubs.artifacts
    versions = [
        stubs.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent=project,
                artifact_id="shared",
                type="model",
                manifest=files(f"f{i}"),
                aliases=["prod"] if i == 2 * THREADS else [],
            )
        )
        for i in range(2 * THREADS + 1)  # the last one holds `latest` (and `prod` at first)
    ]

    def move(person: Person, target: int) -> None:
        out = person.stubs.artifacts.UpdateArtifactVersion(
            apb.UpdateArtifactVersionRequest(
                artifact_version=r.ArtifactVersion(name=versions[target].name, aliases=["prod"]),
                update_mask=field_mask_pb2.FieldMask(paths=["aliases"]),
            )
        )
        assert list(out.aliases) == ["prod"]

    issued = run_clients(people, move)

    events = [
        e
        for e in events_of(server, world.org, "ARTIFACT_VERSION_UPDATED")
        if e.resource.startswith(f"{project}/artifacts/shared/")
    ]
    index_of = {v.name: v.version_index for v in versions}
    moves = [(e.actor, index_of[e.resource], e.details["moved_from"].get("prod")) for e in events]
    final = check_order(
        moves, {p.name: t for p, t in zip(people, issued, strict=True)}, 2 * THREADS
    )
    resolved = stubs.ResolvePath(
        apb.ResolvePathRequest(path=f"{team}/{project.split('/')[-1]}/shared:prod")
    )
    assert resolved.artifact_version.version_index == final
    with server.app.db.read() as s:
        rows = s.execute(
            select(func.count())
            .select_from(m.ArtifactAlias)
            .join(m.Artifact, m.Artifact.id == m.ArtifactAlias.artifact_id)
            .join(m.Project, m.Project.id == m.Artifact.project_id)
            .join(m.Team, m.Team.id == m.Project.team_id)
            .where(m.Team.name == team, m.ArtifactAlias.alias == "prod")
        ).scalar_one()
    assert rows == 1
    listed = stubs.ListArtifactVersions(
        apb.ListArtifactVersionsRequest(
            parent=f"{project}/artifacts/shared", filter='alias = "prod"'
        )
    )
    assert [v.version_index for v in listed.artifact_versions] == [final]


def test_concurrent_legacy_alias_moves(world: World, server: ServerThread) -> None:
    people = [world.person(f"mover{i}") for i in range(THREADS)]
    team = world.team("race", dict.fromkeys(people, r.TEAM_ROLE_MEMBER))
    project = new_project(world.admin, team)
    model = f"teams/{team}/registeredModels/race-model"
    for i in range(2 * THREADS):
        av = world.admin.stubs.artifacts.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent=project, artifact_id="net", type="model", manifest=files(f"f{i}")
            )
        )
        world.admin.stubs.legacy.LinkModelVersion(
            lpb.LinkModelVersionRequest(
                parent=f"teams/{team}", registered_model_id="race-model", artifact_version=av.name
            )
        )

    def move(person: Person, target: int) -> None:
        out = person.stubs.legacy.SetRegisteredModelAlias(
            lpb.SetRegisteredModelAliasRequest(
                registered_model=model, alias="champion", version_index=target
            )
        )
        assert out.version_index == target and "champion" in out.aliases

    issued = run_clients(people, move)

    events = [
        e
        for e in events_of(server, world.org, "LEGACY_ALIAS_SET")
        if e.resource.startswith(f"{model}/") and e.details["alias"] == "champion"
    ]
    moves = [
        (e.actor, e.details["version_index"], e.details["previous_version_index"]) for e in events
    ]
    final = check_order(moves, {p.name: t for p, t in zip(people, issued, strict=True)}, None)
    resolved = world.admin.stubs.artifacts.ResolvePath(
        apb.ResolvePathRequest(path=f"{team}/model-registry/race-model:champion")
    )
    assert resolved.registered_model_version.version_index == final
    with server.app.db.read() as s:
        rows = s.execute(
            select(func.count())
            .select_from(m.RegisteredModelAlias)
            .join(
                m.RegisteredModel,
                m.RegisteredModel.id == m.RegisteredModelAlias.registered_model_id,
            )
            .join(m.Team, m.Team.id == m.RegisteredModel.team_id)
            .where(m.Team.name == team, m.RegisteredModelAlias.alias == "champion")
        ).scalar_one()
    assert rows == 1
