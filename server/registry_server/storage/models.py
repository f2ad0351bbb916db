"""The relational schema: SQLAlchemy 2 typed models.

Conventions: integer surrogate keys (`id`), times as integer microseconds since
the Unix epoch (portable, sortable, cheap to index), small lists (tags, accepted
types, protected aliases) as JSON, `revision` counters behind etags. Roles and
states are stored as the proto enum numbers, so role comparisons are integer
comparisons in SQL.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (containment operators for tag filters), JSON text elsewhere.
JsonType = JSON().with_variant(JSONB(), "postgresql")

ID = BigInteger().with_variant(Integer(), "sqlite")  # SQLite autoincrement needs INTEGER


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _owner(table: str, **kw: Any) -> Any:
    """A reference to the row this one belongs to: deleted with it."""
    return mapped_column(ForeignKey(f"{table}.id", ondelete="CASCADE"), **kw)


def _optional_ref(table: str, *, use_alter: bool = False) -> Any:
    """A reference that becomes NULL when its row is deleted."""
    return mapped_column(
        ForeignKey(f"{table}.id", ondelete="SET NULL", use_alter=use_alter), nullable=True
    )


class Keyed(Base):
    """A table keyed by an integer surrogate `id`."""

    __abstract__ = True
    id: Mapped[int] = mapped_column(ID, primary_key=True, sort_order=-1)


class TimestampMixin:
    create_time: Mapped[int] = mapped_column(BigInteger)
    update_time: Mapped[int] = mapped_column(BigInteger)


# --- organizations, users, keys, teams ---------------------------------------------


class Organization(TimestampMixin, Keyed):
    __tablename__ = "organizations"
    name: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(256), default="")
    legacy_model_registry_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    revision: Mapped[int] = mapped_column(Integer, default=1)


class User(TimestampMixin, Keyed):
    __tablename__ = "users"
    name: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[int] = _owner("organizations")
    display_name: Mapped[str] = mapped_column(String(256), default="")
    email: Mapped[str] = mapped_column(String(320), default="")
    service_account: Mapped[bool] = mapped_column(Boolean, default=False)
    org_role: Mapped[int] = mapped_column(Integer)  # OrgRole
    # The installation's operators (SPEC section 3): set by `registry-server bootstrap` and
    # `registry-server admin grant-service-admin`, never implied by an organization role.
    service_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    revision: Mapped[int] = mapped_column(Integer, default=1)
    __table_args__ = (Index("ix_users_org_name", "org_id", "name"),)


class ApiKey(Keyed):
    __tablename__ = "api_keys"
    # Public part of the key, embedded in the secret: `rk_{key_id}_{secret}`.
    key_id: Mapped[str] = mapped_column(String(32), unique=True)
    user_id: Mapped[int] = _owner("users", index=True)
    # sha256 of the whole secret; the secret itself is never stored.
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    description: Mapped[str] = mapped_column(String(1024), default="")
    create_time: Mapped[int] = mapped_column(BigInteger)
    revoke_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Team(TimestampMixin, Keyed):
    __tablename__ = "teams"
    name: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[int] = _owner("organizations")
    display_name: Mapped[str] = mapped_column(String(256), default="")
    revision: Mapped[int] = mapped_column(Integer, default=1)
    # Legacy Model Registry settings of the team.
    legacy_state: Mapped[int] = mapped_column(Integer)  # LegacyState
    legacy_protected_aliases: Mapped[list[str]] = mapped_column(JsonType, default=list)
    legacy_settings_revision: Mapped[int] = mapped_column(Integer, default=1)
    legacy_settings_update_time: Mapped[int] = mapped_column(BigInteger, default=0)
    # Set when MIGRATED: where the legacy registry went.
    migrated_registry_id: Mapped[int | None] = _optional_ref("registries", use_alter=True)
    __table_args__ = (Index("ix_teams_org_name", "org_id", "name"),)


class TeamMember(TimestampMixin, Base):
    __tablename__ = "team_members"
    team_id: Mapped[int] = _owner("teams", primary_key=True)
    user_id: Mapped[int] = _owner("users", primary_key=True)
    role: Mapped[int] = mapped_column(Integer)  # TeamRole
    __table_args__ = (Index("ix_team_members_user", "user_id", "team_id"),)


class LegacyRegistryAdmin(Base):
    """A team's "model registry admins" (legacy settings)."""

    __tablename__ = "legacy_registry_admins"
    team_id: Mapped[int] = _owner("teams", primary_key=True)
    user_id: Mapped[int] = _owner("users", primary_key=True)


# --- projects and artifacts ----------------------------------------------------------


class Project(TimestampMixin, Keyed):
    __tablename__ = "projects"
    team_id: Mapped[int] = _owner("teams")
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    __table_args__ = (UniqueConstraint("team_id", "name"),)


class Artifact(TimestampMixin, Keyed):
    __tablename__ = "artifacts"
    project_id: Mapped[int] = _owner("projects")
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    next_version_index: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (UniqueConstraint("project_id", "name"),)


class ArtifactVersion(TimestampMixin, Keyed):
    __tablename__ = "artifact_versions"
    artifact_id: Mapped[int] = _owner("artifacts")
    version_index: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    manifest: Mapped[list[dict[str, Any]]] = mapped_column(JsonType, default=list)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JsonType, default=dict)
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    producing_run: Mapped[str] = mapped_column(String(256), default="")
    created_by_id: Mapped[int | None] = _optional_ref("users")
    revision: Mapped[int] = mapped_column(Integer, default=1)
    delete_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (
        UniqueConstraint("artifact_id", "version_index"),
        Index("ix_artifact_versions_digest", "artifact_id", "digest"),
    )


class ArtifactAlias(Keyed):
    __tablename__ = "artifact_aliases"
    artifact_id: Mapped[int] = _owner("artifacts")
    alias: Mapped[str] = mapped_column(String(128))
    version_id: Mapped[int] = _owner("artifact_versions", index=True)
    __table_args__ = (UniqueConstraint("artifact_id", "alias"),)


class RunRecord:
    """A run recorded against an artifact version (lineage), once per run."""

    version_id: Mapped[int] = _owner("artifact_versions", primary_key=True)
    run_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_id: Mapped[int | None] = _optional_ref("users")
    create_time: Mapped[int] = mapped_column(BigInteger)


class ArtifactUsage(RunRecord, Base):
    """A run that consumed an artifact version (lineage)."""

    __tablename__ = "artifact_usages"


class ArtifactLogRun(RunRecord, Base):
    """A run that logged an artifact version's content again after its producing run
    (identical content: CreateArtifactVersion answered with this version, reused)."""

    __tablename__ = "artifact_log_runs"


# --- legacy Model Registry -----------------------------------------------------------


class RegisteredModel(TimestampMixin, Keyed):
    __tablename__ = "registered_models"
    team_id: Mapped[int] = _owner("teams")
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    next_version_index: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int | None] = _optional_ref("users")
    revision: Mapped[int] = mapped_column(Integer, default=1)
    # Set by a migration: the collection this registered model became.
    migrated_collection_id: Mapped[int | None] = _optional_ref("collections")
    __table_args__ = (UniqueConstraint("team_id", "name"),)


class LinkColumns:
    """What a link of an artifact version into a registered model or a collection
    holds, after its id and owner."""

    version_index: Mapped[int] = mapped_column(Integer)
    artifact_version_id: Mapped[int] = _owner("artifact_versions", index=True)
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    linked_by_id: Mapped[int | None] = _optional_ref("users")
    create_time: Mapped[int] = mapped_column(BigInteger)
    update_time: Mapped[int] = mapped_column(BigInteger)


# Their names, in that order: what a copy between the two kinds of link selects.
LINK_COLUMNS = tuple(LinkColumns.__annotations__)


class RegisteredModelVersion(LinkColumns, Keyed):
    __tablename__ = "registered_model_versions"
    registered_model_id: Mapped[int] = _owner("registered_models")
    __table_args__ = (
        UniqueConstraint("registered_model_id", "version_index"),
        UniqueConstraint("registered_model_id", "artifact_version_id"),
    )


class RegisteredModelAlias(Keyed):
    __tablename__ = "registered_model_aliases"
    registered_model_id: Mapped[int] = _owner("registered_models")
    alias: Mapped[str] = mapped_column(String(128))
    version_id: Mapped[int] = _owner("registered_model_versions", index=True)
    create_time: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("registered_model_id", "alias"),)


# --- registries and collections -----------------------------------------------------


class Registry(TimestampMixin, Keyed):
    __tablename__ = "registries"
    org_id: Mapped[int] = _owner("organizations")
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[int] = mapped_column(Integer)  # Visibility
    artifact_types: Mapped[list[str]] = mapped_column(JsonType, default=list)
    allow_all_artifact_types: Mapped[bool] = mapped_column(Boolean, default=False)
    protected_aliases: Mapped[list[str]] = mapped_column(JsonType, default=list)
    default_role: Mapped[int] = mapped_column(Integer)  # RegistryRole
    core: Mapped[bool] = mapped_column(Boolean, default=False)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_by_id: Mapped[int | None] = _optional_ref("users")
    # Set when a migration created the registry.
    migrated_from_team_id: Mapped[int | None] = _optional_ref("teams")
    migration_id: Mapped[int | None] = _optional_ref("migrations")
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        Index("ix_registries_org_create", "org_id", "create_time", "id"),
    )


class RegistryMember(TimestampMixin, Keyed):
    """A role in a registry granted to a user or (exclusive) to a team.

    A team's row may instead follow the team's own roles (`team_roles`, as the member
    of a migrated registry does): each member of the team then holds the registry role
    of their current team role (`domain.roles.registry_role_of_team_role`), computed when
    access is checked, and `role` is 0."""

    __tablename__ = "registry_members"
    registry_id: Mapped[int] = _owner("registries")
    user_id: Mapped[int | None] = _owner("users", nullable=True)
    team_id: Mapped[int | None] = _owner("teams", nullable=True)
    role: Mapped[int] = mapped_column(Integer)  # RegistryRole
    team_roles: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    __table_args__ = (
        UniqueConstraint("registry_id", "user_id"),
        UniqueConstraint("registry_id", "team_id"),
        Index("ix_registry_members_user", "user_id", "registry_id"),
        Index("ix_registry_members_team", "team_id", "registry_id"),
    )


class Collection(TimestampMixin, Keyed):
    __tablename__ = "collections"
    registry_id: Mapped[int] = _owner("registries")
    name: Mapped[str] = mapped_column(String(128))
    type: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JsonType, default=list)
    next_version_index: Mapped[int] = mapped_column(Integer, default=0)
    created_by_id: Mapped[int | None] = _optional_ref("users")
    revision: Mapped[int] = mapped_column(Integer, default=1)
    # Set when a migration created it from a registered model.
    migrated_from_model_id: Mapped[int | None] = _optional_ref("registered_models", use_alter=True)
    __table_args__ = (
        UniqueConstraint("registry_id", "name"),
        Index("ix_collections_registry_create", "registry_id", "create_time", "id"),
        Index("ix_collections_registry_update", "registry_id", "update_time", "id"),
    )


class CollectionVersion(LinkColumns, Keyed):
    __tablename__ = "collection_versions"
    collection_id: Mapped[int] = _owner("collections")
    __table_args__ = (
        UniqueConstraint("collection_id", "version_index"),
        UniqueConstraint("collection_id", "artifact_version_id"),
        Index("ix_collection_versions_create", "collection_id", "create_time", "id"),
    )


class CollectionAlias(Keyed):
    __tablename__ = "collection_aliases"
    collection_id: Mapped[int] = _owner("collections")
    alias: Mapped[str] = mapped_column(String(128))
    version_id: Mapped[int] = _owner("collection_versions", index=True)
    create_time: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("collection_id", "alias"),)


# --- idempotency -------------------------------------------------------------------


class IdempotencyKey(Keyed):
    """The first response of a create carrying a request_id (AIP-155)."""

    __tablename__ = "idempotency_keys"
    user_id: Mapped[int] = _owner("users")
    method: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes] = mapped_column(LargeBinary)
    create_time: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("user_id", "method", "request_id"),)


# --- migrations ----------------------------------------------------------------------


class Migration(Keyed):
    __tablename__ = "migrations"
    org_id: Mapped[int] = _owner("organizations")
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[int] = mapped_column(Integer)  # MigrationState
    created_by_id: Mapped[int | None] = _optional_ref("users")
    progress_total: Mapped[int] = mapped_column(BigInteger, default=0)
    progress_done: Mapped[int] = mapped_column(BigInteger, default=0)
    verification_checked: Mapped[int] = mapped_column(BigInteger, default=0)
    mismatches: Mapped[list[str]] = mapped_column(JsonType, default=list)
    # Planned access changes the verification found (principal, registry, before, after,
    # reason): not mismatches, but listed one by one.
    access_changes: Mapped[list[dict[str, str]]] = mapped_column(
        JsonType, default=list, server_default=text("'[]'")
    )
    error: Mapped[str] = mapped_column(Text, default="")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set with cancel_requested (service/migration/carry_back.py): what the undo carries
    # back into the legacy registries and what it loses, who asked, whether it was forced,
    # and `applied` once the carry-back committed. Empty until an undo is asked for.
    rollback_report: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    # Lease: the replica working on it and until when (microseconds).
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_expires: Mapped[int] = mapped_column(BigInteger, default=0)
    create_time: Mapped[int] = mapped_column(BigInteger)
    update_time: Mapped[int] = mapped_column(BigInteger)
    end_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (Index("ix_migrations_state_lease", "state", "lease_expires"),)


class MigrationTeam(Keyed):
    """One team of a migration: its target and resumable progress."""

    __tablename__ = "migration_teams"
    migration_id: Mapped[int] = _owner("migrations")
    team_id: Mapped[int] = _owner("teams")
    target_name: Mapped[str] = mapped_column(String(128))
    target_registry_id: Mapped[int | None] = _optional_ref("registries")
    state: Mapped[int] = mapped_column(Integer)  # MigrationState
    # Highest registered_model_versions.id copied so far (keyset cursor).
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    versions_total: Mapped[int] = mapped_column(BigInteger, default=0)
    versions_done: Mapped[int] = mapped_column(BigInteger, default=0)
    collections_total: Mapped[int] = mapped_column(BigInteger, default=0)
    collections_done: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (UniqueConstraint("migration_id", "team_id"),)


class ActiveTeamMigration(Base):
    """At most one active migration per team (the primary key enforces it)."""

    __tablename__ = "active_team_migrations"
    team_id: Mapped[int] = _owner("teams", primary_key=True)
    migration_id: Mapped[int] = _owner("migrations")


# --- events and automations ----------------------------------------------------------


class Event(Base):
    """Transactional outbox: written in the same transaction as the change."""

    __tablename__ = "events"
    cursor: Mapped[int] = mapped_column(ID, primary_key=True, autoincrement=True)
    org_id: Mapped[int] = _owner("organizations")
    # Scope used for visibility: the registry or team the resource lives in.
    registry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    team_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    resource: Mapped[str] = mapped_column(String(512))
    time: Mapped[int] = mapped_column(BigInteger)
    details: Mapped[dict[str, Any]] = mapped_column(JsonType, default=dict)
    __table_args__ = (
        Index("ix_events_org_cursor", "org_id", "cursor"),
        Index("ix_events_registry_cursor", "registry_id", "cursor"),
        Index("ix_events_resource", "resource", "cursor"),
    )


class Automation(Keyed):
    __tablename__ = "automations"
    uid: Mapped[str] = mapped_column(String(64), unique=True)
    org_id: Mapped[int] = _owner("organizations")
    registry_id: Mapped[int] = _owner("registries")
    collection_id: Mapped[int | None] = _owner("collections", nullable=True)
    event_types: Mapped[list[str]] = mapped_column(JsonType, default=list)
    alias_regex: Mapped[str] = mapped_column(String(512), default="")
    url: Mapped[str] = mapped_column(String(2048))
    # The signing secret in plaintext, or "" when `secret_sealed` holds it encrypted
    # under the server's key (service/secret_box.py).
    secret: Mapped[str] = mapped_column(String(256))
    secret_sealed: Mapped[str | None] = mapped_column(Text, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    revision: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    created_by_id: Mapped[int | None] = _optional_ref("users")
    create_time: Mapped[int] = mapped_column(BigInteger)
    update_time: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    # Highest event cursor already scheduled for delivery.
    event_cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    __table_args__ = (
        Index("ix_automations_registry", "registry_id", "collection_id", "id"),
        Index("ix_automations_collection", "collection_id"),
    )


class Delivery(Keyed):
    __tablename__ = "deliveries"
    automation_id: Mapped[int] = _owner("automations", index=True)
    event_cursor: Mapped[int] = mapped_column(BigInteger)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    succeeded: Mapped[bool] = mapped_column(Boolean, default=False)
    # 0 while the attempt is pending; then when it was made.
    time: Mapped[int] = mapped_column(BigInteger)
    # Pending attempts only: when it is due (or the claiming replica's lease ends).
    next_attempt_time: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    __table_args__ = (Index("ix_deliveries_due", "next_attempt_time"),)


# --- file contents ----------------------------------------------------------------------


class Blob(Keyed):
    """A file's bytes in the blob store, once per organization and sha256 digest
    (storage/blobs). `touch_time` is when an upload of it last started, a client was
    last told it is stored, or a version last referred to it: `gc-blobs` never removes
    one touched within its grace period."""

    __tablename__ = "blobs"
    org_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    digest: Mapped[str] = mapped_column(String(80))  # sha256:<64 hex digits>
    size: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[int] = mapped_column(Integer)  # queries.blobs.BlobState
    create_time: Mapped[int] = mapped_column(BigInteger)
    touch_time: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (UniqueConstraint("org_id", "digest"), Index("ix_blobs_touch", "touch_time"))


class TeamBlob(Base):
    """A team holds a blob: a writer of one of its projects uploaded the bytes and the
    server verified them (sha256 and size), or one of its versions referred to it when
    holders were first recorded. The bytes are stored once per organization (`Blob`);
    only a team that holds them may name them in a manifest or be told they are stored
    (service/files.py), so a digest learned elsewhere never reaches another team's
    bytes. Rows go with their blob (gc) and with their team."""

    __tablename__ = "team_blobs"
    team_id: Mapped[int] = _owner("teams", primary_key=True)
    blob_id: Mapped[int] = _owner("blobs", primary_key=True)
    create_time: Mapped[int] = mapped_column(BigInteger)
    __table_args__ = (Index("ix_team_blobs_blob", "blob_id"),)
