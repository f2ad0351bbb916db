"""What clients sent and what the server acknowledged, under traffic that a crash or a
killed replica interrupts: a ledger of links and alias moves with their outcomes, the
calls that record into it, and the check that nothing acknowledged is lost (against
what the server answers afterwards and the events it stored)."""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from registry.v1 import artifact_service_pb2 as apb
from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import organization_service_pb2 as opb
from registry.v1 import resources_pb2 as r
from registry_client import Stubs
from registry_client.errors import from_rpc_error

from .processes import ROOT_ORG

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
                manifest=[
                    r.ManifestEntry(
                        path="model.pt",
                        digest=f"sha256:{i:064x}",
                        size=i + 1,
                        ref="s3://bucket/model.pt",
                    )
                ],
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
