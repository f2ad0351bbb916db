"""Two replicas on one PostgreSQL database behind a client-side round-robin channel.

Clients (`registry_client.Client` on `ipv4:127.0.0.1:P1,127.0.0.1:P2` with the
`round_robin` policy) send mixed traffic: resolves, gets and filtered lists, links and
creates with a request_id (retried on UNAVAILABLE with the same id), and alias moves,
half of them compare-and-set (not retried: without a request id a retry could apply
twice). A legacy migration runs at the same time. The replica holding the migration's
lease is killed with SIGKILL in the middle of both. The clients carry on against the
survivor, the survivor takes the migration over once the lease has expired and
finishes it, and, checked through the survivor alone, no acknowledged write is lost
and the database invariants of tests/support/invariants.py hold.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from typing import Any

import grpc
import pytest

from registry.v1 import resources_pb2 as r
from registry_client import Client, RegistryError, RetryPolicy, Stubs, open_channel
from registry_server.storage.db import Database

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
from ..support.migrations import FINAL, poll_until, read_progress
from ..support.processes import ROOT_ORG, Proc, bootstrap, free_port, pid_of
from ..support.seeded_teams import MODELS, VERSIONS_PER_MODEL, dump_legacy, dump_target, seed_teams
from ..support.servers import database_kind, fresh_database

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
                            r.ManifestEntry(path="m.pt", digest=f"sha256:{n:02x}{i:062x}", size=1)
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
