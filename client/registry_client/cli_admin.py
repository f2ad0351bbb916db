"""`registry org|user|key|team|project`: organizations, users and service accounts, API
keys, teams and their members, projects."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from registry.v1 import resources_pb2 as r

from . import names
from .cli_common import (
    EXIT_CODES_SHORT,
    FilterOption,
    LimitOption,
    OrderByOption,
    OutputFormat,
    OutputOption,
    WideOption,
    _client,
    _details,
    _emit,
    _emit_list,
    _enum_label,
    _short,
    _table,
    _when,
    console,
    to_json,
)

org_app = typer.Typer(
    help="Organizations (creating and listing every one: service admins).",
    no_args_is_help=True,
    epilog=EXIT_CODES_SHORT,
)
user_app = typer.Typer(
    help="Users and service accounts of your organization.",
    no_args_is_help=True,
    epilog=EXIT_CODES_SHORT,
)
key_app = typer.Typer(
    help="API keys of a user or service account.", no_args_is_help=True, epilog=EXIT_CODES_SHORT
)
team_app = typer.Typer(
    help="Teams and their members.", no_args_is_help=True, epilog=EXIT_CODES_SHORT
)
project_app = typer.Typer(
    help="Projects of a team (where artifacts are logged).",
    no_args_is_help=True,
    epilog=EXIT_CODES_SHORT,
)

OrganizationOption = Annotated[
    str | None, typer.Option("--org", help="Organization (default: yours).")
]
DisplayNameOption = Annotated[str, typer.Option("--display-name", help="Name shown to people.")]
UserArgument = Annotated[str, typer.Argument(help="User id, or users/USER.")]
TeamArgument = Annotated[str, typer.Argument(help="Team id, or teams/TEAM.")]


def _yes(flag: bool) -> str:
    return "yes" if flag else ""


def _org_role(value: int) -> str:
    return _enum_label(r.OrgRole, value, "ORG_ROLE_")


def _team_role(value: int) -> str:
    return _enum_label(r.TeamRole, value, "TEAM_ROLE_")


# --- organizations ---------------------------------------------------------------------


def _show_organization(o: r.Organization) -> None:
    _details(
        [
            ("name", o.name),
            ("display name", o.display_name),
            ("legacy model registry", "enabled" if o.legacy_model_registry_enabled else "off"),
            ("created", _when(o.create_time)),
            ("updated", _when(o.update_time)),
        ]
    )


@org_app.command("create")
def org_create(
    ctx: typer.Context,
    organization_id: Annotated[str, typer.Argument(help="Id of the new organization.")],
    display_name: DisplayNameOption = "",
    legacy: Annotated[
        bool,
        typer.Option(
            "--legacy/--no-legacy",
            help="Whether teams get a legacy Model Registry (--no-legacy: Registry only).",
        ),
    ] = True,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create an organization with its core registries (service admins)."""
    client = _client(ctx, output)
    made = client.create_organization(
        organization_id, display_name=display_name, legacy_model_registry_enabled=legacy
    )
    _emit(made, lambda: _show_organization(made))


@org_app.command("list")
def org_list(
    ctx: typer.Context,
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List organizations: every one for a service admin, yours for anyone else."""
    client = _client(ctx, output, wide)
    found = list(client.organizations(limit=limit))
    _emit_list(
        found,
        ("ORGANIZATION", "DISPLAY NAME", "LEGACY", "CREATED"),
        lambda o: (
            _short(o.name),
            o.display_name,
            _yes(o.legacy_model_registry_enabled),
            _when(o.create_time),
        ),
        "no organizations",
    )


@org_app.command("show")
def org_show(
    ctx: typer.Context,
    organization: Annotated[
        str | None, typer.Argument(help="Organization id (default: yours).")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show an organization."""
    client = _client(ctx, output)
    found = client.organization(organization)
    _emit(found, lambda: _show_organization(found))


@org_app.command("update")
def org_update(
    ctx: typer.Context,
    organization: Annotated[
        str | None, typer.Argument(help="Organization id (default: yours).")
    ] = None,
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    legacy: Annotated[
        bool | None,
        typer.Option("--legacy/--no-legacy", help="Turn the legacy Model Registry on or off."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change an organization's display name or legacy setting (organization admins)."""
    client = _client(ctx, output)
    if display_name is None and legacy is None:
        raise typer.BadParameter("give --display-name or --legacy/--no-legacy")
    updated = client.update_organization(
        organization, display_name=display_name, legacy_model_registry_enabled=legacy
    )
    _emit(updated, lambda: _show_organization(updated))


# --- users and service accounts --------------------------------------------------------


def _show_user(u: r.User) -> None:
    _details(
        [
            ("name", u.name),
            ("display name", u.display_name),
            ("email", u.email),
            ("organization", u.organization),
            ("org role", _org_role(u.org_role)),
            ("service account", _yes(u.service_account)),
            ("service admin", _yes(u.service_admin)),
            ("created", _when(u.create_time)),
            ("updated", _when(u.update_time)),
        ]
    )


OrgRoleOption = Annotated[str, typer.Option("--role", help="Organization role: member or admin.")]


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    user_id: Annotated[str, typer.Argument(help="Id of the new user, e.g. alice.")],
    display_name: DisplayNameOption = "",
    email: Annotated[str, typer.Option("--email")] = "",
    service_account: Annotated[
        bool, typer.Option("--service-account", help="A service account, not a person.")
    ] = False,
    role: OrgRoleOption = "member",
    organization: OrganizationOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a user or service account (organization admins; service admins anywhere).
    Give it a key with `registry key create USER`."""
    client = _client(ctx, output)
    made = client.create_user(
        user_id,
        display_name=display_name,
        email=email,
        service_account=service_account,
        org_role=role,
        organization=organization,
    )
    _emit(made, lambda: _show_user(made))


@user_app.command("list")
def user_list(
    ctx: typer.Context,
    filter: FilterOption = "",
    order_by: OrderByOption = "",
    limit: LimitOption = None,
    organization: OrganizationOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the users and service accounts of an organization."""
    client = _client(ctx, output, wide)
    found = list(
        client.users(organization=organization, filter=filter, order_by=order_by, limit=limit)
    )
    _emit_list(
        found,
        ("USER", "ROLE", "SERVICE ACCOUNT", "DISPLAY NAME", "EMAIL"),
        lambda u: (
            _short(u.name),
            _org_role(u.org_role),
            _yes(u.service_account),
            u.display_name,
            u.email,
        ),
        "no users",
    )


@user_app.command("show")
def user_show(
    ctx: typer.Context, user: UserArgument, output: OutputOption = OutputFormat.table
) -> None:
    """Show a user or service account."""
    client = _client(ctx, output)
    found = client.user(user)
    _emit(found, lambda: _show_user(found))


@user_app.command("update")
def user_update(
    ctx: typer.Context,
    user: UserArgument,
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    email: Annotated[str | None, typer.Option("--email")] = None,
    role: Annotated[
        str | None, typer.Option("--role", help="member or admin (organization admins).")
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a user's display name, email or organization role."""
    client = _client(ctx, output)
    if display_name is None and email is None and role is None:
        raise typer.BadParameter("give at least one of --display-name, --email, --role")
    updated = client.update_user(user, display_name=display_name, email=email, org_role=role)
    _emit(updated, lambda: _show_user(updated))


# --- API keys ----------------------------------------------------------------------------


@key_app.command("create")
def key_create(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Argument(help="User or service account (default: you).")
    ] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create an API key; prints its secret, this once."""
    client = _client(ctx, output)
    made = client.create_api_key(user, description=description)

    def human() -> None:
        _details([("name", made.name), ("description", made.description),
                  ("created", _when(made.create_time))])  # fmt: skip
        console.print(
            f"secret  {escape(made.secret)}\n[dim]Keep it: it is never shown again. Use it as "
            "REGISTRY_API_KEY or with `registry login`.[/dim]"
        )

    _emit(made, human)


@key_app.command("list")
def key_list(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Argument(help="User or service account (default: you).")
    ] = None,
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List a user's API keys (never their secrets)."""
    client = _client(ctx, output, wide)
    found = list(client.api_keys(user, limit=limit))
    _emit_list(
        found,
        ("KEY", "CREATED", "DESCRIPTION"),
        lambda k: (k.name, _when(k.create_time), k.description),
        "no API keys",
    )


@key_app.command("revoke")
def key_revoke(
    ctx: typer.Context,
    key: Annotated[
        str, typer.Argument(help="users/USER/apiKeys/KEY (as list prints) or USER/KEY.")
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Revoke an API key: it stops authenticating at once."""
    client = _client(ctx, output)
    client.delete_api_key(key)
    _emit({"key": key, "revoked": True}, lambda: console.print(f"Revoked {escape(key)}"))


# --- teams -------------------------------------------------------------------------------


def _show_team(t: r.Team) -> None:
    _details(
        [
            ("name", t.name),
            ("display name", t.display_name),
            ("organization", t.organization),
            ("created", _when(t.create_time)),
        ]
    )


def _show_member(m: r.TeamMember) -> None:
    console.print(f"{escape(m.user)} is {_team_role(m.role)} of {escape(m.team)}")


TeamRoleHelp = "viewer, member or admin."


@team_app.command("create")
def team_create(
    ctx: typer.Context,
    team_id: Annotated[str, typer.Argument(help="Id of the new team (unique in the service).")],
    display_name: DisplayNameOption = "",
    organization: OrganizationOption = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a team (its legacy Model Registry comes with it)."""
    client = _client(ctx, output)
    made = client.create_team(team_id, display_name=display_name, organization=organization)
    _emit(made, lambda: _show_team(made))


@team_app.command("list")
def team_list(
    ctx: typer.Context,
    filter: FilterOption = "",
    order_by: OrderByOption = "",
    limit: LimitOption = None,
    organization: OrganizationOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the teams of an organization."""
    client = _client(ctx, output, wide)
    found = list(
        client.teams(organization=organization, filter=filter, order_by=order_by, limit=limit)
    )
    _emit_list(
        found,
        ("TEAM", "DISPLAY NAME", "CREATED"),
        lambda t: (_short(t.name), t.display_name, _when(t.create_time)),
        "no teams",
    )


@team_app.command("show")
def team_show(
    ctx: typer.Context,
    team: TeamArgument,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a team and its members."""
    client = _client(ctx, output, wide)
    found = client.team(team)
    members = list(client.team_members(team))

    def human() -> None:
        _show_team(found)
        console.print()
        _members_table(members)

    _emit({"team": to_json(found), "members": [to_json(m) for m in members]}, human)


def _members_table(members: list[r.TeamMember]) -> None:
    _table(
        ("USER", "ROLE", "SINCE"),
        ((_short(m.user), _team_role(m.role), _when(m.create_time)) for m in members),
        "no members",
    )


@team_app.command("members")
def team_members(
    ctx: typer.Context,
    team: TeamArgument,
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List a team's members and their roles."""
    client = _client(ctx, output, wide)
    found = list(client.team_members(team, limit=limit))
    _emit(list(found), lambda: _members_table(found))


@team_app.command("add-member")
def team_add_member(
    ctx: typer.Context,
    team: TeamArgument,
    user: UserArgument,
    role: Annotated[str, typer.Option("--role", help=TeamRoleHelp)] = "member",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Add a user or service account to a team (team admins)."""
    client = _client(ctx, output)
    added = client.add_team_member(team, user, role)
    _emit(added, lambda: _show_member(added))


@team_app.command("set-role")
def team_set_role(
    ctx: typer.Context,
    team: TeamArgument,
    user: UserArgument,
    role: Annotated[str, typer.Argument(help=TeamRoleHelp)],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change a member's role in a team (team admins)."""
    client = _client(ctx, output)
    updated = client.update_team_member(team, user, role)
    _emit(updated, lambda: _show_member(updated))


@team_app.command("remove-member")
def team_remove_member(
    ctx: typer.Context,
    team: TeamArgument,
    user: UserArgument,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Remove a user from a team (and what the team gave them)."""
    client = _client(ctx, output)
    client.remove_team_member(team, user)
    _emit(
        {"team": team, "user": user, "removed": True},
        lambda: console.print(f"Removed {escape(user)} from {escape(team)}"),
    )


# --- projects ----------------------------------------------------------------------------


def _show_project(p: r.Project) -> None:
    _details(
        [
            ("name", p.name),
            ("description", p.description),
            ("created", _when(p.create_time)),
            ("updated", _when(p.update_time)),
        ]
    )


ProjectArgument = Annotated[str, typer.Argument(help="TEAM/PROJECT, e.g. vision/training.")]


@project_app.command("create")
def project_create(
    ctx: typer.Context,
    project: ProjectArgument,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a project in a team (team members)."""
    client = _client(ctx, output)
    _, team, _, project_id = names.project_name(project).split("/")
    made = client.create_project(team, project_id, description=description)
    _emit(made, lambda: _show_project(made))


@project_app.command("list")
def project_list(
    ctx: typer.Context,
    team: TeamArgument,
    filter: FilterOption = "",
    order_by: OrderByOption = "",
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the projects of a team."""
    client = _client(ctx, output, wide)
    found = list(client.projects(team, filter=filter, order_by=order_by, limit=limit))
    _emit_list(
        found,
        ("PROJECT", "CREATED", "DESCRIPTION"),
        lambda p: (_short(p.name), _when(p.create_time), p.description),
        "no projects",
    )


@project_app.command("show")
def project_show(
    ctx: typer.Context, project: ProjectArgument, output: OutputOption = OutputFormat.table
) -> None:
    """Show a project."""
    client = _client(ctx, output)
    found = client.project(project)
    _emit(found, lambda: _show_project(found))
