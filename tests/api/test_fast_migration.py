"""GetMigration and WatchMigration's precompiled snapshot (`service.fast_migration`)
answers exactly what the general use case answers, in every state a migration passes
through, and leaves every other principal and every error to it."""

from __future__ import annotations

from typing import Any

import grpc

from registry.v1 import migration_service_pb2 as mpb
from registry.v1 import resources_pb2 as r
from registry_server.api.migrations import migration_proto
from registry_server.service import fast_migration
from registry_server.service.migration import lifecycle

from ..support.errors import expect_error
from ..support.legacy_teams import legacy_only_world
from ..support.migrations import start, wait_for, watch
from ..support.servers import ServerThread
from ..support.world import Person, make_world


def both(server: ServerThread, person: Person, name: str) -> tuple[Any, Any]:
    """(the hot statements' snapshot or None, the general use case's snapshot or the
    name of the error it raised) for `person` reading migration `name`."""
    p = server.app.auth.authenticate(person.key)
    parts = name.split("/")
    org, uid = parts[1], parts[3]
    view = server.query(
        lambda sql: fast_migration.get_migration(sql.conn, sql.dialect, p, org, uid)
    )
    fast = migration_proto(view) if view is not None else None
    try:
        with server.app.db.read() as s:
            general: Any = migration_proto(lifecycle.get_migration(s, p, org, uid))
    except Exception as e:
        general = type(e).__name__
    return fast, general


def test_the_hot_snapshot_agrees_in_every_state(server: ServerThread, root_stubs: Any) -> None:
    world, a, b = legacy_only_world(server, root_stubs)
    admin = world.admin
    migration = start(admin, world, a, b)
    seen: set[int] = set()
    for snapshot in watch(admin, migration.name):
        fast, general = both(server, admin, migration.name)
        assert fast == general, (fast, general)
        seen.add(fast.state)
        # the stream showed what GetMigration shows, or an earlier state of it
        assert snapshot.state <= fast.state or snapshot.state in (
            r.MIGRATION_STATE_SUCCEEDED,
            r.MIGRATION_STATE_FAILED,
        )
    assert r.MIGRATION_STATE_SUCCEEDED in seen
    final = admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=migration.name))
    fast, general = both(server, admin, migration.name)
    assert fast == general == final
    assert final.created_by == f"users/{admin.id}"
    assert len(final.team_migrations) == 2 and final.progress.done == final.progress.total > 0

    rolled_back = admin.stubs.migrations.RollbackMigration(
        mpb.RollbackMigrationRequest(name=migration.name)
    )
    assert rolled_back.state == r.MIGRATION_STATE_ROLLED_BACK
    fast, general = both(server, admin, migration.name)
    assert fast == general == rolled_back


def test_other_principals_and_errors_are_left_to_the_general_path(
    server: ServerThread, root_stubs: Any
) -> None:
    world, a, _b = legacy_only_world(server, root_stubs)
    admin = world.admin
    migration = start(admin, world, a)
    wait_for(admin, migration.name, lambda m: m.state == r.MIGRATION_STATE_SUCCEEDED)
    member = world.person("member")
    other = make_world(server, root_stubs)
    unknown = migration.name.rsplit("/", 1)[0] + "/0123456789abcdef"
    for person, name, error in (
        (member, migration.name, "PermissionDenied"),  # not an org admin
        (other.admin, migration.name, "NotFound"),  # an admin of another organization
        (admin, unknown, "NotFound"),
    ):
        fast, general = both(server, person, name)
        assert fast is None and general == error, (person.id, name, fast, general)
    expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        member.stubs.migrations.GetMigration,
        mpb.GetMigrationRequest(name=migration.name),
        reason="ORG_ADMIN_REQUIRED",
    )
    for person, name in ((other.admin, migration.name), (admin, unknown)):
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            person.stubs.migrations.GetMigration,
            mpb.GetMigrationRequest(name=name),
        )
        expect_error(
            grpc.StatusCode.NOT_FOUND,
            lambda req, person=person: list(person.stubs.migrations.WatchMigration(req)),
            mpb.WatchMigrationRequest(name=name),
        )
