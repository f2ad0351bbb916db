"""Domain errors -> google.rpc.Status with ErrorInfo and BadRequest, in one place.

Every text a status carries is bounded here, whatever raised it: the message travels
twice (as `grpc-message`, percent-encoded, and inside `grpc-status-details-bin`), and
grpc clients refuse trailing metadata past 8 KiB (sometimes) and 16 KiB (always). Messages
quote at most `errors.QUOTE_MAX` characters of the caller's input already; this is the
guard for any text that escaped that.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..domain.errors import RegistryError, shorten

DOMAIN = "registry.v1"
# In UTF-8 bytes; worst case (every character 4 bytes, percent-encoded in grpc-message)
# the trailers stay under 8 KiB.
MESSAGE_MAX_BYTES = 1024
FIELD_MAX_BYTES = 256


def bounded(text: str, max_bytes: int) -> str:
    """`text`, shortened (`errors.shorten`) until its UTF-8 form fits in `max_bytes`."""
    if len(text.encode()) <= max_bytes:
        return text
    low, high = 0, min(len(text), max_bytes)  # the longest prefix that fits is in [low, high]
    while low < high:
        mid = (low + high + 1) // 2
        if len(shorten(text, mid).encode()) <= max_bytes:
            low = mid
        else:
            high = mid - 1
    return shorten(text, low)


def to_grpc_status(err: RegistryError) -> grpc.Status:
    code = getattr(grpc.StatusCode, err.code)
    status = status_pb2.Status(
        code=getattr(code_pb2, err.code), message=bounded(err.message, MESSAGE_MAX_BYTES)
    )
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(
            reason=err.reason,
            domain=DOMAIN,
            metadata={
                bounded(k, FIELD_MAX_BYTES): bounded(v, MESSAGE_MAX_BYTES)
                for k, v in err.metadata.items()
            },
        )
    )
    status.details.append(info)
    if err.field_violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=bounded(v.field, FIELD_MAX_BYTES),
                    description=bounded(v.description, MESSAGE_MAX_BYTES),
                )
                for v in err.field_violations
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad)
        status.details.append(detail)
    result = rpc_status.to_status(status)
    assert result.code == code
    return result
