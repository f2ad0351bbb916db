"""SIGKILL under link and alias-move traffic, then a restart on the same database: every
acknowledged change is there, and the database invariants hold.

Several client threads link artifact versions into a few collections and move aliases
between their versions (half of the moves are compare-and-set) against a real
`registry-server serve` process, recording every request they send and every answer
they get. The server is killed with SIGKILL in the middle of that traffic and started
again on the same database. Then:

- every acknowledged link is there, at the index it was acknowledged with;
- each alias is on exactly one version, and that version is one that some move which
  may have been applied last put it on: a move acknowledged, or one that never got an
  answer, and in either case not one that was already answered before some other
  acknowledged move of the same alias was sent (that later move committed after it);
- `invariant_violations`: over the whole database, one version per alias per
  collection (and the unique constraint that guarantees it), no link to a missing
  artifact version, version indices unique and dense, `next_version_index` one past
  the highest, and exactly one event per change: replaying a collection's events
  gives exactly its versions and aliases, each alias move starting where the previous
  one ended.

The ledger and the checks are shared with tests/test_replicas.py and bench/soak.py.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc
from sqlalchemy import delete, func, inspect, select, update
from sqlalchemy.orm import Session, aliased

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs, open_channel
from registry_client.errors import from_rpc_error
from registry_server.storage import models as m
from registry_server.storage.db import Database

from .test_migration_crash import ROOT_ORG, bootstrap, fresh_database
from .test_server_process import Proc, free_port

THREADS = 6
TRAFFIC_SECONDS = 2.5  # of traffic before the kill
CALLS_PER_THREAD = 2000  # a bound; the kill comes first
SOURCES = 48
COLLECTIONS = 3
ALIASES = ("production", "staging", "canary")
CALL_TIMEOUT = 10.0

# Outcomes of a write as the client saw it.
OK = "ok"  # acknowledged: applied
REJECTED = "rejected"  # a definite error: not applied
UNKNOWN = "unknown"  # no answer (connection lost, deadline): maybe applied
# Codes after which the client cannot tell whether the write was applied.
UNCERTAIN = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)


# --- what the clients sent and what was acknowledged ------------------------------------------


@dataclass
class Move:
    """One AddAlias request: put `alias` of `collection` on version `target`."""

    collection: str
    alias: str
    target: int
    expected: int | None  # compare-and-set: where the alias must be now (-1: absent)
    sent: float
    answered: float = math.inf  # when the answer came; inf while there was none
    outcome: str = UNKNOWN


@dataclass
class Ledger:
    """Every link and alias move the clients made, with its outcome (thread-safe)."""

    links: dict[tuple[str, str], int] = field(default_factory=dict)  # (collection, source)
    moves: list[Move] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    _indices: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def link_acknowledged(self, collection: str, source: str, version: r.CollectionVersion) -> None:
        with self._lock:
            known = self.links.setdefault((collection, source), version.version_index)
            if known != version.version_index:
                self.conflicts.append(
                    f"{source} linked into {collection} as v{known} and as v{version.version_index}"
                )
            elif known not in self._indices[collection]:
                self._indices[collection].append(known)
            if version.artifact_version != source:
                self.conflicts.append(f"link of {source} answered {version.artifact_version}")

    def indices(self, collection: str) -> list[int]:
        """Acknowledged version indices of the collection (targets for moves)."""
        with self._lock:
            return list(self._indices[collection])

    def move_sent(self, collection: str, alias: str, target: int, expected: int | None) -> Move:
        move = Move(collection, alias, target, expected, time.monotonic())
        with self._lock:
            self.moves.append(move)
        return move

    @staticmethod
    def move_answered(move: Move, outcome: str) -> None:
        if outcome in (OK, REJECTED):
            move.answered = time.monotonic()
        move.outcome = outcome


def outcome_of(code: grpc.StatusCode) -> str:
    return UNKNOWN if code in UNCERTAIN else REJECTED


# --- checking acknowledged changes -------------------------------------------------------------

# collection name -> version index -> (artifact version name, aliases)
Snapshot = dict[str, dict[int, tuple[str, frozenset[str]]]]


def api_snapshot(stubs: Stubs, collections: Iterable[str]) -> Snapshot:
    """The collections' versions and aliases as the server answers them."""
    snap: Snapshot = {}
    for collection in collections:
        versions: dict[int, tuple[str, frozenset[str]]] = {}
        token = ""
        while True:
            page = stubs.collections.ListCollectionVersions(
                cpb.ListCollectionVersionsRequest(
                    parent=collection, page_size=1000, page_token=token
                ),
                timeout=30,
            )
            for v in page.collection_versions:
                versions[v.version_index] = (v.artifact_version, frozenset(v.aliases))
            token = page.next_page_token
            if not token:
                break
        snap[collection] = versions
    return snap


def acknowledged_violations(
    ledger: Ledger, snap: Snapshot, alias_moves: dict[tuple[str, str], list[tuple[Any, int]]]
) -> list[str]:
    """What the server acknowledged but the snapshot or the event log contradicts.

    `alias_moves`: (collection, alias) -> its ALIAS_ADDED events (previous, to) in
    cursor order (`alias_events`).
    """
    out = list(ledger.conflicts)
    for (collection, source), index in ledger.links.items():
        got = snap.get(collection, {}).get(index)
        if got is None:
            out.append(f"acknowledged link {collection}/versions/{index} ({source}) is missing")
        elif got[0] != source:
            out.append(f"{collection}/versions/{index} points at {got[0]}, not {source}")
    positions: dict[tuple[str, str], list[int]] = defaultdict(list)
    for collection, versions in snap.items():
        for index, (_, aliases) in versions.items():
            for alias in aliases:
                positions[(collection, alias)].append(index)
    by_alias: dict[tuple[str, str], list[Move]] = defaultdict(list)
    for move in ledger.moves:
        by_alias[(move.collection, move.alias)].append(move)
    for key, moves in sorted(by_alias.items()):
        acked = [mv for mv in moves if mv.outcome == OK]
        maybe_applied = [mv for mv in moves if mv.outcome in (OK, UNKNOWN)]
        # A move answered before another acknowledged move was sent is not the last one.
        last_ack_sent = max((mv.sent for mv in acked), default=-math.inf)
        candidates = {mv.target for mv in maybe_applied if mv.answered >= last_ack_sent}
        where = positions.get(key, [])
        label = f"alias {key[1]!r} of {key[0]}"
        if len(where) > 1:
            out.append(f"{label} is on several versions: {where}")
        elif acked and not where:
            out.append(f"{label} was acknowledged {len(acked)} times but is gone")
        elif where and where[0] not in candidates:
            out.append(
                f"{label} is on v{where[0]}, which no move that may have been last put it "
                f"on (candidates {sorted(candidates)})"
            )
        events = alias_moves.get(key, [])
        if len(events) > len(maybe_applied):
            out.append(f"{label}: {len(events)} ALIAS_ADDED events for {len(maybe_applied)} moves")
        # An acknowledged compare-and-set move from elsewhere is exactly one recorded move.
        needed = Counter(
            (None if mv.expected == -1 else mv.expected, mv.target)
            for mv in acked
            if mv.expected is not None and mv.expected != mv.target
        )
        missing = needed - Counter(events)
        if missing:
            out.append(f"{label}: acknowledged moves without an event: {dict(missing)}")
    return out


# --- invariants over the whole database ----------------------------------------------------------

HISTORY_TYPES = (
    "COLLECTION_CREATED",
    "VERSION_LINKED",
    "VERSION_UNLINKED",
    "ALIAS_ADDED",
    "ALIAS_REMOVED",
)


@dataclass
class CollectionState:
    """A collection as stored, keyed by its resource name."""

    id: int
    name: str
    next_version_index: int
    migrated: bool
    versions: dict[int, str] = field(default_factory=dict)  # index -> artifact version name
    aliases: dict[str, int] = field(default_factory=dict)  # alias -> index


def _collections(s: Session) -> dict[str, CollectionState]:
    rows = s.execute(
        select(
            m.Collection.id,
            m.Organization.name,
            m.Registry.name,
            m.Collection.name,
            m.Collection.next_version_index,
            m.Collection.migrated_from_model_id,
        )
        .join(m.Registry, m.Registry.id == m.Collection.registry_id)
        .join(m.Organization, m.Organization.id == m.Registry.org_id)
    ).all()
    by_id = {
        cid: CollectionState(
            cid,
            f"organizations/{org}/registries/{registry}/collections/{name}",
            next_index,
            migrated is not None,
        )
        for cid, org, registry, name, next_index, migrated in rows
    }
    for cid, index, team, project, artifact, av_index in s.execute(
        select(
            m.CollectionVersion.collection_id,
            m.CollectionVersion.version_index,
            m.Team.name,
            m.Project.name,
            m.Artifact.name,
            m.ArtifactVersion.version_index,
        )
        .join(m.ArtifactVersion, m.ArtifactVersion.id == m.CollectionVersion.artifact_version_id)
        .join(m.Artifact, m.Artifact.id == m.ArtifactVersion.artifact_id)
        .join(m.Project, m.Project.id == m.Artifact.project_id)
        .join(m.Team, m.Team.id == m.Project.team_id)
    ).all():
        by_id[cid].versions[index] = (
            f"teams/{team}/projects/{project}/artifacts/{artifact}/versions/{av_index}"
        )
    for cid, alias, index in s.execute(
        select(
            m.CollectionAlias.collection_id,
            m.CollectionAlias.alias,
            m.CollectionVersion.version_index,
        ).join(m.CollectionVersion, m.CollectionVersion.id == m.CollectionAlias.version_id)
    ).all():
        by_id[cid].aliases[alias] = index
    return {c.name: c for c in by_id.values()}


def _history(s: Session) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Collection name -> its (type, details) events in cursor order, starting at its last
    COLLECTION_CREATED (a deleted and re-created collection starts afresh)."""
    history: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for type_, resource, details in s.execute(
        select(m.Event.type, m.Event.resource, m.Event.details)
        .where(m.Event.type.in_(HISTORY_TYPES))
        .order_by(m.Event.cursor)
    ).all():
        if type_ == "COLLECTION_CREATED":
            history[resource] = [(type_, details or {})]
        else:
            history[(details or {}).get("collection", "")].append((type_, details or {}))
    return history


def alias_events(url: str) -> dict[tuple[str, str], list[tuple[Any, int]]]:
    """(collection, alias) -> (previous_version_index, version_index) of its ALIAS_ADDED
    events in cursor order."""
    db = Database(url)
    try:
        with db.read() as s:
            history = _history(s)
    finally:
        db.dispose()
    out: dict[tuple[str, str], list[tuple[Any, int]]] = defaultdict(list)
    for collection, events in history.items():
        for type_, details in events:
            if type_ == "ALIAS_ADDED":
                out[(collection, details["alias"])].append(
                    (details.get("previous_version_index"), details["version_index"])
                )
    return out


def _replay(state: CollectionState, events: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """Replays a collection's events; they must produce exactly its stored versions and
    aliases, with every alias move starting where the previous one left the alias."""
    out: list[str] = []
    name = state.name
    if not events or events[0][0] != "COLLECTION_CREATED":
        return [f"{name}: no COLLECTION_CREATED event"]
    linked: dict[int, str] = {}
    aliases: dict[str, int] = {}
    links = 0
    for type_, d in events[1:]:
        index = int(d.get("version_index", -1))
        if type_ == "VERSION_LINKED":
            links += 1
            if index in linked:
                out.append(f"{name}: v{index} linked twice")
            linked[index] = d.get("artifact_version", "")
        elif type_ == "VERSION_UNLINKED":
            if linked.pop(index, None) is None:
                out.append(f"{name}: v{index} unlinked but not linked")
            if any(at == index for at in aliases.values()):
                out.append(f"{name}: v{index} unlinked with its aliases")
        elif type_ == "ALIAS_ADDED":
            alias = d.get("alias", "")
            if d.get("previous_version_index") != aliases.get(alias):
                out.append(
                    f"{name}: alias {alias!r} moved from v{d.get('previous_version_index')} "
                    f"but was on v{aliases.get(alias)}"
                )
            if index not in linked:
                out.append(f"{name}: alias {alias!r} put on v{index}, which is not linked")
            aliases[alias] = index
        elif type_ == "ALIAS_REMOVED":
            alias = d.get("alias", "")
            if aliases.pop(alias, None) != index:
                out.append(f"{name}: alias {alias!r} removed from v{index}, where it was not")
    if linked != state.versions:
        extra = sorted(set(state.versions) - set(linked))
        lost = sorted(set(linked) - set(state.versions))
        moved = sorted(
            i for i in set(linked) & set(state.versions) if linked[i] != state.versions[i]
        )
        out.append(
            f"{name}: versions differ from their events (without an event {extra[:5]}, "
            f"with an event but missing {lost[:5]}, pointing elsewhere {moved[:5]})"
        )
    if aliases != state.aliases:
        out.append(f"{name}: aliases {state.aliases} but events say {aliases}")
    if links != state.next_version_index:
        out.append(
            f"{name}: {links} VERSION_LINKED events for next_version_index "
            f"{state.next_version_index}"
        )
    return out


def invariant_violations(url: str) -> list[str]:
    """Everything wrong with the collections of the database (empty when all holds)."""
    db = Database(url)
    out: list[str] = []
    try:
        inspector = inspect(db.read_engine)
        for table, columns in (
            ("collection_aliases", ("collection_id", "alias")),
            ("collection_versions", ("collection_id", "version_index")),
        ):
            uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
            if columns not in uniques:
                out.append(f"no unique constraint on {table}{columns}")
        with db.read() as s:
            cv, ca, av = m.CollectionVersion, m.CollectionAlias, m.ArtifactVersion
            for cid, alias, n in s.execute(
                select(ca.collection_id, ca.alias, func.count())
                .group_by(ca.collection_id, ca.alias)
                .having(func.count() > 1)
            ).all():
                out.append(f"alias {alias!r} of collection {cid} is on {n} versions")
            for (vid,) in s.execute(
                select(cv.id).outerjoin(av, av.id == cv.artifact_version_id).where(av.id.is_(None))
            ).all():
                out.append(f"collection version {vid} points at a missing artifact version")
            holder = aliased(m.CollectionVersion)
            for alias_id, alias in s.execute(
                select(ca.id, ca.alias)
                .outerjoin(holder, holder.id == ca.version_id)
                .where((holder.id.is_(None)) | (holder.collection_id != ca.collection_id))
            ).all():
                out.append(f"alias {alias!r} ({alias_id}) is not on a version of its collection")
            collections = _collections(s)
            history = _history(s)
        for name, state in sorted(collections.items()):
            indices = sorted(state.versions)
            top = indices[-1] if indices else -1
            unlinked = any(t == "VERSION_UNLINKED" for t, _ in history.get(name, []))
            if state.migrated or unlinked:
                # Migrated collections keep the legacy indices, gaps included.
                if state.next_version_index <= top:
                    out.append(f"{name}: next_version_index {state.next_version_index} <= v{top}")
            else:
                if indices != list(range(len(indices))):
                    out.append(f"{name}: indices not dense: {indices[:10]}...")
                if state.next_version_index != top + 1:
                    out.append(f"{name}: next_version_index {state.next_version_index}, max v{top}")
            if not state.migrated:
                out.extend(_replay(state, history.get(name, [])))
    finally:
        db.dispose()
    return out


# --- set-up and traffic -------------------------------------------------------------------------


@dataclass
class Fixture:
    """What the traffic works on: source artifact versions and target collections."""

    sources: list[str]
    collections: list[str]

    @property
    def registry(self) -> str:
        return self.collections[0].rsplit("/collections/", 1)[0]


def make_sources(stubs: Stubs, team: str, count: int, *, artifact: str = "weights") -> list[str]:
    """A project in a new team with `count` versions of one model artifact."""
    stubs.organizations.CreateTeam(
        opb.CreateTeamRequest(parent=f"organizations/{ROOT_ORG}", team_id=team), timeout=30
    )
    project = stubs.artifacts.CreateProject(
        apb.CreateProjectRequest(parent=f"teams/{team}", project_id="train"), timeout=30
    ).name
    return [
        stubs.artifacts.CreateArtifactVersion(
            apb.CreateArtifactVersionRequest(
                parent=project,
                artifact_id=artifact,
                type="model",
                manifest=[r.ManifestEntry(path="model.pt", digest=f"sha256:{i:064x}", size=i + 1)],
                request_id=str(uuid.uuid4()),
            ),
            timeout=30,
        ).name
        for i in range(count)
    ]


def link(
    stubs: Stubs, ledger: Ledger, collection: str, source: str
) -> tuple[str, grpc.StatusCode | None]:
    """One LinkArtifactVersion; returns (outcome, error code)."""
    registry, collection_id = collection.split("/collections/")
    try:
        version = stubs.collections.LinkArtifactVersion(
            cpb.LinkArtifactVersionRequest(
                parent=registry,
                collection_id=collection_id,
                artifact_version=source,
                request_id=str(uuid.uuid4()),
            ),
            timeout=CALL_TIMEOUT,
        )
    except grpc.RpcError as e:
        return outcome_of(e.code()), e.code()
    ledger.link_acknowledged(collection, source, version)
    return OK, None


def move_alias(
    stubs: Stubs,
    ledger: Ledger,
    collection: str,
    alias: str,
    target: int,
    seen: dict[tuple[str, str], int],
    cas: bool,
) -> tuple[str, grpc.StatusCode | None]:
    """One AddAlias, compare-and-set against where this client last saw the alias when
    `cas` and it saw it; `seen` learns from the answer."""
    key = (collection, alias)
    expected = seen.get(key) if cas else None
    request = cpb.AddAliasRequest(collection_version=f"{collection}/versions/{target}", alias=alias)
    if expected is not None:
        request.expected_version_index = expected
    move = ledger.move_sent(collection, alias, target, expected)
    try:
        stubs.collections.AddAlias(request, timeout=CALL_TIMEOUT)
    except grpc.RpcError as e:
        ledger.move_answered(move, outcome_of(e.code()))
        if e.code() == grpc.StatusCode.ABORTED:
            current = from_rpc_error(e).metadata.get("current_version_index")
            if current is not None:
                seen[key] = int(current)
        return move.outcome, e.code()
    ledger.move_answered(move, OK)
    seen[key] = target
    return OK, None


def drive(
    stubs: Stubs,
    ledger: Ledger,
    fixture: Fixture,
    stop: threading.Event,
    seed: int,
    on_error: Callable[[str, grpc.StatusCode], None],
    calls: int = CALLS_PER_THREAD,
) -> None:
    """One client: links (40%) and alias moves (60%, half compare-and-set) until `stop`."""
    rng = random.Random(seed)
    seen: dict[tuple[str, str], int] = {}
    for _ in range(calls):
        if stop.is_set():
            return
        collection = rng.choice(fixture.collections)
        targets = ledger.indices(collection)
        if not targets or rng.random() < 0.4:
            rpc = "LinkArtifactVersion"
            _, code = link(stubs, ledger, collection, rng.choice(fixture.sources))
        else:
            rpc = "AddAlias"
            _, code = move_alias(
                stubs,
                ledger,
                collection,
                rng.choice(ALIASES),
                rng.choice(targets),
                seen,
                cas=rng.random() < 0.5,
            )
        if code is not None:
            on_error(rpc, code)


# --- the test ---------------------------------------------------------------------------------


def test_sigkill_under_link_and_alias_traffic_loses_nothing_acknowledged() -> None:
    with fresh_database() as url:
        key = bootstrap(url)
        server = Proc(["--database-url", url, "--log-level", "WARNING"], free_port())
        channel = open_channel(f"127.0.0.1:{server.port}", key)
        try:
            server.wait_healthy()
            stubs = Stubs.on(channel)
            registry = f"organizations/{ROOT_ORG}/registries/model"
            *sources, spare = make_sources(stubs, "crash", SOURCES + 1)
            fixture = Fixture(
                sources, [f"{registry}/collections/crash-{i}" for i in range(COLLECTIONS)]
            )
            ledger = Ledger()
            stop = threading.Event()
            killed = threading.Event()
            codes: Counter[str] = Counter()
            early: list[str] = []
            lock = threading.Lock()

            def on_error(rpc: str, code: grpc.StatusCode) -> None:
                with lock:
                    codes[code.name] += 1
                    # Before the kill only compare-and-set conflicts are expected.
                    if not killed.is_set() and code != grpc.StatusCode.ABORTED:
                        early.append(f"{rpc}: {code.name}")

            clients = [
                threading.Thread(
                    target=drive, args=(stubs, ledger, fixture, stop, n, on_error), daemon=True
                )
                for n in range(THREADS)
            ]
            for client in clients:
                client.start()
            time.sleep(TRAFFIC_SECONDS)
            acked_before_kill = sum(1 for mv in ledger.moves if mv.outcome == OK)
            # No new calls from here on; those in flight meet the SIGKILL.
            stop.set()
            killed.set()
            server.kill()
            for client in clients:
                client.join(30)
            assert not early, early[:5]
            assert ledger.links and acked_before_kill > 0, "no traffic was acknowledged"
        finally:
            channel.close()
            server.stop()

        # The same database, a new process.
        server = Proc(["--database-url", url, "--log-level", "WARNING"], free_port())
        channel = open_channel(f"127.0.0.1:{server.port}", key)
        try:
            server.wait_healthy()
            stubs = Stubs.on(channel)
            snap = api_snapshot(stubs, fixture.collections)
            violations = acknowledged_violations(ledger, snap, alias_events(url))
            violations += invariant_violations(url)
            assert not violations, violations[:10]
            unknown = sum(1 for mv in ledger.moves if mv.outcome == UNKNOWN)
            print(
                f"links acknowledged {len(ledger.links)}, moves {len(ledger.moves)} "
                f"(acknowledged {sum(1 for mv in ledger.moves if mv.outcome == OK)}, "
                f"unanswered {unknown}), errors {dict(codes)}"
            )

            # The restarted server carries on from where the database is: the next link
            # gets the next index, and an alias moves onto it.
            collection = fixture.collections[0]
            assert link(stubs, ledger, collection, spare)[0] == OK
            index = ledger.links[(collection, spare)]
            assert index == max(snap[collection], default=-1) + 1
            assert move_alias(stubs, ledger, collection, "production", index, {}, False)[0] == OK
            assert not invariant_violations(url)
        finally:
            channel.close()
            server.stop()

        # The checks are not vacuous: changes made behind the server's back are caught.
        (acked_collection, _), acked_index = next(iter(ledger.links.items()))
        tampered = dict(snap)
        tampered[acked_collection] = {
            i: v for i, v in snap[acked_collection].items() if i != acked_index
        }
        assert any("is missing" in v for v in acknowledged_violations(ledger, tampered, {}))
        caught_tampering(url, collection)


def caught_tampering(url: str, collection: str) -> None:
    """Moves an alias, drops an event and bumps a counter directly in the database;
    `invariant_violations` reports each."""
    db = Database(url)
    cv, ca = m.CollectionVersion, m.CollectionAlias
    try:
        with db.write() as s:
            cid, next_index = s.execute(
                select(m.Collection.id, m.Collection.next_version_index).where(
                    m.Collection.name == collection.rsplit("/", 1)[-1]
                )
            ).one()
            alias = s.execute(select(ca).where(ca.collection_id == cid).limit(1)).scalar_one()
            elsewhere = s.execute(
                select(cv.id).where(cv.collection_id == cid, cv.id != alias.version_id).limit(1)
            ).scalar_one()
            alias.version_id = elsewhere
        assert any("but events say" in v for v in invariant_violations(url))
        with db.write() as s:
            s.execute(
                update(m.Collection)
                .where(m.Collection.id == cid)
                .values(next_version_index=next_index + 1)
            )
        assert any("next_version_index" in v for v in invariant_violations(url))
        with db.write() as s:
            last_link = s.execute(
                select(func.max(m.Event.cursor)).where(m.Event.type == "VERSION_LINKED")
            ).scalar_one()
            s.execute(delete(m.Event).where(m.Event.cursor == last_link))
        assert any("without an event" in v for v in invariant_violations(url))
    finally:
        db.dispose()
