import datetime

from google.api import field_behavior_pb2 as _field_behavior_pb2
from google.api import resource_pb2 as _resource_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class OrgRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORG_ROLE_UNSPECIFIED: _ClassVar[OrgRole]
    ORG_ROLE_MEMBER: _ClassVar[OrgRole]
    ORG_ROLE_ADMIN: _ClassVar[OrgRole]

class TeamRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TEAM_ROLE_UNSPECIFIED: _ClassVar[TeamRole]
    TEAM_ROLE_VIEWER: _ClassVar[TeamRole]
    TEAM_ROLE_MEMBER: _ClassVar[TeamRole]
    TEAM_ROLE_ADMIN: _ClassVar[TeamRole]

class RegistryRole(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REGISTRY_ROLE_UNSPECIFIED: _ClassVar[RegistryRole]
    REGISTRY_ROLE_RESTRICTED_VIEWER: _ClassVar[RegistryRole]
    REGISTRY_ROLE_VIEWER: _ClassVar[RegistryRole]
    REGISTRY_ROLE_MEMBER: _ClassVar[RegistryRole]
    REGISTRY_ROLE_ADMIN: _ClassVar[RegistryRole]

class Visibility(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VISIBILITY_UNSPECIFIED: _ClassVar[Visibility]
    VISIBILITY_ORGANIZATION: _ClassVar[Visibility]
    VISIBILITY_RESTRICTED: _ClassVar[Visibility]

class LegacyState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEGACY_STATE_UNSPECIFIED: _ClassVar[LegacyState]
    LEGACY_STATE_WRITABLE: _ClassVar[LegacyState]
    LEGACY_STATE_READ_ONLY: _ClassVar[LegacyState]
    LEGACY_STATE_MIGRATED: _ClassVar[LegacyState]
    LEGACY_STATE_DISABLED: _ClassVar[LegacyState]

class MigrationState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MIGRATION_STATE_UNSPECIFIED: _ClassVar[MigrationState]
    MIGRATION_STATE_PENDING: _ClassVar[MigrationState]
    MIGRATION_STATE_RUNNING: _ClassVar[MigrationState]
    MIGRATION_STATE_VERIFYING: _ClassVar[MigrationState]
    MIGRATION_STATE_SUCCEEDED: _ClassVar[MigrationState]
    MIGRATION_STATE_FAILED: _ClassVar[MigrationState]
    MIGRATION_STATE_CANCELLED: _ClassVar[MigrationState]
    MIGRATION_STATE_ROLLED_BACK: _ClassVar[MigrationState]
ORG_ROLE_UNSPECIFIED: OrgRole
ORG_ROLE_MEMBER: OrgRole
ORG_ROLE_ADMIN: OrgRole
TEAM_ROLE_UNSPECIFIED: TeamRole
TEAM_ROLE_VIEWER: TeamRole
TEAM_ROLE_MEMBER: TeamRole
TEAM_ROLE_ADMIN: TeamRole
REGISTRY_ROLE_UNSPECIFIED: RegistryRole
REGISTRY_ROLE_RESTRICTED_VIEWER: RegistryRole
REGISTRY_ROLE_VIEWER: RegistryRole
REGISTRY_ROLE_MEMBER: RegistryRole
REGISTRY_ROLE_ADMIN: RegistryRole
VISIBILITY_UNSPECIFIED: Visibility
VISIBILITY_ORGANIZATION: Visibility
VISIBILITY_RESTRICTED: Visibility
LEGACY_STATE_UNSPECIFIED: LegacyState
LEGACY_STATE_WRITABLE: LegacyState
LEGACY_STATE_READ_ONLY: LegacyState
LEGACY_STATE_MIGRATED: LegacyState
LEGACY_STATE_DISABLED: LegacyState
MIGRATION_STATE_UNSPECIFIED: MigrationState
MIGRATION_STATE_PENDING: MigrationState
MIGRATION_STATE_RUNNING: MigrationState
MIGRATION_STATE_VERIFYING: MigrationState
MIGRATION_STATE_SUCCEEDED: MigrationState
MIGRATION_STATE_FAILED: MigrationState
MIGRATION_STATE_CANCELLED: MigrationState
MIGRATION_STATE_ROLLED_BACK: MigrationState

class Organization(_message.Message):
    __slots__ = ("name", "display_name", "legacy_model_registry_enabled", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    LEGACY_MODEL_REGISTRY_ENABLED_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    display_name: str
    legacy_model_registry_enabled: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., display_name: _Optional[str] = ..., legacy_model_registry_enabled: bool = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class User(_message.Message):
    __slots__ = ("name", "organization", "display_name", "email", "service_account", "org_role", "create_time", "update_time", "etag", "service_admin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    ORG_ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ADMIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    organization: str
    display_name: str
    email: str
    service_account: bool
    org_role: OrgRole
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    service_admin: bool
    def __init__(self, name: _Optional[str] = ..., organization: _Optional[str] = ..., display_name: _Optional[str] = ..., email: _Optional[str] = ..., service_account: bool = ..., org_role: _Optional[_Union[OrgRole, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., service_admin: bool = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("name", "description", "secret", "create_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    secret: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., secret: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Team(_message.Message):
    __slots__ = ("name", "organization", "display_name", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORGANIZATION_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    organization: str
    display_name: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., organization: _Optional[str] = ..., display_name: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class TeamMember(_message.Message):
    __slots__ = ("name", "team", "user", "role", "create_time", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    team: str
    user: str
    role: TeamRole
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., team: _Optional[str] = ..., user: _Optional[str] = ..., role: _Optional[_Union[TeamRole, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Project(_message.Message):
    __slots__ = ("name", "description", "create_time", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ManifestEntry(_message.Message):
    __slots__ = ("path", "digest", "size", "ref")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REF_FIELD_NUMBER: _ClassVar[int]
    path: str
    digest: str
    size: int
    ref: str
    def __init__(self, path: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ..., ref: _Optional[str] = ...) -> None: ...

class ArtifactVersion(_message.Message):
    __slots__ = ("name", "version_index", "type", "digest", "size", "manifest", "metadata", "description", "aliases", "tags", "producing_run", "created_by", "create_time", "update_time", "etag", "delete_time", "path", "reused")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_INDEX_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    PRODUCING_RUN_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    DELETE_TIME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    name: str
    version_index: int
    type: str
    digest: str
    size: int
    manifest: _containers.RepeatedCompositeFieldContainer[ManifestEntry]
    metadata: _struct_pb2.Struct
    description: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    producing_run: str
    created_by: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    delete_time: _timestamp_pb2.Timestamp
    path: str
    reused: bool
    def __init__(self, name: _Optional[str] = ..., version_index: _Optional[int] = ..., type: _Optional[str] = ..., digest: _Optional[str] = ..., size: _Optional[int] = ..., manifest: _Optional[_Iterable[_Union[ManifestEntry, _Mapping]]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., description: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., producing_run: _Optional[str] = ..., created_by: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., delete_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., path: _Optional[str] = ..., reused: bool = ...) -> None: ...

class RegisteredModel(_message.Message):
    __slots__ = ("name", "description", "tags", "version_count", "create_time", "update_time", "etag", "migrated_to", "redirected")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    MIGRATED_TO_FIELD_NUMBER: _ClassVar[int]
    REDIRECTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    version_count: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    migrated_to: str
    redirected: bool
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., version_count: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., migrated_to: _Optional[str] = ..., redirected: bool = ...) -> None: ...

class RegisteredModelVersion(_message.Message):
    __slots__ = ("name", "version_index", "artifact_version", "aliases", "tags", "description", "linked_by", "create_time", "update_time", "redirected", "collection_version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_INDEX_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LINKED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    REDIRECTED_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version_index: int
    artifact_version: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    description: str
    linked_by: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    redirected: bool
    collection_version: str
    def __init__(self, name: _Optional[str] = ..., version_index: _Optional[int] = ..., artifact_version: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., linked_by: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., redirected: bool = ..., collection_version: _Optional[str] = ...) -> None: ...

class LegacyRegistrySettings(_message.Message):
    __slots__ = ("name", "team", "protected_aliases", "registry_admins", "state", "migrated_registry", "update_time", "etag", "redirected")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TEAM_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_ALIASES_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_ADMINS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MIGRATED_REGISTRY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    REDIRECTED_FIELD_NUMBER: _ClassVar[int]
    name: str
    team: str
    protected_aliases: _containers.RepeatedScalarFieldContainer[str]
    registry_admins: _containers.RepeatedScalarFieldContainer[str]
    state: LegacyState
    migrated_registry: str
    update_time: _timestamp_pb2.Timestamp
    etag: str
    redirected: bool
    def __init__(self, name: _Optional[str] = ..., team: _Optional[str] = ..., protected_aliases: _Optional[_Iterable[str]] = ..., registry_admins: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[LegacyState, str]] = ..., migrated_registry: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., redirected: bool = ...) -> None: ...

class Registry(_message.Message):
    __slots__ = ("name", "path_prefix", "description", "visibility", "artifact_types", "allow_all_artifact_types", "protected_aliases", "default_role", "core", "create_time", "update_time", "etag", "migrated_from")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_PREFIX_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_TYPES_FIELD_NUMBER: _ClassVar[int]
    ALLOW_ALL_ARTIFACT_TYPES_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_ALIASES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ROLE_FIELD_NUMBER: _ClassVar[int]
    CORE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    MIGRATED_FROM_FIELD_NUMBER: _ClassVar[int]
    name: str
    path_prefix: str
    description: str
    visibility: Visibility
    artifact_types: _containers.RepeatedScalarFieldContainer[str]
    allow_all_artifact_types: bool
    protected_aliases: _containers.RepeatedScalarFieldContainer[str]
    default_role: RegistryRole
    core: bool
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    migrated_from: str
    def __init__(self, name: _Optional[str] = ..., path_prefix: _Optional[str] = ..., description: _Optional[str] = ..., visibility: _Optional[_Union[Visibility, str]] = ..., artifact_types: _Optional[_Iterable[str]] = ..., allow_all_artifact_types: bool = ..., protected_aliases: _Optional[_Iterable[str]] = ..., default_role: _Optional[_Union[RegistryRole, str]] = ..., core: bool = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ..., migrated_from: _Optional[str] = ...) -> None: ...

class RegistryMember(_message.Message):
    __slots__ = ("name", "member", "role", "create_time", "update_time", "follows_team_roles")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MEMBER_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    FOLLOWS_TEAM_ROLES_FIELD_NUMBER: _ClassVar[int]
    name: str
    member: str
    role: RegistryRole
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    follows_team_roles: bool
    def __init__(self, name: _Optional[str] = ..., member: _Optional[str] = ..., role: _Optional[_Union[RegistryRole, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., follows_team_roles: bool = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("name", "type", "description", "tags", "version_count", "created_by", "create_time", "update_time", "etag")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    VERSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    description: str
    tags: _containers.RepeatedScalarFieldContainer[str]
    version_count: int
    created_by: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    etag: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., description: _Optional[str] = ..., tags: _Optional[_Iterable[str]] = ..., version_count: _Optional[int] = ..., created_by: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., etag: _Optional[str] = ...) -> None: ...

class CollectionVersion(_message.Message):
    __slots__ = ("name", "version_index", "artifact_version", "aliases", "tags", "description", "linked_by", "create_time", "update_time", "metadata", "digest", "type", "path")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_INDEX_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LINKED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    name: str
    version_index: int
    artifact_version: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    description: str
    linked_by: str
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    metadata: _struct_pb2.Struct
    digest: str
    type: str
    path: str
    def __init__(self, name: _Optional[str] = ..., version_index: _Optional[int] = ..., artifact_version: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ..., linked_by: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., digest: _Optional[str] = ..., type: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class MemberMapping(_message.Message):
    __slots__ = ("principal", "legacy_role", "legacy_registry_admin", "service_account", "registry_role")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    LEGACY_ROLE_FIELD_NUMBER: _ClassVar[int]
    LEGACY_REGISTRY_ADMIN_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_ROLE_FIELD_NUMBER: _ClassVar[int]
    principal: str
    legacy_role: TeamRole
    legacy_registry_admin: bool
    service_account: bool
    registry_role: RegistryRole
    def __init__(self, principal: _Optional[str] = ..., legacy_role: _Optional[_Union[TeamRole, str]] = ..., legacy_registry_admin: bool = ..., service_account: bool = ..., registry_role: _Optional[_Union[RegistryRole, str]] = ...) -> None: ...

class AccessChange(_message.Message):
    __slots__ = ("principal", "registry", "before", "after", "reason")
    PRINCIPAL_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    principal: str
    registry: str
    before: str
    after: str
    reason: str
    def __init__(self, principal: _Optional[str] = ..., registry: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TeamMigrationPlan(_message.Message):
    __slots__ = ("team", "target_registry", "renamed", "member_mappings", "collection_count", "version_count", "alias_count", "protected_aliases", "warnings", "legacy_state", "access_changes")
    TEAM_FIELD_NUMBER: _ClassVar[int]
    TARGET_REGISTRY_FIELD_NUMBER: _ClassVar[int]
    RENAMED_FIELD_NUMBER: _ClassVar[int]
    MEMBER_MAPPINGS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_COUNT_FIELD_NUMBER: _ClassVar[int]
    VERSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    ALIAS_COUNT_FIELD_NUMBER: _ClassVar[int]
    PROTECTED_ALIASES_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    LEGACY_STATE_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CHANGES_FIELD_NUMBER: _ClassVar[int]
    team: str
    target_registry: str
    renamed: bool
    member_mappings: _containers.RepeatedCompositeFieldContainer[MemberMapping]
    collection_count: int
    version_count: int
    alias_count: int
    protected_aliases: _containers.RepeatedScalarFieldContainer[str]
    warnings: _containers.RepeatedScalarFieldContainer[str]
    legacy_state: LegacyState
    access_changes: _containers.RepeatedCompositeFieldContainer[AccessChange]
    def __init__(self, team: _Optional[str] = ..., target_registry: _Optional[str] = ..., renamed: bool = ..., member_mappings: _Optional[_Iterable[_Union[MemberMapping, _Mapping]]] = ..., collection_count: _Optional[int] = ..., version_count: _Optional[int] = ..., alias_count: _Optional[int] = ..., protected_aliases: _Optional[_Iterable[str]] = ..., warnings: _Optional[_Iterable[str]] = ..., legacy_state: _Optional[_Union[LegacyState, str]] = ..., access_changes: _Optional[_Iterable[_Union[AccessChange, _Mapping]]] = ...) -> None: ...

class MigrationPlan(_message.Message):
    __slots__ = ("parent", "teams", "total_versions", "warnings")
    PARENT_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    parent: str
    teams: _containers.RepeatedCompositeFieldContainer[TeamMigrationPlan]
    total_versions: int
    warnings: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, parent: _Optional[str] = ..., teams: _Optional[_Iterable[_Union[TeamMigrationPlan, _Mapping]]] = ..., total_versions: _Optional[int] = ..., warnings: _Optional[_Iterable[str]] = ...) -> None: ...

class MigrationProgress(_message.Message):
    __slots__ = ("total", "done", "collections_total", "collections_done")
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    COLLECTIONS_DONE_FIELD_NUMBER: _ClassVar[int]
    total: int
    done: int
    collections_total: int
    collections_done: int
    def __init__(self, total: _Optional[int] = ..., done: _Optional[int] = ..., collections_total: _Optional[int] = ..., collections_done: _Optional[int] = ...) -> None: ...

class MigrationVerification(_message.Message):
    __slots__ = ("checked", "mismatches", "access_changes")
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    MISMATCHES_FIELD_NUMBER: _ClassVar[int]
    ACCESS_CHANGES_FIELD_NUMBER: _ClassVar[int]
    checked: int
    mismatches: _containers.RepeatedScalarFieldContainer[str]
    access_changes: _containers.RepeatedCompositeFieldContainer[AccessChange]
    def __init__(self, checked: _Optional[int] = ..., mismatches: _Optional[_Iterable[str]] = ..., access_changes: _Optional[_Iterable[_Union[AccessChange, _Mapping]]] = ...) -> None: ...

class TeamMigration(_message.Message):
    __slots__ = ("team", "target_registry", "state", "progress")
    TEAM_FIELD_NUMBER: _ClassVar[int]
    TARGET_REGISTRY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    team: str
    target_registry: str
    state: MigrationState
    progress: MigrationProgress
    def __init__(self, team: _Optional[str] = ..., target_registry: _Optional[str] = ..., state: _Optional[_Union[MigrationState, str]] = ..., progress: _Optional[_Union[MigrationProgress, _Mapping]] = ...) -> None: ...

class Migration(_message.Message):
    __slots__ = ("name", "state", "teams", "progress", "verification", "error", "create_time", "end_time", "update_time", "team_migrations", "created_by", "rollback")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TEAMS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    TEAM_MIGRATIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    name: str
    state: MigrationState
    teams: _containers.RepeatedScalarFieldContainer[str]
    progress: MigrationProgress
    verification: MigrationVerification
    error: str
    create_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    team_migrations: _containers.RepeatedCompositeFieldContainer[TeamMigration]
    created_by: str
    rollback: RollbackReport
    def __init__(self, name: _Optional[str] = ..., state: _Optional[_Union[MigrationState, str]] = ..., teams: _Optional[_Iterable[str]] = ..., progress: _Optional[_Union[MigrationProgress, _Mapping]] = ..., verification: _Optional[_Union[MigrationVerification, _Mapping]] = ..., error: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., team_migrations: _Optional[_Iterable[_Union[TeamMigration, _Mapping]]] = ..., created_by: _Optional[str] = ..., rollback: _Optional[_Union[RollbackReport, _Mapping]] = ...) -> None: ...

class RollbackReport(_message.Message):
    __slots__ = ("carried_back", "losses", "forced", "requested_by")
    CARRIED_BACK_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_BY_FIELD_NUMBER: _ClassVar[int]
    carried_back: _containers.RepeatedScalarFieldContainer[str]
    losses: _containers.RepeatedScalarFieldContainer[str]
    forced: bool
    requested_by: str
    def __init__(self, carried_back: _Optional[_Iterable[str]] = ..., losses: _Optional[_Iterable[str]] = ..., forced: bool = ..., requested_by: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("cursor", "type", "actor", "resource", "time", "details")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    type: str
    actor: str
    resource: str
    time: _timestamp_pb2.Timestamp
    details: _struct_pb2.Struct
    def __init__(self, cursor: _Optional[int] = ..., type: _Optional[str] = ..., actor: _Optional[str] = ..., resource: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Automation(_message.Message):
    __slots__ = ("name", "event_types", "alias_regex", "url", "secret", "created_by", "create_time", "enabled", "etag", "update_time")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    ALIAS_REGEX_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    CREATED_BY_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ETAG_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    name: str
    event_types: _containers.RepeatedScalarFieldContainer[str]
    alias_regex: str
    url: str
    secret: str
    created_by: str
    create_time: _timestamp_pb2.Timestamp
    enabled: bool
    etag: str
    update_time: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., event_types: _Optional[_Iterable[str]] = ..., alias_regex: _Optional[str] = ..., url: _Optional[str] = ..., secret: _Optional[str] = ..., created_by: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enabled: bool = ..., etag: _Optional[str] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("name", "event_cursor", "attempt", "status_code", "error", "succeeded", "time", "webhook_id")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EVENT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    WEBHOOK_ID_FIELD_NUMBER: _ClassVar[int]
    name: str
    event_cursor: int
    attempt: int
    status_code: int
    error: str
    succeeded: bool
    time: _timestamp_pb2.Timestamp
    webhook_id: str
    def __init__(self, name: _Optional[str] = ..., event_cursor: _Optional[int] = ..., attempt: _Optional[int] = ..., status_code: _Optional[int] = ..., error: _Optional[str] = ..., succeeded: bool = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., webhook_id: _Optional[str] = ...) -> None: ...
