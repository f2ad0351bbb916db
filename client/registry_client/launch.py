"""The `registry` command's entry point: the command line needs the `cli` extra
(typer, rich), which a plain `pip install artifact-registry` leaves out."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as run
    except ImportError as err:
        sys.exit(
            f"the registry command needs the cli extra ({err.name} is missing): "
            "pip install 'artifact-registry[cli]'"
        )
    run()
