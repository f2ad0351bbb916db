"""REQUIRED request fields (google.api.field_behavior, AIP-203), checked for every call.

The interceptor hands each decoded request to `check_required`, so a request missing a
field its proto marks REQUIRED is INVALID_ARGUMENT naming that field before any handler
runs; handlers and use cases do not check presence again. What to check is read from
the descriptors once per message type.

Present means: a non-empty string, bytes or repeated field, a set message (a field mask
with at least one path: an empty `update_mask` says nothing), a non-zero enum, or a set
`optional` scalar. Other scalars cannot tell zero from unset, so a
REQUIRED on them is refused when the checks are built. The check goes into set fields
of non-resource messages (a `ManifestEntry` of a request: `manifest[2].digest`); a
resource's own REQUIRED fields concern the use case that creates it (AIP-203), which
checks them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from google.api import field_behavior_pb2, resource_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from ..domain.errors import InvalidArgument

_FIELD_MASK = "google.protobuf.FieldMask"
_NO_ZERO = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_ENUM)


@dataclass(frozen=True)
class _Field:
    name: str
    required: bool
    present: Callable[[Any], bool]
    repeated: bool
    nested: Descriptor | None  # a non-resource message type with REQUIRED fields inside


def _is_required(field: FieldDescriptor) -> bool:
    return (
        field_behavior_pb2.REQUIRED
        in field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    )


def _presence(field: FieldDescriptor, owner: Descriptor) -> Callable[[Any], bool]:
    name = field.name
    if field.is_repeated or field.type in _NO_ZERO:
        return lambda m: bool(getattr(m, name))
    if field.message_type is not None and field.message_type.full_name == _FIELD_MASK:
        return lambda m: bool(getattr(m, name).paths)
    if field.has_presence:
        return lambda m: m.HasField(name)
    raise TypeError(f"{owner.full_name}.{name}: REQUIRED on a scalar without presence")


def _checks(desc: Descriptor, building: frozenset[str] = frozenset()) -> tuple[_Field, ...]:
    cached = _CHECKS.get(desc.full_name)
    if cached is not None:
        return cached
    out = []
    for field in desc.fields:
        nested = None
        kind = field.message_type
        if (
            kind is not None
            and kind.full_name not in building
            and not kind.GetOptions().HasExtension(resource_pb2.resource)
            and not kind.GetOptions().map_entry
            and _checks(kind, building | {desc.full_name})
        ):
            nested = kind
        required = _is_required(field)
        if required or nested is not None:
            out.append(
                _Field(
                    field.name,
                    required,
                    _presence(field, desc),
                    field.is_repeated,
                    nested,
                )
            )
    checks = _CHECKS[desc.full_name] = tuple(out)
    return checks


_CHECKS: dict[str, tuple[_Field, ...]] = {}


def _check(message: Message, prefix: str) -> None:
    for f in _checks(message.DESCRIPTOR):
        if not f.present(message):
            if f.required:
                raise InvalidArgument(prefix + f.name, "is required")
            continue
        if f.nested is None:
            continue
        value = getattr(message, f.name)
        if f.repeated:
            for i, item in enumerate(value):
                _check(item, f"{prefix}{f.name}[{i}].")
        else:
            _check(value, f"{prefix}{f.name}.")


def check_required(request: Message) -> None:
    """INVALID_ARGUMENT naming the first REQUIRED field `request` lacks."""
    _check(request, "")
