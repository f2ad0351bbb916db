"""Typed exceptions for failed calls, built from the server's `google.rpc.Status`.

Every error carries the status `code`, the server's `message`, the UPPER_SNAKE
`reason` and `metadata` of its `ErrorInfo` detail, and the `field_violations` of
its `BadRequest` detail, so callers can branch on them without parsing text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

# The trailing-metadata key grpc uses for a serialized google.rpc.Status.
_STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field and what is wrong with it."""

    field: str
    description: str


class RegistryError(Exception):
    """Base of every error the client raises for a failed call."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Sequence[FieldViolation] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: tuple[FieldViolation, ...] = tuple(field_violations)

    @property
    def code_name(self) -> str:
        """The status code's name, e.g. `NOT_FOUND`."""
        return str(self.code.name)

    @property
    def fields(self) -> list[str]:
        """Names of the request fields the server rejected."""
        return [v.field for v in self.field_violations]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (what `registry --output json` prints on failure)."""
        return {
            "code": self.code_name,
            "message": self.message,
            "reason": self.reason,
            "metadata": dict(self.metadata),
            "field_violations": [
                {"field": v.field, "description": v.description} for v in self.field_violations
            ],
        }

    def __str__(self) -> str:
        head = f"{self.code_name}: {self.message}"
        return f"{head} [{self.reason}]" if self.reason and self.reason != self.code_name else head

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgumentError(RegistryError):
    """Bad input; `field_violations` names the fields. Nothing was changed."""


class NotFoundError(RegistryError):
    """The resource does not exist, or the caller may not see it."""


class AlreadyExistsError(RegistryError):
    """A resource with that name already exists."""


class PermissionDeniedError(RegistryError):
    """The caller sees the resource but may not do this to it."""


class UnauthenticatedError(RegistryError):
    """No API key, or a key the server does not accept."""


class FailedPreconditionError(RegistryError):
    """The system is not in a state that allows the call (e.g. a read-only legacy registry)."""


class AbortedError(RegistryError):
    """A concurrent change won (etag or compare-and-set mismatch); re-read and retry."""


class UnavailableError(RegistryError):
    """The server could not be reached or is shutting down; retrying may succeed."""


class DeadlineExceededError(RegistryError):
    """The call did not finish within its deadline."""


class ResourceExhaustedError(RegistryError):
    """A quota or size limit was hit."""


class UnimplementedError(RegistryError):
    """The server does not offer this method (an older server version)."""


class InternalError(RegistryError):
    """The server failed unexpectedly."""


_BY_CODE: dict[grpc.StatusCode, type[RegistryError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
}


def error_class(code: grpc.StatusCode) -> type[RegistryError]:
    """The exception type raised for a status code."""
    return _BY_CODE.get(code, RegistryError)


def _status_details(exc: Any) -> status_pb2.Status | None:
    trailing = getattr(exc, "trailing_metadata", None)
    if not callable(trailing):
        return None
    try:
        metadata = trailing() or ()
    except Exception:
        return None
    for key, value in metadata:
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None


# What grpc says when the two ends disagree on TLS, before any answer: a plaintext client
# sees the TLS server close the connection; a TLS client's handshake meets plaintext.
_PLAINTEXT_TO_TLS = "Socket closed"
_TLS_TO_PLAINTEXT = "handshake failed"
TLS_MISMATCH = "TLS_MISMATCH"


def _connection_hint(message: str) -> str:
    """A sentence naming a likely TLS mismatch for an UNAVAILABLE `message`, or ''."""
    if "failed to connect" not in message:
        return ""
    if _TLS_TO_PLAINTEXT in message.lower():
        return (
            "TLS handshake failed: the server may not serve TLS (connect without TLS), "
            "or does not present a certificate your CA bundle trusts"
        )
    if _PLAINTEXT_TO_TLS in message:
        return (
            "the server closed the connection before answering: it may serve TLS only "
            "(connect with TLS: root certificates, `registry --ca-cert` or `--tls`)"
        )
    return ""


def from_rpc_error(exc: grpc.RpcError) -> RegistryError:
    """Turns a failed call into the matching typed exception."""
    code_fn = getattr(exc, "code", None)
    code = code_fn() if callable(code_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details_fn = getattr(exc, "details", None)
    message = (details_fn() if callable(details_fn) else None) or str(code.name)
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: list[FieldViolation] = []
    status = _status_details(exc)
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
    hint = _connection_hint(str(message)) if code is grpc.StatusCode.UNAVAILABLE else ""
    if hint:
        message, reason = f"{hint} ({message})", TLS_MISMATCH
    return error_class(code)(
        str(message),
        code=code,
        reason=reason or str(code.name),
        domain=domain,
        metadata=metadata,
        field_violations=violations,
    )


def invalid_argument(field: str, description: str) -> InvalidArgumentError:
    """An error for input the client rejects before calling the server."""
    return InvalidArgumentError(
        f"{field}: {description}",
        code=grpc.StatusCode.INVALID_ARGUMENT,
        reason="INVALID_ARGUMENT",
        metadata={"field": field},
        field_violations=[FieldViolation(field, description)],
    )
