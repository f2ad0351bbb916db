"""What every servicer shares: the database, the authenticator, a worker pool and the
kept replies.

Use cases are plain blocking functions over a Session (one short transaction per
RPC); `read`/`write` run them on the worker pool so the event loop keeps serving, in a
copy of the call's context (its principal, and the note its commits are reported to:
`storage.commits`).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import gc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar, cast

from google.protobuf.message import Message
from sqlalchemy.orm import Session

from ..domain.errors import RegistryError
from ..service.auth import Authenticator
from ..service.context import Principal
from ..service.idempotency import run_idempotent
from ..service.secret_box import SecretBox
from ..service.webhook_targets import TargetPolicy
from ..storage.blobs import BlobStore, default_location, open_store
from ..storage.db import Database
from ..storage.paging import Page
from ..storage.reply_cache import CommitClock, FileCommitClock, ReplyCache
from ..storage.sql import LoopBudgetExceeded, Sql
from ..workers import changes, write_child
from .settings import Settings

T = TypeVar("T")
M = TypeVar("M", bound=Message)
R = TypeVar("R", bound=Message)


def freeze_heap() -> None:
    """Moves every object alive now out of the cyclic garbage collector's sight
    (`gc.collect`, then `gc.freeze`). Called once, as soon as the server is up: what
    start-up built (modules, SQLAlchemy and protobuf metadata,
    ~100 MB) lives as long as the process, and a full collection that scans it all
    stops every thread for 50-60 ms (measured during migrations, whose steps allocate
    enough to trigger them), which is what a p99 sees. Later full collections scan
    only what was made since. Reference counting still frees what these objects drop;
    the collection first leaves no cyclic garbage among them."""
    gc.collect()
    gc.freeze()


class App:
    def __init__(self, db: Database, settings: Settings | None = None) -> None:
        self.db = db
        self.settings = settings or Settings()
        self.auth = Authenticator(db, ttl=self.settings.auth_cache_ttl)
        self.webhook_policy = TargetPolicy.of(
            self.settings.webhook_allow_http, self.settings.webhook_allow_cidrs
        )
        self.secret_box = (
            SecretBox.from_file(self.settings.secret_key_file)
            if self.settings.secret_key_file
            else None
        )
        # the commit clock: SQLite's file, or PostgreSQL's listener
        clock: CommitClock = db.commits or FileCommitClock(db.loop_connection)
        self.reply_cache = ReplyCache(clock)
        self.executor = ThreadPoolExecutor(
            max_workers=self.settings.workers, thread_name_prefix="registry-worker"
        )
        self._blobs: BlobStore | None = None

    @property
    def blobs(self) -> BlobStore:
        """The blob store, opened on first use (a replica that serves no file opens none)."""
        if self._blobs is None:
            self._blobs = open_store(
                self.settings.blob_store or default_location(self.db), self.settings.s3_checksums
            )
        return self._blobs

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        call = functools.partial(fn, *args, **kwargs)
        return await loop.run_in_executor(self.executor, context.run, call)

    async def read(self, fn: Callable[[Session], T]) -> T:
        def work() -> T:
            with self.db.read() as s:
                return fn(s)

        return await self.run(work)

    async def query(self, fn: Callable[[Sql], T]) -> T:
        """A read use case over precompiled statements (`storage.sql`), on the event loop:
        on SQLite an indexed lookup in the local file is cheaper than the hop to a worker
        thread; on PostgreSQL the loop serves other calls during the round trips
        (`storage.async_pool`). A SQLite statement that would hold the loop too long
        (`sql.LoopBudgetExceeded`) runs again on a worker thread."""
        dialect = self.db.read_engine.dialect
        if self.db.is_sqlite:
            try:
                with self.db.loop_connection() as conn:
                    return fn(Sql(conn, dialect, loop_budget=True))
            except LoopBudgetExceeded:
                return await self.read(lambda s: fn(Sql.of(s)))
        assert self.db.async_reads is not None
        return await self.db.async_reads.run(lambda conn, d: fn(Sql(conn, d)), dialect)

    def committed(self, seq: int) -> None:
        """A call of this replica committed `seq` (PostgreSQL): what was kept before it is
        not answered again, as when another replica's commit is heard of."""
        if self.db.commits is not None:
            self.db.commits.committed(seq)

    async def write(self, fn: Callable[[Session], T]) -> T:
        def work() -> T:
            with self.db.write() as s:
                return fn(s)

        return await self.run(work)

    async def change(self, name: str, *args: Any) -> changes.Written:
        """A change of `workers.changes` (LinkArtifactVersion, AddAlias) in the write
        child, where it costs the event loop least; on a worker thread when the child
        did not take it (no child yet, a child that died with it unanswered, a lost
        race on a unique key)."""
        child = write_child.write_child(self.db)
        future = child.submit(name, args) if child is not None else None
        if future is not None:
            outcome = await future
            if isinstance(outcome, RegistryError):
                raise outcome
            if outcome is not None:
                return cast(changes.Written, outcome)
        return await self.write(lambda s: changes.run(Sql.of(s), name, args))

    async def listed(
        self,
        fetch: Callable[[Session], Any],
        reply: Callable[..., R],
        field: str,
        present: Callable[[Any], Any],
    ) -> R:
        """A list RPC: `fetch` reads one page, a `storage.paging.Page` or (items, next
        page token); the reply holds `present(item)` of each in `field`."""

        def work(s: Session) -> R:
            found = fetch(s)
            items, token = (found.rows, found.next_page_token) if isinstance(found, Page) else found
            return reply(**{field: [present(i) for i in items]}, next_page_token=token)

        return await self.read(work)

    async def create(
        self,
        p: Principal,
        method: str,
        request_id: str,
        cls: type[M],
        fn: Callable[[Session], M],
    ) -> M:
        """A write whose proto response is remembered under request_id (AIP-155)."""
        return await self.run(run_idempotent, self.db, p, method, request_id, cls, fn)

    async def aclose(self) -> None:
        """Closes what belongs to the event loop (PostgreSQL hot-path connections)."""
        if self.db.async_reads is not None:
            await self.db.async_reads.aclose()

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


class Servicer:
    """What a servicer holds: the App its methods hand their use cases to."""

    def __init__(self, app: App) -> None:
        self.app = app
