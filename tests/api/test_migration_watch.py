"""GetMigration and WatchMigration (`migration.lifecycle.get_migration`) through the
server: the stream shows every state the migration passes through and agrees with
GetMigration, a rollback asked of a finished migration is watched to its end, and
other principals get the exact error."""

from __future__ import annotations

from typing import Any

import grpc

from registry.v1 import migration_service_pb2 as mpb
from registry.v1 import resources_pb2 as r

from ..support.errors import expect_error
from ..support.legacy_teams import legacy_only_world
from ..support.migrations import start, wait_for, watch
from ..support.servers import ServerThread
from ..support.world import make_world


def test_the_snapshot_follows_every_state(server: ServerThread, root_stubs: Any) -> None:
    world, a, b = legacy_only_world(server, root_stubs)
    admin = world.admin
    migration = start(admin, world, a, b)
    seen: set[int] = set()
    for snapshot in watch(admin, migration.name):
        now = admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=migration.name))
        seen.add(snapshot.state)
        # the stream showed what GetMigration shows, or an earlier state of it
        assert snapshot.state <= now.state or snapshot.state in (
            r.MIGRATION_STATE_SUCCEEDED,
            r.MIGRATION_STATE_FAILED,
        )
    assert r.MIGRATION_STATE_SUCCEEDED in seen
    final = admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=migration.name))
    assert final.created_by == f"users/{admin.id}"
    assert len(final.team_migrations) == 2 and final.progress.done == final.progress.total > 0
    assert [t.team for t in final.team_migrations] == [f"teams/{a.id}", f"teams/{b.id}"]

    rolled_back = admin.stubs.migrations.RollbackMigration(
        mpb.RollbackMigrationRequest(name=migration.name)
    )
    assert rolled_back.state == r.MIGRATION_STATE_ROLLED_BACK
    assert list(watch(admin, migration.name))[-1] == rolled_back
    assert (
        admin.stubs.migrations.GetMigration(mpb.GetMigrationRequest(name=migration.name))
        == rolled_back
    )


def test_other_principals_get_the_exact_error(server: ServerThread, root_stubs: Any) -> None:
    world, a, _b = legacy_only_world(server, root_stubs)
    admin = world.admin
    migration = start(admin, world, a)
    wait_for(admin, migration.name, lambda m: m.state == r.MIGRATION_STATE_SUCCEEDED)
    member = world.person("member")
    other = make_world(server, root_stubs)
    unknown = migration.name.rsplit("/", 1)[0] + "/0123456789abcdef"
    cases = [
        (member.stubs, migration.name, grpc.StatusCode.PERMISSION_DENIED),  # not an admin
        (other.admin.stubs, migration.name, grpc.StatusCode.NOT_FOUND),  # another org
        (root_stubs, migration.name, grpc.StatusCode.NOT_FOUND),  # a service admin
        (admin.stubs, unknown, grpc.StatusCode.NOT_FOUND),
    ]
    for stubs, name, code in cases:
        expect_error(code, stubs.migrations.GetMigration, mpb.GetMigrationRequest(name=name))
        expect_error(
            code,
            lambda req, stubs=stubs: list(stubs.migrations.WatchMigration(req)),
            mpb.WatchMigrationRequest(name=name),
        )
