"""Where the CPU went during a benchmark window, from Linux's per-thread scheduler
accounting (`/proc/<pid>/task/<tid>/schedstat`: nanoseconds on a CPU, nanoseconds
runnable but waiting for one).

A latency probe on a small machine is slowed by two different things: work in the
server process itself (its threads share one interpreter lock) and other processes
taking the CPUs (the migration runner, the load generator). The second shows here as
the server's threads waiting to run. On PostgreSQL the runner's SQL runs in the
database's own processes, shown as a group of their own. Off Linux, every figure is
empty.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from registry_server.workers.pacing import thread_schedstat

Snapshot = dict[str, dict[int, tuple[int, int]]]  # process label -> tid -> (run, wait) ns


def named(name: str) -> list[int]:
    """Every process whose command name is `name` (e.g. the PostgreSQL server's)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() == name:
                        found.append(int(entry))
    return found


def snapshot(groups: Mapping[str, Sequence[int]]) -> Snapshot:
    """Every thread's counters of each labelled group of processes (gone: none)."""
    out: Snapshot = {}
    for label, pids in groups.items():
        threads: dict[int, tuple[int, int]] = {}
        for pid in pids:
            threads.update(thread_schedstat(pid))
        out[label] = threads
    return out


@dataclass(frozen=True)
class CpuUse:
    """Per second of the window, summed over the process's threads."""

    run_ms_per_s: float  # on a CPU (1000 = one whole CPU)
    wait_ms_per_s: float  # runnable, waiting for a CPU


def usage(before: Snapshot, after: Snapshot, seconds: float) -> dict[str, CpuUse]:
    """What each process used and waited between two snapshots; threads that came or
    went in between count from zero or not at all."""
    out: dict[str, CpuUse] = {}
    for label, threads in after.items():
        earlier = before.get(label, {})
        run = wait = 0
        for tid, (r, w) in threads.items():
            r0, w0 = earlier.get(tid, (0, 0))
            run, wait = run + r - r0, wait + w - w0
        scale = 1e6 * max(seconds, 1e-9)
        out[label] = CpuUse(round(run / scale, 1), round(wait / scale, 1))
    return out


class Meter:
    """The CPU use of some processes from its creation on; `groups` names them (looked
    up again at the end, so that a child started meanwhile counts)."""

    def __init__(self, groups: Callable[[], Mapping[str, Sequence[int]]]) -> None:
        self.groups = groups
        self.start = snapshot(groups())
        self.at = time.monotonic()

    def usage(self) -> dict[str, CpuUse]:
        return usage(self.start, snapshot(self.groups()), time.monotonic() - self.at)
