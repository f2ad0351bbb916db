"""The precompiled link and alias-move path does exactly what the general use cases do
(same rows, replies and events) and leaves every other case to them."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import grpc
import pytest
from sqlalchemy import func, select

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import resources_pb2 as r
from registry_server.api.collections import version_proto
from registry_server.service import collections as colls
from registry_server.service import fast_link
from registry_server.service.collections import CollectionRef
from registry_server.service.context import Principal
from registry_server.service.idempotency import run_idempotent
from registry_server.storage import models as m

from ..support.content import Lab, create_registry, grant, link, log_version, make_lab
from ..support.rows import org_events
from ..support.servers import ServerThread
from ..support.world import Person, World

T = TypeVar("T")


def _on_server_loop(server: ServerThread, change: Coroutine[Any, Any, T]) -> T:
    """Runs a fast-path coroutine on the server's event loop, as the servicers do (its
    PostgreSQL connections belong to that loop)."""
    return asyncio.run_coroutine_threadsafe(change, server.loop).result(30)


def _principal(server: ServerThread, person: Person) -> Principal:
    return server.app.auth.authenticate(person.key)


def _ids(registry: str) -> tuple[str, str]:
    parts = registry.split("/")
    return parts[1], parts[3]


def fast(
    server: ServerThread,
    person: Person,
    registry: str,
    collection: str,
    source: str,
    aliases: tuple[str, ...] = (),
    *,
    tags: tuple[str, ...] = (),
    description: str = "",
    request_id: str = "",
) -> r.CollectionVersion | None:
    """The fast path alone: its reply, or None where it leaves the request."""
    org, registry_id = _ids(registry)
    req = fast_link.prepare_link(
        org,
        registry_id,
        collection_id=collection,
        artifact_version=source,
        aliases=list(aliases),
        tags=list(tags),
        description=description,
        request_id=request_id,
    )
    if req is None:
        return None
    p = _principal(server, person)
    written = _on_server_loop(server, fast_link.link(server.app.db, p, req))
    return None if written is None else written.reply


def general(
    server: ServerThread,
    person: Person,
    registry: str,
    collection: str,
    source: str,
    aliases: tuple[str, ...] = (),
    *,
    tags: tuple[str, ...] = (),
    description: str = "",
) -> r.CollectionVersion:
    """The general use case alone."""
    org, registry_id = _ids(registry)
    p = _principal(server, person)
    with server.app.db.write() as s:
        view = colls.link_version(
            s,
            p,
            org,
            registry_id,
            collection,
            artifact_version=source,
            aliases=list(aliases),
            tags=list(tags),
            description=description,
        )
        return version_proto(view)


def fast_alias(
    server: ServerThread, person: Person, version: str, alias: str, expected: int | None = None
) -> r.CollectionVersion | None:
    parts = version.split("/")
    ref = CollectionRef(parts[1], parts[3], parts[5])
    p = _principal(server, person)
    written = _on_server_loop(
        server, fast_link.add_alias(server.app.db, p, ref, int(parts[7]), alias, expected)
    )
    return None if written is None else written.reply


def general_alias(
    server: ServerThread, person: Person, version: str, alias: str, expected: int | None = None
) -> r.CollectionVersion:
    parts = version.split("/")
    ref = CollectionRef(parts[1], parts[3], parts[5])
    p = _principal(server, person)
    with server.app.db.write() as s:
        return version_proto(colls.add_alias(s, p, ref, int(parts[7]), alias, expected))


def same_shape(a: r.CollectionVersion, b: r.CollectionVersion, a_coll: str, b_coll: str) -> None:
    """Equal but for the collection they are in and the time they were written."""
    x, y = r.CollectionVersion(), r.CollectionVersion()
    x.CopyFrom(a)
    y.CopyFrom(b)
    for v in (x, y):
        v.ClearField("create_time")
        v.ClearField("update_time")
    x.name = x.name.replace(f"/collections/{a_coll}/", "/collections/@/")
    y.name = y.name.replace(f"/collections/{b_coll}/", "/collections/@/")
    x.path = x.path.replace(f"/{a_coll}:", "/@:")
    y.path = y.path.replace(f"/{b_coll}:", "/@:")
    assert x == y
    assert x.HasField("metadata") and y.HasField("metadata")


def events_of(server: ServerThread, world: World, collection: str) -> list[tuple[str, str, Any]]:
    """The collection's events with its name replaced, for comparison with a twin."""
    out = []
    for type_, resource, details in org_events(server, world.org):
        if f"/collections/{collection}" not in resource:
            continue
        text = repr(details).replace(f"/collections/{collection}", "/collections/@")
        out.append((type_, resource.replace(f"/collections/{collection}", "/collections/@"), text))
    return out


def counts(server: ServerThread, registry: str) -> tuple[int, int, int]:
    """Links, aliases and events of the registry (other tests' servers write too)."""
    org, registry_id = _ids(registry)
    with server.app.db.read() as s:
        pk, org_pk = s.execute(
            select(m.Registry.id, m.Registry.org_id)
            .join(m.Organization, m.Organization.id == m.Registry.org_id)
            .where(m.Organization.name == org, m.Registry.name == registry_id)
        ).one()
        in_registry = select(m.Collection.id).where(m.Collection.registry_id == pk)
        return (
            s.execute(
                select(func.count()).where(m.CollectionVersion.collection_id.in_(in_registry))
            ).scalar_one(),
            s.execute(
                select(func.count()).where(m.CollectionAlias.collection_id.in_(in_registry))
            ).scalar_one(),
            s.execute(select(func.count()).where(m.Event.org_id == org_pk)).scalar_one(),
        )


@pytest.fixture
def twins(world: World, server: ServerThread) -> tuple[Person, Lab, str, list[r.ArtifactVersion]]:
    """A MEMBER of a registry with two collections, `fast` and `slow`, made alike."""
    mia = world.person("mia")
    lab = make_lab(world, mia)
    registry = create_registry(world, protected=("production",))
    grant(world, registry, mia.name, r.REGISTRY_ROLE_MEMBER)
    sources = [log_version(lab, metadata={"accuracy": 0.5 + i / 10}) for i in range(4)]
    sources.append(log_version(lab))  # no metadata
    for coll in ("fast", "slow"):
        general(server, mia, registry, coll, sources[0].name, ("prod",))
    return mia, lab, registry, sources


def test_links_match_the_general_path(
    twins: tuple[Person, Lab, str, list[r.ArtifactVersion]], world: World, server: ServerThread
) -> None:
    mia, lab, registry, sources = twins
    mia.stubs.artifacts.CreateArtifactVersion(
        apb.CreateArtifactVersionRequest(
            parent=lab.parent,
            artifact_id="resnet",
            type="model",
            manifest=[r.ManifestEntry(path="w.bin", digest="sha256:" + "ab" * 32, size=1)],
            aliases=["candidate"],
        )
    )
    cases: list[tuple[str, tuple[str, ...], dict[str, Any]]] = [
        # a resource name; `prod` moves off v0, `staging` is new; tags deduplicated
        (sources[1].name, ("prod", "staging"), {"tags": ("a", "b", "a"), "description": "d"}),
        (sources[2].path, (), {}),  # a project path with vN
        (f"{lab.team}/{lab.project}/resnet:candidate", ("staging",), {}),  # by alias
        (sources[4].name, ("x", "x", "y"), {}),  # no metadata; duplicate aliases
    ]
    for source, aliases, extra in cases:
        before = counts(server, registry)
        got = fast(server, mia, registry, "fast", source, aliases, **extra)
        assert got is not None, source
        after_fast = counts(server, registry)
        want = general(server, mia, registry, "slow", source, aliases, **extra)
        same_shape(got, want, "fast", "slow")
        assert got.create_time == got.update_time
        assert got.aliases[0] == "latest"
        # the same rows as the general path wrote
        assert [b - a for a, b in zip(before, after_fast, strict=True)] == [
            b - a for a, b in zip(after_fast, counts(server, registry), strict=True)
        ]
    assert events_of(server, world, "fast") == events_of(server, world, "slow")
    # What the fast path wrote reads back as it answered.
    for coll in ("fast", "slow"):
        listed = mia.stubs.collections.GetCollectionVersion(
            cpb.GetCollectionVersionRequest(name=f"{registry}/collections/{coll}/versions/4")
        )
        assert listed.version_index == 4 and list(listed.aliases) == ["latest", "x", "y"]
    # The collection's own counters moved as the general path moves them.
    with server.app.db.read() as s:
        rows = s.execute(
            select(m.Collection.name, m.Collection.next_version_index, m.Collection.revision)
            .join(m.Registry, m.Registry.id == m.Collection.registry_id)
            .where(m.Registry.name == _ids(registry)[1])
            .order_by(m.Collection.name)
        ).all()
    assert [tuple(row[1:]) for row in rows] == [(5, 6), (5, 6)]


def test_everything_else_is_left_to_the_general_path(
    twins: tuple[Person, Lab, str, list[r.ArtifactVersion]], world: World, server: ServerThread
) -> None:
    mia, lab, registry, sources = twins
    viewer = world.person("viewer")
    grant(world, registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
    outsider = world.person("outsider")  # in the organization, not in the registry
    stranger = world.person("stranger")  # a registry MEMBER outside mia's team
    grant(world, registry, stranger.name, r.REGISTRY_ROLE_MEMBER)
    dataset = log_version(lab, "imagenet", type="dataset")
    gone = log_version(lab, "gone")
    mia.stubs.artifacts.DeleteArtifactVersion(apb.DeleteArtifactVersionRequest(name=gone.name))
    org, registry_id = _ids(registry)
    refused = [
        (mia, "new-collection", sources[1].name, ()),  # to be created
        (mia, "fast", sources[0].name, ()),  # already linked: the idempotent reply
        (mia, "fast", sources[1].name, ("production",)),  # protected alias
        (mia, "fast", dataset.name, ()),  # type not accepted
        (mia, "fast", gone.name, ()),  # deleted
        (mia, "fast", f"{lab.parent}/artifacts/resnet/versions/99", ()),  # no such version
        (mia, "fast", f"{lab.team}/{lab.project}/resnet:nope", ()),  # no such alias
        (viewer, "fast", sources[1].name, ()),  # insufficient role
        (outsider, "fast", sources[1].name, ()),  # registry invisible
        (stranger, "fast", sources[1].name, ()),  # source team invisible
        (mia, "fast", f"{registry}/collections/fast/versions/0", ()),  # a registry source
        (mia, "fast", "not a path", ()),  # reported after the access checks
    ]
    before = counts(server, registry)
    for person, coll, source, aliases in refused:
        assert fast(server, person, registry, coll, source, aliases) is None, (coll, source)
    assert counts(server, registry) == before
    # ... and the server then answers them as it always did.
    with pytest.raises(grpc.RpcError):
        link(mia, registry, "fast", dataset.name)
    assert link(mia, registry, "fast", sources[0].name).version_index == 0
    assert (
        fast_link.prepare_link(
            org,
            registry_id,
            collection_id="fast",
            artifact_version=sources[1].name,
            aliases=["v1"],  # looks like a version: INVALID_ARGUMENT, unless a request_id
            tags=[],
            description="",
            request_id="retry-1",
        )
        is None
    )


def test_request_ids_are_shared_with_the_general_path(
    twins: tuple[Person, Lab, str, list[r.ArtifactVersion]], world: World, server: ServerThread
) -> None:
    mia, _, registry, sources = twins
    first = fast(server, mia, registry, "fast", sources[1].name, ("a",), request_id="req-1")
    assert first is not None
    before = counts(server, registry)
    # A retry answers the stored reply and changes nothing, by either path.
    again = fast(server, mia, registry, "fast", sources[2].name, ("b",), request_id="req-1")
    assert again == first
    assert link(mia, registry, "fast", sources[2].name, ("b",), request_id="req-1") == first
    assert counts(server, registry) == before
    # A request_id the general path recorded is honoured by the fast path.
    org, registry_id = _ids(registry)
    p = _principal(server, mia)

    def work(s: Any) -> r.CollectionVersion:
        return version_proto(
            colls.link_version(
                s,
                p,
                org,
                registry_id,
                "slow",
                artifact_version=sources[3].name,
                aliases=[],
                tags=[],
                description="",
            )
        )

    recorded = run_idempotent(
        server.app.db, p, "LinkArtifactVersion", "req-2", r.CollectionVersion, work
    )
    assert fast(server, mia, registry, "fast", sources[3].name, request_id="req-2") == recorded


def test_alias_moves_match_the_general_path(
    twins: tuple[Person, Lab, str, list[r.ArtifactVersion]], world: World, server: ServerThread
) -> None:
    mia, _, registry, sources = twins
    for coll in ("fast", "slow"):
        for source in sources[1:3]:
            general(server, mia, registry, coll, source.name)

    def version(coll: str, index: int) -> str:
        return f"{registry}/collections/{coll}/versions/{index}"

    steps: list[tuple[int, str, int | None]] = [
        (1, "canary", None),  # new
        (2, "prod", None),  # moves off v0 onto the latest version
        (2, "prod", 2),  # already there: no change, no event
        (0, "canary", 1),  # compare-and-set that holds
        (0, "fresh", -1),  # absent as expected
    ]
    for index, alias, expected in steps:
        before = counts(server, registry)
        got = fast_alias(server, mia, version("fast", index), alias, expected)
        assert got is not None, (index, alias, expected)
        moved = [b - a for a, b in zip(before, counts(server, registry), strict=True)]
        want = general_alias(server, mia, version("slow", index), alias, expected)
        same_shape(got, want, "fast", "slow")
        assert moved[0] == 0
    assert events_of(server, world, "fast") == events_of(server, world, "slow")
    viewer = world.person("viewer")
    grant(world, registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
    before = counts(server, registry)
    for person, index, alias, expected in [
        (mia, 1, "prod", 0),  # compare-and-set fails: ALIAS_CONFLICT from the general path
        (mia, 1, "production", None),  # protected
        (mia, 9, "canary", None),  # no such version
        (viewer, 1, "canary", None),  # insufficient role
    ]:
        assert fast_alias(server, person, version("fast", index), alias, expected) is None
    assert counts(server, registry) == before


def test_a_change_left_to_the_general_path_rolls_back_alone(
    twins: tuple[Person, Lab, str, list[r.ArtifactVersion]], world: World, server: ServerThread
) -> None:
    """Group commit: one batch, one transaction, each change in its own savepoint."""
    if not server.app.db.is_sqlite:
        pytest.skip("PostgreSQL writes are one transaction per request")
    mia, _, registry, sources = twins
    org, registry_id = _ids(registry)
    p = _principal(server, mia)

    def request(collection: str, source: str) -> fast_link.LinkRequest:
        req = fast_link.prepare_link(
            org,
            registry_id,
            collection_id=collection,
            artifact_version=source,
            aliases=["batch"],
            tags=[],
            description="",
            request_id="",
        )
        assert req is not None
        return req

    loop = asyncio.new_event_loop()
    try:
        batch = [
            fast_link._Job(fast_link._link, (p, req), loop.create_future(), loop)
            for req in (
                request("fast", sources[1].name),
                request("missing", sources[2].name),  # left to the general path
                request("fast", sources[1].name),  # linked by the first one: left too
                request("fast", sources[2].name),
            )
        ]
        before = counts(server, registry)
        outcomes = fast_link._SqliteWriter(server.app.db)._run_batch(batch)
    finally:
        loop.close()
    assert [o is None for o in outcomes] == [False, True, True, False]
    first, last = outcomes[0], outcomes[3]
    assert isinstance(first, fast_link.Written) and isinstance(last, fast_link.Written)
    assert (first.reply.version_index, last.reply.version_index) == (1, 2)
    assert list(first.reply.aliases) == ["latest", "batch"]
    # two links, the alias once inserted, and VERSION_LINKED + ALIAS_ADDED for each
    assert [b - a for a, b in zip(before, counts(server, registry), strict=True)] == [2, 1, 4]
    history = [e for e in events_of(server, world, "fast") if e[0] == "ALIAS_ADDED"]
    assert "'previous_version_index': 1" in history[-1][2]
