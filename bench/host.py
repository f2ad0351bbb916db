"""The machine a benchmark runs on: what it is, how fast it is right now, a free port.

Kept apart from `bench.run` so that `bench.transport` runs without the registry's
packages (to measure another grpcio release in a bare virtualenv).
"""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_mb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_mb": memory_mb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu_probe_ms": cpu_probe_ms(),
    }


def cpu_probe_ms() -> float:
    """The best of five timings of a fixed pure-Python loop on one core, in ms: how fast
    this virtual machine was at the time of the run. The same command has been seen
    to run 2-3x slower on other days (other hosts or neighbours), so compare runs by
    their ratios to the Health baseline, and absolute figures only at similar probes."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        sum(i * i for i in range(100_000))
        best = min(best, time.perf_counter() - start)
    return round(best * 1e3, 2)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_serving(target: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> str:
    """Waits until the server process at `target` answers Health SERVING. Returns "" then,
    else why not ("exited" or "timeout")."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return "exited"
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return ""
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    return "timeout"
