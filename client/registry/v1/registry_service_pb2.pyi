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

class CreateRegistryRequest(_message.Message):
    __slots__ = ("parent", "registry_id", "registry", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_ID_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    registry_id: str
    registry: _resources_pb2.Registry
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., registry_id: _Optional[str] = ..., registry: _Optional[_Union[_resources_pb2.Registry, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetRegistryRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListRegistriesRequest(_message.Message):
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

class ListRegistriesResponse(_message.Message):
    __slots__ = ("registries", "next_page_token")
    REGISTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    registries: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Registry]
    next_page_token: str
    def __init__(self, registries: _Optional[_Iterable[_Union[_resources_pb2.Registry, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class UpdateRegistryRequest(_message.Message):
    __slots__ = ("registry", "update_mask")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    registry: _resources_pb2.Registry
    update_mask: _field_mask_pb2.FieldMask
    def __init__(self, registry: _Optional[_Union[_resources_pb2.Registry, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ...) -> None: ...

class DeleteRegistryRequest(_message.Message):
    __slots__ = ("name", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    etag: str
    def __init__(self, name: _Optional[str] = ..., etag: _Optional[str] = ...) -> None: ...

class AddRegistryMemberRequest(_message.Message):
    __slots__ = ("registry", "member", "role", "follows_team_roles")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FOLLOWS_TEAM_ROLES_FIELD_NUMBER: _ClassVar[int]
    registry: str
    member: str
    role: _resources_pb2.RegistryRole
    follows_team_roles: bool
    def __init__(self, registry: _Optional[str] = ..., member: _Optional[str] = ..., role: _Optional[_Union[_resources_pb2.RegistryRole, str]] = ..., follows_team_roles: bool = ...) -> None: ...

class UpdateRegistryMemberRequest(_message.Message):
    __slots__ = ("registry", "member", "role", "follows_team_roles")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    FOLLOWS_TEAM_ROLES_FIELD_NUMBER: _ClassVar[int]
    registry: str
    member: str
    role: _resources_pb2.RegistryRole
    follows_team_roles: bool
    def __init__(self, registry: _Optional[str] = ..., member: _Optional[str] = ..., role: _Optional[_Union[_resources_pb2.RegistryRole, str]] = ..., follows_team_roles: bool = ...) -> None: ...

class RemoveRegistryMemberRequest(_message.Message):
    __slots__ = ("registry", "member")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    registry: str
    member: str
    def __init__(self, registry: _Optional[str] = ..., member: _Optional[str] = ...) -> None: ...

class ListRegistryMembersRequest(_message.Message):
    __slots__ = ("parent", "page_size", "page_token", "order_by")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    parent: str
    page_size: int
    page_token: str
    order_by: str
    def __init__(self, parent: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListRegistryMembersResponse(_message.Message):
    __slots__ = ("members", "next_page_token")
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedCompositeFieldContainer[_resources_pb2.RegistryMember]
    next_page_token: str
    def __init__(self, members: _Optional[_Iterable[_Union[_resources_pb2.RegistryMember, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetEffectiveRoleRequest(_message.Message):
    __slots__ = ("registry", "principal")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    registry: str
    principal: str
    def __init__(self, registry: _Optional[str] = ..., principal: _Optional[str] = ...) -> None: ...

class GetEffectiveRoleResponse(_message.Message):
    __slots__ = ("registry", "principal", "role")
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    registry: str
    principal: str
    role: _resources_pb2.RegistryRole
    def __init__(self, registry: _Optional[str] = ..., principal: _Optional[str] = ..., role: _Optional[_Union[_resources_pb2.RegistryRole, str]] = ...) -> None: ...
