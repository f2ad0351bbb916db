"""What an operator meets first: `make run` and `make help` with the address and the
database they will use, `bootstrap` and `serve` naming one database, a taken port in one
line, and a TLS mismatch that says so (in `registry_client` and the `registry` command)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from registry_client import Client, UnavailableError
from registry_client.errors import TLS_MISMATCH

from ..support.certs import make_pki
from ..support.processes import BIN, Proc, free_port, run_cli

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _sqlite_only() -> None:
    if os.environ.get("REGISTRY_TEST_DATABASE") == "postgres":
        pytest.skip("the default database file and make run are SQLite's")


def _env(**values: str) -> dict[str, str]:
    """The environment without any REGISTRY_* setting, plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
    return {**env, **values}


def _make(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["make", "-s", "-C", str(REPO), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # make and the server it starts stop together
    )


def _answers_alice(proc: subprocess.Popen[str], port: int, key: str) -> None:
    """Waits until the server `proc` started serves on `port` and knows alice's `key`."""
    with Client(f"127.0.0.1:{port}", key) as client:
        for _ in range(100):
            try:
                assert client.whoami().name == "users/alice"
                return
            except UnavailableError:
                assert proc.poll() is None, proc.communicate()[0]
    raise AssertionError("the server did not answer")


def _serves_on(make: subprocess.Popen[str], port: int, key: str) -> str:
    """Waits until `make run` serves on `port` (as alice), stops it, returns its log."""
    try:
        _answers_alice(make, port, key)
    finally:
        os.killpg(make.pid, signal.SIGTERM)
        out = make.communicate(timeout=30)[0]
    return out


@pytest.fixture
def bootstrapped_file(tmp_path: Path) -> Iterator[tuple[str, str]]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    result = run_cli("bootstrap", "--organization", "acme", "--admin", "alice", env=_env(
        REGISTRY_DATABASE_URL=url))  # fmt: skip
    assert result.returncode == 0, result.stderr
    yield url, result.stdout.strip()


@pytest.mark.parametrize("how", ["ADDRESS=", "REGISTRY_ADDRESS="])
def test_make_run_takes_the_address_either_way(
    bootstrapped_file: tuple[str, str], how: str
) -> None:
    url, key = bootstrapped_file
    port = free_port()
    address = f"127.0.0.1:{port}"
    if how == "ADDRESS=":
        make = _make("run", f"ADDRESS={address}", env=_env(REGISTRY_DATABASE_URL=url))
    else:
        make = _make("run", env=_env(REGISTRY_ADDRESS=address, REGISTRY_DATABASE_URL=url))
    out = _serves_on(make, port, key)
    assert f"serving on {address}" in out and f"over {url}" in out


def test_make_help_prints_the_values_in_use(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    out = subprocess.run(
        ["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True, timeout=60,
        env=_env(REGISTRY_ADDRESS="127.0.0.1:50999", REGISTRY_DATABASE_URL=url),
    ).stdout  # fmt: skip
    assert f"Serve on 127.0.0.1:50999 over {url}" in out
    default = subprocess.run(
        ["make", "-s", "-C", str(REPO), "help"], capture_output=True, text=True, timeout=60,
        env=_env(),
    ).stdout  # fmt: skip
    assert f"Serve on 127.0.0.1:50051 over sqlite:///{REPO}/registry.db" in default
    assert "$(" not in out + default


def test_bootstrap_and_serve_name_the_same_default_database(tmp_path: Path) -> None:
    """Without --database-url both use registry.db in the working directory (or
    REGISTRY_DATABASE_URL), and both say which file that is; bootstrap says when it is new."""
    here = tmp_path / "elsewhere"
    here.mkdir()
    expected = f"sqlite:///{here / 'registry.db'}"
    boot = subprocess.run(
        [str(BIN / "registry-server"), "bootstrap", "--organization", "acme", "--admin", "alice"],
        capture_output=True, text=True, timeout=120, cwd=here, env=_env(),
    )  # fmt: skip
    assert boot.returncode == 0, boot.stderr
    assert f"bootstrapping {expected} (a new file)" in boot.stderr
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "registry-server"), "serve", "--address", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=here, env=_env(),
    )  # fmt: skip
    try:
        _answers_alice(proc, port, boot.stdout.strip())
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert f"over {expected}" in out and "(a new file)" not in out
    again = run_cli("bootstrap", "--organization", "acme", "--admin", "alice", env=_env(
        REGISTRY_DATABASE_URL=expected))  # fmt: skip
    assert again.returncode == 2 and f"bootstrapping {expected}\n" in again.stderr


def test_a_taken_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(BIN / "registry-server"), "serve", "--address", f"127.0.0.1:{port}",
             "--database-url", f"sqlite:///{tmp_path / 'registry.db'}"],
            capture_output=True, text=True, timeout=60, env=_env(),
        )  # fmt: skip
    assert result.returncode == 1
    line = f"registry-server: cannot listen on 127.0.0.1:{port}: address already in use"
    assert result.stderr.strip() == line  # before the database is opened: nothing else


def test_a_tls_mismatch_says_so(bootstrapped_file: tuple[str, str], tmp_path: Path) -> None:
    url, key = bootstrapped_file
    pki = make_pki(tmp_path)
    tls_port, plain_port = free_port(), free_port()
    tls = Proc(["--database-url", url, "--tls-cert", str(pki.server_cert),
                "--tls-key", str(pki.server_key)], tls_port)  # fmt: skip
    plain = Proc(["--database-url", url], plain_port)
    try:
        plain.wait_healthy()
        tls.wait_healthy(
            grpc.secure_channel(
                f"127.0.0.1:{tls_port}",
                grpc.ssl_channel_credentials(pki.ca_cert.read_bytes()),
            )
        )
        # a plaintext client against the TLS server: the command line
        cli = subprocess.run(
            [str(BIN / "registry"), "--address", f"127.0.0.1:{tls_port}", "--timeout", "2",
             "whoami"],
            capture_output=True, text=True, timeout=120, env=_env(REGISTRY_API_KEY=key,
                                                                   HOME=str(tmp_path)),
        )  # fmt: skip
        assert cli.returncode == 1, cli.stderr
        said = " ".join(cli.stderr.split())  # the console wraps long lines
        assert "it may serve TLS only" in said and "Traceback" not in said
        # a TLS client against the plaintext server: the library
        with (
            Client(
                f"127.0.0.1:{plain_port}",
                key,
                root_certificates=pki.ca_cert.read_bytes(),
                timeout=2,
            ) as client,  # fmt: skip
            pytest.raises(UnavailableError) as err,
        ):
            client.whoami()
        assert err.value.reason == TLS_MISMATCH
        assert "TLS handshake failed: the server may not serve TLS" in err.value.message
        # nobody listening is not a TLS mismatch
        with (
            Client(f"127.0.0.1:{free_port()}", key, timeout=2) as client,
            pytest.raises(UnavailableError) as refused,
        ):
            client.whoami()
        assert refused.value.reason == "UNAVAILABLE" and "TLS" not in refused.value.message
    finally:
        tls.stop()
        plain.stop()
