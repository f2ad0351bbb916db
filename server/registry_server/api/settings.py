"""A replica's settings (plain values: `registry-server serve` fills them from its
flags; tests and embedders construct them)."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..service.retention import Retention
from ..storage.blobs.checksums import S3Checksums


def replica_name() -> str:
    """A lease owner unique to this process: host, process id and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RunnerMode(StrEnum):
    """Where a replica runs migrations (README, "Configuration", says why each exists)."""

    process = "process"  # a child process: the calls never wait for its Python work
    thread = "thread"  # a thread of the server: one process only
    off = "off"  # not here: `registry-server run-migrations` runs elsewhere


@dataclass
class Settings:
    """The defaults are `registry-server serve`'s."""

    auth_cache_ttl: float = 5.0
    # Threads for ORM sessions and PostgreSQL round trips. Few beat many: on 2 cores
    # 4 workers served more calls than 16 (less GIL and lock handoff).
    workers: int = 4
    migration_batch_size: int = 500
    migration_lease_seconds: float = 15.0
    # Where this replica runs migrations (workers/migration_runner.py `run_migrations`).
    migration_runner: RunnerMode = RunnerMode.process
    # With the process runner: the share of the time a migration works while this
    # replica answers calls; None: the database's default (workers/pacing.py).
    migration_busy_share: float | None = None
    # Webhook targets (service/webhook_targets.py): plain http:// allowed, and the
    # networks opened despite being loopback, private, link-local, ... (CIDRs). Every
    # replica delivers any automation's events: give them all the same values.
    webhook_allow_http: bool = False
    webhook_allow_cidrs: tuple[str, ...] = ()
    # A file of AES-256 keys that seal automation secrets at rest (service/secret_box.py);
    # "" stores them in plaintext.
    secret_key_file: str = ""
    # Whether the replies of the hot reads are kept between commits (storage/reply_cache.py).
    kept_replies: bool = True
    # How long events, request_id answers and webhook deliveries are kept
    # (service/retention.py).
    retention: Retention = field(default_factory=Retention)
    # HOST:PORT where Prometheus scrapes /metrics (api/metrics.py); "": no metrics.
    metrics_address: str = ""
    # An OpenTelemetry TracerProvider: a span per call (api/tracing.py); None: no traces.
    tracer_provider: Any = None
    # Where file contents are kept (storage/blobs): file://DIR or s3://BUCKET/PREFIX;
    # "": registry-blobs beside the SQLite file (in the working directory on PostgreSQL).
    blob_store: str = ""
    # The largest file a client may upload, and the most files one version may hold.
    max_file_size: int = 1 << 40
    max_files_per_version: int = 10_000
    # Seconds a presigned URL stays valid (s3:// stores).
    download_url_ttl: float = 300.0
    # Whether an s3:// store's own sha256 of an upload is trusted, or every upload is
    # read back by the server (storage/blobs/s3.py).
    s3_checksums: S3Checksums = S3Checksums.auto
    # Owner of the migration leases this replica takes (and its runner process's prefix).
    replica_id: str = field(default_factory=replica_name)
