"""The names the server gives resources match the patterns their protos declare
(google.api.resource, AIP-123), and the names they reference match the referenced
type's patterns."""

from __future__ import annotations

import re

from google.api import resource_pb2
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import event_service_pb2 as epb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_server.service import events as ev

from ..support.content import create_registry, grant, link, log_version, make_lab
from ..support.world import World


def _patterns(message: Descriptor) -> list[re.Pattern[str]]:
    resource = message.GetOptions().Extensions[resource_pb2.resource]
    return [re.compile(re.sub(r"\{[a-z_]+\}", "[^/]+", p)) for p in resource.pattern]


_BY_TYPE = {
    m.GetOptions().Extensions[resource_pb2.resource].type: m
    for m in r.DESCRIPTOR.message_types_by_name.values()
    if m.GetOptions().HasExtension(resource_pb2.resource)
}


def _check(resource: Message) -> str:
    """Checks `resource`'s name and the names it references; returns its type."""
    descriptor = resource.DESCRIPTOR
    name = resource.name  # type: ignore[attr-defined]
    assert any(p.fullmatch(name) for p in _patterns(descriptor)), (descriptor.name, name)
    for field, value in resource.ListFields():
        options = field.GetOptions()
        if not options.HasExtension(resource_pb2.resource_reference):
            continue
        target = _BY_TYPE[options.Extensions[resource_pb2.resource_reference].type]
        for ref in value if field.is_repeated else [value]:
            assert any(p.fullmatch(ref) for p in _patterns(target)), (field.full_name, ref)
    return descriptor.name


def test_names_match_the_declared_patterns(world: World, dns: dict[str, list[str]]) -> None:
    stubs = world.admin.stubs
    member = world.person("named")
    lab = make_lab(world, world.admin, {member: r.TEAM_ROLE_MEMBER})
    team = f"teams/{lab.team}"
    version = log_version(lab)
    registry = create_registry(world)
    grant(world, registry, member.name, r.REGISTRY_ROLE_MEMBER)
    linked = link(world.admin, registry, "c", version.name)
    model_version = stubs.legacy.LinkModelVersion(
        lpb.LinkModelVersionRequest(
            parent=team, registered_model_id="m", artifact_version=version.name
        )
    )
    dns["hooks.example.com"] = ["93.184.216.34"]
    automation = stubs.events.CreateAutomation(
        epb.CreateAutomationRequest(
            parent=registry,
            automation=r.Automation(
                event_types=[ev.ALIAS_ADDED], url="https://hooks.example.com/registry"
            ),
        )
    )
    resources: list[Message] = [
        stubs.organizations.GetOrganization(opb.GetOrganizationRequest(name=world.org_name)),
        stubs.organizations.GetCurrentUser(opb.GetCurrentUserRequest()),
        stubs.organizations.CreateApiKey(opb.CreateApiKeyRequest(parent=world.admin.name)),
        stubs.organizations.GetTeam(opb.GetTeamRequest(name=team)),
        *stubs.organizations.ListTeamMembers(opb.ListTeamMembersRequest(parent=team)).members,
        stubs.artifacts.GetProject(apb.GetProjectRequest(name=lab.parent)),
        version,
        stubs.legacy.GetRegisteredModel(
            lpb.GetRegisteredModelRequest(name=model_version.name.rsplit("/versions/", 1)[0])
        ),
        model_version,
        stubs.legacy.GetLegacyRegistrySettings(lpb.GetLegacyRegistrySettingsRequest(team=team)),
        stubs.registries.GetRegistry(rpb.GetRegistryRequest(name=registry)),
        *stubs.registries.ListRegistryMembers(
            rpb.ListRegistryMembersRequest(parent=registry)
        ).members,
        stubs.collections.GetCollection(cpb.GetCollectionRequest(name=f"{registry}/collections/c")),
        linked,
        automation,
    ]
    checked = {_check(resource) for resource in resources}
    # every resource type but those a migration or a delivery attempt makes
    assert checked == {m.name for m in _BY_TYPE.values()} - {"Migration", "Delivery"}
