from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from registry.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CreateCollectionRequest(_message.Message):
    __slots__ = ("parent", "collection_id", "collection", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    collection_id: str
    collection: _resources_pb2.Collection
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., collection_id: _Optional[str] = ..., collection: _Optional[_Union[_resources_pb2.Collection, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
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

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections", "next_page_token")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Collection]
    next_page_token: str
    def __init__(self, collections: _Optional[_Iterable[_Union[_resources_pb2.Collection, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateCollectionRequest(_message.Message):
    __slots__ = ("collection", "update_mask")
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    collection: _resources_pb2.Collection
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, collection: _Optional[_Union[_resources_pb2.Collection, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class LinkArtifactVersionRequest(_message.Message):
    __slots__ = ("parent", "collection_id", "artifact_version", "aliases", "request_id", "tags", "description")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    parent: str
    collection_id: str
    artifact_version: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, parent: _Optional[str] = ..., collection_id: _Optional[str] = ..., artifact_version: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class GetCollectionVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListCollectionVersionsRequest(_message.Message):
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

class ListCollectionVersionsResponse(_message.Message):
    __slots__ = ("collection_versions", "next_page_token")
    COLLECTION_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collection_versions: _containers.RepeatedCompositeFieldContainer[_resources_pb2.CollectionVersion]
    next_page_token: str
    def __init__(self, collection_versions: _Optional[_Iterable[_Union[_resources_pb2.CollectionVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateCollectionVersionRequest(_message.Message):
    __slots__ = ("collection_version", "update_mask")
    COLLECTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    collection_version: _resources_pb2.CollectionVersion
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, collection_version: _Optional[_Union[_resources_pb2.CollectionVersion, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UnlinkArtifactVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class AddAliasRequest(_message.Message):
    __slots__ = ("collection_version", "alias", "expected_version_index")
    COLLECTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_INDEX_FIELD_NUMBER: _ClassVar[int]
    collection_version: str
    alias: str
    expected_version_index: int
    def __init__(self, collection_version: _Optional[str] = ..., alias: _Optional[str] = ..., expected_version_index: _Optional[int] = ...) -> None: ...

class RemoveAliasRequest(_message.Message):
    __slots__ = ("collection_version", "alias")
    COLLECTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    collection_version: str
    alias: str
    def __init__(self, collection_version: _Optional[str] = ..., alias: _Optional[str] = ...) -> None: ...
