"""Whether the current statement runs inside a servicer's unit of work (not a
background task's): what the statement counts and the per-RPC session checks count."""

from __future__ import annotations

import sys

# Frames of the servicers' unit of work: `App.read/write` run `work`, `App.create`
# runs `run_idempotent`.
UNIT_OF_WORK = (
    ("registry_server/api/app.py", "work"),
    ("registry_server/api/app.py", "query"),
    ("registry_server/storage/async_pool.py", "_call"),  # PostgreSQL hot paths, in a greenlet
    ("registry_server/service/idempotency.py", "run_idempotent"),
)


def in_unit_of_work() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename.replace("\\", "/")
        for suffix, function in UNIT_OF_WORK:
            if frame.f_code.co_name == function and filename.endswith(suffix):
                return True
        frame = frame.f_back  # type: ignore[assignment]
    return False
