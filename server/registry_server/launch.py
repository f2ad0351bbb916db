"""The `registry-server` command's entry point: the server needs the `server` extra,
which a plain `pip install artifact-registry` (the client) leaves out."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from .cli import main as run
    except ImportError as err:
        sys.exit(
            f"registry-server needs the server extra ({err.name} is missing): "
            "pip install 'artifact-registry[server]'"
        )
    run()
