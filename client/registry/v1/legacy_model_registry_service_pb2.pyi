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

class CreateRegisteredModelRequest(_message.Message):
    __slots__ = ("parent", "registered_model_id", "description", "tags", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    registered_model_id: str
    description: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., registered_model_id: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetRegisteredModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListRegisteredModelsRequest(_message.Message):
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

class ListRegisteredModelsResponse(_message.Message):
    __slots__ = ("registered_models", "next_page_token")
    REGISTERED_MODELS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    registered_models: _containers.RepeatedCompositeFieldContainer[_resources_pb2.RegisteredModel]
    next_page_token: str
    def __init__(self, registered_models: _Optional[_Iterable[_Union[_resources_pb2.RegisteredModel, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateRegisteredModelRequest(_message.Message):
    __slots__ = ("registered_model", "update_mask")
    REGISTERED_MODEL_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    registered_model: _resources_pb2.RegisteredModel
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, registered_model: _Optional[_Union[_resources_pb2.RegisteredModel, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteRegisteredModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class LinkModelVersionRequest(_message.Message):
    __slots__ = ("parent", "registered_model_id", "artifact_version", "aliases", "request_id", "tags")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    registered_model_id: str
    artifact_version: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, parent: _Optional[str] = ..., registered_model_id: _Optional[str] = ..., artifact_version: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ...) -> None: ...

class GetRegisteredModelVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListRegisteredModelVersionsRequest(_message.Message):
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

class ListRegisteredModelVersionsResponse(_message.Message):
    __slots__ = ("registered_model_versions", "next_page_token")
    REGISTERED_MODEL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    registered_model_versions: _containers.RepeatedCompositeFieldContainer[_resources_pb2.RegisteredModelVersion]
    next_page_token: str
    def __init__(self, registered_model_versions: _Optional[_Iterable[_Union[_resources_pb2.RegisteredModelVersion, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateRegisteredModelVersionRequest(_message.Message):
    __slots__ = ("registered_model_version", "update_mask")
    REGISTERED_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    registered_model_version: _resources_pb2.RegisteredModelVersion
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, registered_model_version: _Optional[_Union[_resources_pb2.RegisteredModelVersion, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class UnlinkModelVersionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class SetRegisteredModelAliasRequest(_message.Message):
    __slots__ = ("registered_model", "alias", "version_index")
    REGISTERED_MODEL_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_INDEX_FIELD_NUMBER: _ClassVar[int]
    registered_model: str
    alias: str
    version_index: int
    def __init__(self, registered_model: _Optional[str] = ..., alias: _Optional[str] = ..., version_index: _Optional[int] = ...) -> None: ...

class DeleteRegisteredModelAliasRequest(_message.Message):
    __slots__ = ("registered_model", "alias", "version_index")
    REGISTERED_MODEL_FIELD_NUMBER: _ClassVar[int]
    ALIAS_FIELD_NUMBER: _ClassVar[int]
    VERSION_INDEX_FIELD_NUMBER: _ClassVar[int]
    registered_model: str
    alias: str
    version_index: int
    def __init__(self, registered_model: _Optional[str] = ..., alias: _Optional[str] = ..., version_index: _Optional[int] = ...) -> None: ...

class GetLegacyRegistrySettingsRequest(_message.Message):
    __slots__ = ("team",)
    TEAM_FIELD_NUMBER: _ClassVar[int]
    team: str
    def __init__(self, team: _Optional[str] = ...) -> None: ...

class UpdateLegacyRegistrySettingsRequest(_message.Message):
    __slots__ = ("team", "protected_aliases", "registry_admins", "update_mask")
    TEAM_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_ALIASES_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_ADMINS_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    team: str
    protected_aliases: _containers.RepeatedScalarFieldContainer[str]
    registry_admins: _containers.RepeatedScalarFieldContainer[str]
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, team: _Optional[str] = ..., protected_aliases: _Optional[_Iterable[str]] = ..., registry_admins: _Optional[_Iterable[str]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...
