"""Domain errors -> google.rpc.Status with ErrorInfo and BadRequest, in one place."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..domain.errors import RegistryError

DOMAIN = "registry.v1"


def to_grpc_status(err: RegistryError) -> grpc.Status:
    code = getattr(grpc.StatusCode, err.code)
    status = status_pb2.Status(code=getattr(code_pb2, err.code), message=err.message)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=err.metadata))
    status.details.append(info)
    if err.field_violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
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
