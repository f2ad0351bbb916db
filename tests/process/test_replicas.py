"""Replicas on one PostgreSQL database.

Kept replies and commit numbers (`storage.commits`): a `registry-server serve` process
(replica A, the `replica_a` fixture) and the session's in-process server (replica B,
whose kept replies and listener the tests look at) share the session's database. A
client that wrote through A and reads through B with the commit number it was given
always reads the new state; without the number B empties its kept replies when it
hears of the commit; while B's listener is down B keeps nothing; the commits of a
migration runner's process are heard too; every table numbers its commits, in commit
order.

A killed replica: two replicas behind a client-side round-robin channel. Clients
(`registry_client.Client` on `ipv4:127.0.0.1:P1,127.0.0.1:P2` with the `round_robin`
policy) send mixed traffic: resolves, gets and filtered lists, links and creates with a
request_id (retried on UNAVAILABLE with the same id), and alias moves, half of them
compare-and-set (not retried: without a request id a retry could apply twice). A legacy
migration runs at the same time. The replica holding the migration's lease is killed
with SIGKILL in the middle of both. The clients carry on against the survivor, the
survivor takes the migration over once the lease has expired and finishes it, and,
checked through the survivor alone, no acknowledged write is lost and the database
invariants of tests/support/invariants.py hold.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import psycopg
import pytest
from sqlalchemy import text

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_client import (
    Client,
    CommitToken,
    RegistryError,
    RetryPolicy,
    Stubs,
    open_channel,
)
from registry_server.migrations.commit_numbers import MARK_TRIGGER
from registry_server.storage import commits
from registry_server.storage.db import Database
from registry_server.storage.models import Base
from registry_server.storage.reply_cache import ReplyCache

from ..support.content import link, log_version, member_lab_and_registry, registry_path
from ..support.errors import expect_error
from ..support.invariants import alias_events, invariant_violations
from ..support.ledger import (
    ALIASES,
    OK,
    Fixture,
    Ledger,
    acknowledged_violations,
    api_snapshot,
    make_sources,
    outcome_of,
)
from ..support.migrations import FINAL, poll_until, read_progress, start_migration, wait_final
from ..support.processes import ROOT_ORG, Proc, bootstrap, free_port, pid_of
from ..support.seeded_teams import MODELS, VERSIONS_PER_MODEL, dump_legacy, dump_target, seed_teams
from ..support.servers import ServerThread, database_kind, fresh_database, wait_listening
from ..support.world import World

pytestmark = pytest.mark.skipif(
    database_kind() != "postgres", reason="replicas share a PostgreSQL database"
)

LEASE_SECONDS = 2.0
DELAY_MS = 300  # between migration steps: the copy takes a few seconds
THREADS = 4
SOURCES = 40
COLLECTIONS = 2
AFTER_KILL_SECONDS = 2.0  # of traffic on the survivor alone
CALLS_PER_THREAD = 5000  # a bound; the traffic is stopped long before
# Answers a client may see: compare-and-set conflicts, and for the alias moves that
# are not retried, the kill itself.
ALLOWED = {("AddAlias", "ABORTED"), ("AddAlias", "UNAVAILABLE")}


class Traffic:
    """Mixed calls from several threads through one round-robin client."""

    def __init__(self, client: Client, fixture: Fixture, ledger: Ledger) -> None:
        self.client = client
        self.fixture = fixture
        self.ledger = ledger
        self.stop = threading.Event()
        self.killed_at = float("inf")
        self.calls: Counter[tuple[str, str]] = Counter()
        self.acked_after_kill = 0
        self.created_collections: list[str] = []
        self.created_versions: list[str] = []
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(THREADS)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(60)

    def _count(self, rpc: str, code: str, sent: float) -> None:
        with self._lock:
            self.calls[(rpc, code)] += 1
            if code == "OK" and sent > self.killed_at:
                self.acked_after_kill += 1

    def _client(self, n: int) -> None:
        rng = random.Random(n)
        seen: dict[tuple[str, str], int] = {}
        for i in range(CALLS_PER_THREAD):
            if self.stop.is_set():
                return
            collection = rng.choice(self.fixture.collections)
            indices = self.ledger.indices(collection)
            roll = rng.random()
            sent = time.monotonic()
            try:
                if not indices or roll < 0.25:
                    rpc = "LinkArtifactVersion"
                    source = rng.choice(self.fixture.sources)
                    version = self.client.link(source, collection)
                    self.ledger.link_acknowledged(collection, source, version)
                elif roll < 0.5:
                    rpc = "AddAlias"
                    self._move(rng, collection, rng.choice(indices), seen)
                elif roll < 0.65:
                    rpc = "ResolvePath"
                    index = rng.choice(indices)
                    path = f"{ROOT_ORG}/wandb-registry-model/{collection.rsplit('/', 1)[1]}"
                    got = self.client.resolve(f"{path}:v{index}")
                    assert got.collection_version.version_index == index
                elif roll < 0.75:
                    rpc = "GetCollectionVersion"
                    index = rng.choice(indices)
                    got_version = self.client.collection_version(f"{collection}/versions/{index}")
                    assert got_version.version_index == index
                elif roll < 0.85:
                    rpc = "ListCollectionVersions"
                    alias = rng.choice(ALIASES)
                    list(self.client.versions(collection, filter=f'alias = "{alias}"', limit=5))
                elif roll < 0.93:
                    rpc = "CreateCollection"
                    name = f"{self.fixture.registry}/collections/extra-{n}-{i}"
                    self.client.create_collection(name, "model", request_id=str(uuid.uuid4()))
                    with self._lock:
                        self.created_collections.append(name)
                else:
                    rpc = "CreateArtifactVersion"
                    created = self.client.log_artifact(
                        "replicas/train",
                        "checkpoints",
                        "model",
                        manifest=[
                            r.ManifestEntry(
                                path="m.pt",
                                digest=f"sha256:{n:02x}{i:062x}",
                                size=1,
                                ref="s3://bucket/m.pt",
                            )
                        ],
                        request_id=str(uuid.uuid4()),
                    )
                    with self._lock:
                        self.created_versions.append(created.name)
            except RegistryError as e:
                self._count(rpc, e.code_name, sent)
                continue
            self._count(rpc, "OK", sent)

    def _move(
        self, rng: random.Random, collection: str, target: int, seen: dict[tuple[str, str], int]
    ) -> None:
        alias = rng.choice(ALIASES)
        key = (collection, alias)
        expected = seen.get(key) if rng.random() < 0.5 else None
        move = self.ledger.move_sent(collection, alias, target, expected)
        try:
            self.client.add_alias(
                f"{collection}/versions/{target}", alias, expected_version_index=expected
            )
        except RegistryError as e:
            self.ledger.move_answered(move, outcome_of(e.code))
            current = e.metadata.get("current_version_index")
            if e.code == grpc.StatusCode.ABORTED and current is not None:
                seen[key] = int(current)
            raise
        self.ledger.move_answered(move, OK)
        seen[key] = target


class UnavailableCounter(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts the UNAVAILABLE answers under the client's retries (the kill's footprint)."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = continuation(details, request)
        if call.code() == grpc.StatusCode.UNAVAILABLE:
            with self._lock:
                self.count += 1
        return call


def calls_served(replica: Proc) -> int:
    """Calls the replica logged (one line per call at INFO)."""
    return sum(1 for line in replica.output().splitlines() if "/registry.v1." in line)


def test_round_robin_clients_and_a_migration_survive_a_killed_replica() -> None:
    suffix = uuid.uuid4().hex[:6]
    legacy_teams = [f"replicated-a-{suffix}", f"replicated-b-{suffix}"]
    total = len(legacy_teams) * MODELS * VERSIONS_PER_MODEL
    with fresh_database() as url:
        key = bootstrap(url)
        seed_teams(url, legacy_teams)
        env = {
            "REGISTRY_MIGRATION_LEASE_SECONDS": str(LEASE_SECONDS),
            "REGISTRY_MIGRATION_BATCH_DELAY_MS": str(DELAY_MS),
        }
        replicas = [Proc(["--database-url", url], free_port(), env=env) for _ in range(2)]
        progress_db = Database(url)
        unavailable = UnavailableCounter()
        client = Client(
            f"ipv4:127.0.0.1:{replicas[0].port},127.0.0.1:{replicas[1].port}",
            key,
            options=[("grpc.lb_policy_name", "round_robin")],
            retries=RetryPolicy(max_retries=8, initial_backoff=0.05, max_backoff=1.0),
            interceptors=[unavailable],
        )
        survivor_channel: grpc.Channel | None = None
        traffic: Traffic | None = None
        try:
            for replica in replicas:
                replica.wait_healthy()
            registry = f"organizations/{ROOT_ORG}/registries/model"
            fixture = Fixture(
                make_sources(client.stubs, "replicas", SOURCES),
                [f"{registry}/collections/replicated-{i}" for i in range(COLLECTIONS)],
            )
            ledger = Ledger()
            traffic = Traffic(client, fixture, ledger)
            traffic.start()
            time.sleep(0.5)
            migration = client.start_migration(legacy_teams, organization=ROOT_ORG)
            uid = migration.name.rsplit("/", 1)[-1]
            # Killed mid-copy, under traffic.
            running = poll_until(
                progress_db, uid, lambda p: 0 < p.done < total and bool(p.lease_owner)
            )
            owner = next(x for x in replicas if x.proc.pid == pid_of(running.lease_owner))
            survivor = next(x for x in replicas if x is not owner)
            served_before = [calls_served(x) for x in replicas]
            traffic.killed_at = time.monotonic()
            owner.kill()
            assert read_progress(progress_db, uid).state not in FINAL
            time.sleep(AFTER_KILL_SECONDS)

            # The migration finishes on the survivor, watched through it alone.
            survivor_channel = open_channel(f"127.0.0.1:{survivor.port}", key)
            survivor_stubs = Stubs.on(survivor_channel)
            with Client(f"127.0.0.1:{survivor.port}", key) as direct:
                final = direct.wait_for_migration(migration.name, timeout=90)
            traffic.join()
            assert final.state == r.MIGRATION_STATE_SUCCEEDED, (
                final.error,
                final.verification.mismatches[:5],
            )
            assert final.progress.done == total and not final.verification.mismatches

            # Both replicas served the clients, and the clients carried on after the kill.
            assert all(n > 0 for n in served_before), served_before
            unexpected = [c for c in traffic.calls if c[1] != "OK" and c not in ALLOWED]
            assert not unexpected, traffic.calls
            assert traffic.acked_after_kill > 0, traffic.calls

            # Nothing acknowledged is lost, as the survivor answers it.
            snap = api_snapshot(survivor_stubs, fixture.collections)
            violations = acknowledged_violations(ledger, snap, alias_events(url))
            violations += invariant_violations(url)
            assert not violations, violations[:10]
            with Client(f"127.0.0.1:{survivor.port}", key) as direct:
                for name in traffic.created_collections:
                    assert direct.collection(name).name == name
                for name in traffic.created_versions:
                    assert direct.artifact_version(name).name == name
            for team in legacy_teams:
                target = dump_target(url, team)
                legacy = dump_legacy(url, team)
                assert target["versions"] == legacy["versions"]
                assert target["aliases"] == legacy["aliases"]
            print(
                f"calls {dict(traffic.calls)}; acknowledged after the kill "
                f"{traffic.acked_after_kill}; served before the kill {served_before}; "
                f"UNAVAILABLE answers retried or reported {unavailable.count}"
            )
        finally:
            if traffic is not None:
                traffic.join()
            client.close()
            if survivor_channel is not None:
                survivor_channel.close()
            for replica in replicas:
                replica.stop()
            progress_db.dispose()


# --- kept replies and commit numbers across replicas ---------------------------------------

ITERATIONS = 12  # of each kind of write
HEARD_WITHIN = 5.0  # seconds: a commit notification reaches the other replica
LATE_SECONDS = 0.25  # how late B hears of commits in the read-your-writes test


@pytest.fixture(scope="module")
def replica_a(database_url: str, server: ServerThread) -> Iterator[Proc]:
    """Replica A, a server process over the session's database; the session's server is
    replica B."""
    a = Proc(["--database-url", database_url, "--migration-runner", "off"], free_port())
    try:
        a.wait_healthy()
        wait_listening(server)
        yield a
    finally:
        a.stop()


class Channels:
    """Stubs on any replica for any key; one `CommitToken` makes them one client."""

    def __init__(self) -> None:
        self._channels: list[grpc.Channel] = []

    def stubs(
        self, replica: ServerThread | Proc, key: str, token: CommitToken | None = None
    ) -> Stubs:
        target = (
            replica.target if isinstance(replica, ServerThread) else f"127.0.0.1:{replica.port}"
        )
        channel = open_channel(target, key, commit_token=token)
        self._channels.append(channel)
        return Stubs.on(channel)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()


@pytest.fixture
def channels() -> Iterator[Channels]:
    made = Channels()
    yield made
    made.close()


@contextmanager
def slow_hearing(listener: commits.CommitListener, seconds: float) -> Iterator[None]:
    """Each notification reaches the replica `seconds` late: a client's next call then
    always comes before the replica has heard of its write."""
    heard = listener._heard

    def late(payload: str) -> None:
        asyncio.get_running_loop().call_later(seconds, heard, payload)

    listener._heard = late  # type: ignore[method-assign]
    try:
        yield
    finally:
        del listener._heard
        time.sleep(seconds)  # the late ones heard


def kept(cache: ReplyCache, call: Callable[[], Any]) -> Any:
    """Calls until the answer comes from a kept reply (none is given to a caller whose
    commit the replica has not heard of yet), and returns it."""
    deadline = time.monotonic() + HEARD_WITHIN
    while True:
        hits = cache.hits
        answer = call()
        if cache.hits > hits:
            return answer
        assert time.monotonic() < deadline, "the replica never answered from a kept reply"
        time.sleep(0.005)


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + HEARD_WITHIN
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_read_after_write_on_another_replica_is_never_stale(
    replica_a: Proc, server: ServerThread, world: World, channels: Channels
) -> None:
    """Each write goes through A; the same client (one token, whatever its key) then reads
    through B at once, with B's kept replies warmed beforehand with the state before the
    write, and B hearing of commits late. A client without the token reads the old
    state meanwhile: that is what the token is for."""
    cache = server.app.reply_cache
    listener = server.app.db.commits
    assert listener is not None
    owner = world.person("owner")
    member = world.person("member")
    lab, registry = member_lab_and_registry(world, owner)
    sources = [log_version(lab) for _ in range(2 + ITERATIONS)]
    versions = [link(owner, registry, "resnet", v.name) for v in sources[:2]]
    collection = versions[0].name.rsplit("/versions/", 1)[0]
    production = apb.ResolvePathRequest(path=registry_path(registry, "resnet", ":production"))
    latest = apb.ResolvePathRequest(path=registry_path(registry, "resnet"))
    token = CommitToken()
    writes = channels.stubs(replica_a, owner.key, token)
    reads = channels.stubs(server, owner.key, token)
    admin_writes = channels.stubs(replica_a, world.admin.key, token)
    admin_reads = channels.stubs(server, world.admin.key, token)
    member_reads = channels.stubs(server, member.key, token)
    others = channels.stubs(server, owner.key)  # another client: no token of these writes
    passed, stale = cache.passed, 0

    with slow_hearing(listener, LATE_SECONDS):
        # AddAlias moving an alias, then RemoveAlias
        writes.collections.AddAlias(
            cpb.AddAliasRequest(collection_version=versions[1].name, alias="production")
        )
        for i in range(ITERATIONS):
            target, before = versions[i % 2], versions[(i + 1) % 2]
            kept(cache, lambda: others.artifacts.ResolvePath(production))
            kept(cache, lambda: reads.artifacts.ResolvePath(production))
            writes.collections.AddAlias(
                cpb.AddAliasRequest(collection_version=target.name, alias="production")
            )
            assert reads.artifacts.ResolvePath(production).collection_version.name == target.name
            other = others.artifacts.ResolvePath(production).collection_version.name
            stale += other == before.name
        kept(cache, lambda: reads.artifacts.ResolvePath(production))
        writes.collections.RemoveAlias(
            cpb.RemoveAliasRequest(collection_version=target.name, alias="production")
        )
        expect_error(grpc.StatusCode.NOT_FOUND, reads.artifacts.ResolvePath, production)

        # LinkArtifactVersion: the list, and the new version
        listing = cpb.ListCollectionVersionsRequest(parent=collection, page_size=100)
        for i, source in enumerate(sources[2:]):
            known = kept(cache, lambda: reads.collections.ListCollectionVersions(listing))
            linked = writes.collections.LinkArtifactVersion(
                cpb.LinkArtifactVersionRequest(
                    parent=registry, collection_id="resnet", artifact_version=source.name
                )
            )
            listed = reads.collections.ListCollectionVersions(listing).collection_versions
            assert len(listed) == len(known.collection_versions) + 1, i
            assert linked.name in [v.name for v in listed], i
            get = cpb.GetCollectionVersionRequest(name=linked.name)
            assert reads.collections.GetCollectionVersion(get).name == linked.name

        # a revoked grant: the client reads the member's role, and as the member
        role = rpb.GetEffectiveRoleRequest(registry=registry, principal=member.name)
        own_role = rpb.GetEffectiveRoleRequest(registry=registry)
        for _ in range(ITERATIONS):
            admin_writes.registries.AddRegistryMember(
                rpb.AddRegistryMemberRequest(
                    registry=registry, member=member.name, role=r.REGISTRY_ROLE_MEMBER
                )
            )
            assert admin_reads.registries.GetEffectiveRole(role).role == r.REGISTRY_ROLE_MEMBER
            kept(cache, lambda: admin_reads.registries.GetEffectiveRole(role))
            kept(cache, lambda: member_reads.registries.GetEffectiveRole(own_role))
            kept(cache, lambda: member_reads.artifacts.ResolvePath(latest))
            admin_writes.registries.RemoveRegistryMember(
                rpb.RemoveRegistryMemberRequest(registry=registry, member=member.name)
            )
            assert admin_reads.registries.GetEffectiveRole(role).role != r.REGISTRY_ROLE_MEMBER
            expect_error(grpc.StatusCode.NOT_FOUND, member_reads.artifacts.ResolvePath, latest)
            expect_error(
                grpc.StatusCode.NOT_FOUND, member_reads.registries.GetEffectiveRole, own_role
            )

        # a deleted API key, known to B from its cache of verified keys and a kept reply
        for _ in range(ITERATIONS):
            second = admin_writes.organizations.CreateApiKey(
                opb.CreateApiKeyRequest(parent=owner.name)
            )
            with_second = channels.stubs(server, second.secret, token)
            kept(cache, lambda s=with_second: s.artifacts.ResolvePath(latest))
            writes.organizations.DeleteApiKey(opb.DeleteApiKeyRequest(name=second.name))
            expect_error(grpc.StatusCode.UNAUTHENTICATED, with_second.artifacts.ResolvePath, latest)
    assert stale > 0, "B always heard of the write before the next call: nothing was tested"
    assert cache.passed > passed
    print(
        f"B answered {cache.passed - passed} calls with a token it had not heard of from the "
        f"database; a client without the token read the old alias {stale} of {ITERATIONS} times"
    )


def test_kept_replies_are_emptied_by_a_commit_on_another_replica(
    replica_a: Proc, server: ServerThread, world: World, channels: Channels
) -> None:
    """A client with no commit number reads through B: B empties what it kept when it
    hears of A's commit."""
    cache = server.app.reply_cache
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    versions = [link(owner, registry, "resnet", log_version(lab).name) for _ in range(2)]
    production = apb.ResolvePathRequest(path=registry_path(registry, "resnet", ":production"))
    writes = channels.stubs(replica_a, owner.key)
    reads = channels.stubs(server, owner.key)  # a client of its own: no commit number
    for i in range(ITERATIONS):
        target = versions[i % 2]
        writes.collections.AddAlias(
            cpb.AddAliasRequest(collection_version=target.name, alias="production")
        )
        eventually(
            lambda t=target: (
                reads.artifacts.ResolvePath(production).collection_version.name == t.name
            ),
            "B kept answering the alias where it was",
        )
        assert kept(cache, lambda: reads.artifacts.ResolvePath(production)).collection_version


def test_listener_loss_stops_keeping_replies(
    replica_a: Proc, server: ServerThread, world: World, channels: Channels
) -> None:
    """B's listening session is terminated: until B listens again it answers nothing from
    kept replies (it would not hear of commits), and afterwards it starts empty."""
    cache = server.app.reply_cache
    listener = server.app.db.commits
    assert listener is not None
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    versions = [link(owner, registry, "resnet", log_version(lab).name) for _ in range(2)]
    production = apb.ResolvePathRequest(path=registry_path(registry, "resnet", ":production"))
    writes = channels.stubs(replica_a, owner.key)
    reads = channels.stubs(server, owner.key)
    writes.collections.AddAlias(
        cpb.AddAliasRequest(collection_version=versions[0].name, alias="production")
    )
    eventually(
        lambda: reads.artifacts.ResolvePath(production).collection_version.name == versions[0].name,
        "the alias was never heard of",
    )
    kept(cache, lambda: reads.artifacts.ResolvePath(production))

    listener.retry_seconds = 1.5  # long enough to look at B while it is not listening
    try:
        with psycopg.connect(listener.conninfo, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (listener.backend_pid,))
        eventually(lambda: not listener.connected, "B never noticed the lost connection")
        hits, passed = cache.hits, cache.passed
        writes.collections.AddAlias(
            cpb.AddAliasRequest(collection_version=versions[1].name, alias="production")
        )
        for _ in range(5):
            got = reads.artifacts.ResolvePath(production).collection_version
            assert got.name == versions[1].name
        assert not listener.connected, "reconnected too early for this test"
        assert cache.hits == hits and cache.passed >= passed + 5
    finally:
        listener.retry_seconds = listener.RETRY_SECONDS
    eventually(lambda: listener.connected, "B never listened again")
    answer = kept(cache, lambda: reads.artifacts.ResolvePath(production))
    assert answer.collection_version.name == versions[1].name


def kept_replies(replica: Proc, method: str) -> int:
    """Calls of `method` the replica process answered from kept replies (its access log)."""
    return sum(1 for line in replica.output().splitlines() if f"{method} OK (kept)" in line)


def test_runner_process_commits_notify() -> None:
    """A migration copied by replica A's runner child process changes what a legacy path
    resolves to; replica B, which runs no migration and answered that path from a kept
    reply all along, hears of the runner's commits."""
    team = f"notify-{uuid.uuid4().hex[:6]}"
    path = apb.ResolvePathRequest(path=f"{team}/model-registry/model-00:production")
    method = "/registry.v1.ArtifactService/ResolvePath"
    with fresh_database() as url:
        key = bootstrap(url)
        seed_teams(url, [team], models=2, per_model=20)
        a = Proc(["--database-url", url], free_port())  # migrations in a child process
        b = Proc(["--database-url", url, "--migration-runner", "off"], free_port())
        channels = Channels()
        try:
            a.wait_healthy()
            b.wait_healthy()
            reads = channels.stubs(b, key)
            before = reads.artifacts.ResolvePath(path)
            assert not before.redirected
            eventually(
                lambda: reads.artifacts.ResolvePath(path) == before and kept_replies(b, method) > 0,
                "B never kept the legacy path's reply",
            )
            with Client(f"127.0.0.1:{a.port}", key) as admin:
                migration = start_migration(admin.stubs, [team])
                while (state := admin.migration(migration.name).state) not in FINAL:
                    # B keeps answering between the commits it hears of
                    assert reads.artifacts.ResolvePath(path).artifact_version
                final = wait_final(admin.stubs, migration.name)
            assert final.state == r.MIGRATION_STATE_SUCCEEDED, (state, final.error)
            answered = kept_replies(b, method)
            eventually(
                lambda: reads.artifacts.ResolvePath(path).redirected,
                "B kept answering the legacy registry after the migration",
            )
            after = reads.artifacts.ResolvePath(path)
            assert after.redirected and after.canonical_path != before.canonical_path
            eventually(
                lambda: (
                    reads.artifacts.ResolvePath(path) == after
                    and kept_replies(b, method) > answered
                ),
                "B never kept the migrated path's reply",
            )
        finally:
            channels.close()
            a.stop()
            b.stop()


def test_every_table_of_the_models_numbers_its_commits(database_url: str) -> None:
    """A table without the trigger would change without any replica hearing of it: a
    revision that creates a table calls `commit_numbers.mark_commits_on`."""
    with Database(database_url).read_engine.connect() as conn:
        marked = {
            row[0]
            for row in conn.execute(
                text(
                    "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                    " JOIN pg_proc p ON p.oid = t.tgfoid"
                    " WHERE p.proname = :function AND t.tgenabled <> 'D'"
                    # statement-level (bit 0 clear), AFTER (bit 1 clear), and INSERT,
                    # DELETE, UPDATE and TRUNCATE (bits 2-5 set)
                    " AND t.tgtype & 3 = 0 AND t.tgtype & 60 = 60"
                ),
                {"function": MARK_TRIGGER},
            )
        }
    missing = sorted(set(Base.metadata.tables) - marked)
    assert not missing, f"tables whose commits nobody hears of: {missing}"


def test_commit_numbers_follow_commit_order(database_url: str) -> None:
    """Concurrent transactions, each marked by its first change and committing in an
    order of their own: the numbers they are told and the notifications a listener gets
    follow commit order, one number per writing transaction."""
    conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
    writers, each = 6, 40
    told: list[int] = []

    def write(n: int) -> None:
        rng = random.Random(n)
        with psycopg.connect(conninfo, options=commits.session_options(None)) as conn:
            conn.add_notice_handler(
                lambda d: told.append(int(d.message_primary.removeprefix(commits.NOTICE_PREFIX)))
            )
            for _ in range(each):
                # changes no row, and still marks the transaction
                conn.execute("UPDATE organizations SET name = name WHERE id = -1")
                if rng.random() < 0.5:
                    time.sleep(0.001)
                conn.execute("UPDATE users SET name = name WHERE id = -1")
                conn.commit()
                conn.execute("SELECT 1")  # a read-only transaction is not numbered
                conn.commit()

    with psycopg.connect(conninfo, autocommit=True) as listener:
        listener.execute(f"LISTEN {commits.CHANNEL}")
        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        heard: list[int] = []
        for notify in listener.notifies(timeout=2):
            heard.append(int(notify.payload))
    ours = [n for n in heard if n in set(told)]
    assert len(told) == writers * each == len(set(told))
    assert ours == sorted(told)
    assert all(b > a for a, b in itertools.pairwise(heard))
