"""The write child's framing (workers/write_child.py): any split of the byte stream
gives back the same messages; an in-memory database keeps its writes in the server's
process. The child itself: tests/process/test_write_process.py."""

from __future__ import annotations

import asyncio

from registry_server.storage.db import Database
from registry_server.workers import write_child


def test_frames_survive_any_split() -> None:
    messages = [(1, "link", ("x" * 300,)), (2, "add_alias", (None, 7)), (3, None, ())]
    stream = b"".join(write_child._frame(msg) for msg in messages)
    for cut in range(len(stream) + 1):
        buffer = bytearray(stream[:cut])
        got = write_child._frames(buffer)
        buffer += stream[cut:]
        got += write_child._frames(buffer)
        assert got == messages and not buffer, cut


def test_an_in_memory_database_keeps_its_writes_in_process() -> None:
    async def check() -> None:
        assert write_child.start_write_child(Database("sqlite://")) is None

    asyncio.run(check())
