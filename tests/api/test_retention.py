"""Retention (service/retention.py): events, request_id answers and finished webhook
deliveries older than their window are deleted, in bounded batches; alias history,
what undoing a migration reads, pending deliveries and everything younger stay, and
the API answers as before from what stays."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from registry.v1 import event_service_pb2 as epb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import resources_pb2 as r
from registry_server.service import retention
from registry_server.service.retention import DAY_US, HOUR_US, Retention
from registry_server.storage import models as m
from registry_server.storage.db import now_us

from ..support.content import add_alias, create_registry, grant, link, log_version, make_lab
from ..support.rows import db_session, org_id
from ..support.servers import ServerThread
from ..support.world import World


def _age_everything(server: ServerThread, world: World, days: float) -> None:
    """Makes every event of the organization, every request_id answer of its users and
    every delivery `days` older (as time passing would)."""
    shift = int(days * DAY_US)
    with db_session(server) as s:
        org = org_id(s, world.org)
        s.execute(update(m.Event).where(m.Event.org_id == org).values(time=m.Event.time - shift))
        users = select(m.User.id).where(m.User.org_id == org)
        s.execute(
            update(m.IdempotencyKey)
            .where(m.IdempotencyKey.user_id.in_(users))
            .values(create_time=m.IdempotencyKey.create_time - shift)
        )


def _types(server: ServerThread, world: World) -> list[str]:
    with db_session(server) as s:
        org = org_id(s, world.org)
        return list(
            s.execute(
                select(m.Event.type).where(m.Event.org_id == org).order_by(m.Event.cursor)
            ).scalars()
        )


def test_old_events_go_and_alias_history_stays(world: World, server: ServerThread) -> None:
    owner = world.person("owner")
    lab = make_lab(world, owner)
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    first = link(owner, registry, "c", log_version(lab).name, ["production"])
    second = link(owner, registry, "c", log_version(lab).name)
    add_alias(owner, second.name, "production")
    _age_everything(server, world, 40)
    history_before = owner.stubs.events.GetAliasHistory(
        epb.GetAliasHistoryRequest(collection=f"{registry}/collections/c", alias="production")
    )
    assert "ARTIFACT_VERSION_CREATED" in _types(server, world)
    done = retention.prune(server.app.db, Retention(event_days=30, request_id_hours=0))
    assert done["events"] > 0
    kept = _types(server, world)
    assert "ARTIFACT_VERSION_CREATED" not in kept and "MEMBER_ADDED" not in kept
    assert set(kept) <= retention.KEPT_EVENT_TYPES
    assert {"VERSION_LINKED", "ALIAS_ADDED"} <= set(kept)
    history = owner.stubs.events.GetAliasHistory(
        epb.GetAliasHistoryRequest(collection=f"{registry}/collections/c", alias="production")
    )
    assert history == history_before
    assert [a.version_index for a in history.assignments] == [
        first.version_index,
        second.version_index,
    ]
    # what is younger than the window stays whatever its type
    lab2 = make_lab(world, owner)
    log_version(lab2)
    retention.prune(server.app.db, Retention(event_days=30, request_id_hours=0))
    assert "ARTIFACT_VERSION_CREATED" in _types(server, world)


def test_request_id_answers_expire(world: World, server: ServerThread) -> None:
    create = opb.CreateTeamRequest(
        parent=world.org_name, team_id=f"t-{world.org[-6:]}", request_id="5f0c1f9e-aaaa"
    )
    first = world.admin.stubs.organizations.CreateTeam(create)
    assert world.admin.stubs.organizations.CreateTeam(create) == first  # a retry: the answer
    retention.prune(server.app.db, Retention(request_id_hours=1), now=now_us() - HOUR_US)
    assert world.admin.stubs.organizations.CreateTeam(create) == first  # not an hour old yet
    _age_everything(server, world, 1)
    done = retention.prune(server.app.db, Retention(request_id_hours=1))
    assert done["request_ids"] >= 1
    # no answer kept: the retry is a new create, which finds the team
    try:
        world.admin.stubs.organizations.CreateTeam(create)
        raise AssertionError("a retry after the window is a new create")
    except Exception as err:  # ALREADY_EXISTS
        assert "already exists" in str(err)


def test_finished_deliveries_go_pending_ones_stay(world: World, server: ServerThread) -> None:
    registry = create_registry(world)
    created = world.admin.stubs.events.CreateAutomation(
        epb.CreateAutomationRequest(
            parent=registry,
            automation=r.Automation(
                url="https://93.184.216.34/hook", event_types=["ALIAS_ADDED"], enabled=False
            ),
        )
    )
    with db_session(server) as s:
        automation_id = s.execute(
            select(m.Automation.id).where(m.Automation.uid == created.name.rsplit("/", 1)[1])
        ).scalar_one()
        old = now_us() - 40 * DAY_US
        rows: list[dict[str, Any]] = [
            {"attempt": 1, "time": old, "next_attempt_time": None, "succeeded": True},
            {"attempt": 1, "time": old, "next_attempt_time": None, "succeeded": False},
            {"attempt": 2, "time": 0, "next_attempt_time": old},  # pending, long overdue
            {"attempt": 1, "time": now_us(), "next_attempt_time": None, "succeeded": True},
        ]
        for i, row in enumerate(rows):
            s.add(m.Delivery(automation_id=automation_id, event_cursor=i + 1, **row))
    retention.prune(server.app.db, Retention(request_id_hours=0, delivery_days=30))
    with db_session(server) as s:
        left = s.execute(
            select(func.count()).where(m.Delivery.automation_id == automation_id)
        ).scalar_one()
    assert left == 2  # the pending one and the young one


def test_a_window_of_zero_keeps_everything(world: World, server: ServerThread) -> None:
    world.person("someone")
    _age_everything(server, world, 4000)
    before = _types(server, world)
    assert retention.prune(server.app.db, Retention(0, 0, 0)) == {
        "events": 0,
        "request_ids": 0,
        "deliveries": 0,
    }
    assert _types(server, world) == before
