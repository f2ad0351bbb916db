"""The hot write child's framing (service/write_process.py): any split of the byte
stream gives back the same messages; an in-memory database keeps its writes in the
server's process. The child itself: tests/process/test_write_process.py."""

from __future__ import annotations

import asyncio

from registry_server.service import write_process
from registry_server.storage.db import Database


def test_frames_survive_any_split() -> None:
    messages = [(1, "_link", ("x" * 300,)), (2, "_add_alias", (None, 7)), (3, None, ())]
    stream = b"".join(write_process._frame(msg) for msg in messages)
    for cut in range(len(stream) + 1):
        buffer = bytearray(stream[:cut])
        got = write_process._frames(buffer)
        buffer += stream[cut:]
        got += write_process._frames(buffer)
        assert got == messages and not buffer, cut


def test_an_in_memory_database_keeps_its_writes_in_process() -> None:
    async def check() -> None:
        assert write_process.use_write_process(Database("sqlite://")) is None

    asyncio.run(check())
