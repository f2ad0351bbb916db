"""SQL statements per RPC, counted on the test server's engines.

A List RPC must issue a fixed number of statements whatever the page size: a
page of 50 costs what a page of 5 costs (no per-row query: related rows such as
aliases come in one extra query for the whole page), and at most `LIST_BOUND`.
Hot single-item reads have their own ceilings (`HOT_READ_BOUNDS`): they are
upper bounds to lower as the read path gets faster, never to raise.

Counting: a `before_cursor_execute` listener on `server.app.db.read_engine` and
`write_engine` records the statements run while one RPC is in flight (transaction
control such as BEGIN is not counted). Background tasks (event hub, webhook
worker, migration runner) share the engines and the worker pool but reach the
database through `App.run`, never through the unit of work that servicers use
(`App.read`/`write`/`create`), so only statements whose call stack passes through
that unit of work are counted. Each RPC is measured three times and the smallest
count kept; the API key is authenticated before measuring, so its (cached) lookup
is not counted either. The hot-read cache (SQLite) is emptied before each run, so
what is counted is the work of an answer computed, not of one kept.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from sqlalchemy import event
from sqlalchemy.engine import Engine

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import event_service_pb2 as epb
from registry.v1 import legacy_model_registry_service_pb2 as lpb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs

from ..support.servers import ServerThread
from ..support.unit_of_work import in_unit_of_work
from ..support.world import Person, World, make_world, unique

ROWS = 60  # more than the largest page measured
LIST_BOUND = 6
HOT_READ_BOUNDS = {
    "ResolvePath (registry alias)": 3,
    "ResolvePath (registry latest)": 3,
    "ResolvePath (project alias)": 3,
    "ResolvePath (legacy alias)": 3,
    "GetCollectionVersion": 6,
    "GetArtifactVersion": 4,
    "GetRegisteredModelVersion": 4,
    "GetEffectiveRole": 4,
}
NOT_COUNTED = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE", "PRAGMA")


class StatementCounter:
    """Records the statements the server runs while `measure` calls an RPC."""

    def __init__(self, engines: list[Engine], reset: Callable[[], None]) -> None:
        self.engines = list({id(e): e for e in engines}.values())
        self.reset = reset
        self.statements: list[str] = []
        self.active = False
        self._lock = threading.Lock()
        for engine in self.engines:
            event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if (
            self.active
            and not statement.lstrip().upper().startswith(NOT_COUNTED)
            and in_unit_of_work()
        ):
            with self._lock:
                self.statements.append(statement)

    def measure(self, call: Callable[[], Any], runs: int = 3) -> list[str]:
        """The statements of the run that issued the fewest."""
        call()  # warm: authenticates the key and fills caches
        best: list[str] | None = None
        for _ in range(runs):
            with self._lock:
                self.statements = []
            self.reset()
            self.active = True
            try:
                call()
            finally:
                self.active = False
            with self._lock:
                seen = list(self.statements)
            if best is None or len(seen) < len(best):
                best = seen
        assert best is not None
        return best

    def close(self) -> None:
        for engine in self.engines:
            event.remove(engine, "before_cursor_execute", self._record)


class _CountedCursor:
    """A DB-API cursor of a hot connection whose statements the counter records."""

    def __init__(self, cursor: Any, counter: StatementCounter) -> None:
        self._cursor = cursor
        self._counter = counter

    def execute(self, statement: str, *args: Any) -> Any:
        self._counter._record(None, None, statement)
        return self._cursor.execute(statement, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


class _CountedConnection:
    def __init__(self, conn: Any, counter: StatementCounter) -> None:
        self._conn = conn
        self._counter = counter

    def cursor(self, *args: Any) -> _CountedCursor:
        return _CountedCursor(self._conn.cursor(*args), self._counter)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture(scope="module")
def counter(server: ServerThread) -> Iterator[StatementCounter]:
    db = server.app.db
    c = StatementCounter([db.read_engine, db.write_engine], server.app.reply_cache.clear)
    # Hot reads run precompiled SQL on DB-API connections, which engine events do not
    # see: on SQLite `Database.loop_connection`, on PostgreSQL the connections that
    # `Database.async_reads` lends on the event loop (both used by `App.query` only).
    loop_connection = db.loop_connection

    @contextmanager
    def counted() -> Iterator[Any]:
        with loop_connection() as conn:
            yield _CountedConnection(conn, c)

    db.loop_connection = counted  # type: ignore[method-assign]
    pool = db.async_reads
    if pool is not None:
        lend = pool.lend
        pool.lend = lambda conn: _CountedConnection(lend(conn), c)
    yield c
    del db.loop_connection
    if pool is not None:
        pool.lend = lend
    c.close()


# --- data: ROWS of everything the lists list -----------------------------------------


@dataclass
class Populated:
    world: World
    reader: Person  # an org member (not an admin) reading through a team grant
    team: str
    project: str
    registry: str  # resource name
    collection: str  # resource name
    registered_model: str  # resource name
    artifact: str  # resource name


def _implemented(call: Callable[[], Any]) -> bool:
    try:
        call()
    except grpc.RpcError as err:
        if err.code() == grpc.StatusCode.UNIMPLEMENTED:
            return False
        raise
    return True


def _manifest() -> list[r.ManifestEntry]:
    digest = "sha256:" + uuid.uuid4().hex * 2
    return [r.ManifestEntry(path="weights.bin", digest=digest, size=1024, ref="s3://b/weights.bin")]


@pytest.fixture(scope="module")
def populated(server: ServerThread, root_stubs: Stubs) -> Populated:
    world = make_world(server, root_stubs, legacy=True)
    admin = world.admin.stubs
    reader = world.person("reader")
    team = world.team("lab", {reader: r.TEAM_ROLE_MEMBER})
    org = world.org_name
    project = unique("proj")
    admin.artifacts.CreateProject(
        apb.CreateProjectRequest(parent=f"teams/{team}", project_id=project)
    )
    users: list[str] = []
    for i in range(ROWS):
        admin.artifacts.CreateProject(
            apb.CreateProjectRequest(parent=f"teams/{team}", project_id=f"p{i}")
        )
        admin.organizations.CreateTeam(opb.CreateTeamRequest(parent=org, team_id=unique("t")))
        user = unique("u")
        users.append(user)
        admin.organizations.CreateUser(opb.CreateUserRequest(parent=org, user_id=user))
        admin.organizations.AddTeamMember(
            opb.AddTeamMemberRequest(
                team=f"teams/{team}", user=f"users/{user}", role=r.TEAM_ROLE_VIEWER
            )
        )
        world.admin.stubs.organizations.CreateApiKey(
            opb.CreateApiKeyRequest(parent=reader.name, description=f"key {i}")
        )
    registry_id = unique("reg")
    registry = admin.registries.CreateRegistry(
        rpb.CreateRegistryRequest(
            parent=org,
            registry_id=registry_id,
            registry=r.Registry(visibility=r.VISIBILITY_RESTRICTED, artifact_types=["model"]),
        )
    ).name
    admin.registries.AddRegistryMember(
        rpb.AddRegistryMemberRequest(
            registry=registry, member=f"teams/{team}", role=r.REGISTRY_ROLE_MEMBER
        )
    )
    for user in users:
        admin.registries.AddRegistryMember(
            rpb.AddRegistryMemberRequest(
                registry=registry, member=f"users/{user}", role=r.REGISTRY_ROLE_VIEWER
            )
        )
    for i in range(ROWS):
        other = admin.registries.CreateRegistry(
            rpb.CreateRegistryRequest(
                parent=org,
                registry_id=f"r{i}-{uuid.uuid4().hex[:6]}",
                registry=r.Registry(
                    visibility=r.VISIBILITY_RESTRICTED, allow_all_artifact_types=True
                ),
            )
        ).name
        admin.registries.AddRegistryMember(
            rpb.AddRegistryMemberRequest(
                registry=other, member=f"teams/{team}", role=r.REGISTRY_ROLE_VIEWER
            )
        )
    model = unique("m")
    for i in range(ROWS):
        version = admin.artifacts.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent=f"teams/{team}/projects/{project}",
                artifact_id="resnet",
                type="model",
                manifest=_manifest(),
                aliases=[f"a{i}"],
                tags=["t", f"t{i}"],
            )
        ).name
        admin.collections.LinkArtifactVersion(
            cpb.LinkArtifactVersionRequest(
                parent=registry,
                collection_id="main",
                artifact_version=version,
                aliases=[f"c{i}"],
                tags=["t", f"t{i}"],
            )
        )
        admin.collections.LinkArtifactVersion(
            cpb.LinkArtifactVersionRequest(
                parent=registry, collection_id=f"coll-{i}", artifact_version=version
            )
        )
        admin.legacy.LinkModelVersion(
            lpb.LinkModelVersionRequest(
                parent=f"teams/{team}",
                registered_model_id=model,
                artifact_version=version,
                aliases=[f"l{i}"],
                tags=["t"],
            )
        )
        admin.legacy.LinkModelVersion(
            lpb.LinkModelVersionRequest(
                parent=f"teams/{team}", registered_model_id=f"m{i}", artifact_version=version
            )
        )
    for i in range(ROWS):
        admin.events.CreateAutomation(
            epb.CreateAutomationRequest(
                parent=registry,
                automation=r.Automation(
                    event_types=["ALIAS_ADDED"],
                    alias_regex=f"^never-{i}$",
                    url="http://127.0.0.1:9/hook",
                ),
            )
        )
    return Populated(
        world=world,
        reader=reader,
        team=team,
        project=project,
        registry=registry,
        collection=f"{registry}/collections/main",
        registered_model=f"teams/{team}/registeredModels/{model}",
        artifact=f"teams/{team}/projects/{project}/artifacts/resnet",
    )


# --- list RPCs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ListCase:
    name: str
    # (stubs, populated, page_size, page_token) -> response
    call: Callable[[Stubs, Populated, int, str], Message]
    items: str  # repeated field of the response
    as_admin: bool = False  # needs more than the reader's rights


def _list(
    stub: str, method: str, request: type[Message], parent: Callable[[Populated], str], **extra: Any
) -> Callable[[Stubs, Populated, int, str], Message]:
    def call(stubs: Stubs, pop: Populated, size: int, token: str) -> Message:
        rpc = getattr(getattr(stubs, stub), method)
        return rpc(  # type: ignore[no-any-return]
            request(parent=parent(pop), page_size=size, page_token=token, **extra), timeout=30
        )

    return call


LIST_CASES = [
    ListCase(
        "ListCollectionVersions",
        _list(
            "collections",
            "ListCollectionVersions",
            cpb.ListCollectionVersionsRequest,
            lambda p: p.collection,
        ),
        "collection_versions",
    ),
    ListCase(
        "ListCollectionVersions (filter)",
        _list(
            "collections",
            "ListCollectionVersions",
            cpb.ListCollectionVersionsRequest,
            lambda p: p.collection,
            filter='tag = "t" AND alias != "none"',
        ),
        "collection_versions",
    ),
    ListCase(
        "ListCollections",
        _list("collections", "ListCollections", cpb.ListCollectionsRequest, lambda p: p.registry),
        "collections",
    ),
    ListCase(
        "ListRegistries",
        _list(
            "registries", "ListRegistries", rpb.ListRegistriesRequest, lambda p: p.world.org_name
        ),
        "registries",
    ),
    ListCase(
        "ListArtifactVersions",
        _list(
            "artifacts",
            "ListArtifactVersions",
            apb.ListArtifactVersionsRequest,
            lambda p: p.artifact,
        ),
        "artifact_versions",
    ),
    ListCase(
        "ListProjects",
        _list("artifacts", "ListProjects", apb.ListProjectsRequest, lambda p: f"teams/{p.team}"),
        "projects",
    ),
    ListCase(
        "ListRegisteredModelVersions",
        _list(
            "legacy",
            "ListRegisteredModelVersions",
            lpb.ListRegisteredModelVersionsRequest,
            lambda p: p.registered_model,
        ),
        "registered_model_versions",
    ),
    ListCase(
        "ListRegisteredModels",
        _list(
            "legacy",
            "ListRegisteredModels",
            lpb.ListRegisteredModelsRequest,
            lambda p: f"teams/{p.team}",
        ),
        "registered_models",
    ),
    ListCase(
        "ListEvents",
        _list("events", "ListEvents", epb.ListEventsRequest, lambda p: p.world.org_name),
        "events",
    ),
    ListCase(
        "ListEvents (registry)",
        _list("events", "ListEvents", epb.ListEventsRequest, lambda p: p.registry),
        "events",
    ),
    ListCase(
        "ListAutomations",
        _list("events", "ListAutomations", epb.ListAutomationsRequest, lambda p: p.registry),
        "automations",
    ),
    ListCase(
        "ListRegistryMembers",
        _list(
            "registries",
            "ListRegistryMembers",
            rpb.ListRegistryMembersRequest,
            lambda p: p.world.org_name + "/registries/" + p.registry.rsplit("/", 1)[1],
        ),
        "members",
    ),
    ListCase(
        "ListUsers",
        _list("organizations", "ListUsers", opb.ListUsersRequest, lambda p: p.world.org_name),
        "users",
    ),
    ListCase(
        "ListTeams",
        _list("organizations", "ListTeams", opb.ListTeamsRequest, lambda p: p.world.org_name),
        "teams",
    ),
    ListCase(
        "ListTeamMembers",
        _list(
            "organizations",
            "ListTeamMembers",
            opb.ListTeamMembersRequest,
            lambda p: f"teams/{p.team}",
        ),
        "members",
    ),
    ListCase(
        "ListApiKeys",
        _list("organizations", "ListApiKeys", opb.ListApiKeysRequest, lambda p: p.reader.name),
        "api_keys",
    ),
]


def _describe(statements: list[str]) -> str:
    return "\n".join(f"  {i + 1}. {' '.join(s.split())[:300]}" for i, s in enumerate(statements))


@pytest.mark.parametrize("case", LIST_CASES, ids=[c.name for c in LIST_CASES])
def test_list_statements_do_not_grow_with_page_size(
    case: ListCase, populated: Populated, counter: StatementCounter
) -> None:
    stubs = populated.world.admin.stubs if case.as_admin else populated.reader.stubs
    if not _implemented(lambda: case.call(stubs, populated, 1, "")):
        pytest.skip(f"{case.name} is not served yet")
    first = case.call(stubs, populated, 5, "")
    assert len(getattr(first, case.items)) == 5, "not enough rows to fill a page of 5"
    assert len(getattr(case.call(stubs, populated, 50, ""), case.items)) == 50, (
        "not enough rows to fill a page of 50"
    )
    token = first.next_page_token  # type: ignore[attr-defined]
    small = counter.measure(lambda: case.call(stubs, populated, 5, ""))
    large = counter.measure(lambda: case.call(stubs, populated, 50, ""))
    second = counter.measure(lambda: case.call(stubs, populated, 5, token))
    assert large, "no statement counted: the listener no longer sees the unit of work"
    assert len(small) == len(large) == len(second), (
        f"{case.name}: {len(small)} statements for a page of 5, {len(large)} for 50, "
        f"{len(second)} for the second page of 5 (a query per row?)\n"
        f"page of 50:\n{_describe(large)}"
    )
    assert len(large) <= LIST_BOUND, (
        f"{case.name} issues {len(large)} statements (at most {LIST_BOUND}):\n{_describe(large)}"
    )


# --- hot single-item reads -------------------------------------------------------------


def _hot_reads(pop: Populated) -> dict[str, Callable[[Stubs], Any]]:
    org = pop.world.org
    registry_id = pop.registry.rsplit("/", 1)[1]
    model = pop.registered_model.rsplit("/", 1)[1]
    return {
        "ResolvePath (registry alias)": lambda s: s.artifacts.ResolvePath(
            apb.ResolvePathRequest(path=f"{org}/wandb-registry-{registry_id}/main:c7")
        ),
        "ResolvePath (registry latest)": lambda s: s.artifacts.ResolvePath(
            apb.ResolvePathRequest(path=f"{org}/wandb-registry-{registry_id}/main")
        ),
        "ResolvePath (project alias)": lambda s: s.artifacts.ResolvePath(
            apb.ResolvePathRequest(path=f"{pop.team}/{pop.project}/resnet:a7")
        ),
        "ResolvePath (legacy alias)": lambda s: s.artifacts.ResolvePath(
            apb.ResolvePathRequest(path=f"{pop.team}/model-registry/{model}:l7")
        ),
        "GetCollectionVersion": lambda s: s.collections.GetCollectionVersion(
            cpb.GetCollectionVersionRequest(name=f"{pop.collection}/versions/7")
        ),
        "GetArtifactVersion": lambda s: s.artifacts.GetArtifactVersion(
            apb.GetArtifactVersionRequest(name=f"{pop.artifact}/versions/7")
        ),
        "GetRegisteredModelVersion": lambda s: s.legacy.GetRegisteredModelVersion(
            lpb.GetRegisteredModelVersionRequest(name=f"{pop.registered_model}/versions/7")
        ),
        "GetEffectiveRole": lambda s: s.registries.GetEffectiveRole(
            rpb.GetEffectiveRoleRequest(registry=pop.registry)
        ),
    }


@pytest.mark.parametrize("name", list(HOT_READ_BOUNDS))
def test_hot_reads_stay_within_their_statement_bound(
    name: str, populated: Populated, counter: StatementCounter
) -> None:
    call = _hot_reads(populated)[name]
    stubs = populated.reader.stubs
    if not _implemented(lambda: call(stubs)):
        pytest.skip(f"{name} is not served yet")
    statements = counter.measure(lambda: call(stubs))
    assert statements, "no statement counted: the listener no longer sees the unit of work"
    bound = HOT_READ_BOUNDS[name]
    assert len(statements) <= bound, (
        f"{name} issues {len(statements)} statements (at most {bound}):\n{_describe(statements)}"
    )
