"""Webhook automations through the real server: validation and access, deliveries
signed with the Standard Webhooks scheme received by a real HTTP server on 127.0.0.1
(the session server allows http and 127.0.0.0/8: support.servers.WEBHOOKS_TO_LOOPBACK),
retries with backoff (each attempt recorded), alias and type matching, no duplicates
across replicas, secrets (generated, never returned, sealed under a server key),
UpdateAutomation and TestAutomation, redirects and the address check at connect time.
Refusals under the default rules: tests/api/test_webhook_safety.py."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import grpc
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import event_service_pb2 as pb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_client import webhooks as standard_webhooks
from registry_server.api.app import App
from registry_server.api.settings import RunnerMode, Settings
from registry_server.cli import app as server_cli
from registry_server.service import events as ev
from registry_server.service import webhook_targets
from registry_server.service.secret_box import SecretBox
from registry_server.storage import models as m
from registry_server.storage.db import Database
from registry_server.storage.migrate import upgrade

from ..support.content import create_registry, grant, link, list_events, log_version, make_lab
from ..support.errors import DENIED, INVALID, NOT_FOUND, expect_error
from ..support.servers import WEBHOOKS_TO_LOOPBACK, ServerThread
from ..support.webhooks import Receiver, serve_receiver
from ..support.world import Person, World, unique


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as state:
        yield state


@pytest.fixture(autouse=True)
def fast_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker reads these on every tick."""
    monkeypatch.setenv("REGISTRY_WEBHOOK_BACKOFF_MS", "100")
    monkeypatch.setenv("REGISTRY_WEBHOOK_POLL_MS", "30")
    monkeypatch.setenv("REGISTRY_WEBHOOK_TIMEOUT_S", "3")


@dataclass
class Setup:
    world: World
    member: Person  # registry MEMBER: creates automations, links, moves aliases
    registry: str
    collection: str
    versions: list[r.CollectionVersion]


@pytest.fixture
def setup(world: World) -> Setup:
    member = world.person("mia")
    lab = make_lab(world, member)
    registry = create_registry(world)
    grant(world, registry, member.name, r.REGISTRY_ROLE_MEMBER)
    coll = unique("c")
    versions = [link(member, registry, coll, log_version(lab).name) for _ in range(2)]
    return Setup(world, member, registry, f"{registry}/collections/{coll}", versions)


SECRET = standard_webhooks.new_secret()


def create(person: Person, parent: str, **fields: Any) -> r.Automation:
    fields.setdefault("secret", SECRET)
    return person.stubs.events.CreateAutomation(
        pb.CreateAutomationRequest(parent=parent, automation=r.Automation(**fields))
    )


def deliveries(person: Person, automation: str) -> list[r.Delivery]:
    out: list[r.Delivery] = []
    token = ""
    while True:
        page = person.stubs.events.ListDeliveries(
            pb.ListDeliveriesRequest(parent=automation, page_token=token, page_size=2)
        )
        out.extend(page.deliveries)
        token = page.next_page_token
        if not token:
            return out


def wait_deliveries(
    person: Person, automation: str, n: int, timeout: float = 20.0
) -> list[r.Delivery]:
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(person, automation)
        if len(found) >= n or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def add_alias(person: Person, version: str, alias: str) -> None:
    person.stubs.collections.AddAlias(cpb.AddAliasRequest(collection_version=version, alias=alias))


def test_signed_delivery_retried_until_the_receiver_recovers(
    setup: Setup, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]  # fails twice, then 200
    automation = create(
        setup.member,
        setup.collection,
        event_types=[ev.ALIAS_ADDED],
        alias_regex="prod.*",
        url=receiver.url,
    )
    add_alias(setup.member, setup.versions[0].name, "staging")  # alias does not match
    setup.member.stubs.collections.UpdateCollectionVersion(  # type not subscribed
        cpb.UpdateCollectionVersionRequest(
            collection_version=r.CollectionVersion(name=setup.versions[0].name, description="x"),
            update_mask={"paths": ["description"]},
        )
    )
    add_alias(setup.member, setup.versions[1].name, "production")
    got = receiver.wait_for(3)
    time.sleep(0.5)
    assert len(receiver.received) == 3, "one event, three attempts, nothing else"
    (event,) = list_events(
        setup.world.admin.stubs,
        setup.registry,
        f'type = "{ev.ALIAS_ADDED}" AND resource : "{setup.versions[1].name}"',
    )
    for attempt, request in enumerate(got, start=1):
        standard_webhooks.verify(SECRET, request.headers, request.body)
        assert request.headers["X-Registry-Event"] == str(event.cursor)
        assert request.headers["X-Registry-Event-Type"] == ev.ALIAS_ADDED
        assert request.headers["X-Registry-Attempt"] == str(attempt)
        assert request.headers["Content-Type"] == "application/json"
        body = request.json
        assert body["automation"] == automation.name
        assert body["event"]["cursor"] == event.cursor
        assert body["event"]["type"] == ev.ALIAS_ADDED
        assert body["event"]["resource"] == setup.versions[1].name
        assert body["event"]["actor"] == setup.member.name
        assert body["event"]["details"]["alias"] == "production"
    assert len({r_.headers["X-Registry-Delivery"] for r_ in got}) == 3
    # exponential backoff: 100 ms, then 200 ms
    assert got[1].at - got[0].at >= 0.09
    assert got[2].at - got[1].at >= 0.19
    # Each attempt is recorded; admins list them.
    found = wait_deliveries(setup.world.admin, automation.name, 3)
    assert [(d.attempt, d.status_code, d.succeeded) for d in found] == [
        (1, 500, False),
        (2, 500, False),
        (3, 200, True),
    ]
    assert all(d.event_cursor == event.cursor and d.time.seconds > 0 for d in found)
    assert found[0].error and not found[2].error
    assert [d.name.rsplit("/", 1)[1] for d in found] == [
        r_.headers["X-Registry-Delivery"] for r_ in got
    ]
    assert all(d.name.startswith(automation.name + "/deliveries/") for d in found)


def test_registry_automation_gives_up_and_does_not_retry_client_errors(
    setup: Setup, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_WEBHOOK_MAX_ATTEMPTS", "3")
    admin = setup.world.admin
    automation = create(
        setup.member,
        setup.registry,
        event_types=[ev.VERSION_LINKED, ev.COLLECTION_CREATED],
        url=receiver.url,
    )
    receiver.respond = lambda h: 404 if h["X-Registry-Event-Type"] == ev.COLLECTION_CREATED else 503
    lab = make_lab(setup.world, setup.member)
    other = unique("c")  # a registry automation sees every collection of the registry
    link(
        setup.member, setup.registry, other, log_version(lab).name
    )  # COLLECTION_CREATED + VERSION_LINKED
    found = wait_deliveries(admin, automation.name, 4)
    time.sleep(0.6)
    found = deliveries(admin, automation.name)
    by_event: dict[int, list[tuple[int, int]]] = {}
    for d in found:
        by_event.setdefault(d.event_cursor, []).append((d.attempt, d.status_code))
    assert sorted(len(v) for v in by_event.values()) == [1, 3], by_event
    attempts = sorted(by_event.values(), key=len)
    assert attempts[1] == [(1, 503), (2, 503), (3, 503)]  # gave up after 3 attempts
    assert attempts[0] == [(1, 404)]  # a 4xx is final
    assert not any(d.succeeded for d in found)


def test_validation_access_and_secret_never_returned(setup: Setup, receiver: Receiver) -> None:
    world, member = setup.world, setup.member
    viewer = world.person("vic")
    grant(world, setup.registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
    outsider = world.person("otto")
    good: dict[str, Any] = {"event_types": [ev.ALIAS_ADDED], "url": receiver.url}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"event_types": []}, "automation.event_types"),
        ({"event_types": ["NOPE"]}, "automation.event_types[0]"),
        ({"alias_regex": "("}, "automation.alias_regex"),
        ({"alias_regex": "(a+)+$"}, "automation.alias_regex"),
        ({"alias_regex": "a" * 257}, "automation.alias_regex"),
        ({"url": "ftp://example.com/x"}, "automation.url"),
        ({"url": "http:///nohost"}, "automation.url"),
        ({"url": ""}, "automation.url"),
        ({"secret": "s3cret"}, "automation.secret"),
        ({"secret": "whsec_c2hvcnQ="}, "automation.secret"),  # 5 bytes of key
    ]
    for bad, where in cases:
        expect_error(
            INVALID, partial(create, member, setup.registry, **{**good, **bad}), field=where
        )
    expect_error(INVALID, partial(create, member, "teams/x", **good), field="parent")
    expect_error(NOT_FOUND, partial(create, member, f"{setup.registry}/collections/nope", **good))
    expect_error(DENIED, partial(create, viewer, setup.registry, **good))
    expect_error(NOT_FOUND, partial(create, outsider, setup.registry, **good))

    made = create(member, setup.registry, **good, alias_regex="^prod$")
    assert made.secret == "" and made.created_by == member.name and made.url == receiver.url
    assert made.name.startswith(setup.registry + "/automations/")
    on_collection = create(member, setup.collection, **good)
    assert on_collection.name.startswith(setup.collection + "/automations/")
    # request_id: a retry returns the first automation and records nothing more
    before = len(list_events(world.admin.stubs, setup.registry))
    req = pb.CreateAutomationRequest(
        parent=setup.registry, automation=r.Automation(**good, secret=SECRET), request_id="retry-1"
    )
    first = member.stubs.events.CreateAutomation(req)
    assert member.stubs.events.CreateAutomation(req).name == first.name
    assert len(list_events(world.admin.stubs, setup.registry)) == before + 1

    listed = member.stubs.events.ListAutomations(pb.ListAutomationsRequest(parent=setup.registry))
    assert [a.name for a in listed.automations] == [made.name, first.name]
    assert all(a.secret == "" for a in listed.automations)
    paged = member.stubs.events.ListAutomations(
        pb.ListAutomationsRequest(parent=setup.registry, page_size=1)
    )
    assert len(paged.automations) == 1 and paged.next_page_token
    assert [
        a.name
        for a in member.stubs.events.ListAutomations(
            pb.ListAutomationsRequest(parent=setup.collection)
        ).automations
    ] == [on_collection.name]
    expect_error(
        NOT_FOUND,
        outsider.stubs.events.ListAutomations,
        pb.ListAutomationsRequest(parent=setup.registry),
    )

    # Deliveries: registry ADMIN only.
    expect_error(
        DENIED, member.stubs.events.ListDeliveries, pb.ListDeliveriesRequest(parent=made.name)
    )
    assert deliveries(world.admin, made.name) == []
    expect_error(
        INVALID,
        world.admin.stubs.events.ListDeliveries,
        pb.ListDeliveriesRequest(parent=setup.registry),
        field="parent",
    )
    # Delete: MEMBER; the viewer may not.
    expect_error(
        DENIED, viewer.stubs.events.DeleteAutomation, pb.DeleteAutomationRequest(name=made.name)
    )
    member.stubs.events.DeleteAutomation(pb.DeleteAutomationRequest(name=made.name))
    expect_error(
        NOT_FOUND,
        world.admin.stubs.events.ListDeliveries,
        pb.ListDeliveriesRequest(parent=made.name),
    )
    expect_error(
        NOT_FOUND, member.stubs.events.DeleteAutomation, pb.DeleteAutomationRequest(name=made.name)
    )
    # An automation name under the wrong parent does not resolve.
    uid = on_collection.name.rsplit("/", 1)[1]
    expect_error(
        NOT_FOUND,
        member.stubs.events.DeleteAutomation,
        pb.DeleteAutomationRequest(name=f"{setup.registry}/automations/{uid}"),
    )


def test_automation_sees_only_events_after_its_creation(setup: Setup, receiver: Receiver) -> None:
    add_alias(setup.member, setup.versions[0].name, "before")
    automation = create(
        setup.member, setup.collection, event_types=[ev.ALIAS_ADDED], url=receiver.url
    )
    add_alias(setup.member, setup.versions[0].name, "after")
    (only,) = receiver.wait_for(1)
    time.sleep(0.4)
    assert len(receiver.received) == 1 and only.json["event"]["details"]["alias"] == "after"
    assert only.json["automation"] == automation.name


def test_replicas_deliver_each_event_once(
    setup: Setup, receiver: Receiver, database_url: str, server: ServerThread
) -> None:
    """Two more workers on the same database (three in all) race for the same work."""
    replicas = []
    for i in range(2):
        db = Database(database_url)
        settings = Settings(
            replica_id=f"hook-{i}", migration_runner=RunnerMode.thread, **WEBHOOKS_TO_LOOPBACK
        )
        replicas.append((db, ServerThread(App(db, settings)).start()))
    try:
        create(
            setup.member,
            setup.collection,
            event_types=[ev.ALIAS_ADDED, ev.ALIAS_REMOVED],
            url=receiver.url,
        )
        n = 12
        for i in range(n // 2):
            add_alias(setup.member, setup.versions[i % 2].name, f"a{i}")
            setup.member.stubs.collections.RemoveAlias(
                cpb.RemoveAliasRequest(collection_version=setup.versions[i % 2].name, alias=f"a{i}")
            )
        got = receiver.wait_for(n)
        time.sleep(0.8)
        cursors = [int(x.headers["X-Registry-Event"]) for x in receiver.received]
        assert len(cursors) == n and len(set(cursors)) == n, sorted(cursors)
        assert {x.headers["X-Registry-Attempt"] for x in got} == {"1"}
    finally:
        for db, replica in replicas:
            replica.stop()
            db.dispose()


# --- Standard Webhooks signatures and secrets ----------------------------------------------


def verify_by_hand(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The README's receiver check, with hmac, hashlib and base64 only."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


def test_signature_verifies_with_standard_webhooks_scheme(setup: Setup, receiver: Receiver) -> None:
    # The scheme's published example: the signing code is the scheme's.
    assert (
        standard_webhooks.signature(
            standard_webhooks.secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b'{"test": 2432232314}',
        )
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
    receiver.statuses = [503]  # the first attempt fails: the retry keeps the webhook-id
    made = setup.member.stubs.events.CreateAutomation(
        pb.CreateAutomationRequest(
            parent=setup.collection,
            automation=r.Automation(event_types=[ev.ALIAS_ADDED], url=receiver.url),
        )
    )
    secret = made.secret  # no secret sent: the server made one, shown this once
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
    add_alias(setup.member, setup.versions[0].name, "production")
    first, retry = receiver.wait_for(2)
    for got in (first, retry):
        headers = {k.lower(): v for k, v in got.headers.items()}
        assert verify_by_hand(secret, headers, got.body)
        standard_webhooks.verify(secret, got.headers, got.body)
        assert abs(int(headers["webhook-timestamp"]) - time.time()) < 30
        assert not verify_by_hand(SECRET, headers, got.body)  # another secret does not verify
        assert not verify_by_hand(secret, headers, got.body + b" ")  # nor another body
        assert "x-registry-signature" not in headers
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]
    assert first.headers["X-Registry-Delivery"] != retry.headers["X-Registry-Delivery"]
    found = wait_deliveries(setup.world.admin, made.name, 2)
    assert [d.webhook_id for d in found] == [first.headers["webhook-id"]] * 2
    with pytest.raises(standard_webhooks.WebhookVerificationError):
        standard_webhooks.verify(secret, first.headers, first.body, now=time.time() + 3600)


def test_secret_never_returned(setup: Setup, receiver: Receiver, database_url: str) -> None:
    member, events = setup.member, setup.member.stubs.events
    request = pb.CreateAutomationRequest(
        parent=setup.registry,
        automation=r.Automation(event_types=[ev.ALIAS_ADDED], url=receiver.url),
        request_id=unique("once"),
    )
    made = events.CreateAutomation(request)
    assert made.secret.startswith("whsec_")
    # A retry of the same request answers the same automation, without the secret.
    again = events.CreateAutomation(request)
    assert again.name == made.name and again.secret == ""
    own = create(member, setup.registry, event_types=[ev.ALIAS_ADDED], url=receiver.url)
    assert own.secret == ""  # the caller knows it
    got = events.GetAutomation(pb.GetAutomationRequest(name=made.name))
    listed = events.ListAutomations(pb.ListAutomationsRequest(parent=setup.registry))
    updated = events.UpdateAutomation(
        pb.UpdateAutomationRequest(
            automation=r.Automation(name=made.name, secret=standard_webhooks.new_secret()),
            update_mask={"paths": ["secret"]},
        )
    )
    assert got.secret == "" and updated.secret == ""
    assert all(a.secret == "" for a in listed.automations)
    # Nor is it kept with the stored reply of the request_id.
    db = Database(database_url)
    try:
        with db.read() as s:
            replies = s.query(m.IdempotencyKey.response).all()
    finally:
        db.dispose()
    assert replies and not any(made.secret.encode() in row[0] for row in replies)


@contextmanager
def stubs_on(replica: ServerThread, person: Person) -> Iterator[Stubs]:
    channel = open_channel(replica.target, person.key)
    try:
        yield Stubs.on(channel)
    finally:
        channel.close()


@pytest.fixture
def keyed_server(database_url: str, tmp_path: Any) -> Iterator[tuple[ServerThread, SecretBox]]:
    """A second replica that seals secrets under a key of its own."""
    key_file = tmp_path / "secret.keys"
    key_file.write_text("# webhook secrets\n" + base64.b64encode(b"k" * 32).decode() + "\n")
    db = Database(database_url)
    settings = Settings(
        replica_id="keyed",
        secret_key_file=str(key_file),
        migration_runner=RunnerMode.thread,
        **WEBHOOKS_TO_LOOPBACK,
    )
    replica = ServerThread(App(db, settings)).start()
    yield replica, SecretBox.from_file(str(key_file))
    replica.stop()
    db.dispose()


def test_secret_stored_encrypted_with_server_key(
    setup: Setup,
    receiver: Receiver,
    database_url: str,
    keyed_server: tuple[ServerThread, SecretBox],
) -> None:
    replica, box = keyed_server
    with stubs_on(replica, setup.member) as stubs:
        made = stubs.events.CreateAutomation(
            pb.CreateAutomationRequest(
                parent=setup.registry,
                automation=r.Automation(
                    event_types=[ev.ALIAS_ADDED], url=receiver.url, enabled=False
                ),
            )
        )
        uid = made.name.rsplit("/", 1)[1]
        db = Database(database_url)
        try:
            with db.read() as s:
                row = s.query(m.Automation).filter_by(uid=uid).one()
                stored, sealed = row.secret, row.secret_sealed or ""
        finally:
            db.dispose()
        assert stored == "" and sealed.startswith(f"v1:{box.sealing_id}:")
        assert made.secret not in sealed and made.secret[6:] not in sealed
        assert box.open(sealed, uid) == made.secret
        # The keyed replica opens it to sign a ping.
        ping = stubs.events.TestAutomation(pb.TestAutomationRequest(name=made.name))
    assert ping.succeeded and ping.status_code == 200
    (got,) = receiver.wait_for(1)
    standard_webhooks.verify(made.secret, got.headers, got.body)
    # A replica without the key records a clear failure instead of sending.
    failed = setup.member.stubs.events.TestAutomation(pb.TestAutomationRequest(name=made.name))
    assert not failed.succeeded and failed.status_code == 0
    assert "encrypted" in failed.error and "--secret-key-file" in failed.error
    time.sleep(0.3)
    assert len(receiver.received) == 1


# --- UpdateAutomation and TestAutomation ----------------------------------------------------


def update(person: Person, name: str, paths: list[str], **fields: Any) -> r.Automation:
    return person.stubs.events.UpdateAutomation(
        pb.UpdateAutomationRequest(
            automation=r.Automation(name=name, **fields), update_mask={"paths": paths}
        )
    )


def test_update_automation_disable_stops_deliveries(setup: Setup, receiver: Receiver) -> None:
    member, admin = setup.member, setup.world.admin
    made = create(member, setup.collection, event_types=[ev.ALIAS_ADDED], url=receiver.url)
    assert made.enabled and made.etag
    add_alias(member, setup.versions[0].name, "one")
    receiver.wait_for(1)
    off = update(member, made.name, ["enabled"], enabled=False)
    assert not off.enabled and off.etag != made.etag
    add_alias(member, setup.versions[0].name, "while-off")
    time.sleep(0.8)
    assert len(receiver.received) == 1
    assert len(deliveries(admin, made.name)) == 1
    on = update(member, made.name, ["enabled"], enabled=True)
    assert on.enabled
    add_alias(member, setup.versions[1].name, "two")
    got = receiver.wait_for(2)
    time.sleep(0.4)
    assert [x.json["event"]["details"]["alias"] for x in receiver.received] == ["one", "two"]
    # Other fields, a rotated secret, an etag, and bad updates changing nothing.
    new_secret = standard_webhooks.new_secret()
    changed = update(
        member,
        made.name,
        ["event_types", "alias_regex", "secret"],
        event_types=[ev.ALIAS_REMOVED],
        alias_regex="^t.*$",
        secret=new_secret,
        etag=on.etag,
    )
    assert list(changed.event_types) == [ev.ALIAS_REMOVED] and changed.alias_regex == "^t.*$"
    member.stubs.collections.RemoveAlias(
        cpb.RemoveAliasRequest(collection_version=setup.versions[1].name, alias="two")
    )
    got = receiver.wait_for(3)
    standard_webhooks.verify(new_secret, got[2].headers, got[2].body)
    assert got[2].json["event"]["type"] == ev.ALIAS_REMOVED
    expect_error(
        grpc.StatusCode.ABORTED,
        partial(update, member, made.name, ["enabled"], enabled=False, etag=on.etag),
    )
    for paths, fields, where in [
        ([], {}, "update_mask"),
        (["create_time"], {}, "update_mask"),
        (["secret"], {}, "automation.secret"),
        (["secret"], {"secret": "plain"}, "automation.secret"),
        (["url"], {"url": "http://[::1]:9/"}, "automation.url"),
        (["event_types"], {"event_types": []}, "automation.event_types"),
    ]:
        expect_error(INVALID, partial(update, member, made.name, paths, **fields), field=where)
    still = member.stubs.events.GetAutomation(pb.GetAutomationRequest(name=made.name))
    assert still.etag == changed.etag and still.enabled
    viewer = setup.world.person("vic")
    grant(setup.world, setup.registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
    expect_error(DENIED, partial(update, viewer, made.name, ["enabled"], enabled=False))
    expect_error(DENIED, viewer.stubs.events.GetAutomation, pb.GetAutomationRequest(name=made.name))


def test_test_automation_sends_signed_ping(setup: Setup, receiver: Receiver) -> None:
    member, admin = setup.member, setup.world.admin
    made = create(
        member, setup.registry, event_types=[ev.VERSION_LINKED], url=receiver.url, enabled=False
    )
    ping = member.stubs.events.TestAutomation(pb.TestAutomationRequest(name=made.name))
    assert ping.succeeded and ping.status_code == 200 and ping.attempt == 1
    assert ping.name.startswith(made.name + "/deliveries/") and ping.time.seconds > 0
    (got,) = receiver.wait_for(1)
    standard_webhooks.verify(SECRET, got.headers, got.body)
    assert got.headers["webhook-id"] == ping.webhook_id
    assert got.json["automation"] == made.name
    event = got.json["event"]
    assert event["type"] == ev.AUTOMATION_TESTED and event["resource"] == made.name
    assert event["actor"] == member.name and event["cursor"] == ping.event_cursor
    assert [d.name for d in deliveries(admin, made.name)] == [ping.name]
    # A failing receiver: recorded, not retried.
    receiver.statuses = [500]
    failed = member.stubs.events.TestAutomation(pb.TestAutomationRequest(name=made.name))
    assert not failed.succeeded and failed.status_code == 500
    time.sleep(0.5)
    assert len(receiver.received) == 2 and len(deliveries(admin, made.name)) == 2
    viewer = setup.world.person("vic")
    grant(setup.world, setup.registry, viewer.name, r.REGISTRY_ROLE_VIEWER)
    expect_error(
        DENIED, viewer.stubs.events.TestAutomation, pb.TestAutomationRequest(name=made.name)
    )
    expect_error(
        NOT_FOUND,
        member.stubs.events.TestAutomation,
        pb.TestAutomationRequest(name=f"{setup.registry}/automations/nope"),
    )


# --- where deliveries may go ----------------------------------------------------------------


def test_redirect_is_not_followed(setup: Setup, receiver: Receiver) -> None:
    receiver.statuses = [302]
    receiver.location = receiver.url + "/elsewhere"  # followed, it would be a second request
    made = create(setup.member, setup.collection, event_types=[ev.ALIAS_ADDED], url=receiver.url)
    add_alias(setup.member, setup.versions[0].name, "production")
    (attempt,) = wait_deliveries(setup.world.admin, made.name, 1)
    time.sleep(0.4)
    assert attempt.status_code == 302 and not attempt.succeeded
    assert "redirects are not followed" in attempt.error
    assert len(deliveries(setup.world.admin, made.name)) == 1  # final: not retried
    assert len(receiver.received) == 1


def test_delivery_rechecks_address_at_connect_time(
    setup: Setup, receiver: Receiver, dns: dict[str, list[str]]
) -> None:
    assert receiver.server is not None
    port = receiver.server.server_address[1]
    dns["rebind.example.test"] = ["127.0.0.1"]  # allow-listed on this server
    made = create(
        setup.member,
        setup.collection,
        event_types=[ev.ALIAS_ADDED],
        url=f"http://rebind.example.test:{port}/hook",
    )
    # The name now answers 0.0.0.0 (which reaches this very host on Linux), which no
    # allow-list opens: the delivery must not connect.
    dns["rebind.example.test"] = ["0.0.0.0"]
    add_alias(setup.member, setup.versions[0].name, "production")
    (refused,) = wait_deliveries(setup.world.admin, made.name, 1)
    time.sleep(0.4)
    assert refused.status_code == 0 and not refused.succeeded
    assert refused.error.startswith("refused:") and "unspecified" in refused.error
    assert receiver.received == []
    assert len(deliveries(setup.world.admin, made.name)) == 1  # a refusal is final
    # Back to an allowed address: delivered, with the URL's host in the Host header.
    dns["rebind.example.test"] = ["127.0.0.1"]
    add_alias(setup.member, setup.versions[1].name, "staging")
    (got,) = receiver.wait_for(1)
    assert got.headers["Host"] == f"rebind.example.test:{port}"


def test_allow_cidr_opens_internal_range(setup: Setup, receiver: Receiver) -> None:
    # This server allows 127.0.0.0/8 (and http): deliveries to 127.0.0.1 go through...
    made = create(setup.member, setup.collection, event_types=[ev.ALIAS_ADDED], url=receiver.url)
    add_alias(setup.member, setup.versions[0].name, "production")
    receiver.wait_for(1)
    assert made.url.startswith("http://127.0.0.1:")
    # ...while the rest of loopback and other internal ranges stay closed, and the
    # unspecified address stays closed whatever the list says.
    for url in ["http://[::1]:9/", "http://10.0.0.1/", "http://0.0.0.0:9/", "http://[::]:9/"]:
        expect_error(
            INVALID,
            partial(create, setup.member, setup.collection, event_types=[ev.ALIAS_ADDED], url=url),
            field="automation.url",
        )
    wide = webhook_targets.TargetPolicy.of(False, ["0.0.0.0/0", "::/0"])
    assert webhook_targets.refusal(ipaddress.ip_address("10.1.2.3"), wide) is None
    assert webhook_targets.refusal(ipaddress.ip_address("fd00::1"), wide) is None
    for never in ["0.0.0.0", "224.0.0.1", "255.255.255.255", "::", "ff02::1"]:
        assert webhook_targets.refusal(ipaddress.ip_address(never), wide), never


# --- operator commands ------------------------------------------------------------------------


def test_reseal_secrets_encrypts_plaintext_and_rotates_keys(tmp_path: Any) -> None:
    """`registry-server db reseal-secrets` on a database of its own: plaintext secrets
    get sealed, then a new first key in the file reseals them under it."""
    url = f"sqlite:///{tmp_path / 'reseal.db'}"
    upgrade(url)
    engine = create_engine(url)  # foreign keys off: bare rows are enough here
    with engine.begin() as conn:
        for uid in ("a1", "a2"):
            conn.execute(
                text(
                    "INSERT INTO automations (uid, org_id, registry_id, event_types, alias_regex,"
                    " url, secret, create_time, event_cursor) VALUES (:uid, 1, 1, '[]', '',"
                    " 'https://hooks.example.test/', :secret, 1, 0)"
                ),
                {"uid": uid, "secret": f"whsec_{uid}"},
            )
    old_key, new_key = (base64.b64encode(bytes([b]) * 32).decode() for b in (1, 2))
    key_file = tmp_path / "keys"

    def reseal() -> dict[str, str]:
        result = CliRunner().invoke(
            server_cli,
            ["db", "reseal-secrets", "--database-url", url, "--secret-key-file", str(key_file)],
        )
        assert result.exit_code == 0, result.output
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT uid, secret, secret_sealed FROM automations"))
            found = {uid: sealed for uid, secret, sealed in rows if secret == ""}
        assert set(found) == {"a1", "a2"}
        return found

    key_file.write_text(old_key + "\n")
    first = reseal()
    old_box = SecretBox.from_file(str(key_file))
    assert {uid: old_box.open(v, uid) for uid, v in first.items()} == {
        "a1": "whsec_a1",
        "a2": "whsec_a2",
    }
    key_file.write_text(f"{new_key}\n# the previous key, until resealed\n{old_key}\n")
    second = reseal()
    new_box = SecretBox.from_file(str(key_file))
    assert all(v.startswith(f"v1:{new_box.sealing_id}:") for v in second.values())
    assert new_box.open(second["a1"], "a1") == "whsec_a1"
    # Without the old key, a secret sealed with it cannot be opened: a clear error.
    key_file.write_text(new_key + "\n")
    with pytest.raises(Exception, match=old_box.sealing_id):
        SecretBox.from_file(str(key_file)).open(first["a1"], "a1")
    engine.dispose()


@pytest.mark.parametrize(
    ("flags", "env", "says"),
    [
        (["--webhook-allow-cidr", "10.0.0.0/8", "--webhook-allow-cidr", "bogus"], {}, "bogus"),
        ([], {"REGISTRY_WEBHOOK_ALLOW_CIDR": "10.0.0.0/8,300.1.1.1/32"}, "300.1.1.1"),
        (["--secret-key-file", "/nonexistent/keys"], {}, "cannot read"),
    ],
)
def test_serve_refuses_bad_webhook_settings(
    tmp_path: Any, flags: list[str], env: dict[str, str], says: str
) -> None:
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    result = CliRunner().invoke(
        server_cli, ["serve", "--database-url", url, "--address", "127.0.0.1:0", *flags], env=env
    )
    assert result.exit_code == 2 and says in result.output, result.output
