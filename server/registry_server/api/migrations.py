"""MigrationService (proto <-> service/migration/) and the background runner that
works migrations in bounded steps under a lease."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
import weakref
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

import grpc
from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.v1 import migration_service_pb2 as pb
from registry.v1 import migration_service_pb2_grpc as pb_grpc
from registry.v1 import resources_pb2 as r

from ..domain import names
from ..domain.roles import MigrationState
from ..service.context import Principal
from ..service.migration.common import (
    FINAL_STATES,
    UNDOABLE_STATES,
    Lease,
    Outcome,
    parse_team_refs,
)
from ..service.migration.lifecycle import (
    MigrationView,
    get_migration,
    migration_view,
    migration_views,
    request_cancel,
    request_rollback,
    start_migration,
    state_filter,
)
from ..service.migration.plan import Plan, plan_migration
from ..service.migration.steps import claim_next, fail_migration, release_lease, run_step
from ..service.organizations import get_org, require_org_admin
from ..storage import models as m
from ..storage.db import Database
from ..storage.filter_sql import FieldSpec
from ..storage.paging import fetch_page, parse_order_by
from .app import App
from .convert import ts
from .filtering import compile_list_filter
from .interceptors import current_principal
from .pacing import Pacer
from .settings import RunnerMode

log = logging.getLogger("registry.migrations")
T = TypeVar("T")

MIGRATION = "organizations/{org}/migrations/{migration}"
WATCH_POLL_SECONDS = 0.2
IDLE_POLL_SECONDS = 0.5
# CancelMigration / RollbackMigration wait this long (or until the call's deadline)
# for the runner to reach the final state, then answer the current snapshot.
UNDO_WAIT_SECONDS = 30.0
FAILURES_BEFORE_GIVING_UP = 20
BATCH_DELAY_ENV = "REGISTRY_MIGRATION_BATCH_DELAY_MS"

_FINAL = {int(s) for s in FINAL_STATES}


# --- protos -------------------------------------------------------------------------


def migration_proto(view: MigrationView) -> r.Migration:
    row = view.row
    return r.Migration(
        name=view.name,
        state=row.state,
        teams=[f"teams/{t.team}" for t in view.teams],
        progress=r.MigrationProgress(
            total=row.progress_total,
            done=row.progress_done,
            collections_total=view.collections_total,
            collections_done=view.collections_done,
        ),
        verification=r.MigrationVerification(
            checked=row.verification_checked,
            mismatches=list(row.mismatches or []),
            access_changes=[r.AccessChange(**change) for change in row.access_changes or []],
        ),
        error=row.error,
        create_time=ts(row.create_time),
        end_time=ts(row.end_time),
        update_time=ts(row.update_time),
        team_migrations=[
            r.TeamMigration(
                team=f"teams/{t.team}",
                target_registry=t.target_registry,
                state=int(t.state),
                progress=r.MigrationProgress(
                    total=t.versions_total,
                    done=t.versions_done,
                    collections_total=t.collections_total,
                    collections_done=t.collections_done,
                ),
            )
            for t in view.teams
        ],
        created_by=names.user_name(view.created_by) if view.created_by else "",
        rollback=rollback_proto(view.rollback),
    )


def rollback_proto(report: dict[str, Any]) -> r.RollbackReport | None:
    """The undo's report (`carry_back.UndoPlan.report`); None before one was asked for."""
    if not report:
        return None
    return r.RollbackReport(
        carried_back=list(report.get("carried_back", [])),
        losses=list(report.get("losses", [])),
        forced=bool(report.get("forced")),
        requested_by=str(report.get("requested_by", "")),
    )


def plan_proto(plan: Plan) -> r.MigrationPlan:
    org = plan.org.name
    return r.MigrationPlan(
        parent=f"organizations/{org}",
        teams=[
            r.TeamMigrationPlan(
                team=f"teams/{t.team.name}",
                target_registry=f"organizations/{org}/registries/{t.target_name}"
                if t.target_name
                else "",
                renamed=t.renamed,
                member_mappings=[
                    r.MemberMapping(
                        principal=names.user_name(mp.user),
                        legacy_role=int(mp.legacy_role),
                        legacy_registry_admin=mp.legacy_registry_admin,
                        service_account=mp.service_account,
                        registry_role=int(mp.registry_role),
                    )
                    for mp in t.members
                ],
                collection_count=t.collection_count,
                version_count=t.version_count,
                alias_count=t.alias_count,
                protected_aliases=t.protected_aliases,
                warnings=t.warnings,
                legacy_state=int(t.legacy_state),
                access_changes=[r.AccessChange(**c.as_json()) for c in t.access_changes],
            )
            for t in plan.teams
        ],
        total_versions=plan.total_versions,
        warnings=plan.warnings,
    )


# --- runner wake-up -----------------------------------------------------------------

_wakeups: weakref.WeakKeyDictionary[App, asyncio.Event] = weakref.WeakKeyDictionary()


def _wakeup(app: App) -> asyncio.Event:
    event = _wakeups.get(app)
    if event is None:
        event = _wakeups[app] = asyncio.Event()
    return event


def wake_runner(app: App) -> None:
    """New work: the local runner looks at once instead of at its next poll."""
    _wakeup(app).set()


# --- the servicer ---------------------------------------------------------------------


def _migration_ref(name: str, field: str = "name") -> tuple[str, str]:
    v = names.parse(name, MIGRATION, field)
    return v["org"], v["migration"]


def _org_ref(parent: str) -> str:
    return names.parse(parent, "organizations/{org}", "parent")["org"]


LIST_FILTER = {
    "state": FieldSpec("alias", builder=state_filter),
    "create_time": FieldSpec("time", m.Migration.create_time),
    "end_time": FieldSpec("time", m.Migration.end_time),
}


class MigrationServicer(pb_grpc.MigrationServiceServicer):
    def __init__(self, app: App) -> None:
        self.app = app

    async def PlanMigration(
        self, request: pb.PlanMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.MigrationPlan:
        p = current_principal()
        org = _org_ref(request.parent)
        teams = parse_team_refs(list(request.teams))
        return await self.app.read(lambda s: plan_proto(plan_migration(s, p, org, teams)))

    async def StartMigration(
        self, request: pb.StartMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.Migration:
        p = current_principal()
        org = _org_ref(request.parent)
        teams = parse_team_refs(list(request.teams))

        def work(s: Session) -> r.Migration:
            migration = start_migration(s, p, org, teams)
            return migration_proto(migration_view(s, migration, org))

        result = await self.app.create(p, "StartMigration", request.request_id, r.Migration, work)
        wake_runner(self.app)
        return result

    async def GetMigration(
        self, request: pb.GetMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.Migration:
        p = current_principal()
        org, uid = _migration_ref(request.name)
        return await self._snapshot(p, org, uid)

    async def ListMigrations(
        self, request: pb.ListMigrationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMigrationsResponse:
        p = current_principal()
        org_id = _org_ref(request.parent)
        keys = parse_order_by(
            "", {"create_time": m.Migration.create_time}, "create_time desc", m.Migration.id
        )
        clause = compile_list_filter(request.filter, LIST_FILTER, self.app.db.dialect)

        def work(s: Session) -> pb.ListMigrationsResponse:
            org = get_org(s, p, org_id, "parent")
            require_org_admin(s, p, org, "listing migrations")
            stmt = select(m.Migration).where(m.Migration.org_id == org.id, clause)
            page = fetch_page(
                s,
                stmt,
                keys,
                size=request.page_size,
                token=request.page_token,
                query=("migrations", org_id, request.filter),
            )
            views = migration_views(s, [row[0] for row in page.rows], org.name)
            return pb.ListMigrationsResponse(
                migrations=[migration_proto(v) for v in views],
                next_page_token=page.next_page_token,
            )

        return await self.app.read(work)

    async def WatchMigration(
        self, request: pb.WatchMigrationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[r.Migration]:
        """A snapshot now and at every change (progress, state), until a final state
        (and, for a rollback asked of a final migration, until that has moved it on)."""
        p = current_principal()
        org, uid = _migration_ref(request.name)
        last = b""
        while True:
            view = await self._view(p, org, uid)
            snapshot = migration_proto(view)
            data = snapshot.SerializeToString(deterministic=True)
            if data != last:
                last = data
                yield snapshot
            if snapshot.state in _FINAL and not (
                view.row.cancel_requested and view.state in UNDOABLE_STATES
            ):
                return
            await asyncio.sleep(WATCH_POLL_SECONDS)

    async def _view(self, p: Principal, org: str, uid: str) -> MigrationView:
        return await self.app.query(lambda sql: get_migration(sql, p, org, uid))

    async def _snapshot(self, p: Principal, org: str, uid: str) -> r.Migration:
        """The migration as GetMigration shows it."""
        return migration_proto(await self._view(p, org, uid))

    async def CancelMigration(
        self, request: pb.CancelMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.Migration:
        p = current_principal()
        org, uid = _migration_ref(request.name)
        if request.validate_only:
            return await self.app.read(
                lambda s: migration_proto(request_cancel(s, p, org, uid, validate_only=True))
            )
        await self.app.write(
            lambda s: migration_proto(request_cancel(s, p, org, uid, force=request.force))
        )
        wake_runner(self.app)
        return await self._await_final(org, uid, context, {int(MigrationState.CANCELLED)})

    async def RollbackMigration(
        self, request: pb.RollbackMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.Migration:
        p = current_principal()
        org, uid = _migration_ref(request.name)
        if request.validate_only:
            return await self.app.read(
                lambda s: migration_proto(request_rollback(s, p, org, uid, validate_only=True))
            )
        await self.app.write(
            lambda s: migration_proto(request_rollback(s, p, org, uid, force=request.force))
        )
        wake_runner(self.app)
        return await self._await_final(org, uid, context, {int(MigrationState.ROLLED_BACK)})

    async def _await_final(
        self, org: str, uid: str, context: grpc.aio.ServicerContext, wanted: set[int]
    ) -> r.Migration:
        """The runner undoes the work; answer once it is done, or the current snapshot
        when that takes longer than the call may wait."""
        p = current_principal()
        remaining = context.time_remaining()
        budget = (
            UNDO_WAIT_SECONDS
            if remaining is None
            else max(min(UNDO_WAIT_SECONDS, remaining - 0.5), 0)
        )
        deadline = time.monotonic() + budget
        while True:
            snapshot = await self._snapshot(p, org, uid)
            if snapshot.state in wanted or time.monotonic() >= deadline:
                return snapshot
            await asyncio.sleep(0.05)


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

    def __init__(self, base: int, target_seconds: float = STEP_TARGET_SECONDS) -> None:
        self.base = max(base, 1)
        self.size = self.base
        self.target = target_seconds
        self.smoothed: float | None = None

    def observe(self, seconds: float) -> None:
        self.smoothed = seconds if self.smoothed is None else 0.6 * self.smoothed + 0.4 * seconds
        if self.smoothed < self.target / 2:
            self.size = min(self.size * 2, self.base * BATCH_GROWTH_MAX)
            self.smoothed = None  # judged afresh at the new size
        elif self.smoothed > self.target * 2 and self.size > self.base:
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
            from .runner_process import supervise_runner_process

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
    db: Database,
    lease: Lease,
    batch_size: int,
    wake: asyncio.Event,
    pacer: Pacer | None = None,
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
