"""A replica's settings (plain values: `registry-server serve` fills them from its
flags; tests and embedders construct them)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..service.retention import Retention


class RunnerMode(StrEnum):
    """Where a replica runs migrations: a child process, a thread of its own, or not."""

    process = "process"
    thread = "thread"
    off = "off"


class EventLoop(StrEnum):
    """The asyncio event loop a served process runs on (api/server.py `run_on_loop`)."""

    uvloop = "uvloop"  # libuv's loop: less CPU per call (README, "Performance")
    asyncio = "asyncio"  # the standard library's


@dataclass
class Settings:
    auth_cache_ttl: float = 5.0
    # Threads for ORM sessions and PostgreSQL round trips. Few beat many: on 2 cores
    # 4 workers served more calls than 16 (less GIL and lock handoff).
    workers: int = 4
    migration_batch_size: int = 500
    migration_lease_seconds: float = 15.0
    # Where this replica runs migrations (api/migrations.py `run_migrations`);
    # `registry-server serve` uses PROCESS unless told otherwise.
    migration_runner: RunnerMode = RunnerMode.thread
    # With the process runner: the share of the time a migration works while this
    # replica answers calls; None: the database's default (api/pacing.py).
    migration_busy_share: float | None = None
    # Webhook targets (service/webhook_targets.py): plain http:// allowed, and the
    # networks opened despite being loopback, private, link-local, ... (CIDRs). Every
    # replica delivers any automation's events: give them all the same values.
    webhook_allow_http: bool = False
    webhook_allow_cidrs: tuple[str, ...] = ()
    # A file of AES-256 keys that seal automation secrets at rest (service/secret_box.py);
    # "" stores them in plaintext.
    secret_key_file: str = ""
    # Whether the replies of the hot reads are kept between commits (storage/hot_cache.py).
    kept_replies: bool = True
    # How long events, request_id answers and webhook deliveries are kept
    # (service/retention.py).
    retention: Retention = field(default_factory=Retention)
    # Where file contents are kept (storage/blobs): file://DIR or s3://BUCKET/PREFIX;
    # "": registry-blobs beside the SQLite file (in the working directory on PostgreSQL).
    blob_store: str = ""
    # The largest file a client may upload, and the most files one version may hold.
    max_file_size: int = 1 << 40
    max_files_per_version: int = 10_000
    # Seconds a presigned URL stays valid (s3:// stores).
    download_url_ttl: float = 300.0
    # Owner of the migration leases this replica takes (and its runner process's prefix).
    replica_id: str = field(default_factory=lambda: f"replica-{uuid.uuid4().hex[:12]}")
    extra: dict[str, Any] = field(default_factory=dict)
