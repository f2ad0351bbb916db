"""ArtifactService: proto <-> use cases in service/artifacts.py and service/resolve.py."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import empty_pb2
from sqlalchemy.orm import Session

from registry.v1 import artifact_service_pb2 as pb
from registry.v1 import artifact_service_pb2_grpc as pb_grpc
from registry.v1 import resources_pb2 as r

from ..domain import names
from ..domain.errors import InvalidArgument
from ..domain.names import etag
from ..domain.pagination import ListParams
from ..domain.paths import parse_path
from ..service import artifacts as svc
from ..service import lineage, resolve
from ..service.resolve import ArtifactVersionInfo, Resolution
from ..storage.sql import Sql
from .app import Servicer
from .convert import mask_paths, name_parts, struct, struct_to_dict, ts, user_ref
from .files import check_files_per_version
from .interceptors import current_principal
from .legacy import model_version_proto
from .presenters import version_proto

TEAM = "teams/{team}"
PROJECT = "teams/{team}/projects/{project}"
ARTIFACT = "teams/{team}/projects/{project}/artifacts/{artifact}"
VERSION = "teams/{team}/projects/{project}/artifacts/{artifact}/versions/{n}"


def project_proto(team: str, project: Any) -> r.Project:
    return r.Project(
        name=f"teams/{team}/projects/{project.name}",
        description=project.description,
        create_time=ts(project.create_time),
        update_time=ts(project.update_time),
    )


def artifact_version_proto(info: ArtifactVersionInfo) -> r.ArtifactVersion:
    return r.ArtifactVersion(
        name=info.name,
        version_index=info.version_index,
        type=info.type,
        digest=info.digest,
        size=info.size,
        manifest=[r.ManifestEntry(**entry) for entry in info.manifest],
        metadata=struct(info.metadata),
        description=info.description,
        aliases=list(info.aliases),
        tags=info.tags,
        producing_run=info.producing_run,
        created_by=user_ref(info.created_by),
        create_time=ts(info.create_time),
        update_time=ts(info.update_time),
        etag=etag(info.revision),
        delete_time=ts(info.delete_time),
        path=info.path,
    )


def resolution_proto(res: Resolution) -> pb.ResolvePathResponse:
    out = pb.ResolvePathResponse(
        artifact_version=artifact_version_proto(res.artifact_version),
        canonical_path=res.canonical_path,
        redirected=res.redirected,
    )
    if res.collection_version is not None:
        out.collection_version.CopyFrom(version_proto(res.collection_version))
    if res.model_version is not None:
        out.registered_model_version.CopyFrom(
            model_version_proto(res.model_version, res.artifact_version.name)
        )
    return out


def manifest_entries(entries: Any) -> list[dict[str, Any]]:
    return [{"path": e.path, "digest": e.digest, "size": e.size, "ref": e.ref} for e in entries]


def _version_name(name: str, field: str) -> tuple[str, str, str, int]:
    v = names.parse(name, VERSION, field)
    return v["team"], v["project"], v["artifact"], int(v["n"])


class ArtifactServicer(Servicer, pb_grpc.ArtifactServiceServicer):
    # --- projects ---

    async def CreateProject(
        self, request: pb.CreateProjectRequest, context: grpc.aio.ServicerContext
    ) -> r.Project:
        p = current_principal()
        team = names.parse(request.parent, TEAM, "parent")["team"]
        description = request.description
        if request.HasField("project") and request.project.description:
            description = request.project.description

        def work(s: Session) -> r.Project:
            project = svc.create_project(
                s, p, team=team, project_id=request.project_id, description=description
            )
            return project_proto(team, project)

        return await self.app.create(p, "CreateProject", request.request_id, r.Project, work)

    async def GetProject(
        self, request: pb.GetProjectRequest, context: grpc.aio.ServicerContext
    ) -> r.Project:
        p = current_principal()
        team, project = name_parts(request.name, PROJECT, "name")
        return await self.app.read(
            lambda s: project_proto(team, svc.get_project(s, p, team, project))
        )

    async def ListProjects(
        self, request: pb.ListProjectsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListProjectsResponse:
        p = current_principal()
        team = names.parse(request.parent, TEAM, "parent")["team"]
        return await self.app.listed(
            lambda s: svc.list_projects(s, p, team, ListParams.of(request)),
            pb.ListProjectsResponse,
            "projects",
            lambda row: project_proto(team, row[0]),
        )

    # --- artifact versions ---

    async def CreateArtifactVersion(
        self, request: pb.CreateArtifactVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.ArtifactVersion:
        p = current_principal()
        team, project = name_parts(request.parent, PROJECT, "parent")
        metadata = struct_to_dict(request.metadata, "metadata")
        check_files_per_version(len(request.manifest), self.app.settings)
        manifest = manifest_entries(request.manifest)

        def work(s: Session) -> r.ArtifactVersion:
            info, reused = svc.create_artifact_version(
                s,
                p,
                team=team,
                project=project,
                artifact_id=request.artifact_id,
                type_=request.type,
                manifest=manifest,
                metadata=metadata,
                description=request.description,
                aliases=list(request.aliases),
                tags=list(request.tags),
                run_id=request.run_id,
            )
            reply = artifact_version_proto(info)
            reply.reused = reused
            return reply

        return await self.app.create(
            p, "CreateArtifactVersion", request.request_id, r.ArtifactVersion, work
        )

    async def GetArtifactVersion(
        self, request: pb.GetArtifactVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.ArtifactVersion:
        p = current_principal()
        team, project, artifact, index = _version_name(request.name, "name")
        return await self.app.read(
            lambda s: artifact_version_proto(
                svc.get_artifact_version(s, p, team, project, artifact, index)
            )
        )

    async def ListArtifactVersions(
        self, request: pb.ListArtifactVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListArtifactVersionsResponse:
        p = current_principal()
        team, project, artifact = name_parts(request.parent, ARTIFACT, "parent")
        return await self.app.listed(
            lambda s: svc.list_artifact_versions(
                s, p, team, project, artifact, ListParams.of(request), request.show_deleted
            ),
            pb.ListArtifactVersionsResponse,
            "artifact_versions",
            artifact_version_proto,
        )

    async def UpdateArtifactVersion(
        self, request: pb.UpdateArtifactVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.ArtifactVersion:
        p = current_principal()
        av = request.artifact_version
        team, project, artifact, index = _version_name(av.name, "artifact_version.name")
        fields = mask_paths(request.update_mask, svc.UPDATABLE_VERSION_FIELDS)
        metadata = (
            struct_to_dict(av.metadata, "artifact_version.metadata") if "metadata" in fields else {}
        )

        def work(s: Session) -> r.ArtifactVersion:
            info = svc.update_artifact_version(
                s,
                p,
                team,
                project,
                artifact,
                index,
                fields,
                description=av.description,
                metadata=metadata,
                tags=list(av.tags),
                aliases=list(av.aliases),
                etag=av.etag,
            )
            return artifact_version_proto(info)

        return await self.app.write(work)

    async def DeleteArtifactVersion(
        self, request: pb.DeleteArtifactVersionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        team, project, artifact, index = _version_name(request.name, "name")
        await self.app.write(
            lambda s: svc.delete_artifact_version(s, p, team, project, artifact, index)
        )
        return empty_pb2.Empty()

    # --- usage, lineage, paths ---

    async def UseArtifactVersion(
        self, request: pb.UseArtifactVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.ArtifactVersion:
        p = current_principal()
        if request.name and request.path:
            raise InvalidArgument("path", "give either name or path, not both")
        if request.name:
            _version_name(request.name, "name")
            reference, field = request.name, "name"
        elif request.path:
            reference, field = request.path, "path"
        else:
            raise InvalidArgument("path", "is required (or give name)")

        def work(s: Session) -> r.ArtifactVersion:
            res = lineage.use_artifact_version(s, p, reference, field, request.run_id)
            return artifact_version_proto(res.artifact_version)

        return await self.app.write(work)

    async def GetLineage(
        self, request: pb.GetLineageRequest, context: grpc.aio.ServicerContext
    ) -> pb.Lineage:
        p = current_principal()
        team, project, artifact, index = _version_name(request.name, "name")

        def work(s: Session) -> pb.Lineage:
            found = lineage.get_lineage(s, p, team, project, artifact, index)
            return pb.Lineage(
                artifact_version=found.artifact_version,
                producing_run=found.producing_run,
                consuming_runs=found.consuming_runs,
                logging_runs=found.logging_runs,
                links=[
                    pb.LineageLink(name=link.name, path=link.path, aliases=list(link.aliases))
                    for link in found.links
                ],
            )

        return await self.app.read(work)

    async def ResolvePath(
        self, request: pb.ResolvePathRequest, context: grpc.aio.ServicerContext
    ) -> pb.ResolvePathResponse:
        p = current_principal()
        parsed = parse_path(request.path, "path")  # malformed paths fail before any query

        def work(sql: Sql) -> pb.ResolvePathResponse:
            return resolution_proto(resolve.resolve(sql, p, parsed))

        return await self.app.query(work)
