"""`--version` of the `registry` and `registry-server` commands (both need typer)."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import typer

DISTRIBUTION = "artifact-registry"


def version_line(program: str) -> str:
    """`PROGRAM VERSION` of the installed distribution."""
    try:
        installed = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        installed = "unknown (not installed)"
    return f"{program} {installed}"


def version_option(program: str) -> Any:
    """A `--version` flag that prints `version_line(program)` and exits."""

    def show(value: bool) -> None:
        if value:
            typer.echo(version_line(program))
            raise typer.Exit()

    return typer.Option(
        "--version", is_eager=True, callback=show, help="Print the version and exit."
    )
