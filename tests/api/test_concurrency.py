"""Alias moves are atomic: many clients moving the same alias at once leave it on exactly
one version, and every acknowledged move is observable, in order, in the event log. And
concurrent creates of one name: exactly one succeeds, every other answers ALREADY_EXISTS.

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

import grpc
import pytest
from google.protobuf import field_mask_pb2
from sqlalchemy import func, select

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import organization_service_pb2 as org_pb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_server.storage import models as m

from ..support.content import files, new_project
from ..support.errors import failure
from ..support.rows import events_of
from ..support.servers import ServerThread
from ..support.world import Person, World, unique

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


# --- concurrent creates of one name ---------------------------------------------------------


def race(calls: int, call: Callable[[], object]) -> list[str]:
    """Runs `call` from `calls` threads at once: "OK" or the status code name of each."""
    start = threading.Barrier(calls)

    def one(_: int) -> str:
        start.wait()
        try:
            call()
        except grpc.RpcError as exc:
            found = failure(exc)
            return f"{found.code.name}: {found.message}"
        return "OK"

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(one, range(calls)))


def _create_call(world: World, resource: str, name: str) -> Callable[[], object]:
    stubs = world.admin.stubs
    team = world.team("creators")
    calls: dict[str, Callable[[], object]] = {
        "registry": lambda: stubs.registries.CreateRegistry(
            rpb.CreateRegistryRequest(
                parent=world.org_name,
                registry_id=name,
                registry=r.Registry(allow_all_artifact_types=True),
            )
        ),
        "collection": lambda: stubs.collections.CreateCollection(
            cpb.CreateCollectionRequest(
                parent=f"{world.org_name}/registries/model",
                collection_id=name,
                collection=r.Collection(type="model"),
            )
        ),
        "project": lambda: stubs.artifacts.CreateProject(
            apb.CreateProjectRequest(parent=f"teams/{team}", project_id=name)
        ),
        "team": lambda: stubs.organizations.CreateTeam(
            org_pb.CreateTeamRequest(parent=world.org_name, team_id=name)
        ),
        "registered-model": lambda: stubs.legacy.CreateRegisteredModel(
            lpb.CreateRegisteredModelRequest(parent=f"teams/{team}", registered_model_id=name)
        ),
        "user": lambda: stubs.organizations.CreateUser(
            org_pb.CreateUserRequest(parent=world.org_name, user_id=name)
        ),
    }
    return calls[resource]


@pytest.mark.parametrize(
    "resource", ["registry", "collection", "project", "team", "registered-model", "user"]
)
def test_concurrent_creates_answer_already_exists_to_every_loser(
    world: World, resource: str
) -> None:
    """On PostgreSQL the losers' INSERTs wait for the winner's commit and meet the unique
    key; each then runs once more and its existence check answers ALREADY_EXISTS."""
    for _ in range(3):
        outcomes = race(THREADS, _create_call(world, resource, unique("same")))
        assert outcomes.count("OK") == 1, outcomes
        losers = [o for o in outcomes if o != "OK"]
        assert all(o.startswith("ALREADY_EXISTS: ") for o in losers), losers


def test_concurrent_logs_of_identical_content_reuse_one_version(world: World) -> None:
    """The same content logged at once to a new artifact: one version is created, every
    other call answers it, reused (identical content is not an error)."""
    team = world.team("creators")
    project = new_project(world.admin, team)
    name = unique("model")
    start = threading.Barrier(THREADS)

    def log(_: int) -> r.ArtifactVersion:
        start.wait()
        return world.admin.stubs.artifacts.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent=project, artifact_id=name, type="model", manifest=files("same")
            )
        )

    with ThreadPoolExecutor(THREADS) as pool:
        logged = list(pool.map(log, range(THREADS)))
    assert {v.name for v in logged} == {f"{project}/artifacts/{name}/versions/0"}
    assert sorted(v.reused for v in logged) == [False] + [True] * (THREADS - 1)
