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

The ledger and the checks (tests/support/ledger.py and invariants.py) are shared with
tests/process/test_replicas.py and bench/soak.py.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable

import grpc
from sqlalchemy import delete, func, select, update

from registry_client import Stubs, open_channel
from registry_server.storage import models as m
from registry_server.storage.db import Database

from ..support.invariants import alias_events, invariant_violations
from ..support.ledger import (
    ALIASES,
    OK,
    UNKNOWN,
    Fixture,
    Ledger,
    acknowledged_violations,
    api_snapshot,
    link,
    make_sources,
    move_alias,
)
from ..support.processes import ROOT_ORG, Proc, bootstrap, free_port
from ..support.servers import fresh_database

THREADS = 6
TRAFFIC_SECONDS = 2.5  # of traffic before the kill
CALLS_PER_THREAD = 2000  # a bound; the kill comes first
SOURCES = 48
COLLECTIONS = 3


# --- set-up and traffic -------------------------------------------------------------------------


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
