"""Runs the `registry` command as a subprocess: a clean environment, this server, this
key, this config directory, and standard input that is not a terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .world import Person

OK, ERROR, USAGE, NOT_FOUND, DENIED, INVALID = 0, 1, 2, 3, 4, 5

_SCRIPT = Path(sys.executable).with_name("registry")
COMMAND = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "registry_client.cli"]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        assert self.code == OK, f"exit {self.code}: {self.stderr}"
        return json.loads(self.stdout)

    def lines(self) -> list[Any]:
        assert self.code == OK, f"exit {self.code}: {self.stderr}"
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def error(self) -> dict[str, Any]:
        """The `{"error": ...}` a failed `--output json` command writes to stderr."""
        payload = json.loads(self.stderr.strip().splitlines()[-1])
        assert set(payload) == {"error"}
        return dict(payload["error"])


@dataclass
class Cli:
    """Runs `registry` with a clean environment: this key, this server, this config dir."""

    target: str | None
    key: str | None
    config_dir: Path

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        env.update(
            REGISTRY_CONFIG_DIR=str(self.config_dir),
            COLUMNS="250",
            NO_COLOR="1",
            TERM="dumb",
        )
        if self.target:
            env["REGISTRY_ADDRESS"] = self.target
        if self.key:
            env["REGISTRY_API_KEY"] = self.key
        env.update(extra or {})
        return env

    def __call__(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> Result:
        done = subprocess.run(
            [*COMMAND, *args],
            input=input if input is not None else "",  # never a terminal: no prompt waits
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=timeout,
            check=False,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def as_(self, person: Person) -> Cli:
        return Cli(self.target, person.key, self.config_dir)

    def json(self, *args: str) -> Any:
        return self(*args, "--output", "json").json()


def assert_code(result: Result, code: int, error_code: str | None = None) -> None:
    assert result.code == code, f"expected exit {code}, got {result.code}: {result.stderr}"
    if error_code is not None:
        assert result.error()["code"] == error_code
