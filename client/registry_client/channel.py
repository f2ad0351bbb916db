"""Channels with the API key attached, and the generated stubs bound to them."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from registry.v1 import (
    artifact_service_pb2_grpc,
    collection_service_pb2_grpc,
    event_service_pb2_grpc,
    legacy_model_registry_service_pb2_grpc,
    migration_service_pb2_grpc,
    organization_service_pb2_grpc,
    registry_service_pb2_grpc,
)

DEFAULT_TARGET = "127.0.0.1:50051"


class _AuthInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds `authorization: Bearer <key>` to every call."""

    def __init__(self, api_key: str) -> None:
        self._metadata = ("authorization", f"Bearer {api_key}")

    def _details(self, details: Any) -> Any:
        metadata = list(details.metadata or [])
        metadata.append(self._metadata)
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)


@dataclass(frozen=True)
class _CallDetails(grpc.ClientCallDetails):  # type: ignore[misc]
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


def open_channel(
    target: str | None = None,
    api_key: str | None = None,
    *,
    root_certificates: bytes | None = None,
    private_key: bytes | None = None,
    certificate_chain: bytes | None = None,
    tls: bool | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A channel to the registry; REGISTRY_ADDRESS / REGISTRY_API_KEY fill what is not given.

    TLS is used when any certificate is given or `tls=True`; a client certificate and
    key make it mutual TLS.
    """
    target = target or os.environ.get("REGISTRY_ADDRESS") or DEFAULT_TARGET
    api_key = api_key if api_key is not None else os.environ.get("REGISTRY_API_KEY", "")
    use_tls = tls if tls is not None else bool(root_certificates or certificate_chain)
    opts = [("grpc.max_receive_message_length", 16 * 1024 * 1024), *options]
    if use_tls:
        creds = grpc.ssl_channel_credentials(root_certificates, private_key, certificate_chain)
        channel = grpc.secure_channel(target, creds, options=opts)
    else:
        channel = grpc.insecure_channel(target, options=opts)
    if api_key:
        channel = grpc.intercept_channel(channel, _AuthInterceptor(api_key))
    return channel


@dataclass(frozen=True)
class Stubs:
    """Every service's generated stub on one channel."""

    organizations: organization_service_pb2_grpc.OrganizationServiceStub
    artifacts: artifact_service_pb2_grpc.ArtifactServiceStub
    legacy: legacy_model_registry_service_pb2_grpc.LegacyModelRegistryServiceStub
    registries: registry_service_pb2_grpc.RegistryServiceStub
    collections: collection_service_pb2_grpc.CollectionServiceStub
    migrations: migration_service_pb2_grpc.MigrationServiceStub
    events: event_service_pb2_grpc.EventServiceStub

    @classmethod
    def on(cls, channel: grpc.Channel) -> Stubs:
        return cls(
            organizations=organization_service_pb2_grpc.OrganizationServiceStub(channel),  # type: ignore[no-untyped-call]
            artifacts=artifact_service_pb2_grpc.ArtifactServiceStub(channel),  # type: ignore[no-untyped-call]
            legacy=legacy_model_registry_service_pb2_grpc.LegacyModelRegistryServiceStub(channel),  # type: ignore[no-untyped-call]
            registries=registry_service_pb2_grpc.RegistryServiceStub(channel),  # type: ignore[no-untyped-call]
            collections=collection_service_pb2_grpc.CollectionServiceStub(channel),  # type: ignore[no-untyped-call]
            migrations=migration_service_pb2_grpc.MigrationServiceStub(channel),  # type: ignore[no-untyped-call]
            events=event_service_pb2_grpc.EventServiceStub(channel),  # type: ignore[no-untyped-call]
        )
