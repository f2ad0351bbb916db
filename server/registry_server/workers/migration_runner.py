"""The migration runner: the background task that claims migrations and works them in
bounded steps under a lease (`service/migration/steps.py`), in this process or in the
child process `runner_process.py` starts (`Settings.migration_runner`).

The same loop (`run_runner`) runs on a thread of its own in a server (`thread`) and in
the child (`registry-server run-migrations`, `run_runner_process`), which paces itself
by its server's load (`pacing.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import sys
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from ..api.app import App
from ..api.settings import RunnerMode
from ..service.migration.common import Lease, Outcome
from ..service.migration.steps import claim_next, fail_migration, release_lease, run_step
from ..storage.db import Database
from .pacing import Pacer, default_busy_share
from .runner_process import supervise_runner_process

log = logging.getLogger("registry.migrations")
T = TypeVar("T")

IDLE_POLL_SECONDS = 0.5
FAILURES_BEFORE_GIVING_UP = 20
BATCH_DELAY_ENV = "REGISTRY_MIGRATION_BATCH_DELAY_MS"


# --- wake-up --------------------------------------------------------------------------

_wakeups: weakref.WeakKeyDictionary[App, asyncio.Event] = weakref.WeakKeyDictionary()


def _wakeup(app: App) -> asyncio.Event:
    event = _wakeups.get(app)
    if event is None:
        event = _wakeups[app] = asyncio.Event()
    return event


def wake_runner(app: App) -> None:
    """New work: the local runner looks at once instead of at its next poll."""
    _wakeup(app).set()


# --- the runner -----------------------------------------------------------------------

# Each step is one transaction; its batch grows from `Settings.migration_batch_size` while
# steps stay well under this long and shrinks when they take longer, so the fixed cost of
# a step is amortized without long transactions (a link into a collection being copied
# waits for the step's commit, and on SQLite every writer does).
STEP_TARGET_SECONDS = 0.15
BATCH_GROWTH_MAX = 32  # at most this many times the configured batch size
RUNNER_CONNECTIONS = 2  # a step's write session, and verification's read beside it
# Writers of other processes poll for SQLite's write lock every millisecond
# (storage/db.py `begin_immediate`): a pause of a few between steps lets them in.
SQLITE_STEP_GAP_SECONDS = 0.003
# A pause for the server's calls (pacing.py) lasts at most this share of the lease.
PACING_LEASE_SHARE = 0.25


class BatchSizer:
    """The runner's batch size, adapted to how long steps take: doubled while the
    smoothed step time stays under half the target, halved (not below the configured
    size) when it goes over twice the target; one slow step on a busy machine does not
    undo the growth."""

    def __init__(self, base: int) -> None:
        self.base = max(base, 1)
        self.size = self.base
        self.smoothed: float | None = None

    def observe(self, seconds: float) -> None:
        self.smoothed = seconds if self.smoothed is None else 0.6 * self.smoothed + 0.4 * seconds
        if self.smoothed < STEP_TARGET_SECONDS / 2:
            self.size = min(self.size * 2, self.base * BATCH_GROWTH_MAX)
            self.smoothed = None  # judged afresh at the new size
        elif self.smoothed > STEP_TARGET_SECONDS * 2 and self.size > self.base:
            self.size = max(self.size // 2, self.base)
            self.smoothed = None

    def reset(self) -> None:
        self.size = self.base
        self.smoothed = None


async def run_migrations(app: App) -> None:
    """Background task of the server: runs migrations where `Settings.migration_runner`
    says. `thread`: in this process, on a thread of the runner's own. `process`: in a
    child `registry-server run-migrations` process that this task starts, wakes and
    restarts (see runner_process.py). `off`: not on this replica."""
    mode = app.settings.migration_runner
    if mode == RunnerMode.off:
        return
    if mode == RunnerMode.process:
        if app.db.is_memory:
            log.warning("an in-memory database cannot be shared: migrations run on a thread")
        else:
            await supervise_runner_process(app, _wakeup(app))
            return
    lease = Lease.for_seconds(app.settings.replica_id, app.settings.migration_lease_seconds)
    db = _runner_database(app)
    try:
        await run_runner(db, lease, app.settings.migration_batch_size, _wakeup(app))
    finally:
        if db is not app.db:
            db.dispose()


async def run_runner(
    db: Database, lease: Lease, batch_size: int, wake: asyncio.Event, pacer: Pacer | None = None
) -> None:
    """Claims runnable migrations whose lease expired and works them in bounded steps
    on a thread of its own (never more than one step at a time, and never taking a
    worker that serves calls); looks for work when `wake` is set or every
    IDLE_POLL_SECONDS; stops promptly when cancelled. With a `pacer` it pauses after
    each step as long as the pacer says (the server's load, `pacing.py`)."""
    batch_size = max(int(batch_size), 1)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="registry-migration")
    try:
        while True:
            try:
                migration_id = await _in_thread(executor, claim_next, db, lease)
            except asyncio.CancelledError:
                raise
            except Exception:  # a database outage must not end the runner
                log.exception("claiming migrations failed")
                migration_id = None
            if migration_id is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), IDLE_POLL_SECONDS)
                wake.clear()
                continue
            log.info("migration %d claimed by %s", migration_id, lease.owner)
            try:
                await _work(db, executor, migration_id, lease, batch_size, pacer)
            except asyncio.CancelledError:
                await _release_on_shutdown(db, migration_id, lease)
                raise
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


def _runner_database(app: App) -> Database:
    """On PostgreSQL the runner has connections of its own (two, warm), so that steps
    neither take the calls' pooled connections nor make the pool open new ones, whose
    first queries are slow, while a migration starts. On SQLite it shares the one write
    connection, which is what serializes writers there."""
    if app.db.is_sqlite:
        return app.db
    return Database(app.db.url, pool_size=RUNNER_CONNECTIONS)


async def _in_thread(executor: Executor, fn: Callable[..., T], *args: Any) -> T:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(fn, *args))


def step_delay() -> float:
    """Seconds to pause between steps: `REGISTRY_MIGRATION_BATCH_DELAY_MS`, read at every
    step (throttles a migration on a busy database; makes crash points reproducible)."""
    try:
        return max(float(os.environ.get(BATCH_DELAY_ENV, "0") or 0), 0.0) / 1000.0
    except ValueError:
        return 0.0


async def _work(
    db: Database,
    executor: Executor,
    migration_id: int,
    lease: Lease,
    batch_size: int,
    pacer: Pacer | None,
) -> None:
    failures = 0
    sizer = BatchSizer(batch_size)
    paced = 0.0  # seconds paused for the server's calls (pacing.py)
    if pacer is not None:
        pacer.restart()
    while True:
        started = time.monotonic()
        try:
            outcome = await _in_thread(executor, run_step, db, migration_id, lease, sizer.size)
            failures = 0
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # retried with backoff; repeated failures FAIL it
            failures += 1
            log.warning("migration %d step failed (%d): %s", migration_id, failures, exc)
            if failures >= FAILURES_BEFORE_GIVING_UP:
                await _in_thread(
                    executor,
                    fail_migration,
                    db,
                    migration_id,
                    lease,
                    f"the migration stopped after repeated errors: {exc}",
                )
                return
            sizer.reset()
            await asyncio.sleep(min(0.05 * 2**failures, 2.0))
            continue
        if outcome is not Outcome.MORE:
            log.info(
                "migration %d: %s (%.2f s paused while the server was busy)",
                migration_id,
                outcome.value,
                paced,
            )
            return
        took = time.monotonic() - started
        sizer.observe(took)
        # Between steps the event loop runs whatever became ready meanwhile, and on
        # SQLite other processes' writers take the write lock.
        pause = max(step_delay(), SQLITE_STEP_GAP_SECONDS if db.is_sqlite else 0.0)
        if pacer is not None:
            # never long enough to put the lease at risk (a step renews it)
            give_way = min(pacer.pause_after(took), lease.duration_us / 1e6 * PACING_LEASE_SHARE)
            paced += max(give_way - pause, 0.0)
            pause = max(pause, give_way)
        await asyncio.sleep(pause)


async def _release_on_shutdown(db: Database, migration_id: int, lease: Lease) -> None:
    """Best effort: hand the lease back so another replica need not wait for it (on the
    loop's default executor: the runner's thread may still be finishing a step)."""
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(
            loop.run_in_executor(None, release_lease, db, migration_id, lease), 2.0
        )
    except Exception:  # the lease expires by itself anyway
        log.info("migration %d: lease left to expire", migration_id)


# --- the child's side -----------------------------------------------------------------


class _StdinWatch(asyncio.Protocol):
    """Any data on stdin wakes the runner; end of file (the server closed the pipe or
    is gone) stops it."""

    def __init__(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        self.wake, self.stop = wake, stop

    def data_received(self, data: bytes) -> None:
        self.wake.set()

    def eof_received(self) -> bool:
        self.stop.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop.set()


async def run_runner_process(
    url: str,
    *,
    replica_id: str,
    lease_seconds: float,
    batch_size: int,
    wake_on_stdin: bool,
    yield_to_pid: int = 0,
    busy_share: float | None = None,
) -> None:
    """`registry-server run-migrations`: the runner until SIGTERM, SIGINT or (with
    `wake_on_stdin`) the end of stdin; the migration in hand, if any, is released."""
    loop = asyncio.get_running_loop()
    wake, stop = asyncio.Event(), asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if wake_on_stdin:
        await loop.connect_read_pipe(lambda: _StdinWatch(wake, stop), sys.stdin)
    db = Database(url, pool_size=RUNNER_CONNECTIONS)
    lease = Lease.for_seconds(replica_id, lease_seconds)
    if busy_share is None:
        busy_share = default_busy_share(db.is_sqlite)
    pacer = Pacer.for_process(yield_to_pid, busy_share) if yield_to_pid else None
    runner = asyncio.create_task(run_runner(db, lease, batch_size, wake, pacer))
    stopping = asyncio.create_task(stop.wait())
    log.info("migration runner %s (process %d) is running", replica_id, os.getpid())
    try:
        await asyncio.wait({runner, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        db.dispose()
