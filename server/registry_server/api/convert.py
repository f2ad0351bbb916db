"""Conversions shared by every servicer: times, JSON structs, field masks."""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.json_format import MessageToDict

from ..domain import names
from ..domain.errors import InvalidArgument, quote
from ..domain.metadata import MAX_BYTES as METADATA_MAX_BYTES
from ..domain.metadata import MAX_KEYS as METADATA_MAX_KEYS


def ts(micros: int | None) -> timestamp_pb2.Timestamp | None:
    if micros is None:
        return None
    seconds, rest = divmod(micros, 1_000_000)  # as Timestamp.FromMicroseconds, in C
    return timestamp_pb2.Timestamp(seconds=seconds, nanos=rest * 1000)


def user_ref(user: str | None) -> str:
    """`users/{user}`, or "" for none (a user since deleted, a row made by the system)."""
    return names.user_name(user) if user else ""


def name_parts(name: str, pattern: str, field: str) -> list[str]:
    """The variables of the resource name `name` in `pattern`'s order (`names.parse`,
    INVALID_ARGUMENT naming `field`): `org, registry = name_parts(...)`."""
    return list(names.parse(name, pattern, field).values())


def micros(value: timestamp_pb2.Timestamp, field: str) -> int:
    """A request Timestamp as microseconds; out-of-range values are INVALID_ARGUMENT."""
    try:
        return int(value.ToMicroseconds())
    except ValueError as e:
        raise InvalidArgument(field, str(e)) from None


def struct(data: dict[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if data:
        s.update(data)
    return s


def struct_to_dict(s: struct_pb2.Struct, field: str = "metadata") -> dict[str, Any]:
    """A metadata Struct as a JSON object, bounded: at most 100 keys and 64 KiB."""
    data = MessageToDict(s)
    if len(data) > METADATA_MAX_KEYS:
        raise InvalidArgument(field, f"at most {METADATA_MAX_KEYS} keys (got {len(data)})")
    if s.ByteSize() > METADATA_MAX_BYTES:
        raise InvalidArgument(field, f"at most {METADATA_MAX_BYTES} bytes")
    for key, value in data.items():
        if not key or len(key) > 128 or not key.isprintable():
            raise InvalidArgument(field, f"key {quote(key)} must be 1-128 printable characters")
        _check_value(value, f"{field}.{key}")
    result: dict[str, Any] = _normalize(data)
    return result


def _check_value(value: Any, field: str) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidArgument(field, "numbers must be finite")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_value(v, f"{field}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_value(v, f"{field}[{i}]")


def _normalize(value: Any) -> Any:
    """Struct numbers are doubles; store integral ones as ints so they read back alike."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


def mask_paths(mask: FieldMask, allowed: set[str], field: str = "update_mask") -> set[str]:
    """The update_mask's paths; `*` means all allowed. (An empty mask never gets here: the
    update_mask of every Update request is REQUIRED, see `required_fields`.)"""
    paths = set(mask.paths)
    if "*" in paths:
        return set(allowed)
    unknown = paths - allowed
    if unknown:
        raise InvalidArgument(
            field,
            f"unknown or immutable paths {sorted(unknown)}; allowed: {', '.join(sorted(allowed))}",
        )
    return paths


def enum_value(value: int, enum_type: Any, field: str, *, allow_unspecified: bool = False) -> int:
    """Rejects numbers outside the proto enum (grpcurl and other clients can send them)."""
    valid = set(enum_type.values())
    if value not in valid or (value == 0 and not allow_unspecified):
        known = [n for n in list(enum_type.keys()) if not n.endswith("_UNSPECIFIED")]
        raise InvalidArgument(field, f"must be one of {', '.join(known)} (got {value})")
    return value
