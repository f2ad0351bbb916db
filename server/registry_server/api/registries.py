"""RegistryService: proto <-> use cases in service/registries.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import empty_pb2
from sqlalchemy.orm import Session

from registry.v1 import registry_service_pb2 as pb
from registry.v1 import registry_service_pb2_grpc as pb_grpc
from registry.v1 import resources_pb2 as r

from ..domain import names
from ..domain.names import etag
from ..domain.pagination import ListParams
from ..domain.roles import RegistryRole, Visibility
from ..service import registries as regs
from ..storage import models as m
from ..storage.sql import Sql
from .app import Servicer
from .convert import enum_value, mask_paths, name_parts, ts
from .interceptors import current_principal

ORG = "organizations/{org}"
REGISTRY = "organizations/{org}/registries/{registry}"


def registry_proto(reg: m.Registry, org: str, migrated_from_team: str | None) -> r.Registry:
    return r.Registry(
        name=regs.registry_name(org, reg.name),
        path_prefix=regs.path_prefix(reg.name),
        description=reg.description,
        visibility=reg.visibility,
        artifact_types=list(reg.artifact_types or []),
        allow_all_artifact_types=reg.allow_all_artifact_types,
        protected_aliases=list(reg.protected_aliases or []),
        default_role=reg.default_role,
        core=reg.core,
        create_time=ts(reg.create_time),
        update_time=ts(reg.update_time),
        etag=etag(reg.revision),
        migrated_from=names.team_name(migrated_from_team) if migrated_from_team else "",
    )


def member_proto(org: str, registry_id: str, view: regs.MemberView) -> r.RegistryMember:
    return r.RegistryMember(
        name=regs.member_name(org, registry_id, view.ref),
        member=view.ref.name,
        role=view.row.role,
        create_time=ts(view.row.create_time),
        update_time=ts(view.row.update_time),
        follows_team_roles=view.row.team_roles,
    )


def _shown(s: Session, org: str, reg: m.Registry) -> r.Registry:
    """The registry as Get and Update answer it (with the team it was migrated from)."""
    return registry_proto(reg, org, regs.migrated_from_team(s, reg))


class RegistryServicer(Servicer, pb_grpc.RegistryServiceServicer):
    async def CreateRegistry(
        self, request: pb.CreateRegistryRequest, context: grpc.aio.ServicerContext
    ) -> r.Registry:
        p = current_principal()
        org = names.parse(request.parent, ORG, "parent")["org"]
        spec = request.registry
        visibility = Visibility(
            enum_value(spec.visibility, r.Visibility, "registry.visibility", allow_unspecified=True)
        )
        default_role = RegistryRole(
            enum_value(
                spec.default_role, r.RegistryRole, "registry.default_role", allow_unspecified=True
            )
        )

        def work(s: Session) -> r.Registry:
            reg = regs.create_registry(
                s,
                p,
                org,
                request.registry_id,
                description=spec.description,
                visibility=visibility,
                artifact_types=list(spec.artifact_types),
                allow_all_artifact_types=spec.allow_all_artifact_types,
                default_role=default_role,
                protected_aliases=list(spec.protected_aliases),
            )
            return registry_proto(reg, org, None)

        return await self.app.create(p, "CreateRegistry", request.request_id, r.Registry, work)

    async def GetRegistry(
        self, request: pb.GetRegistryRequest, context: grpc.aio.ServicerContext
    ) -> r.Registry:
        p = current_principal()
        org, registry_id = name_parts(request.name, REGISTRY, "name")
        return await self.app.read(
            lambda s: _shown(s, org, regs.get_registry(s, p, org, registry_id))
        )

    async def ListRegistries(
        self, request: pb.ListRegistriesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRegistriesResponse:
        p = current_principal()
        org = names.parse(request.parent, ORG, "parent")["org"]
        return await self.app.listed(
            lambda s: regs.list_registries(s, p, org, ListParams.of(request)),
            pb.ListRegistriesResponse,
            "registries",
            lambda row: registry_proto(row[0], org, row[1]),
        )

    async def UpdateRegistry(
        self, request: pb.UpdateRegistryRequest, context: grpc.aio.ServicerContext
    ) -> r.Registry:
        p = current_principal()
        spec = request.registry
        org, registry_id = name_parts(spec.name, REGISTRY, "registry.name")
        fields = mask_paths(request.update_mask, set(regs.UPDATABLE))
        visibility = Visibility(
            enum_value(spec.visibility, r.Visibility, "registry.visibility")
            if "visibility" in fields
            else 0
        )
        default_role = RegistryRole(
            enum_value(spec.default_role, r.RegistryRole, "registry.default_role")
            if "default_role" in fields
            else 0
        )

        def work(s: Session) -> r.Registry:
            reg = regs.update_registry(
                s,
                p,
                org,
                registry_id,
                fields,
                description=spec.description,
                visibility=visibility,
                artifact_types=list(spec.artifact_types),
                allow_all_artifact_types=spec.allow_all_artifact_types,
                protected_aliases=list(spec.protected_aliases),
                default_role=default_role,
                etag=spec.etag,
            )
            return _shown(s, org, reg)

        return await self.app.write(work)

    async def DeleteRegistry(
        self, request: pb.DeleteRegistryRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        org, registry_id = name_parts(request.name, REGISTRY, "name")
        await self.app.write(lambda s: regs.delete_registry(s, p, org, registry_id, request.etag))
        return empty_pb2.Empty()

    # --- members ---

    async def AddRegistryMember(
        self, request: pb.AddRegistryMemberRequest, context: grpc.aio.ServicerContext
    ) -> r.RegistryMember:
        return await self._set_member(request, regs.add_member)

    async def UpdateRegistryMember(
        self, request: pb.UpdateRegistryMemberRequest, context: grpc.aio.ServicerContext
    ) -> r.RegistryMember:
        return await self._set_member(request, regs.update_member)

    async def _set_member(self, request: Any, change: Callable[..., Any]) -> r.RegistryMember:
        """Add or Update: `change(s, p, org, registry, member, grant)` -> the member."""
        p = current_principal()
        org, registry_id = name_parts(request.registry, REGISTRY, "registry")
        ref = regs.parse_member(request.member, "member")
        follows = request.follows_team_roles
        role = enum_value(request.role, r.RegistryRole, "role", allow_unspecified=follows)
        grant = regs.grant_of(ref, RegistryRole(role), follows)
        return await self.app.write(
            lambda s: member_proto(org, registry_id, change(s, p, org, registry_id, ref, grant))
        )

    async def RemoveRegistryMember(
        self, request: pb.RemoveRegistryMemberRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        org, registry_id = name_parts(request.registry, REGISTRY, "registry")
        ref = regs.parse_member(request.member, "member")
        await self.app.write(lambda s: regs.remove_member(s, p, org, registry_id, ref))
        return empty_pb2.Empty()

    async def ListRegistryMembers(
        self, request: pb.ListRegistryMembersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRegistryMembersResponse:
        p = current_principal()
        org, registry_id = name_parts(request.parent, REGISTRY, "parent")
        return await self.app.listed(
            lambda s: regs.list_members(s, p, org, registry_id, ListParams.of(request)),
            pb.ListRegistryMembersResponse,
            "members",
            lambda v: member_proto(org, registry_id, v),
        )

    async def GetEffectiveRole(
        self, request: pb.GetEffectiveRoleRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetEffectiveRoleResponse:
        p = current_principal()
        org, registry_id = name_parts(request.registry, REGISTRY, "registry")

        def work(sql: Sql) -> pb.GetEffectiveRoleResponse:
            principal, role = regs.get_effective_role(sql, p, org, registry_id, request.principal)
            return pb.GetEffectiveRoleResponse(
                registry=names.registry_name(org, registry_id), principal=principal, role=role
            )

        return await self.app.query(work)
