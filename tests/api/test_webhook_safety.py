"""Where webhooks may not go, under the server's default rules: a second in-process
server on the test database, started with default Settings (https only, no
allow-list), refuses loopback and internal targets in every spelling, and host names
that resolve to them, with INVALID_ARGUMENT naming `automation.url` and nothing
created. Also the delivery's own checks, and the pinned-IP connection against a local
TLS server. The rules' pure parts: tests/unit/test_webhook_targets.py. The session
server allows http and 127.0.0.0/8: tests/api/test_webhooks.py.

No test here connects anywhere but this machine: public addresses appear only as
resolver answers for automations created disabled, or as literals refused before a
connection."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from registry.v1 import event_service_pb2 as pb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_server.api.app import App
from registry_server.api.settings import RunnerMode, Settings
from registry_server.service import events as ev
from registry_server.service import webhook_http
from registry_server.service.webhook_targets import TargetPolicy
from registry_server.storage.db import Database

from ..support.certs import make_pki
from ..support.content import create_registry, grant, list_events
from ..support.errors import INVALID, expect_error
from ..support.servers import ServerThread
from ..support.world import Person, World, make_world

PUBLIC = "93.184.215.14"  # a global unicast address: only ever a resolver answer here

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.0.0.1.",  # a trailing dot
    "127.9.8.7",
    "2130706433",  # decimal
    "127.1",  # short
    "0x7f.1",  # hex
    "0x7F000001",
    "0177.0.0.1",  # octal
    "017700000001",
    "0x7f.0.0.0x1",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[64:ff9b::127.0.0.1]",  # NAT64
    "[2002:7f00:1::]",  # 6to4
    "[::127.0.0.1]",  # IPv4-compatible
    "localhost",
    "LOCALHOST",
    "localhost.",
    "hooks.localhost",
    "0.0.0.0",  # unspecified: reaches this host
    "0",
    "[::]",
]
INTERNAL_ADDRESSES = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT
    "169.254.169.254",  # link-local (cloud metadata)
    "[fe80::1]",
    "[fe80::1%25eth0]",
    "[fd12:3456::1]",  # unique-local
    "224.0.0.1",  # multicast
    "[ff02::1]",
    "255.255.255.255",  # broadcast
    "240.0.0.1",  # reserved
    "192.0.2.10",  # documentation
    "[2001:db8::1]",
    "198.18.0.1",  # benchmarking
    "[::ffff:10.0.0.1]",
]


@dataclass
class Strict:
    """A server with default webhook rules, and a registry where `member` may write."""

    server: ServerThread
    world: World
    member: Person
    registry: str


@pytest.fixture(scope="module")
def strict_server(database_url: str) -> Iterator[ServerThread]:
    db = Database(database_url)
    replica = ServerThread(
        App(db, Settings(replica_id="strict-webhooks", migration_runner=RunnerMode.thread))
    ).start()
    yield replica
    replica.stop()
    db.dispose()


@pytest.fixture(scope="module")
def strict(strict_server: ServerThread, root_key: str) -> Iterator[Strict]:
    channel = open_channel(strict_server.target, root_key)
    world = make_world(strict_server, Stubs.on(channel))
    member = world.person("mia")
    registry = create_registry(world)
    grant(world, registry, member.name, r.REGISTRY_ROLE_MEMBER)
    yield Strict(strict_server, world, member, registry)
    channel.close()


def create(strict: Strict, url: str, **fields: Any) -> r.Automation:
    return strict.member.stubs.events.CreateAutomation(
        pb.CreateAutomationRequest(
            parent=strict.registry,
            automation=r.Automation(event_types=[ev.ALIAS_ADDED], url=url, **fields),
        )
    )


def refused(strict: Strict, url: str) -> str:
    """Checks that creating `url` fails naming automation.url and changes nothing."""
    before = len(list_events(strict.world.admin.stubs, strict.registry))
    failure = expect_error(INVALID, partial(create, strict, url), field="automation.url")
    assert len(list_events(strict.world.admin.stubs, strict.registry)) == before
    listed = strict.member.stubs.events.ListAutomations(
        pb.ListAutomationsRequest(parent=strict.registry)
    )
    assert not [a for a in listed.automations if a.url == url]
    return failure.message


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_webhook_to_each_loopback_spelling_is_refused(strict: Strict, host: str) -> None:
    message = refused(strict, f"https://{host}:8443/hook")
    assert "webhooks may not go there" in message


@pytest.mark.parametrize("host", INTERNAL_ADDRESSES)
def test_webhook_to_each_internal_address_class_is_refused(strict: Strict, host: str) -> None:
    assert "webhooks may not go there" in refused(strict, f"https://{host}/hook")


def test_host_name_resolving_to_private_address_is_refused(
    strict: Strict, dns: dict[str, list[str]]
) -> None:
    dns["intranet.example.test"] = ["10.20.30.40"]
    dns["mixed.example.test"] = [PUBLIC, "10.20.30.40"]  # one bad address is enough
    dns["v6.example.test"] = ["fd00::5"]
    dns["metadata.example.test."] = ["169.254.169.254"]
    for host in dns:
        message = refused(strict, f"https://{host}/hook")
        assert "resolves to a" in message
        assert "10.20.30.40" not in message  # internal DNS is not disclosed
    refused(strict, "https://unknown.example.test/hook")  # does not resolve
    # A name resolving to a public address is accepted (created disabled: this test
    # makes no connection).
    dns["hooks.example.test"] = [PUBLIC, "2606:4700::1111"]
    made = create(strict, "https://hooks.example.test/hook", enabled=False)
    assert not made.enabled and made.secret.startswith("whsec_")


def test_http_refused_unless_allowed(strict: Strict, dns: dict[str, list[str]]) -> None:
    dns["hooks.example.test"] = [PUBLIC]
    message = refused(strict, "http://hooks.example.test/hook")
    assert "--webhook-allow-http" in message
    made = create(strict, "https://hooks.example.test:8443/hook", enabled=False)
    # An update to http:// is refused the same way, and changes nothing.
    expect_error(
        INVALID,
        strict.member.stubs.events.UpdateAutomation,
        pb.UpdateAutomationRequest(
            automation=r.Automation(name=made.name, url="http://hooks.example.test/"),
            update_mask={"paths": ["url"]},
        ),
        field="automation.url",
    )
    got = strict.member.stubs.events.GetAutomation(pb.GetAutomationRequest(name=made.name))
    assert got.url == made.url and got.etag == made.etag


@pytest.mark.parametrize(
    "url",
    [
        "https://user:pass@hooks.example.test/",
        "https://token@hooks.example.test/",
        "ftp://hooks.example.test/",
        "https:///no-host",
        "https://1.2.3.4.5/",
        "https://256.1.1.1/",
        "https://0x1g.1/",
        "https://hooks..example.test/",
        "https://hooks.example.test:0/",
        "https://hooks.example.test:99999/",
        "https://%31%32%37.0.0.1/",
        "https://hooks example.test/",
        "https://" + "a" * 2100 + ".test/",
    ],
)
def test_malformed_or_credential_urls_are_refused(
    strict: Strict, dns: dict[str, list[str]], url: str
) -> None:
    dns["hooks.example.test"] = [PUBLIC]
    message = refused(strict, url)
    assert len(message) < 600  # input quoted at most ~200 characters


def test_secret_must_be_a_standard_webhooks_secret(
    strict: Strict, dns: dict[str, list[str]]
) -> None:
    dns["hooks.example.test"] = [PUBLIC]
    for secret in ["hunter2", "whsec_not base64", "whsec_" + "A" * 16]:
        failure = expect_error(
            INVALID,
            partial(create, strict, "https://hooks.example.test/", secret=secret, enabled=False),
            field="automation.secret",
        )
        assert secret not in failure.message  # a secret is never quoted back


# --- the rules' pure parts -------------------------------------------------------------------


def test_delivery_refuses_a_rebound_name_without_connecting(
    dns: dict[str, list[str]],
) -> None:
    """The connect-time check alone: the name passed at creation, now it answers
    loopback; the POST is refused and the listening socket never sees a connection."""
    with socket_listener() as (port, accepted):
        dns["rebind.example.test"] = ["127.0.0.1"]
        result = webhook_http.post(
            f"https://rebind.example.test:{port}/hook",
            b"{}",
            {},
            policy=TargetPolicy(),
            timeout=2,
        )
        assert result.refused and not result.retryable and result.status_code == 0
        assert "loopback" in result.error
        assert accepted == []


# --- the pinned connection over TLS ----------------------------------------------------------


@dataclass
class TlsReceiver:
    port: int
    requests: list[dict[str, str]]
    server_names: list[str | None]


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[TlsReceiver, ssl.SSLContext]]:
    """An HTTPS server on 127.0.0.1 with a certificate for localhost and 127.0.0.1, and a
    client context that trusts its CA."""
    pki = make_pki(tmp_path)
    state = TlsReceiver(0, [], [])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(pki.server_cert, pki.server_key)
    server_ctx.sni_callback = lambda sock, name, ctx: state.server_names.append(name)  # type: ignore[assignment,func-returns-value]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = server_ctx.wrap_socket(httpd.socket, server_side=True)
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    client_ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    yield state, client_ctx
    httpd.shutdown()
    httpd.server_close()


def test_pinned_connection_keeps_host_and_sni_while_connecting_to_the_checked_ip(
    tls_receiver: tuple[TlsReceiver, ssl.SSLContext], dns: dict[str, list[str]]
) -> None:
    receiver, context = tls_receiver
    loopback = TargetPolicy.of(False, ["127.0.0.0/8", "::1/128"])
    # `localhost` is answered without DNS (127.0.0.1 first); the certificate names it.
    result = webhook_http.post(
        f"https://localhost:{receiver.port}/hook?x=1",
        b'{"ok":true}',
        {"webhook-id": "msg_1"},
        policy=loopback,
        timeout=5,
        context=context,
    )
    assert result.succeeded and result.status_code == 204, result.error
    assert receiver.requests[-1]["host"] == f"localhost:{receiver.port}"
    assert receiver.requests[-1]["webhook-id"] == "msg_1"
    assert receiver.server_names[-1] == "localhost"
    # A name that resolves to the same IP but is not on the certificate: the
    # certificate is checked against the URL's host, not the pinned address.
    dns["other.example.test"] = ["127.0.0.1"]
    mismatch = webhook_http.post(
        f"https://other.example.test:{receiver.port}/hook",
        b"{}",
        {},
        policy=loopback,
        timeout=5,
        context=context,
    )
    assert not mismatch.succeeded and mismatch.retryable
    assert "certificate" in mismatch.error.lower()
    assert len(receiver.requests) == 1


def test_unresolvable_host_is_a_retryable_failure(dns: dict[str, list[str]]) -> None:
    result = webhook_http.post(
        "https://gone.example.test/", b"{}", {}, policy=TargetPolicy(), timeout=1
    )
    assert result.status_code == 0 and result.retryable and "resolve" in result.error


# --- helpers ---------------------------------------------------------------------------------


class socket_listener:
    """A TCP listener on 127.0.0.1 that records the connections it accepts."""

    def __enter__(self) -> tuple[int, list[object]]:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.accepted: list[object] = []
        self.stop = threading.Event()

        def accept() -> None:
            while not self.stop.is_set():
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    continue
                self.accepted.append(conn)
                conn.close()

        self.thread = threading.Thread(target=accept, daemon=True)
        self.thread.start()
        return self.sock.getsockname()[1], self.accepted

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()
