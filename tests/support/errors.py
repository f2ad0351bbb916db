"""What a failed call answered: its status code, message, `ErrorInfo` reason and
`BadRequest` fields; and the status codes by the short names the tests use."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
FAILED = grpc.StatusCode.FAILED_PRECONDITION
ABORTED = grpc.StatusCode.ABORTED
EXISTS = grpc.StatusCode.ALREADY_EXISTS


@dataclass
class Failure:
    code: grpc.StatusCode
    message: str
    reason: str
    fields: list[str]


def failure(exc: grpc.RpcError) -> Failure:
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    reason = ""
    fields: list[str] = []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason = info.reason
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields = [v.field for v in bad.field_violations]
    return Failure(exc.code(), exc.details() or "", reason, fields)


def expect_error(
    code: grpc.StatusCode,
    fn: object,
    *args: object,
    reason: str | None = None,
    field: str | None = None,
) -> Failure:
    """Calls fn(*args) and checks it fails with `code` (and reason / violated field)."""
    try:
        fn(*args)  # type: ignore[operator]
    except grpc.RpcError as exc:
        f = failure(exc)
        assert f.code == code, f"expected {code}, got {f.code}: {f.message}"
        if reason is not None:
            assert f.reason == reason, f"expected reason {reason}, got {f.reason}: {f.message}"
        if field is not None:
            assert field in f.fields or any(x.startswith(field) for x in f.fields), (
                f"expected field {field} in {f.fields}: {f.message}"
            )
        return f
    raise AssertionError(f"expected {code}, but the call succeeded")
