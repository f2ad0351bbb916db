"""Domain errors. Each carries its status code name and an UPPER_SNAKE reason;
the API layer turns them into `google.rpc.Status` in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# How much of the caller's input a message quotes: a 20k-character name must still
# fit, with its BadRequest detail, in the client's 16 KiB limit on trailing metadata.
QUOTE_MAX = 200


def shorten(text: str, limit: int = QUOTE_MAX, *, quoted: bool = False) -> str:
    """`text` (its `repr` when `quoted`), cut to its first `limit` characters followed
    by `...(N more)` when longer."""
    shown = repr(text[:limit]) if quoted else text[:limit]
    if len(text) <= limit:
        return shown
    return f"{shown}...({len(text) - limit} more)"


def quote(value: str) -> str:
    """The caller's input as every message quotes it: `repr`, at most QUOTE_MAX characters."""
    return shorten(value, quoted=True)


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class RegistryError(Exception):
    """Base of every error a client may see. `code` is a grpc.StatusCode name."""

    code = "INTERNAL"
    default_reason = "INTERNAL"

    def __init_subclass__(cls, code: str = "") -> None:
        # `class NotFound(RegistryError, code="NOT_FOUND")`: the reason is the code.
        if code:
            cls.code = cls.default_reason = code

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        field_violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.field_violations = tuple(field_violations)
        self.metadata = dict(metadata or {})

    def __reduce__(self) -> tuple[Any, ...]:
        # Whole across a process boundary (the SQLite write child answers with errors).
        return (
            _rebuild,
            (type(self), self.message, self.reason, self.field_violations, self.metadata),
        )


def _rebuild(
    cls: type[RegistryError],
    message: str,
    reason: str,
    field_violations: tuple[FieldViolation, ...],
    metadata: dict[str, str],
) -> RegistryError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.message, err.reason = message, reason
    err.field_violations, err.metadata = field_violations, metadata
    if field_violations and isinstance(err, InvalidArgument):
        err.field = field_violations[0].field
    return err


class InvalidArgument(RegistryError, code="INVALID_ARGUMENT"):
    def __init__(self, field: str, description: str, *, reason: str | None = None) -> None:
        super().__init__(
            f"{field}: {description}",
            reason=reason,
            field_violations=[FieldViolation(field, description)],
            metadata={"field": field},
        )
        self.field = field


class Unauthenticated(RegistryError, code="UNAUTHENTICATED"): ...


class PermissionDenied(RegistryError, code="PERMISSION_DENIED"): ...


class NotFound(RegistryError, code="NOT_FOUND"): ...


class AlreadyExists(RegistryError, code="ALREADY_EXISTS"): ...


class FailedPrecondition(RegistryError, code="FAILED_PRECONDITION"): ...


class Aborted(RegistryError, code="ABORTED"): ...


class ResourceExhausted(RegistryError, code="RESOURCE_EXHAUSTED"): ...


class Unavailable(RegistryError, code="UNAVAILABLE"): ...


class DeadlineExceeded(RegistryError, code="DEADLINE_EXCEEDED"): ...
