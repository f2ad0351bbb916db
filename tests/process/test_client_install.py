"""`pip install artifact-registry` is the client alone: a wheel of the project,
installed into a fresh virtualenv, brings the stubs and `registry_client` with grpcio,
grpcio-status, protobuf and googleapis-common-protos only, and talks to the server;
the server's dependencies (SQLAlchemy, uvloop, psycopg, ...) and the command line's
(typer, rich) stay out, and `registry` says which extra it needs."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

from ..support.servers import ServerThread
from ..support.world import World

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = ("sqlalchemy", "alembic", "psycopg", "uvloop", "greenlet", "cryptography")
CLI_ONLY = ("typer", "rich")


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, cwd=cwd
    )


def test_the_base_package_is_the_client_alone(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    built = _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "-w", tmp_path / "dist", ROOT,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "dist").glob("artifact_registry-*.whl")
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    installed = _run(python, "-m", "pip", "install", "--quiet", wheel)
    assert installed.returncode == 0, installed.stderr
    listed = _run(python, "-m", "pip", "list", "--format=freeze")
    packages = {line.split("==")[0].lower() for line in listed.stdout.split()}
    assert {"grpcio", "grpcio-status", "protobuf", "googleapis-common-protos"} <= packages
    assert not packages & {*SERVER_ONLY, *CLI_ONLY, "psycopg-binary"}, packages
    script = (
        "import importlib.util, sys\n"
        "from registry_client import Client\n"
        "from registry.v1 import artifact_service_pb2_grpc\n"
        f"absent = [m for m in {SERVER_ONLY + CLI_ONLY!r} if importlib.util.find_spec(m)]\n"
        "assert not absent, absent\n"
        "with Client(sys.argv[1], sys.argv[2]) as client:\n"
        "    print(client.whoami().name)\n"
    )
    used = _run(python, "-c", script, server.target, world.admin.key, cwd=tmp_path)
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip() == world.admin.name
    command = _run(env / "bin" / "registry", "whoami")
    assert command.returncode == 1
    assert "pip install 'artifact-registry[cli]'" in command.stderr
