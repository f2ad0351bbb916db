"""`registry legacy`: a team's legacy Model Registry (registered models, their linked
versions, the registry's settings)."""

from __future__ import annotations

from typing import Annotated

import typer

from registry.v1 import resources_pb2 as r

from .cli_common import (
    EXIT_CODES_SHORT,
    VERSION_COLUMNS,
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
    _join,
    _short,
    _table,
    _version_rows,
    _when,
    console,
    to_json,
)

legacy_app = typer.Typer(
    help="A team's legacy Model Registry: registered models and their versions.",
    no_args_is_help=True,
    epilog=EXIT_CODES_SHORT,
)

ModelArgument = Annotated[
    str, typer.Argument(help="TEAM/MODEL, TEAM/model-registry/MODEL or the model's name.")
]
TeamArgument = Annotated[str, typer.Argument(help="Team id, or teams/TEAM.")]


def _show_model(m: r.RegisteredModel) -> None:
    _details(
        [
            ("name", m.name),
            ("description", m.description),
            ("tags", _join(m.tags)),
            ("versions", m.version_count),
            ("migrated to", m.migrated_to),
            ("redirected", "yes" if m.redirected else ""),
            ("created", _when(m.create_time)),
            ("updated", _when(m.update_time)),
        ]
    )


@legacy_app.command("create")
def legacy_create(
    ctx: typer.Context,
    model: ModelArgument,
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Create a registered model in a team's legacy Model Registry."""
    client = _client(ctx, output)
    made = client.create_registered_model(model, description=description, tags=tag or [])
    _emit(made, lambda: _show_model(made))


@legacy_app.command("list")
def legacy_list(
    ctx: typer.Context,
    team: TeamArgument,
    filter: FilterOption = "",
    order_by: OrderByOption = "",
    limit: LimitOption = None,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """List the registered models of a team."""
    client = _client(ctx, output, wide)
    found = list(client.registered_models(team, filter=filter, order_by=order_by, limit=limit))
    _emit_list(
        found,
        ("MODEL", "VERSIONS", "TAGS", "MIGRATED TO", "DESCRIPTION"),
        lambda m: (_short(m.name), m.version_count, _join(m.tags), m.migrated_to, m.description),
        "no registered models",
    )


@legacy_app.command("show")
def legacy_show(
    ctx: typer.Context,
    model: ModelArgument,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=0, help="Versions to list (0 = none).")
    ] = 20,
    wide: WideOption = False,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Show a registered model and its latest versions."""
    client = _client(ctx, output, wide)
    found = client.registered_model(model)
    versions = (
        list(client.registered_model_versions(model, order_by="version_index desc", limit=limit))
        if limit
        else []
    )

    def human() -> None:
        _show_model(found)
        if versions:
            console.print()
            _table(VERSION_COLUMNS, _version_rows(versions), "")

    _emit({"registered_model": to_json(found), "versions": [to_json(v) for v in versions]}, human)


@legacy_app.command("link")
def legacy_link(
    ctx: typer.Context,
    source: Annotated[
        str, typer.Argument(help="Artifact version: TEAM/PROJECT/ARTIFACT:vN, an alias, or a name.")
    ],
    model: ModelArgument,
    alias: Annotated[
        list[str] | None, typer.Option("--alias", "-a", help="Alias to set (repeatable).")
    ] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag (repeatable).")] = None,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Link a `model` artifact version into a registered model (created when missing)."""
    client = _client(ctx, output)
    linked = client.link_model(source, model, aliases=alias or [], tags=tag or [])
    _emit(
        linked,
        lambda: _details(
            [
                ("name", linked.name),
                ("version", f"v{linked.version_index}"),
                ("aliases", _join(linked.aliases)),
                ("tags", _join(linked.tags)),
                ("artifact version", linked.artifact_version),
                ("linked by", linked.linked_by),
                ("redirected to", linked.collection_version),
                ("created", _when(linked.create_time)),
            ]
        ),
    )


@legacy_app.command("settings")
def legacy_settings(
    ctx: typer.Context, team: TeamArgument, output: OutputOption = OutputFormat.table
) -> None:
    """Show a team's legacy registry settings: state, protected aliases, registry admins."""
    client = _client(ctx, output)
    found = client.legacy_settings(team)
    _emit(
        found,
        lambda: _details(
            [
                ("team", found.team),
                ("state", _enum_label(r.LegacyState, found.state, "LEGACY_STATE_")),
                ("protected aliases", _join(found.protected_aliases)),
                ("registry admins", _join(found.registry_admins)),
                ("migrated to", found.migrated_registry),
                ("updated", _when(found.update_time)),
            ]
        ),
    )
