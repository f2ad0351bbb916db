"""LinkArtifactVersion and AddAlias in a child process of their own.

In the server process every call needs the interpreter lock: on the event loop for
grpc's completion events and the handler, and on any writer thread for the Python
between a write's SQL statements. With both busy they hand the lock back and forth
several times per write, each side waiting for the other: on 2 cores a writer thread
kept SQLite's LinkArtifactVersion at ~850/s with a third of the CPU idle, where the
same server with a writer that did nothing answered ~1,800/s. A child process has a
lock of its own: the server only sends the checked request and reads back the answer.
On PostgreSQL the same holds for the statements' own cost (a batch on the event loop
waited behind every call the loop had queued at each of its round trips), so both
databases write here.

The server starts `python -m registry_server.workers.write_child` with one end of a
socket pair as its stdin (the database URL in its environment, as the migration runner
gets it). Frames both ways are a 4-byte big-endian length and a pickle:

    server -> child   (job id, change name, arguments)       (`workers.changes`)
    child -> server   (job id, the change's Written, the RegistryError it raised, or
                      None; the batch's commit number on PostgreSQL, else 0)

The child reads every frame that has arrived (up to `BATCH_MAX`), runs them as one
transaction (`changes.run_batch`: group commit), and answers the whole batch in one
write; the server gives each change's call the batch's commit number
(`storage.commits`: a client is told it, and any replica then answers at least that
new). None means "not done here": the server runs the same change on a worker thread.
The child stops at the end of its stdin, so it never outlives the server, whose kernel
closes the socket even after SIGKILL. If the child dies, the changes it had not
answered get None too: the worker thread then finds the database as the child left it
(a link it committed is "already linked", which the change answers). A child that
lived less than `HEALTHY_SECONDS` is not started again for `RETRY_SECONDS`; meanwhile
`submit` returns None.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import time
import weakref
from typing import Any

from .. import logs
from ..domain.errors import RegistryError
from ..storage import commits
from ..storage.db import Database
from . import changes

log = logging.getLogger("registry.write_child")

FRAME = struct.Struct("!I")
# Changes per transaction. A batch run again with a savepoint per change (`changes`)
# stays within PostgreSQL's 64 cached subtransactions, past which every other session's
# snapshot has to look them up in pg_subtrans.
BATCH_MAX = 64
HEALTHY_SECONDS = 5.0
RETRY_SECONDS = 30.0
STOP_SECONDS = 5.0
RECV_BYTES = 1 << 18
WRITES = "registry-write-child"  # its PostgreSQL session in pg_stat_activity


def _frame(message: Any) -> bytes:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return FRAME.pack(len(payload)) + payload


def _frames(buffer: bytearray, limit: int = 1 << 30) -> list[Any]:
    """Takes the complete frames (up to `limit`) off the front of `buffer`."""
    messages: list[Any] = []
    view = 0
    while len(messages) < limit and len(buffer) - view >= FRAME.size:
        (size,) = FRAME.unpack_from(buffer, view)
        end = view + FRAME.size + size
        if len(buffer) < end:
            break
        messages.append(pickle.loads(buffer[view + FRAME.size : end]))
        view = end
    del buffer[:view]
    return messages


# --- the server's side ------------------------------------------------------------------


class WriteChild:
    """The server's end: one child per database, answering on one event loop."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._sent = 0  # changes sent so far; also the last job id
        # job id -> (its future, the note of the call that sent it)
        self._waiting: dict[int, tuple[asyncio.Future[Any], commits.CommitNote | None]] = {}
        self._out = bytearray()
        self._in = bytearray()
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending = False
        self._started = 0.0
        self._paused_until = 0.0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def jobs(self) -> int:
        """Changes sent to a child so far."""
        return self._sent

    @property
    def waiting(self) -> int:
        """Changes sent and not answered yet."""
        return len(self._waiting)

    def start(self) -> bool:
        """Starts the child on the running loop unless it runs (or may not start now)."""
        if self._sock is not None:
            return True
        if time.monotonic() < self._paused_until:
            return False
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__],
                stdin=theirs.fileno(),
                env={**os.environ, "REGISTRY_DATABASE_URL": self.url},
            )
        except OSError as err:  # out of processes or memory
            ours.close()
            log.error("cannot start the write child (%s)", err)
            self._paused_until = time.monotonic() + RETRY_SECONDS
            return False
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock, self._loop, self._started = ours, loop, time.monotonic()
        loop.add_reader(ours.fileno(), self._readable)
        log.info("write child %d started", self._proc.pid)
        return True

    def submit(self, change: str, args: tuple[Any, ...]) -> asyncio.Future[Any] | None:
        """A future of the change's outcome (`changes.Outcome`); None when there is no
        child to take it (the caller writes another way)."""
        if not self.start() or asyncio.get_running_loop() is not self._loop:
            return None
        assert self._loop is not None
        self._sent += 1
        job = self._sent
        future = self._loop.create_future()
        self._waiting[job] = (future, commits.current_note())
        self._out += _frame((job, change, args))
        if not self._sending:  # the calls of this loop iteration go out in one send
            self._sending = True
            self._loop.call_soon(self._send)
        return future

    def _send(self) -> None:
        sock, loop = self._sock, self._loop
        if sock is None or loop is None:
            return
        try:
            sent = sock.send(self._out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._lost()
            return
        del self._out[:sent]
        if self._out:
            loop.add_writer(sock.fileno(), self._send)
        else:
            loop.remove_writer(sock.fileno())
            self._sending = False

    def _readable(self) -> None:
        assert self._sock is not None
        try:
            data = self._sock.recv(RECV_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._lost()
            return
        self._in += data
        for job, outcome, seq in _frames(self._in):
            future, note = self._waiting.pop(job, (None, None))
            if note is not None and seq:
                note.observe(seq)
            if future is not None and not future.done():
                future.set_result(outcome)

    def _lost(self) -> None:
        """The child is gone."""
        lived = time.monotonic() - self._started
        code = self._proc.poll() if self._proc is not None else None
        log.warning("write child %s exited (%s) after %.1f s", self.pid, code, lived)
        if lived < HEALTHY_SECONDS:
            self._paused_until = time.monotonic() + RETRY_SECONDS
        self._close_socket()

    def _close_socket(self) -> None:
        """Closes our end; what the child did not answer runs on a worker thread."""
        waiting, self._waiting = self._waiting, {}
        for future, _note in waiting.values():
            if not future.done():
                future.set_result(None)
        sock, loop = self._sock, self._loop
        self._sock = None
        self._out.clear()
        self._in.clear()
        self._sending = False
        if sock is None:
            return
        if loop is not None and not loop.is_closed():
            loop.remove_reader(sock.fileno())
            loop.remove_writer(sock.fileno())
        sock.close()

    def close(self) -> None:
        """Ends the child (end of its stdin, SIGKILL after STOP_SECONDS)."""
        self._close_socket()
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("write child %d did not stop; killing it", proc.pid)
            proc.kill()
            proc.wait()


_processes: weakref.WeakKeyDictionary[Database, WriteChild] = weakref.WeakKeyDictionary()


def start_write_child(db: Database) -> WriteChild | None:
    """Sends `db`'s hot writes to a child process from now on (not for an in-memory
    SQLite database: it is this process's alone). Call on the event loop."""
    if db.is_memory:
        return None
    process = _processes.get(db)
    if process is None:
        process = _processes[db] = WriteChild(db.url)
    process.start()
    return process


def write_child(db: Database) -> WriteChild | None:
    return _processes.get(db)


def stop_write_child(db: Database) -> None:
    process = _processes.pop(db, None)
    if process is not None:
        process.close()


# --- the child's side -------------------------------------------------------------------


def _read_batch(sock: socket.socket, buffer: bytearray) -> list[Any] | None:
    """Waits for at least one job, then takes every one that has arrived (up to
    BATCH_MAX); None at the end of the stream."""
    jobs = _frames(buffer, BATCH_MAX)
    while not jobs:
        data = sock.recv(RECV_BYTES)
        if not data:
            return None
        buffer += data
        jobs = _frames(buffer, BATCH_MAX)
    while len(jobs) < BATCH_MAX:
        try:
            data = sock.recv(RECV_BYTES, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not data:
            break  # the end: answer these first, the next read sees it
        buffer += data
        jobs += _frames(buffer, BATCH_MAX - len(jobs))
    return jobs


def serve(sock: socket.socket, db: Database) -> None:
    """Runs jobs from `sock` until it ends."""
    buffer = bytearray()
    while True:
        batch = _read_batch(sock, buffer)
        if batch is None:
            return
        note = commits.begin_call()
        outcomes = changes.run_batch(db, [(name, args) for _, name, args in batch])
        seq = _commit_number(db, note)
        reply = bytearray()
        for (job, _, _), outcome in zip(batch, outcomes, strict=True):
            reply += _frame((job, outcome, seq))
        sock.sendall(reply)


def _commit_number(db: Database, note: commits.CommitNote) -> int:
    """PostgreSQL: the batch's commit number (reported with its COMMIT), or when it
    committed nothing the newest one handed out (`storage.commits`); 0 on SQLite or
    when the database cannot say."""
    if db.is_sqlite or note.count:
        return note.seq
    try:
        return db.last_commit_number()
    except RegistryError:  # unavailable: the calls' own reads report it
        return 0


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C: the server stops us
    logs.configure(
        os.environ.get("REGISTRY_LOG_LEVEL", "WARNING"),
        text_format="%(asctime)s %(levelname)s %(name)s[write-child] %(message)s",
    )
    sock = socket.socket(fileno=os.dup(0))
    db = Database(os.environ["REGISTRY_DATABASE_URL"], pool_size=1, session=WRITES)
    try:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError, ConnectionError):
            serve(sock, db)
    finally:
        db.dispose()


if __name__ == "__main__":
    main()
