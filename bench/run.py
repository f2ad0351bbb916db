"""The benchmark suite: seed, serve, drive, report.

    python -m bench.run [--postgres] [--cases resolve_alias,...] [--sizes 1k,1m]
                        [--duration 10] [--quick]

For each size: a fresh database (a SQLite file in a temporary directory, or with
`--postgres` a new PostgreSQL database on 127.0.0.1:5432, dropped afterwards) is
bulk-loaded by `bench.seed`, the real server is started as a subprocess
(`registry-server serve`), and every case is first sent once through the
generated gRPC stubs (h2load cannot see `grpc-status`, so this proves the request
succeeds and returns what it should), then driven for `--duration` seconds at 2
connections x 8 streams. Read cases are driven by h2load; LinkArtifactVersion
needs a different body per request, which h2load cannot send, so it is driven by
`bench/h2post.js` (Node.js's HTTP/2 client posting pre-built gRPC frames, one per
call) with the same shape, next to a Health baseline measured with that same
driver. Results: a table on stdout and JSON in `bench/results/<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from bench import h2load, h2post
from bench.host import cpu_seconds, free_port, machine, wait_serving
from bench.seed import LINK_SOURCE_ARTIFACT, Seeded, Shape, seed
from registry.v1 import artifact_service_pb2 as art_pb
from registry.v1 import collection_service_pb2 as col_pb
from registry.v1 import registry_service_pb2 as reg_pb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_server.storage.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CONNECTIONS = 2
STREAMS = 8
LIST_FILTER = 'alias = "production" OR version_index > 3'
LINK_RATE_CEILING = 3000  # link sources seeded per second of load
BASELINES = {"h2load": "health", "h2post": "health_h2post"}  # Health/Check per driver
HEALTH_RATE_CEILING = 20000  # Health requests prepared per second of h2post load

# Targets of issue 8, checked and reported (not asserted).
TARGET_RESOLVE_RATIO = 0.6
TARGET_RESOLVE_P99_MS = 5.0
TARGET_SCALING = 0.15
TARGET_LINK_QPS = 1500.0
TARGET_RSS_MB = 300.0


# --- machine and sizes ---------------------------------------------------------------


def parse_size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([km]?)", text.strip().lower())
    if not match:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (use e.g. 1k, 100k, 1m)")
    return int(match.group(1)) * {"": 1, "k": 1000, "m": 1_000_000}[match.group(2)]


def size_label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1000 == 0:
        return f"{n // 1000}k"
    return str(n)


# --- databases -------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_database(postgres: bool, label: str) -> Iterator[str]:
    """A new, migrated, empty database; removed afterwards."""
    if not postgres:
        with tempfile.TemporaryDirectory(prefix=f"registry-bench-{label}-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'registry.db'}"
            upgrade(url)
            yield url
        return
    import psycopg

    name = f"registry_bench_{os.getpid()}_{label}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = POSTGRES_ADMIN_URL.replace("postgresql://", "postgresql+psycopg://").rsplit("/", 1)[0]
    url = f"{url}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the server process ------------------------------------------------------------------


def server_binary() -> str:
    beside = Path(sys.executable).parent / "registry-server"
    if beside.exists():
        return str(beside)
    return str(ROOT / ".venv" / "bin" / "registry-server")


class ServerProcess:
    """`registry-server serve` as a subprocess, with RSS and CPU sampling."""

    def __init__(
        self,
        url: str,
        *,
        log_level: str,
        log_dir: Path,
        workers: int | None = None,
        metrics: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.port = free_port()
        # --metrics: /metrics served (and scraped once a case is done, as Prometheus would)
        self.metrics_port = free_port() if metrics else 0
        self.url = url
        self.log_path = log_dir / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                server_binary(),
                "serve",
                "--address",
                f"127.0.0.1:{self.port}",
                "--database-url",
                url,
                "--log-level",
                log_level,
                *(["--workers", str(workers)] if workers else []),
                *(["--metrics-address", f"127.0.0.1:{self.metrics_port}"] if metrics else []),
                *extra_args,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        self.rss_max_mb = 0.0
        self._sampling = True
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The server and its children (migration runner, SQLite hot write process)."""
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                return [pid, *(int(p) for p in f.read().split())]
        except OSError:
            return [pid]

    def rss_mb(self) -> float:
        """Resident memory of the server and its children."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024.0

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its children so far."""
        return sum(cpu_seconds(pid) for pid in self.pids())

    def _sample(self) -> None:
        while self._sampling and self.proc.poll() is None:
            self.rss_max_mb = max(self.rss_max_mb, self.rss_mb())
            time.sleep(0.25)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        why = wait_serving(self.target, self.proc, timeout)
        if why == "exited":
            raise RuntimeError(f"the server exited:\n{self.log_tail()}")
        if why:
            raise RuntimeError(f"the server did not become healthy:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        self._sampling = False
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# --- a grpc.aio open-loop probe ---------------------------------------------------------

AioCall = Callable[[grpc.aio.Channel, int], Awaitable[Any]]


@dataclass
class AioResult:
    requests: int
    failed: int
    seconds: float
    qps: float
    latencies_us: list[int]
    errors: dict[str, int] = field(default_factory=dict)
    # when each measured call started (time.perf_counter), in the order of latencies_us
    started_at: list[float] = field(default_factory=list)

    def percentile_ms(self, q: float) -> float:
        return h2load.percentile(self.latencies_us, q) / 1000.0


async def aio_load(
    target: str,
    call: AioCall,
    *,
    duration: float,
    rate: float,
    warm_up: float = 1.0,
    channels: int = CONNECTIONS,
    until: asyncio.Event | None = None,
    measure_from: asyncio.Event | None = None,
) -> AioResult:
    """Starts `call(channel, i)` with i = 0, 1, ... at `rate` calls per second in total
    over `channels` connections (open loop: a latency probe that should not load the
    server), for `warm_up` + `duration` seconds or until `until` is set. Calls started
    during the first `warm_up` seconds, or before `measure_from` is set, are not
    measured (the probe's connections are warm by then)."""
    latencies: list[int] = []
    started_at: list[float] = []
    errors: dict[str, int] = {}
    measured_start = time.perf_counter() + warm_up
    first_measured: float | None = None
    end = measured_start + duration
    stopped_at: float | None = None

    def running() -> bool:
        nonlocal stopped_at
        now = time.perf_counter()
        if until is not None and until.is_set():
            stopped_at = stopped_at or now
            return False
        return now < end

    opened = [
        grpc.aio.insecure_channel(
            target,
            # separate subchannels, so that `channels` really means TCP connections
            options=[("grpc.use_local_subchannel_pool", 1)],
        )
        for _ in range(channels)
    ]

    async def one(channel: grpc.aio.Channel, i: int) -> None:
        nonlocal first_measured
        started = time.perf_counter()
        measured = started >= measured_start and (measure_from is None or measure_from.is_set())
        if measured and first_measured is None:
            first_measured = started
        try:
            await call(channel, i)
        except grpc.aio.AioRpcError as err:
            if measured:
                key = f"{err.code().name}: {err.details()}"[:160]
                errors[key] = errors.get(key, 0) + 1
            return
        if measured and started < (stopped_at or end):
            latencies.append(int((time.perf_counter() - started) * 1e6))
            started_at.append(started)

    async def paced() -> None:
        pending: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        for n in itertools.count():
            due = start + n / rate
            if not running():
                break
            now = time.perf_counter()
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(one(opened[n % channels], n))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.gather(*pending)

    try:
        await asyncio.gather(*[ch.channel_ready() for ch in opened])
        await paced()
    finally:
        for ch in opened:
            await ch.close()
    began = first_measured if measure_from is not None and first_measured else measured_start
    seconds = max(1e-9, min(time.perf_counter(), stopped_at or end) - began)
    return AioResult(
        requests=len(latencies),
        failed=sum(errors.values()),
        seconds=seconds,
        qps=len(latencies) / seconds,
        latencies_us=latencies,
        errors=errors,
        started_at=started_at,
    )


def metadata(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


# --- cases -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One benchmark case: a request, how to check it, and how to drive it."""

    name: str
    label: str
    method: str  # full gRPC method path
    driver: str  # "h2load" or "h2post"
    request: Callable[[Seeded], Message]
    check: Callable[[Stubs, grpc.Channel, Seeded, Message], Message]


def _resolve_request(version: str) -> Callable[[Seeded], Message]:
    def build(sd: Seeded) -> Message:
        path = f"{sd.org}/wandb-registry-{sd.target_registry}/{sd.target_collection}{version}"
        request: Message = art_pb.ResolvePathRequest(path=path)
        return request

    return build


def _check_resolve(index: int, alias: str | None) -> Callable[..., Message]:
    def check(stubs: Stubs, _ch: grpc.Channel, sd: Seeded, req: Message) -> Message:
        reply = stubs.artifacts.ResolvePath(req, timeout=10)
        got = reply.collection_version
        assert got.version_index == index, f"resolved v{got.version_index}, expected v{index}"
        assert alias is None or alias in got.aliases, f"{alias!r} not among {list(got.aliases)}"
        assert reply.artifact_version.digest.startswith("sha256:")
        return reply  # type: ignore[no-any-return]

    return check


def _check_health(_stubs: Stubs, channel: grpc.Channel, _sd: Seeded, req: Message) -> Message:
    reply = health_pb2_grpc.HealthStub(channel).Check(req, timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    return reply  # type: ignore[no-any-return]


def _check_get_version(stubs: Stubs, _ch: grpc.Channel, sd: Seeded, req: Message) -> Message:
    reply = stubs.collections.GetCollectionVersion(req, timeout=10)
    assert reply.name.endswith("/versions/50"), reply.name
    assert "production" in reply.aliases
    return reply  # type: ignore[no-any-return]


def _check_list(stubs: Stubs, _ch: grpc.Channel, sd: Seeded, req: Message) -> Message:
    reply = stubs.collections.ListCollectionVersions(req, timeout=10)
    assert len(reply.collection_versions) == 50, len(reply.collection_versions)
    assert reply.next_page_token, "a 50-item page of 97 matches has a next page"
    return reply  # type: ignore[no-any-return]


def _check_role(stubs: Stubs, _ch: grpc.Channel, sd: Seeded, req: Message) -> Message:
    reply = stubs.registries.GetEffectiveRole(req, timeout=10)
    assert reply.role == r.REGISTRY_ROLE_MEMBER, reply.role
    return reply  # type: ignore[no-any-return]


def _link_request(sd: Seeded, i: int) -> col_pb.LinkArtifactVersionRequest:
    return col_pb.LinkArtifactVersionRequest(
        parent=sd.registry_name,
        collection_id=sd.link_sinks[i % len(sd.link_sinks)],
        artifact_version=sd.link_source(i),
    )


def _check_link(stubs: Stubs, _ch: grpc.Channel, sd: Seeded, req: Message) -> Message:
    reply = stubs.collections.LinkArtifactVersion(req, timeout=10)
    assert reply.version_index == 0, reply.version_index
    assert reply.artifact_version.endswith(f"/{LINK_SOURCE_ARTIFACT}/versions/0"), reply
    return reply  # type: ignore[no-any-return]


CASES: list[Case] = [
    Case(
        "health",
        "Health/Check (baseline)",
        "/grpc.health.v1.Health/Check",
        "h2load",
        lambda sd: health_pb2.HealthCheckRequest(),
        _check_health,
    ),
    Case(
        "resolve_alias",
        "ResolvePath :production",
        "/registry.v1.ArtifactService/ResolvePath",
        "h2load",
        _resolve_request(":production"),
        _check_resolve(50, "production"),
    ),
    Case(
        "resolve_latest",
        "ResolvePath (latest)",
        "/registry.v1.ArtifactService/ResolvePath",
        "h2load",
        _resolve_request(""),
        _check_resolve(99, None),
    ),
    Case(
        "get_collection_version",
        "GetCollectionVersion",
        "/registry.v1.CollectionService/GetCollectionVersion",
        "h2load",
        lambda sd: col_pb.GetCollectionVersionRequest(name=f"{sd.collection_name}/versions/50"),
        _check_get_version,
    ),
    Case(
        "list_collection_versions",
        "ListCollectionVersions 50+filter",
        "/registry.v1.CollectionService/ListCollectionVersions",
        "h2load",
        lambda sd: col_pb.ListCollectionVersionsRequest(
            parent=sd.collection_name, page_size=50, filter=LIST_FILTER
        ),
        _check_list,
    ),
    Case(
        "get_effective_role",
        "GetEffectiveRole",
        "/registry.v1.RegistryService/GetEffectiveRole",
        "h2load",
        lambda sd: reg_pb.GetEffectiveRoleRequest(registry=sd.registry_name),
        _check_role,
    ),
    Case(
        "health_h2post",
        "Health/Check (h2post driver)",
        "/grpc.health.v1.Health/Check",
        "h2post",
        lambda sd: health_pb2.HealthCheckRequest(),
        _check_health,
    ),
    Case(
        "link_artifact_version",
        "LinkArtifactVersion (write)",
        "/registry.v1.CollectionService/LinkArtifactVersion",
        "h2post",
        lambda sd: _link_request(sd, 0),
        _check_link,
    ),
]
CASE_NAMES = [c.name for c in CASES]


@dataclass
class CaseResult:
    case: str
    label: str
    driver: str
    qps: float
    p50_ms: float
    p99_ms: float
    requests: int
    failed: int
    seconds: float
    ratio_to_health: float | None = None
    baseline: str = "health"
    server_cpu_us_per_request: float | None = None
    server_rss_mb: float = 0.0
    notes: list[str] = field(default_factory=list)


def _h2post_requests(case: Case, sd: Seeded, seconds: float) -> Iterator[Message]:
    """What the h2post driver sends: a new link source each call, else the same request."""
    if case.name == "link_artifact_version":
        # index 0 was linked by the check; loads start at 1
        return (_link_request(sd, i) for i in range(1, sd.link_sources))
    return itertools.repeat(case.request(sd), int(HEALTH_RATE_CEILING * seconds))


def run_case(
    case: Case,
    sd: Seeded,
    server: ServerProcess,
    binary: str,
    node: str | None,
    *,
    duration: float,
    warm_up: float,
) -> CaseResult:
    key = sd.user_key
    request = case.request(sd)
    channel = open_channel(server.target, key)
    try:
        reply = case.check(Stubs.on(channel), channel, sd, request)
    finally:
        channel.close()
    expected_bytes = len(reply.SerializeToString()) + 5
    cpu_before = server.cpu_seconds()
    notes: list[str] = []
    if case.driver == "h2load":
        url = f"http://{server.target}{case.method}"
        res = h2load.run(
            binary,
            url,
            h2load.grpc_frame(request),
            api_key=key,
            duration=duration,
            connections=CONNECTIONS,
            streams=STREAMS,
            warm_up=warm_up,
        )
        requests, failed, qps, seconds = (
            res.requests,
            res.failed + res.non_2xx,
            res.qps,
            res.seconds,
        )
        latencies = res.latencies_us
        # Error replies carry no message, only trailers: short data means gRPC errors.
        if res.data_bytes and requests and res.data_bytes < 0.99 * expected_bytes * requests:
            notes.append(
                f"response data {res.data_bytes} B < {expected_bytes} B x {requests}: "
                "some calls failed with a gRPC error"
            )
        if len(latencies) < requests * 0.9:
            notes.append(f"log has {len(latencies)} latencies for {requests} requests")
    else:
        assert node is not None
        post = h2post.run(
            node,
            server.target,
            case.method,
            _h2post_requests(case, sd, warm_up + duration),
            api_key=key,
            duration=duration,
            connections=CONNECTIONS,
            streams=STREAMS,
            warm_up=warm_up,
        )
        requests, failed, qps, seconds = post.requests, post.failed, post.qps, post.seconds
        latencies = post.latencies_us
        for message, count in post.errors.items():
            notes.append(f"{count} x {message}")
        if post.exhausted:
            notes.append("ran out of requests before the end; raise the *_RATE_CEILING")
    cpu = server.cpu_seconds() - cpu_before
    total = requests + failed
    counted = _counted(server.metrics_port, case.method) if server.metrics_port else 0
    if counted:  # health checks are not counted
        notes.append(f"/metrics counted {counted:,.0f} calls")
    return CaseResult(
        case=case.name,
        label=case.label,
        driver=case.driver,
        qps=round(qps, 1),
        p50_ms=round(h2load.percentile(latencies, 50) / 1000.0, 3),
        p99_ms=round(h2load.percentile(latencies, 99) / 1000.0, 3),
        requests=requests,
        failed=failed,
        seconds=round(seconds, 2),
        server_cpu_us_per_request=round(cpu / total * 1e6, 1) if total else None,
        server_rss_mb=round(server.rss_mb(), 1),
        notes=notes,
    )


def _counted(port: int, method: str) -> float:
    """registry_rpc_requests_total of `method` at /metrics (0: a method not counted)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        for family in text_string_to_metric_families(answer.read().decode()):
            for sample in family.samples:
                if sample.name == "registry_rpc_requests_total" and sample.labels.get(
                    "method"
                ) == method.lstrip("/"):
                    return float(sample.value)
    return 0.0


# --- sizes ------------------------------------------------------------------------------


@dataclass
class SizeRun:
    size: str
    collection_versions: int
    seed_seconds: float
    seed_rows: dict[str, int]
    server_rss_max_mb: float
    cases: list[CaseResult]


@dataclass
class _Size:
    """One size's seeded database and running server, and its results so far."""

    n: int
    label: str
    sd: Seeded
    server: ServerProcess
    results: list[CaseResult] = field(default_factory=list)


def run_sizes(
    sizes: list[int],
    cases: list[Case],
    *,
    postgres: bool,
    duration: float,
    warm_up: float,
    binary: str,
    node: str | None,
    log_level: str,
    log_dir: Path,
    workers: int | None = None,
    metrics: bool = False,
) -> list[SizeRun]:
    """Seeds every size and starts a server on each, then runs each case on every size
    in turn: a case's 1M figure and its 1k figure are measured seconds apart rather
    than minutes (on a shared machine the host's speed drifts; the 1M seed alone takes
    a minute)."""
    link_sources = int(LINK_RATE_CEILING * (duration + warm_up)) + 100
    with contextlib.ExitStack() as stack:
        running: list[_Size] = []
        for n in sizes:
            label = size_label(n)
            url = stack.enter_context(fresh_database(postgres, label))
            print(f"[{label}] seeding {n:,} collection versions ...", flush=True)
            sd = seed(url, Shape(collection_versions=n, link_sources=link_sources))
            print(
                f"[{label}] seeded {sum(sd.rows.values()):,} rows in {sd.seconds:.1f} s", flush=True
            )
            server = ServerProcess(
                url, log_level=log_level, log_dir=log_dir, workers=workers, metrics=metrics
            )
            stack.callback(server.stop)  # before its database is dropped
            server.wait_healthy()
            running.append(_Size(n, label, sd, server))
        for case in cases:
            for size in running:
                size.results.append(
                    _run_checked(case, size, binary, node, duration=duration, warm_up=warm_up)
                )
    for size in running:
        if size.server.proc.returncode not in (0, -signal.SIGTERM):
            print(f"[{size.label}] server exited with {size.server.proc.returncode}:")
            print(size.server.log_tail())
    return [_size_run(size) for size in running]


def _run_checked(
    case: Case, size: _Size, binary: str, node: str | None, *, duration: float, warm_up: float
) -> CaseResult:
    print(f"[{size.label}] {case.label} ...", end=" ", flush=True)
    try:
        res = run_case(case, size.sd, size.server, binary, node, duration=duration, warm_up=warm_up)
    except (grpc.RpcError, AssertionError) as err:
        detail = err.details() if isinstance(err, grpc.RpcError) else str(err)
        print(f"FAILED the check: {detail}", flush=True)
        return CaseResult(
            case.name, case.label, case.driver, 0, 0, 0, 0, 1, 0,
            notes=[f"check failed: {detail}"],
        )  # fmt: skip
    print(f"{res.qps:,.0f} req/s, p99 {res.p99_ms:.2f} ms", flush=True)
    return res


def _size_run(size: _Size) -> SizeRun:
    results = size.results
    baselines = {c.driver: c.qps for c in results if c.case == BASELINES[c.driver] and c.qps}
    for res in results:
        base = baselines.get(res.driver)
        if base and res.case != BASELINES[res.driver]:
            res.ratio_to_health = round(res.qps / base, 3)
            res.baseline = BASELINES[res.driver]
    return SizeRun(
        size.label,
        size.n,
        round(size.sd.seconds, 1),
        size.sd.rows,
        round(size.server.rss_max_mb, 1),
        results,
    )


# --- reporting ---------------------------------------------------------------------------


def print_table(db: str, runs: list[SizeRun], host: dict[str, Any]) -> None:
    header = f"{'size':>5} {'case':<34} {'driver':<7} {'QPS':>9} {'p50 ms':>8} {'p99 ms':>8} "
    header += f"{'x base':>7} {'cpu us/req':>10}"
    print(f"\nDatabase: {db}; {CONNECTIONS} connections x {STREAMS} streams")
    print(
        f"Machine: {host['nproc']} x {host['cpu_model']}, "
        f"CPU probe {host['cpu_probe_ms']} ms (lower is faster)"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        for c in run.cases:
            ratio = f"{c.ratio_to_health:.2f}" if c.ratio_to_health is not None else "-"
            cpu = f"{c.server_cpu_us_per_request:.0f}" if c.server_cpu_us_per_request else "-"
            print(
                f"{run.size:>5} {c.label:<34} {c.driver:<7} {c.qps:>9,.0f} {c.p50_ms:>8.2f} "
                f"{c.p99_ms:>8.2f} {ratio:>7} {cpu:>10}"
            )
            for note in c.notes:
                print(f"{'':>6}note: {note}")
        print(f"{'':>6}server RSS max {run.server_rss_max_mb:.0f} MB; seed {run.seed_seconds} s")


def targets(runs: list[SizeRun]) -> list[dict[str, Any]]:
    """Issue 8's targets, evaluated on this run's numbers."""
    out: list[dict[str, Any]] = []
    by_size = {run.size: {c.case: c for c in run.cases} for run in runs}

    def add(name: str, value: float, limit: float, ok: bool) -> None:
        out.append({"target": name, "value": round(value, 3), "limit": limit, "met": ok})

    for size, cases in by_size.items():
        resolve = cases.get("resolve_alias")
        if resolve and resolve.ratio_to_health is not None:
            add(
                f"{size}: ResolvePath QPS / Health QPS >= {TARGET_RESOLVE_RATIO}",
                resolve.ratio_to_health,
                TARGET_RESOLVE_RATIO,
                resolve.ratio_to_health >= TARGET_RESOLVE_RATIO,
            )
            add(
                f"{size}: ResolvePath p99 <= {TARGET_RESOLVE_P99_MS} ms",
                resolve.p99_ms,
                TARGET_RESOLVE_P99_MS,
                resolve.p99_ms <= TARGET_RESOLVE_P99_MS,
            )
        link = cases.get("link_artifact_version")
        if link and link.qps:
            add(
                f"{size}: LinkArtifactVersion >= {TARGET_LINK_QPS:.0f}/s",
                link.qps,
                TARGET_LINK_QPS,
                link.qps >= TARGET_LINK_QPS,
            )
    small, large = by_size.get("1k"), by_size.get("1m")
    if small and large:
        for name, base in small.items():
            other = large.get(name)
            if name.startswith("health") or name.startswith("link") or not other or not base.qps:
                continue
            change = (other.qps - base.qps) / base.qps
            add(
                f"1m vs 1k: {name} QPS within {TARGET_SCALING:.0%}",
                change,
                -TARGET_SCALING,
                change >= -TARGET_SCALING,
            )
    for run in runs:
        if run.size == "1m":
            add(
                "1m: server RSS <= 300 MB",
                run.server_rss_max_mb,
                TARGET_RSS_MB,
                run.server_rss_max_mb <= TARGET_RSS_MB,
            )
    return out


def write_json(payload: dict[str, Any], suffix: str = "") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"{stamp}{suffix}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description="Benchmark the registry server."
    )
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    parser.add_argument(
        "--cases",
        default=",".join(CASE_NAMES),
        help=f"comma-separated, from: {', '.join(CASE_NAMES)} (health always runs)",
    )
    parser.add_argument("--sizes", default="1k,1m", help="collection versions, e.g. 1k,1m")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per case")
    parser.add_argument("--warm-up", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("--quick", action="store_true", help="1k only, 3 s per case")
    parser.add_argument(
        "--server-log-level",
        default="WARNING",
        help="server log level (INFO logs one line per call, which costs throughput)",
    )
    parser.add_argument(
        "--server-workers",
        type=int,
        default=None,
        help="the server's --workers (default: the server's, 4)",
    )
    parser.add_argument(
        "--metrics",
        action="store_true",
        help="serve with --metrics-address (what counting every call costs)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.duration = "1k", 3.0
    wanted = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = sorted(set(wanted) - set(CASE_NAMES))
    if unknown:
        parser.error(f"unknown cases: {', '.join(unknown)}")
    if "link_artifact_version" in wanted:
        wanted.append("health_h2post")
    cases = [c for c in CASES if c.name == "health" or c.name in wanted]
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    binary = h2load.find_h2load()
    node = h2post.find_node() if any(c.driver == "h2post" for c in cases) else None
    db = "postgresql" if args.postgres else "sqlite"
    started = dt.datetime.now(dt.UTC)
    host = machine()  # load average before the run, not after it
    with tempfile.TemporaryDirectory(prefix="registry-bench-logs-") as logs:
        runs = run_sizes(
            sizes,
            cases,
            postgres=args.postgres,
            duration=args.duration,
            warm_up=args.warm_up,
            binary=binary,
            node=node,
            log_level=args.server_log_level,
            log_dir=Path(logs),
            workers=args.server_workers,
            metrics=args.metrics,
        )
    print_table(db, runs, host)
    checked = targets(runs)
    if checked:
        print("\nTargets (issue 8):")
        for t in checked:
            print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['value']}")
    payload = {
        "started": started.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.run", *(argv if argv is not None else sys.argv[1:])]),
        "database": db,
        "machine": host,
        "h2load": h2load.binary_version(binary),
        "node": h2load.binary_version(node) if node else None,
        "load": {
            "connections": CONNECTIONS,
            "streams_per_connection": STREAMS,
            "duration_s": args.duration,
            "warm_up_s": args.warm_up,
            "server_log_level": args.server_log_level,
            "server_workers": args.server_workers or 4,
            "server_metrics": args.metrics,
            "list_filter": LIST_FILTER,
        },
        "runs": [asdict(run) for run in runs],
        "targets": checked,
    }
    path = write_json(payload)
    print(f"\nwrote {path.relative_to(ROOT)}")
    failed = any(c.failed and c.requests == 0 for run in runs for c in run.cases)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
