"""Server reflection answers both protocols, v1alpha (grpcio-reflection's) and v1
(what grpcurl and buf curl ask first), with every service of the registry."""

from __future__ import annotations

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from ..support.servers import ServerThread


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection_lists_every_service(server: ServerThread, version: str) -> None:
    with grpc.insecure_channel(server.target) as channel:
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        [listed, described] = list(
            call(
                iter(
                    [
                        reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(
                            file_containing_symbol="registry.v1.ArtifactService"
                        ),
                    ]
                ),
                timeout=10,
            )
        )
    services = {s.name for s in listed.list_services_response.service}
    assert {
        "registry.v1.ArtifactService",
        "registry.v1.CollectionService",
        "registry.v1.EventService",
        "registry.v1.LegacyModelRegistryService",
        "registry.v1.MigrationService",
        "registry.v1.OrganizationService",
        "registry.v1.RegistryService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services
    assert described.file_descriptor_response.file_descriptor_proto
