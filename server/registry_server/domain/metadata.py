"""A version's metadata: a JSON object of at most MAX_KEYS keys and MAX_BYTES (SPEC 2)."""

from __future__ import annotations

import json
from typing import Any

from .errors import InvalidArgument

MAX_KEYS = 100
MAX_BYTES = 64 * 1024


def merged(current: dict[str, Any], requested: dict[str, Any], field: str) -> dict[str, Any]:
    """`current` with the keys of `requested` set over it (identical content logged
    again), within the limits: INVALID_ARGUMENT naming `field` otherwise."""
    out = {**current, **requested}
    if len(out) > MAX_KEYS:
        raise InvalidArgument(
            field,
            f"at most {MAX_KEYS} keys: with the existing version's own it would hold {len(out)}",
        )
    if len(json.dumps(out, separators=(",", ":")).encode()) > MAX_BYTES:
        raise InvalidArgument(
            field, f"at most {MAX_BYTES} bytes, also with the existing version's own keys"
        )
    return out
