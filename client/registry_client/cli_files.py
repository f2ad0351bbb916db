"""`registry artifact get`: an artifact version's files into a directory, with a
progress bar (the `artifact` command group of cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from .cli_common import (
    OutputFormat,
    OutputOption,
    _client,
    _emit,
    _is_json,
    console,
    err_console,
)
from .files import WORKERS


def artifact_get(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="Any path form, or an artifact version name.")],
    dest: Annotated[
        Path, typer.Argument(file_okay=False, help="Directory to write the files into.")
    ],
    run_id: Annotated[
        str, typer.Option("--run-id", help="Record this run as a consumer of the version.")
    ] = "",
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Files fetched at once.")
    ] = WORKERS,
    output: OutputOption = OutputFormat.table,
) -> None:
    """Download the files of an artifact version into DEST, each checked against its
    sha256 digest. Files already whole in DEST are kept; an interrupted download
    resumes where it stopped. Reference entries (ref) are not fetched."""
    client = _client(ctx, output)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=_is_json() or not err_console.is_terminal,
    ) as bar:
        task = bar.add_task(path[:60], total=None)
        report = client.download(
            path,
            dest,
            run_id=run_id,
            workers=workers,
            progress=lambda n: bar.advance(task, n),
            total=lambda n: bar.update(task, total=n),
        )
    summary = {"files": report.files, "bytes": report.bytes, "skipped": report.skipped}
    _emit(
        summary,
        lambda: console.print(
            f"{report.files} files ({report.bytes} bytes) written to {dest}"
            + (f", {report.skipped} already there" if report.skipped else "")
        ),
    )
