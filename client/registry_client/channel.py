"""Channels with the API key attached, and the generated stubs bound to them.

Read-your-writes across replicas: a server on PostgreSQL answers every call that
committed with the commit's number (trailing metadata `x-registry-commit`). A channel
remembers the highest number it was given (`CommitToken`) and sends it with every later
call (`x-registry-after-commit`), so that no replica answers it with state older than
what this client has written, even where the write went through another replica.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from registry.v1 import (
    artifact_service_pb2_grpc,
    collection_service_pb2_grpc,
    event_service_pb2_grpc,
    file_service_pb2_grpc,
    legacy_model_registry_service_pb2_grpc,
    migration_service_pb2_grpc,
    organization_service_pb2_grpc,
    registry_service_pb2_grpc,
)

DEFAULT_TARGET = "127.0.0.1:50051"
# Trailing metadata of a call that committed: the commit's number.
COMMIT_METADATA = "x-registry-commit"
# Request metadata: the answer must reflect at least this commit.
AFTER_COMMIT_METADATA = "x-registry-after-commit"


class CommitToken:
    """The highest commit number a client was given; thread-safe. Share one between
    channels (`open_channel(commit_token=...)`) to make them one client."""

    def __init__(self, value: int = 0) -> None:
        self._value = value
        self._lock = threading.Lock()

    @property
    def value(self) -> int:
        return self._value

    def observe(self, value: int) -> None:
        with self._lock:
            if value > self._value:
                self._value = value

    def observe_metadata(self, metadata: Iterable[tuple[str, Any]] | None) -> None:
        """Takes the commit number from a call's trailing metadata, if it has one."""
        for key, value in metadata or ():
            if key == COMMIT_METADATA:
                text = value.decode() if isinstance(value, bytes) else str(value)
                if text.isdigit():
                    self.observe(int(text))


class _RegistryInterceptor(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
):
    """Adds `authorization: Bearer <key>` (when there is a key) and the commit token
    (once it is set) to every call, and raises the token from every unary answer."""

    def __init__(self, api_key: str, token: CommitToken) -> None:
        self._auth = [("authorization", f"Bearer {api_key}")] if api_key else []
        self.token = token

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), *self._auth]
        if self.token.value:
            metadata.append((AFTER_COMMIT_METADATA, str(self.token.value)))
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def _remember(self, call: Any) -> None:
        try:
            metadata = call.trailing_metadata()
        except Exception:  # a call that never started has none
            return
        self.token.observe_metadata(metadata)

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        call = continuation(self._details(details), request)
        call.add_done_callback(self._remember)  # at once for a blocking call
        return call

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        return continuation(self._details(details), request_iterator)


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
    commit_token: CommitToken | None = None,
) -> grpc.Channel:
    """A channel to the registry; REGISTRY_ADDRESS / REGISTRY_API_KEY fill what is not given.

    TLS is used when any certificate is given or `tls=True`; a client certificate and
    key make it mutual TLS. The channel keeps the commit numbers of its answers in
    `commit_token` (a new one unless given) and sends the highest with every call.
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
    return grpc.intercept_channel(
        channel, _RegistryInterceptor(api_key, commit_token or CommitToken())
    )


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
    files: file_service_pb2_grpc.FileServiceStub

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
            files=file_service_pb2_grpc.FileServiceStub(channel),  # type: ignore[no-untyped-call]
        )
