"""Every service and RPC of the contract, from the generated descriptors."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import MethodDescriptor

from registry.v1 import (
    artifact_service_pb2,
    collection_service_pb2,
    event_service_pb2,
    legacy_model_registry_service_pb2,
    migration_service_pb2,
    organization_service_pb2,
    registry_service_pb2,
)

SERVICE_MODULES = [
    organization_service_pb2,
    artifact_service_pb2,
    legacy_model_registry_service_pb2,
    registry_service_pb2,
    collection_service_pb2,
    migration_service_pb2,
    event_service_pb2,
]


def all_methods() -> list[MethodDescriptor]:
    return [
        method
        for module in SERVICE_MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    ]


def all_rpcs() -> list[tuple[str, str]]:
    """(service name, method name) of every RPC."""
    return [(method.containing_service.name, method.name) for method in all_methods()]


# service name -> the attribute of `registry_client.Stubs` that calls it
STUB_ATTRIBUTES = {
    "OrganizationService": "organizations",
    "ArtifactService": "artifacts",
    "LegacyModelRegistryService": "legacy",
    "RegistryService": "registries",
    "CollectionService": "collections",
    "MigrationService": "migrations",
    "EventService": "events",
}


def stub_method(stubs: Any, method: MethodDescriptor) -> Any:
    """The generated stub's callable for `method` on `stubs` (a `Stubs`)."""
    return getattr(getattr(stubs, STUB_ATTRIBUTES[method.containing_service.name]), method.name)
