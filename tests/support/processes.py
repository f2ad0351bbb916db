"""`registry-server` as a child process: `serve` (two wrappers: `Proc` takes any flags
and speaks TLS; `ServerProcess` sets the migration knobs and kills its children with
it), `bootstrap` and the other commands, free ports, and the processes a server starts
(its migration runner and SQLite write children)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from registry_client import Stubs, open_channel

BIN = Path(sys.executable).parent
# The organization `bootstrap` creates.
ROOT_ORG = "root"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "registry-server"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


class Proc:
    """`registry-server serve` as a child process; its log goes to a file (a pipe
    nobody reads would fill up and block the server)."""

    def __init__(self, args: list[str], port: int, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in stop()
            prefix="registry-server-", suffix=".log", delete=False
        )
        self.proc = subprocess.Popen(
            [str(BIN / "registry-server"), "serve", "--address", f"127.0.0.1:{port}", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def wait_healthy(self, channel: grpc.Channel | None = None, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        # First the port, with a bare socket: a TLS channel whose first connection was
        # refused waited out its 20 s connect timeout on the next one (grpcio 1.78).
        while not port_open(self.port):
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"server did not listen: {self.output()}")
            time.sleep(0.05)
        channel = channel or grpc.insecure_channel(f"127.0.0.1:{self.port}")
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited: {self.output()}")
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
        raise AssertionError("server did not become healthy")

    def stop(self) -> str:
        """SIGTERM (if still running), wait, and return the log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # never left running after the test
            raise
        self.log.close()
        out = self.output()
        Path(self.log.name).unlink(missing_ok=True)
        return out

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def bootstrap(url: str) -> str:
    result = subprocess.run(
        [
            str(BIN / "registry-server"),
            "bootstrap",
            "--organization",
            ROOT_ORG,
            "--admin",
            "boss",
            "--database-url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def child_pids(pid: int) -> list[int]:
    """Live child processes of `pid` (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return [p for p in pids if alive(p)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
    except OSError:
        return ""


def runner_pids(pid: int) -> list[int]:
    """Live migration runner children of server `pid`."""
    return [p for p in child_pids(pid) if "run-migrations" in _cmdline(p)]


def write_process_pids(pid: int) -> list[int]:
    """Live write children of server `pid` (workers/write_child.py)."""
    return [p for p in child_pids(pid) if "write_child" in _cmdline(p)]


def alive(pid: int) -> bool:
    """Running: neither gone nor a zombie waiting for its parent."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid):
        assert time.monotonic() < deadline, f"process {pid} is still running"
        time.sleep(0.05)


class ServerProcess:
    """`registry-server serve` on a free port, with its log in a file."""

    def __init__(
        self,
        url: str,
        log_dir: Path,
        *,
        lease_seconds: float,
        delay_ms: int,
        wait: bool = True,
        log_level: str = "WARNING",
        runner: str = "process",
        busy_share: float | None = None,
    ) -> None:
        self.port = free_port()
        self.log = log_dir / f"server-{self.port}.log"
        env = {
            **os.environ,
            "REGISTRY_DATABASE_URL": url,
            "REGISTRY_MIGRATION_LEASE_SECONDS": str(lease_seconds),
            "REGISTRY_MIGRATION_BATCH_DELAY_MS": str(delay_ms),
            "REGISTRY_LOG_LEVEL": log_level,
            "REGISTRY_MIGRATION_RUNNER": runner,
        }
        if busy_share is not None:
            env["REGISTRY_MIGRATION_BUSY_SHARE"] = str(busy_share)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "registry-server"), "serve", "--address", f"127.0.0.1:{self.port}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        if wait:
            self.wait_healthy()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 30) -> None:
        fast_retry = [
            ("grpc.initial_reconnect_backoff_ms", 50),
            ("grpc.min_reconnect_backoff_ms", 50),
            ("grpc.max_reconnect_backoff_ms", 100),
        ]
        with grpc.insecure_channel(self.target, options=fast_retry) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == 1:
                        return
                except grpc.RpcError:
                    time.sleep(0.05)
        raise AssertionError(f"server did not become healthy: {self.log.read_text()}")

    def runner(self, other_than: int | None = None, timeout: float = 30) -> int:
        """The pid of the server's migration runner process (a new one: not `other_than`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = [p for p in runner_pids(self.proc.pid) if p != other_than]
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"no runner process: {self.log.read_text()}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL to the server and its migration runner process, as a crash of the
        machine would: no shutdown code runs, the lease is left to expire."""
        for pid in [*child_pids(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def admin_stubs(target: str, key: str) -> tuple[grpc.Channel, Stubs]:
    channel = open_channel(target, key)
    return channel, Stubs.on(channel)


def pid_of(owner: str | None) -> int:
    """Replica ids are `host:pid:random` (registry-server serve)."""
    assert owner, "no lease owner"
    return int(owner.split(":")[1])
