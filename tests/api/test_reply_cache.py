"""Hot-read answers kept between commits: never stale, never given to another caller.
The calls go through the session's server on either database (on PostgreSQL its
commit listener is the clock); the commit watch of SQLite's file is tested alone.
Across replicas: tests/process/test_replicas.py."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import time

import grpc
import psycopg
import pytest
from google.protobuf import field_mask_pb2

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as pb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_server.storage.reply_cache import CommitWatch, FileCommitClock, ReplyCache

from ..support.content import grant, link, log_version, member_lab_and_registry, registry_path
from ..support.errors import expect_error
from ..support.servers import ServerThread, database_kind, wait_listening
from ..support.world import World

sqlite_only = pytest.mark.skipif(database_kind() != "sqlite", reason="SQLite's commit watch")


@pytest.fixture(autouse=True)
def listening(server: ServerThread) -> None:
    """On PostgreSQL, nothing is kept until the server's commit listener is connected."""
    wait_listening(server)


def resolve(stubs: object, path: str) -> apb.ResolvePathResponse:
    return stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=path))  # type: ignore[attr-defined, no-any-return]


@sqlite_only
def test_a_kept_answer_lasts_until_the_next_commit(server: ServerThread, world: World) -> None:
    cache = server.app.reply_cache
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    v0, v1 = log_version(lab), log_version(lab)
    first = link(owner, registry, "resnet", v0.name, ["production"])
    second = link(owner, registry, "resnet", v1.name)
    path = registry_path(registry, "resnet", ":production")

    hits = cache.hits
    assert resolve(owner.stubs, path).collection_version.name == first.name
    assert resolve(owner.stubs, path).collection_version.name == first.name
    assert cache.hits == hits + 1  # the second call was answered from the cache
    assert isinstance(cache.clock, FileCommitClock)
    assert cache.clock.watch.mapped  # commits are seen in the file's wal-index header

    # a write through the service moves the alias: the next answer follows it
    move = pb.AddAliasRequest(collection_version=second.name, alias="production")
    owner.stubs.collections.AddAlias(move)
    assert resolve(owner.stubs, path).collection_version.name == second.name

    # a commit by any other connection to the file (another process, another replica)
    database = server.app.db.url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as other:
        other.execute(
            "UPDATE collection_versions SET description = 'edited elsewhere'"
            " WHERE version_index = 1 AND collection_id IN (SELECT c.id FROM collections c"
            " JOIN registries g ON g.id = c.registry_id JOIN organizations o ON o.id = g.org_id"
            " WHERE o.name = ? AND g.name = ? AND c.name = 'resnet')",
            (world.org, registry.rsplit("/", 1)[1]),
        )
    assert resolve(owner.stubs, path).collection_version.description == "edited elsewhere"


def test_a_kept_answer_is_only_given_to_its_caller(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    viewer = world.person("viewer")
    outsider = world.person("outsider")
    lab, registry = member_lab_and_registry(world, owner)
    grant(world, registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
    version = link(owner, registry, "resnet", log_version(lab).name, ["production"])
    path = registry_path(registry, "resnet", ":production")
    get = pb.GetCollectionVersionRequest(name=version.name)
    role = rpb.GetEffectiveRoleRequest(registry=registry)

    assert resolve(owner.stubs, path).collection_version.name == version.name
    assert owner.stubs.collections.GetCollectionVersion(get).name == version.name
    assert owner.stubs.registries.GetEffectiveRole(role).role == r.REGISTRY_ROLE_MEMBER
    # the same requests from someone else are answered for them, not from the owner's entry
    expect_error(grpc.StatusCode.NOT_FOUND, resolve, outsider.stubs, path)
    expect_error(grpc.StatusCode.NOT_FOUND, outsider.stubs.collections.GetCollectionVersion, get)
    assert viewer.stubs.registries.GetEffectiveRole(role).role == r.REGISTRY_ROLE_VIEWER

    # access taken away is seen at once
    assert resolve(viewer.stubs, path).collection_version.name == version.name
    world.admin.stubs.registries.RemoveRegistryMember(
        rpb.RemoveRegistryMemberRequest(registry=registry, member=viewer.name)
    )
    expect_error(grpc.StatusCode.NOT_FOUND, resolve, viewer.stubs, path)
    expect_error(grpc.StatusCode.NOT_FOUND, viewer.stubs.registries.GetEffectiveRole, role)


def test_a_revoked_key_gets_no_kept_reply(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    link(owner, registry, "resnet", log_version(lab).name, ["production"])
    path = registry_path(registry, "resnet", ":production")
    second = world.admin.stubs.organizations.CreateApiKey(
        opb.CreateApiKeyRequest(parent=owner.name)
    )
    with open_channel(world.target, second.secret) as channel:
        stubs = Stubs.on(channel)
        hits = server.app.reply_cache.hits
        first = resolve(stubs, path)
        assert resolve(stubs, path) == first
        assert server.app.reply_cache.hits == hits + 1  # kept for this key
        owner.stubs.organizations.DeleteApiKey(opb.DeleteApiKeyRequest(name=second.name))
        expect_error(grpc.StatusCode.UNAUTHENTICATED, resolve, stubs, path)
    assert resolve(owner.stubs, path) == first  # the owner's other key is another entry


def test_list_pages_are_kept_per_request(server: ServerThread, world: World) -> None:
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    for alias in ("a", "b", "c"):
        link(owner, registry, "resnet", log_version(lab).name, [alias])
    parent = f"{registry}/collections/resnet"

    def names(**kw: object) -> list[str]:
        request = pb.ListCollectionVersionsRequest(parent=parent, **kw)  # type: ignore[arg-type]
        page = owner.stubs.collections.ListCollectionVersions(request)
        return [v.name for v in page.collection_versions]

    everything = names()
    assert len(everything) == 3
    assert names(filter='alias = "b"') == [everything[1]]
    assert names(page_size=1) == everything[:1]
    assert names() == everything
    owner.stubs.collections.UpdateCollectionVersion(
        pb.UpdateCollectionVersionRequest(
            collection_version=r.CollectionVersion(name=everything[0], description="new"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
    )
    request = pb.ListCollectionVersionsRequest(parent=parent)
    listed = owner.stubs.collections.ListCollectionVersions(request).collection_versions
    assert [v.description for v in listed if v.name == everything[0]] == ["new"]


@pytest.mark.skipif(database_kind() != "postgres", reason="PostgreSQL's commit listener")
def test_postgresql_keeps_replies_until_a_commit_is_heard_of(
    server: ServerThread, world: World
) -> None:
    cache = server.app.reply_cache
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    v0, v1 = log_version(lab), log_version(lab)
    first = link(owner, registry, "resnet", v0.name, ["production"])
    link(owner, registry, "resnet", v1.name)
    path = registry_path(registry, "resnet", ":production")
    hits = cache.hits
    assert resolve(owner.stubs, path).collection_version.name == first.name
    assert resolve(owner.stubs, path).collection_version.name == first.name
    assert cache.hits == hits + 1 and len(cache) > 0

    # a commit by another connection, heard of through the listener
    commits = server.app.db.commits
    assert commits is not None
    with psycopg.connect(commits.conninfo, autocommit=True) as other:
        other.execute(
            "UPDATE collection_versions SET description = 'edited elsewhere'"
            " WHERE version_index = 0 AND collection_id IN (SELECT c.id FROM collections c"
            " JOIN registries g ON g.id = c.registry_id JOIN organizations o ON o.id = g.org_id"
            " WHERE o.name = %s AND g.name = %s AND c.name = 'resnet')",
            (world.org, registry.rsplit("/", 1)[1]),
        )
    deadline = time.monotonic() + 5
    while resolve(owner.stubs, path).collection_version.description != "edited elsewhere":
        assert time.monotonic() < deadline, "the commit was never heard of"
        time.sleep(0.01)


def file_clock(conn: sqlite3.Connection) -> FileCommitClock:
    return FileCommitClock(lambda: contextlib.nullcontext(conn))


def test_entries_are_bounded_by_size() -> None:
    clock = file_clock(sqlite3.connect(":memory:"))
    cache = ReplyCache(clock, max_bytes=3000, max_entry_bytes=1500)

    def answer(n: int) -> bytes:
        return b"x" * n

    def keep(c: ReplyCache, key: str, n: int) -> None:
        _, seen = c.lookup(key)
        c.store(key, answer(n), seen)

    assert cache.lookup("a")[0] is None
    keep(cache, "a", 1001)
    keep(cache, "b", 1001)
    keep(cache, "too big", 2000)
    assert cache.lookup("too big")[0] is None
    assert cache.lookup("a")[0] == answer(1001)
    keep(cache, "c", 1001)  # over the budget: the oldest entry goes
    assert cache.lookup("a")[0] is None
    assert cache.lookup("b")[0] is not None and cache.lookup("c")[0] is not None
    assert len(cache) == 2

    few = ReplyCache(clock, max_entries=2)
    for key in ("a", "b", "c"):
        keep(few, key, 10)
    assert len(few) == 2 and few.lookup("a")[0] is None  # the oldest went
    assert few.lookup("b")[0] is not None and few.lookup("c")[0] is not None


def _hot_and_other(directory: object, name: str) -> tuple[sqlite3.Connection, sqlite3.Connection]:
    """Two connections to a new WAL file with a table `t`: one that has read (as the hot
    connection has), one to commit with."""
    path = f"{directory}/{name}"
    hot, other = (sqlite3.connect(path, isolation_level=None) for _ in range(2))
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("CREATE TABLE t (x INTEGER)")
    hot.execute("SELECT count(*) FROM t").fetchone()
    return hot, other


def test_a_reply_computed_across_a_commit_is_not_kept(tmp_path: object) -> None:
    hot, other = _hot_and_other(tmp_path, "race.db")
    cache = ReplyCache(file_clock(hot))
    kept, seen = cache.lookup("k")
    assert kept is None
    other.execute("INSERT INTO t VALUES (1)")  # lands while the reply is being computed
    cache.store("k", b"maybe from before the insert", seen)
    assert cache.lookup("k")[0] is None and len(cache) == 0
    kept, seen = cache.lookup("k")
    cache.store("k", b"after", seen)
    assert cache.lookup("k")[0] == b"after"


def test_the_commit_watch_reads_the_wal_index_header(tmp_path: object) -> None:
    """Every commit by another connection changes the watched value, reads do not, and the
    value comes from the mapped `-shm` header (no statement per call)."""
    hot, other = _hot_and_other(tmp_path, "watch.db")
    path = f"{tmp_path}/watch.db"
    watch = CommitWatch()
    first = watch.version(hot)
    assert watch.mapped and isinstance(first, bytes) and len(first) == 48
    hot.execute("SELECT count(*) FROM t").fetchone()
    assert watch.version(hot) == first
    seen = {first}
    for i in range(3):
        other.execute("INSERT INTO t VALUES (?)", (i,))
        now = watch.version(hot)
        assert now not in seen
        seen.add(now)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next commit restarts the WAL
    other.execute("INSERT INTO t VALUES (9)")
    now = watch.version(hot)
    assert now not in seen
    insert = (
        f"import sqlite3; sqlite3.connect({path!r}, isolation_level=None)"
        ".execute('INSERT INTO t VALUES (10)')"
    )
    subprocess.run([sys.executable, "-c", insert], check=True)  # another process
    assert watch.version(hot) != now


def test_the_commit_watch_falls_back_to_the_pragma() -> None:
    memory = sqlite3.connect(":memory:")
    watch = CommitWatch()
    assert watch.version(memory) == watch.version(memory) and not watch.mapped


def test_a_header_that_misses_a_commit_hands_over_to_the_pragma(tmp_path: object) -> None:
    hot, other = _hot_and_other(tmp_path, "stuck.db")
    watch = CommitWatch()
    watch.version(hot)
    assert watch.mapped
    watch._header = memoryview(bytes(48))  # as if the mapping were no longer the file's
    watch._next_check = 0.0
    before = watch.version(hot)  # the first cross-check notes header and pragma
    other.execute("INSERT INTO t VALUES (1)")
    watch._next_check = 0.0
    after = watch.version(hot)  # the pragma moved, the header did not
    assert not watch.mapped and after != before
    other.execute("INSERT INTO t VALUES (2)")
    assert watch.version(hot) != after  # from now on the pragma answers
