"""OpenTelemetry traces of every call, configured by the standard `OTEL_*` variables.

A span per call comes from opentelemetry-instrumentation-grpc's aio server interceptor,
placed before the registry's own (`api/server.py`), so the span covers authentication
and kept replies too and carries the status code answered. `registry-server serve`
turns tracing on when `OTEL_TRACES_EXPORTER` names an exporter (not `none`) or an OTLP
endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`),
unless `OTEL_SDK_DISABLED=true`. The SDK reads the rest itself: `OTEL_SERVICE_NAME`
(default here: registry-server), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
`OTEL_BSP_*`, the exporter's endpoint, headers and protocol. Needs the `otel` extra.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

EXPORTER_GROUP = "opentelemetry_traces_exporter"
DEFAULT_SERVICE_NAME = "registry-server"


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return any(
        env.get(name, "").strip()
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporter_names(env: Mapping[str, str]) -> list[str]:
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
    protocol = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    )
    # "otlp" is OTLP over gRPC; http/protobuf asks for the HTTP exporter
    return [
        "otlp_proto_http" if n == "otlp" and protocol.startswith("http") else n
        for n in names
        if n != "none"
    ]


def provider_from_env(env: Mapping[str, str] = os.environ) -> Any:
    """A TracerProvider exporting through `OTEL_TRACES_EXPORTER`'s exporters (batched).
    Raises ValueError for an exporter no installed package provides, ImportError when
    the `otel` extra is missing."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    defaults = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: DEFAULT_SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(defaults))
    available = {e.name: e for e in entry_points(group=EXPORTER_GROUP)}
    for name in _exporter_names(env):
        if name not in available:
            raise ValueError(
                f"OTEL_TRACES_EXPORTER: no exporter {name[:40]!r} "
                f"(installed: {', '.join(sorted(available))})"
            )
        provider.add_span_processor(BatchSpanProcessor(available[name].load()()))
    return provider


def server_interceptor(provider: Any) -> Any:
    """The grpc.aio server interceptor that makes a span of each call."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return aio_server_interceptor(tracer_provider=provider)  # type: ignore[no-untyped-call]
