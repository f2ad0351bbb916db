"""MigrationService: proto <-> service/migration/. The runner that works migrations
is a background worker (`workers/migration_runner.py`), woken here when there is new
work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from sqlalchemy.orm import Session

from registry.v1 import migration_service_pb2 as pb
from registry.v1 import migration_service_pb2_grpc as pb_grpc
from registry.v1 import resources_pb2 as r

from ..domain import names
from ..domain.pagination import ListParams
from ..domain.roles import MigrationState
from ..service.context import Principal
from ..service.migration.common import (
    FINAL_STATES,
    UNDOABLE_STATES,
    parse_team_refs,
)
from ..service.migration.lifecycle import (
    MigrationView,
    get_migration,
    list_migrations,
    migration_view,
    request_cancel,
    request_rollback,
    start_migration,
)
from ..service.migration.plan import Plan, plan_migration
from ..workers.migration_runner import wake_runner
from .app import Servicer
from .convert import name_parts, ts, user_ref
from .interceptors import current_principal

ORG = "organizations/{org}"
MIGRATION = "organizations/{org}/migrations/{migration}"
WATCH_POLL_SECONDS = 0.2
# CancelMigration / RollbackMigration wait this long (or until the call's deadline)
# for the runner to reach the final state, then answer the current snapshot.
UNDO_WAIT_SECONDS = 30.0

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
        created_by=user_ref(view.created_by),
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


# --- the servicer ---------------------------------------------------------------------


def _org_teams(
    request: pb.PlanMigrationRequest | pb.StartMigrationRequest,
) -> tuple[str, list[str]]:
    """The organization and the teams a migration is planned or started for."""
    return names.parse(request.parent, ORG, "parent")["org"], parse_team_refs(list(request.teams))


class MigrationServicer(Servicer, pb_grpc.MigrationServiceServicer):
    async def PlanMigration(
        self, request: pb.PlanMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.MigrationPlan:
        p = current_principal()
        org, teams = _org_teams(request)
        return await self.app.read(lambda s: plan_proto(plan_migration(s, p, org, teams)))

    async def StartMigration(
        self, request: pb.StartMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.Migration:
        p = current_principal()
        org, teams = _org_teams(request)

        def work(s: Session) -> r.Migration:
            return migration_proto(migration_view(s, start_migration(s, p, org, teams), org))

        result = await self.app.create(p, "StartMigration", request.request_id, r.Migration, work)
        wake_runner(self.app)
        return result

    async def GetMigration(
        self, request: pb.GetMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.Migration:
        org, uid = name_parts(request.name, MIGRATION, "name")
        return migration_proto(await self._view(current_principal(), org, uid))

    async def ListMigrations(
        self, request: pb.ListMigrationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListMigrationsResponse:
        p = current_principal()
        org = names.parse(request.parent, ORG, "parent")["org"]
        return await self.app.listed(
            lambda s: list_migrations(s, p, org, ListParams.of(request)),
            pb.ListMigrationsResponse,
            "migrations",
            migration_proto,
        )

    async def WatchMigration(
        self, request: pb.WatchMigrationRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[r.Migration]:
        """A snapshot now and at every change (progress, state), until a final state
        (and, for a rollback asked of a final migration, until that has moved it on)."""
        p = current_principal()
        org, uid = name_parts(request.name, MIGRATION, "name")
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

    async def CancelMigration(
        self, request: pb.CancelMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.Migration:
        return await self._undo(request, context, request_cancel, MigrationState.CANCELLED)

    async def RollbackMigration(
        self, request: pb.RollbackMigrationRequest, context: grpc.aio.ServicerContext
    ) -> r.Migration:
        return await self._undo(request, context, request_rollback, MigrationState.ROLLED_BACK)

    async def _undo(
        self,
        request: pb.CancelMigrationRequest | pb.RollbackMigrationRequest,
        context: grpc.aio.ServicerContext,
        ask: Callable[..., MigrationView],
        wanted: MigrationState,
    ) -> r.Migration:
        """Cancel or Rollback: `ask(s, p, org, uid, ...)` checks the request (validate_only)
        or records it; the runner undoes the work. Answers once it is done, or the current
        snapshot when that takes longer than the call may wait."""
        p = current_principal()
        org, uid = name_parts(request.name, MIGRATION, "name")
        if request.validate_only:
            return await self.app.read(
                lambda s: migration_proto(ask(s, p, org, uid, validate_only=True))
            )
        await self.app.write(lambda s: ask(s, p, org, uid, force=request.force))
        wake_runner(self.app)
        remaining = context.time_remaining()
        budget = (
            UNDO_WAIT_SECONDS
            if remaining is None
            else max(min(UNDO_WAIT_SECONDS, remaining - 0.5), 0)
        )
        deadline = time.monotonic() + budget
        while True:
            snapshot = migration_proto(await self._view(p, org, uid))
            if snapshot.state == int(wanted) or time.monotonic() >= deadline:
                return snapshot
            await asyncio.sleep(0.05)
