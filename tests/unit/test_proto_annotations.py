"""The protos' AIP annotations hold together: every resource message declares its type
and name pattern, every resource reference names a declared type, and every REQUIRED
field is one whose absence the server can tell (so `api/required_fields` can check it)."""

from __future__ import annotations

import contextlib
import re

from google.api import field_behavior_pb2, resource_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message_factory import GetMessageClass

from registry.v1 import resources_pb2
from registry_server.api.required_fields import check_required
from registry_server.domain.errors import InvalidArgument

from ..support.services import SERVICE_MODULES


def _messages() -> list[Descriptor]:
    out = list(resources_pb2.DESCRIPTOR.message_types_by_name.values())
    for module in SERVICE_MODULES:
        out.extend(module.DESCRIPTOR.message_types_by_name.values())
    return out


def _resources() -> dict[str, resource_pb2.ResourceDescriptor]:
    return {
        m.GetOptions().Extensions[resource_pb2.resource].type: m.GetOptions().Extensions[
            resource_pb2.resource
        ]
        for m in _messages()
        if m.GetOptions().HasExtension(resource_pb2.resource)
    }


def _behaviors(field: FieldDescriptor) -> list[int]:
    return list(field.GetOptions().Extensions[field_behavior_pb2.field_behavior])


def test_messages_with_an_identifier_name_are_resources() -> None:
    for message in _messages():
        name = message.fields_by_name.get("name")
        identifier = name is not None and field_behavior_pb2.IDENTIFIER in _behaviors(name)
        declared = message.GetOptions().HasExtension(resource_pb2.resource)
        assert identifier == declared, message.full_name
        if declared:
            resource = message.GetOptions().Extensions[resource_pb2.resource]
            assert resource.type == f"registry.example/{message.name}"
            for pattern in resource.pattern:
                assert re.fullmatch(r"[a-z][A-Za-z]*(/(\{[a-z_]+\}|[a-z][A-Za-z]*))*", pattern)


def test_references_name_declared_resources() -> None:
    declared = _resources()
    referencing = 0
    for message in _messages():
        for field in message.fields:
            options = field.GetOptions()
            if not options.HasExtension(resource_pb2.resource_reference):
                continue
            reference = options.Extensions[resource_pb2.resource_reference]
            target = reference.type or reference.child_type
            assert target in declared, f"{message.full_name}.{field.name}: {target}"
            referencing += 1
    assert referencing > 60


def test_every_required_field_can_be_checked() -> None:
    required = 0
    for message in _messages():
        for field in message.fields:
            if field_behavior_pb2.REQUIRED in _behaviors(field):
                required += 1
        # builds the message's checks: a REQUIRED the server cannot tell from unset
        # raises TypeError here
        if not message.GetOptions().HasExtension(resource_pb2.resource):
            with contextlib.suppress(InvalidArgument):
                check_required(GetMessageClass(message)())
    assert required > 100
