"""Commit numbers, unit by unit: the client's token, the server's reading of the
metadata, the note a call's commits go to, the listener's clock, and a cache whose
clock has no version. Through the session's server: which calls answer a number."""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import field_mask_pb2

from registry.v1 import collection_service_pb2 as cpb
from registry.v1 import registry_service_pb2 as rpb
from registry.v1 import resources_pb2 as r
from registry_client import CommitToken, Stubs, open_channel
from registry_client.channel import AFTER_COMMIT_METADATA, COMMIT_METADATA
from registry_server.api import interceptors
from registry_server.domain.errors import InvalidArgument, Unauthenticated
from registry_server.storage import commits
from registry_server.storage.reply_cache import ReplyCache

from ..support.content import link, log_version, member_lab_and_registry
from ..support.servers import ServerThread, database_kind
from ..support.world import World

# --- the client's token --------------------------------------------------------------------


def test_the_token_keeps_the_highest_number() -> None:
    token = CommitToken()
    assert token.value == 0
    for value in (5, 3, 9, 9, 1):
        token.observe(value)
    assert token.value == 9
    token.observe_metadata([("other", "12"), (COMMIT_METADATA, "11")])
    assert token.value == 11
    token.observe_metadata([(COMMIT_METADATA, b"15")])
    assert token.value == 15
    token.observe_metadata([(COMMIT_METADATA, "junk"), (COMMIT_METADATA, "-3")])
    token.observe_metadata(None)
    assert token.value == 15


def test_the_token_is_the_highest_number_whatever_the_thread() -> None:
    token = CommitToken()
    seen: list[int] = []

    def observe(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(2000):
            value = rng.randrange(1, 1_000_000)
            seen.append(value)
            token.observe(value)

    threads = [threading.Thread(target=observe, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert token.value == max(seen)


def test_the_metadata_names_are_the_servers() -> None:
    assert COMMIT_METADATA == interceptors.COMMIT_METADATA
    assert AFTER_COMMIT_METADATA == interceptors.AFTER_COMMIT_METADATA


# --- the server's side ---------------------------------------------------------------------


def test_call_metadata_reads_the_key_and_the_commit_asked_for() -> None:
    auth = ("authorization", "Bearer rk_key")
    assert interceptors.call_metadata([auth]) == ("rk_key", 0)
    assert interceptors.call_metadata([(AFTER_COMMIT_METADATA, "42"), auth]) == ("rk_key", 42)
    with pytest.raises(InvalidArgument):
        interceptors.call_metadata([auth, (AFTER_COMMIT_METADATA, "4x")])
    with pytest.raises(InvalidArgument):
        interceptors.call_metadata([auth, (AFTER_COMMIT_METADATA, "9" * 20)])
    with pytest.raises(Unauthenticated):
        interceptors.call_metadata([(AFTER_COMMIT_METADATA, "42")])


@dataclass
class Diagnostic:
    message_primary: str | None


def test_a_call_notes_the_highest_commit_reported_on_its_connections() -> None:
    def call() -> commits.CommitNote:
        note = commits.begin_call()
        for message in ("registry commit 7", "something else", "registry commit 5", None):
            commits.notice_handler(Diagnostic(message))  # type: ignore[arg-type]
        return note

    note = asyncio.run(asyncio.to_thread(call))  # in a context of its own
    assert (note.seq, note.count) == (7, 2)
    assert commits.current_note() is None  # the call's note stays the call's
    commits.notice_handler(Diagnostic("registry commit 9"))  # type: ignore[arg-type]


def test_session_options_keep_the_callers() -> None:
    assert commits.session_options(None) == f"-c {commits.REPORT_SETTING}=on"
    assert commits.session_options("-c search_path=x") == (
        f"-c search_path=x -c {commits.REPORT_SETTING}=on"
    )


def test_the_listener_clock() -> None:
    listener = commits.CommitListener("postgresql://nowhere")
    assert listener.version() is None  # not listening: nothing kept, nothing answered
    listener.committed(10)
    listener.connected = True
    start = listener.version()
    assert start is not None and listener.seen == 10
    assert listener.version(after_commit=10) == start
    assert listener.version(after_commit=11) is None  # not heard of yet
    listener._heard("11")
    moved = listener.version(after_commit=11)
    assert moved is not None and moved != start and listener.seen == 11
    listener.committed(11)  # this replica's own commit, heard of again: nothing moves
    listener._heard("9")
    assert listener.version() == moved
    listener._heard("not a number")  # a commit all the same
    assert listener.version() != moved and listener.seen == 11
    before = listener.version()
    listener._lost()
    assert listener.version() is None
    listener.connected = True  # listening again: what was kept before is not answered
    assert listener.version() != before


class Clock:
    def __init__(self) -> None:
        self.now: int | None = 1

    def version(self, after_commit: int = 0) -> int | None:
        return self.now


def test_a_cache_keeps_nothing_while_its_clock_has_no_version() -> None:
    clock = Clock()
    cache = ReplyCache(clock)
    _, seen = cache.lookup("k")
    cache.store("k", b"answer", seen)
    assert cache.lookup("k")[0] == b"answer"
    clock.now = None
    assert cache.lookup("k") == (None, None) and cache.passed == 1
    cache.store("k", b"new", None)
    _, seen = cache.lookup("j")
    clock.now = 2
    cache.store("j", b"computed before the clock had a version", seen)
    assert cache.lookup("k")[0] is None and cache.lookup("j")[0] is None


# --- through the server --------------------------------------------------------------------


def test_writes_answer_their_commit_number(server: ServerThread, world: World) -> None:
    """On PostgreSQL every call that commits answers the number (both the ORM's unit of
    work and the hot write path; a change that changed nothing answers the newest
    number), reads answer none, and the channel sends the highest it was given. SQLite
    answers none (every process sees its file's commits at once)."""
    owner = world.person("owner")
    lab, registry = member_lab_and_registry(world, owner)
    first = link(owner, registry, "resnet", log_version(lab).name)
    token = CommitToken()
    with open_channel(world.target, owner.key, commit_token=token) as channel:
        stubs = Stubs.on(channel)

        def number(call: grpc.Call) -> int:
            values = [v for k, v in call.trailing_metadata() or () if k == COMMIT_METADATA]
            return int(values[0]) if values else 0

        move = cpb.AddAliasRequest(collection_version=first.name, alias="production")
        _, hot = stubs.collections.AddAlias.with_call(move)  # the hot write path
        _, same = stubs.collections.AddAlias.with_call(move)  # already there
        update = cpb.UpdateCollectionVersionRequest(
            collection_version=r.CollectionVersion(name=first.name, description="orm"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
        _, orm = stubs.collections.UpdateCollectionVersion.with_call(update)
        _, read = stubs.registries.GetEffectiveRole.with_call(
            rpb.GetEffectiveRoleRequest(registry=registry)
        )
        if database_kind() == "postgres":
            assert 0 < number(hot) <= number(same) < number(orm)
            assert token.value == number(orm)
        else:
            assert number(hot) == number(same) == number(orm) == 0 == token.value
        assert number(read) == 0
