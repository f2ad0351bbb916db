"""The `registry` command as a subprocess against the real test server: every command,
`--output json` parsing, human tables, the saved login and the exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from registry.v1 import resources_pb2 as r
from registry_client import Client, RetryPolicy
from registry_client import webhooks as standard_webhooks

from ..support.cli import COMMAND, DENIED, ERROR, INVALID, NOT_FOUND, OK, USAGE, Cli, assert_code
from ..support.servers import ServerThread, mtls_server
from ..support.webhooks import Receiver, serve_receiver
from ..support.world import World, unique


@pytest.fixture
def cli(world: World, tmp_path: Path) -> Cli:
    config = tmp_path / "config"
    return Cli(world.target, world.admin.key, config)


@pytest.fixture
def admin(world: World) -> Iterator[Client]:
    with Client(world.target, world.admin.key, retries=RetryPolicy(initial_backoff=0.01)) as c:
        yield c


def make_model_dir(tmp_path: Path, content: str = "weights") -> Path:
    files = tmp_path / unique("files")
    (files / "sub").mkdir(parents=True)
    (files / "weights.bin").write_text(content)
    (files / "sub" / "config.json").write_text('{"layers": 50}')
    return files


def team_with_project(admin: Client) -> str:
    team = unique("team")
    admin.create_team(team)
    admin.create_project(team, "training")
    return team


# --- usage and help ----------------------------------------------------------------------


def test_help_documents_the_exit_codes(cli: Cli) -> None:
    result = cli("--help")
    assert result.code == OK
    for text in ("Exit codes", "not found", "permission denied", "usage error", "--output json"):
        assert text in result.stdout
    assert "Exit codes" in cli("registry", "--help").stdout


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("no-such-command",),
        ("resolve",),
        ("link", "only-one-argument"),
        ("registry", "list", "--output", "yaml"),
        ("artifact", "log", "/no/such/directory", "-p", "t/p", "--name", "a", "-t", "model"),
        ("events", "tail", "--after", "-1"),
        ("migrate", "status", "--watch"),
    ],
)
def test_usage_errors_exit_2(cli: Cli, args: Sequence[str]) -> None:
    assert_code(cli(*args), USAGE)


def test_server_that_cannot_be_reached_exits_1(cli: Cli) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = cli(
        "--timeout", "2", "whoami", "-o", "json", env={"REGISTRY_ADDRESS": f"127.0.0.1:{port}"}
    )
    assert_code(result, ERROR, "UNAVAILABLE")


def test_tls_options_and_saved_tls_login(world: World, database_url: str, tmp_path: Path) -> None:
    with mtls_server(database_url, tmp_path / "pki") as (tls_server, pki):
        cli = Cli(tls_server.target, world.admin.key, tmp_path / "config")
        tls = ["--ca-cert", str(pki.ca_cert), "--client-cert", str(pki.client_cert),
               "--client-key", str(pki.client_key)]  # fmt: skip
        assert cli.json(*tls, "whoami")["name"] == world.admin.name
        assert_code(cli("--ca-cert", str(pki.ca_cert), "--timeout", "3", "whoami"), ERROR)
        assert_code(cli("--ca-cert", str(tmp_path / "missing.pem"), "whoami"), USAGE)
        # login remembers the certificate files too.
        anonymous = Cli(None, None, tmp_path / "config")
        anonymous.json(*tls, "login", "--address", tls_server.target, "--api-key", world.admin.key)
        assert anonymous.json("whoami")["name"] == world.admin.name


# --- login, whoami ------------------------------------------------------------------------


def test_login_saves_a_private_config_that_later_commands_use(world: World, tmp_path: Path) -> None:
    anonymous = Cli(None, None, tmp_path / "config")
    result = anonymous(
        "login", "--address", world.target, "--api-key", world.admin.key, "-o", "json"
    )
    saved = result.json()
    assert saved["user"] == world.admin.name and saved["address"] == world.target
    path = Path(saved["config"])
    assert path == tmp_path / "config" / "config.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["api_key"] == world.admin.key
    # No address or key in the environment: the saved login is used.
    assert anonymous.json("whoami")["name"] == world.admin.name
    human = anonymous("whoami")
    assert human.code == OK and world.admin.name in human.stdout and world.org_name in human.stdout
    # Flags and environment still win over the saved login.
    bob = world.person("bob")
    assert anonymous.json("--api-key", bob.key, "whoami")["name"] == bob.name
    assert anonymous.as_(bob).json("whoami")["name"] == bob.name
    # logout forgets it.
    assert anonymous.json("logout") == {"config": str(path), "removed": True}
    assert not path.exists()
    assert_code(anonymous("whoami", "-o", "json", env={"REGISTRY_ADDRESS": world.target}), DENIED)


def test_login_asks_for_the_key_and_follows_xdg(world: World, tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("REGISTRY_") and k != "XDG_CONFIG_HOME"
    }
    env.update(XDG_CONFIG_HOME=str(tmp_path / "xdg"), COLUMNS="250")
    done = subprocess.run(
        [*COMMAND, "login", "--address", world.target],
        input=world.admin.key + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == OK, done.stderr
    assert world.admin.key not in done.stdout  # the prompt hides the key
    path = tmp_path / "xdg" / "registry" / "config.json"
    assert f"Logged in to {world.target} as {world.admin.name}" in done.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_login_with_a_bad_key_saves_nothing(world: World, tmp_path: Path) -> None:
    anonymous = Cli(None, None, tmp_path / "config")
    result = anonymous("login", "--address", world.target, "--api-key", "rk_bad_key", "-o", "json")
    assert_code(result, DENIED, "UNAUTHENTICATED")
    assert result.error()["reason"]
    assert not (tmp_path / "config" / "config.json").exists()


def test_unauthenticated_exits_4_with_a_hint(world: World, cli: Cli) -> None:
    human = cli("whoami", env={"REGISTRY_API_KEY": "rk_nope"})
    assert human.code == DENIED
    assert "UNAUTHENTICATED" in human.stderr and "registry login" in human.stderr
    assert_code(cli("registry", "list", "-o", "json", env={"REGISTRY_API_KEY": ""}), DENIED)


# --- registries ---------------------------------------------------------------------------


def test_registry_commands(world: World, cli: Cli) -> None:
    bob = world.person("bob")
    registry_id = unique("vision")
    created = cli.json(
        "registry", "create", registry_id, "--description", "Vision models",
        "--visibility", "restricted", "--type", "model", "--type", "dataset",
        "--protected-alias", "production",
    )  # fmt: skip
    name = f"{world.org_name}/registries/{registry_id}"
    assert created["name"] == name
    assert created["visibility"] == "VISIBILITY_RESTRICTED"
    assert created["artifact_types"] == ["model", "dataset"]
    assert created["protected_aliases"] == ["production"]
    assert created["core"] is False

    listed = cli.json("registry", "list")
    assert {x["name"] for x in listed} == {
        name, f"{world.org_name}/registries/model", f"{world.org_name}/registries/dataset"
    }  # fmt: skip
    assert len(cli.json("registry", "list", "--limit", "2")) == 2
    table = cli("registry", "list")
    assert table.code == OK and registry_id in table.stdout and "restricted" in table.stdout

    assert cli.json("registry", "show", registry_id) == created
    assert cli.json("registry", "show", f"{world.org}/wandb-registry-{registry_id}")["name"] == name
    shown = cli("registry", "show", registry_id)
    assert shown.code == OK and "Vision models" in shown.stdout and "production" in shown.stdout

    members = cli.json("registry", "members", registry_id)
    assert [(m["member"], m["role"]) for m in members] == [
        (world.admin.name, "REGISTRY_ROLE_ADMIN")  # the creator administers it
    ]
    granted = cli.json("registry", "grant", registry_id, bob.id, "viewer")
    assert (granted["member"], granted["role"]) == (bob.name, "REGISTRY_ROLE_VIEWER")
    regranted = cli.json("registry", "grant", registry_id, bob.name, "member")
    assert regranted["role"] == "REGISTRY_ROLE_MEMBER"
    roles = {m["member"]: m["role"] for m in cli.json("registry", "members", registry_id)}
    assert roles[bob.name] == "REGISTRY_ROLE_MEMBER"
    assert bob.name in cli("registry", "members", registry_id).stdout
    as_bob = cli.as_(bob)
    assert as_bob.json("registry", "show", registry_id)["name"] == name
    # A MEMBER may not manage members: permission denied.
    carol = world.person("carol")
    assert_code(
        as_bob("registry", "grant", registry_id, carol.name, "viewer", "-o", "json"),
        DENIED,
        "PERMISSION_DENIED",
    )
    assert cli.json("registry", "revoke", registry_id, bob.name)["revoked"] is True
    missing = as_bob("registry", "show", registry_id, "-o", "json")
    assert_code(missing, NOT_FOUND, "NOT_FOUND")
    assert "not found" in as_bob("registry", "show", registry_id).stderr.lower()

    # Conflicts and bad input exit 5 and name the field.
    again = cli("registry", "create", registry_id, "--type", "model", "-o", "json")
    assert_code(again, INVALID, "ALREADY_EXISTS")
    bad_id = cli("registry", "create", "bad#id", "--type", "model", "-o", "json")
    assert_code(bad_id, INVALID, "INVALID_ARGUMENT")
    assert "registry_id" in [v["field"] for v in bad_id.error()["field_violations"]]
    bad_visibility = cli("registry", "create", "x", "--visibility", "public", "-o", "json")
    assert_code(bad_visibility, INVALID, "INVALID_ARGUMENT")
    assert bad_visibility.error()["field_violations"][0]["field"] == "registry.visibility"
    assert_code(cli("registry", "show", "no-such-registry"), NOT_FOUND)

    assert cli.json("registry", "delete", registry_id, "--yes")["deleted"] is True
    assert_code(cli("registry", "show", registry_id), NOT_FOUND)
    assert_code(cli("registry", "delete", "model", "--yes"), INVALID)  # core registries stay


# --- artifacts, collections, links, aliases, resolve -------------------------------------


def test_artifact_log_link_aliases_resolve_unlink(
    world: World, cli: Cli, admin: Client, tmp_path: Path
) -> None:
    team = team_with_project(admin)
    files = make_model_dir(tmp_path)
    logged = cli.json(
        "artifact", "log", str(files), "--project", f"{team}/training", "--name", "resnet",
        "--type", "model", "--alias", "best", "--tag", "cnn", "--metadata", '{"accuracy": 0.91}',
        "--run-id", "train-1", "--description", "ResNet-50",
    )  # fmt: skip
    assert logged["name"] == f"teams/{team}/projects/training/artifacts/resnet/versions/0"
    assert logged["version_index"] == 0 and logged["type"] == "model"
    manifest = {e["path"]: e for e in logged["manifest"]}
    assert set(manifest) == {"weights.bin", "sub/config.json"}
    weights = manifest["weights.bin"]
    assert weights["digest"] == "sha256:" + hashlib.sha256(b"weights").hexdigest()
    assert weights["size"] == len(b"weights")
    assert weights["ref"] == ""
    assert logged["metadata"] == {"accuracy": 0.91}
    assert logged["producing_run"] == "train-1"
    assert set(logged["aliases"]) >= {"best", "latest"}
    assert logged["reused"] is False
    # The same content again is the same version, reused, with the alias asked for.
    again = cli.json("artifact", "log", str(files), "-p", f"{team}/training", "--name", "resnet",
                     "-t", "model", "-a", "reviewed")  # fmt: skip
    assert again["name"] == logged["name"] and again["reused"] is True
    assert set(again["aliases"]) >= {"best", "reviewed"}
    said = cli("artifact", "log", str(files), "-p", f"{team}/training", "--name", "resnet",
               "-t", "model", "--run-id", "train-2")  # fmt: skip
    assert said.code == OK and said.stdout.startswith("reused v0")
    reviewed = cli.json("resolve", f"{team}/training/resnet:reviewed")
    assert reviewed["artifact_version"]["name"] == logged["name"]
    with_refs = cli.json("artifact", "log", str(files), "-p", f"{team}/training", "--name",
                         "refs", "-t", "model", "--ref-prefix", "s3://bucket/resnet")  # fmt: skip
    assert {e["ref"] for e in with_refs["manifest"]} == {
        "s3://bucket/resnet/weights.bin", "s3://bucket/resnet/sub/config.json"
    }  # fmt: skip
    human = cli("artifact", "log", str(make_model_dir(tmp_path, "other")), "-p",
                f"{team}/training", "--name", "resnet", "-t", "model")  # fmt: skip
    assert human.code == OK and "versions/1" in human.stdout
    assert_code(
        cli("artifact", "log", str(files), "-p", f"{team}/training", "--name", "x", "-t", "model",
            "--metadata", "[1, 2]"),
        USAGE,
    )  # fmt: skip

    collection = unique("resnet")
    target = f"model/{collection}"
    link = cli.json(
        "link", f"{team}/training/resnet:v0", target, "--alias", "staging", "--tag", "v"
    )
    assert link["version_index"] == 0 and link["artifact_version"] == logged["name"]
    assert link["path"] == f"{world.org}/wandb-registry-model/{collection}:v0"
    assert set(link["aliases"]) == {"latest", "staging"}
    second = cli(
        "link", f"{team}/training/resnet:v1", f"{world.org}/wandb-registry-model/{collection}"
    )
    assert second.code == OK and "v1" in second.stdout

    collections = cli.json("collection", "list", "model")
    assert [c["name"].rsplit("/", 1)[1] for c in collections] == [collection]
    assert collections[0]["version_count"] == 2
    assert collection in cli("collection", "list", "model").stdout
    shown = cli.json("collection", "show", target)
    assert shown["collection"]["type"] == "model"
    assert [v["version_index"] for v in shown["versions"]] == [1, 0]
    table = cli("collection", "show", target)
    assert table.code == OK and "staging" in table.stdout and logged["name"] in table.stdout
    assert_code(cli("collection", "show", "model/no-such-collection"), NOT_FOUND)
    assert_code(cli("collection", "list", "no-such-registry", "-o", "json"), NOT_FOUND)

    resolved = cli.json("resolve", f"{world.org}/wandb-registry-model/{collection}:staging")
    assert resolved["artifact_version"]["name"] == logged["name"]
    assert resolved["collection_version"]["name"] == link["name"]
    assert resolved["canonical_path"] == f"{world.org}/wandb-registry-model/{collection}:v0"
    assert resolved["redirected"] is False
    assert cli.json("resolve", f"{target}:latest")["collection_version"]["version_index"] == 1
    assert logged["name"] in cli("resolve", f"{team}/training/resnet:best").stdout
    assert_code(cli("resolve", f"{target}:nope", "-o", "json"), NOT_FOUND, "NOT_FOUND")
    bad_path = cli("resolve", "a:b:c", "-o", "json")
    assert_code(bad_path, INVALID, "INVALID_ARGUMENT")
    assert bad_path.error()["field_violations"][0]["field"] == "path"

    moved = cli.json("alias", "add", f"{target}:v0", "production")
    assert set(moved["aliases"]) == {"staging", "production"}
    cas = cli("alias", "add", f"{target}:v1", "production", "--expect-version", "1", "-o", "json")
    assert_code(cas, INVALID, "ABORTED")
    moved = cli.json("alias", "add", f"{target}:v1", "production", "--expect-version", "0")
    assert "production" in moved["aliases"]
    removed = cli.json("alias", "remove", f"{target}:production", "production")
    assert "production" not in removed["aliases"]

    unlinked = cli.json("unlink", f"{target}:staging")
    assert unlinked == {"version": f"{target}:staging", "unlinked": True}
    assert_code(cli("resolve", f"{target}:staging"), NOT_FOUND)
    assert [v["version_index"] for v in cli.json("collection", "show", target)["versions"]] == [1]


def test_artifact_use_records_the_consuming_run(
    world: World, cli: Cli, admin: Client, tmp_path: Path
) -> None:
    team = team_with_project(admin)
    files = make_model_dir(tmp_path)
    logged = admin.log_artifact(f"{team}/training", "resnet", "model", files)
    collection = unique("used")
    admin.link(logged.name, f"model/{collection}", aliases=["production"])
    used = cli.json("artifact", "use", f"model/{collection}:production", "--run-id", "eval-9")
    assert used["name"] == logged.name
    assert sorted(e["path"] for e in used["manifest"]) == ["sub/config.json", "weights.bin"]
    assert "eval-9" in admin.lineage(logged.name).consuming_runs
    human = cli("artifact", "use", f"{team}/training/resnet:latest", "--run-id", "eval-10")
    assert human.code == OK and "weights.bin" in human.stdout and "sha256:" in human.stdout
    assert_code(cli("artifact", "use", f"model/{collection}:production"), USAGE)  # no --run-id
    viewer = world.person("viewer")
    assert_code(
        cli.as_(viewer)("artifact", "use", f"{team}/training/resnet:latest", "--run-id", "x"),
        NOT_FOUND,
    )


# --- migration ----------------------------------------------------------------------------


def legacy_team(admin: Client, tmp_path: Path) -> tuple[str, r.ArtifactVersion]:
    team = team_with_project(admin)
    logged = admin.log_artifact(f"{team}/training", "resnet", "model", make_model_dir(tmp_path))
    admin.link_model(logged.name, f"{team}/classifier", aliases=["production"])
    return team, logged


def test_migrate_plan_start_watch_and_status(
    world: World, cli: Cli, admin: Client, tmp_path: Path
) -> None:
    team, logged = legacy_team(admin, tmp_path)
    plan = cli.json("migrate", "plan", "--team", team)
    assert [t["team"] for t in plan["teams"]] == [f"teams/{team}"]
    planned = plan["teams"][0]
    assert planned["target_registry"] == f"{world.org_name}/registries/{team}-mr-migrated"
    assert (planned["collection_count"], planned["version_count"]) == (1, 1)
    assert [m["principal"] for m in planned["member_mappings"]] == [world.admin.name]
    human_plan = cli("migrate", "plan", "--team", team)
    assert human_plan.code == OK and f"{team}-mr-migrated" in human_plan.stdout
    assert_code(cli("migrate", "plan", "--team", "no-such-team"), NOT_FOUND)

    snapshots = cli("migrate", "start", "--team", team, "--watch", "-o", "json").lines()
    assert snapshots[0]["name"].startswith(f"{world.org_name}/migrations/")
    assert snapshots[-1]["state"] == "MIGRATION_STATE_SUCCEEDED"
    assert snapshots[-1]["progress"]["done"] == snapshots[-1]["progress"]["total"] == 1
    name = snapshots[-1]["name"]
    migration_id = name.rsplit("/", 1)[1]

    listed = cli.json("migrate", "status")
    assert name in [m["name"] for m in listed]
    assert migration_id in cli("migrate", "status").stdout
    status = cli.json("migrate", "status", migration_id)
    assert status["state"] == "MIGRATION_STATE_SUCCEEDED" and status["teams"] == [f"teams/{team}"]
    watched = cli("migrate", "status", name, "--watch")
    assert watched.code == OK
    assert "succeeded" in watched.stdout and "1/1" in watched.stdout
    # The legacy path still resolves, now through the migrated collection.
    resolved = cli.json("resolve", f"{team}/model-registry/classifier:production")
    assert resolved["artifact_version"]["name"] == logged.name
    assert resolved["redirected"] is True
    assert_code(cli("migrate", "status", "no-such-migration", "-o", "json"), NOT_FOUND)
    member = world.person("member")
    assert_code(cli.as_(member)("migrate", "start", "--team", team), DENIED)

    # A second migration of the same team has nothing to do.
    second_team, _ = legacy_team(admin, tmp_path)
    started = cli.json("migrate", "start", "--team", second_team)
    assert started["name"].startswith(f"{world.org_name}/migrations/")
    final = cli("migrate", "status", started["name"], "--watch", "-o", "json").lines()[-1]
    assert final["state"] == "MIGRATION_STATE_SUCCEEDED"


def test_migrate_plan_and_status_name_the_planned_access_changes(
    world: World, cli: Cli, admin: Client, tmp_path: Path
) -> None:
    team, _ = legacy_team(admin, tmp_path)
    robot = world.person("robot", service_account=True)
    admin.add_team_member(team, robot.id, "viewer")
    registry = f"{world.org_name}/registries/{team}-mr-migrated"
    planned = cli.json("migrate", "plan", "--team", team)["teams"][0]["access_changes"]
    assert [(c["principal"], c["registry"], c["before"], c["after"]) for c in planned] == [
        (robot.name, registry, "team VIEWER", "MEMBER")
    ]
    human_plan = cli("migrate", "plan", "--team", team).stdout
    assert "Planned access changes" in human_plan and robot.name in human_plan
    assert "service accounts are never below MEMBER" in human_plan
    final = cli("migrate", "start", "--team", team, "--watch", "-o", "json").lines()[-1]
    assert final["state"] == "MIGRATION_STATE_SUCCEEDED"
    assert [c["principal"] for c in final["verification"]["access_changes"]] == [robot.name]
    status = cli("migrate", "status", final["name"]).stdout
    assert "Access changes" in status and robot.name in status and "team VIEWER" in status
    members = cli("registry", "members", f"{team}-mr-migrated").stdout
    assert f"teams/{team}" in members and "team roles" in members
    listed = cli.json("registry", "members", f"{team}-mr-migrated")
    assert [(x["member"], x.get("follows_team_roles")) for x in listed] == [(f"teams/{team}", True)]


def test_migrate_start_watch_exits_1_when_the_migration_does_not_succeed(
    world: World, cli: Cli, admin: Client, tmp_path: Path, server: ServerThread
) -> None:
    team, _ = legacy_team(admin, tmp_path)
    started = admin.start_migration([team])
    final = admin.wait_for_migration(started.name, timeout=60)
    assert final.state == r.MIGRATION_STATE_SUCCEEDED
    rolled_back = cli.json("migrate", "rollback", started.name, "--yes")
    assert rolled_back["state"] == "MIGRATION_STATE_ROLLED_BACK"
    watched = cli("migrate", "status", started.name, "--watch", "-o", "json")
    assert watched.code == ERROR
    assert json.loads(watched.stdout.splitlines()[-1])["state"] == "MIGRATION_STATE_ROLLED_BACK"
    cancel = cli("migrate", "cancel", started.name, "-o", "json")
    assert_code(cancel, INVALID, "FAILED_PRECONDITION")


def test_migrate_rollback_dry_run_refusal_and_force(
    world: World, cli: Cli, admin: Client, tmp_path: Path
) -> None:
    team, logged = legacy_team(admin, tmp_path)
    started = admin.start_migration([team])
    assert admin.wait_for_migration(started.name, timeout=60).state == r.MIGRATION_STATE_SUCCEEDED
    registry = f"{team}-mr-migrated"
    again = admin.log_artifact(
        f"{team}/training", "resnet", "model", make_model_dir(tmp_path, "other weights")
    )
    admin.link(again.name, f"{registry}/classifier", aliases=["candidate"])  # carried back
    admin.link(again.name, f"{registry}/brand-new")  # no legacy equivalent

    dry = cli.json("migrate", "rollback", started.name, "--dry-run")
    assert dry["state"] == "MIGRATION_STATE_SUCCEEDED"
    carried, lost = dry["rollback"]["carried_back"], dry["rollback"]["losses"]
    assert any(item.endswith(f"versions/1: linked {again.name}") for item in carried), carried
    assert len(lost) == 1 and "brand-new" in lost[0]
    human = cli("migrate", "rollback", started.name, "--dry-run")
    assert human.code == OK
    assert "would be carried back" in human.stdout and "1 change(s) would be lost" in human.stdout
    assert admin.migration(started.name).state == r.MIGRATION_STATE_SUCCEEDED

    refused = cli("migrate", "rollback", started.name, "--yes", "-o", "json")
    assert_code(refused, INVALID, "FAILED_PRECONDITION")
    assert refused.error()["reason"] == "UNDO_WOULD_LOSE_CHANGES"
    assert "brand-new" in refused.error()["message"]

    forced = cli("migrate", "rollback", started.name, "--force", "-y")
    assert forced.code == OK, forced.stderr
    assert "lost (forced)" in forced.stdout and "brand-new" in forced.stdout
    final = admin.migration(started.name)
    assert final.state == r.MIGRATION_STATE_ROLLED_BACK and final.rollback.forced
    versions = list(admin.registered_model_versions(f"{team}/classifier"))
    assert [(v.version_index, v.artifact_version, list(v.aliases)) for v in versions] == [
        (0, logged.name, ["production"]),
        (1, again.name, ["candidate"]),
    ]


# --- events -------------------------------------------------------------------------------


def test_events_list_and_tail(world: World, cli: Cli, admin: Client, tmp_path: Path) -> None:
    team = team_with_project(admin)
    logged = admin.log_artifact(f"{team}/training", "resnet", "model", make_model_dir(tmp_path))
    collection = f"model/{unique('events')}"
    link = admin.link(logged.name, collection)

    events = cli.json("events", "list")
    types = [e["type"] for e in events]
    assert "VERSION_LINKED" in types and "TEAM_CREATED" in types
    assert all(isinstance(e["cursor"], int) for e in events)
    assert "VERSION_LINKED" in cli("events", "list").stdout

    first_three = cli("events", "tail", "--limit", "3", "-o", "json").lines()
    assert [e["cursor"] for e in first_three] == [e["cursor"] for e in events[:3]]
    linked = cli(
        "events", "tail", "--registry", "model", "--filter", 'type = "VERSION_LINKED"',
        "--limit", "1", "-o", "json",
    ).lines()  # fmt: skip
    assert [(e["type"], e["resource"]) for e in linked] == [("VERSION_LINKED", link.name)]

    # Resume after the last cursor seen: only what happened since.
    last = events[-1]["cursor"]
    admin.add_alias(link.name, "production")
    resumed = cli("events", "tail", "--after", str(last), "--timeout", "2", "-o", "json").lines()
    assert [e["type"] for e in resumed] == ["ALIAS_ADDED"]
    assert resumed[0]["cursor"] > last
    quiet = cli("events", "tail", "--after", str(resumed[0]["cursor"]), "--timeout", "1")
    assert quiet.code == OK and quiet.stdout == "" and "no events" in quiet.stderr
    human = cli("events", "tail", "--after", str(last), "--limit", "1")
    assert human.code == OK and "ALIAS_ADDED" in human.stdout and link.name in human.stdout
    outsider = cli.as_(world.person("outsider"))
    assert_code(outsider("events", "tail", "--registry", "no-such", "--limit", "1"), NOT_FOUND)


# --- automations ----------------------------------------------------------------------------


def test_automation_create_list_show_update_test_deliveries_delete(
    world: World, cli: Cli, admin: Client
) -> None:
    with serve_receiver() as receiver:
        automation_commands(world, cli, admin, receiver)


def automation_commands(world: World, cli: Cli, admin: Client, receiver: Receiver) -> None:
    made = cli.json("automation", "create", "model", receiver.url, "-e", "ALIAS_ADDED")
    name, secret = made["name"], made["secret"]
    assert name.startswith(f"organizations/{world.org}/registries/model/automations/")
    assert secret.startswith("whsec_") and made["enabled"] is True
    assert [a["name"] for a in cli.json("automation", "list", "model")] == [name]
    assert all(a["secret"] == "" for a in cli.json("automation", "list", "model"))
    shown = cli("automation", "show", name)
    assert shown.code == OK and receiver.url in shown.stdout and secret not in shown.stdout
    human = cli("automation", "create", "model", receiver.url, "-e", "VERSION_LINKED")
    assert human.code == OK and "whsec_" in human.stdout and "never shown again" in human.stdout

    off = cli.json("automation", "update", name, "--disable", "--alias-regex", "prod.*")
    assert off["enabled"] is False and off["alias_regex"] == "prod.*" and off["secret"] == ""
    rotated = cli.json("automation", "update", name, "--rotate-secret")
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    assert cli.json("automation", "show", name)["secret"] == ""

    ping = cli.json("automation", "test", name)  # a disabled automation can be tested
    assert ping["succeeded"] is True and ping["status_code"] == 200
    (got,) = receiver.wait_for(1)
    standard_webhooks.verify(rotated["secret"], got.headers, got.body)
    assert got.headers["webhook-id"] == ping["webhook_id"]
    listed = cli.json("automation", "deliveries", name)
    assert [d["name"] for d in listed] == [ping["name"]]
    assert "ok" in cli("automation", "deliveries", name).stdout

    receiver.statuses = [500]
    failed = cli("automation", "test", name, "-o", "json")
    assert failed.code == ERROR and json.loads(failed.stdout)["status_code"] == 500

    refused = cli("automation", "create", "model", "http://10.0.0.1/hook", "-e", "ALIAS_ADDED",
                  "-o", "json")  # fmt: skip
    assert_code(refused, INVALID, "INVALID_ARGUMENT")
    assert refused.error()["field_violations"][0]["field"] == "automation.url"
    assert_code(cli("automation", "update", name), USAGE)
    assert_code(cli("automation", "create", "model", receiver.url), USAGE)
    member = cli.as_(world.person("member"))
    assert_code(member("automation", "deliveries", name), DENIED)  # a restricted viewer
    deleted = cli.json("automation", "delete", name)
    assert deleted == {"name": name, "deleted": True}
    assert_code(cli("automation", "show", name), NOT_FOUND)
    assert name not in [a.name for a in admin.automations("model")]


# --- files ---------------------------------------------------------------------------------


def test_artifact_log_uploads_and_get_downloads_with_exit_codes(
    world: World, cli: Cli, admin: Client, tmp_path: Path
) -> None:
    team = team_with_project(admin)
    files = make_model_dir(tmp_path)
    (files / "empty").write_bytes(b"")
    logged = cli.json("artifact", "log", str(files), "-p", f"{team}/training", "--name",
                      "resnet", "-t", "model")  # fmt: skip
    assert all(e["ref"] == "" for e in logged["manifest"])
    dest = tmp_path / "dest"
    got = cli.json("artifact", "get", f"{team}/training/resnet:v0", str(dest))
    assert got == {"files": 3, "bytes": len(b"weights") + len(b'{"layers": 50}'), "skipped": 0}
    for name in ("weights.bin", "sub/config.json", "empty"):
        assert (dest / name).read_bytes() == (files / name).read_bytes()
    again = cli("artifact", "get", f"{team}/training/resnet", str(dest))
    assert again.code == OK and "3 already there" in again.stdout
    refs = cli.json("artifact", "log", str(files), "-p", f"{team}/training", "--name",
                    "refs", "-t", "model", "--reference")  # fmt: skip
    assert all(e["ref"].startswith("file://") for e in refs["manifest"])
    assert_code(cli("artifact", "get", f"{team}/training/nope:v0", str(dest)), NOT_FOUND)
    # a RESTRICTED_VIEWER of the registry it is linked in may see it, not download it
    registry = admin.create_registry(unique("files"), artifact_types=["model"])
    admin.link(logged["name"], registry.name.rsplit("/", 1)[1] + "/resnet")
    viewer = world.person("viewer")
    admin.grant(registry.name, viewer.name, "restricted_viewer")
    path = f"{world.org}/wandb-registry-{registry.name.rsplit('/', 1)[1]}/resnet:v0"
    denied = cli.as_(viewer)("artifact", "get", path, str(tmp_path / "nope"), "-o", "json")
    assert_code(denied, DENIED, "PERMISSION_DENIED")
    admin.grant(registry.name, viewer.name, "viewer")
    got = cli.as_(viewer).json("artifact", "get", path, str(tmp_path / "viewer"))
    assert got["files"] == 3
