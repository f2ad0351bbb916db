"""Client side of the artifact registry: `Client`, typed errors, channels and stubs."""

from .channel import DEFAULT_TARGET, CommitToken, Stubs, open_channel
from .client import Client, RetryPolicy, manifest_from_directory, new_request_id
from .errors import (
    AbortedError,
    AlreadyExistsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RegistryError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from .pager import Pager

__all__ = [
    "DEFAULT_TARGET",
    "AbortedError",
    "AlreadyExistsError",
    "Client",
    "CommitToken",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "Pager",
    "PermissionDeniedError",
    "RegistryError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "Stubs",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "manifest_from_directory",
    "new_request_id",
    "open_channel",
]
