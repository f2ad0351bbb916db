"""`Client`: the registry's services as plain Python methods.

    from registry_client import Client

    client = Client()  # REGISTRY_ADDRESS / REGISTRY_API_KEY
    version = client.resolve("acme/wandb-registry-model/resnet:production").artifact_version
    client.link("vision/training/resnet:v3", "model/resnet", aliases=["staging"])
    for registry in client.registries(filter='name : "vision"'):
        print(registry.name)

Every call has a deadline (`timeout`). Reads, and writes that carry a request_id
(generated here for every create and link, and reused by each retry so the server
applies it once), are retried with exponential backoff while the server answers
UNAVAILABLE. Failures raise the typed exceptions of `registry_client.errors`.
List methods return lazy `Pager`s that fetch pages as they are iterated.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import grpc
from google.protobuf import empty_pb2, field_mask_pb2, struct_pb2, timestamp_pb2
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.message import Message

from registry.v1 import artifact_service_pb2 as art_pb
from registry.v1 import collection_service_pb2 as col_pb
from registry.v1 import event_service_pb2 as ev_pb
from registry.v1 import file_service_pb2 as file_pb
from registry.v1 import legacy_model_registry_service_pb2 as legacy_pb
from registry.v1 import migration_service_pb2 as mig_pb
from registry.v1 import organization_service_pb2 as org_pb
from registry.v1 import registry_service_pb2 as reg_pb
from registry.v1 import resources_pb2 as r

from . import files, names, webhooks
from .channel import DEFAULT_TARGET, CommitToken, Stubs, open_channel
from .errors import (
    DeadlineExceededError,
    RegistryError,
    UnavailableError,
    from_rpc_error,
    invalid_argument,
)
from .files import Progress, Transfer, sha256_file
from .pager import Pager

M = TypeVar("M", bound=Message)
T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
FINAL_MIGRATION_STATES = frozenset(
    {
        r.MIGRATION_STATE_SUCCEEDED,
        r.MIGRATION_STATE_FAILED,
        r.MIGRATION_STATE_CANCELLED,
        r.MIGRATION_STATE_ROLLED_BACK,
    }
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for calls the server answered UNAVAILABLE."""

    max_retries: int = 4
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number `retry` (0-based): half fixed, half random."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def new_request_id() -> str:
    """A fresh AIP-155 request id."""
    return str(uuid.uuid4())


def _enum(wrapper: EnumTypeWrapper, prefix: str, value: str | int, field: str) -> str:
    """`restricted`, `VISIBILITY_RESTRICTED` or 2 -> `VISIBILITY_RESTRICTED`."""
    if isinstance(value, int):
        try:
            return str(wrapper.Name(value))
        except ValueError:
            raise invalid_argument(field, f"unknown value {value}") from None
    candidate = value.strip().upper().replace("-", "_")
    if not candidate.startswith(prefix):
        candidate = prefix + candidate
    known = [str(k) for k in wrapper.keys()]  # noqa: SIM118 - an enum wrapper, not a dict
    if candidate not in known or candidate.endswith("_UNSPECIFIED"):
        usable = [k for k in known if not k.endswith("_UNSPECIFIED")]
        choices = ", ".join(k[len(prefix) :].lower() for k in usable)
        raise invalid_argument(field, f"{value!r} is not one of: {choices}")
    return candidate


def _struct(values: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if values is None:
        return None
    out = struct_pb2.Struct()
    out.update(dict(values))
    return out


def manifest_from_directory(
    directory: str | os.PathLike[str], *, ref_prefix: str = "", local_refs: bool = False
) -> list[r.ManifestEntry]:
    """One manifest entry per file under `directory`, sorted by path, with sha256 digests.

    Entries carry no `ref` by default, so the same files give the same content digest
    wherever they are logged from. `ref_prefix` records where the bytes live (e.g.
    `s3://bucket/models/resnet` + the relative path); `local_refs` records each file's
    `file://` URI instead.
    """
    root = Path(directory)
    if not root.is_dir():
        raise invalid_argument("directory", f"{str(directory)!r} is not a directory")
    entries: list[r.ManifestEntry] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if not path.is_file():
                continue  # sockets, broken links
            relative = path.relative_to(root).as_posix()
            if ref_prefix:
                ref = f"{ref_prefix.rstrip('/')}/{relative}"
            elif local_refs:
                ref = path.resolve().as_uri()
            else:
                ref = ""
            entries.append(
                r.ManifestEntry(
                    path=relative, digest=sha256_file(path), size=path.stat().st_size, ref=ref
                )
            )
    entries.sort(key=lambda e: e.path)
    return entries


def _changes(**fields: Any) -> dict[str, Any]:
    """The fields of an update that were given (not None)."""
    return {k: v for k, v in fields.items() if v is not None}


def _mask(changes: Mapping[str, Any]) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(changes))


def _timestamp(value: float | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(value * 1e9))
    return ts


class Client:
    """A connection to the registry with every service as methods.

    `target` and `api_key` default to REGISTRY_ADDRESS and REGISTRY_API_KEY. TLS is
    used when `root_certificates` or a client certificate is given (or `tls=True`);
    `private_key` with `certificate_chain` makes it mutual TLS. `timeout` is the
    deadline of each unary call in seconds; `retries` is how often a retryable call
    is retried on UNAVAILABLE (or a `RetryPolicy`). `interceptors` are extra grpc
    client interceptors (tracing, logging) placed in front of the channel.
    `commit_token` holds the highest commit number the client was given, sent with
    every call so that no replica answers with older state (a new one unless given).
    """

    def __init__(
        self,
        target: str | None = None,
        api_key: str | None = None,
        *,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        tls: bool | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        retries: int | RetryPolicy = 4,
        interceptors: Sequence[Any] = (),
        options: Sequence[tuple[str, Any]] = (),
        commit_token: CommitToken | None = None,
    ) -> None:
        self.target = target or os.environ.get("REGISTRY_ADDRESS") or DEFAULT_TARGET
        self.api_key = api_key if api_key is not None else os.environ.get("REGISTRY_API_KEY", "")
        self.timeout = timeout
        self.retry = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries)
        self.commit_token = commit_token or CommitToken()
        channel = open_channel(
            self.target,
            self.api_key,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            tls=tls,
            options=options,
            commit_token=self.commit_token,
        )
        self._base_channel = channel
        if interceptors:
            channel = grpc.intercept_channel(channel, *interceptors)
        self.channel: grpc.Channel = channel
        self.stubs = Stubs.on(channel)
        self._me: r.User | None = None

    # --- plumbing ------------------------------------------------------------------

    def close(self) -> None:
        self._base_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(
        self,
        rpc: Any,
        request: Message,
        response_type: type[M],
        *,
        retry: bool,
        timeout: float | None = None,
    ) -> M:
        """One unary call with the default deadline, retried on UNAVAILABLE when `retry`."""
        deadline = timeout if timeout is not None else self.timeout
        attempt = 0
        while True:
            try:
                response = rpc(request, timeout=deadline)
            except grpc.RpcError as exc:
                err = from_rpc_error(exc)
                if retry and isinstance(err, UnavailableError) and attempt < self.retry.max_retries:
                    time.sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise err from exc
            if not isinstance(response, response_type):
                raise RegistryError(f"unexpected response type {type(response).__name__}")
            return response

    def _read(self, rpc: Any, request: Message, response_type: type[M]) -> M:
        return self._call(rpc, request, response_type, retry=True)

    def _write(self, rpc: Any, request: Message, response_type: type[M]) -> M:
        """A write without request_id: never retried (it could apply twice)."""
        return self._call(rpc, request, response_type, retry=False)

    def _create(self, rpc: Any, request: Message, response_type: type[M]) -> M:
        """A write with a request_id: every retry sends the same id, the server applies it once."""
        return self._call(rpc, request, response_type, retry=True)

    def _stream(self, rpc: Any, request: Message, timeout: float | None) -> Iterator[Any]:
        """Items of a server stream; the call is cancelled when the caller stops early."""
        call = rpc(request, timeout=timeout)
        try:
            yield from call
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()

    def _watch(
        self,
        rpc: Any,
        request: Callable[[], Message],
        timeout: float | None,
        *,
        quiet_deadline: bool,
    ) -> Iterator[Any]:
        """A watch stream that outlives dropped connections: on UNAVAILABLE it is opened
        again with a fresh `request()` (which resumes from what the caller has seen),
        under the retry policy. `timeout` bounds the whole watch; when it passes, the
        watch ends quietly if `quiet_deadline`, else raises DeadlineExceededError."""
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if quiet_deadline and remaining == 0.0:
                return
            try:
                for item in self._stream(rpc, request(), remaining):
                    failures = 0
                    yield item
                return
            except DeadlineExceededError:
                if quiet_deadline and deadline is not None:
                    return
                raise
            except UnavailableError:
                if failures >= self.retry.max_retries:
                    raise
                time.sleep(self.retry.delay(failures))
                failures += 1

    def _pager(
        self,
        rpc: Any,
        make_request: Callable[[str], Message],
        response_type: type[M],
        items: Callable[[M], Iterable[T]],
        limit: int | None,
    ) -> Pager[T]:
        def fetch(token: str) -> tuple[list[T], str]:
            response = self._read(rpc, make_request(token), response_type)
            return list(items(response)), str(getattr(response, "next_page_token", ""))

        return Pager(fetch, limit=limit)

    def _org(self) -> str:
        """The caller's organization id (asked once)."""
        return self.whoami().organization.removeprefix("organizations/")

    def _collection_version_name(self, value: str, field: str) -> str:
        ref = names.collection_version_ref(value, self._org, field)
        if ref.name:
            return ref.name
        resolved = self.resolve(ref.path)
        if not resolved.HasField("collection_version"):
            raise invalid_argument(field, f"{value!r} does not name a collection version")
        return resolved.collection_version.name

    def _artifact_source(self, value: str) -> str:
        """An artifact version name, or a path (short registry form expanded)."""
        return value if names.is_resource_name(value) else names.expand_path(value)

    # --- organizations, users, teams -------------------------------------------------

    def whoami(self, *, refresh: bool = False) -> r.User:
        """The user (or service account) of the API key."""
        if self._me is None or refresh:
            self._me = self._read(
                self.stubs.organizations.GetCurrentUser, org_pb.GetCurrentUserRequest(), r.User
            )
        return self._me

    def organization(self, name: str | None = None) -> r.Organization:
        return self._read(
            self.stubs.organizations.GetOrganization,
            org_pb.GetOrganizationRequest(name=names.organization_name(name, self._org)),
            r.Organization,
        )

    def organizations(
        self, *, page_size: int = 0, limit: int | None = None
    ) -> Pager[r.Organization]:
        """Every organization for a service admin; your own for anyone else."""
        return self._pager(
            self.stubs.organizations.ListOrganizations,
            lambda token: org_pb.ListOrganizationsRequest(page_size=page_size, page_token=token),
            org_pb.ListOrganizationsResponse,
            lambda resp: resp.organizations,
            limit,
        )

    def create_organization(
        self,
        organization_id: str,
        *,
        display_name: str = "",
        legacy_model_registry_enabled: bool = True,
        request_id: str | None = None,
    ) -> r.Organization:
        """A new organization with its core registries (service admins only)."""
        return self._create(
            self.stubs.organizations.CreateOrganization,
            org_pb.CreateOrganizationRequest(
                organization_id=organization_id,
                display_name=display_name,
                legacy_model_registry_enabled=legacy_model_registry_enabled,
                request_id=request_id or new_request_id(),
            ),
            r.Organization,
        )

    def update_organization(
        self,
        name: str | None = None,
        *,
        display_name: str | None = None,
        legacy_model_registry_enabled: bool | None = None,
    ) -> r.Organization:
        """Changes only the fields given (organization admins)."""
        changes = _changes(
            display_name=display_name, legacy_model_registry_enabled=legacy_model_registry_enabled
        )
        return self._write(
            self.stubs.organizations.UpdateOrganization,
            org_pb.UpdateOrganizationRequest(
                organization=r.Organization(
                    name=names.organization_name(name, self._org), **changes
                ),
                update_mask=_mask(changes),
            ),
            r.Organization,
        )

    def users(
        self,
        *,
        organization: str | None = None,
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.User]:
        parent = names.organization_name(organization, self._org)
        return self._pager(
            self.stubs.organizations.ListUsers,
            lambda token: org_pb.ListUsersRequest(
                parent=parent,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
            ),
            org_pb.ListUsersResponse,
            lambda resp: resp.users,
            limit,
        )

    def user(self, name: str) -> r.User:
        return self._read(
            self.stubs.organizations.GetUser,
            org_pb.GetUserRequest(name=names.user_name(name)),
            r.User,
        )

    def create_user(
        self,
        user_id: str,
        *,
        display_name: str = "",
        email: str = "",
        service_account: bool = False,
        org_role: str | int = "member",
        organization: str | None = None,
        request_id: str | None = None,
    ) -> r.User:
        return self._create(
            self.stubs.organizations.CreateUser,
            org_pb.CreateUserRequest(
                parent=names.organization_name(organization, self._org),
                user_id=user_id,
                display_name=display_name,
                email=email,
                service_account=service_account,
                org_role=_enum(r.OrgRole, "ORG_ROLE_", org_role, "org_role"),
                request_id=request_id or new_request_id(),
            ),
            r.User,
        )

    def update_user(
        self,
        name: str,
        *,
        display_name: str | None = None,
        email: str | None = None,
        org_role: str | int | None = None,
    ) -> r.User:
        """Changes only the fields given (`org_role`: organization admins)."""
        changes = _changes(
            display_name=display_name,
            email=email,
            org_role=None
            if org_role is None
            else _enum(r.OrgRole, "ORG_ROLE_", org_role, "org_role"),
        )
        return self._write(
            self.stubs.organizations.UpdateUser,
            org_pb.UpdateUserRequest(
                user=r.User(name=names.user_name(name, "user.name"), **changes),
                update_mask=_mask(changes),
            ),
            r.User,
        )

    def create_api_key(self, user: str | None = None, *, description: str = "") -> r.ApiKey:
        """A new key for `user` (default: the caller); its `secret` is only returned here."""
        parent = names.user_name(user) if user else self.whoami().name
        return self._write(
            self.stubs.organizations.CreateApiKey,
            org_pb.CreateApiKeyRequest(parent=parent, description=description),
            r.ApiKey,
        )

    def api_keys(
        self, user: str | None = None, *, page_size: int = 0, limit: int | None = None
    ) -> Pager[r.ApiKey]:
        """The keys of `user` (default: the caller), never their secrets."""
        parent = names.user_name(user, "parent") if user else self.whoami().name
        return self._pager(
            self.stubs.organizations.ListApiKeys,
            lambda token: org_pb.ListApiKeysRequest(
                parent=parent, page_size=page_size, page_token=token
            ),
            org_pb.ListApiKeysResponse,
            lambda resp: resp.api_keys,
            limit,
        )

    def delete_api_key(self, name: str) -> None:
        """Revokes a key (`USER/KEY` or `users/USER/apiKeys/KEY`): it stops working at once."""
        self._write(
            self.stubs.organizations.DeleteApiKey,
            org_pb.DeleteApiKeyRequest(name=names.api_key_name(name)),
            empty_pb2.Empty,
        )

    def teams(
        self,
        *,
        organization: str | None = None,
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.Team]:
        parent = names.organization_name(organization, self._org)
        return self._pager(
            self.stubs.organizations.ListTeams,
            lambda token: org_pb.ListTeamsRequest(
                parent=parent,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
            ),
            org_pb.ListTeamsResponse,
            lambda resp: resp.teams,
            limit,
        )

    def team(self, name: str) -> r.Team:
        return self._read(
            self.stubs.organizations.GetTeam,
            org_pb.GetTeamRequest(name=names.team_name(name)),
            r.Team,
        )

    def create_team(
        self,
        team_id: str,
        *,
        display_name: str = "",
        organization: str | None = None,
        request_id: str | None = None,
    ) -> r.Team:
        return self._create(
            self.stubs.organizations.CreateTeam,
            org_pb.CreateTeamRequest(
                parent=names.organization_name(organization, self._org),
                team_id=team_id,
                display_name=display_name,
                request_id=request_id or new_request_id(),
            ),
            r.Team,
        )

    def team_members(
        self, team: str, *, page_size: int = 0, limit: int | None = None
    ) -> Pager[r.TeamMember]:
        parent = names.team_name(team)
        return self._pager(
            self.stubs.organizations.ListTeamMembers,
            lambda token: org_pb.ListTeamMembersRequest(
                parent=parent, page_size=page_size, page_token=token
            ),
            org_pb.ListTeamMembersResponse,
            lambda resp: resp.members,
            limit,
        )

    def add_team_member(self, team: str, user: str, role: str | int = "member") -> r.TeamMember:
        return self._write(
            self.stubs.organizations.AddTeamMember,
            org_pb.AddTeamMemberRequest(
                team=names.team_name(team),
                user=names.user_name(user),
                role=_enum(r.TeamRole, "TEAM_ROLE_", role, "role"),
            ),
            r.TeamMember,
        )

    def update_team_member(self, team: str, user: str, role: str | int) -> r.TeamMember:
        return self._write(
            self.stubs.organizations.UpdateTeamMember,
            org_pb.UpdateTeamMemberRequest(
                team=names.team_name(team),
                user=names.user_name(user),
                role=_enum(r.TeamRole, "TEAM_ROLE_", role, "role"),
            ),
            r.TeamMember,
        )

    def remove_team_member(self, team: str, user: str) -> None:
        self._write(
            self.stubs.organizations.RemoveTeamMember,
            org_pb.RemoveTeamMemberRequest(team=names.team_name(team), user=names.user_name(user)),
            empty_pb2.Empty,
        )

    # --- projects, artifact versions, paths -----------------------------------------

    def projects(
        self,
        team: str,
        *,
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.Project]:
        parent = names.team_name(team)
        return self._pager(
            self.stubs.artifacts.ListProjects,
            lambda token: art_pb.ListProjectsRequest(
                parent=parent,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
            ),
            art_pb.ListProjectsResponse,
            lambda resp: resp.projects,
            limit,
        )

    def project(self, name: str) -> r.Project:
        return self._read(
            self.stubs.artifacts.GetProject,
            art_pb.GetProjectRequest(name=names.project_name(name)),
            r.Project,
        )

    def create_project(
        self, team: str, project_id: str, *, description: str = "", request_id: str | None = None
    ) -> r.Project:
        return self._create(
            self.stubs.artifacts.CreateProject,
            art_pb.CreateProjectRequest(
                parent=names.team_name(team),
                project_id=project_id,
                description=description,
                request_id=request_id or new_request_id(),
            ),
            r.Project,
        )

    def log_artifact(
        self,
        project: str,
        name: str,
        type: str,
        directory: str | os.PathLike[str] | None = None,
        *,
        manifest: Iterable[r.ManifestEntry] | None = None,
        ref_prefix: str = "",
        local_refs: bool = False,
        metadata: Mapping[str, Any] | None = None,
        description: str = "",
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        run_id: str = "",
        request_id: str | None = None,
        progress: Progress | None = None,
    ) -> r.ArtifactVersion:
        """Logs a version of artifact `name` in `project` (`team/project`).

        The content is either a local `directory` (walked, every file hashed with sha256,
        see `manifest_from_directory`; the files the organization does not store yet are
        uploaded first, unless `ref_prefix` or `local_refs` record where they live) or a
        ready `manifest` (its entries without `ref` must be uploaded already).
        Logging identical content again returns the existing version with `reused`
        set, and applies what was asked for to it: the aliases move to it, the tags
        are added, the metadata keys are set over its own, a description replaces its
        own, and `run_id` becomes its producing run if it has none, else one of its
        `logging_runs` (see `lineage`).
        """
        if (directory is None) == (manifest is None):
            raise invalid_argument("manifest", "give exactly one of directory and manifest")
        entries = (
            manifest_from_directory(directory, ref_prefix=ref_prefix, local_refs=local_refs)
            if directory is not None
            else list(manifest or ())
        )
        if directory is not None and not (ref_prefix or local_refs):
            self.upload(project, directory, entries, progress=progress)
        return self._create(
            self.stubs.artifacts.CreateArtifactVersion,
            art_pb.CreateArtifactVersionRequest(
                parent=names.project_name(project),
                artifact_id=name,
                type=type,
                manifest=entries,
                metadata=_struct(metadata),
                description=description,
                aliases=list(aliases),
                tags=list(tags),
                run_id=run_id,
                request_id=request_id or new_request_id(),
            ),
            r.ArtifactVersion,
        )

    def upload(
        self,
        project: str,
        directory: str | os.PathLike[str],
        entries: Sequence[r.ManifestEntry] | None = None,
        *,
        workers: int = files.WORKERS,
        progress: Progress | None = None,
    ) -> Transfer:
        """Uploads the files under `directory` (those of `entries`, default: all) that
        the organization of `project` does not store yet, `workers` at a time; what was
        sent. `progress` is told each number of bytes sent."""
        if entries is None:
            entries = manifest_from_directory(directory)
        return files.upload_files(
            self.stubs,
            names.project_name(project),
            Path(directory),
            entries,
            workers=workers,
            progress=progress,
        )

    def download(
        self,
        path: str,
        dest: str | os.PathLike[str],
        *,
        run_id: str = "",
        workers: int = files.WORKERS,
        progress: Progress | None = None,
        total: Progress | None = None,
    ) -> Transfer:
        """Writes the files of the version `path` names (any path form, `model/resnet:v2`
        too) into `dest`, each checked against its sha256 digest: files already whole
        there are kept, a partial one (`NAME.partial`) is resumed, and no manifest path
        may lead outside `dest`. Reference entries (`ref`) are not fetched. With `run_id`,
        the run is recorded as a consumer, as `use` does. `total` is told the bytes of the
        stored files once they are known, `progress` each number of bytes received."""
        listing = self._read(
            self.stubs.files.GetDownloadUrls,
            file_pb.GetDownloadUrlsRequest(path=names.expand_path(path), run_id=run_id),
            file_pb.GetDownloadUrlsResponse,
        )
        if total is not None:
            total(sum(u.size for u in listing.urls))
        return files.download_files(
            self.stubs, listing, Path(dest), workers=workers, progress=progress
        )

    def artifact_version(self, name_or_path: str) -> r.ArtifactVersion:
        """An artifact version by resource name or by any path form."""
        if names.is_resource_name(name_or_path):
            return self._read(
                self.stubs.artifacts.GetArtifactVersion,
                art_pb.GetArtifactVersionRequest(name=name_or_path),
                r.ArtifactVersion,
            )
        return self.resolve(name_or_path).artifact_version

    def artifact_versions(
        self,
        artifact: str,
        *,
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.ArtifactVersion]:
        """Versions of `teams/t/projects/p/artifacts/a` (or `t/p/a`)."""
        parent = artifact
        if not names.is_resource_name(artifact):
            team, _, rest = artifact.partition("/")
            project, _, item = rest.partition("/")
            parent = f"{names.project_name(f'{team}/{project}', 'artifact')}/artifacts/{item}"
        return self._pager(
            self.stubs.artifacts.ListArtifactVersions,
            lambda token: art_pb.ListArtifactVersionsRequest(
                parent=parent,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
            ),
            art_pb.ListArtifactVersionsResponse,
            lambda resp: resp.artifact_versions,
            limit,
        )

    def update_artifact_version(
        self,
        name_or_path: str,
        *,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        aliases: Sequence[str] | None = None,
    ) -> r.ArtifactVersion:
        """Changes only the fields given."""
        name = name_or_path
        if not names.is_resource_name(name):
            name = self.artifact_version(name_or_path).name
        changes = _changes(
            description=description,
            metadata=_struct(metadata),
            tags=None if tags is None else list(tags),
            aliases=None if aliases is None else list(aliases),
        )
        return self._write(
            self.stubs.artifacts.UpdateArtifactVersion,
            art_pb.UpdateArtifactVersionRequest(
                artifact_version=r.ArtifactVersion(name=name, **changes),
                update_mask=_mask(changes),
            ),
            r.ArtifactVersion,
        )

    def delete_artifact_version(self, name: str) -> None:
        self._write(
            self.stubs.artifacts.DeleteArtifactVersion,
            art_pb.DeleteArtifactVersionRequest(name=name),
            empty_pb2.Empty,
        )

    def use(self, path: str, run_id: str) -> r.ArtifactVersion:
        """Resolves `path` (or a version name) and records `run_id` as a consumer."""
        if names.is_resource_name(path):
            request = art_pb.UseArtifactVersionRequest(name=path, run_id=run_id)
        else:
            request = art_pb.UseArtifactVersionRequest(path=names.expand_path(path), run_id=run_id)
        # Recording the same consuming run twice changes nothing, so a retry is safe.
        return self._call(
            self.stubs.artifacts.UseArtifactVersion, request, r.ArtifactVersion, retry=True
        )

    def lineage(self, name_or_path: str) -> art_pb.Lineage:
        name = name_or_path
        if not names.is_resource_name(name):
            name = self.artifact_version(name_or_path).name
        return self._read(
            self.stubs.artifacts.GetLineage, art_pb.GetLineageRequest(name=name), art_pb.Lineage
        )

    def resolve(self, path: str) -> art_pb.ResolvePathResponse:
        """Any path form -> the artifact version it names, plus the link it went through.

        `REGISTRY/COLLECTION[:version]` is short for `wandb-registry-REGISTRY/COLLECTION`
        in the caller's organization.
        """
        return self._read(
            self.stubs.artifacts.ResolvePath,
            art_pb.ResolvePathRequest(path=names.expand_path(path)),
            art_pb.ResolvePathResponse,
        )

    # --- registries ------------------------------------------------------------------

    def registries(
        self,
        *,
        filter: str = "",
        order_by: str = "",
        organization: str | None = None,
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.Registry]:
        """Registries the caller can see, fetched page by page while iterating."""
        parent = names.organization_name(organization, self._org)
        return self._pager(
            self.stubs.registries.ListRegistries,
            lambda token: reg_pb.ListRegistriesRequest(
                parent=parent,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
            ),
            reg_pb.ListRegistriesResponse,
            lambda resp: resp.registries,
            limit,
        )

    def registry(self, name: str) -> r.Registry:
        """`model`, `acme/wandb-registry-model` or `organizations/acme/registries/model`."""
        return self._read(
            self.stubs.registries.GetRegistry,
            reg_pb.GetRegistryRequest(name=names.registry_name(name, self._org, "name")),
            r.Registry,
        )

    def create_registry(
        self,
        registry_id: str,
        *,
        description: str = "",
        visibility: str | int = "organization",
        artifact_types: Sequence[str] = (),
        allow_all_artifact_types: bool = False,
        protected_aliases: Sequence[str] = (),
        default_role: str | int | None = None,
        organization: str | None = None,
        request_id: str | None = None,
    ) -> r.Registry:
        registry = r.Registry(
            description=description,
            visibility=_enum(r.Visibility, "VISIBILITY_", visibility, "registry.visibility"),
            artifact_types=list(artifact_types),
            allow_all_artifact_types=allow_all_artifact_types,
            protected_aliases=list(protected_aliases),
            default_role=(
                None
                if default_role is None
                else _enum(r.RegistryRole, "REGISTRY_ROLE_", default_role, "registry.default_role")
            ),
        )
        return self._create(
            self.stubs.registries.CreateRegistry,
            reg_pb.CreateRegistryRequest(
                parent=names.organization_name(organization, self._org),
                registry_id=registry_id,
                registry=registry,
                request_id=request_id or new_request_id(),
            ),
            r.Registry,
        )

    def update_registry(
        self,
        name: str,
        *,
        description: str | None = None,
        visibility: str | int | None = None,
        artifact_types: Sequence[str] | None = None,
        allow_all_artifact_types: bool | None = None,
        protected_aliases: Sequence[str] | None = None,
        default_role: str | int | None = None,
    ) -> r.Registry:
        """Changes only the fields given (`artifact_types` and `protected_aliases` replace)."""
        changes = _changes(
            description=description,
            visibility=None
            if visibility is None
            else _enum(r.Visibility, "VISIBILITY_", visibility, "registry.visibility"),
            artifact_types=None if artifact_types is None else list(artifact_types),
            allow_all_artifact_types=allow_all_artifact_types,
            protected_aliases=None if protected_aliases is None else list(protected_aliases),
            default_role=None
            if default_role is None
            else _enum(r.RegistryRole, "REGISTRY_ROLE_", default_role, "registry.default_role"),
        )
        registry = r.Registry(name=names.registry_name(name, self._org, "registry.name"), **changes)
        return self._write(
            self.stubs.registries.UpdateRegistry,
            reg_pb.UpdateRegistryRequest(registry=registry, update_mask=_mask(changes)),
            r.Registry,
        )

    def delete_registry(self, name: str, *, etag: str = "") -> None:
        """Deletes the registry, its collections and links (never the artifacts)."""
        self._write(
            self.stubs.registries.DeleteRegistry,
            reg_pb.DeleteRegistryRequest(
                name=names.registry_name(name, self._org, "name"), etag=etag
            ),
            empty_pb2.Empty,
        )

    def members(
        self, registry: str, *, page_size: int = 0, limit: int | None = None
    ) -> Pager[r.RegistryMember]:
        """Users and teams granted a role in the registry."""
        parent = names.registry_name(registry, self._org, "parent")
        return self._pager(
            self.stubs.registries.ListRegistryMembers,
            lambda token: reg_pb.ListRegistryMembersRequest(
                parent=parent, page_size=page_size, page_token=token
            ),
            reg_pb.ListRegistryMembersResponse,
            lambda resp: resp.members,
            limit,
        )

    def grant(self, registry: str, member: str, role: str | int) -> r.RegistryMember:
        """Gives `member` (`users/u`, `teams/t` or a user id) `role`, replacing its old one."""
        registry_name = names.registry_name(registry, self._org)
        member_name = names.member_name(member)
        role_name = _enum(r.RegistryRole, "REGISTRY_ROLE_", role, "role")
        try:
            return self._write(
                self.stubs.registries.AddRegistryMember,
                reg_pb.AddRegistryMemberRequest(
                    registry=registry_name, member=member_name, role=role_name
                ),
                r.RegistryMember,
            )
        except RegistryError as err:
            if err.code != grpc.StatusCode.ALREADY_EXISTS:
                raise
        return self._write(
            self.stubs.registries.UpdateRegistryMember,
            reg_pb.UpdateRegistryMemberRequest(
                registry=registry_name, member=member_name, role=role_name
            ),
            r.RegistryMember,
        )

    def revoke(self, registry: str, member: str) -> None:
        """Removes the role granted to `member` (roles from teams or defaults stay)."""
        self._write(
            self.stubs.registries.RemoveRegistryMember,
            reg_pb.RemoveRegistryMemberRequest(
                registry=names.registry_name(registry, self._org),
                member=names.member_name(member),
            ),
            empty_pb2.Empty,
        )

    def effective_role(self, registry: str, principal: str = "") -> int:
        """The caller's (or `principal`'s) role in the registry; 0 means no access."""
        response = self._read(
            self.stubs.registries.GetEffectiveRole,
            reg_pb.GetEffectiveRoleRequest(
                registry=names.registry_name(registry, self._org),
                principal=names.user_name(principal, "principal") if principal else "",
            ),
            reg_pb.GetEffectiveRoleResponse,
        )
        return int(response.role)

    # --- collections and their versions ------------------------------------------

    def collections(
        self,
        registry: str,
        *,
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.Collection]:
        parent = names.registry_name(registry, self._org, "parent")
        return self._pager(
            self.stubs.collections.ListCollections,
            lambda token: col_pb.ListCollectionsRequest(
                parent=parent,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
            ),
            col_pb.ListCollectionsResponse,
            lambda resp: resp.collections,
            limit,
        )

    def collection(self, name: str) -> r.Collection:
        """`model/resnet`, `acme/wandb-registry-model/resnet` or the full name."""
        return self._read(
            self.stubs.collections.GetCollection,
            col_pb.GetCollectionRequest(name=names.collection_ref(name, self._org, "name").name),
            r.Collection,
        )

    def create_collection(
        self,
        collection: str,
        type: str,
        *,
        description: str = "",
        tags: Sequence[str] = (),
        request_id: str | None = None,
    ) -> r.Collection:
        """Creates `registry/collection` for artifacts of `type`."""
        ref = names.collection_ref(collection, self._org)
        return self._create(
            self.stubs.collections.CreateCollection,
            col_pb.CreateCollectionRequest(
                parent=ref.registry,
                collection_id=ref.collection_id,
                collection=r.Collection(type=type, description=description, tags=list(tags)),
                request_id=request_id or new_request_id(),
            ),
            r.Collection,
        )

    def update_collection(
        self, name: str, *, description: str | None = None, tags: Sequence[str] | None = None
    ) -> r.Collection:
        ref = names.collection_ref(name, self._org, "collection.name")
        changes = _changes(description=description, tags=None if tags is None else list(tags))
        return self._write(
            self.stubs.collections.UpdateCollection,
            col_pb.UpdateCollectionRequest(
                collection=r.Collection(name=ref.name, **changes), update_mask=_mask(changes)
            ),
            r.Collection,
        )

    def delete_collection(self, name: str, *, etag: str = "") -> None:
        self._write(
            self.stubs.collections.DeleteCollection,
            col_pb.DeleteCollectionRequest(
                name=names.collection_ref(name, self._org, "name").name, etag=etag
            ),
            empty_pb2.Empty,
        )

    def versions(
        self,
        collection: str,
        *,
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.CollectionVersion]:
        """Links of a collection, e.g. `versions("model/resnet", filter='alias = "production"')`."""
        parent = names.collection_ref(collection, self._org, "parent").name
        return self._pager(
            self.stubs.collections.ListCollectionVersions,
            lambda token: col_pb.ListCollectionVersionsRequest(
                parent=parent,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
            ),
            col_pb.ListCollectionVersionsResponse,
            lambda resp: resp.collection_versions,
            limit,
        )

    def collection_version(self, ref: str) -> r.CollectionVersion:
        """`model/resnet:v2`, `model/resnet:production` or the version's name."""
        return self._read(
            self.stubs.collections.GetCollectionVersion,
            col_pb.GetCollectionVersionRequest(name=self._collection_version_name(ref, "name")),
            r.CollectionVersion,
        )

    def link(
        self,
        source: str,
        target: str,
        *,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        description: str = "",
        request_id: str | None = None,
    ) -> r.CollectionVersion:
        """Links artifact version `source` (a path or name) into collection `target`.

        `target` is `registry/collection` in the caller's organization,
        `org/wandb-registry-registry/collection`, or a collection name; a missing
        collection is created. Linking the same source again returns the existing link.
        """
        ref = names.collection_ref(target, self._org, "target")
        return self._create(
            self.stubs.collections.LinkArtifactVersion,
            col_pb.LinkArtifactVersionRequest(
                parent=ref.registry,
                collection_id=ref.collection_id,
                artifact_version=self._artifact_source(source),
                aliases=list(aliases),
                tags=list(tags),
                description=description,
                request_id=request_id or new_request_id(),
            ),
            r.CollectionVersion,
        )

    def unlink(self, version: str) -> None:
        """Removes a link (`model/resnet:v2`, an alias path, or the version's name)."""
        self._write(
            self.stubs.collections.UnlinkArtifactVersion,
            col_pb.UnlinkArtifactVersionRequest(
                name=self._collection_version_name(version, "name")
            ),
            empty_pb2.Empty,
        )

    def add_alias(
        self, version: str, alias: str, *, expected_version_index: int | None = None
    ) -> r.CollectionVersion:
        """Puts `alias` on `version`, moving it from wherever it was.

        `expected_version_index` makes it a compare-and-set: AbortedError unless the alias
        is now on that index (or absent, for -1).
        """
        request = col_pb.AddAliasRequest(
            collection_version=self._collection_version_name(version, "collection_version"),
            alias=alias,
        )
        if expected_version_index is not None:
            request.expected_version_index = expected_version_index
        return self._write(self.stubs.collections.AddAlias, request, r.CollectionVersion)

    def remove_alias(self, version: str, alias: str) -> r.CollectionVersion:
        return self._write(
            self.stubs.collections.RemoveAlias,
            col_pb.RemoveAliasRequest(
                collection_version=self._collection_version_name(version, "collection_version"),
                alias=alias,
            ),
            r.CollectionVersion,
        )

    def update_version(
        self, version: str, *, tags: Sequence[str] | None = None, description: str | None = None
    ) -> r.CollectionVersion:
        """Changes a link's tags or description (only the fields given)."""
        name = self._collection_version_name(version, "name")
        changes = _changes(description=description, tags=None if tags is None else list(tags))
        return self._write(
            self.stubs.collections.UpdateCollectionVersion,
            col_pb.UpdateCollectionVersionRequest(
                collection_version=r.CollectionVersion(name=name, **changes),
                update_mask=_mask(changes),
            ),
            r.CollectionVersion,
        )

    # --- legacy Model Registry ---------------------------------------------------

    def create_registered_model(
        self,
        model: str,
        *,
        description: str = "",
        tags: Sequence[str] = (),
        request_id: str | None = None,
    ) -> r.RegisteredModel:
        """Creates `team/model` in the team's legacy Model Registry."""
        team, model_id = names.registered_model_ref(model, "registered_model_id")
        return self._create(
            self.stubs.legacy.CreateRegisteredModel,
            legacy_pb.CreateRegisteredModelRequest(
                parent=team,
                registered_model_id=model_id,
                description=description,
                tags=list(tags),
                request_id=request_id or new_request_id(),
            ),
            r.RegisteredModel,
        )

    def registered_models(
        self,
        team: str,
        *,
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.RegisteredModel]:
        parent = names.team_name(team)
        return self._pager(
            self.stubs.legacy.ListRegisteredModels,
            lambda token: legacy_pb.ListRegisteredModelsRequest(
                parent=parent,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
            ),
            legacy_pb.ListRegisteredModelsResponse,
            lambda resp: resp.registered_models,
            limit,
        )

    def registered_model(self, model: str) -> r.RegisteredModel:
        """`team/model`, `team/model-registry/model` or the full name."""
        team, model_id = names.registered_model_ref(model, "name")
        return self._read(
            self.stubs.legacy.GetRegisteredModel,
            legacy_pb.GetRegisteredModelRequest(name=f"{team}/registeredModels/{model_id}"),
            r.RegisteredModel,
        )

    def registered_model_versions(
        self,
        model: str,
        *,
        filter: str = "",
        order_by: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.RegisteredModelVersion]:
        team, model_id = names.registered_model_ref(model, "parent")
        parent = f"{team}/registeredModels/{model_id}"
        return self._pager(
            self.stubs.legacy.ListRegisteredModelVersions,
            lambda token: legacy_pb.ListRegisteredModelVersionsRequest(
                parent=parent,
                filter=filter,
                order_by=order_by,
                page_size=page_size,
                page_token=token,
            ),
            legacy_pb.ListRegisteredModelVersionsResponse,
            lambda resp: resp.registered_model_versions,
            limit,
        )

    def link_model(
        self,
        source: str,
        model: str,
        *,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        request_id: str | None = None,
    ) -> r.RegisteredModelVersion:
        """Links a `model` artifact version into the team's legacy registered model."""
        team, model_id = names.registered_model_ref(model, "registered_model_id")
        return self._create(
            self.stubs.legacy.LinkModelVersion,
            legacy_pb.LinkModelVersionRequest(
                parent=team,
                registered_model_id=model_id,
                artifact_version=self._artifact_source(source),
                aliases=list(aliases),
                tags=list(tags),
                request_id=request_id or new_request_id(),
            ),
            r.RegisteredModelVersion,
        )

    def legacy_settings(self, team: str) -> r.LegacyRegistrySettings:
        return self._read(
            self.stubs.legacy.GetLegacyRegistrySettings,
            legacy_pb.GetLegacyRegistrySettingsRequest(team=names.team_name(team)),
            r.LegacyRegistrySettings,
        )

    # --- migration -----------------------------------------------------------------

    def plan_migration(
        self, teams: Sequence[str] = (), *, organization: str | None = None
    ) -> r.MigrationPlan:
        """A dry run: what `start_migration` would do (changes nothing)."""
        return self._read(
            self.stubs.migrations.PlanMigration,
            mig_pb.PlanMigrationRequest(
                parent=names.organization_name(organization, self._org),
                teams=[names.team_name(t, "teams") for t in teams],
            ),
            r.MigrationPlan,
        )

    def start_migration(
        self,
        teams: Sequence[str] = (),
        *,
        organization: str | None = None,
        request_id: str | None = None,
    ) -> r.Migration:
        """Starts migrating the teams' legacy registries (all teams when empty)."""
        return self._create(
            self.stubs.migrations.StartMigration,
            mig_pb.StartMigrationRequest(
                parent=names.organization_name(organization, self._org),
                teams=[names.team_name(t, "teams") for t in teams],
                request_id=request_id or new_request_id(),
            ),
            r.Migration,
        )

    def migration(self, name: str) -> r.Migration:
        return self._read(
            self.stubs.migrations.GetMigration,
            mig_pb.GetMigrationRequest(name=names.migration_name(name, self._org, "name")),
            r.Migration,
        )

    def migrations(
        self,
        *,
        organization: str | None = None,
        filter: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.Migration]:
        parent = names.organization_name(organization, self._org)
        return self._pager(
            self.stubs.migrations.ListMigrations,
            lambda token: mig_pb.ListMigrationsRequest(
                parent=parent, filter=filter, page_size=page_size, page_token=token
            ),
            mig_pb.ListMigrationsResponse,
            lambda resp: resp.migrations,
            limit,
        )

    def watch_migration(self, name: str, *, timeout: float | None = None) -> Iterator[r.Migration]:
        """Snapshots of the migration as it progresses, ending at its final state.

        A dropped connection is re-opened (the server sends the current state first);
        `timeout` bounds the whole watch and raises DeadlineExceededError when hit.
        """
        full_name = names.migration_name(name, self._org, "name")
        for migration in self._watch(
            self.stubs.migrations.WatchMigration,
            lambda: mig_pb.WatchMigrationRequest(name=full_name),
            timeout,
            quiet_deadline=False,
        ):
            yield cast(r.Migration, migration)
            if migration.state in FINAL_MIGRATION_STATES:
                return

    def wait_for_migration(self, name: str, *, timeout: float | None = None) -> r.Migration:
        """Blocks until the migration reaches a final state and returns it."""
        last: r.Migration | None = None
        for last in self.watch_migration(name, timeout=timeout):  # noqa: B007
            pass
        return last if last is not None else self.migration(name)

    def cancel_migration(
        self, name: str, *, validate_only: bool = False, force: bool = False
    ) -> r.Migration:
        """Stops a running migration and undoes it; what was changed in its registries
        meanwhile goes back into the legacy registries (`rollback` of the answer).
        FailedPreconditionError (reason UNDO_WOULD_LOSE_CHANGES) lists what has no legacy
        equivalent unless `force`; `validate_only` only reports."""
        return self._write(
            self.stubs.migrations.CancelMigration,
            mig_pb.CancelMigrationRequest(
                name=names.migration_name(name, self._org, "name"),
                validate_only=validate_only,
                force=force,
            ),
            r.Migration,
        )

    def rollback_migration(
        self, name: str, *, validate_only: bool = False, force: bool = False
    ) -> r.Migration:
        """Undoes a finished migration: every change made in its registries that has a
        legacy equivalent goes back into the legacy registries (`rollback.carried_back`);
        FailedPreconditionError (reason UNDO_WOULD_LOSE_CHANGES) lists what has none
        unless `force`, which records them (`rollback.losses`). `validate_only` reports
        both and changes nothing."""
        return self._write(
            self.stubs.migrations.RollbackMigration,
            mig_pb.RollbackMigrationRequest(
                name=names.migration_name(name, self._org, "name"),
                validate_only=validate_only,
                force=force,
            ),
            r.Migration,
        )

    # --- events --------------------------------------------------------------------

    def events(
        self,
        parent: str | None = None,
        *,
        filter: str = "",
        page_size: int = 0,
        limit: int | None = None,
    ) -> Pager[r.Event]:
        """The audit history of the caller's organization, or of a registry (`parent`)."""
        parent_name = names.events_parent(parent, self._org)
        return self._pager(
            self.stubs.events.ListEvents,
            lambda token: ev_pb.ListEventsRequest(
                parent=parent_name, filter=filter, page_size=page_size, page_token=token
            ),
            ev_pb.ListEventsResponse,
            lambda resp: resp.events,
            limit,
        )

    def watch_events(
        self,
        parent: str | None = None,
        *,
        filter: str = "",
        after: int = 0,
        timeout: float | None = None,
    ) -> Iterator[r.Event]:
        """Events after cursor `after`, then live ones as they happen.

        A dropped connection is re-opened from the last cursor seen, so nothing is missed
        or repeated. Iteration ends (without error) when `timeout` seconds have passed.
        """
        parent_name = names.events_parent(parent, self._org)
        cursor = after

        def resume() -> ev_pb.WatchEventsRequest:
            return ev_pb.WatchEventsRequest(parent=parent_name, filter=filter, after_cursor=cursor)

        for event in self._watch(
            self.stubs.events.WatchEvents, resume, timeout, quiet_deadline=True
        ):
            cursor = max(cursor, int(event.cursor))
            yield cast(r.Event, event)

    def alias_history(
        self, collection: str, alias: str, *, at: float | None = None
    ) -> ev_pb.GetAliasHistoryResponse:
        """Which versions held `alias` and when; `at` (Unix seconds) asks about one moment."""
        request = ev_pb.GetAliasHistoryRequest(
            collection=names.collection_ref(collection, self._org).name, alias=alias
        )
        stamp = _timestamp(at)
        if stamp is not None:
            request.time.CopyFrom(stamp)
        return self._read(self.stubs.events.GetAliasHistory, request, ev_pb.GetAliasHistoryResponse)

    # --- automations (webhooks) ------------------------------------------------------

    def automations(
        self, parent: str, *, page_size: int = 0, limit: int | None = None
    ) -> Pager[r.Automation]:
        """The webhook automations of a registry (`model`) or a collection (`model/resnet`)."""
        parent_name = names.automation_parent(parent, self._org)
        return self._pager(
            self.stubs.events.ListAutomations,
            lambda token: ev_pb.ListAutomationsRequest(
                parent=parent_name, page_size=page_size, page_token=token
            ),
            ev_pb.ListAutomationsResponse,
            lambda resp: resp.automations,
            limit,
        )

    def automation(self, name: str) -> r.Automation:
        return self._read(
            self.stubs.events.GetAutomation,
            ev_pb.GetAutomationRequest(name=names.automation_name(name)),
            r.Automation,
        )

    def create_automation(
        self,
        parent: str,
        url: str,
        event_types: Sequence[str],
        *,
        alias_regex: str = "",
        secret: str | None = None,
        enabled: bool = True,
        request_id: str | None = None,
    ) -> r.Automation:
        """Creates a webhook on a registry or collection. Without `secret` one is made
        here (so a retried call keeps it) and set on the returned automation's `secret`:
        keep it, the server never shows it again."""
        chosen = secret if secret is not None else webhooks.new_secret()
        made = self._create(
            self.stubs.events.CreateAutomation,
            ev_pb.CreateAutomationRequest(
                parent=names.automation_parent(parent, self._org),
                automation=r.Automation(
                    url=url,
                    event_types=list(event_types),
                    alias_regex=alias_regex,
                    secret=chosen,
                    enabled=enabled,
                ),
                request_id=request_id or new_request_id(),
            ),
            r.Automation,
        )
        if secret is None:
            made.secret = chosen
        return made

    def update_automation(
        self,
        name: str,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        alias_regex: str | None = None,
        enabled: bool | None = None,
        secret: str | None = None,
        etag: str = "",
    ) -> r.Automation:
        """Changes the given fields; a `secret` replaces the old one at once."""
        changes = _changes(
            url=url,
            event_types=None if event_types is None else list(event_types),
            alias_regex=alias_regex,
            enabled=enabled,
            secret=secret,
        )
        return self._write(
            self.stubs.events.UpdateAutomation,
            ev_pb.UpdateAutomationRequest(
                automation=r.Automation(name=names.automation_name(name), etag=etag, **changes),
                update_mask=_mask(changes),
            ),
            r.Automation,
        )

    def delete_automation(self, name: str) -> None:
        self._write(
            self.stubs.events.DeleteAutomation,
            ev_pb.DeleteAutomationRequest(name=names.automation_name(name)),
            empty_pb2.Empty,
        )

    def test_automation(self, name: str) -> r.Delivery:
        """Sends a signed AUTOMATION_TESTED event to the automation's URL now; the attempt."""
        return self._write(
            self.stubs.events.TestAutomation,
            ev_pb.TestAutomationRequest(name=names.automation_name(name)),
            r.Delivery,
        )

    def deliveries(
        self, automation: str, *, page_size: int = 0, limit: int | None = None
    ) -> Pager[r.Delivery]:
        """Every delivery attempt of an automation, oldest first (registry admins)."""
        parent = names.automation_name(automation, "parent")
        return self._pager(
            self.stubs.events.ListDeliveries,
            lambda token: ev_pb.ListDeliveriesRequest(
                parent=parent, page_size=page_size, page_token=token
            ),
            ev_pb.ListDeliveriesResponse,
            lambda resp: resp.deliveries,
            limit,
        )


__all__ = [
    "DEFAULT_TIMEOUT",
    "FINAL_MIGRATION_STATES",
    "Client",
    "RetryPolicy",
    "manifest_from_directory",
    "new_request_id",
]
