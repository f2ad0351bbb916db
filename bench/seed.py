"""Bulk loader for benchmark databases: set-based Core inserts, never the ORM.

A fresh database (created with `registry_server.storage.migrate.upgrade`) is
filled table by table from generators: on SQLite with chunked `executemany`
under load-only PRAGMAs (journal off, synchronous off, big cache; WAL is switched
back on afterwards, as the server expects), on PostgreSQL with `COPY ... FROM
STDIN` followed by sequence resets and `ANALYZE` (what autovacuum would do).
Every row is complete: columns the generator leaves out get the model's Python
default, so a new column with a default does not break the loader.

Shape of the data for N collection versions (100 versions per collection):

- one organization `bench` (legacy Model Registry enabled), with the core
  registries `model` and `dataset`;
- users (`bench-admin` org admin, `bench-user` member, `bench-sa` service
  account, plus N/2000 others, at least 50) and teams (N/10000, at least 10;
  `bench-team` is the first) with each user in three teams;
- N/2000 registries (at least 8), a third ORGANIZATION and the rest RESTRICTED,
  with team and user grants; `bench-team` holds MEMBER on the target registry
  (the registry the benchmark cases read and write), which is RESTRICTED, so
  every read goes through the team-grant path of the effective-role check;
- four projects per team, one artifact of type `model` per collection whose
  versions are exactly that collection's links (metadata, tags, a manifest);
- N/100 collections spread over the registries, N collection versions, with
  the aliases `production` (v50) and `staging` (v99) per collection, version
  tags `candidate` (even indices) and `x` (every tenth);
- `link_sources` unlinked artifact versions and eight empty `link-sink-K`
  collections in the target registry, for the LinkArtifactVersion case;
- optionally a legacy Model Registry: `legacy_versions` registered-model
  versions over `legacy_teams` teams (the first team gets
  `legacy_first_team_versions` of them), 100 versions per registered model,
  team members in every role, a service account, model registry admins,
  protected aliases, and `probe-source` artifact versions for write probes.

API keys are made with `registry_server.service.auth.new_key()`, so they
authenticate like any other key.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import JSON, Table, create_engine, event, func, select, text
from sqlalchemy.engine import Engine

from registry_server.domain.roles import (
    LegacyState,
    OrgRole,
    RegistryRole,
    TeamRole,
    Visibility,
)
from registry_server.service.artifacts import content_digest
from registry_server.service.auth import new_key
from registry_server.storage import models as m
from registry_server.storage.db import normalize_url

ORG = "bench"
ADMIN_USER = "bench-admin"
BENCH_USER = "bench-user"
SERVICE_ACCOUNT = "bench-sa"
BENCH_TEAM = "bench-team"
VERSIONS_PER_COLLECTION = 100
PRODUCTION_INDEX = 50
STAGING_INDEX = 99
PROJECTS_PER_TEAM = 4
LINK_SINKS = 8
LINK_SOURCE_ARTIFACT = "link-source"
LEGACY_VERSIONS_PER_MODEL = 100
PROBE_SOURCES = 2000
CHUNK_ROWS = 50_000
YEAR_US = 365 * 24 * 3600 * 1_000_000
MIB = 1024 * 1024

# --- what gets loaded --------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """How much to load; everything else is derived from these numbers."""

    collection_versions: int = 1000
    link_sources: int = 0
    legacy_teams: int = 0
    legacy_versions: int = 0
    legacy_first_team_versions: int = 0

    @property
    def collections(self) -> int:
        return max(1, math.ceil(self.collection_versions / VERSIONS_PER_COLLECTION))

    @property
    def registries(self) -> int:
        return max(8, self.collection_versions // 2000)

    @property
    def teams(self) -> int:
        return max(10, self.collection_versions // 10_000)

    @property
    def users(self) -> int:
        return max(50, self.collection_versions // 2000)

    def legacy_team_sizes(self) -> list[int]:
        """Registered-model versions per legacy team, the first team possibly larger."""
        if self.legacy_teams <= 0 or self.legacy_versions <= 0:
            return []
        first = self.legacy_first_team_versions or self.legacy_versions // self.legacy_teams
        first = min(first, self.legacy_versions)
        rest = self.legacy_versions - first
        others = self.legacy_teams - 1
        sizes = [first]
        for i in range(others):
            sizes.append(rest // others + (1 if i < rest % others else 0))
        return sizes


@dataclass
class LegacyTeam:
    name: str
    versions: int
    registered_models: int
    member_user: str  # team MEMBER (and model registry admin)
    member_key: str


@dataclass
class Seeded:
    """What the benchmark needs to know about the loaded data."""

    url: str
    shape: Shape
    org: str
    admin_key: str
    user_key: str
    service_account_key: str
    target_registry: str  # registry id (not the resource name)
    target_collection: str
    link_sinks: list[str]
    link_source_artifact: str  # resource name of the link-source artifact
    link_sources: int
    legacy: list[LegacyTeam] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def org_name(self) -> str:
        return f"organizations/{self.org}"

    @property
    def registry_name(self) -> str:
        return f"{self.org_name}/registries/{self.target_registry}"

    @property
    def collection_name(self) -> str:
        return f"{self.registry_name}/collections/{self.target_collection}"

    def link_source(self, index: int) -> str:
        return f"{self.link_source_artifact}/versions/v{index}"

    def probe_source(self, team: LegacyTeam, index: int) -> str:
        return f"teams/{team.name}/projects/training/artifacts/probe-source/versions/v{index}"


# --- the loader ----------------------------------------------------------------------


class Loader:
    """Inserts generated rows into one table at a time, in chunks or with COPY."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        self.rows: dict[str, int] = {}

    def insert(self, table: Table, rows: Iterable[dict[str, Any]]) -> int:
        load = self._chunks if self.is_sqlite else self._copy
        count = load(table, _completed(table, rows))
        self.rows[table.name] = self.rows.get(table.name, 0) + count
        return count

    def _chunks(self, table: Table, rows: Iterator[dict[str, Any]]) -> int:
        count = 0
        stmt = table.insert()
        with self.engine.begin() as conn:
            chunk: list[dict[str, Any]] = []
            for row in rows:
                chunk.append(row)
                if len(chunk) >= CHUNK_ROWS:
                    conn.execute(stmt, chunk)
                    count += len(chunk)
                    chunk = []
            if chunk:
                conn.execute(stmt, chunk)
                count += len(chunk)
        return count

    def _copy(self, table: Table, rows: Iterator[dict[str, Any]]) -> int:
        columns = [c.name for c in table.columns]
        json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
        quoted = ", ".join(f'"{c}"' for c in columns)
        count = 0
        raw = self.engine.raw_connection()
        try:
            psycopg_conn: Any = raw.driver_connection
            with (
                psycopg_conn.cursor() as cur,
                cur.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy,
            ):
                for row in rows:
                    copy.write_row(
                        [
                            json.dumps(row[c])
                            if c in json_columns and row[c] is not None
                            else row[c]
                            for c in columns
                        ]
                    )
                    count += 1
            psycopg_conn.commit()
        finally:
            raw.close()
        return count


def _completed(table: Table, rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Rows with every column set: model defaults for the missing ones, else NULL."""
    fill: dict[str, Callable[[], Any]] | None = None
    for row in rows:
        if fill is None:
            fill = {}
            for column in table.columns:
                if column.name in row:
                    continue
                fill[column.name] = _default_maker(column.default)
        for name, make in fill.items():
            row[name] = make()
        yield row


def _default_maker(default: Any) -> Callable[[], Any]:
    """A zero-argument function giving a column's Python default (None without one)."""
    if default is None:
        return lambda: None
    if getattr(default, "is_callable", False):
        fn = default.arg
        return lambda: _call_default(fn)
    value = default.arg
    return lambda: value


def _call_default(fn: Any) -> Any:
    # SQLAlchemy wraps zero-argument callables into one taking the execution context.
    try:
        return fn(None)
    except TypeError:
        return fn()


def _sqlite_load_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # Load only: no journal, no fsync, a large page cache. The server's own
        # connections set WAL and synchronous=NORMAL again.
        cur.execute("PRAGMA journal_mode=OFF")
        cur.execute("PRAGMA synchronous=OFF")
        cur.execute("PRAGMA cache_size=-262144")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.close()

    return engine


# --- generators ------------------------------------------------------------------------


class _Ids:
    """Explicit primary keys, so children can reference parents without RETURNING."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def take(self, table: str, count: int = 1) -> int:
        first = self._next.get(table, 1)
        self._next[table] = first + count
        return first


def _manifest(n: int) -> list[dict[str, Any]]:
    """Two files, in the canonical (path) order the artifact service stores."""
    weights = f"{n * 2654435761 % (1 << 64):016x}{n:048x}"
    return [
        {"path": "config.json", "digest": f"sha256:{n:064x}", "size": 512, "ref": ""},
        {
            "path": "model.safetensors",
            "digest": f"sha256:{weights}",
            "size": 4 * MIB + n % 1024,
            "ref": f"s3://bench-artifacts/{weights[:16]}/model.safetensors",
        },
    ]


def seed(url: str, shape: Shape) -> Seeded:
    """Loads `shape` into the empty, migrated database at `url`."""
    started = time.perf_counter()
    url = normalize_url(url)
    engine = _sqlite_load_engine(url) if url.startswith("sqlite") else create_engine(url)
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(m.Organization.__table__)).scalar():
            raise RuntimeError("the benchmark loader needs an empty database")
    loader = Loader(engine)
    ids = _Ids()
    now = time.time_ns() // 1000
    t0 = now - YEAR_US  # creation times spread over the past year

    org_id = ids.take("organizations")
    loader.insert(
        m.Organization.__table__,
        [
            dict(
                id=org_id,
                name=ORG,
                display_name="Benchmark organization",
                legacy_model_registry_enabled=True,
                revision=1,
                create_time=t0,
                update_time=t0,
            )
        ],
    )

    # users: the three the benchmark authenticates as, then the crowd
    user_names = [ADMIN_USER, BENCH_USER, SERVICE_ACCOUNT] + [
        f"user-{i:05d}" for i in range(shape.users)
    ]
    user_ids = {name: ids.take("users") for name in user_names}
    legacy_sizes = shape.legacy_team_sizes()
    legacy_users: list[list[tuple[str, int, bool]]] = []  # per team: (name, team role, sa)
    for t in range(len(legacy_sizes)):
        members = [
            (f"lg-{t:03d}-admin", int(TeamRole.ADMIN), False),
            (f"lg-{t:03d}-member", int(TeamRole.MEMBER), False),
            (f"lg-{t:03d}-viewer", int(TeamRole.VIEWER), False),
            (f"lg-{t:03d}-sa", int(TeamRole.MEMBER), True),
        ]
        legacy_users.append(members)
        for name, _, _ in members:
            user_ids[name] = ids.take("users")

    def user_rows() -> Iterator[dict[str, Any]]:
        service_accounts = {SERVICE_ACCOUNT} | {
            name for team in legacy_users for name, _, sa in team if sa
        }
        for name, uid in user_ids.items():
            yield dict(
                id=uid,
                name=name,
                org_id=org_id,
                display_name=name,
                email=f"{name}@bench.example",
                service_account=name in service_accounts,
                org_role=int(OrgRole.ADMIN if name == ADMIN_USER else OrgRole.MEMBER),
                revision=1,
                create_time=t0,
                update_time=t0,
            )

    loader.insert(m.User.__table__, user_rows())

    keys: dict[str, str] = {}

    def key_rows() -> Iterator[dict[str, Any]]:
        wanted = [ADMIN_USER, BENCH_USER, SERVICE_ACCOUNT] + [team[1][0] for team in legacy_users]
        for name in wanted:
            key_id, secret, digest = new_key()
            keys[name] = secret
            yield dict(
                id=ids.take("api_keys"),
                key_id=key_id,
                user_id=user_ids[name],
                secret_hash=digest,
                description="benchmark",
                create_time=now,
                revoke_time=None,
            )

    loader.insert(m.ApiKey.__table__, key_rows())

    # teams: bench-team first, then the crowd's teams, then the legacy teams
    team_names = [BENCH_TEAM] + [f"team-{i:04d}" for i in range(1, shape.teams)]
    team_ids = {name: ids.take("teams") for name in team_names}
    legacy_team_names = [f"legacy-{t:03d}" for t in range(len(legacy_sizes))]
    for name in legacy_team_names:
        team_ids[name] = ids.take("teams")

    def team_rows() -> Iterator[dict[str, Any]]:
        legacy = set(legacy_team_names)
        for name, tid in team_ids.items():
            yield dict(
                id=tid,
                name=name,
                org_id=org_id,
                display_name=name,
                revision=1,
                legacy_state=int(LegacyState.WRITABLE),
                legacy_protected_aliases=["production"] if name in legacy else [],
                legacy_settings_revision=1,
                legacy_settings_update_time=t0,
                migrated_registry_id=None,
                create_time=t0,
                update_time=t0,
            )

    loader.insert(m.Team.__table__, team_rows())

    def member_rows() -> Iterator[dict[str, Any]]:
        bench = team_ids[BENCH_TEAM]
        yield dict(team_id=bench, user_id=user_ids[ADMIN_USER], role=int(TeamRole.ADMIN))
        yield dict(team_id=bench, user_id=user_ids[BENCH_USER], role=int(TeamRole.MEMBER))
        yield dict(team_id=bench, user_id=user_ids[SERVICE_ACCOUNT], role=int(TeamRole.MEMBER))
        roles = [int(TeamRole.ADMIN), int(TeamRole.MEMBER), int(TeamRole.VIEWER)]
        for i in range(shape.users):
            uid = user_ids[f"user-{i:05d}"]
            picked: set[int] = set()
            for k, step in enumerate((1, 7, 13)):
                team = (i * step + k) % (shape.teams - 1) + 1  # never bench-team
                if team in picked:
                    continue
                picked.add(team)
                yield dict(team_id=team_ids[team_names[team]], user_id=uid, role=roles[(i + k) % 3])
        for t, members in enumerate(legacy_users):
            team_id = team_ids[legacy_team_names[t]]
            for name, role, _ in members:
                yield dict(team_id=team_id, user_id=user_ids[name], role=role)

    loader.insert(
        m.TeamMember.__table__,
        ({**row, "create_time": t0, "update_time": t0} for row in member_rows()),
    )
    loader.insert(
        m.LegacyRegistryAdmin.__table__,
        [
            dict(team_id=team_ids[legacy_team_names[t]], user_id=user_ids[members[1][0]])
            for t, members in enumerate(legacy_users)
        ],
    )

    # registries: the two core ones, then the custom ones; the target sits in the middle
    core_ids = {name: ids.take("registries") for name in ("model", "dataset")}
    registry_ids = [ids.take("registries") for _ in range(shape.registries)]
    target_index = shape.registries // 2

    def registry_visibility(i: int) -> Visibility:
        if i == target_index:
            return Visibility.RESTRICTED
        return Visibility.ORGANIZATION if i % 3 == 0 else Visibility.RESTRICTED

    def registry_rows() -> Iterator[dict[str, Any]]:
        for name, rid in core_ids.items():
            yield dict(
                id=rid,
                org_id=org_id,
                name=name,
                description=f"Core {name} registry",
                visibility=int(Visibility.ORGANIZATION),
                artifact_types=[name],
                allow_all_artifact_types=False,
                protected_aliases=[],
                default_role=int(RegistryRole.RESTRICTED_VIEWER),
                core=True,
            )
        for i, rid in enumerate(registry_ids):
            yield dict(
                id=rid,
                org_id=org_id,
                name=f"reg-{i:05d}",
                description=f"Benchmark registry {i}",
                visibility=int(registry_visibility(i)),
                artifact_types=["model"],
                allow_all_artifact_types=False,
                protected_aliases=["production"],
                default_role=int(RegistryRole.RESTRICTED_VIEWER),
                core=False,
            )

    loader.insert(
        m.Registry.__table__,
        (
            {
                **row,
                "revision": 1,
                "created_by_id": user_ids[ADMIN_USER],
                "migrated_from_team_id": None,
                "migration_id": None,
                "create_time": t0,
                "update_time": t0,
            }
            for row in registry_rows()
        ),
    )

    def grant_rows() -> Iterator[dict[str, Any]]:
        for i, rid in enumerate(registry_ids):
            if registry_visibility(i) != Visibility.RESTRICTED:
                continue
            teams = {
                (i % (shape.teams - 1)) + 1: int(RegistryRole.MEMBER),
                ((i * 7 + 3) % (shape.teams - 1)) + 1: int(RegistryRole.VIEWER),
            }
            if i == target_index:
                teams[0] = int(RegistryRole.MEMBER)  # bench-team
            for team, role in teams.items():
                yield dict(
                    registry_id=rid, user_id=None, team_id=team_ids[team_names[team]], role=role
                )
            users = {
                (i * 3) % shape.users: int(RegistryRole.ADMIN),
                (i * 5 + 1) % shape.users: int(RegistryRole.VIEWER),
                (i * 11 + 2) % shape.users: int(RegistryRole.RESTRICTED_VIEWER),
            }
            for user, role in users.items():
                yield dict(
                    registry_id=rid, user_id=user_ids[f"user-{user:05d}"], team_id=None, role=role
                )

    loader.insert(
        m.RegistryMember.__table__,
        (
            {**row, "id": ids.take("registry_members"), "create_time": t0, "update_time": t0}
            for row in grant_rows()
        ),
    )

    # projects: four per team (legacy teams get one, `training`)
    project_ids: list[int] = []
    project_rows: list[dict[str, Any]] = []
    for name in team_names:
        for k in range(PROJECTS_PER_TEAM):
            pid = ids.take("projects")
            project_ids.append(pid)
            project_rows.append(dict(id=pid, team_id=team_ids[name], name=f"proj-{k}"))
    legacy_project_ids: list[int] = []
    for name in legacy_team_names:
        pid = ids.take("projects")
        legacy_project_ids.append(pid)
        project_rows.append(dict(id=pid, team_id=team_ids[name], name="training"))
    loader.insert(
        m.Project.__table__,
        ({**row, "description": "", "create_time": t0, "update_time": t0} for row in project_rows),
    )

    # artifacts: one per collection, the link source, and one per registered model
    collections = shape.collections
    sizes = [
        min(VERSIONS_PER_COLLECTION, shape.collection_versions - c * VERSIONS_PER_COLLECTION)
        for c in range(collections)
    ]
    collection_artifact = [ids.take("artifacts") for _ in range(collections)]
    link_artifact = ids.take("artifacts")
    legacy_models: list[list[tuple[int, int]]] = []  # per team: (artifact id, versions)
    probe_artifacts: list[int] = []
    for size in legacy_sizes:
        models = []
        for k in range(math.ceil(size / LEGACY_VERSIONS_PER_MODEL)):
            count = min(LEGACY_VERSIONS_PER_MODEL, size - k * LEGACY_VERSIONS_PER_MODEL)
            models.append((ids.take("artifacts"), count))
        legacy_models.append(models)
    if legacy_models:  # write probes go to the first (largest) legacy team only
        probe_artifacts.append(ids.take("artifacts"))
    link_project = project_ids[0]  # bench-team/proj-0

    def artifact_rows() -> Iterator[dict[str, Any]]:
        for c, aid in enumerate(collection_artifact):
            yield dict(
                id=aid,
                project_id=project_ids[c % len(project_ids)],
                name=f"model-{c:06d}",
                type="model",
                next_version_index=sizes[c],
            )
        yield dict(
            id=link_artifact,
            project_id=link_project,
            name=LINK_SOURCE_ARTIFACT,
            type="model",
            next_version_index=shape.link_sources,
        )
        for t, models in enumerate(legacy_models):
            for k, (aid, count) in enumerate(models):
                yield dict(
                    id=aid,
                    project_id=legacy_project_ids[t],
                    name=f"rm-{k:04d}",
                    type="model",
                    next_version_index=count,
                )
        for t, aid in enumerate(probe_artifacts):
            yield dict(
                id=aid,
                project_id=legacy_project_ids[t],
                name="probe-source",
                type="model",
                next_version_index=PROBE_SOURCES,
            )

    loader.insert(
        m.Artifact.__table__,
        ({**row, "create_time": t0, "update_time": now} for row in artifact_rows()),
    )

    # artifact versions; ids are handed out in the same order as generated here
    creators = [user_ids[f"user-{i:05d}"] for i in range(shape.users)]
    collection_av_first: list[int] = []
    for size in sizes:
        collection_av_first.append(ids.take("artifact_versions", size))
    link_av_first = ids.take("artifact_versions", shape.link_sources)
    legacy_av_first: list[list[int]] = [
        [ids.take("artifact_versions", count) for _, count in models] for models in legacy_models
    ]
    probe_av_first = [ids.take("artifact_versions", PROBE_SOURCES) for _ in probe_artifacts]
    spread = max(1, YEAR_US // ids.take("artifact_versions", 0))

    def version_row(av_id: int, artifact_id: int, index: int, creator: int) -> dict[str, Any]:
        manifest = _manifest(av_id)
        created = t0 + av_id * spread
        return dict(
            id=av_id,
            artifact_id=artifact_id,
            version_index=index,
            digest=content_digest(manifest),
            size=sum(e["size"] for e in manifest),
            manifest=manifest,
            metadata_={"accuracy": round(0.5 + (index % 50) / 100, 2), "epoch": index},
            description="",
            tags=["candidate"] if index % 2 == 0 else [],
            producing_run=f"run-{av_id:08x}",
            created_by_id=creator,
            revision=1,
            delete_time=None,
            create_time=created,
            update_time=created,
        )

    def artifact_version_rows() -> Iterator[dict[str, Any]]:
        for c, size in enumerate(sizes):
            creator = creators[c % len(creators)]
            for j in range(size):
                yield version_row(collection_av_first[c] + j, collection_artifact[c], j, creator)
        bench_user = user_ids[BENCH_USER]
        for j in range(shape.link_sources):
            yield version_row(link_av_first + j, link_artifact, j, bench_user)
        for t, models in enumerate(legacy_models):
            creator = user_ids[legacy_users[t][1][0]]
            for k, (aid, count) in enumerate(models):
                for j in range(count):
                    yield version_row(legacy_av_first[t][k] + j, aid, j, creator)
        for t, aid in enumerate(probe_artifacts):
            creator = user_ids[legacy_users[t][1][0]]
            for j in range(PROBE_SOURCES):
                yield version_row(probe_av_first[t] + j, aid, j, creator)

    loader.insert(m.ArtifactVersion.__table__, _renamed(artifact_version_rows()))

    def latest_rows() -> Iterator[dict[str, Any]]:
        """`latest` is a stored artifact alias on the newest version."""
        newest = [(collection_artifact[c], collection_av_first[c], n) for c, n in enumerate(sizes)]
        newest.append((link_artifact, link_av_first, shape.link_sources))
        for t, models in enumerate(legacy_models):
            newest += [(aid, legacy_av_first[t][k], n) for k, (aid, n) in enumerate(models)]
        newest += [(aid, probe_av_first[t], PROBE_SOURCES) for t, aid in enumerate(probe_artifacts)]
        for artifact_id, first, count in newest:
            if count > 0:
                yield dict(
                    id=ids.take("artifact_aliases"),
                    artifact_id=artifact_id,
                    alias="latest",
                    version_id=first + count - 1,
                )

    loader.insert(m.ArtifactAlias.__table__, latest_rows())

    # collections, their versions and aliases
    collection_ids = [ids.take("collections") for _ in range(collections)]
    sink_ids = [ids.take("collections") for _ in range(LINK_SINKS)]
    target_registry_id = registry_ids[target_index]

    def collection_rows() -> Iterator[dict[str, Any]]:
        for c, cid in enumerate(collection_ids):
            yield dict(
                id=cid,
                registry_id=registry_ids[c % shape.registries],
                name=f"coll-{c:06d}",
                type="model",
                description=f"Model card of collection {c}",
                tags=["bench"],
                next_version_index=sizes[c],
                created_by_id=creators[c % len(creators)],
            )
        for k, cid in enumerate(sink_ids):
            yield dict(
                id=cid,
                registry_id=target_registry_id,
                name=f"link-sink-{k}",
                type="model",
                description="LinkArtifactVersion benchmark target",
                tags=[],
                next_version_index=0,
                created_by_id=user_ids[BENCH_USER],
            )

    loader.insert(
        m.Collection.__table__,
        (
            {
                **row,
                "revision": 1,
                "migrated_from_model_id": None,
                "create_time": t0,
                "update_time": now,
            }
            for row in collection_rows()
        ),
    )

    cv_first: list[int] = [ids.take("collection_versions", size) for size in sizes]

    def collection_version_rows() -> Iterator[dict[str, Any]]:
        for c, size in enumerate(sizes):
            linker = creators[(c + 1) % len(creators)]
            for j in range(size):
                created = t0 + (collection_av_first[c] + j) * spread + 1000
                yield dict(
                    id=cv_first[c] + j,
                    collection_id=collection_ids[c],
                    version_index=j,
                    artifact_version_id=collection_av_first[c] + j,
                    tags=(["candidate"] if j % 2 == 0 else []) + (["x"] if j % 10 == 0 else []),
                    description="",
                    linked_by_id=linker,
                    create_time=created,
                    update_time=created,
                )

    loader.insert(m.CollectionVersion.__table__, collection_version_rows())

    def alias_rows(
        table: str, parent_column: str, parents: list[int], first_ids: list[int], counts: list[int]
    ) -> Iterator[dict[str, Any]]:
        for p, parent_id in enumerate(parents):
            for alias, index in (("production", PRODUCTION_INDEX), ("staging", STAGING_INDEX)):
                index = min(index, counts[p] - 1)
                if index < 0:
                    continue
                yield {
                    "id": ids.take(table),
                    parent_column: parent_id,
                    "alias": alias,
                    "version_id": first_ids[p] + index,
                    "create_time": now,
                }

    loader.insert(
        m.CollectionAlias.__table__,
        alias_rows("collection_aliases", "collection_id", collection_ids, cv_first, sizes),
    )

    # the legacy Model Registry
    legacy_out: list[LegacyTeam] = []
    rm_ids: list[int] = []
    rm_counts: list[int] = []
    rmv_first: list[int] = []
    rm_rows: list[dict[str, Any]] = []
    for t, models in enumerate(legacy_models):
        creator = user_ids[legacy_users[t][1][0]]
        for k, (_, count) in enumerate(models):
            rid = ids.take("registered_models")
            rm_ids.append(rid)
            rm_counts.append(count)
            rmv_first.append(ids.take("registered_model_versions", count))
            rm_rows.append(
                dict(
                    id=rid,
                    team_id=team_ids[legacy_team_names[t]],
                    name=f"model-{k:04d}",
                    description=f"Registered model {k} of {legacy_team_names[t]}",
                    tags=["legacy"],
                    next_version_index=count,
                    created_by_id=creator,
                    revision=1,
                    migrated_collection_id=None,
                    create_time=t0,
                    update_time=now,
                )
            )
        member = legacy_users[t][1][0]
        legacy_out.append(
            LegacyTeam(
                name=legacy_team_names[t],
                versions=legacy_sizes[t],
                registered_models=len(models),
                member_user=member,
                member_key=keys[member],
            )
        )
    if rm_rows:
        loader.insert(m.RegisteredModel.__table__, rm_rows)

        def rmv_rows() -> Iterator[dict[str, Any]]:
            r = 0
            for t, models in enumerate(legacy_models):
                linker = user_ids[legacy_users[t][1][0]]
                for k, (_, count) in enumerate(models):
                    for j in range(count):
                        av = legacy_av_first[t][k] + j
                        created = t0 + av * spread + 1000
                        yield dict(
                            id=rmv_first[r] + j,
                            registered_model_id=rm_ids[r],
                            version_index=j,
                            artifact_version_id=av,
                            tags=["candidate"] if j % 2 == 0 else [],
                            description="",
                            linked_by_id=linker,
                            create_time=created,
                            update_time=created,
                        )
                    r += 1

        loader.insert(m.RegisteredModelVersion.__table__, rmv_rows())
        loader.insert(
            m.RegisteredModelAlias.__table__,
            alias_rows(
                "registered_model_aliases", "registered_model_id", rm_ids, rmv_first, rm_counts
            ),
        )

    _finish(engine, loader)
    engine.dispose()
    return Seeded(
        url=url,
        shape=shape,
        org=ORG,
        admin_key=keys[ADMIN_USER],
        user_key=keys[BENCH_USER],
        service_account_key=keys[SERVICE_ACCOUNT],
        target_registry=f"reg-{target_index:05d}",
        target_collection=f"coll-{target_index:06d}",
        link_sinks=[f"link-sink-{k}" for k in range(LINK_SINKS)],
        link_source_artifact=f"teams/{BENCH_TEAM}/projects/proj-0/artifacts/{LINK_SOURCE_ARTIFACT}",
        link_sources=shape.link_sources,
        legacy=legacy_out,
        rows=dict(loader.rows),
        seconds=time.perf_counter() - started,
    )


def _renamed(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """ORM attribute names to column names (`metadata_` is the `metadata` column)."""
    for row in rows:
        row["metadata"] = row.pop("metadata_")
        yield row


def _finish(engine: Engine, loader: Loader) -> None:
    """Makes the loaded database look like one the server wrote itself."""
    if loader.is_sqlite:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        return
    with engine.begin() as conn:
        for table in m.Base.metadata.sorted_tables:
            pk = list(table.primary_key.columns)
            if len(pk) != 1 or not pk[0].autoincrement or table.name not in loader.rows:
                continue
            column = pk[0].name
            conn.execute(
                text(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column}'), "
                    f'(SELECT max("{column}") FROM "{table.name}"))'
                )
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description="Bulk-load a benchmark database.")
    parser.add_argument("--database-url", required=True, help="an empty, migrated database")
    parser.add_argument("--collection-versions", type=int, default=1000)
    parser.add_argument("--link-sources", type=int, default=0)
    parser.add_argument("--legacy-teams", type=int, default=0)
    parser.add_argument("--legacy-versions", type=int, default=0)
    args = parser.parse_args()
    seeded = seed(
        args.database_url,
        Shape(
            collection_versions=args.collection_versions,
            link_sources=args.link_sources,
            legacy_teams=args.legacy_teams,
            legacy_versions=args.legacy_versions,
        ),
    )
    print(json.dumps({"seconds": round(seeded.seconds, 1), "rows": seeded.rows}, indent=2))
    print(f"bench-user key: {seeded.user_key}")
    print(f"bench-admin key: {seeded.admin_key}")


if __name__ == "__main__":
    main()
