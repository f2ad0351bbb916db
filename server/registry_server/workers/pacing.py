"""The migration runner gives way to the server it works for.

A migration is background work. On a machine with few CPUs a runner that takes a whole
CPU makes the calls its server answers wait for one: the server's threads, and its
clients on the same machine, compete with it. The runner child's nice value only orders
who runs first when both are ready; it leaves the server no room for its bursts. On
PostgreSQL the copy's SQL runs in the database's processes, which the nice value does
not reach at all.

So the child runner paces itself by its server's load. After each step it reads how much
CPU the server's threads used since the previous step (`process_cpu_seconds`). While the
server is busy (at least BUSY_LOAD of a CPU: it is answering calls) the runner works only
`busy_share` of the time: after a step that took t seconds it pauses
t * (1 / busy_share - 1). While the server is idle the migration runs at full speed.
A pause is a few step lengths, and never more than a quarter of the lease (the
runner caps it: migration_runner.py `_work`), so a paced migration still renews its lease
and always progresses, at about `busy_share` of its speed at worst.

The default share depends on where the copy's work runs (`default_busy_share`):
- SQLite: in the runner child itself. Measured with python -m bench.migration_bench
  (2 CPUs, ResolvePath at 400/s, runs alternating with share 1), at 0.3 the server
  waited for a CPU 175-191 ms/s during the migration, about what it waits when idle,
  instead of 260-349; ResolvePath's p99 during the migration was 1.25-1.59x its idle
  p99 (6 runs) instead of 1.22-3.48x (9 runs, 2 over 2x); 15,000-22,000 versions/s
  instead of 52,000-59,000.
- PostgreSQL: in the database's processes, which compete for the same CPUs when the
  database is on this machine. Measured the same way (database on the same 2 CPUs,
  alternating runs), ResolvePath's p99 during the migration was 1.49-2.21x its idle
  p99 at 0.6 (8 runs, 6 within 2x) at 15,000-18,000 versions/s, against 2.42-3.89x at
  1 (5 runs, none within 2x) at 25,000-32,000; at 0.3 the copy fell under 10,000
  versions/s. The slowest calls come in bursts of a few tens of ms when a step's
  heavy statement starts (the set-up, the first batch, the end of the copy); pausing
  shortens how long the CPUs stay contended after them. A database on its own host
  does not compete with the server for CPU, and `1` then gives full speed.

Where the server's CPU time cannot be read (not Linux, or the process is gone) the
runner does not pause.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable

# At or above this many CPUs the server counts as busy (idle, it uses almost none).
BUSY_LOAD = 0.05
# The share of the time the runner works while its server is busy, by default.
SQLITE_BUSY_SHARE = 0.3
POSTGRES_BUSY_SHARE = 0.6


def default_busy_share(is_sqlite: bool) -> float:
    return SQLITE_BUSY_SHARE if is_sqlite else POSTGRES_BUSY_SHARE


def thread_schedstat(pid: int) -> dict[int, tuple[int, int]]:
    """Linux's scheduler accounting of each thread of `pid` alive now
    (`/proc/<pid>/task/<tid>/schedstat`): tid -> (ns on a CPU, ns runnable but waiting
    for one). Empty when the process is gone or this is not Linux. (The benchmarks'
    `bench/schedstat.py` reads it too.)"""
    found: dict[int, tuple[int, int]] = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with (
                contextlib.suppress(OSError, ValueError),  # the thread ended meanwhile
                open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f,
            ):
                run, wait, _slices = (int(x) for x in f.read().split())
                found[int(tid)] = (run, wait)
    return found


def process_cpu_seconds(pid: int) -> float | None:
    """Seconds that the threads of `pid` alive now have run on a CPU, or None (from
    `thread_schedstat`, in nanoseconds: the process-wide `stat` counts in ticks of 10 ms,
    too coarse for steps of a few ms)."""
    threads = thread_schedstat(pid)
    if not threads:  # a live process has at least one thread
        return None
    return sum(run for run, _wait in threads.values()) / 1e9


def check_busy_share(value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise ValueError(f"the busy share must be in (0, 1], not {value}")
    return value


class Pacer:
    """How long the runner pauses after a step, from the load of the process it gives
    way to (`cpu_seconds` returns that process's CPU seconds so far, or None)."""

    def __init__(
        self,
        cpu_seconds: Callable[[], float | None],
        *,
        busy_share: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cpu_seconds = cpu_seconds
        self.busy_share = check_busy_share(busy_share)
        self.clock = clock
        self.load = 0.0  # CPUs the process used between the last two readings
        self._last = (clock(), cpu_seconds())

    def restart(self) -> None:
        """Measures from now (a migration begins: the time since the last one says
        nothing about the load now)."""
        self._last = (self.clock(), self.cpu_seconds())

    @classmethod
    def for_process(cls, pid: int, busy_share: float) -> Pacer:
        return cls(lambda: process_cpu_seconds(pid), busy_share=busy_share)

    def pause_after(self, step_seconds: float) -> float:
        """Seconds to pause after a step that took `step_seconds`."""
        now, cpu = self.clock(), self.cpu_seconds()
        (then, before), self._last = self._last, (now, cpu)
        if cpu is None or before is None or now <= then:
            self.load = 0.0
            return 0.0
        self.load = max(cpu - before, 0.0) / (now - then)
        if self.load < BUSY_LOAD:
            return 0.0
        return step_seconds * (1.0 / self.busy_share - 1.0)
