"""LegacyModelRegistryService: proto <-> use cases in service/legacy.py."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2
from sqlalchemy.orm import Session

from registry.v1 import legacy_model_registry_service_pb2 as pb
from registry.v1 import legacy_model_registry_service_pb2_grpc as pb_grpc
from registry.v1 import resources_pb2 as r

from ..domain import names
from ..domain.names import etag
from ..domain.pagination import ListParams
from ..service import legacy as svc
from ..service import legacy_settings
from ..service.legacy_views import ModelInfo, ModelVersionView, Settings
from ..service.resolve import ModelVersionInfo
from .app import Servicer
from .convert import mask_paths, name_parts, ts, user_ref
from .interceptors import current_principal

TEAM = "teams/{team}"
MODEL = "teams/{team}/registeredModels/{model}"
MODEL_VERSION = "teams/{team}/registeredModels/{model}/versions/{n}"


def registered_model_proto(info: ModelInfo) -> r.RegisteredModel:
    row = info.row
    return r.RegisteredModel(
        name=f"teams/{info.team}/registeredModels/{row.name}",
        description=row.description,
        tags=list(row.tags or []),
        version_count=info.version_count,
        create_time=ts(row.create_time),
        update_time=ts(row.update_time),
        etag=etag(row.revision),
        migrated_to=info.migrated_to,
        redirected=info.redirected,
    )


def model_version_proto(
    info: ModelVersionInfo, artifact_version: str, collection_version: str = ""
) -> r.RegisteredModelVersion:
    """`collection_version`: set when answered from a migrated collection's version."""
    row = info.row
    return r.RegisteredModelVersion(
        name=info.name,
        version_index=row.version_index,
        artifact_version=artifact_version,
        aliases=list(info.aliases),
        tags=list(row.tags or []),
        description=row.description,
        linked_by=user_ref(info.linked_by),
        create_time=ts(row.create_time),
        update_time=ts(row.update_time),
        redirected=bool(collection_version),
        collection_version=collection_version,
    )


def version_view_proto(view: ModelVersionView) -> r.RegisteredModelVersion:
    return model_version_proto(view.info, view.artifact_version, view.collection_version)


def settings_proto(settings: Settings) -> r.LegacyRegistrySettings:
    team = settings.team
    return r.LegacyRegistrySettings(
        name=f"teams/{team.name}/legacyRegistrySettings",
        team=f"teams/{team.name}",
        protected_aliases=settings.protected_aliases,
        registry_admins=[names.user_name(u) for u in settings.registry_admins],
        state=team.legacy_state,
        migrated_registry=settings.migrated_registry,
        update_time=ts(team.legacy_settings_update_time),
        etag=etag(team.legacy_settings_revision),
        redirected=settings.redirected,
    )


def _model_version(name: str, field: str) -> tuple[str, str, int]:
    v = names.parse(name, MODEL_VERSION, field)
    return v["team"], v["model"], int(v["n"])


class LegacyModelRegistryServicer(Servicer, pb_grpc.LegacyModelRegistryServiceServicer):
    # --- registered models ---

    async def CreateRegisteredModel(
        self, request: pb.CreateRegisteredModelRequest, context: grpc.aio.ServicerContext
    ) -> r.RegisteredModel:
        p = current_principal()
        team = names.parse(request.parent, TEAM, "parent")["team"]

        def work(s: Session) -> r.RegisteredModel:
            info = svc.create_registered_model(
                s,
                p,
                team=team,
                model_id=request.registered_model_id,
                description=request.description,
                tags=list(request.tags),
            )
            return registered_model_proto(info)

        return await self.app.create(
            p, "CreateRegisteredModel", request.request_id, r.RegisteredModel, work
        )

    async def GetRegisteredModel(
        self, request: pb.GetRegisteredModelRequest, context: grpc.aio.ServicerContext
    ) -> r.RegisteredModel:
        p = current_principal()
        team, model = name_parts(request.name, MODEL, "name")
        return await self.app.read(
            lambda s: registered_model_proto(svc.get_registered_model(s, p, team, model))
        )

    async def ListRegisteredModels(
        self, request: pb.ListRegisteredModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRegisteredModelsResponse:
        p = current_principal()
        team = names.parse(request.parent, TEAM, "parent")["team"]
        return await self.app.listed(
            lambda s: svc.list_registered_models(s, p, team, ListParams.of(request)),
            pb.ListRegisteredModelsResponse,
            "registered_models",
            registered_model_proto,
        )

    async def UpdateRegisteredModel(
        self, request: pb.UpdateRegisteredModelRequest, context: grpc.aio.ServicerContext
    ) -> r.RegisteredModel:
        p = current_principal()
        rm = request.registered_model
        team, model = name_parts(rm.name, MODEL, "registered_model.name")
        fields = mask_paths(request.update_mask, {"description", "tags"})

        def work(s: Session) -> r.RegisteredModel:
            info = svc.update_registered_model(
                s,
                p,
                team,
                model,
                fields,
                description=rm.description,
                tags=list(rm.tags),
                etag=rm.etag,
            )
            return registered_model_proto(info)

        return await self.app.write(work)

    async def DeleteRegisteredModel(
        self, request: pb.DeleteRegisteredModelRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        team, model = name_parts(request.name, MODEL, "name")
        await self.app.write(lambda s: svc.delete_registered_model(s, p, team, model))
        return empty_pb2.Empty()

    # --- versions ---

    async def LinkModelVersion(
        self, request: pb.LinkModelVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.RegisteredModelVersion:
        p = current_principal()
        team = names.parse(request.parent, TEAM, "parent")["team"]

        def work(s: Session) -> r.RegisteredModelVersion:
            view = svc.link_model_version(
                s,
                p,
                team=team,
                model_id=request.registered_model_id,
                artifact_version=request.artifact_version,
                aliases=list(request.aliases),
                tags=list(request.tags),
            )
            return version_view_proto(view)

        return await self.app.create(
            p, "LinkModelVersion", request.request_id, r.RegisteredModelVersion, work
        )

    async def GetRegisteredModelVersion(
        self, request: pb.GetRegisteredModelVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.RegisteredModelVersion:
        p = current_principal()
        team, model, index = _model_version(request.name, "name")
        return await self.app.read(
            lambda s: version_view_proto(svc.get_model_version(s, p, team, model, index))
        )

    async def ListRegisteredModelVersions(
        self, request: pb.ListRegisteredModelVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRegisteredModelVersionsResponse:
        p = current_principal()
        team, model = name_parts(request.parent, MODEL, "parent")
        return await self.app.listed(
            lambda s: svc.list_model_versions(s, p, team, model, ListParams.of(request)),
            pb.ListRegisteredModelVersionsResponse,
            "registered_model_versions",
            version_view_proto,
        )

    async def UpdateRegisteredModelVersion(
        self, request: pb.UpdateRegisteredModelVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.RegisteredModelVersion:
        p = current_principal()
        mv = request.registered_model_version
        team, model, index = _model_version(mv.name, "registered_model_version.name")
        fields = mask_paths(request.update_mask, {"description", "tags"})

        def work(s: Session) -> r.RegisteredModelVersion:
            view = svc.update_model_version(
                s, p, team, model, index, fields, description=mv.description, tags=list(mv.tags)
            )
            return version_view_proto(view)

        return await self.app.write(work)

    async def UnlinkModelVersion(
        self, request: pb.UnlinkModelVersionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        team, model, index = _model_version(request.name, "name")
        await self.app.write(lambda s: svc.unlink_model_version(s, p, team, model, index))
        return empty_pb2.Empty()

    # --- aliases ---

    async def SetRegisteredModelAlias(
        self, request: pb.SetRegisteredModelAliasRequest, context: grpc.aio.ServicerContext
    ) -> r.RegisteredModelVersion:
        p = current_principal()
        team, model = name_parts(request.registered_model, MODEL, "registered_model")
        return await self.app.write(
            lambda s: version_view_proto(
                svc.set_alias(s, p, team, model, request.alias, request.version_index)
            )
        )

    async def DeleteRegisteredModelAlias(
        self, request: pb.DeleteRegisteredModelAliasRequest, context: grpc.aio.ServicerContext
    ) -> r.RegisteredModelVersion:
        p = current_principal()
        team, model = name_parts(request.registered_model, MODEL, "registered_model")
        index = request.version_index if request.HasField("version_index") else None
        return await self.app.write(
            lambda s: version_view_proto(svc.delete_alias(s, p, team, model, request.alias, index))
        )

    # --- settings ---

    async def GetLegacyRegistrySettings(
        self, request: pb.GetLegacyRegistrySettingsRequest, context: grpc.aio.ServicerContext
    ) -> r.LegacyRegistrySettings:
        p = current_principal()
        team = names.parse(request.team, TEAM, "team")["team"]
        return await self.app.read(
            lambda s: settings_proto(legacy_settings.get_settings(s, p, team))
        )

    async def UpdateLegacyRegistrySettings(
        self, request: pb.UpdateLegacyRegistrySettingsRequest, context: grpc.aio.ServicerContext
    ) -> r.LegacyRegistrySettings:
        p = current_principal()
        team = names.parse(request.team, TEAM, "team")["team"]
        allowed = {"protected_aliases", "registry_admins"}
        fields = mask_paths(request.update_mask, allowed) if request.update_mask.paths else allowed

        def work(s: Session) -> r.LegacyRegistrySettings:
            settings = legacy_settings.update_settings(
                s,
                p,
                team,
                fields,
                protected_aliases=list(request.protected_aliases),
                registry_admins=list(request.registry_admins),
            )
            return settings_proto(settings)

        return await self.app.write(work)
