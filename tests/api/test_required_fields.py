"""Fields the protos mark REQUIRED (google.api.field_behavior) are enforced: a request
without one is INVALID_ARGUMENT naming it, on every RPC, before anything is read or
changed."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.api import field_behavior_pb2
from google.protobuf import field_mask_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message_factory import GetMessageClass

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import resources_pb2 as r

from ..support.errors import INVALID, expect_error, failure
from ..support.services import all_methods, stub_method
from ..support.world import World


def _first_required(message: Descriptor) -> str | None:
    for field in message.fields:
        behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
        if field_behavior_pb2.REQUIRED in behaviors:
            return field.name
    return None


def _methods() -> list[tuple[MethodDescriptor, str]]:
    out = []
    for method in all_methods():
        required = _first_required(method.input_type)
        if required is not None:
            out.append((method, required))
    return out


def test_most_methods_have_required_fields() -> None:
    # the annotations are there (a proto edit that drops them fails here)
    assert len(_methods()) >= 80


@pytest.mark.parametrize(("method", "required"), _methods(), ids=lambda v: getattr(v, "name", v))
def test_an_empty_request_names_its_first_required_field(
    world: World, method: MethodDescriptor, required: str
) -> None:
    call = stub_method(world.admin.stubs, method)
    request = GetMessageClass(method.input_type)()

    def send(req: Any) -> None:
        reply = call(req, timeout=10)
        if method.server_streaming:
            list(reply)

    try:
        send(request)
    except grpc.RpcError as exc:
        f = failure(exc)
        assert (f.code, f.fields) == (INVALID, [required]), f.message
        assert f.message == f"{required}: is required"
    else:
        raise AssertionError(f"{method.name} accepted a request without {required}")


def test_required_fields_of_nested_entries_and_masks(world: World) -> None:
    team = world.team("req")
    entry = r.ManifestEntry(path="a.bin", digest="sha256:" + "0" * 64, size=1)
    expect_error(
        INVALID,
        world.admin.stubs.artifacts.CreateArtifactVersion,
        apb.CreateArtifactVersionRequest(
            parent=f"teams/{team}/projects/p",
            artifact_id="a",
            type="model",
            manifest=[entry, r.ManifestEntry(path="b.bin", size=1)],
        ),
        field="manifest[1].digest",
    )
    # a mask that is set but lists no path says nothing
    f = expect_error(
        INVALID,
        world.admin.stubs.collections.UpdateCollection,
        cpb.UpdateCollectionRequest(
            collection=r.Collection(name=f"{world.org_name}/registries/model/collections/c"),
            update_mask=field_mask_pb2.FieldMask(),
        ),
        field="update_mask",
    )
    assert f.message == "update_mask: is required"
    # a REQUIRED field of a resource is the use case's to check (AIP-203: on create)
    expect_error(
        INVALID,
        world.admin.stubs.collections.CreateCollection,
        cpb.CreateCollectionRequest(
            parent=f"{world.org_name}/registries/model",
            collection_id="c",
            collection=r.Collection(description="no type"),
        ),
        field="collection.type",
    )
