"""The migration runner in a process of its own.

With `Settings.migration_runner = "process"` (what `registry-server serve` does unless
told otherwise) the server starts `registry-server run-migrations --wake-on-stdin` as a
child. The child is a runner and nothing else: it claims migrations under the same
leases as any replica's runner would. Its copies, verification and switch then compete
with the calls this server answers for the CPU only, never for this process's
interpreter lock: every call's completion-queue events and handler need that lock, and
a runner thread holding it between its SQL statements made them wait for the
interpreter's switch interval, again and again per call. The child also runs at a
lower CPU priority (RUNNER_NICENESS), and while this server answers calls it works only
part of the time (`--yield-to-pid`, `pacing.py`). On SQLite it is another process
writing to the file: writers wait for each other's transactions (storage/db.py
`begin_immediate`), and the runner pauses briefly between steps so that a call's write
gets in. This module is the server's side; the child's is `migration_runner.py`
(`run_runner_process`).

The server writes a line to the child's stdin when it has new work (StartMigration,
CancelMigration, RollbackMigration), so the child looks at once instead of at its next
poll. The child stops when its stdin closes: when the server stops it and also when the
server dies (the kernel closes the pipe even after SIGKILL), so no runner outlives its
server. A child that exits on its own is replaced after a pause that doubles up to
RESTART_MAX_SECONDS; whatever it was doing is taken over under the lease rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time

from ..api.app import App
from .pacing import default_busy_share

log = logging.getLogger("registry.migrations")

RESTART_MIN_SECONDS = 0.5
RESTART_MAX_SECONDS = 30.0
HEALTHY_AFTER_SECONDS = 60.0  # a child that ran this long restarts at the minimum pause
STOP_SECONDS = 10.0  # after its stdin closes, then SIGKILL
# The child's nice value: when the CPU is short, calls come before the migration.
RUNNER_NICENESS = 10


def runner_command(app: App) -> list[str]:
    """The child's command line (the database URL goes in its environment, not here)."""
    share = app.settings.migration_busy_share
    if share is None:
        share = default_busy_share(app.db.is_sqlite)
    return [
        sys.executable,
        "-m",
        "registry_server.cli",
        "run-migrations",
        "--wake-on-stdin",
        "--replica-id",
        f"{app.settings.replica_id}/runner",
        "--migration-lease-seconds",
        str(app.settings.migration_lease_seconds),
        "--migration-batch-size",
        str(app.settings.migration_batch_size),
        "--niceness",
        str(RUNNER_NICENESS),
        "--yield-to-pid",
        str(os.getpid()),
        "--busy-share",
        str(share),
        "--log-level",
        logging.getLevelName(logging.getLogger().getEffectiveLevel()),
    ]


async def supervise_runner_process(app: App, wake: asyncio.Event) -> None:
    """Background task: keeps one child runner alive, forwards `wake` to it, and stops
    it when cancelled."""
    env = {**os.environ, "REGISTRY_DATABASE_URL": app.db.url}
    pause = RESTART_MIN_SECONDS
    while True:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *runner_command(app), stdin=asyncio.subprocess.PIPE, env=env
            )
        except OSError as err:  # out of processes or memory: try again later
            log.error("cannot start the migration runner process (%s); again in %.1f s", err, pause)
        else:
            log.info("migration runner process %d started", proc.pid)
            try:
                await _forward_wakeups(proc, wake)
            except asyncio.CancelledError:
                await _stop(proc)
                raise
            if time.monotonic() - started >= HEALTHY_AFTER_SECONDS:
                pause = RESTART_MIN_SECONDS
            log.warning(
                "migration runner process %d exited with %s; starting another in %.1f s",
                proc.pid,
                proc.returncode,
                pause,
            )
        await asyncio.sleep(pause)
        pause = min(pause * 2, RESTART_MAX_SECONDS)


async def _forward_wakeups(proc: asyncio.subprocess.Process, wake: asyncio.Event) -> None:
    """Until the child exits: a line to its stdin whenever `wake` is set."""
    assert proc.stdin is not None
    exited = asyncio.create_task(proc.wait())
    woken: asyncio.Task[bool] | None = None
    try:
        while True:
            woken = asyncio.create_task(wake.wait())
            done, _ = await asyncio.wait({exited, woken}, return_when=asyncio.FIRST_COMPLETED)
            if exited in done:
                return
            wake.clear()
            try:
                proc.stdin.write(b"\n")
                await proc.stdin.drain()
            except ConnectionError:  # exiting: `exited` completes next
                await exited
                return
    finally:
        exited.cancel()
        if woken is not None:
            woken.cancel()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Closes the child's stdin (it releases its lease and exits), SIGKILL if it takes
    longer than STOP_SECONDS."""
    if proc.returncode is not None:
        return
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), STOP_SECONDS)
    except TimeoutError:
        log.warning("migration runner process %d did not stop; killing it", proc.pid)
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
