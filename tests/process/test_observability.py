"""`registry-server serve` with metrics (REGISTRY_METRICS_ADDRESS), JSON access lines
(--log-format json) and traces from the OTEL_* variables (a console exporter): what an
operator scrapes and reads after a few calls, and never the API key."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest

from registry.v1 import organization_service_pb2 as pb
from registry.v1 import organization_service_pb2_grpc as pb_grpc

from ..support.metrics import scrape
from ..support.processes import Proc, bootstrap, free_port, run_cli
from ..support.servers import fresh_database

GET_USER = "registry.v1.OrganizationService/GetCurrentUser"
GET_TEAM = "registry.v1.OrganizationService/GetTeam"


@pytest.fixture
def url() -> Iterator[str]:
    with fresh_database(label="observed") as url:
        yield url


def test_metrics_json_access_lines_and_spans_of_a_served_process(url: str) -> None:
    key = bootstrap(url)
    port, metrics_port = free_port(), free_port()
    proc = Proc(
        ["--database-url", url, "--log-format", "json", "--migration-runner", "off"],
        port,
        env={
            "REGISTRY_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
            "OTEL_TRACES_EXPORTER": "console",
            "OTEL_SERVICE_NAME": "registry-observed",
        },
    )
    try:
        proc.wait_healthy()
        stub = pb_grpc.OrganizationServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        auth = ("authorization", f"Bearer {key}")
        stub.GetCurrentUser(pb.GetCurrentUserRequest(), metadata=[auth, ("x-request-id", "req-42")])
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetTeam(pb.GetTeamRequest(name="teams/nope"), metadata=[auth])
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as refused:
            stub.GetCurrentUser(
                pb.GetCurrentUserRequest(), metadata=[("authorization", f"Bearer {key}x")]
            )
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        metrics = scrape(metrics_port)
    finally:
        output = proc.stop()

    assert metrics[("registry_rpc_requests_total", (("method", GET_USER),))] == 2
    assert metrics[("registry_rpc_duration_seconds_count", (("method", GET_USER),))] == 2
    errors = "registry_rpc_errors_total"
    assert metrics[(errors, (("code", "UNAUTHENTICATED"), ("method", GET_USER)))] == 1
    assert metrics[(errors, (("code", "NOT_FOUND"), ("method", GET_TEAM)))] == 1

    # every log line is one JSON object, the write child's too (no text line starts with
    # its date); the console exporter's spans are indented JSON
    lines = output.splitlines()
    assert not [line for line in lines if line[:1].isdigit()]
    logged = [json.loads(line) for line in lines if line.startswith('{"time"')]
    assert logged and all({"time", "level", "logger", "message"} <= set(line) for line in logged)
    calls = [line for line in logged if line["logger"] == "registry.access"]
    by_id = {line["request_id"]: line for line in calls}
    first = by_id["req-42"]
    assert first["method"] == f"/{GET_USER}" and first["code"] == "OK"
    assert first["principal"] == "users/boss" and first["peer"].startswith("ipv")
    assert isinstance(first["duration_ms"], float)
    codes = {(line["method"], line["code"]) for line in calls}
    assert {(f"/{GET_TEAM}", "NOT_FOUND"), (f"/{GET_USER}", "UNAUTHENTICATED")} <= codes
    assert all(line["request_id"] for line in calls)  # made up when the caller sent none

    # a span per call, written by the console exporter at shutdown
    assert f'"name": "/{GET_USER}"' in output and f'"name": "/{GET_TEAM}"' in output
    assert '"service.name": "registry-observed"' in output
    for secret in (key, key[-20:]):
        assert secret not in output


def test_a_bad_metrics_address_or_exporter_is_refused(url: str) -> None:
    bad = run_cli("serve", "--database-url", url, "--metrics-address", "nowhere")
    assert bad.returncode == 2 and "HOST:PORT" in bad.stderr
    unknown = run_cli("serve", "--database-url", url, env={"OTEL_TRACES_EXPORTER": "carrier"})
    assert unknown.returncode == 2 and "no exporter 'carrier'" in unknown.stderr
