"""CollectionService: proto <-> use cases in service/collections.py."""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2
from sqlalchemy.orm import Session

from registry.v1 import collection_service_pb2 as pb
from registry.v1 import collection_service_pb2_grpc as pb_grpc
from registry.v1 import resources_pb2 as r

from ..domain.names import CollectionRef, etag
from ..domain.pagination import ListParams
from ..service import collections as colls
from ..service import links, versions
from ..service.idempotency import check_request_id
from ..storage.sql import Sql
from ..workers.changes import Written
from ..workers.event_hub import hub_for
from .app import Servicer
from .convert import mask_paths, name_parts, ts, user_ref
from .interceptors import current_principal
from .presenters import version_proto

REGISTRY = "organizations/{org}/registries/{registry}"
COLLECTION = REGISTRY + "/collections/{collection}"
VERSION = COLLECTION + "/versions/{version}"


def collection_proto(view: colls.CollectionView, ref: CollectionRef) -> r.Collection:
    c = view.row
    return r.Collection(
        name=ref.name,
        type=c.type,
        description=c.description,
        tags=list(c.tags or []),
        version_count=view.version_count,
        created_by=user_ref(view.created_by),
        create_time=ts(c.create_time),
        update_time=ts(c.update_time),
        etag=etag(c.revision),
    )


def _collection(name: str, field: str) -> CollectionRef:
    return CollectionRef(*name_parts(name, COLLECTION, field))


def _version(name: str, field: str) -> tuple[CollectionRef, int]:
    org, registry, collection, index = name_parts(name, VERSION, field)
    return CollectionRef(org, registry, collection), int(index)


class CollectionServicer(Servicer, pb_grpc.CollectionServiceServicer):
    # --- collections ---

    async def CreateCollection(
        self, request: pb.CreateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> r.Collection:
        p = current_principal()
        org, registry_id = name_parts(request.parent, REGISTRY, "parent")
        spec = request.collection
        ref = CollectionRef(org, registry_id, request.collection_id)

        def work(s: Session) -> r.Collection:
            view = colls.create_collection(
                s,
                p,
                org,
                registry_id,
                request.collection_id,
                artifact_type=spec.type,
                description=spec.description,
                tags=list(spec.tags),
            )
            return collection_proto(view, ref)

        return await self.app.create(p, "CreateCollection", request.request_id, r.Collection, work)

    async def GetCollection(
        self, request: pb.GetCollectionRequest, context: grpc.aio.ServicerContext
    ) -> r.Collection:
        p = current_principal()
        ref = _collection(request.name, "name")
        return await self.app.read(lambda s: collection_proto(colls.get_collection(s, p, ref), ref))

    async def ListCollections(
        self, request: pb.ListCollectionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionsResponse:
        p = current_principal()
        org, registry_id = name_parts(request.parent, REGISTRY, "parent")
        return await self.app.listed(
            lambda s: colls.list_collections(s, p, org, registry_id, ListParams.of(request)),
            pb.ListCollectionsResponse,
            "collections",
            lambda v: collection_proto(v, CollectionRef(org, registry_id, v.row.name)),
        )

    async def UpdateCollection(
        self, request: pb.UpdateCollectionRequest, context: grpc.aio.ServicerContext
    ) -> r.Collection:
        p = current_principal()
        spec = request.collection
        ref = _collection(spec.name, "collection.name")
        fields = mask_paths(request.update_mask, {"description", "tags"})

        def work(s: Session) -> r.Collection:
            view = colls.update_collection(
                s,
                p,
                ref,
                fields,
                description=spec.description,
                tags=list(spec.tags),
                etag=spec.etag,
            )
            return collection_proto(view, ref)

        return await self.app.write(work)

    async def DeleteCollection(
        self, request: pb.DeleteCollectionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        ref = _collection(request.name, "name")
        await self.app.write(lambda s: colls.delete_collection(s, p, ref, request.etag))
        return empty_pb2.Empty()

    # --- versions ---

    async def LinkArtifactVersion(
        self, request: pb.LinkArtifactVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.CollectionVersion:
        p = current_principal()
        org, registry_id = name_parts(request.parent, REGISTRY, "parent")
        ref = CollectionRef(org, registry_id, request.collection_id)
        check_request_id(request.request_id)
        # input checks, before the change is sent anywhere
        req = links.link_request(
            ref,
            request.artifact_version,
            request.aliases,
            request.tags,
            request.description,
        )
        written = await self.app.change("link", p, req, request.request_id)
        return self._committed(written)

    async def GetCollectionVersion(
        self, request: pb.GetCollectionVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.CollectionVersion:
        p = current_principal()
        ref, index = _version(request.name, "name")
        return await self.app.query(
            lambda sql: version_proto(versions.get_version(sql, p, ref, index))
        )

    async def ListCollectionVersions(
        self, request: pb.ListCollectionVersionsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListCollectionVersionsResponse:
        p = current_principal()
        ref = _collection(request.parent, "parent")

        def work(sql: Sql) -> pb.ListCollectionVersionsResponse:
            views, token = versions.list_versions(sql, p, ref, ListParams.of(request))
            return pb.ListCollectionVersionsResponse(
                collection_versions=[version_proto(v) for v in views], next_page_token=token
            )

        return await self.app.query(work)

    async def UpdateCollectionVersion(
        self, request: pb.UpdateCollectionVersionRequest, context: grpc.aio.ServicerContext
    ) -> r.CollectionVersion:
        p = current_principal()
        spec = request.collection_version
        ref, index = _version(spec.name, "collection_version.name")
        fields = mask_paths(request.update_mask, {"description", "tags"})
        return await self.app.write(
            lambda s: version_proto(
                colls.update_version(
                    s, p, ref, index, fields, description=spec.description, tags=list(spec.tags)
                )
            )
        )

    async def UnlinkArtifactVersion(
        self, request: pb.UnlinkArtifactVersionRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        p = current_principal()
        ref, index = _version(request.name, "name")
        await self.app.write(lambda s: colls.unlink_version(s, p, ref, index))
        return empty_pb2.Empty()

    # --- aliases ---

    async def AddAlias(
        self, request: pb.AddAliasRequest, context: grpc.aio.ServicerContext
    ) -> r.CollectionVersion:
        p = current_principal()
        ref, index = _version(request.collection_version, "collection_version")
        expected = (
            request.expected_version_index if request.HasField("expected_version_index") else None
        )
        links.alias_request(request.alias, expected)
        written = await self.app.change("add_alias", p, ref, index, request.alias, expected)
        return self._committed(written)

    def _committed(self, written: Written) -> r.CollectionVersion:
        """Wakes this replica's event watchers of the organization, as a session commit
        does, and returns the answer."""
        if written.org_id is not None:
            hub_for(self.app).wake((written.org_id,))
        return r.CollectionVersion.FromString(written.answer)

    async def RemoveAlias(
        self, request: pb.RemoveAliasRequest, context: grpc.aio.ServicerContext
    ) -> r.CollectionVersion:
        p = current_principal()
        ref, index = _version(request.collection_version, "collection_version")
        return await self.app.write(
            lambda s: version_proto(colls.remove_alias(s, p, ref, index, request.alias))
        )
