from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from registry.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateProjectRequest(_message.Message):
    __slots__ = ("parent", "project_id", "description", "request_id", "project")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_FIELD_NUMBER: _ClassVar[int]
    parent: str
    project_id: str
    description: str
    request_id: str
    project: _resources_pb2.Project
    def __init__(self, parent: _Optional[str] = ..., project_id: _Optional[str] = ..., description: _Optional[str] = ..., request_id: _Optional[str] = ..., project: _Optional[_Union[_resources_pb2.Project, _Mapping]] = ...) -> None: ...

class GetProjectRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "filter", "order_by")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    filter: str
    order_by: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects", "next_page_token")
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Project]
    next_page_token: str
    def __init__(self, projects: _Optional[_Iterable[_Union[_resources_pb2.Project, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateArtifactVersionRequest(_message.Message):
    __slots__ = ("parent", "artifact_id", "type", "manifest", "metadata", "description", "aliases", "tags", "run_id", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    artifact_id: str
    type: str
    manifest: _containers.RepeatedCompositeFieldContainer[_resources_pb2.ManifestEntry]
    metadata: _struct_pb2.Struct
    description: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    run_id: str
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., artifact_id: _Optional[str] = ..., type: _Optional[str] = ..., manifest: _Optional[_Iterable[_Union[_resources_pb2.ManifestEntry, _Mapping]]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., description: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., run_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetArtifactVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListArtifactVersionsRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "filter", "order_by", "show_deleted")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    SHOW_DELETED_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    filter: str
    order_by: str
    show_deleted: bool
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ..., show_deleted: bool = ...) -> None: ...

class ListArtifactVersionsResponse(_message.Message):
    __slots__ = ("artifact_versions", "next_page_token")
    ARTIFACT_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    artifact_versions: _containers.RepeatedCompositeFieldContainer[_resources_pb2.ArtifactVersion]
    next_page_token: str
    def __init__(self, artifact_versions: _Optional[_Iterable[_Union[_resources_pb2.ArtifactVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateArtifactVersionRequest(_message.Message):
    __slots__ = ("artifact_version", "update_mask")
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    artifact_version: _resources_pb2.ArtifactVersion
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, artifact_version: _Optional[_Union[_resources_pb2.ArtifactVersion, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteArtifactVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class UseArtifactVersionRequest(_message.Message):
    __slots__ = ("name", "path", "run_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    run_id: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., run_id: _Optional[str] = ...) -> None: ...

class GetLineageRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class LineageLink(_message.Message):
    __slots__ = ("name", "path", "aliases")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ...) -> None: ...

class Lineage(_message.Message):
    __slots__ = ("artifact_version", "producing_run", "consuming_runs", "links", "logging_runs")
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    PRODUCING_RUN_FIELD_NUMBER: _ClassVar[int]
    CONSUMING_RUNS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    LOGGING_RUNS_FIELD_NUMBER: _ClassVar[int]
    artifact_version: str
    producing_run: str
    consuming_runs: _containers.RepeatedScalarFieldContainer[str]
    links: _containers.RepeatedCompositeFieldContainer[LineageLink]
    logging_runs: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, artifact_version: _Optional[str] = ..., producing_run: _Optional[str] = ..., consuming_runs: _Optional[_Iterable[str]] = ..., links: _Optional[_Iterable[_Union[LineageLink, _Mapping]]] = ..., logging_runs: _Optional[_Iterable[str]] = ...) -> None: ...

class ResolvePathRequest(_message.Message):
    __slots__ = ("path",)
    PATH_FIELD_NUMBER: _ClassVar[int]
    path: str
    def __init__(self, path: _Optional[str] = ...) -> None: ...

class ResolvePathResponse(_message.Message):
    __slots__ = ("artifact_version", "collection_version", "registered_model_version", "canonical_path", "redirected")
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_PATH_FIELD_NUMBER: _ClassVar[int]
    REDIRECTED_FIELD_NUMBER: _ClassVar[int]
    artifact_version: _resources_pb2.ArtifactVersion
    collection_version: _resources_pb2.CollectionVersion
    registered_model_version: _resources_pb2.RegisteredModelVersion
    canonical_path: str
    redirected: bool
    def __init__(self, artifact_version: _Optional[_Union[_resources_pb2.ArtifactVersion, _Mapping]] = ..., collection_version: _Optional[_Union[_resources_pb2.CollectionVersion, _Mapping]] = ..., registered_model_version: _Optional[_Union[_resources_pb2.RegisteredModelVersion, _Mapping]] = ..., canonical_path: _Optional[str] = ..., redirected: bool = ...) -> None: ...
