"""The transport limit: grpc.aio's own Health servicer alone in a process, under h2load.

No registry code runs in that server (no interceptor, no database), so its figures are
what one grpc.aio unary call costs on this machine with the installed grpcio: the
ceiling for every case of `bench.run`, whose baseline is the same Health call answered
by the registry server. Run it to compare grpcio releases or hosts:

    python -m bench.transport [--duration 6] [--runs 3] [--event-loop asyncio,uvloop]

With several event loops, the runs alternate between them (the registry server always
runs on uvloop).

Each run starts a fresh server process and prints requests/s, p50 and p99 at 2
connections x 8 streams, and the server's CPU time per call (every thread of the
process, from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from bench import h2load
from bench.host import cpu_seconds, free_port, machine, wait_serving


async def _serve(port: int) -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _run_server(port: int, event_loop: str) -> None:
    if event_loop == "uvloop":
        import uvloop

        uvloop.run(_serve(port))
    else:
        asyncio.run(_serve(port))


def measure(binary: str, duration: float, event_loop: str = "uvloop") -> dict[str, float]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.transport", "--serve", str(port), "--event-loop", event_loop]
    )
    try:
        why = wait_serving(f"127.0.0.1:{port}", proc, 30.0)
        if why:
            raise RuntimeError(f"the transport server did not answer ({why})")
        before = cpu_seconds(proc.pid)
        res = h2load.run(
            binary,
            f"http://127.0.0.1:{port}/grpc.health.v1.Health/Check",
            h2load.grpc_frame(health_pb2.HealthCheckRequest()),
            api_key="unused",  # the bare server reads no metadata
            duration=duration,
        )
        cpu = cpu_seconds(proc.pid) - before  # includes the 1 s warm-up
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    calls = res.qps * (res.seconds + 1.0)
    return {
        "qps": res.qps,
        "p50_ms": res.percentile_ms(50),
        "p99_ms": res.percentile_ms(99),
        "cpu_us_per_call": cpu / calls * 1e6 if calls else 0.0,
        "failed": float(res.failed + res.non_2xx),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--event-loop", default="uvloop", help="asyncio, uvloop, or both comma-separated"
    )
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    loops = args.event_loop.split(",")
    if unknown := set(loops) - {"asyncio", "uvloop"}:
        parser.error(f"--event-loop: unknown {', '.join(sorted(unknown))} (asyncio, uvloop)")
    if args.serve:
        _run_server(args.serve, loops[0])
        return 0
    binary = h2load.find_h2load()
    host = machine()
    print(
        f"grpcio {grpc.__version__}, Python {host['python']}; {host['nproc']} x "
        f"{host['cpu_model']}, CPU probe {host['cpu_probe_ms']:.2f} ms (lower is faster)"
    )
    for i in range(args.runs):
        for loop in loops:
            r = measure(binary, args.duration, loop)
            print(
                f"run {i + 1} ({loop}): {r['qps']:,.0f} calls/s, p50 {r['p50_ms']:.2f} ms, "
                f"p99 {r['p99_ms']:.2f} ms, server CPU {r['cpu_us_per_call']:.0f} us/call"
                + (f", {r['failed']:.0f} failed" if r["failed"] else "")
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
