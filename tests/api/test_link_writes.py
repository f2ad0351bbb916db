"""LinkArtifactVersion and AddAlias (service/links.py, run by workers/changes.py):
the rows, answer and events of a link, every source form linking the same version,
request_id replays, a failing change in a write batch rolling back alone (before or
after it wrote), and a link that waited for another transaction's link of its source."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import resources_pb2 as r
from registry_server.domain.errors import FailedPrecondition, NotFound
from registry_server.domain.names import CollectionRef
from registry_server.service import links
from registry_server.storage.sql import Sql
from registry_server.workers import changes

from ..support.content import create_registry, grant, link, log_version, make_lab
from ..support.errors import expect_error
from ..support.rows import org_events
from ..support.servers import ServerThread, database_kind
from ..support.world import World


def _events(server: ServerThread, world: World, collection: str) -> list[tuple[str, str, Any]]:
    return [
        (t, res, d) for t, res, d in org_events(server, world.org) if res.startswith(collection)
    ]


def test_a_link_writes_the_link_its_aliases_and_one_event_each(
    world: World, server: ServerThread
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    first, second = log_version(lab, metadata={"acc": 0.5}), log_version(lab)
    link(owner, registry, "c", first.name, ["staging"])
    reply = owner.stubs.collections.LinkArtifactVersion(
        cpb.LinkArtifactVersionRequest(
            parent=registry,
            collection_id="c",
            artifact_version=second.name,
            aliases=["staging", "candidate"],
            tags=["t"],
            description="d",
        )
    )
    collection = f"{registry}/collections/c"
    assert reply.name == f"{collection}/versions/1" and reply.version_index == 1
    assert list(reply.aliases) == ["latest", "candidate", "staging"]
    assert (list(reply.tags), reply.description, reply.linked_by) == (["t"], "d", owner.name)
    assert reply.artifact_version == second.name and reply.type == "model"
    # the answer is what a read shows
    got = owner.stubs.collections.GetCollectionVersion(
        cpb.GetCollectionVersionRequest(name=reply.name)
    )
    assert got == reply
    assert _events(server, world, collection) == [
        ("COLLECTION_CREATED", collection, {"type": "model", "tags": []}),
        (
            "VERSION_LINKED",
            f"{collection}/versions/0",
            {
                "collection": collection,
                "version_index": 0,
                "artifact_version": first.name,
                "artifact_type": "model",
                "aliases": ["staging"],
            },
        ),
        (
            "ALIAS_ADDED",
            f"{collection}/versions/0",
            {
                "alias": "staging",
                "collection": collection,
                "version_index": 0,
                "previous_version_index": None,
            },
        ),
        (
            "VERSION_LINKED",
            f"{collection}/versions/1",
            {
                "collection": collection,
                "version_index": 1,
                "artifact_version": second.name,
                "artifact_type": "model",
                "aliases": ["staging", "candidate"],
            },
        ),
        (
            "ALIAS_ADDED",
            f"{collection}/versions/1",
            {
                "alias": "staging",
                "collection": collection,
                "version_index": 1,
                "previous_version_index": 0,
            },
        ),
        (
            "ALIAS_ADDED",
            f"{collection}/versions/1",
            {
                "alias": "candidate",
                "collection": collection,
                "version_index": 1,
                "previous_version_index": None,
            },
        ),
    ]


def test_every_source_form_links_the_same_version(world: World) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    version = log_version(lab)
    first = link(owner, registry, "c", version.path)
    best = f"{version.path.split(':')[0]}:latest"  # an alias of the artifact
    reg_id = registry.rsplit("/", 1)[1]
    for source in (
        version.name,
        best,
        f"{world.org}/wandb-registry-{reg_id}/c:v0",
        f"wandb-registry-{reg_id}/c:latest",
        f"{registry}/collections/c/versions/0",
    ):
        again = link(owner, registry, "c", source)
        assert (again.name, again.artifact_version) == (first.name, version.name), source
    # into another collection: a new link of the same version
    other = link(owner, registry, "d", f"wandb-registry-{reg_id}/c:v0")
    assert other.artifact_version == version.name and other.version_index == 0


def test_a_request_id_replay_answers_the_first_link_and_changes_nothing(world: World) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    first, second = log_version(lab), log_version(lab)
    request = cpb.LinkArtifactVersionRequest(
        parent=registry,
        collection_id="c",
        artifact_version=first.name,
        aliases=["prod"],
        request_id="7a0c1f9e-3f4b-4a63-9d7e-0c2a3b1e7d42",
    )
    answer = owner.stubs.collections.LinkArtifactVersion(request)
    moved = link(owner, registry, "c", second.name, ["prod"])  # prod moves on
    assert owner.stubs.collections.LinkArtifactVersion(request) == answer
    now = owner.stubs.collections.GetCollectionVersion(
        cpb.GetCollectionVersionRequest(name=moved.name)
    )
    assert "prod" in now.aliases  # the replay did not move it back


@pytest.mark.parametrize(
    ("source", "code", "reason"),
    [
        ("nope-team/train/x:v0", grpc.StatusCode.NOT_FOUND, None),
        ("bad path with spaces", grpc.StatusCode.INVALID_ARGUMENT, None),
        ("DELETED", grpc.StatusCode.NOT_FOUND, "ARTIFACT_VERSION_DELETED"),
        ("DATASET", grpc.StatusCode.FAILED_PRECONDITION, "ARTIFACT_TYPE_NOT_ACCEPTED"),
    ],
)
def test_link_errors_name_what_is_wrong(
    world: World, source: str, code: grpc.StatusCode, reason: str | None
) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    if source == "DELETED":
        gone = log_version(lab)
        from registry.v1 import artifact_service_pb2 as apb

        owner.stubs.artifacts.DeleteArtifactVersion(
            apb.DeleteArtifactVersionRequest(name=gone.name)
        )
        source = gone.name
    elif source == "DATASET":
        source = log_version(lab, "data", type="dataset").name
    for collection in ("fresh", "existing"):
        if collection == "existing":
            link(owner, registry, "existing", log_version(lab).name)
        expect_error(
            code,
            owner.stubs.collections.LinkArtifactVersion,
            cpb.LinkArtifactVersionRequest(
                parent=registry, collection_id=collection, artifact_version=source
            ),
            reason=reason,
        )


def _run_batch(server: ServerThread, jobs: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
    """`jobs` in one write batch, as the write child runs them."""
    return changes.run_batch(server.app.db, jobs)


def _batch_setup(
    world: World, server: ServerThread, collection: str
) -> tuple[Any, Any, CollectionRef, list[Any]]:
    """A registry member, as a principal, the collection to link into, and three
    versions to link."""
    owner = world.person("owner")
    lab = make_lab(world, owner)
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    sources = [log_version(lab) for _ in range(3)]
    p = server.app.auth.authenticate(owner.key)
    return owner, p, CollectionRef(world.org, registry.rsplit("/", 1)[1], collection), sources


def test_a_failing_change_in_a_batch_rolls_back_alone(world: World, server: ServerThread) -> None:
    owner, p, ref, sources = _batch_setup(world, server, "batch")
    job = ("link", (p, links.link_request(ref, "", [], [], ""), ""))
    outcomes = _run_batch(
        server,
        [
            ("link", (p, links.link_request(ref, sources[0].name, ["a"], [], ""), "")),
            ("link", (p, links.link_request(ref, "nope-team/train/x:v0", ["b"], [], ""), "")),
            ("link", (p, links.link_request(ref, sources[2].name, ["b"], [], ""), "")),
            ("no-such-change", ()),
        ],
    )
    assert job  # (the shape of a job: change name, arguments)
    assert changes.lock_order(job) == ref.name
    assert isinstance(outcomes[0], changes.Written) and isinstance(outcomes[2], changes.Written)
    assert isinstance(outcomes[1], NotFound) and outcomes[3] is None
    listed = owner.stubs.collections.ListCollectionVersions(
        cpb.ListCollectionVersionsRequest(parent=ref.name)
    )
    assert [(v.artifact_version, list(v.aliases)) for v in listed.collection_versions] == [
        (sources[0].name, ["a"]),
        (sources[2].name, ["latest", "b"]),
    ]


def test_a_change_that_fails_after_writing_rolls_back_alone(
    world: World, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch runs without savepoints first: a change that wrote and then
    failed makes it run again, a savepoint each."""
    owner, p, ref, sources = _batch_setup(world, server, "undone")

    def link_then_fail(*args: Any) -> changes.Written:
        changes.link(*args)
        raise FailedPrecondition("failed after its writes")

    monkeypatch.setitem(changes.CHANGES, "link_then_fail", link_then_fail)
    outcomes = _run_batch(
        server,
        [
            ("link", (p, links.link_request(ref, sources[0].name, ["a"], [], ""), "")),
            ("link_then_fail", (p, links.link_request(ref, sources[1].name, ["b"], [], ""), "")),
            ("link", (p, links.link_request(ref, sources[2].name, [], [], ""), "")),
        ],
    )
    assert isinstance(outcomes[0], changes.Written) and isinstance(outcomes[2], changes.Written)
    assert isinstance(outcomes[1], FailedPrecondition)
    listed = owner.stubs.collections.ListCollectionVersions(
        cpb.ListCollectionVersionsRequest(parent=ref.name)
    )
    assert [
        (v.version_index, v.artifact_version, list(v.aliases)) for v in listed.collection_versions
    ] == [
        (0, sources[0].name, ["a"]),
        (1, sources[2].name, ["latest"]),
    ]
    linked = [
        d["artifact_version"]
        for t, _, d in _events(server, world, ref.name)
        if t == "VERSION_LINKED"
    ]
    assert linked == [sources[0].name, sources[2].name]


@pytest.mark.skipif(database_kind() == "sqlite", reason="SQLite serializes its writers")
def test_a_link_that_waited_for_a_link_of_its_source_answers_that_link(
    world: World, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The statement that locks the collection waited for a transaction that linked the
    same source: it read the rows it joined as they were before that link, so it reads
    again under the lock and answers the existing link (no duplicate, no batch run
    again)."""
    owner, p, ref, sources = _batch_setup(world, server, "waited")
    link(owner, ref.name.rsplit("/collections/", 1)[0], ref.collection, sources[0].name)
    batches: list[bool] = []
    run_batch_in = changes.run_batch_in

    def recorded(*args: Any, savepoints: bool = True, **kwargs: Any) -> Any:
        batches.append(savepoints)
        return run_batch_in(*args, savepoints=savepoints, **kwargs)

    monkeypatch.setattr(changes, "run_batch_in", recorded)
    db = server.app.db
    req = links.link_request(ref, sources[1].name, [], [], "")
    with ThreadPoolExecutor(1) as pool, db.write() as s:
        changes.link(Sql.of(s), p, req, "")  # holds the lock
        # the batch the write child would run, here so that its runs are recorded
        linking = pool.submit(_run_batch, server, [("link", (p, req, ""))])
        with db.write_engine.connect() as watch:
            for _ in range(100):  # until the batch's link waits for the lock
                waiting = watch.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    )
                ).scalar()
                if waiting:
                    break
                time.sleep(0.05)
        assert waiting
    [written] = linking.result(30)
    reply = r.CollectionVersion.FromString(written.answer)
    assert (reply.version_index, reply.artifact_version) == (1, sources[1].name)
    listed = owner.stubs.collections.ListCollectionVersions(
        cpb.ListCollectionVersionsRequest(parent=ref.name)
    )
    assert [v.artifact_version for v in listed.collection_versions] == [
        sources[0].name,
        sources[1].name,
    ]
    assert batches == [False]
