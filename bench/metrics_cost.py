"""What metrics cost: ResolvePath's ratio to Health with `--metrics-address` and without.

Two servers serve one seeded database (1k collection versions), one with metrics and
one without, and take turns: each round drives Health, then ResolvePath (`:production`,
as `bench.run`'s `resolve_alias`) on one server, then both on the other, the order
alternating from round to round. On a shared machine the speed drifts by more than the
few percent looked for; paired rounds see the same drift on both sides, and the
medians of the rounds' ratios leave out the rounds it hit hardest. The server CPU time
per ResolvePath call (the server process's user + system time over the case) is
reported too: it moves less with the machine's load than throughput does. Last, what
counting one call costs, timed alone, and its share of a ResolvePath's server CPU.

    python -m bench.metrics_cost [--postgres] [--rounds 10] [--duration 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import h2load
from bench.host import machine
from bench.run import (
    CASES,
    ROOT,
    CaseResult,
    ServerProcess,
    fresh_database,
    run_case,
    write_json,
)
from bench.seed import Shape, seed
from registry_server.api.metrics import CallMetrics

HEALTH, RESOLVE = (next(c for c in CASES if c.name == name) for name in ("health", "resolve_alias"))


def observe_cost_us(calls: int = 200_000) -> float:
    """What counting one call costs (`MethodCalls.observe`, the whole of what metrics add
    to a call), best of five timings, in microseconds."""
    observe = CallMetrics().observer("/registry.v1.ArtifactService/ResolvePath")

    def timed(fn: Callable[[], None]) -> float:
        return min(timeit.repeat(fn, number=calls, repeat=5)) / calls * 1e6

    return timed(lambda: observe("OK", 0.0004)) - timed(lambda: None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.metrics_cost", description=__doc__)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432")
    parser.add_argument("--rounds", type=int, default=10, help="paired rounds")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per case")
    parser.add_argument("--warm-up", type=float, default=0.5, help="unmeasured seconds first")
    args = parser.parse_args(argv)
    binary = h2load.find_h2load()
    host = machine()
    rounds: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    with (
        tempfile.TemporaryDirectory(prefix="registry-bench-logs-") as logs,
        fresh_database(args.postgres, "metrics") as url,
    ):
        sd = seed(url, Shape(collection_versions=1000, link_sources=100))
        servers = {
            side: ServerProcess(url, log_level="WARNING", log_dir=Path(logs), metrics=side == "on")
            for side in ("off", "on")
        }
        try:
            for server in servers.values():
                server.wait_healthy()
            for i in range(args.rounds):
                for side in ("off", "on") if i % 2 == 0 else ("on", "off"):
                    pair: list[CaseResult] = [
                        run_case(
                            case,
                            sd,
                            servers[side],
                            binary,
                            None,
                            duration=args.duration,
                            warm_up=args.warm_up,
                        )
                        for case in (HEALTH, RESOLVE)
                    ]
                    health, resolve = pair
                    ratio = resolve.qps / health.qps if health.qps else 0.0
                    rounds[side].append(
                        {
                            "health_qps": health.qps,
                            "resolve_qps": resolve.qps,
                            "ratio": ratio,
                            "resolve_cpu_us": resolve.server_cpu_us_per_request or 0.0,
                        }
                    )
                    print(
                        f"round {i + 1} metrics {side:>3}: Health {health.qps:>8,.0f} req/s, "
                        f"ResolvePath {resolve.qps:>8,.0f} req/s, ratio {ratio:.3f}, "
                        f"{resolve.server_cpu_us_per_request} server CPU us per ResolvePath",
                        flush=True,
                    )
        finally:
            for server in servers.values():
                server.stop()
    medians = {
        side: {
            key: round(statistics.median(r[key] for r in results), 3)
            for key in ("health_qps", "resolve_qps", "ratio", "resolve_cpu_us")
        }
        for side, results in rounds.items()
    }
    change = medians["on"]["ratio"] / medians["off"]["ratio"] - 1
    db = "postgresql" if args.postgres else "sqlite"
    print(f"\nDatabase: {db}; {args.rounds} rounds of {args.duration:g} s per case")
    for side, m in medians.items():
        print(
            f"metrics {side:>3}: median Health {m['health_qps']:,.0f} req/s, ResolvePath "
            f"{m['resolve_qps']:,.0f} req/s, median ratio {m['ratio']:.3f}, "
            f"{m['resolve_cpu_us']:.0f} server CPU us per ResolvePath"
        )
    cpu_change = medians["on"]["resolve_cpu_us"] / medians["off"]["resolve_cpu_us"] - 1
    print(f"ResolvePath / Health with metrics on vs off: {change:+.1%}")
    print(f"server CPU per ResolvePath with metrics on vs off: {cpu_change:+.1%}")
    counting = observe_cost_us()
    share = counting / medians["off"]["resolve_cpu_us"]
    print(f"counting one call: {counting:.2f} us, {share:.2%} of a ResolvePath's server CPU")
    path = write_json(
        {
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m bench.metrics_cost", *(argv or sys.argv[1:])]),
            "database": db,
            "machine": host,
            "rounds": rounds,
            "medians": medians,
            "ratio_change": round(change, 4),
            "resolve_cpu_change": round(cpu_change, 4),
            "observe_us": round(counting, 3),
        },
        "-metrics",
    )
    print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
