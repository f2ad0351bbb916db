"""The `registry` command's organization, user, key, team, project and legacy Model
Registry groups, lineage and alias history, `--version`, tables that fit 80 columns,
and the confirmations, as a subprocess against the real test server."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from registry.v1 import resources_pb2 as r
from registry_client import Client, RetryPolicy

from ..support.cli import COMMAND, DENIED, INVALID, NOT_FOUND, OK, USAGE, Cli, assert_code
from ..support.world import World, unique


@pytest.fixture
def cli(world: World, tmp_path: Path) -> Cli:
    return Cli(world.target, world.admin.key, tmp_path / "config")


@pytest.fixture
def admin(world: World) -> Iterator[Client]:
    with Client(world.target, world.admin.key, retries=RetryPolicy(initial_backoff=0.01)) as c:
        yield c


def logged_model(admin: Client, tmp_path: Path) -> tuple[str, r.ArtifactVersion]:
    """A team with a project and one `model` artifact version in it."""
    team = unique("team")
    admin.create_team(team)
    admin.create_project(team, "training")
    files = tmp_path / unique("files")
    files.mkdir()
    (files / "weights.bin").write_text("weights")
    return team, admin.log_artifact(f"{team}/training", "resnet", "model", files)


def test_version(cli: Cli) -> None:
    version = metadata.version("artifact-registry")
    result = cli("--version")
    assert (result.code, result.stdout) == (OK, f"registry {version}\n")
    server = subprocess.run(
        [str(Path(COMMAND[0]).with_name("registry-server")), "--version"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert (server.returncode, server.stdout) == (OK, f"registry-server {version}\n")


def test_help_shows_flags_without_a_value(cli: Cli) -> None:
    shown = cli("migrate", "start", "--help", env={"COLUMNS": "80"})
    assert shown.code == OK and "--watch" in shown.stdout and "--yes" in shown.stdout
    assert "<bool>" not in shown.stdout
    assert "<bool>" not in cli("team", "list", "--help").stdout  # --wide, --help


# --- organizations ------------------------------------------------------------------------


def test_org_commands(world: World, cli: Cli, root_key: str) -> None:
    operator = Cli(world.target, root_key, cli.config_dir)
    org = unique("org")
    made = operator.json("org", "create", org, "--display-name", "Acme Two", "--no-legacy")
    assert made["name"] == f"organizations/{org}"
    assert (made["display_name"], made["legacy_model_registry_enabled"]) == ("Acme Two", False)
    assert f"organizations/{org}" in [o["name"] for o in operator.json("org", "list")]
    assert org in operator("org", "list").stdout
    assert operator.json("org", "show", org) == made
    assert "Acme Two" in operator("org", "show", org).stdout
    assert_code(operator("org", "create", org, "-o", "json"), INVALID, "ALREADY_EXISTS")

    # An organization admin sees and changes only their own, and creates none.
    assert [o["name"] for o in cli.json("org", "list")] == [world.org_name]
    assert cli.json("org", "show")["name"] == world.org_name
    renamed = cli.json("org", "update", "--display-name", "Renamed")
    assert renamed["display_name"] == "Renamed"
    assert cli.json("org", "show", world.org)["display_name"] == "Renamed"
    assert_code(cli("org", "create", unique("org"), "-o", "json"), DENIED, "PERMISSION_DENIED")
    assert_code(cli("org", "show", org, "-o", "json"), NOT_FOUND, "NOT_FOUND")
    assert_code(cli("org", "update"), USAGE)


# --- users, service accounts, API keys ----------------------------------------------------


def test_user_and_key_commands(world: World, cli: Cli) -> None:
    alice = unique("alice")
    made = cli.json("user", "create", alice, "--display-name", "Alice", "--email", "a@x.io")
    assert made["name"] == f"users/{alice}" and made["organization"] == world.org_name
    assert (made["org_role"], made["service_account"]) == ("ORG_ROLE_MEMBER", False)
    robot = unique("robot")
    bot = cli.json("user", "create", robot, "--service-account", "--role", "admin")
    assert (bot["service_account"], bot["org_role"]) == (True, "ORG_ROLE_ADMIN")
    listed = {u["name"]: u for u in cli.json("user", "list")}
    assert {f"users/{alice}", f"users/{robot}", world.admin.name} <= set(listed)
    table = cli("user", "list").stdout
    assert alice in table and robot in table
    assert cli.json("user", "show", alice) == made
    assert "a@x.io" in cli("user", "show", f"users/{alice}").stdout
    updated = cli.json("user", "update", alice, "--role", "admin", "--display-name", "Al")
    assert (updated["org_role"], updated["display_name"]) == ("ORG_ROLE_ADMIN", "Al")

    assert_code(cli("user", "create", alice, "-o", "json"), INVALID, "ALREADY_EXISTS")
    bad_role = cli("user", "create", unique("bob"), "--role", "owner", "-o", "json")
    assert_code(bad_role, INVALID, "INVALID_ARGUMENT")
    assert bad_role.error()["field_violations"][0]["field"] == "org_role"
    assert_code(cli("user", "show", "no-such-user", "-o", "json"), NOT_FOUND, "NOT_FOUND")
    assert_code(cli("user", "update", alice), USAGE)
    member = cli.as_(world.person("member"))
    assert_code(member("user", "create", unique("eve"), "-o", "json"), DENIED)

    # A key for the service account: shown once, it authenticates, then it is revoked.
    key = cli.json("key", "create", robot, "--description", "ci")
    assert key["name"].startswith(f"users/{robot}/apiKeys/") and key["secret"]
    human = cli("key", "create", robot)
    assert human.code == OK and "never shown again" in human.stdout
    as_robot = Cli(world.target, key["secret"], cli.config_dir)
    assert as_robot.json("whoami")["name"] == f"users/{robot}"
    keys = cli.json("key", "list", robot)
    assert key["name"] in [k["name"] for k in keys] and all(k["secret"] == "" for k in keys)
    assert [k["description"] for k in keys].count("ci") == 1
    assert key["name"] in cli("key", "list", robot, "--wide").stdout
    own = as_robot.json("key", "list")  # default: the caller's own keys
    assert key["name"] in [k["name"] for k in own]
    short = f"{robot}/{key['name'].rsplit('/', 1)[1]}"
    assert cli.json("key", "revoke", short) == {"key": short, "revoked": True}
    assert_code(as_robot("whoami", "-o", "json"), DENIED, "UNAUTHENTICATED")
    assert_code(cli("key", "revoke", key["name"], "-o", "json"), NOT_FOUND)
    assert_code(cli("key", "revoke", "not-a-key-name", "-o", "json"), INVALID)


# --- teams and projects -------------------------------------------------------------------


def test_team_and_project_commands(world: World, cli: Cli) -> None:
    bob = world.person("bob")
    team = unique("vision")
    made = cli.json("team", "create", team, "--display-name", "Vision")
    assert made["name"] == f"teams/{team}" and made["organization"] == world.org_name
    assert f"teams/{team}" in [t["name"] for t in cli.json("team", "list")]
    assert team in cli("team", "list").stdout

    added = cli.json("team", "add-member", team, bob.id, "--role", "member")
    assert (added["user"], added["role"]) == (bob.name, "TEAM_ROLE_MEMBER")
    said = cli("team", "add-member", team, world.person("carol").id, "--role", "viewer")
    assert said.code == OK and "is viewer of" in said.stdout
    roles = {m["user"]: m["role"] for m in cli.json("team", "members", team)}
    assert roles[bob.name] == "TEAM_ROLE_MEMBER" and roles[world.admin.name] == "TEAM_ROLE_ADMIN"
    promoted = cli.json("team", "set-role", team, bob.name, "admin")
    assert promoted["role"] == "TEAM_ROLE_ADMIN"
    shown = cli.json("team", "show", team)
    assert shown["team"] == made and bob.name in [m["user"] for m in shown["members"]]
    human = cli("team", "show", team).stdout
    assert "Vision" in human and bob.id in human and "admin" in human

    bad_role = cli("team", "add-member", team, bob.id, "--role", "owner", "-o", "json")
    assert_code(bad_role, INVALID, "INVALID_ARGUMENT")
    assert bad_role.error()["field_violations"][0]["field"] == "role"
    assert_code(cli("team", "create", team, "-o", "json"), INVALID, "ALREADY_EXISTS")
    assert_code(cli("team", "show", "no-such-team", "-o", "json"), NOT_FOUND)
    assert_code(cli("team", "add-member", "no-such-team", bob.id), NOT_FOUND)

    # Projects: TEAM/PROJECT, and the team's members may log artifacts into them.
    project = cli.json("project", "create", f"{team}/training", "-d", "Training runs")
    assert project["name"] == f"teams/{team}/projects/training"
    assert [p["name"] for p in cli.json("project", "list", team)] == [project["name"]]
    assert "Training runs" in cli("project", "list", team).stdout
    assert cli.json("project", "show", f"teams/{team}/projects/training") == project
    as_bob = cli.as_(bob)
    assert as_bob.json("project", "create", f"{team}/eval")["name"].endswith("/projects/eval")
    no_team = cli("project", "create", "training", "-o", "json")
    assert_code(no_team, INVALID, "INVALID_ARGUMENT")
    assert no_team.error()["field_violations"][0]["field"] == "project"
    assert_code(cli("project", "create", "no-such-team/p"), NOT_FOUND)
    assert_code(cli("project", "show", f"{team}/nope"), NOT_FOUND)

    removed = cli.json("team", "remove-member", team, bob.id)
    assert removed == {"team": team, "user": bob.id, "removed": True}
    assert bob.name not in [m["user"] for m in cli.json("team", "members", team)]
    assert_code(as_bob("project", "create", f"{team}/later"), NOT_FOUND)  # no longer a member


# --- legacy Model Registry ----------------------------------------------------------------


def test_legacy_commands(world: World, cli: Cli, admin: Client, tmp_path: Path) -> None:
    team, logged = logged_model(admin, tmp_path)
    made = cli.json("legacy", "create", f"{team}/classifier", "-d", "Classifier", "--tag", "cnn")
    assert made["name"] == f"teams/{team}/registeredModels/classifier"
    assert (made["description"], made["tags"], made["version_count"]) == ("Classifier", ["cnn"], 0)
    assert_code(cli("legacy", "create", f"{team}/classifier", "-o", "json"), INVALID)

    linked = cli.json("legacy", "link", logged.name, f"{team}/classifier", "-a", "production")
    assert linked["artifact_version"] == logged.name and linked["version_index"] == 0
    assert linked["aliases"] == ["production"]
    again = cli("legacy", "link", f"{team}/training/resnet:v0", f"{team}/model-registry/detector")
    assert again.code == OK and "registeredModels/detector/versions/0" in again.stdout

    assert [m["name"].rsplit("/", 1)[1] for m in cli.json("legacy", "list", team)] == [
        "classifier", "detector"
    ]  # fmt: skip
    assert "detector" in cli("legacy", "list", team).stdout
    shown = cli.json("legacy", "show", f"{team}/classifier")
    assert shown["registered_model"]["version_count"] == 1
    assert [v["aliases"] for v in shown["versions"]] == [["production"]]
    human = cli("legacy", "show", f"{team}/classifier").stdout
    assert "production" in human and "Classifier" in human
    settings = cli.json("legacy", "settings", team)
    assert (settings["team"], settings["state"]) == (f"teams/{team}", "LEGACY_STATE_WRITABLE")
    assert "writable" in cli("legacy", "settings", team).stdout

    assert_code(cli("legacy", "show", f"{team}/missing", "-o", "json"), NOT_FOUND)
    assert_code(cli("legacy", "create", "just-a-team", "-o", "json"), INVALID, "INVALID_ARGUMENT")
    outsider = cli.as_(world.person("outsider"))
    assert_code(outsider("legacy", "list", team), NOT_FOUND)


# --- lineage, alias history, events -----------------------------------------------------


def test_lineage_alias_history_and_whole_numbers_in_events(
    cli: Cli, admin: Client, tmp_path: Path
) -> None:
    team, logged = logged_model(admin, tmp_path)
    collection = f"model/{unique('resnet')}"
    first = admin.link(logged.name, collection, aliases=["production"])
    admin.use(logged.name, "eval-1")

    lineage = cli.json("artifact", "lineage", f"{team}/training/resnet:v0")
    assert lineage["artifact_version"] == logged.name
    assert lineage["consuming_runs"] == ["eval-1"]
    assert [link["name"] for link in lineage["links"]] == [first.name]
    human = cli("artifact", "lineage", logged.name).stdout
    assert "eval-1" in human and first.path in human
    assert_code(cli("artifact", "lineage", f"{team}/training/resnet:v9"), NOT_FOUND)

    admin.unlink(first.name)
    admin.link(logged.name, collection, aliases=["production"])
    history = cli.json("alias", "history", collection, "production")
    assert [a["version_index"] for a in history["assignments"]] == [0, 1]
    assert history["assignments"][0]["to_time"] and "to_time" not in history["assignments"][1]
    table = cli("alias", "history", collection, "production").stdout
    assert "v1" in table and "now" in table
    at = cli.json("alias", "history", collection, "production", "--at", "2000-01-01")
    assert at["version_index_at_time"] == -1
    assert (
        "At 2000-01-01 00:00:00: no version"
        in cli("alias", "history", collection, "production", "--at", "2000-01-01").stdout
    )
    assert_code(cli("alias", "history", collection, "production", "--at", "yesterday"), USAGE)

    # Event details are a Struct (numbers are doubles): whole numbers print as integers.
    created = 'type = "ARTIFACT_VERSION_CREATED"'
    (event,) = cli("events", "tail", "--filter", created, "--limit", "1", "-o", "json").lines()
    assert event["details"]["version_index"] == 0 and isinstance(
        event["details"]["version_index"], int
    )
    line = cli("events", "tail", "--filter", created, "--limit", "1").stdout
    assert re.search(r'"version_index": 0[,}]', line) and "0.0" not in line


# --- tables -------------------------------------------------------------------------------


def test_tables_fit_80_columns_and_wide_shows_them_whole(cli: Cli) -> None:
    long_id = unique("a-team-with-a-rather-long-identifier-for-tables")
    long_name = "A display name much longer than any terminal line " * 3
    cli.json("team", "create", long_id, "--display-name", long_name.strip())
    narrow = cli("team", "list", env={"COLUMNS": "80"})
    assert narrow.code == OK
    assert all(len(line) <= 80 for line in narrow.stdout.splitlines()), narrow.stdout
    (row,) = [line for line in narrow.stdout.splitlines() if long_id in line]  # one line, whole
    assert "…" in row and long_name.strip() not in narrow.stdout
    wide = cli("team", "list", "--wide", env={"COLUMNS": "80"})
    (row,) = [line for line in wide.stdout.splitlines() if long_id in line]
    assert long_name.strip() in row and "…" not in row
    assert long_name.strip() in json.dumps(cli.json("team", "list"))


# --- confirmations ------------------------------------------------------------------------


def test_confirmations_refuse_without_a_terminal_and_yes_goes_ahead(
    world: World, cli: Cli, admin: Client, tmp_path: Path
) -> None:
    team, logged = logged_model(admin, tmp_path)
    admin.link_model(logged.name, f"{team}/classifier")

    refused = cli("migrate", "start")  # every team, and no terminal to ask on
    assert refused.code == USAGE and "--yes" in refused.stderr and "EVERY team" in refused.stderr
    assert list(admin.migrations()) == []
    assert_code(cli("registry", "delete", "model"), USAGE)

    started = cli("migrate", "start", "--yes", "--watch", "-o", "json").lines()
    assert started[-1]["state"] == "MIGRATION_STATE_SUCCEEDED"
    name = started[-1]["name"]
    assert_code(cli("migrate", "rollback", name), USAGE)
    assert admin.migration(name).state == r.MIGRATION_STATE_SUCCEEDED
    assert (
        cli.json("migrate", "rollback", name, "--dry-run")["state"] == "MIGRATION_STATE_SUCCEEDED"
    )

    # At a terminal it asks, and "n" changes nothing (exit 1).
    assert answer_at_a_terminal(cli, ["migrate", "rollback", name], "n\n") == 1
    assert admin.migration(name).state == r.MIGRATION_STATE_SUCCEEDED
    assert answer_at_a_terminal(cli, ["migrate", "rollback", name], "y\n") == OK
    assert admin.migration(name).state == r.MIGRATION_STATE_ROLLED_BACK


def answer_at_a_terminal(cli: Cli, args: list[str], answer: str) -> int:
    """Runs the command with a terminal as standard input, types `answer`; the exit code."""
    main, terminal = pty.openpty()
    try:
        done = subprocess.Popen(
            [*COMMAND, *args], stdin=terminal, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=cli.env(),
        )  # fmt: skip
        os.write(main, answer.encode())
        out, err = done.communicate(timeout=60)
    finally:
        os.close(main)
        os.close(terminal)
    assert b"Roll back migration" in out, (out, err)
    return done.returncode
