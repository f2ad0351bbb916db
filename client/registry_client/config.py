"""Where `registry login` keeps the address and API key.

The file is `$REGISTRY_CONFIG_DIR/config.json` when that is set, otherwise
`$XDG_CONFIG_HOME/registry/config.json` (default `~/.config/registry/config.json`).
It holds a secret, so it is written with mode 0600 inside a 0700 directory, and
replaced atomically so a crash never leaves half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path

CONFIG_FILE = "config.json"
FILE_MODE = 0o600
DIR_MODE = 0o700


@dataclass
class Config:
    """What the command line remembers between runs."""

    address: str = ""
    api_key: str = ""
    # PEM files for TLS: CA bundle, and the client certificate and key for mutual TLS.
    ca_cert: str = ""
    client_cert: str = ""
    client_key: str = ""


def config_dir() -> Path:
    override = os.environ.get("REGISTRY_CONFIG_DIR")
    if override:
        return Path(override)
    xdg = os.environ.get("XDG_CONFIG_HOME")
    base = Path(xdg) if xdg else Path.home() / ".config"
    return base / "registry"


def config_path() -> Path:
    return config_dir() / CONFIG_FILE


def load_config() -> Config:
    """The saved configuration; an empty one when nothing was saved or it is unreadable."""
    path = config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Config()
    if not isinstance(data, dict):
        return Config()
    known = {f.name for f in fields(Config)}
    return Config(**{k: str(v) for k, v in data.items() if k in known and v is not None})


def save_config(config: Config) -> Path:
    """Writes the configuration readable by its owner only; returns the file's path."""
    directory = config_dir()
    directory.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    path = directory / CONFIG_FILE
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".json", dir=directory)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(config), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    os.chmod(path, FILE_MODE)
    return path


def clear_config() -> bool:
    """Forgets the saved configuration; False when there was none."""
    try:
        config_path().unlink()
    except FileNotFoundError:
        return False
    return True
