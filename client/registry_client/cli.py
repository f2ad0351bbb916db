"""`registry`: the artifact registry from a terminal or a script.

Every command prints a table for people, or JSON with `--output json` (one JSON
document; streams print one JSON object per line). Failures go to standard error
(as `{"error": {...}}` with `--output json`) and set the exit code: see `EXIT_CODES`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import grpc
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from registry.v1 import resources_pb2 as r

from . import cli_admin, cli_files, cli_legacy, webhooks
from .channel import DEFAULT_TARGET
from .cli_common import (
    EXIT_CODES,
    EXIT_CODES_SHORT,
    EXIT_ERROR,
    VERSION_COLUMNS,
    Connection,
    FilterOption,
    LimitOption,
    OrderByOption,
    OutputFormat,
    OutputOption,
    WideOption,
    YesOption,
    _client,
    _confirm,
    _connection,
    _details,
    _emit,
    _emit_list,
    _enum_label,
    _is_json,
    _join,
    _print_json,
    _report,
    _role,
    _run,
    _short,
    _size,
    _state,
    _table,
    _version_rows,
    _when,
    command_of,
    console,
    err_console,
    exit_code,
    struct_json,
    to_json,
)
from .client import Client
from .config import Config, clear_config, config_path, load_config, save_config
from .errors import (
    RegistryError,
)
from .version import version_option

app = typer.Typer(
    name="registry",
    help="Artifact registry: organizations, users, API keys, teams, projects, registries, "
    "collections, links, aliases, artifacts, legacy Model Registries, migration, events and "
    "automations.\n\nConnects to REGISTRY_ADDRESS with REGISTRY_API_KEY, or to what "
    "`registry login` saved.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
registry_app = typer.Typer(
    help="Registries and their members.", no_args_is_help=True, epilog=EXIT_CODES_SHORT
)
collection_app = typer.Typer(
    help="Collections in a registry.", no_args_is_help=True, epilog=EXIT_CODES_SHORT
)
alias_app = typer.Typer(
    help="Aliases on collection versions.", no_args_is_help=True, epilog=EXIT_CODES_SHORT
)
artifact_app = typer.Typer(
    help="Log and use artifact versions.", no_args_is_help=True, epilog=EXIT_CODES_SHORT
)
migrate_app = typer.Typer(
    help="Migrate legacy team Model Registries into the Registry.",
    no_args_is_help=True,
    epilog=EXIT_CODES_SHORT,
)
events_app = typer.Typer(
    help="The audit history and its live stream.", no_args_is_help=True, epilog=EXIT_CODES_SHORT
)
app.add_typer(registry_app, name="registry")
app.add_typer(collection_app, name="collection")
app.add_typer(alias_app, name="alias")
app.add_typer(artifact_app, name="artifact")
artifact_app.command("get")(cli_files.artifact_get)
app.add_typer(migrate_app, name="migrate")
automation_app = typer.Typer(
    help="Webhook automations on a registry or collection, and their deliveries.",
    no_args_is_help=True,
    epilog=EXIT_CODES_SHORT,
)
app.add_typer(events_app, name="events")
app.add_typer(automation_app, name="automation")
app.add_typer(cli_admin.org_app, name="org")
app.add_typer(cli_admin.user_app, name="user")
app.add_typer(cli_admin.key_app, name="key")
app.add_typer(cli_admin.team_app, name="team")
app.add_typer(cli_admin.project_app, name="project")
app.add_typer(cli_legacy.legacy_app, name="legacy")


@app.callback()
def _connect(
    ctx: typer.Context,
    address: Annotated[
        str | None,
        typer.Option(envvar="REGISTRY_ADDRESS", help=f"host:port (default {DEFAULT_TARGET})."),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="REGISTRY_API_KEY", help="API key.", show_default=False)
    ] = None,
    ca_cert: Annotated[
        str | None, typer.Option(envvar="REGISTRY_CA_CERT", help="PEM CA bundle; enables TLS.")
    ] = None,
    client_cert: Annotated[
        str | None,
        typer.Option(envvar="REGISTRY_CLIENT_CERT", help="PEM client certificate (mutual TLS)."),
    ] = None,
    client_key: Annotated[
        str | None,
        typer.Option(envvar="REGISTRY_CLIENT_KEY", help="PEM client private key (mutual TLS)."),
    ] = None,
    tls: Annotated[
        bool, typer.Option("--tls", envvar="REGISTRY_TLS", help="TLS with the system CAs.")
    ] = False,
    timeout: Annotated[
        float, typer.Option(envvar="REGISTRY_TIMEOUT", min=0.1, help="Seconds per call.")
    ] = 10.0,
    version: Annotated[bool, version_option("registry")] = False,
) -> None:
    saved = load_config()
    ctx.obj = Connection(
        address=address or saved.address or DEFAULT_TARGET,
        api_key=api_key if api_key is not None else saved.api_key,
        ca_cert=ca_cert if ca_cert is not None else saved.ca_cert,
        client_cert=client_cert if client_cert is not None else saved.client_cert,
        client_key=client_key if client_key is not None else saved.client_key,
        tls=tls,
        timeout=timeout,
    )


def _show_registry(reg: r.Registry) -> None:
    types = "any" if reg.allow_all_artifact_types else _join(reg.artifact_types)
    _details(
        [
            ("name", reg.name),
            ("path prefix", reg.path_prefix),
            ("description", reg.description),
            ("visibility", _enum_label(r.Visibility, reg.visibility, "VISIBILITY_")),
            ("artifact types", types),
            ("protected aliases", _join(reg.protected_aliases)),
            ("default role", _role(reg.default_role)),
            ("core", "yes" if reg.core else "no"),
            ("migrated from", reg.migrated_from),
            ("created", _when(reg.create_time)),
            ("updated", _when(reg.update_time)),
        ]
    )


def _show_collection(col: r.Collection) -> None:
    _details(
        [
            ("name", col.name),
            ("type", col.type),
            ("versions", col.version_count),
            ("tags", _join(col.tags)),
            ("created by", col.created_by),
            ("created", _when(col.create_time)),
            ("updated", _when(col.update_time)),
            ("description", col.description),
        ]
    )


def _show_collection_version(v: r.CollectionVersion) -> None:
    _details(
        [
            ("name", v.name),
            ("path", v.path),
            ("version", f"v{v.version_index}"),
            ("aliases", _join(v.aliases)),
            ("tags", _join(v.tags)),
            ("artifact version", v.artifact_version),
            ("type", v.type),
            ("digest", v.digest),
            ("linked by", v.linked_by),
            ("created", _when(v.create_time)),
            ("description", v.description),
        ]
    )


def _show_artifact_version(v: r.ArtifactVersion, *, manifest: bool = False) -> None:
    _details(
        [
            ("name", v.name),
            ("path", v.path),
            ("type", v.type),
            ("digest", v.digest),
            ("size", _size(v.size)),
            ("files", len(v.manifest)),
            ("aliases", _join(v.aliases)),
            ("tags", _join(v.tags)),
            ("producing run", v.producing_run),
            ("created by", v.created_by),
            ("created", _when(v.create_time)),
            ("deleted", _when(v.delete_time)),
            ("description", v.description),
            (
                "metadata",
                struct_json(v.metadata) if v.metadata.fields else "",
            ),
        ]
    )
    if manifest and v.manifest:
        console.print()
        _table(
            ("PATH", "SIZE", "DIGEST", "REF"),
            ((e.path, _size(e.size), e.digest, e.ref) for e in v.manifest),
            "no files",
        )


def _show_migration(m: r.Migration) -> None:
    progress = f"{m.progress.done}/{m.progress.total}" if m.progress.total else ""
    collections = (
        f"{m.progress.collections_done}/{m.progress.collections_total}"
        if m.progress.collections_total
        else ""
    )
    _details(
        [
            ("name", m.name),
            ("state", _state(m.state)),
            ("teams", _join(m.teams)),
            ("versions", progress),
            ("collections", collections),
            ("verified", m.verification.checked or ""),
            ("mismatches", _join(m.verification.mismatches)),
            ("error", m.error),
            ("created by", m.created_by),
            ("created", _when(m.create_time)),
            ("ended", _when(m.end_time)),
        ]
    )
    if m.team_migrations:
        console.print()
        _table(
            ("TEAM", "TARGET REGISTRY", "STATE", "PROGRESS"),
            (
                (
                    t.team,
                    t.target_registry,
                    _state(t.state),
                    f"{t.progress.done}/{t.progress.total}",
                )
                for t in m.team_migrations
            ),
            "",
        )
    _show_access_changes(m.verification.access_changes, "Access changes (planned, verified)")


def _show_access_changes(changes: Sequence[r.AccessChange], title: str) -> None:
    """Planned access changes, one per line: who, where, from what to what, and why."""
    if not changes:
        return
    console.print()
    console.print(f"[bold]{escape(title)}[/bold]")
    _table(
        ("MEMBER", "REGISTRY", "BEFORE", "AFTER", "WHY"),
        ((c.principal, c.registry, c.before, c.after, c.reason) for c in changes),
        "",
    )


def _event_line(e: r.Event) -> str:
    details = struct_json(e.details) if e.details.fields else ""
    parts = (str(e.cursor), _when(e.time), e.type, e.actor, e.resource, details)
    return " ".join(part for part in parts if part)


# --- login ---------------------------------------------------------------------------


@app.command()
def login(
    ctx: typer.Context,
    address: Annotated[
        str | None, typer.Option("--address", help="host:port of the registry.")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="REGISTRY_API_KEY",
            help="The key; asked for (hidden) when not given.",
            show_default=False,
        ),
    ] = None,
    verify: Annotated[
        bool, typer.Option(help="Check the key with the server before saving it.")
    ] = True,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Save the address and API key in your config dir (mode 0600) for later commands."""
    _run.output = output
    conn = _connection(ctx)
    if address:
        conn.address = address
    key = api_key or conn.api_key or typer.prompt("API key", hide_input=True)
    conn.api_key = key.strip()
    user = conn.client().whoami().name if verify else ""
    saved = load_config()
    path = save_config(
        Config(
            address=conn.address,
            api_key=conn.api_key,
            ca_cert=conn.ca_cert or saved.ca_cert,
            client_cert=conn.client_cert or saved.client_cert,
            client_key=conn.client_key or saved.client_key,
        )
    )
    _emit(
        {"address": conn.address, "user": user, "config": str(path)},
        lambda: console.print(
            f"Logged in to {escape(conn.address)}"
            + (f" as {escape(user)}" if user else "")
            + f". Saved to {escape(str(path))}"
        ),
    )


@app.command()
def logout(output: OutputOption = OutputFormat.table) -> None:
    """Forget the saved address and API key."""
    _run.output = output
    path = config_path()
    removed = clear_config()
    _emit(
        {"config": str(path), "removed": removed},
        lambda: console.print(f"Removed {path}" if removed else "Not logged in."),
    )


@app.command()
def whoami(ctx: typer.Context, output: OutputOption = OutputFormat.table) -> None:
    """Who the API key belongs to."""
    client = _client(ctx, output)
    me = client.whoami()
    _emit(
        me,
        lambda: _details(
            [
                ("user", me.name),
                ("display name", me.display_name),
                ("email", me.email),
                ("organization", me.organization),
                ("org role", _enum_label(r.OrgRole, me.org_role, "ORG_ROLE_")),
                ("service account", "yes" if me.service_account else ""),
                ("address", client.target),
            ]
        ),
    )


# --- registries ----------------------------------------------------------------------


@registry_app.command("list")
def registry_list(
    ctx: typer.Context,
    filter: FilterOption = "",
    order_by: OrderByOption = "",
    limit: LimitOption = None,
    organization: Annotated[str | None, typer.Option(help="Organization (default: yours).")] = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the registries you can see."""
    client = _client(ctx, output, wide)
    registries = list(
        client.registries(filter=filter, order_by=order_by, organization=organization, limit=limit)
    )
    _emit_list(
        registries,
        ("REGISTRY", "VISIBILITY", "TYPES", "CORE", "DESCRIPTION"),
        lambda g: (
            _short(g.name),
            _enum_label(r.Visibility, g.visibility, "VISIBILITY_"),
            "any" if g.allow_all_artifact_types else _join(g.artifact_types),
            "yes" if g.core else "",
            g.description,
        ),
        "no registries",
    )


@registry_app.command("create")
def registry_create(
    ctx: typer.Context,
    registry_id: Annotated[str, typer.Argument(help="Id of the new registry, e.g. vision.")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    visibility: Annotated[
        str, typer.Option(help="organization (every member sees it) or restricted.")
    ] = "organization",
    artifact_type: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help="Accepted artifact type (repeatable)."),
    ] = None,
    all_types: Annotated[
        bool, typer.Option("--all-types", help="Accept every artifact type.")
    ] = False,
    protected_alias: Annotated[
        list[str] | None,
        typer.Option("--protected-alias", help="Alias only admins may move (repeatable)."),
    ] = None,
    default_role: Annotated[
        str | None,
        typer.Option(help="Role of every org member: restricted_viewer, viewer, member."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a registry in your organization."""
    client = _client(ctx, output)
    reg = client.create_registry(
        registry_id,
        description=description,
        visibility=visibility,
        artifact_types=artifact_type or [],
        allow_all_artifact_types=all_types,
        protected_aliases=protected_alias or [],
        default_role=default_role,
    )
    _emit(reg, lambda: _show_registry(reg))


@registry_app.command("show")
def registry_show(
    ctx: typer.Context,
    registry: Annotated[str, typer.Argument(help="e.g. model, or acme/wandb-registry-model.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a registry's settings."""
    client = _client(ctx, output)
    reg = client.registry(registry)
    _emit(reg, lambda: _show_registry(reg))


@registry_app.command("members")
def registry_members(
    ctx: typer.Context,
    registry: Annotated[str, typer.Argument(help="e.g. model.")],
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List who was granted a role in a registry."""
    client = _client(ctx, output, wide)
    members = list(client.members(registry, limit=limit))
    _emit_list(
        members,
        ("MEMBER", "ROLE", "SINCE"),
        lambda m: (
            m.member,
            "team roles (follows the team)" if m.follows_team_roles else _role(m.role),
            _when(m.create_time),
        ),
        "no members",
    )


@registry_app.command("grant")
def registry_grant(
    ctx: typer.Context,
    registry: Annotated[str, typer.Argument(help="e.g. model.")],
    member: Annotated[str, typer.Argument(help="users/USER, teams/TEAM, or a user id.")],
    role: Annotated[str, typer.Argument(help="restricted_viewer, viewer, member or admin.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Grant a user or team a role in a registry (replacing the role it had)."""
    client = _client(ctx, output)
    granted = client.grant(registry, member, role)
    _emit(
        granted,
        lambda: console.print(f"{escape(granted.member)} is now {_role(granted.role)}"),
    )


@registry_app.command("revoke")
def registry_revoke(
    ctx: typer.Context,
    registry: Annotated[str, typer.Argument(help="e.g. model.")],
    member: Annotated[str, typer.Argument(help="users/USER, teams/TEAM, or a user id.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Remove the role granted to a user or team in a registry."""
    client = _client(ctx, output)
    client.revoke(registry, member)
    _emit(
        {"registry": registry, "member": member, "revoked": True},
        lambda: console.print(f"Revoked the role of {escape(member)} in {escape(registry)}"),
    )


@registry_app.command("delete")
def registry_delete(
    ctx: typer.Context,
    registry: Annotated[str, typer.Argument(help="e.g. vision.")],
    yes: YesOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Delete a registry with its collections and links (artifacts stay)."""
    client = _client(ctx, output)
    _confirm(f"Delete registry {registry} and all its links?", yes)
    client.delete_registry(registry)
    _emit(
        {"registry": registry, "deleted": True},
        lambda: console.print(f"Deleted {escape(registry)}"),
    )


# --- collections -------------------------------------------------------------------


@collection_app.command("list")
def collection_list(
    ctx: typer.Context,
    registry: Annotated[str, typer.Argument(help="e.g. model.")],
    filter: FilterOption = "",
    order_by: OrderByOption = "",
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the collections of a registry."""
    client = _client(ctx, output, wide)
    collections = list(client.collections(registry, filter=filter, order_by=order_by, limit=limit))
    _emit_list(
        collections,
        ("COLLECTION", "TYPE", "VERSIONS", "TAGS", "UPDATED"),
        lambda c: (_short(c.name), c.type, c.version_count, _join(c.tags), _when(c.update_time)),
        "no collections",
    )


@collection_app.command("show")
def collection_show(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="REGISTRY/COLLECTION, e.g. model/resnet.")],
    filter: FilterOption = "",
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="Versions to list (0 = none).")
    ] = 20,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a collection and its latest versions."""
    client = _client(ctx, output, wide)
    col = client.collection(collection)
    versions = (
        list(client.versions(col.name, filter=filter, order_by="version_index desc", limit=limit))
        if limit
        else []
    )

    def human() -> None:
        _show_collection(col)
        if versions:
            console.print()
            _table(VERSION_COLUMNS, _version_rows(versions), "")

    _emit({"collection": to_json(col), "versions": [to_json(v) for v in versions]}, human)


# --- links and aliases -------------------------------------------------------------


@app.command()
def link(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="Artifact version: TEAM/PROJECT/ARTIFACT:vN, an alias, or a name.")
    ],
    target: Annotated[
        str,
        typer.Argument(
            help="REGISTRY/COLLECTION (yours) or ORG/wandb-registry-REGISTRY/COLLECTION."
        ),
    ],
    alias: Annotated[
        list[str] | None, typer.Option("--alias", "-a", help="Alias to set (repeatable).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Link an artifact version into a collection (created when missing)."""
    client = _client(ctx, output)
    version = client.link(
        source, target, aliases=alias or [], tags=tag or [], description=description
    )
    _emit(version, lambda: _show_collection_version(version))


@app.command()
def unlink(
    ctx: typer.Context,
    version: Annotated[
        str, typer.Argument(help="REGISTRY/COLLECTION:vN (or :alias) or a version name.")
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Remove a link from a collection (the artifact version stays)."""
    client = _client(ctx, output)
    client.unlink(version)
    _emit(
        {"version": version, "unlinked": True},
        lambda: console.print(f"Unlinked {escape(version)}"),
    )


@alias_app.command("add")
def alias_add(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="REGISTRY/COLLECTION:vN or a version name.")],
    alias: Annotated[str, typer.Argument(help="e.g. production.")],
    expect_version: Annotated[
        int | None,
        typer.Option(
            "--expect-version",
            help="Only move the alias if it is now on vN (-1: only if it is nowhere).",
        ),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Put an alias on a collection version, moving it from another version."""
    client = _client(ctx, output)
    updated = client.add_alias(version, alias, expected_version_index=expect_version)
    _emit(updated, lambda: _show_collection_version(updated))


@alias_app.command("remove")
def alias_remove(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="REGISTRY/COLLECTION:vN or :ALIAS.")],
    alias: Annotated[str, typer.Argument(help="e.g. staging.")],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Remove an alias from a collection version."""
    client = _client(ctx, output)
    updated = client.remove_alias(version, alias)
    _emit(updated, lambda: _show_collection_version(updated))


@alias_app.command("history")
def alias_history(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="REGISTRY/COLLECTION, e.g. model/resnet.")],
    alias: Annotated[str, typer.Argument(help="e.g. production.")],
    at: Annotated[
        datetime | None,
        typer.Option(
            "--at",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"],
            help="Also say which version held it at this local time.",
        ),
    ] = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Which versions held an alias, from when to when, and who moved it."""
    client = _client(ctx, output, wide)
    history = client.alias_history(collection, alias, at=None if at is None else at.timestamp())

    def human() -> None:
        _table(
            ("VERSION", "FROM", "TO", "BY"),
            (
                (f"v{a.version_index}", _when(a.from_time), _when(a.to_time) or "now", a.actor)
                for a in history.assignments
            ),
            f"{alias} was never set",
        )
        if at is not None:
            index = history.version_index_at_time
            held = f"v{index}" if index >= 0 else "no version"
            console.print(f"At {at:%Y-%m-%d %H:%M:%S}: {held}")

    _emit(history, human)


@app.command()
def resolve(
    ctx: typer.Context,
    path: Annotated[
        str,
        typer.Argument(
            help="ORG/wandb-registry-R/C:ALIAS, R/C:vN, TEAM/model-registry/M:v1, "
            "TEAM/PROJECT/ARTIFACT:latest ..."
        ),
    ],
    output: OutputOption = OutputFormat.table,
) -> None:
    """Resolve any path to the artifact version it names."""
    client = _client(ctx, output)
    resolved = client.resolve(path)

    def human() -> None:
        v = resolved.artifact_version
        rows: list[tuple[str, object]] = [
            ("canonical path", resolved.canonical_path),
            ("redirected", "yes" if resolved.redirected else ""),
        ]
        if resolved.HasField("collection_version"):
            rows.append(("collection version", resolved.collection_version.name))
        if resolved.HasField("registered_model_version"):
            rows.append(("registered model version", resolved.registered_model_version.name))
        rows += [
            ("artifact version", v.name),
            ("artifact path", v.path),
            ("type", v.type),
            ("digest", v.digest),
            ("size", _size(v.size)),
            ("aliases", _join(v.aliases)),
        ]
        _details(rows)

    _emit(resolved, human)


# --- artifacts -----------------------------------------------------------------------


def _metadata(value: str) -> dict[str, Any] | None:
    if not value:
        return None
    text = value
    if value.startswith("@"):
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except OSError as e:
            raise typer.BadParameter(f"cannot read {value[1:]}: {e.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise typer.BadParameter(f"not JSON: {e}", param_hint="--metadata") from None
    if not isinstance(data, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--metadata")
    return data


@artifact_app.command("log")
def artifact_log(
    ctx: typer.Context,
    directory: Annotated[
        Path,
        typer.Argument(
            exists=True, file_okay=False, dir_okay=True, readable=True, help="Files to log."
        ),
    ],
    project: Annotated[str, typer.Option("--project", "-p", help="TEAM/PROJECT.")],
    name: Annotated[str, typer.Option("--name", help="Artifact name.")],
    type: Annotated[str, typer.Option("--type", "-t", help="Artifact type, e.g. model.")],
    alias: Annotated[
        list[str] | None, typer.Option("--alias", "-a", help="Alias (repeatable).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    metadata: Annotated[
        str, typer.Option("--metadata", "-m", help="JSON object, or @file.json.")
    ] = "",
    run_id: Annotated[str, typer.Option("--run-id", help="The run that produced it.")] = "",
    ref_prefix: Annotated[
        str,
        typer.Option(
            "--ref-prefix", help="Where the files live, e.g. s3://bucket/dir (recorded per file)."
        ),
    ] = "",
    local_refs: Annotated[
        bool,
        typer.Option(
            "--reference",
            "--local-refs",
            help="Upload nothing: record each file's file:// URI as its ref.",
        ),
    ] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Log a local directory as a new artifact version (sha256 manifest of every file),
    uploading the files the organization does not store yet (none with --reference or
    --ref-prefix); content logged before reuses its version (printed as `reused vN`)."""
    client = _client(ctx, output)
    version = client.log_artifact(
        project,
        name,
        type,
        directory,
        ref_prefix=ref_prefix,
        local_refs=local_refs,
        metadata=_metadata(metadata),
        description=description,
        aliases=alias or [],
        tags=tag or [],
        run_id=run_id,
    )

    def human() -> None:
        if version.reused:
            console.print(
                f"reused v{version.version_index}: this content was logged before; "
                "the aliases, tags, metadata and run asked for were applied to it"
            )
        _show_artifact_version(version)

    _emit(version, human)


@artifact_app.command("use")
def artifact_use(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Any path form, or an artifact version name.")],
    run_id: Annotated[str, typer.Option("--run-id", help="The run that consumes it.")],
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Resolve a path for a run, record the run as a consumer, and list the files."""
    client = _client(ctx, output, wide)
    version = client.use(path, run_id)
    _emit(version, lambda: _show_artifact_version(version, manifest=True))


@artifact_app.command("lineage")
def artifact_lineage(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Any path form, or an artifact version name.")],
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Where an artifact version comes from (the runs that logged it) and where it went (the
    runs that used it, the collections and registered models that link it)."""
    client = _client(ctx, output, wide)
    lineage = client.lineage(version)

    def human() -> None:
        _details(
            [
                ("artifact version", lineage.artifact_version),
                ("producing run", lineage.producing_run),
                ("logged again by", _join(lineage.logging_runs)),
                ("used by", _join(lineage.consuming_runs)),
            ]
        )
        console.print()
        _table(
            ("LINKED AS", "ALIASES"),
            ((link.path, _join(link.aliases)) for link in lineage.links),
            "not linked anywhere",
        )

    _emit(lineage, human)


# --- migration ----------------------------------------------------------------------


TeamOption = Annotated[
    list[str] | None,
    typer.Option("--team", help="Team to migrate (repeatable; default: every team)."),
]


@migrate_app.command("plan")
def migrate_plan(
    ctx: typer.Context,
    team: TeamOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Dry run: what a migration would create, map and warn about (changes nothing)."""
    client = _client(ctx, output, wide)
    plan = client.plan_migration(team or [])

    def human() -> None:
        _table(
            ("TEAM", "TARGET REGISTRY", "COLLECTIONS", "VERSIONS", "ALIASES", "STATE"),
            (
                (
                    t.team,
                    t.target_registry + (" (renamed)" if t.renamed else ""),
                    t.collection_count,
                    t.version_count,
                    t.alias_count,
                    _enum_label(r.LegacyState, t.legacy_state, "LEGACY_STATE_"),
                )
                for t in plan.teams
            ),
            "no team to migrate",
        )
        mappings = [(t.team, m) for t in plan.teams for m in t.member_mappings]
        if mappings:
            console.print()
            _table(
                ("TEAM", "MEMBER", "LEGACY ROLE", "REGISTRY ROLE"),
                (
                    (
                        team_name,
                        m.principal + (" (service account)" if m.service_account else ""),
                        _enum_label(r.TeamRole, m.legacy_role, "TEAM_ROLE_")
                        + (" + registry admin" if m.legacy_registry_admin else ""),
                        _role(m.registry_role),
                    )
                    for team_name, m in mappings
                ),
                "",
            )
        _show_access_changes(
            [c for t in plan.teams for c in t.access_changes], "Planned access changes"
        )
        # Plan-level warnings may repeat the per-team ones: print each once.
        warnings = dict.fromkeys([*plan.warnings, *(w for t in plan.teams for w in t.warnings)])
        for warning in warnings:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
        console.print(f"{plan.total_versions} versions in total")

    _emit(plan, human)


def _watch_migration(client: Client, name: str) -> r.Migration:
    """Follows a migration to its end: a live progress bar, or JSON lines."""
    last: r.Migration | None = None
    if _is_json():
        for snapshot in client.watch_migration(name):
            _print_json(to_json(snapshot), lines=True)
            last = snapshot
        return last if last is not None else client.migration(name)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(_short(name), total=None, state="pending")
        for snapshot in client.watch_migration(name):
            progress.update(
                task,
                total=snapshot.progress.total or None,
                completed=snapshot.progress.done,
                state=_state(snapshot.state),
            )
            last = snapshot
    final = last if last is not None else client.migration(name)
    _show_migration(final)
    return final


def _finish_watch(final: r.Migration) -> None:
    if final.state != r.MIGRATION_STATE_SUCCEEDED:
        raise typer.Exit(EXIT_ERROR)


@migrate_app.command("start")
def migrate_start(
    ctx: typer.Context,
    team: TeamOption = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow it to the end.")] = False,
    yes: YesOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Start migrating legacy Model Registries (exit 1 under --watch unless it succeeds).
    Without --team it migrates every team of the organization, after asking (--yes)."""
    client = _client(ctx, output)
    if not team:
        _confirm("Migrate the legacy Model Registry of EVERY team in the organization?", yes)
    migration = client.start_migration(team or [])
    if watch:
        if _is_json():
            _print_json(to_json(migration), lines=True)
        _finish_watch(_watch_migration(client, migration.name))
        return
    _emit(migration, lambda: _show_migration(migration))


@migrate_app.command("status")
def migrate_status(
    ctx: typer.Context,
    migration: Annotated[
        str | None, typer.Argument(help="Migration id or name (default: list migrations).")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Live progress until it ends.")
    ] = False,
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a migration (or list them); --watch follows it with a progress bar."""
    client = _client(ctx, output, wide)
    if migration is None:
        if watch:
            raise typer.BadParameter("--watch needs a migration", param_hint="--watch")
        migrations = list(client.migrations(limit=limit))
        _emit(
            list(migrations),
            lambda: _table(
                ("MIGRATION", "STATE", "TEAMS", "PROGRESS", "CREATED", "ENDED"),
                (
                    (
                        _short(m.name),
                        _state(m.state),
                        _join(m.teams),
                        f"{m.progress.done}/{m.progress.total}",
                        _when(m.create_time),
                        _when(m.end_time),
                    )
                    for m in migrations
                ),
                "no migrations",
            ),
        )
        return
    if watch:
        _finish_watch(_watch_migration(client, migration))
        return
    current = client.migration(migration)
    _emit(current, lambda: _show_migration(current))


DryRunOption = Annotated[
    bool,
    typer.Option("--dry-run", help="Only list what would be carried back and what cannot be."),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force", help="Go ahead even if some changes have no legacy equivalent (they are lost)."
    ),
]


@migrate_app.command("cancel")
def migrate_cancel(
    ctx: typer.Context,
    migration: Annotated[str, typer.Argument(help="Migration id or name.")],
    dry_run: DryRunOption = False,
    force: ForceOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Cancel a running migration; changes made in its registries go back to legacy."""
    client = _client(ctx, output)
    result = client.cancel_migration(migration, validate_only=dry_run, force=force)
    _emit(result, lambda: _show_undo(result, dry_run))


@migrate_app.command("rollback")
def migrate_rollback(
    ctx: typer.Context,
    migration: Annotated[str, typer.Argument(help="Migration id or name.")],
    dry_run: DryRunOption = False,
    force: ForceOption = False,
    yes: YesOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Undo a migration: every change made in the migrated registries that has a legacy
    equivalent goes back into the legacy registries, which are writable again, and the
    migrated registries are removed. Refused (exit 5, listing them) when some changes
    have no legacy equivalent, unless --force. Asks first unless --yes or --dry-run."""
    client = _client(ctx, output)
    if not dry_run:
        _confirm(f"Roll back migration {migration} and remove its registries?", yes)
    result = client.rollback_migration(migration, validate_only=dry_run, force=force)
    _emit(result, lambda: _show_undo(result, dry_run))


def _show_undo(m: r.Migration, dry_run: bool) -> None:
    """The migration, then what its undo carries back and what it loses."""
    _show_migration(m)
    report = m.rollback
    would = "would be " if dry_run else ""
    console.print()
    console.print(f"[bold]{len(report.carried_back)} change(s) {would}carried back[/bold]")
    for item in report.carried_back:
        console.print(f"  {escape(item)}")
    if report.losses:
        lost = "would be lost" if dry_run else ("lost (forced)" if report.forced else "lost")
        console.print(f"[bold yellow]{len(report.losses)} change(s) {lost}[/bold yellow]")
        for item in report.losses:
            console.print(f"  {escape(item)}")


# --- events --------------------------------------------------------------------------


ParentOption = Annotated[
    str | None,
    typer.Option("--registry", help="Only this registry's events (default: the organization)."),
]


@events_app.command("list")
def events_list(
    ctx: typer.Context,
    registry: ParentOption = None,
    filter: FilterOption = "",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 50,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List past events (audit history)."""
    client = _client(ctx, output, wide)
    events = list(client.events(registry, filter=filter, limit=limit))
    _emit_list(
        events,
        ("CURSOR", "TIME", "TYPE", "ACTOR", "RESOURCE"),
        lambda e: (e.cursor, _when(e.time), e.type, e.actor, e.resource),
        "no events",
    )


@events_app.command("tail")
def events_tail(
    ctx: typer.Context,
    registry: ParentOption = None,
    filter: FilterOption = "",
    after: Annotated[
        int, typer.Option("--after", min=0, help="Resume after this cursor (0 = from the start).")
    ] = 0,
    limit: LimitOption = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="Stop after this many seconds (default: never)."),
    ] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Print events as they happen (replaying those after --after first).

    Stops after --limit events or --timeout seconds; with --output json, one JSON
    object per line. Resume later with --after LAST_CURSOR.
    """
    client = _client(ctx, output)
    count = 0
    started = time.monotonic()
    stream = client.watch_events(registry, filter=filter, after=after, timeout=timeout)
    try:
        for event in stream:
            if _is_json():
                _print_json(to_json(event), lines=True)
            else:
                console.print(escape(_event_line(event)), soft_wrap=True)
            count += 1
            if limit is not None and count >= limit:
                break
    finally:
        close = getattr(stream, "close", None)
        if callable(close):
            close()
    if not _is_json() and timeout is not None and count == 0:
        waited = time.monotonic() - started
        err_console.print(f"[dim]no events in {waited:.1f}s[/dim]")


# --- automations ---------------------------------------------------------------------

AutomationName = Annotated[
    str, typer.Argument(help="The automation's name (.../automations/ID), as create printed.")
]
EventTypeOption = Annotated[
    list[str] | None,
    typer.Option("--event", "-e", help="Event type to deliver, e.g. ALIAS_ADDED (repeatable)."),
]
AliasRegexOption = Annotated[
    str | None,
    typer.Option("--alias-regex", help="Only events whose alias matches it whole, e.g. 'prod.*'."),
]


def _show_automation(a: r.Automation) -> None:
    _details(
        [
            ("name", a.name),
            ("url", a.url),
            ("enabled", "yes" if a.enabled else "no"),
            ("event types", _join(a.event_types)),
            ("alias regex", a.alias_regex),
            ("created by", a.created_by),
            ("created", _when(a.create_time)),
            ("updated", _when(a.update_time)),
            ("etag", a.etag),
        ]
    )
    if a.secret:
        console.print(
            f"secret  {escape(a.secret)}\n[dim]Keep it: it signs every delivery and is "
            "never shown again.[/dim]"
        )


def _show_delivery(d: r.Delivery) -> None:
    _details(
        [
            ("name", d.name),
            ("result", "ok" if d.succeeded else "failed"),
            ("status", d.status_code or ""),
            ("error", d.error),
            ("event", d.event_cursor),
            ("attempt", d.attempt),
            ("webhook id", d.webhook_id),
            ("time", _when(d.time)),
        ]
    )


@automation_app.command("create")
def automation_create(
    ctx: typer.Context,
    parent: Annotated[str, typer.Argument(help="A registry (model) or collection (model/resnet).")],
    url: Annotated[str, typer.Argument(help="https:// URL that receives the events.")],
    event: EventTypeOption = None,
    alias_regex: AliasRegexOption = None,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="REGISTRY_WEBHOOK_SECRET",
            help="whsec_... signing secret (default: a new one, printed once).",
        ),
    ] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a webhook; prints its secret when it made one (only this once)."""
    client = _client(ctx, output)
    if not event:
        raise typer.BadParameter("at least one is required", param_hint="--event")
    made = client.create_automation(
        parent,
        url,
        event,
        alias_regex=alias_regex or "",
        secret=secret,
        enabled=not disabled,
    )
    _emit(made, lambda: _show_automation(made))


@automation_app.command("list")
def automation_list(
    ctx: typer.Context,
    parent: Annotated[str, typer.Argument(help="A registry (model) or collection (model/resnet).")],
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the automations of a registry or collection."""
    client = _client(ctx, output, wide)
    found = list(client.automations(parent, limit=limit))
    _emit_list(
        found,
        ("ID", "ENABLED", "URL", "EVENTS", "ALIAS REGEX"),
        lambda a: (
            _short(a.name),
            "yes" if a.enabled else "no",
            a.url,
            _join(a.event_types),
            a.alias_regex,
        ),
        "no automations",
    )


@automation_app.command("show")
def automation_show(
    ctx: typer.Context, name: AutomationName, output: OutputOption = OutputFormat.table
) -> None:
    """Show an automation (never its secret)."""
    client = _client(ctx, output)
    found = client.automation(name)
    _emit(found, lambda: _show_automation(found))


@automation_app.command("update")
def automation_update(
    ctx: typer.Context,
    name: AutomationName,
    url: Annotated[str | None, typer.Option(help="A new https:// URL.")] = None,
    event: EventTypeOption = None,
    alias_regex: AliasRegexOption = None,
    enable: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Turn deliveries on or off.")
    ] = None,
    rotate_secret: Annotated[
        bool,
        typer.Option("--rotate-secret", help="Replace the secret with a new one, printed once."),
    ] = False,
    etag: Annotated[str, typer.Option(help="Only if the automation is still at this etag.")] = "",
    output: OutputOption = OutputFormat.table,
) -> None:
    """Change an automation's URL, event types, alias regex, state or secret."""
    client = _client(ctx, output)
    secret = webhooks.new_secret() if rotate_secret else None
    if url is None and not event and alias_regex is None and enable is None and secret is None:
        raise typer.BadParameter(
            "give at least one of --url, --event, --alias-regex, --enable/--disable, "
            "--rotate-secret"
        )
    updated = client.update_automation(
        name,
        url=url,
        event_types=event or None,
        alias_regex=alias_regex,
        enabled=enable,
        secret=secret,
        etag=etag,
    )
    if secret is not None:
        updated.secret = secret  # made here: shown this once
    _emit(updated, lambda: _show_automation(updated))


@automation_app.command("delete")
def automation_delete(
    ctx: typer.Context, name: AutomationName, output: OutputOption = OutputFormat.table
) -> None:
    """Delete an automation and its delivery history."""
    client = _client(ctx, output)
    client.delete_automation(name)
    _emit(
        {"name": name, "deleted": True},
        lambda: console.print(f"Deleted {escape(name)}"),
    )


@automation_app.command("test")
def automation_test(
    ctx: typer.Context, name: AutomationName, output: OutputOption = OutputFormat.table
) -> None:
    """Send a signed AUTOMATION_TESTED event now; exits 1 when it was not accepted."""
    client = _client(ctx, output)
    delivery = client.test_automation(name)
    _emit(delivery, lambda: _show_delivery(delivery))
    if not delivery.succeeded:
        raise typer.Exit(EXIT_ERROR)


@automation_app.command("deliveries")
def automation_deliveries(
    ctx: typer.Context,
    name: AutomationName,
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List an automation's delivery attempts, oldest first (registry admins)."""
    client = _client(ctx, output, wide)
    found = list(client.deliveries(name, limit=limit))
    _emit_list(
        found,
        ("DELIVERY", "TIME", "EVENT", "ATTEMPT", "STATUS", "RESULT", "ERROR"),
        lambda d: (
            _short(d.name),
            _when(d.time),
            d.event_cursor,
            d.attempt,
            d.status_code or "",
            "ok" if d.succeeded else "failed",
            d.error,
        ),
        "no deliveries",
    )


# --- entry point -------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> None:
    """Console script: runs a command and maps failures to exit codes."""
    try:
        command_of(app)(args=list(argv) if argv is not None else None, prog_name="registry")
    except RegistryError as err:
        _report(err)
        sys.exit(exit_code(err))
    except grpc.RpcError as err:  # not expected: the client converts errors
        err_console.print(f"[bold red]error:[/bold red] {escape(str(err))}")
        sys.exit(EXIT_ERROR)


if __name__ == "__main__":
    main()
