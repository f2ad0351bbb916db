from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from registry.v1 import resources_pb2 as _resources_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlanMigrationRequest(_message.Message):
    __slots__ = ("parent", "teams")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    teams: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, parent: _Optional[str] = ..., teams: _Optional[_Iterable[str]] = ...) -> None: ...

class StartMigrationRequest(_message.Message):
    __slots__ = ("parent", "teams", "request_id")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    parent: str
    teams: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, parent: _Optional[str] = ..., teams: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class GetMigrationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ListMigrationsRequest(_message.Message):
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

class ListMigrationsResponse(_message.Message):
    __slots__ = ("migrations", "next_page_token")
    MIGRATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    migrations: _containers.RepeatedCompositeFieldContainer[_resources_pb2.Migration]
    next_page_token: str
    def __init__(self, migrations: _Optional[_Iterable[_Union[_resources_pb2.Migration, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchMigrationRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class CancelMigrationRequest(_message.Message):
    __slots__ = ("name", "validate_only", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    validate_only: bool
    force: bool
    def __init__(self, name: _Optional[str] = ..., validate_only: bool = ..., force: bool = ...) -> None: ...

class RollbackMigrationRequest(_message.Message):
    __slots__ = ("name", "validate_only", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    validate_only: bool
    force: bool
    def __init__(self, name: _Optional[str] = ..., validate_only: bool = ..., force: bool = ...) -> None: ...
