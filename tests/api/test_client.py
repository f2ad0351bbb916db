"""registry_client.Client through the real server: paging iterators, retries with an
automatic request_id (no duplicates when a response is lost), typed errors, paths."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from registry.v1 import resources_pb2 as r
from registry_client import (
    AbortedError,
    AlreadyExistsError,
    Client,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    RegistryError,
    RetryPolicy,
    UnauthenticatedError,
    UnavailableError,
)

from ..support.servers import ServerThread, mtls_server
from ..support.world import Person, World, unique

FAST_RETRY = RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=0.05)


def has_service(server: ServerThread, service: str) -> bool:
    assert server.server is not None
    return f"registry.v1.{service}" in server.server._service_names


def require_service(server: ServerThread, service: str) -> None:
    if not has_service(server, service):
        pytest.skip(f"{service} is not served yet")


def client_for(world: World, person: Person | None = None, **kwargs: Any) -> Client:
    who = person or world.admin
    kwargs.setdefault("retries", FAST_RETRY)
    return Client(world.target, who.key, **kwargs)


@pytest.fixture
def admin(world: World) -> Iterator[Client]:
    with client_for(world) as client:
        yield client


def model_source(client: Client, tmp_path: Path, *, content: str = "weights") -> r.ArtifactVersion:
    """A team, a project and a logged `model` artifact version owned by the client's user."""
    team = unique("team")
    client.create_team(team)
    client.create_project(team, "training")
    files = tmp_path / unique("model")
    files.mkdir()
    (files / "weights.bin").write_text(content)
    return client.log_artifact(f"{team}/training", "resnet", "model", files)


# --- a client interceptor that loses responses ---------------------------------------


class _DroppedResponse(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """What the caller sees when the connection dies after the server answered."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection lost before the response arrived"

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def initial_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class LoseResponses(grpc.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Lets calls to `method` reach the server, then reports UNAVAILABLE `times` times.

    With `before_server=True` the call fails before it is sent (a refused connection).
    """

    def __init__(self, method: str, times: int = 1, *, before_server: bool = False) -> None:
        self.method = method
        self.remaining = times
        self.before_server = before_server
        self.requests: list[Any] = []
        self.server_calls = 0

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        if not details.method.endswith(f"/{self.method}"):
            return continuation(details, request)
        self.requests.append(request)
        if self.remaining > 0 and self.before_server:
            self.remaining -= 1
            raise _DroppedResponse()
        outcome = continuation(details, request)
        self.server_calls += 1
        if self.remaining > 0:
            self.remaining -= 1
            outcome.result()  # the server has handled (and committed) the call
            raise _DroppedResponse()
        return outcome


class _BreakingStream:
    """A server stream that dies (UNAVAILABLE) after `items` messages."""

    def __init__(self, call: Any, items: int) -> None:
        self.call = call
        self.items = items

    def __iter__(self) -> _BreakingStream:
        return self

    def __next__(self) -> Any:
        if self.items == 0:
            self.call.cancel()
            raise _DroppedResponse()
        self.items -= 1
        return next(self.call)

    def cancel(self) -> bool:
        return bool(self.call.cancel())


class BreakStreams(grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Cuts the first `times` server streams after `items` messages each."""

    def __init__(self, items: int, times: int = 1) -> None:
        self.items = items
        self.remaining = times
        self.requests: list[Any] = []

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        self.requests.append(request)
        call = continuation(details, request)
        if self.remaining <= 0:
            return call
        self.remaining -= 1
        return _BreakingStream(call, self.items)


# --- environment and identity ---------------------------------------------------------


def test_client_reads_address_and_key_from_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGISTRY_ADDRESS", world.target)
    monkeypatch.setenv("REGISTRY_API_KEY", world.admin.key)
    with Client() as client:
        assert client.target == world.target
        me = client.whoami()
        assert me.name == world.admin.name
        assert me.organization == world.org_name
        assert client.organization().name == world.org_name


# --- paging iterators --------------------------------------------------------------------


def test_list_methods_are_lazy_pagers(world: World, admin: Client) -> None:
    created = [admin.create_registry(unique("page"), artifact_types=["model"]) for _ in range(5)]
    pager = admin.registries(page_size=2)
    assert pager.pages_fetched == 0  # nothing is fetched before iterating
    iterator = iter(pager)
    first = next(iterator)
    assert pager.pages_fetched == 1 and first.name.startswith(world.org_name)
    rest = list(iterator)
    names = [first.name, *(x.name for x in rest)]
    # 5 new registries plus the core `model` and `dataset`, each exactly once.
    expected = {x.name for x in created} | {
        f"{world.org_name}/registries/model",
        f"{world.org_name}/registries/dataset",
    }
    assert len(names) == len(set(names)) == 7
    assert set(names) == expected
    assert pager.pages_fetched == 4
    # A limit stops fetching pages once enough items are seen.
    limited = admin.registries(page_size=2, limit=3)
    assert len(list(limited)) == 3
    assert limited.pages_fetched == 2
    # Whole pages, and iterating again starts over.
    assert [len(page) for page in admin.registries(page_size=3).pages()] == [3, 3, 1]
    assert len(list(pager)) == 7
    assert admin.registries(filter='name = "model"').to_list()[0].core


def test_versions_pager_and_filters(world: World, admin: Client, tmp_path: Path) -> None:
    team = unique("team")
    admin.create_team(team)
    admin.create_project(team, "training")
    collection = f"model/{unique('pager')}"
    for i in range(5):
        files = tmp_path / f"v{i}"
        files.mkdir()
        (files / "w.bin").write_text(f"weights {i}")
        version = admin.log_artifact(f"{team}/training", "net", "model", files)
        admin.link(version.name, collection, aliases=["production"] if i == 3 else [])
    versions = admin.versions(collection, page_size=2)
    assert [v.version_index for v in versions] == [0, 1, 2, 3, 4]
    assert versions.pages_fetched == 3
    production = admin.versions(collection, filter='alias = "production"').to_list()
    assert [v.version_index for v in production] == [3]
    newest = admin.versions(collection, order_by="version_index desc", limit=1).first()
    assert newest is not None and newest.version_index == 4
    assert [c.name.rsplit("/", 1)[1] for c in admin.collections("model")] == [
        collection.split("/")[1]
    ]
    assert admin.collection(collection).version_count == 5


def test_logging_identical_content_again_reuses_its_version(
    world: World, admin: Client, tmp_path: Path
) -> None:
    first = model_source(admin, tmp_path)
    assert not first.reused
    team_project = first.path.rsplit("/", 1)[0]
    again = admin.log_artifact(
        team_project,
        "resnet",
        "model",
        tmp_path / next(p.name for p in tmp_path.iterdir()),
        aliases=["best"],
        tags=["again"],
        run_id="train-2",
    )
    assert again.reused and again.name == first.name
    assert "best" in again.aliases and list(again.tags) == ["again"]
    assert admin.resolve(f"{team_project}/resnet:best").artifact_version.name == first.name
    assert list(admin.lineage(first.name).logging_runs) == []  # no producing run before
    assert admin.artifact_version(first.name).producing_run == "train-2"


# --- retries and request_id ----------------------------------------------------------


def test_lost_create_response_is_retried_without_duplicate(world: World) -> None:
    lose = LoseResponses("CreateRegistry")
    with client_for(world, interceptors=[lose]) as client:
        registry_id = unique("retry")
        created = client.create_registry(registry_id, artifact_types=["model"])
        # The first attempt reached the server and created it; the retry carried the same
        # request_id, so the server answered with the first result instead of a conflict.
        assert lose.server_calls == 2 and lose.remaining == 0
        first, second = lose.requests
        assert first.request_id and first.request_id == second.request_id
        assert created.name == f"{world.org_name}/registries/{registry_id}"
        matching = [x for x in client.registries() if x.name == created.name]
        assert len(matching) == 1
        # Another create (a new request_id) of the same id is a genuine conflict.
        with pytest.raises(AlreadyExistsError):
            client.create_registry(registry_id, artifact_types=["model"])
        assert lose.requests[2].request_id != first.request_id


def test_lost_link_response_is_retried_with_the_same_request_id(
    world: World, tmp_path: Path
) -> None:
    lose = LoseResponses("LinkArtifactVersion")
    with client_for(world, interceptors=[lose]) as client:
        source = model_source(client, tmp_path)
        target = f"model/{unique('linked')}"
        link = client.link(source.name, target, aliases=["staging"])
        assert lose.server_calls == 2
        assert lose.requests[0].request_id == lose.requests[1].request_id != ""
        versions = list(client.versions(target))
        assert [(v.name, list(v.aliases)) for v in versions] == [(link.name, ["latest", "staging"])]


def test_lost_log_response_is_retried_without_a_second_version(
    world: World, tmp_path: Path
) -> None:
    lose = LoseResponses("CreateArtifactVersion")
    with client_for(world, interceptors=[lose]) as client:
        team = unique("team")
        client.create_team(team)
        client.create_project(team, "training")
        files = tmp_path / "model"
        files.mkdir()
        (files / "a.bin").write_text("a")
        version = client.log_artifact(f"{team}/training", "net", "model", files)
        assert lose.server_calls == 2
        assert lose.requests[0].request_id == lose.requests[1].request_id
        assert [v.name for v in client.artifact_versions(f"{team}/training/net")] == [version.name]


def test_reads_are_retried_with_backoff(world: World) -> None:
    refuse = LoseResponses("GetCurrentUser", times=2, before_server=True)
    with client_for(world, interceptors=[refuse]) as client:
        assert client.whoami().name == world.admin.name
        assert len(refuse.requests) == 3
    refuse_always = LoseResponses("GetCurrentUser", times=10, before_server=True)
    with client_for(world, interceptors=[refuse_always]) as client:
        with pytest.raises(UnavailableError):
            client.whoami()
        assert len(refuse_always.requests) == FAST_RETRY.max_retries + 1


def test_writes_without_request_id_are_not_retried(world: World, tmp_path: Path) -> None:
    lose = LoseResponses("AddAlias")
    with client_for(world, interceptors=[lose]) as client:
        source = model_source(client, tmp_path)
        target = f"model/{unique('alias')}"
        client.link(source.name, target)
        with pytest.raises(UnavailableError) as caught:
            client.add_alias(f"{target}:v0", "candidate")
        assert lose.server_calls == 1 and caught.value.code == grpc.StatusCode.UNAVAILABLE
        # The server did apply it: only the response was lost.
        assert "candidate" in client.collection_version(f"{target}:v0").aliases


def test_unreachable_server_raises_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        Client(f"127.0.0.1:{port}", "rk_x", retries=1, timeout=2.0) as client,
        pytest.raises(UnavailableError) as caught,
    ):
        client.whoami()
    assert isinstance(caught.value, RegistryError)
    assert caught.value.code_name == "UNAVAILABLE"


# --- typed errors ------------------------------------------------------------------------


def test_errors_are_typed_with_code_reason_and_fields(world: World, tmp_path: Path) -> None:
    bob = world.person("bob")
    with client_for(world) as admin, client_for(world, bob) as as_bob:
        with pytest.raises(NotFoundError) as not_found:
            admin.registry("no-such-registry")
        assert not_found.value.code == grpc.StatusCode.NOT_FOUND
        assert not_found.value.reason

        with pytest.raises(InvalidArgumentError) as invalid:
            admin.create_registry("bad#id", artifact_types=["model"])
        assert invalid.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "registry_id" in invalid.value.fields
        assert invalid.value.field_violations[0].description

        with pytest.raises(PermissionDeniedError) as denied:
            as_bob.update_registry("model", description="mine now")
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED

        registry_id = unique("dup")
        admin.create_registry(registry_id, artifact_types=["model"])
        with pytest.raises(AlreadyExistsError):
            admin.create_registry(registry_id, artifact_types=["model"])

        team = unique("team")
        admin.create_team(team)
        with pytest.raises(FailedPreconditionError) as precondition:
            admin.remove_team_member(team, world.admin.id)
        assert precondition.value.reason == "LAST_ADMIN"

        source = model_source(admin, tmp_path)
        target = f"model/{unique('cas')}"
        admin.link(source.name, target)
        with pytest.raises(AbortedError) as aborted:
            admin.add_alias(f"{target}:v0", "production", expected_version_index=3)
        assert aborted.value.code == grpc.StatusCode.ABORTED
        updated = admin.add_alias(f"{target}:v0", "production", expected_version_index=-1)
        assert "production" in updated.aliases

        # Errors found before calling carry the same shape.
        with pytest.raises(InvalidArgumentError) as local:
            admin.create_registry("x", visibility="public")
        assert local.value.fields == ["registry.visibility"]
        with pytest.raises(InvalidArgumentError):
            admin.link(source.name, "too/many/parts/here")

    with Client(world.target, "rk_bad", retries=FAST_RETRY) as bad_key:
        with pytest.raises(UnauthenticatedError) as unauthenticated:
            bad_key.whoami()
        assert unauthenticated.value.reason
        payload = unauthenticated.value.to_dict()
        assert payload["code"] == "UNAUTHENTICATED" and payload["reason"]


# --- the rest of the surface, end to end ------------------------------------------------


def test_resolve_link_aliases_use_and_unlink(world: World, admin: Client, tmp_path: Path) -> None:
    source = model_source(admin, tmp_path)
    collection = unique("resnet")
    link = admin.link(source.path, f"model/{collection}", aliases=["staging"], tags=["vision"])
    assert link.version_index == 0 and link.artifact_version == source.name
    org = world.org
    for path in (
        f"{org}/wandb-registry-model/{collection}:staging",
        f"wandb-registry-model/{collection}:v0",
        f"model/{collection}:staging",
        f"model/{collection}",
    ):
        resolved = admin.resolve(path)
        assert resolved.artifact_version.name == source.name, path
        assert resolved.collection_version.name == link.name, path
    # Every target form names the same collection; linking again returns the same link.
    again = admin.link(source.name, f"{org}/wandb-registry-model/{collection}")
    assert again.name == link.name
    full = f"{world.org_name}/registries/model/collections/{collection}"
    assert admin.link(source.name, full).name == link.name

    moved = admin.add_alias(f"model/{collection}:staging", "production")
    assert set(moved.aliases) >= {"staging", "production"}
    removed = admin.remove_alias(link.name, "staging")
    assert "staging" not in removed.aliases
    assert admin.collection_version(f"model/{collection}:production").name == link.name

    used = admin.use(f"model/{collection}:production", "run-42")
    assert used.name == source.name
    assert "run-42" in admin.lineage(source.name).consuming_runs

    admin.unlink(f"model/{collection}:v0")
    assert list(admin.versions(f"model/{collection}")) == []
    with pytest.raises(NotFoundError):
        admin.resolve(f"model/{collection}:production")


def test_registry_members_grant_and_revoke(world: World, admin: Client) -> None:
    bob = world.person("bob")
    team = world.team("vision")
    registry = admin.create_registry(
        unique("granted"), visibility="restricted", artifact_types=["model"]
    )
    assert registry.visibility == r.VISIBILITY_RESTRICTED
    with client_for(world, bob) as as_bob:
        with pytest.raises(NotFoundError):
            as_bob.registry(registry.name)
        admin.grant(registry.name, bob.id, "viewer")
        assert as_bob.registry(registry.name).name == registry.name
        assert as_bob.effective_role(registry.name) == r.REGISTRY_ROLE_VIEWER
        # Granting again replaces the role.
        assert admin.grant(registry.name, bob.name, "member").role == r.REGISTRY_ROLE_MEMBER
        admin.grant(registry.name, f"teams/{team}", "viewer")
        members = {m.member: m.role for m in admin.members(registry.name)}
        assert members[bob.name] == r.REGISTRY_ROLE_MEMBER
        assert members[f"teams/{team}"] == r.REGISTRY_ROLE_VIEWER
        admin.revoke(registry.name, bob.name)
        with pytest.raises(NotFoundError):
            as_bob.registry(registry.name)
    updated = admin.update_registry(registry.name, description="Vision", protected_aliases=["prod"])
    assert updated.description == "Vision" and list(updated.protected_aliases) == ["prod"]
    admin.delete_registry(registry.name)
    with pytest.raises(NotFoundError):
        admin.registry(registry.name)


def test_legacy_registered_models(world: World, admin: Client, tmp_path: Path) -> None:
    source = model_source(admin, tmp_path)
    team = source.name.split("/")[1]
    version = admin.link_model(source.name, f"{team}/classifier", aliases=["production"])
    assert version.artifact_version == source.name
    assert [m.name for m in admin.registered_models(team)] == [
        f"teams/{team}/registeredModels/classifier"
    ]
    assert admin.registered_model(f"{team}/model-registry/classifier").version_count == 1
    assert [v.name for v in admin.registered_model_versions(f"{team}/classifier")] == [version.name]
    assert admin.resolve(f"{team}/model-registry/classifier:production").artifact_version.name == (
        source.name
    )
    assert admin.legacy_settings(team).state == r.LEGACY_STATE_WRITABLE


def test_migration_plan_start_and_watch(
    world: World, admin: Client, server: ServerThread, tmp_path: Path
) -> None:
    require_service(server, "MigrationService")
    source = model_source(admin, tmp_path)
    team = source.name.split("/")[1]
    admin.link_model(source.name, f"{team}/classifier", aliases=["production"])
    plan = admin.plan_migration([team])
    assert [t.team for t in plan.teams] == [f"teams/{team}"]
    assert plan.teams[0].version_count == 1
    migration = admin.start_migration([team])
    snapshots = list(admin.watch_migration(migration.name, timeout=60))
    assert snapshots and snapshots[-1].state == r.MIGRATION_STATE_SUCCEEDED
    assert admin.migration(migration.name.rsplit("/", 1)[1]).state == r.MIGRATION_STATE_SUCCEEDED
    assert migration.name in [m.name for m in admin.migrations()]
    # The legacy path now resolves through the migrated collection.
    resolved = admin.resolve(f"{team}/model-registry/classifier:production")
    assert resolved.artifact_version.name == source.name


def test_events_list_and_watch(
    world: World, admin: Client, server: ServerThread, tmp_path: Path
) -> None:
    require_service(server, "EventService")
    source = model_source(admin, tmp_path)
    collection = f"model/{unique('events')}"
    admin.link(source.name, collection, aliases=["staging"])
    events = list(admin.events(page_size=1))
    assert any(e.type == "VERSION_LINKED" for e in events)
    cursors = [e.cursor for e in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    watched = list(admin.watch_events(after=0, timeout=3))
    assert [e.cursor for e in watched][: len(cursors)] == cursors
    # Resuming after the last cursor misses nothing and repeats nothing.
    admin.add_alias(f"{collection}:v0", "production")
    resumed = list(admin.watch_events(after=watched[-1].cursor, timeout=3))
    assert [e.type for e in resumed] == ["ALIAS_ADDED"]


def test_watch_events_reconnects_from_the_last_cursor(
    world: World, server: ServerThread, tmp_path: Path
) -> None:
    require_service(server, "EventService")
    cut = BreakStreams(items=2)
    with client_for(world, interceptors=[cut]) as client:
        source = model_source(client, tmp_path)
        client.link(source.name, f"model/{unique('watched')}", aliases=["staging"])
        expected = [e.cursor for e in client.events()]
        assert len(expected) >= 4
        seen = [e.cursor for e in client.watch_events(timeout=3)]
        # The first stream broke after two events; the second resumed after the second one.
        assert seen == expected
        assert [req.after_cursor for req in cut.requests] == [0, expected[1]]


def test_client_speaks_mutual_tls(world: World, database_url: str, tmp_path: Path) -> None:
    with mtls_server(database_url, tmp_path) as (tls_server, pki):
        with Client(
            tls_server.target,
            world.admin.key,
            root_certificates=pki.ca_cert.read_bytes(),
            private_key=pki.client_key.read_bytes(),
            certificate_chain=pki.client_cert.read_bytes(),
        ) as client:
            assert client.whoami().name == world.admin.name
        # Without a client certificate the handshake fails.
        with (
            Client(
                tls_server.target,
                world.admin.key,
                root_certificates=pki.ca_cert.read_bytes(),
                retries=0,
                timeout=5,
            ) as no_cert,
            pytest.raises(UnavailableError),
        ):
            no_cert.whoami()
