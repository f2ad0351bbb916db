"""A bounded soak: minutes of mixed traffic against a real server, a legacy migration in
the middle, and the database invariants checked at the end.

    python -m bench.soak [--minutes 3] [--postgres] [--threads 4]

A fresh database (a SQLite file in a temporary directory, or with `--postgres` a new
database on 127.0.0.1:5432, dropped afterwards) gets a bootstrapped organization and
a few legacy team registries (inserted directly), and `registry-server serve` is
started on it as a subprocess on a loopback port. Then, until the time is up:

- client threads send a weighted mix of ResolvePath (registry and legacy paths),
  GetCollectionVersion, ListCollectionVersions and ListCollections with filters,
  ListEvents, LinkArtifactVersion, AddAlias (half compare-and-set),
  CreateArtifactVersion and CreateCollection (with request ids), recording every
  acknowledged link and alias move;
- one thread watches the organization's events (WatchEvents), reconnecting from its
  last cursor every few seconds;
- at 40% of the time a migration of the legacy teams starts, and runs under the
  traffic.

At the end: no call answered INTERNAL or UNKNOWN; every acknowledged link and alias
move is there and the invariants of tests/support/invariants.py hold over the
whole database (one version per alias, no link to a missing version, dense indices,
one event per change); the migration SUCCEEDED and its targets equal the legacy
sources; legacy paths resolved to the same artifact versions throughout; the event
watch saw every event of the organization once, in cursor order; every created
artifact version is listed. Reported: calls and error codes per RPC, p50 / p99
latency, server RSS and CPU. Exit status 1 when a check fails. Full figures as JSON
in `bench/results/<timestamp>-soak.json`.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select

from bench.h2load import percentile
from bench.host import machine
from bench.run import ServerProcess, fresh_database, write_json
from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import event_service_pb2 as epb
from registry.v1 import migration_service_pb2 as mpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_server.storage import models as m
from registry_server.storage.db import Database
from tests.support.invariants import alias_events, invariant_violations
from tests.support.ledger import (
    ALIASES,
    Ledger,
    acknowledged_violations,
    api_snapshot,
    link,
    make_sources,
    move_alias,
)
from tests.support.migrations import FINAL
from tests.support.processes import ROOT_ORG, bootstrap
from tests.support.seeded_teams import dump_legacy, dump_target, seed_teams

THREADS = 4
CALLS_PER_THREAD = 2_000_000  # a bound on each loop; the clock ends it first
CALL_TIMEOUT = 10.0
SOURCES_AT_START = 100
COLLECTIONS = 4
LEGACY_TEAMS = 3
LEGACY_MODELS = 10
LEGACY_VERSIONS_PER_MODEL = 100
MIGRATION_AT = 0.4  # of the soak time
MIGRATION_DELAY_MS = 200  # between migration steps, so it overlaps the traffic
MIGRATION_WAIT_SECONDS = 300.0
WATCH_RECONNECT_SECONDS = 20.0
FORBIDDEN_CODES = {"INTERNAL", "UNKNOWN"}
LIST_VERSION_FILTERS = (
    'alias = "production"',
    'alias = "staging" OR alias = "canary"',
    "version_index > 10",
    "metadata.accuracy > 0.5",
    'tag = "soak"',
)
LIST_COLLECTION_FILTERS = ('name : "soak"', 'type = "model"', 'tag = "soak"')


@dataclass
class Stats:
    """Answers per RPC and code, and latencies per RPC (thread-safe)."""

    codes: Counter[tuple[str, str]] = field(default_factory=Counter)
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, rpc: str, code: str, seconds: float) -> None:
        with self._lock:
            self.codes[(rpc, code)] += 1
            self.latencies_ms[rpc].append(seconds * 1000.0)

    def table(self) -> list[dict[str, Any]]:
        rows = []
        for rpc in sorted(self.latencies_ms):
            by_code = {c: n for (x, c), n in self.codes.items() if x == rpc}
            lat = self.latencies_ms[rpc]
            rows.append(
                {
                    "rpc": rpc,
                    "calls": len(lat),
                    "codes": dict(sorted(by_code.items())),
                    "p50_ms": round(percentile(lat, 50), 2),
                    "p99_ms": round(percentile(lat, 99), 2),
                }
            )
        return rows


class Soak:
    """The traffic, the event watch and the migration, against one server."""

    def __init__(
        self, target: str, key: str, url: str, seconds: float, threads: int, teams: list[str]
    ) -> None:
        self.channel = open_channel(target, key)
        self.stubs = Stubs.on(self.channel)
        self.url = url
        self.seconds = seconds
        self.threads = threads
        self.stats = Stats()
        self.ledger = Ledger()
        self.stop = threading.Event()
        self.problems: Counter[str] = Counter()  # what went wrong, with how often
        self.registry = f"organizations/{ROOT_ORG}/registries/model"
        self.sources: list[str] = []
        self.collections: list[str] = []
        self.created_versions: list[str] = []
        self.legacy_teams = teams
        self.legacy_answers: dict[str, str] = {}
        self.watched: list[int] = []
        self.watch_reconnects = 0
        self.migration: r.Migration | None = None
        self.migration_seconds = 0.0
        self._lock = threading.Lock()

    # --- set-up ------------------------------------------------------------------------

    def set_up(self) -> None:
        self.sources = make_sources(self.stubs, "soak", SOURCES_AT_START)
        self.collections = [f"{self.registry}/collections/soak-{i}" for i in range(COLLECTIONS)]

    # --- operations: each returns None or raises grpc.RpcError --------------------------

    def _pick(self, rng: random.Random) -> tuple[str, list[int]]:
        with self._lock:
            collection = rng.choice(self.collections)
        return collection, self.ledger.indices(collection)

    def resolve(self, rng: random.Random, _seen: dict[Any, int]) -> str | None:
        collection, indices = self._pick(rng)
        path = f"{ROOT_ORG}/wandb-registry-model/{collection.rsplit('/', 1)[1]}"
        if not indices:
            return "skip"
        version = f":v{rng.choice(indices)}" if rng.random() < 0.7 else ""
        self.stubs.artifacts.ResolvePath(
            apb.ResolvePathRequest(path=path + version), timeout=CALL_TIMEOUT
        )
        return None

    def resolve_legacy(self, rng: random.Random, _seen: dict[Any, int]) -> str | None:
        """A legacy path must name the same artifact version before, during and after
        the migration (afterwards through its redirect)."""
        team = rng.choice(self.legacy_teams)
        path = f"{team}/model-registry/model-{rng.randrange(LEGACY_MODELS):02d}:production"
        got = self.stubs.artifacts.ResolvePath(
            apb.ResolvePathRequest(path=path), timeout=CALL_TIMEOUT
        ).artifact_version.name
        with self._lock:
            first = self.legacy_answers.setdefault(path, got)
            if first != got:
                self.problems[f"{path} resolved to {first}, later to {got}"] += 1
        return None

    def get_version(self, rng: random.Random, _seen: dict[Any, int]) -> str | None:
        collection, indices = self._pick(rng)
        if not indices:
            return "skip"
        self.stubs.collections.GetCollectionVersion(
            cpb.GetCollectionVersionRequest(name=f"{collection}/versions/{rng.choice(indices)}"),
            timeout=CALL_TIMEOUT,
        )
        return None

    def list_versions(self, rng: random.Random, _seen: dict[Any, int]) -> str | None:
        collection, indices = self._pick(rng)
        if not indices:
            return "skip"
        self.stubs.collections.ListCollectionVersions(
            cpb.ListCollectionVersionsRequest(
                parent=collection, filter=rng.choice(LIST_VERSION_FILTERS), page_size=20
            ),
            timeout=CALL_TIMEOUT,
        )
        return None

    def list_collections(self, rng: random.Random, _seen: dict[Any, int]) -> str | None:
        self.stubs.collections.ListCollections(
            cpb.ListCollectionsRequest(
                parent=self.registry, filter=rng.choice(LIST_COLLECTION_FILTERS), page_size=50
            ),
            timeout=CALL_TIMEOUT,
        )
        return None

    def list_events(self, rng: random.Random, _seen: dict[Any, int]) -> str | None:
        self.stubs.events.ListEvents(
            epb.ListEventsRequest(
                parent=f"organizations/{ROOT_ORG}",
                filter=rng.choice(('type = "ALIAS_ADDED"', 'type = "VERSION_LINKED"', "")),
                page_size=50,
            ),
            timeout=CALL_TIMEOUT,
        )
        return None

    def link(self, rng: random.Random, _seen: dict[Any, int]) -> str | None:
        collection, _ = self._pick(rng)
        with self._lock:
            source = rng.choice(self.sources)
        _, code = link(self.stubs, self.ledger, collection, source)
        return None if code is None else code.name

    def move(self, rng: random.Random, seen: dict[Any, int]) -> str | None:
        collection, indices = self._pick(rng)
        if not indices:
            return "skip"
        _, code = move_alias(
            self.stubs,
            self.ledger,
            collection,
            rng.choice(ALIASES),
            rng.choice(indices),
            seen,
            cas=rng.random() < 0.5,
        )
        return None if code is None else code.name

    def create_version(self, rng: random.Random, _seen: dict[Any, int]) -> str | None:
        metadata = struct_pb2.Struct()
        metadata.update({"accuracy": rng.random()})
        created = self.stubs.artifacts.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent="teams/soak/projects/train",
                artifact_id=f"model-{rng.randrange(8)}",
                type="model",
                manifest=[
                    r.ManifestEntry(
                        path="model.pt",
                        digest=f"sha256:{uuid.uuid4().hex * 2}",
                        size=1,
                        ref="s3://bucket/model.pt",
                    )
                ],
                metadata=metadata,
                tags=["soak"] if rng.random() < 0.5 else [],
                request_id=str(uuid.uuid4()),
            ),
            timeout=CALL_TIMEOUT,
        )
        with self._lock:
            self.sources.append(created.name)
            self.created_versions.append(created.name)
        return None

    def create_collection(self, rng: random.Random, _seen: dict[Any, int]) -> str | None:
        created = self.stubs.collections.CreateCollection(
            cpb.CreateCollectionRequest(
                parent=self.registry,
                collection_id=f"soak-extra-{uuid.uuid4().hex[:10]}",
                collection=r.Collection(type="model", tags=["soak"]),
                request_id=str(uuid.uuid4()),
            ),
            timeout=CALL_TIMEOUT,
        )
        with self._lock:
            self.collections.append(created.name)
        return None

    # --- the loops -------------------------------------------------------------------

    def operations(self) -> list[tuple[str, Callable[..., str | None], int]]:
        return [
            ("ResolvePath", self.resolve, 22),
            ("ResolvePath(legacy)", self.resolve_legacy, 6),
            ("GetCollectionVersion", self.get_version, 12),
            ("ListCollectionVersions", self.list_versions, 10),
            ("ListCollections", self.list_collections, 4),
            ("ListEvents", self.list_events, 4),
            ("LinkArtifactVersion", self.link, 15),
            ("AddAlias", self.move, 16),
            ("CreateArtifactVersion", self.create_version, 9),
            ("CreateCollection", self.create_collection, 2),
        ]

    def client(self, n: int, deadline: float) -> None:
        rng = random.Random(n)
        ops = self.operations()
        weights = [w for _, _, w in ops]
        seen: dict[Any, int] = {}
        for _ in range(CALLS_PER_THREAD):
            if self.stop.is_set() or time.monotonic() >= deadline:
                return
            name, op, _ = rng.choices(ops, weights)[0]
            started = time.perf_counter()
            details = ""
            try:
                code = op(rng, seen) or "OK"
            except grpc.RpcError as e:
                code, details = e.code().name, e.details() or ""
            if code in FORBIDDEN_CODES:
                with self._lock:
                    self.problems[f"{name} answered {code}: {details}"] += 1
            if code != "skip":
                self.stats.record(name, code, time.perf_counter() - started)

    def watch(self) -> None:
        """Follows the organization's events, reconnecting from the last cursor."""
        cursor = 0
        while not self.stop.is_set():
            call = self.stubs.events.WatchEvents(
                epb.WatchEventsRequest(parent=f"organizations/{ROOT_ORG}", after_cursor=cursor),
                timeout=WATCH_RECONNECT_SECONDS,
            )
            stopper = threading.Thread(target=self._cancel_on_stop, args=(call,), daemon=True)
            stopper.start()
            try:
                for event in call:
                    if event.cursor <= cursor:
                        self.problems[f"event {event.cursor} after {cursor}"] += 1
                    cursor = event.cursor
                    self.watched.append(event.cursor)
            except grpc.RpcError as e:
                if e.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
                    self.problems[f"WatchEvents: {e.code().name}: {e.details()}"] += 1
                    return
            self.watch_reconnects += 1

    def _cancel_on_stop(self, call: Any) -> None:
        while not self.stop.wait(0.2):
            if call.done():
                return
        call.cancel()

    def migrate(self, start_after: float) -> None:
        """Starts the legacy migration after `start_after` seconds and follows it."""
        if self.stop.wait(start_after):
            return
        started = time.monotonic()
        try:
            migration = self.stubs.migrations.StartMigration(
                mpb.StartMigrationRequest(
                    parent=f"organizations/{ROOT_ORG}",
                    teams=[f"teams/{t}" for t in self.legacy_teams],
                    request_id=str(uuid.uuid4()),
                ),
                timeout=60,
            )
            while migration.state not in FINAL:
                if time.monotonic() - started > self.seconds + MIGRATION_WAIT_SECONDS:
                    break
                time.sleep(0.5)
                migration = self.stubs.migrations.GetMigration(
                    mpb.GetMigrationRequest(name=migration.name), timeout=CALL_TIMEOUT
                )
        except grpc.RpcError as e:
            self.problems[f"migration: {e.code().name}: {e.details()}"] += 1
            return
        self.migration = migration
        self.migration_seconds = time.monotonic() - started

    def run(self) -> None:
        deadline = time.monotonic() + self.seconds
        clients = [
            threading.Thread(target=self.client, args=(n, deadline), daemon=True)
            for n in range(self.threads)
        ]
        watcher = threading.Thread(target=self.watch, daemon=True)
        migrator = threading.Thread(
            target=self.migrate, args=(self.seconds * MIGRATION_AT,), daemon=True
        )
        for t in [*clients, watcher, migrator]:
            t.start()
        for t in clients:
            t.join()
        migrator.join(MIGRATION_WAIT_SECONDS)
        time.sleep(1.0)  # lets the watch catch up with the last events
        self.stop.set()
        watcher.join(30)

    # --- the checks --------------------------------------------------------------------

    def check(self) -> list[str]:
        out = [f"{problem} ({n} times)" for problem, n in self.problems.most_common()]
        if self.migration is None or self.migration.state != r.MIGRATION_STATE_SUCCEEDED:
            state = r.MigrationState.Name(self.migration.state) if self.migration else "none"
            out.append(f"the migration ended {state}")
        else:
            for team in self.legacy_teams:
                target, legacy = dump_target(self.url, team), dump_legacy(self.url, team)
                if target["versions"] != legacy["versions"]:
                    out.append(f"migrated versions of {team} differ from the legacy ones")
                if target["aliases"] != legacy["aliases"]:
                    out.append(f"migrated aliases of {team} differ from the legacy ones")
        snap = api_snapshot(self.stubs, self.collections)
        out += acknowledged_violations(self.ledger, snap, alias_events(self.url))
        out += invariant_violations(self.url)
        out += self._events_watched()
        out += self._created_versions_listed()
        return out

    def _events_watched(self) -> list[str]:
        if not self.watched:
            return ["the event watch saw nothing"]
        db = Database(self.url)
        try:
            with db.read() as s:
                stored = list(
                    s.execute(
                        select(m.Event.cursor)
                        .join(m.Organization, m.Organization.id == m.Event.org_id)
                        .where(m.Organization.name == ROOT_ORG, m.Event.cursor <= self.watched[-1])
                        .order_by(m.Event.cursor)
                    ).scalars()
                )
        finally:
            db.dispose()
        if stored != self.watched:
            missed = sorted(set(stored) - set(self.watched))
            return [f"the event watch missed {len(missed)} events (e.g. {missed[:5]})"]
        return []

    def _created_versions_listed(self) -> list[str]:
        listed: set[str] = set()
        for k in range(8):
            token = ""
            while True:
                page = self.stubs.artifacts.ListArtifactVersions(
                    apb.ListArtifactVersionsRequest(
                        parent=f"teams/soak/projects/train/artifacts/model-{k}",
                        page_size=1000,
                        page_token=token,
                    ),
                    timeout=60,
                )
                listed.update(v.name for v in page.artifact_versions)
                token = page.next_page_token
                if not token:
                    break
        missing = [v for v in self.created_versions if v not in listed]
        return [f"created artifact versions not listed: {missing[:5]}"] if missing else []


def healthy(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5
            )
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def report(result: dict[str, Any]) -> None:
    print(f"\nsoak on {result['database']}: {result['minutes']} min, {result['threads']} threads")
    print(f"{'rpc':<24}{'calls':>8}{'p50 ms':>9}{'p99 ms':>9}  codes")
    for row in result["rpcs"]:
        codes = ", ".join(f"{c} {n}" for c, n in row["codes"].items())
        print(f"{row['rpc']:<24}{row['calls']:>8}{row['p50_ms']:>9}{row['p99_ms']:>9}  {codes}")
    print(
        f"total {result['calls']} calls, {result['calls_per_second']}/s; "
        f"links acknowledged {result['links_acknowledged']}, alias moves "
        f"{result['alias_moves']} (acknowledged {result['alias_moves_acknowledged']})"
    )
    print(
        f"migration {result['migration_state']} ({result['migration_versions']} versions, "
        f"{result['migration_seconds']} s); events watched {result['events_watched']} "
        f"({result['watch_reconnects']} reconnects)"
    )
    print(
        f"server RSS {result['server_rss_mb']} MB at the end (max "
        f"{result['server_rss_max_mb']} MB), CPU {result['server_cpu_seconds']} s"
    )
    if result["violations"]:
        print(f"FAILED: {len(result['violations'])} problems")
        for v in result["violations"][:20]:
            print(f"  - {v}")
    else:
        print("all checks passed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description="Bounded soak with mixed traffic."
    )
    parser.add_argument("--minutes", type=float, default=3.0, help="traffic time (default 3)")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    parser.add_argument("--threads", type=int, default=THREADS, help="client threads")
    parser.add_argument("--server-log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.threads <= 0:
        parser.error("--minutes and --threads must be positive")
    database = "postgres" if args.postgres else "sqlite"
    # Read by the server subprocess at every migration step.
    os.environ["REGISTRY_MIGRATION_BATCH_DELAY_MS"] = str(MIGRATION_DELAY_MS)
    load_start = [round(x, 2) for x in os.getloadavg()]
    legacy_teams = [f"soak-legacy-{i}-{uuid.uuid4().hex[:4]}" for i in range(LEGACY_TEAMS)]
    with fresh_database(args.postgres, "soak") as url, tempfile.TemporaryDirectory() as logs:
        key = bootstrap(url)
        seed_teams(url, legacy_teams, models=LEGACY_MODELS, per_model=LEGACY_VERSIONS_PER_MODEL)
        server = ServerProcess(url, log_level=args.server_log_level, log_dir=Path(logs))
        soak: Soak | None = None
        try:
            server.wait_healthy()
            soak = Soak(server.target, key, url, args.minutes * 60.0, args.threads, legacy_teams)
            soak.set_up()
            started = time.monotonic()
            soak.run()
            elapsed = time.monotonic() - started
            violations = soak.check()
            if server.proc.poll() is not None or not healthy(server.target):
                violations.append(f"the server is not healthy at the end:\n{server.log_tail()}")
            rss = server.rss_mb()
            cpu = server.cpu_seconds()
        finally:
            if soak is not None:
                soak.channel.close()
            server.stop()
        server_log = server.log_path.read_text(errors="replace")
        calls = sum(soak.stats.codes.values())
        moves = soak.ledger.moves
        result: dict[str, Any] = {
            "command": " ".join(["python -m bench.soak", *(argv or sys.argv[1:])]),
            "database": database,
            "minutes": args.minutes,
            "threads": args.threads,
            "machine": {**machine(), "load_average_at_start": load_start},
            "calls": calls,
            "calls_per_second": round(calls / elapsed, 1) if elapsed else 0.0,
            "rpcs": soak.stats.table(),
            "links_acknowledged": len(soak.ledger.links),
            "alias_moves": len(moves),
            "alias_moves_acknowledged": sum(1 for mv in moves if mv.outcome == "ok"),
            "collections": len(soak.collections),
            "artifact_versions_created": len(soak.created_versions),
            "migration_state": (
                r.MigrationState.Name(soak.migration.state) if soak.migration else "none"
            ),
            "migration_versions": soak.migration.progress.total if soak.migration else 0,
            "migration_seconds": round(soak.migration_seconds, 1),
            "events_watched": len(soak.watched),
            "watch_reconnects": soak.watch_reconnects,
            "server_rss_mb": round(rss, 1),
            "server_rss_max_mb": round(max(server.rss_max_mb, rss), 1),
            "server_cpu_seconds": round(cpu, 1),
            "violations": violations,
        }
    report(result)
    path = write_json(result, "-soak")
    print(f"results: {path}")
    if violations:
        log_copy = path.with_suffix(".server.log")
        log_copy.write_text(server_log)
        print(f"server log: {log_copy}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
