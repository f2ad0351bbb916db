"""Prometheus metrics at `/metrics` (`registry-server serve --metrics-address`).

The interceptor (`api/interceptors.py`) counts each call in the `MethodCalls` of its
method, made once when the method's handler is wrapped: a call adds to plain integers
on the event loop's thread (no lock, no label lookup). Everything is turned into
Prometheus families only when scraped, by `RegistryCollector`, which also reads the
current values of what the server already counts or holds:

- calls: `registry_rpc_requests_total`, `registry_rpc_errors_total` (by status code)
  and the `registry_rpc_duration_seconds` histogram, per method (health checks and
  reflection are not counted);
- kept replies (`storage/reply_cache.py`): hits, misses and lookups passed to the database;
- webhook attempts this process finished, by outcome (`service/webhooks.py`);
- the database pools: connections checked out, and the pool size;
- migrations (read from the database at scrape time, whichever process runs them): how
  many are in each state, and items done / total of each active one.

Served by prometheus-client's HTTP server on a thread of its own, so a scrape never
waits for the event loop, nor the loop for a scrape.
"""

from __future__ import annotations

import logging
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import func, select

from ..domain.roles import ACTIVE_MIGRATION_STATES, MigrationState
from ..service import webhooks
from ..storage import models as m

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .app import App

log = logging.getLogger(__name__)

# Upper bounds of the latency buckets, in seconds (+Inf follows): the hot reads answer in
# well under a millisecond, a migration start in tens of milliseconds.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class MethodCalls:
    """One method's calls: count, latency buckets and errors by status code. Written
    only by the event loop's thread; a scrape reads whatever it finds."""

    __slots__ = ("buckets", "count", "errors", "method", "total_seconds")

    def __init__(self, method: str) -> None:
        self.method = method.lstrip("/")
        self.count = 0
        self.total_seconds = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.errors: dict[str, int] = {}

    def observe(self, code: str, seconds: float) -> None:
        self.count += 1
        self.total_seconds += seconds
        self.buckets[bisect_left(BUCKETS, seconds)] += 1
        if code != "OK":
            self.errors[code] = self.errors.get(code, 0) + 1


CallObserver = Callable[[str, float], None]


class CallMetrics:
    """The `MethodCalls` of every method the interceptor wrapped."""

    def __init__(self) -> None:
        self._methods: dict[str, MethodCalls] = {}

    def observer(self, method: str) -> CallObserver:
        calls = self._methods.get(method)
        if calls is None:
            calls = self._methods[method] = MethodCalls(method)
        return calls.observe

    def families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "registry_rpc_requests", "Calls answered, by method.", labels=["method"]
        )
        errors = CounterMetricFamily(
            "registry_rpc_errors",
            "Calls answered with an error, by method and status code.",
            labels=["method", "code"],
        )
        latency = HistogramMetricFamily(
            "registry_rpc_duration_seconds",
            "Time from the call's arrival to its answer, by method.",
            labels=["method"],
        )
        for calls in list(self._methods.values()):
            buckets, count = list(calls.buckets), calls.count
            requests.add_metric([calls.method], count)
            for code, n in list(calls.errors.items()):
                errors.add_metric([calls.method, code], n)
            cumulative, running = [], 0
            for bound, n in zip((*map(str, BUCKETS), "+Inf"), buckets, strict=True):
                running += n
                cumulative.append((bound, running))
            latency.add_metric([calls.method], cumulative, calls.total_seconds)
        yield from (requests, errors, latency)


def _kept_replies(app: App) -> Iterator[Metric]:
    cache = app.reply_cache
    lookups = CounterMetricFamily(
        "registry_kept_replies_lookups",
        "Lookups of kept replies (storage/reply_cache.py): hit, miss, or passed to the "
        "database (no commit version to trust yet).",
        labels=["result"],
    )
    for result, n in (("hit", cache.hits), ("miss", cache.misses), ("passed", cache.passed)):
        lookups.add_metric([result], n)
    yield lookups
    yield GaugeMetricFamily("registry_kept_replies_entries", "Replies kept now.", len(cache))


def _webhook_deliveries() -> Iterator[Metric]:
    family = CounterMetricFamily(
        "registry_webhook_deliveries",
        "Webhook attempts this process finished, by outcome: succeeded, retrying (failed, "
        "another attempt scheduled), failed (no more attempts) or refused (the target "
        "or the secret, never sent).",
        labels=["outcome"],
    )
    for outcome, n in webhooks.delivery_outcomes().items():
        family.add_metric([outcome], n)
    yield family


def _pools(app: App) -> Iterator[Metric]:
    db = app.db
    engines = (
        {"read": db.read_engine, "write": db.write_engine}
        if db.is_sqlite
        else {"sessions": db.read_engine}
    )
    used = GaugeMetricFamily(
        "registry_db_pool_checked_out",
        "Database connections checked out of the SQLAlchemy pool.",
        labels=["pool"],
    )
    size = GaugeMetricFamily(
        "registry_db_pool_size", "Connections the SQLAlchemy pool keeps.", labels=["pool"]
    )
    for name, engine in engines.items():
        pool: Any = engine.pool
        if hasattr(pool, "checkedout"):  # not NullPool (an in-memory database)
            used.add_metric([name], pool.checkedout())
            size.add_metric([name], pool.size())
    yield from (used, size)


def _migrations(app: App) -> Iterator[Metric]:
    try:
        with app.db.read() as s:
            counts = dict(
                s.execute(select(m.Migration.state, func.count()).group_by(m.Migration.state)).all()
            )
            active = s.execute(
                select(
                    m.Migration.uid,
                    m.Migration.state,
                    m.Migration.progress_done,
                    m.Migration.progress_total,
                ).where(m.Migration.state.in_(ACTIVE_MIGRATION_STATES))
            ).all()
    except Exception as err:  # the database is down: the other families still answer
        log.warning("metrics: cannot read the migrations: %s", err)
        return
    states = GaugeMetricFamily("registry_migrations", "Migrations by state.", labels=["state"])
    for state in MigrationState:
        if state is not MigrationState.UNSPECIFIED:
            states.add_metric([state.name], counts.get(int(state), 0))
    done = GaugeMetricFamily(
        "registry_migration_items_done",
        "Items copied so far by each active migration.",
        labels=["migration", "state"],
    )
    total = GaugeMetricFamily(
        "registry_migration_items_total",
        "Items each active migration copies.",
        labels=["migration", "state"],
    )
    for uid, number, progress_done, progress_total in active:
        labels = [uid, MigrationState(number).name]
        done.add_metric(labels, progress_done)
        total.add_metric(labels, progress_total)
    yield from (states, done, total)


class RegistryCollector:
    """Reads every value when scraped (prometheus-client's custom collector)."""

    def __init__(self, app: App, calls: CallMetrics) -> None:
        self.app = app
        self.calls = calls

    def collect(self) -> Iterator[Metric]:
        yield from self.calls.families()
        yield from _kept_replies(self.app)
        yield from _webhook_deliveries()
        yield from _pools(self.app)
        yield from _migrations(self.app)


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT (`[::1]:9100` for IPv6; `:9100` for every interface)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--metrics-address must be HOST:PORT, not {address[:100]!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    """`/metrics` on `address`, on a thread of its own; `port` is the port bound."""

    def __init__(self, app: App, calls: CallMetrics, address: str) -> None:
        host, port = parse_address(address)
        self.registry = CollectorRegistry()
        self.registry.register(RegistryCollector(app, calls))
        self._server: WSGIServer
        self._thread: threading.Thread
        self._server, self._thread = start_http_server(port, host, self.registry)
        self.port: int = self._server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
