"""The grpc.aio server: servicers, health, reflection, TLS, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import sys
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import uvloop
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from registry.v1 import (
    artifact_service_pb2,
    artifact_service_pb2_grpc,
    collection_service_pb2,
    collection_service_pb2_grpc,
    event_service_pb2,
    event_service_pb2_grpc,
    file_service_pb2,
    file_service_pb2_grpc,
    migration_service_pb2,
    migration_service_pb2_grpc,
    organization_service_pb2,
    organization_service_pb2_grpc,
    registry_service_pb2,
    registry_service_pb2_grpc,
)
from registry.v1 import legacy_model_registry_service_pb2 as legacy_pb2
from registry.v1 import legacy_model_registry_service_pb2_grpc as legacy_pb2_grpc

from ..storage.db import describe_database
from ..workers import write_child
from ..workers.commit_listener import listen_for_commits
from ..workers.event_hub import run_event_hub
from ..workers.migration_runner import run_migrations
from ..workers.retention import run_retention
from ..workers.webhook_delivery import run_webhook_worker
from . import tracing
from .app import App, freeze_heap
from .artifacts import ArtifactServicer
from .collections import CollectionServicer
from .events import EventServicer
from .files import FileServicer
from .interceptors import RegistryInterceptor
from .legacy import LegacyModelRegistryServicer
from .metrics import CallMetrics, MetricsServer
from .migrations import MigrationServicer
from .organizations import OrganizationServicer
from .registries import RegistryServicer

log = logging.getLogger("registry.server")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


# Every service: its generated modules and the servicer that implements it.
SERVICES: list[tuple[ModuleType, ModuleType, Callable[[App], Any]]] = [
    (organization_service_pb2, organization_service_pb2_grpc, OrganizationServicer),
    (registry_service_pb2, registry_service_pb2_grpc, RegistryServicer),
    (collection_service_pb2, collection_service_pb2_grpc, CollectionServicer),
    (artifact_service_pb2, artifact_service_pb2_grpc, ArtifactServicer),
    (legacy_pb2, legacy_pb2_grpc, LegacyModelRegistryServicer),
    (event_service_pb2, event_service_pb2_grpc, EventServicer),
    (migration_service_pb2, migration_service_pb2_grpc, MigrationServicer),
    (file_service_pb2, file_service_pb2_grpc, FileServicer),
]


# The background workers (`workers/`) every replica runs beside the calls it answers,
# started with the server and cancelled when it stops. (SQLite's write child starts
# first: `RegistryServer.start`.)
BACKGROUND: list[Callable[[App], Coroutine[Any, Any, None]]] = [
    listen_for_commits,
    run_event_hub,
    run_webhook_worker,
    run_migrations,
    run_retention,
]


@dataclass(frozen=True)
class TlsConfig:
    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set = mutual TLS (client certificates required)

    def credentials(self) -> grpc.ServerCredentials:
        key, cert = Path(self.key_file).read_bytes(), Path(self.cert_file).read_bytes()
        ca = Path(self.client_ca_file).read_bytes() if self.client_ca_file else None
        return grpc.ssl_server_credentials(
            [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
        )


# grpcio-reflection serves v1alpha; clients such as grpcurl ask v1 first. The two
# protocols' messages are the same on the wire, so one servicer answers both.
REFLECTION_V1 = "grpc.reflection.v1.ServerReflection"


def _serve_reflection(names: list[str], server: grpc.aio.Server) -> None:
    servicer = reflection.aio.ReflectionServicer(names)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    for service in (reflection.SERVICE_NAME, REFLECTION_V1):
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, {"ServerReflectionInfo": handler}),)
        )


class ListenError(OSError):
    """The server cannot listen on its address (taken, not local, malformed)."""


def check_listenable(address: str) -> None:
    """Raises ListenError when `address` cannot be bound, as the operating system says
    why (grpc only logs a line of its own and says "Failed to bind")."""
    host, _, port = address.rpartition(":")
    if not port.isdigit() or address.startswith("unix"):  # unix sockets: grpc says
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds
            probe.bind(sockaddr)
    except OSError as err:
        why = err.strerror or str(err)
        raise ListenError(f"cannot listen on {address}: {why.lower()}") from None


class RegistryServer:
    def __init__(self, app: App, address: str, tls: TlsConfig | None = None) -> None:
        self.app = app
        self.address = address
        self.tls = tls
        self.port = 0
        self.health = health.aio.HealthServicer()
        settings = app.settings
        self.calls = CallMetrics() if settings.metrics_address else None
        self.metrics: MetricsServer | None = None  # started with the server
        interceptors = [
            RegistryInterceptor(
                app.auth,
                app.run,
                app.reply_cache if settings.kept_replies else None,
                app.committed,
                self.calls,
            )
        ]
        if settings.tracer_provider is not None:
            interceptors.insert(0, tracing.server_interceptor(settings.tracer_provider))
        self.server = grpc.aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ],
        )
        self._service_names: list[str] = []
        for pb2, pb2_grpc, servicer in SERVICES:
            (service,) = pb2.DESCRIPTOR.services_by_name.values()
            add = getattr(pb2_grpc, f"add_{service.name}Servicer_to_server")
            add(servicer(app), self.server)
            self._service_names.append(service.full_name)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
        names = [reflection.SERVICE_NAME, REFLECTION_V1, health_name, *self._service_names]
        _serve_reflection(names, self.server)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> int:
        check_listenable(self.address)
        try:
            if self.tls:
                self.port = self.server.add_secure_port(self.address, self.tls.credentials())
            else:
                self.port = self.server.add_insecure_port(self.address)
        except RuntimeError:  # grpc's "Failed to bind to address"
            self.port = 0
        if self.port == 0:
            raise ListenError(f"cannot listen on {self.address}")
        if self.calls is not None:
            address = self.app.settings.metrics_address
            self.metrics = MetricsServer(self.app, self.calls, address)
            log.info("metrics on %s (port %d)", address, self.metrics.port)
        # SQLite's links and alias moves: started first, so that it is ready (or
        # starting) when the first call comes
        write_child.start_write_child(self.app.db)
        await self.server.start()
        for name in ["", *self._service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        for start in BACKGROUND:
            self._tasks.append(asyncio.create_task(start(self.app)))
        loop = type(asyncio.get_running_loop())
        log.info(
            "serving on %s (port %d, %s.%s) over %s",
            self.address,
            self.port,
            loop.__module__,
            loop.__name__,
            describe_database(self.app.db.url),
        )
        return self.port

    async def stop(self, grace: float) -> None:
        """Refuse new calls, let in-flight ones finish within `grace` seconds."""
        await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.server.stop(grace)
        write_child.stop_write_child(self.app.db)
        await self.app.aclose()
        self.app.close()
        if self.metrics is not None:
            self.metrics.stop()
        if self.app.settings.tracer_provider is not None:
            self.app.settings.tracer_provider.shutdown()  # exports the spans still held

    async def wait(self) -> None:
        await self.server.wait_for_termination()


# How long a thread running Python keeps the interpreter lock while another waits for it
# (CPython's default is 5 ms). Every call needs the lock on grpc's completion-queue
# poller thread and then on the event loop; while a worker runs an ORM use case, each of
# those hand-offs waited up to the interval. With the migration runner in its own
# process, ResolvePath's p99 during a migration went from 4.0-5.5x its idle p99 to
# 2.7-4.9x with this alone (python -m bench.migration_bench, 4 runs each).
SWITCH_INTERVAL_SECONDS = 0.0005


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new uvloop event loop (libuv's): grpc.aio runs on any asyncio loop, and on this
    one a unary call costs the server less CPU (bench/README.md, "Transport")."""
    return uvloop.new_event_loop()


def run_on_loop(main: Coroutine[Any, Any, None]) -> None:
    """`asyncio.run(main)` on a new uvloop event loop."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(main)


async def serve_forever(app: App, address: str, tls: TlsConfig | None, grace: float) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    server = RegistryServer(app, address, tls)
    try:
        await server.start()
    except ListenError:
        await app.aclose()
        app.close()
        raise
    freeze_heap()  # what start-up built is never scanned by a full collection again
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(server.wait())
    await asyncio.wait(
        [waiter, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
    )
    log.info("shutting down (grace %.1fs)", grace)
    await server.stop(grace)
