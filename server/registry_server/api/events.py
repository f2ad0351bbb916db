"""EventService: proto <-> use cases in service/event_log.py and service/webhooks.py.
Watch streams wait on the replica's event hub (`workers/event_hub.py`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Collection
from functools import partial

import grpc
from google.protobuf import empty_pb2
from sqlalchemy.orm import Session

from registry.v1 import event_service_pb2 as pb
from registry.v1 import event_service_pb2_grpc as pb_grpc
from registry.v1 import resources_pb2 as r

from ..domain.errors import Unavailable
from ..domain.names import etag
from ..domain.pagination import ListParams
from ..service import event_log, webhook_targets, webhooks
from ..service.context import Principal
from ..storage import models as m
from ..workers.event_hub import hub_for
from .app import App, Servicer
from .convert import mask_paths, micros, struct, ts, user_ref
from .interceptors import authenticate, bearer_token, current_principal

# Without any wake-up, a watch stream still re-reads this often (seconds).
WATCH_SAFETY_POLL = 2.0


def event_proto(e: m.Event) -> r.Event:
    return r.Event(
        cursor=e.cursor,
        type=e.type,
        actor=e.actor,
        resource=e.resource,
        time=ts(e.time),
        details=struct(e.details),
    )


def automation_proto(a: m.Automation, name: str, created_by: str | None) -> r.Automation:
    """Never carries the secret (CreateAutomation adds one it generated)."""
    return r.Automation(
        name=name,
        event_types=list(a.event_types or []),
        alias_regex=a.alias_regex,
        url=a.url,
        created_by=user_ref(created_by),
        create_time=ts(a.create_time),
        enabled=a.enabled,
        etag=etag(a.revision),
        update_time=ts(a.update_time or a.create_time),
    )


def _shown(s: Session, row: m.Automation, name: str) -> r.Automation:
    """The automation as Get and Update answer it (with its creator's name)."""
    return automation_proto(row, name, webhooks.creator_name(s, row))


def delivery_proto(d: m.Delivery, automation: str) -> r.Delivery:
    return r.Delivery(
        name=f"{automation}/deliveries/{d.id}",
        event_cursor=d.event_cursor,
        attempt=d.attempt,
        status_code=d.status_code,
        error=d.error,
        succeeded=d.succeeded,
        time=ts(d.time),
        webhook_id=webhooks.webhook_id(automation.rsplit("/", 1)[1], d.event_cursor),
    )


class EventServicer(Servicer, pb_grpc.EventServiceServicer):
    def __init__(self, app: App) -> None:
        super().__init__(app)
        self.hub = hub_for(app)

    # --- the event log ---

    async def ListEvents(
        self, request: pb.ListEventsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListEventsResponse:
        p = current_principal()
        return await self.app.listed(
            lambda s: event_log.list_events(s, p, request.parent, ListParams.of(request)),
            pb.ListEventsResponse,
            "events",
            lambda row: event_proto(row[0]),
        )

    async def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[r.Event]:
        p = current_principal()
        token = bearer_token(context.invocation_metadata())
        query = await self.app.read(
            lambda s: event_log.prepare_watch(
                s, p, request.parent, request.filter, request.after_cursor
            )
        )
        last = request.after_cursor
        waiter = self.hub.subscribe(query.org_id)
        try:
            while True:
                waiter.clear()  # before reading: a commit during the read wakes us again
                # Re-authenticated as the stream goes on: a revoked key or a changed
                # role takes effect here as on any other call.
                p = await authenticate(self.app.auth, self.app.run, token)
                batch = await self.app.read(partial(event_log.read_after, p=p, q=query, after=last))
                for e in batch:
                    yield event_proto(e)
                    last = e.cursor
                if len(batch) >= event_log.WATCH_BATCH:
                    continue
                if not self.hub.closed:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter.wait(), WATCH_SAFETY_POLL)
                if self.hub.closed:
                    raise Unavailable(
                        f"the server is shutting down; reconnect with after_cursor={last}",
                        reason="SERVER_SHUTTING_DOWN",
                    )
        finally:
            self.hub.unsubscribe(query.org_id, waiter)

    async def GetAliasHistory(
        self, request: pb.GetAliasHistoryRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetAliasHistoryResponse:
        p = current_principal()
        at = micros(request.time, "time") if request.HasField("time") else None

        def work(s: Session) -> pb.GetAliasHistoryResponse:
            history = event_log.alias_history(s, p, request.collection, request.alias, at)
            return pb.GetAliasHistoryResponse(
                assignments=[
                    pb.AliasAssignment(
                        version_index=a.version_index,
                        from_time=ts(a.from_time),
                        to_time=ts(a.to_time),
                        actor=a.actor,
                    )
                    for a in history.assignments
                ],
                version_index_at_time=history.version_index_at_time,
            )

        return await self.app.read(work)

    # --- automations ---

    async def CreateAutomation(
        self, request: pb.CreateAutomationRequest, context: grpc.aio.ServicerContext
    ) -> r.Automation:
        p = current_principal()
        a = request.automation
        spec = self._spec(a, webhooks.UPDATABLE, updating=False)
        await self._check_url(p, request.parent, "parent", "CreateAutomation", spec.url)
        made: list[str] = []

        def work(s: Session) -> r.Automation:
            row, name, secret = webhooks.create_automation(
                s, p, request.parent, spec, self.app.secret_box
            )
            if not spec.secret:
                made.append(secret)
            return automation_proto(row, name, p.user)

        reply = await self.app.create(p, "CreateAutomation", request.request_id, r.Automation, work)
        if made:  # only this reply carries it: the stored replay of request_id does not
            reply.secret = made[0]
        return reply

    def _spec(
        self, a: r.Automation, fields: Collection[str], *, updating: bool
    ) -> webhooks.AutomationSpec:
        spec = webhooks.AutomationSpec(
            event_types=list(a.event_types),
            alias_regex=a.alias_regex,
            url=a.url,
            secret=a.secret,
            # Left out of a create: enabled. Named by an update's mask: as sent.
            enabled=a.enabled if a.HasField("enabled") or updating else True,
        )
        return webhooks.check_spec(spec, fields, self.app.webhook_policy, rotating=updating)

    async def _check_url(self, p: Principal, name: str, field: str, rpc: str, url: str) -> None:
        """Access first, then the URL's host resolved and checked (off the event loop and
        outside any transaction: DNS may take a while)."""
        await self.app.read(lambda s: webhooks.authorize(s, p, name, field, rpc))
        await self.app.run(
            webhook_targets.check_url, url, "automation.url", self.app.webhook_policy
        )

    async def GetAutomation(
        self, request: pb.GetAutomationRequest, context: grpc.aio.ServicerContext
    ) -> r.Automation:
        p = current_principal()
        return await self.app.read(
            lambda s: _shown(s, webhooks.get_automation(s, p, request.name), request.name)
        )

    async def UpdateAutomation(
        self, request: pb.UpdateAutomationRequest, context: grpc.aio.ServicerContext
    ) -> r.Automation:
        p = current_principal()
        a = request.automation
        fields = mask_paths(request.update_mask, set(webhooks.UPDATABLE))
        spec = self._spec(a, fields, updating=True)
        if "url" in fields:
            await self._check_url(p, a.name, "automation.name", "UpdateAutomation", spec.url)

        def work(s: Session) -> r.Automation:
            row = webhooks.update_automation(
                s, p, a.name, fields, spec, a.etag, self.app.secret_box
            )
            return _shown(s, row, a.name)

        return await self.app.write(work)

    async def TestAutomation(
        self, request: pb.TestAutomationRequest, context: grpc.aio.ServicerContext
    ) -> r.Delivery:
        p = current_principal()
        delivery_id = await self.app.run(
            webhooks.test_automation,
            self.app.db,
            p,
            request.name,
            self.app.webhook_policy,
            self.app.secret_box,
            webhooks.WebhookConfig.from_env(),
        )
        return await self.app.read(
            lambda s: delivery_proto(webhooks.get_delivery(s, delivery_id), request.name)
        )

    async def ListAutomations(
        self, request: pb.ListAutomationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListAutomationsResponse:
        p = current_principal()
        return await self.app.listed(
            lambda s: webhooks.list_automations(s, p, request.parent, ListParams.of(request)),
            pb.ListAutomationsResponse,
            "automations",
            lambda row: automation_proto(
                row[0], webhooks.automation_name(request.parent, row[0].uid), row[1]
            ),
        )

    async def DeleteAutomation(
        self, request: pb.DeleteAutomationRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        await self.app.write(lambda s: webhooks.delete_automation(s, p, request.name))
        return empty_pb2.Empty()

    async def ListDeliveries(
        self, request: pb.ListDeliveriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeliveriesResponse:
        p = current_principal()
        return await self.app.listed(
            lambda s: webhooks.list_deliveries(s, p, request.parent, ListParams.of(request)),
            pb.ListDeliveriesResponse,
            "deliveries",
            lambda row: delivery_proto(row[0], request.parent),
        )
