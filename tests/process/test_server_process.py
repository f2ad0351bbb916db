"""The `registry-server` process: start-up checks, health, TLS, graceful shutdown."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from registry.v1 import artifact_service_pb2 as art_pb
from registry.v1 import organization_service_pb2 as pb
from registry_client import Stubs, open_channel

from ..support.certs import make_pki
from ..support.processes import BIN, Proc, admin_stubs, free_port, run_cli


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@pytest.fixture
def bootstrapped(sqlite_file: str) -> Iterator[tuple[str, str]]:
    result = run_cli(
        "bootstrap", "--organization", "acme", "--admin", "alice", "--database-url", sqlite_file
    )
    assert result.returncode == 0, result.stderr
    key = result.stdout.strip()
    assert key.startswith("rk_") and "\n" not in key  # the key alone on stdout
    yield sqlite_file, key


def test_empty_file_is_upgraded_and_served(sqlite_file: str) -> None:
    port = free_port()
    proc = Proc(["--database-url", sqlite_file], port)
    try:
        proc.wait_healthy()
        reflection = subprocess.run(
            [str(BIN / "grpcurl"), "-plaintext", f"127.0.0.1:{port}", "list"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if reflection.returncode == 0:  # grpcurl present (dev extra)
            services = reflection.stdout.split()
            assert "registry.v1.OrganizationService" in services
            assert "grpc.health.v1.Health" in services
            assert "grpc.reflection.v1alpha.ServerReflection" in services
    finally:
        proc.stop()


def test_outdated_schema_is_refused_with_the_command_to_run(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
    conn.execute("INSERT INTO alembic_version VALUES ('0000_old')")
    conn.execute("CREATE TABLE something (id INTEGER)")
    conn.commit()
    conn.close()
    result = subprocess.run(
        [str(BIN / "registry-server"), "serve", "--address", f"127.0.0.1:{free_port()}",
         "--database-url", f"sqlite:///{path}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "registry-server db upgrade" in result.stderr


def test_bootstrap_twice_fails_cleanly(bootstrapped: tuple[str, str]) -> None:
    url, _ = bootstrapped
    for org in ("acme", "other"):
        again = run_cli("bootstrap", "--organization", org, "--admin", "bob", "--database-url", url)
        assert again.returncode == 2
        assert "already has an organization (organizations/acme)" in again.stderr
        assert again.stdout == ""


def test_sigterm_lets_in_flight_calls_finish(bootstrapped: tuple[str, str]) -> None:
    url, key = bootstrapped
    port = free_port()
    proc = Proc(["--database-url", url, "--grace", "5"], port)
    proc.wait_healthy()
    stubs = Stubs.on(open_channel(f"127.0.0.1:{port}", key))
    request = pb.ListUsersRequest(parent="organizations/acme")
    # connected and authenticated first, so that the calls below reach the server at
    # once rather than racing the signal for a connection
    stubs.organizations.ListUsers(request, timeout=10)
    futures = [stubs.organizations.ListUsers.future(request) for _ in range(50)]
    proc.proc.send_signal(signal.SIGTERM)
    results = []
    for f in futures:
        try:
            results.append(f.result(timeout=10))
        except grpc.RpcError as e:
            # calls that had not reached the server before shutdown are refused, not broken
            assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), e
    assert results, "no in-flight call completed"
    assert proc.proc.wait(timeout=15) == 0
    assert "shutting down" in proc.stop()


def test_serves_on_uvloop_and_stops_on_sigint(bootstrapped: tuple[str, str]) -> None:
    url, key = bootstrapped
    port = free_port()
    proc = Proc(["--database-url", url], port)
    try:
        proc.wait_healthy()
        stubs = Stubs.on(open_channel(f"127.0.0.1:{port}", key))
        users = stubs.organizations.ListUsers(pb.ListUsersRequest(parent="organizations/acme"))
        assert [u.name for u in users.users] == ["users/alice"]
        proc.proc.send_signal(signal.SIGINT)
        assert proc.proc.wait(timeout=15) == 0
    finally:
        out = proc.stop()  # SIGTERM first if it still runs
    assert "uvloop.Loop" in out and "shutting down" in out


def test_tls_and_mutual_tls(bootstrapped: tuple[str, str], tmp_path: Path) -> None:
    url, key = bootstrapped
    pki = make_pki(tmp_path)
    ca = pki.ca_cert.read_bytes()

    # server-side TLS only
    port = free_port()
    tls_args = ["--database-url", url, "--tls-cert", str(pki.server_cert),
                "--tls-key", str(pki.server_key)]  # fmt: skip
    proc = Proc(tls_args, port)
    try:
        channel = open_channel(f"127.0.0.1:{port}", key, root_certificates=ca)
        proc.wait_healthy(channel)
        me = Stubs.on(channel).organizations.GetCurrentUser(pb.GetCurrentUserRequest(), timeout=5)
        assert me.name == "users/alice"
        plain = Stubs.on(open_channel(f"127.0.0.1:{port}", key))
        with pytest.raises(grpc.RpcError) as exc:
            plain.organizations.GetCurrentUser(pb.GetCurrentUserRequest(), timeout=3)
        assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.stop()

    # mutual TLS: a client certificate from the trusted CA is required
    port = free_port()
    proc = Proc([*tls_args, "--tls-client-ca", str(pki.ca_cert)], port)
    try:
        good = open_channel(
            f"127.0.0.1:{port}",
            key,
            root_certificates=ca,
            private_key=pki.client_key.read_bytes(),
            certificate_chain=pki.client_cert.read_bytes(),
        )
        proc.wait_healthy(good)
        me = Stubs.on(good).organizations.GetCurrentUser(pb.GetCurrentUserRequest(), timeout=5)
        assert me.name == "users/alice"
        for channel in [
            open_channel(f"127.0.0.1:{port}", key, root_certificates=ca),
            open_channel(
                f"127.0.0.1:{port}",
                key,
                root_certificates=ca,
                private_key=pki.other_client_key.read_bytes(),
                certificate_chain=pki.other_client_cert.read_bytes(),
            ),
        ]:
            with pytest.raises(grpc.RpcError) as exc:
                Stubs.on(channel).organizations.GetCurrentUser(
                    pb.GetCurrentUserRequest(), timeout=3
                )
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.stop()


def _posix_locks(pid: int, inode: int) -> list[tuple[int, str]]:
    """(start byte, READ or WRITE) of the POSIX locks `pid` holds on file `inode`."""
    held = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if (
            fields[1] == "POSIX"
            and int(fields[4]) == pid
            and int(fields[5].rsplit(":", 1)[1]) == inode
        ):
            held.append((int(fields[6]), fields[3]))
    return held


def test_reading_the_commit_header_keeps_sqlites_locks(bootstrapped: tuple[str, str]) -> None:
    """Kept replies map the SQLite file's wal-index header. Closing a descriptor of the
    -shm file would release every POSIX lock the server holds on it, among them SQLite's
    "in use" lock (byte 128), and the next process to open the database (a restarted
    write child, the migration runner, a command) would rebuild the wal-index under the
    server's mapping of it."""
    url, key = bootstrapped
    port = free_port()
    proc = Proc(["--database-url", url], port)
    try:
        proc.wait_healthy()
        channel, stubs = admin_stubs(f"127.0.0.1:{port}", key)
        with channel:
            for _ in range(3):  # a kept method: the first lookup maps the header
                with pytest.raises(grpc.RpcError) as failed:
                    stubs.artifacts.ResolvePath(art_pb.ResolvePathRequest(path="t/p/a:v0"))
                assert failed.value.code() == grpc.StatusCode.NOT_FOUND
        inode = os.stat(url.removeprefix("sqlite:///") + "-shm").st_ino
        held = _posix_locks(proc.proc.pid, inode)
        assert (128, "READ") in held, held
    finally:
        proc.stop()
