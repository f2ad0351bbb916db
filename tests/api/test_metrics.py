"""Metrics, traces and access lines of a server, through the real server and the
generated stubs: a /metrics scrape after traffic (per-method calls, errors by code,
latency, kept replies, webhook attempts, pools, migrations), an OpenTelemetry span per
call, and the access line of a call as text and as JSON."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import event_service_pb2 as epb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_server.api.app import App, Settings
from registry_server.logs import LogFormat, LogFormatter
from registry_server.storage.db import Database

from ..support.content import link, log_version, member_lab_and_registry, registry_path
from ..support.errors import NOT_FOUND, expect_error
from ..support.metrics import Samples, scrape
from ..support.servers import WEBHOOKS_TO_LOOPBACK, ServerThread, wait_listening
from ..support.webhooks import serve_receiver
from ..support.world import World

GET_USER = "registry.v1.OrganizationService/GetCurrentUser"
GET_TEAM = "registry.v1.OrganizationService/GetTeam"
RESOLVE = "registry.v1.ArtifactService/ResolvePath"


@dataclass
class Observed:
    server: ServerThread
    spans: InMemorySpanExporter

    def span(self, name: str, timeout: float = 10.0) -> ReadableSpan:
        """The finished span `name` (an aborted call's span ends just after its answer)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [s for s in self.spans.get_finished_spans() if s.name == name]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"no span {name}"
            time.sleep(0.01)

    def scrape(self) -> Samples:
        return scrape(self.server.server.metrics.port)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def observed(database_url: str) -> Iterator[Observed]:
    """A second server on the test database, with metrics and traces on."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    db = Database(database_url)
    settings = Settings(
        replica_id="observed-replica",
        metrics_address="127.0.0.1:0",
        tracer_provider=provider,
        **WEBHOOKS_TO_LOOPBACK,
    )
    thread = ServerThread(App(db, settings)).start()
    wait_listening(thread)
    yield Observed(thread, spans)
    thread.stop()
    db.dispose()


def _stubs(observed: Observed, key: str) -> Stubs:
    return Stubs.on(open_channel(observed.server.target, key))


def test_a_scrape_after_traffic_shows_calls_errors_and_latency_per_method(
    world: World, observed: Observed
) -> None:
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    link(owner, registry, "resnet", log_version(lab).name, ["production"])
    before = observed.scrape()
    stubs = _stubs(observed, owner.key)
    for _ in range(3):
        stubs.organizations.GetCurrentUser(opb.GetCurrentUserRequest())
    expect_error(NOT_FOUND, stubs.organizations.GetTeam, opb.GetTeamRequest(name="teams/nope"))
    path = registry_path(registry, "resnet", ":production")
    for _ in range(3):  # the second and third are kept replies
        stubs.artifacts.ResolvePath(apb.ResolvePathRequest(path=path))
    after = observed.scrape()

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("registry_rpc_requests_total", method=GET_USER) == 3
    assert grew("registry_rpc_duration_seconds_count", method=GET_USER) == 3
    assert grew("registry_rpc_duration_seconds_bucket", method=GET_USER, le="+Inf") == 3
    assert grew("registry_rpc_duration_seconds_sum", method=GET_USER) > 0
    assert grew("registry_rpc_errors_total", method=GET_TEAM, code="NOT_FOUND") == 1
    assert grew("registry_rpc_errors_total", method=GET_USER, code="NOT_FOUND") == 0
    assert grew("registry_rpc_requests_total", method=RESOLVE) == 3
    assert grew("registry_kept_replies_lookups_total", result="hit") >= 2
    assert ("registry_rpc_errors_total", (("code", "OK"), ("method", GET_USER))) not in after
    # the database pools and the migrations are read at scrape time
    pools = {dict(labels)["pool"] for name, labels in after if name == "registry_db_pool_size"}
    assert pools == ({"read", "write"} if observed.server.app.db.is_sqlite else {"sessions"})
    states = {dict(labels)["state"] for name, labels in after if name == "registry_migrations"}
    assert {"RUNNING", "SUCCEEDED", "FAILED", "ROLLED_BACK"} <= states


def test_webhook_attempts_are_counted_by_outcome(world: World, observed: Observed) -> None:
    owner = world.person("owner")
    _, registry = member_lab_and_registry(world, owner)
    stubs = _stubs(observed, owner.key)
    with serve_receiver() as receiver:
        made = stubs.events.CreateAutomation(
            epb.CreateAutomationRequest(
                parent=registry,
                automation=r.Automation(
                    url=receiver.url, event_types=["VERSION_LINKED"], enabled=False
                ),
            )
        )
        before = observed.scrape()
        assert stubs.events.TestAutomation(epb.TestAutomationRequest(name=made.name)).succeeded
    after = observed.scrape()
    key = ("registry_webhook_deliveries_total", (("outcome", "succeeded"),))
    assert after[key] - before.get(key, 0.0) >= 1


def test_each_call_is_a_span_with_its_status(world: World, observed: Observed) -> None:
    person = world.person("traced")
    stubs = _stubs(observed, person.key)
    observed.spans.clear()
    stubs.organizations.GetCurrentUser(opb.GetCurrentUserRequest())
    with pytest.raises(grpc.RpcError):
        stubs.organizations.GetTeam(opb.GetTeamRequest(name="teams/nope"))
    ok, failed = observed.span(f"/{GET_USER}"), observed.span(f"/{GET_TEAM}")
    assert ok.attributes is not None and failed.attributes is not None
    assert ok.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert failed.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    # NOT_FOUND is the caller's mistake: no error status on a server span (semantic conventions)
    assert failed.status.status_code is StatusCode.UNSET
    for span in (ok, failed):  # never the key
        assert person.key not in str(dict(span.attributes or {}))


def test_access_lines_carry_the_call_as_text_and_as_json(
    world: World, observed: Observed, caplog: pytest.LogCaptureFixture
) -> None:
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    link(owner, registry, "resnet", log_version(lab).name, ["production"])
    stubs = _stubs(observed, owner.key)
    request = apb.ResolvePathRequest(path=registry_path(registry, "resnet", ":production"))
    with caplog.at_level(logging.INFO, logger="registry.access"):
        for _ in range(2):  # the second is a kept reply
            stubs.artifacts.ResolvePath(request, metadata=[("x-request-id", "rid-7")])
    records = [
        record
        for record in caplog.records
        if getattr(record, "call", {}).get("request_id") == "rid-7"
    ]
    assert [record.call.get("detail", "") for record in records] == ["", "kept"]  # type: ignore[attr-defined]
    text = LogFormatter(LogFormat.text).format(records[1])
    assert f"/{RESOLVE} OK (kept) " in text and f" {owner.name} " in text
    line = json.loads(LogFormatter(LogFormat.json).format(records[1]))
    assert line["method"] == f"/{RESOLVE}" and line["code"] == "OK" and line["detail"] == "kept"
    assert line["principal"] == owner.name and line["request_id"] == "rid-7"
    assert line["peer"].startswith("ipv") and line["duration_ms"] >= 0
    assert owner.key not in text and owner.key not in json.dumps(line)
