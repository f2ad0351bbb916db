"""Links and alias moves in a child process (workers/write_child.py): they run there,
a child that dies leaves its calls to a worker thread, and no child outlives its
server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from registry.v1 import resources_pb2 as r
from registry_server.storage.db import Database
from registry_server.storage.migrate import upgrade
from registry_server.workers import write_child as write_process
from registry_server.workers.write_child import WriteChild

from ..support.content import create_registry, grant, link, log_version, make_lab
from ..support.processes import alive, wait_gone
from ..support.servers import ServerThread
from ..support.world import World


def _child(server: ServerThread) -> WriteChild:
    process = write_process.write_child(server.app.db)
    assert process is not None
    return process


def _wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_links_are_written_by_the_child(world: World, server: ServerThread) -> None:
    process = _child(server)
    pid = process.pid
    assert pid is not None and pid != os.getpid() and alive(pid)
    owner = world.person("wp-owner")
    lab = make_lab(world, owner)
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    sources = [log_version(lab) for _ in range(12)]
    before = process.jobs
    for i in range(3):  # links that create their collection run there too
        link(owner, registry, f"c{i}", sources[i].name)
    assert process.jobs - before == 3
    before = process.jobs
    # concurrent calls: the child takes them in batches, each answered on its own
    with ThreadPoolExecutor(6) as pool:
        replies = list(
            pool.map(lambda i: link(owner, registry, f"c{i % 3}", sources[i].name), range(3, 12))
        )
    assert process.jobs - before == 9
    assert process.pid == pid
    indices: dict[str, list[int]] = {}
    for reply in replies:
        indices.setdefault(reply.name.split("/")[-3], []).append(reply.version_index)
    assert {c: sorted(v) for c, v in indices.items()} == {f"c{i}": [1, 2, 3] for i in range(3)}


def test_calls_of_a_dead_child_are_answered_on_a_worker_thread(
    world: World, server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    process = _child(server)
    monkeypatch.setattr(write_process, "HEALTHY_SECONDS", 0.0)  # restart at once
    owner = world.person("wp-crash")
    lab = make_lab(world, owner)
    registry = create_registry(world)
    grant(world, registry, owner.name, r.REGISTRY_ROLE_MEMBER)
    first, second, third = (log_version(lab) for _ in range(3))
    link(owner, registry, "models", first.name)
    pid = process.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the child takes the job but never answers
    try:
        with ThreadPoolExecutor(1) as pool:
            call = pool.submit(link, owner, registry, "models", second.name, ("prod",))
            _wait_for(lambda: process.waiting > 0)
            os.kill(pid, signal.SIGKILL)
            reply = call.result(30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # (reaped once killed)
            os.kill(pid, signal.SIGCONT)
    assert reply.version_index == 1 and list(reply.aliases) == ["latest", "prod"]
    assert reply.artifact_version == second.name
    wait_gone(pid)
    # the next hot write starts another child
    again = link(owner, registry, "models", third.name)
    assert again.version_index == 2
    assert process.pid not in (None, pid) and alive(process.pid)  # type: ignore[arg-type]


def test_a_child_ends_with_its_server_end() -> None:
    with tempfile.TemporaryDirectory(prefix="registry-wp-") as d:
        url = f"sqlite:///{Path(d) / 'registry.db'}"
        upgrade(url)
        db = Database(url)

        async def start() -> WriteChild | None:
            return write_process.start_write_child(db)

        loop = asyncio.new_event_loop()
        try:
            process = loop.run_until_complete(start())
            assert process is not None and process.pid is not None
            pid = process.pid
            assert alive(pid)
            # closing our end is all it takes (the kernel does it when the server dies)
            write_process.stop_write_child(db)
            assert process.pid is None and not alive(pid)
            assert write_process.write_child(db) is None
        finally:
            loop.close()
            db.dispose()


def test_a_change_the_child_does_not_know_is_not_run() -> None:
    """`python -m registry_server.workers.write_child` answers None for a change that is
    not one of `changes.CHANGES` (the server runs it on a worker thread, which reports
    it), and exits when its input ends."""
    with tempfile.TemporaryDirectory(prefix="registry-wp-") as d:
        url = f"sqlite:///{Path(d) / 'registry.db'}"
        upgrade(url)
        ours, theirs = socket.socketpair()
        proc = subprocess.Popen(
            [sys.executable, "-m", "registry_server.workers.write_child"],
            stdin=theirs,
            env={**os.environ, "REGISTRY_DATABASE_URL": url},
        )
        theirs.close()
        try:
            ours.settimeout(30)
            ours.sendall(write_process._frame((7, "drop_everything", ())))
            buffer = bytearray()
            answers: list[object] = []
            while not answers:
                data = ours.recv(4096)
                assert data, "the child ended without answering"
                buffer += data
                answers = write_process._frames(buffer)
            assert answers == [(7, None, 0)]  # (job, outcome, commit number)
        finally:
            ours.close()
        assert proc.wait(10) == 0
