"""Migration benchmark: legacy Model Registry to Registry, end to end, under read load.

    python -m bench.migration_bench [--postgres] [--versions 100000] [--teams 100]
                                    [--first-team-versions 10000] [--quick]

The bulk loader seeds `--versions` legacy registered-model versions over `--teams`
teams (the first team gets `--first-team-versions` of them; 100 versions per
registered model, members in every team role, a service account, model registry
admins, protected aliases), next to the 1k-version Registry data set of
`bench.run`. The real server is started as a subprocess, and then:

1. idle: ResolvePath by alias (the `bench.run` case) is sent at a fixed rate
   (`--probe-rate`, open loop, 2 channels) for `--idle-seconds`; its p50/p99 are
   the idle figures. The write traffic of step 2 runs here too: the first team's
   member links a version every 20 ms into a registry made for it;
2. StartMigration of all the legacy teams, as the org admin, once the probe runs
   again and every connection the run uses is open and warm; from the moment it is
   sent
   - the same ResolvePath probe runs until the migration ends (p50/p99 under
     migration),
   - the first (largest) team's member tries LinkArtifactVersion into the new
     `{team}-mr-migrated` registry every 20 ms until it succeeds (time until the
     registry is writable),
   - WatchMigration records every state change and the progress;
3. at SUCCEEDED: versions/s over the whole run (copy and verification), where the
   slowest 1% of the probe's calls fell (StartMigration in flight, then each state), the
   migration's own verification counts, and an independent spot check: every
   team's legacy path `model-0000:production` resolves with `redirected=true` to
   the artifact version it named before.

Prints a table and writes `bench/results/<timestamp>-migration.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from bench import schedstat
from bench.h2load import percentile
from bench.host import machine
from bench.run import (
    ROOT,
    AioResult,
    ServerProcess,
    aio_load,
    fresh_database,
    metadata,
    write_json,
)
from bench.seed import PROBE_SOURCES, Seeded, Shape, seed
from registry.v1 import artifact_service_pb2 as art_pb
from registry.v1 import collection_service_pb2 as col_pb
from registry.v1 import collection_service_pb2_grpc as col_grpc
from registry.v1 import migration_service_pb2 as mig_pb
from registry.v1 import registry_service_pb2 as reg_pb
from registry.v1 import registry_service_pb2_grpc as reg_grpc
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel

TARGET_VERSIONS_PER_S = 10_000.0
TARGET_P99_FACTOR = 2.0
TARGET_WRITABLE_S = 2.0
FINAL = {
    r.MIGRATION_STATE_SUCCEEDED,
    r.MIGRATION_STATE_FAILED,
    r.MIGRATION_STATE_CANCELLED,
    r.MIGRATION_STATE_ROLLED_BACK,
}
WRITE_PROBE_INTERVAL = 0.02


def resolve_request(sd: Seeded) -> art_pb.ResolvePathRequest:
    return art_pb.ResolvePathRequest(
        path=f"{sd.org}/wandb-registry-{sd.target_registry}/{sd.target_collection}:production"
    )


def resolve_call(sd: Seeded) -> Any:
    body = resolve_request(sd)
    md = metadata(sd.user_key)

    async def call(channel: grpc.aio.Channel, _i: int) -> Any:
        stub = channel.unary_unary(
            "/registry.v1.ArtifactService/ResolvePath",
            request_serializer=art_pb.ResolvePathRequest.SerializeToString,
            response_deserializer=art_pb.ResolvePathResponse.FromString,
        )
        return await stub(body, metadata=md, timeout=30)

    return call


@dataclass
class Watch:
    """What WatchMigration showed, with times relative to StartMigration."""

    states: list[tuple[float, str]] = field(default_factory=list)
    final: r.Migration | None = None
    snapshots: int = 0
    error: str = ""


async def watch_migration(
    channel: grpc.aio.Channel, key: str, name: str, t0: float, done: asyncio.Event
) -> Watch:
    out = Watch()
    last_state = -1
    try:
        stream = channel.unary_stream(
            "/registry.v1.MigrationService/WatchMigration",
            request_serializer=mig_pb.WatchMigrationRequest.SerializeToString,
            response_deserializer=r.Migration.FromString,
        )
        async for snapshot in stream(
            mig_pb.WatchMigrationRequest(name=name), metadata=metadata(key)
        ):
            out.snapshots += 1
            if snapshot.state != last_state:
                last_state = snapshot.state
                out.states.append(
                    (round(time.perf_counter() - t0, 3), r.MigrationState.Name(snapshot.state))
                )
            out.final = snapshot
            if snapshot.state in FINAL:
                break
    except grpc.aio.AioRpcError as err:
        out.error = f"{err.code().name}: {err.details()}"
    finally:
        done.set()
    return out


async def poll_until_final(target: str, key: str, name: str, done: asyncio.Event) -> r.Migration:
    """GetMigration every 200 ms: the fallback when the watch stream broke."""
    async with grpc.aio.insecure_channel(target) as channel:
        get = channel.unary_unary(
            "/registry.v1.MigrationService/GetMigration",
            request_serializer=mig_pb.GetMigrationRequest.SerializeToString,
            response_deserializer=r.Migration.FromString,
        )
        while True:
            snapshot: r.Migration = await get(
                mig_pb.GetMigrationRequest(name=name), metadata=metadata(key), timeout=30
            )
            if snapshot.state in FINAL:
                done.set()
                return snapshot
            await asyncio.sleep(0.2)


async def writable_after(
    channel: grpc.aio.Channel, sd: Seeded, registry: str, t0: float, done: asyncio.Event
) -> tuple[float | None, int, str]:
    """Seconds after StartMigration until a link into `registry` succeeds."""
    team = sd.legacy[0]
    attempts = 0
    last_error = ""
    link = col_grpc.CollectionServiceStub(channel).LinkArtifactVersion
    while not done.is_set():
        request = col_pb.LinkArtifactVersionRequest(
            parent=registry,
            collection_id="writable-probe",
            artifact_version=sd.probe_source(team, attempts % 2000),
        )
        attempts += 1
        try:
            await link(request, metadata=metadata(team.member_key), timeout=30)
            return round(time.perf_counter() - t0, 3), attempts, ""
        except grpc.aio.AioRpcError as err:
            last_error = f"{err.code().name}: {err.details()}"
        await asyncio.sleep(WRITE_PROBE_INTERVAL)
    return None, attempts, last_error


async def idle_writer(
    channel: grpc.aio.Channel, sd: Seeded, done: asyncio.Event
) -> tuple[int, dict[str, int]]:
    """Links the first legacy team's probe sources (the ones the write probe links
    later), as its member, into a registry made for this every WRITE_PROBE_INTERVAL
    until `done`; the number of links and the errors (by status code)."""
    team = sd.legacy[0]
    registries = reg_grpc.RegistryServiceStub(channel)
    registry = await registries.CreateRegistry(
        reg_pb.CreateRegistryRequest(
            parent=sd.org_name,
            registry_id="idle-writes",
            registry=r.Registry(allow_all_artifact_types=True),
        ),
        metadata=metadata(sd.admin_key),
        timeout=30,
    )
    await registries.AddRegistryMember(
        reg_pb.AddRegistryMemberRequest(
            registry=registry.name,
            member=f"users/{team.member_user}",
            role=r.REGISTRY_ROLE_MEMBER,
        ),
        metadata=metadata(sd.admin_key),
        timeout=30,
    )
    link = col_grpc.CollectionServiceStub(channel).LinkArtifactVersion
    links, errors = 0, {}
    for i in range(PROBE_SOURCES):
        if done.is_set():
            break
        request = col_pb.LinkArtifactVersionRequest(
            parent=registry.name,
            collection_id="idle-writes",
            artifact_version=sd.probe_source(team, i),
        )
        try:
            await link(request, metadata=metadata(team.member_key), timeout=30)
            links += 1
        except grpc.aio.AioRpcError as err:
            errors[err.code().name] = errors.get(err.code().name, 0) + 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), WRITE_PROBE_INTERVAL)
    return links, errors


def processes(server: ServerProcess, postgres: bool) -> dict[str, list[int]]:
    """The processes whose CPU use the report shows: the server, its migration runner
    child, this benchmark (the probe's client) and, on PostgreSQL, the database's
    processes (where the runner's SQL runs). Looked up afresh for each snapshot."""
    groups = {
        "server": [server.proc.pid],
        "runner": server.pids()[1:],
        "probe": [os.getpid()],
    }
    if postgres:
        groups["postgres"] = schedstat.named("postgres")
    return groups


def runner_busy_share(server: ServerProcess) -> str:
    """The share of the time the server's runner child works while the server answers
    calls (its `--busy-share` argument: server/registry_server/workers/pacing.py)."""
    for pid in server.pids()[1:]:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode().split("\0")
        except OSError:
            continue
        if "--busy-share" in args:
            return args[args.index("--busy-share") + 1]
    return "unknown"


def slowest(
    res: AioResult, t0: float, phases: list[tuple[float, str]], share: float = 1.0
) -> dict[str, Any]:
    """The slowest `share` percent of the calls (those that make the p99): when each
    started, in seconds after StartMigration was sent, and how many fell in each phase
    (StartMigration in flight, then each state WatchMigration showed, by start time)."""
    ordered = sorted(phases)
    count = max(1, round(len(res.latencies_us) * share / 100))
    calls = sorted(zip(res.latencies_us, res.started_at, strict=True), reverse=True)[:count]
    by_phase: dict[str, int] = {}
    for _us, started in calls:
        offset = started - t0
        phase = next((name for at, name in reversed(ordered) if at <= offset), ordered[0][1])
        by_phase[phase] = by_phase.get(phase, 0) + 1
    return {
        "calls": [[round(started - t0, 3), round(us / 1000, 2)] for us, started in calls],
        "by_phase": by_phase,
    }


def summarize(res: AioResult) -> dict[str, Any]:
    return {
        "requests": res.requests,
        "failed": res.failed,
        "qps": round(res.qps, 1),
        "p50_ms": round(res.percentile_ms(50), 3),
        "p99_ms": round(res.percentile_ms(99), 3),
        "max_ms": round(res.percentile_ms(100), 3),
        "errors": res.errors,
    }


async def migrate_under_load(
    server: ServerProcess, sd: Seeded, *, probe_rate: float, idle_seconds: float, postgres: bool
) -> dict[str, Any]:
    target = server.target
    probe = resolve_call(sd)
    idle_start = time.time() + 1.0  # after the warm-up
    # The idle window has the write traffic of the migration window too: the write probe
    # there links every WRITE_PROBE_INTERVAL, so here the first team's member does as
    # well, into a registry of its own. The ratio then measures the migration, not the
    # links (nor the first link's cold code path in a server that has served none).
    idle_done = asyncio.Event()
    # CPU use over the idle window (with the probe's warm-up second: same rate, same calls)
    idle_cpu = schedstat.Meter(lambda: processes(server, postgres))
    async with grpc.aio.insecure_channel(target) as idle_channel:
        idle_writes = asyncio.create_task(idle_writer(idle_channel, sd, idle_done))
        try:
            idle = await aio_load(
                target, probe, duration=idle_seconds, warm_up=1.0, rate=probe_rate
            )
        finally:
            idle_done.set()
            idle_links, idle_write_errors = await idle_writes
    idle_end = time.time()
    cpu_idle = idle_cpu.usage()
    teams = [f"teams/{t.name}" for t in sd.legacy]
    # Everything the run needs is connected before StartMigration, and the probe is
    # already running on warm connections: the window measures the migration, not
    # connection set-up in this process or the server.
    migrating, done = asyncio.Event(), asyncio.Event()
    busy_task = asyncio.create_task(
        aio_load(
            target,
            probe,
            duration=24 * 3600,
            warm_up=0.0,
            rate=probe_rate,
            until=done,
            measure_from=migrating,
        )
    )
    async with (
        grpc.aio.insecure_channel(target) as channel,
        grpc.aio.insecure_channel(target) as watch_channel,
        grpc.aio.insecure_channel(target) as write_channel,
    ):
        for ch in (channel, watch_channel, write_channel):
            await ch.channel_ready()
        await asyncio.sleep(1.0)
        start = channel.unary_unary(
            "/registry.v1.MigrationService/StartMigration",
            request_serializer=mig_pb.StartMigrationRequest.SerializeToString,
            response_deserializer=r.Migration.FromString,
        )
        migrating.set()
        busy_cpu = schedstat.Meter(lambda: processes(server, postgres))
        t0 = time.perf_counter()
        busy_start = time.time()
        try:
            started: r.Migration = await start(
                mig_pb.StartMigrationRequest(parent=sd.org_name, teams=teams),
                metadata=metadata(sd.admin_key),
                timeout=120,
            )
        except BaseException:
            done.set()  # ends the probe
            await busy_task
            raise
        start_seconds = time.perf_counter() - t0
        first_target = next(
            (tm.target_registry for tm in started.team_migrations if tm.team == teams[0]),
            f"{sd.org_name}/registries/{sd.legacy[0].name}-mr-migrated",
        )
        if "/" not in first_target:
            first_target = f"{sd.org_name}/registries/{first_target}"
        watch_task = asyncio.create_task(
            watch_migration(watch_channel, sd.admin_key, started.name, t0, done)
        )
        write_task = asyncio.create_task(writable_after(write_channel, sd, first_target, t0, done))
        busy = await busy_task
        busy_end = time.time()
        cpu_busy = busy_cpu.usage()
        watch = await watch_task
        writable, attempts, write_error = await write_task
    final = watch.final
    if final is not None and final.state in FINAL:
        total_seconds = watch.states[-1][0]  # when the watch saw the final state
    else:
        final = await poll_until_final(target, sd.admin_key, started.name, asyncio.Event())
        total_seconds = time.perf_counter() - t0
    versions = sum(t.versions for t in sd.legacy)
    phases = [(0.0, "StartMigration"), (round(start_seconds, 3), "after StartMigration")]
    return {
        "migration": started.name,
        "start_migration_rpc_s": round(start_seconds, 3),
        "final_state": r.MigrationState.Name(final.state),
        "error": final.error,
        "seconds": round(total_seconds, 3),
        "versions": versions,
        "versions_per_s": round(versions / total_seconds, 1) if total_seconds else None,
        "progress": {"total": final.progress.total, "done": final.progress.done},
        "verification": {
            "checked": final.verification.checked,
            "mismatches": list(final.verification.mismatches)[:20],
        },
        "states": watch.states,
        "watch_snapshots": watch.snapshots,
        "watch_error": watch.error,
        "first_team": {
            "team": sd.legacy[0].name,
            "versions": sd.legacy[0].versions,
            "registry": first_target,
            "writable_after_s": writable,
            "attempts": attempts,
            "last_error_before_writable": write_error,
        },
        "resolve_idle": summarize(idle),
        "idle_writes": {"links": idle_links, "errors": idle_write_errors},
        "resolve_during": summarize(busy),
        "slowest_during": slowest(busy, t0, phases + watch.states),
        "windows": {"idle": [idle_start, idle_end], "during": [busy_start, busy_end]},
        "cpu": {
            "idle": {k: dataclasses.asdict(v) for k, v in cpu_idle.items()},
            "during": {k: dataclasses.asdict(v) for k, v in cpu_busy.items()},
        },
    }


ACCESS_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) INFO registry\.access "
    r"/registry\.v1\.ArtifactService/ResolvePath OK ([\d.]+)ms "  # principal, peer, id
)


def server_timing(log: Path, windows: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """ResolvePath times as the server measured them (its access log, INFO: from the
    interceptor's start to the reply, i.e. without the transport's hand-off to the event
    loop), per window, by when each call ended."""
    times: dict[str, list[float]] = {name: [] for name in windows}
    for line in log.read_text(errors="replace").splitlines():
        match = ACCESS_LINE.match(line)
        if not match:
            continue
        stamp = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1e3
        for name, (start, end) in windows.items():
            if start <= stamp <= end:
                times[name].append(float(match[3]))
    return {
        name: {
            "calls": len(values),
            "p50_ms": percentile(values, 50),
            "p99_ms": percentile(values, 99),
            "max_ms": percentile(values, 100),
        }
        for name, values in times.items()
    }


def spot_check(target: str, sd: Seeded, before: dict[str, str]) -> list[str]:
    """Every team's `model-0000:production` legacy path: redirected, same artifact version."""
    problems: list[str] = []
    for team in sd.legacy:
        channel = open_channel(target, team.member_key)
        try:
            reply = Stubs.on(channel).artifacts.ResolvePath(
                art_pb.ResolvePathRequest(path=f"{team.name}/model-registry/model-0000:production"),
                timeout=30,
            )
        except grpc.RpcError as err:
            problems.append(f"{team.name}: {err.code().name} {err.details()}")
            continue
        finally:
            channel.close()
        if not reply.redirected:
            problems.append(f"{team.name}: legacy path not redirected")
        if reply.artifact_version.name != before[team.name]:
            problems.append(
                f"{team.name}: resolves to {reply.artifact_version.name}, was {before[team.name]}"
            )
    return problems


def legacy_targets(target: str, sd: Seeded) -> dict[str, str]:
    out: dict[str, str] = {}
    for team in sd.legacy:
        channel = open_channel(target, team.member_key)
        try:
            reply = Stubs.on(channel).artifacts.ResolvePath(
                art_pb.ResolvePathRequest(path=f"{team.name}/model-registry/model-0000:production"),
                timeout=30,
            )
        finally:
            channel.close()
        out[team.name] = reply.artifact_version.name
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.migration_bench", description="Benchmark a legacy migration."
    )
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    parser.add_argument("--versions", type=int, default=100_000)
    parser.add_argument("--teams", type=int, default=100)
    parser.add_argument("--first-team-versions", type=int, default=10_000)
    parser.add_argument(
        "--probe-rate",
        type=float,
        default=400.0,
        help="ResolvePath calls/s (open loop; ~5%% of the Health ceiling here)",
    )
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="10k versions over 10 teams")
    parser.add_argument("--server-log-level", default="WARNING")
    parser.add_argument(
        "--server-timing",
        action="store_true",
        help="run the server at INFO and also report ResolvePath times from its access log",
    )
    args = parser.parse_args(argv)
    if args.server_timing:
        args.server_log_level = "INFO"
    if args.quick:
        args.versions, args.teams, args.first_team_versions = 10_000, 10, 2_000
        args.idle_seconds = 3.0
    db = "postgresql" if args.postgres else "sqlite"
    shape = Shape(
        collection_versions=1000,
        legacy_teams=args.teams,
        legacy_versions=args.versions,
        legacy_first_team_versions=args.first_team_versions,
    )
    started = dt.datetime.now(dt.UTC)
    host = machine()  # load average before the run, not after it
    with (
        tempfile.TemporaryDirectory(prefix="registry-bench-logs-") as logs,
        fresh_database(args.postgres, "migration") as url,
    ):
        print(f"seeding {args.versions:,} legacy versions over {args.teams} teams ...", flush=True)
        sd = seed(url, shape)
        print(f"seeded {sum(sd.rows.values()):,} rows in {sd.seconds:.1f} s", flush=True)
        server = ServerProcess(url, log_level=args.server_log_level, log_dir=Path(logs))
        try:
            server.wait_healthy()
            channel = open_channel(server.target, sd.user_key)
            try:
                Stubs.on(channel).artifacts.ResolvePath(resolve_request(sd), timeout=10)
            finally:
                channel.close()
            before = legacy_targets(server.target, sd)
            print("migrating under a ResolvePath probe ...", flush=True)
            result = asyncio.run(
                migrate_under_load(
                    server,
                    sd,
                    probe_rate=args.probe_rate,
                    idle_seconds=args.idle_seconds,
                    postgres=args.postgres,
                )
            )
            result["spot_check_problems"] = (
                spot_check(server.target, sd, before)
                if result["final_state"] == "MIGRATION_STATE_SUCCEEDED"
                else ["not checked: the migration did not succeed"]
            )
            result["server_rss_max_mb"] = round(server.rss_max_mb, 1)
            result["runner_busy_share"] = runner_busy_share(server)
        finally:
            server.stop()
        if args.server_timing:
            result["server_timing"] = server_timing(server.log_path, result["windows"])
        if result["final_state"] != "MIGRATION_STATE_SUCCEEDED":
            print(server.log_tail(40))
    report(db, args, result, sd, host)
    payload = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(
            ["python -m bench.migration_bench", *(argv if argv is not None else sys.argv[1:])]
        ),
        "database": db,
        "machine": host,
        "seed": {"seconds": round(sd.seconds, 1), "rows": sd.rows},
        "probe": {"rate_per_s": args.probe_rate, "channels": 2, "idle_seconds": args.idle_seconds},
        "result": result,
        "targets": targets(result),
    }
    path = write_json(payload, "-migration")
    print(f"\nwrote {path.relative_to(ROOT)}")
    return 0 if result["final_state"] == "MIGRATION_STATE_SUCCEEDED" else 1


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    rate = result.get("versions_per_s") or 0.0
    out.append(
        {
            "target": f"versions/s including verification >= {TARGET_VERSIONS_PER_S:,.0f}",
            "value": rate,
            "met": rate >= TARGET_VERSIONS_PER_S,
        }
    )
    idle, busy = result["resolve_idle"]["p99_ms"], result["resolve_during"]["p99_ms"]
    factor = busy / idle if idle else float("inf")
    out.append(
        {
            "target": f"ResolvePath p99 during migration <= {TARGET_P99_FACTOR}x idle",
            "value": round(factor, 2),
            "met": factor <= TARGET_P99_FACTOR,
        }
    )
    writable = result["first_team"]["writable_after_s"]
    out.append(
        {
            "target": (
                f"{result['first_team']['versions']:,}-version team's registry writable "
                f"within {TARGET_WRITABLE_S} s"
            ),
            "value": writable,
            "met": writable is not None and writable <= TARGET_WRITABLE_S,
        }
    )
    return out


def report(
    db: str, args: argparse.Namespace, result: dict[str, Any], sd: Seeded, host: dict[str, Any]
) -> None:
    idle, busy = result["resolve_idle"], result["resolve_during"]
    first = result["first_team"]
    print(f"\nMigration benchmark ({db}): {result['versions']:,} versions over {args.teams} teams")
    print(f"  machine                {host['nproc']} x {host['cpu_model']}, "
          f"CPU probe {host['cpu_probe_ms']} ms")  # fmt: skip
    print(f"  final state            {result['final_state']} {result['error']}")
    rate = result["versions_per_s"]
    print(f"  total                  {result['seconds']:.2f} s  ({rate:,} versions/s)")
    print(
        f"  runner's busy share    {result['runner_busy_share']} "
        "(REGISTRY_MIGRATION_BUSY_SHARE: the share of the time it works while calls come)"
    )
    print(f"  states                 {result['states']}")
    print(
        f"  verification           checked {result['verification']['checked']:,}, "
        f"mismatches {len(result['verification']['mismatches'])}"
    )
    print(
        f"  first team writable    {first['writable_after_s']} s "
        f"({first['team']}, {first['versions']:,} versions, {first['attempts']} attempts)"
    )
    # A migration of about a second gives the probe a few hundred calls: its p99 is
    # then one of the slowest few, hence the call count and the maximum beside it.
    print(
        f"  {'ResolvePath':<22} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'calls':>7} "
        f"{'QPS':>6} {'errors':>7}"
    )
    for label, row in (("idle", idle), ("during migration", busy)):
        print(
            f"  {label:<22} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} {row['max_ms']:>8.2f} "
            f"{row['requests']:>7} {row['qps']:>6.0f} {row['failed']:>7}"
        )
    for label, key in (("in the server, idle", "idle"), ("in the server, during", "during")):
        row = result.get("server_timing", {}).get(key)
        if row:
            print(
                f"  {label:<22} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{row['max_ms']:>8.2f} {row['calls']:>7}"
            )
    writes = result["idle_writes"]
    print(f"  idle write traffic     {writes['links']} links, errors {writes['errors'] or 'none'}")
    slow = result["slowest_during"]
    print(f"  slowest 1% during      {slow['by_phase']}")
    # ms per second of the window, summed over threads: on a CPU / runnable but waiting
    for window in ("idle", "during"):
        use = result["cpu"][window]
        shown = ", ".join(
            f"{who} {u['run_ms_per_s']:.0f}/{u['wait_ms_per_s']:.0f}" for who, u in use.items()
        )
        print(f"  CPU {window + ' ms/s':<18} {shown}  (ran/waited for a CPU)")
    print(f"  server RSS max         {result['server_rss_max_mb']:.0f} MB")
    if result["spot_check_problems"]:
        print(f"  spot check problems    {result['spot_check_problems'][:5]}")
    else:
        print(
            f"  spot check             {len(sd.legacy)} legacy paths redirected to the same version"
        )
    print("\nTargets (issue 8):")
    for t in targets(result):
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['value']}")


if __name__ == "__main__":
    sys.exit(main())
