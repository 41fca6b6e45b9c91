"""Prometheus metrics of one orchestrator process, served on their own port.

Each `SagaMetrics` owns its `CollectorRegistry` (not prometheus_client's global
one), so several executors in one test process do not collide, and a scrape
shows exactly one process. Labels are bounded: saga type, step name, kind,
outcome, gRPC method and code; never a saga id.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Participants answer in milliseconds; a saga spans a few commands and maybe retries.
STEP_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SAGA_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
COMMIT_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
RPC_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


M = TypeVar("M", Counter, Gauge, Histogram)


class LabelledChildren(dict[Any, M], Generic[M]):
    """A labelled metric's children, bound once per label values and kept.

    prometheus_client's `labels()` checks its arguments, rebuilds the tuple of
    values and takes a lock on every call; a hit here is one dict lookup. The key
    is the label values: a tuple, or the value itself for a metric with one label.
    Labels are bounded (module docstring), so the children are too; a child is
    never removed from its metric, so a kept one stays the exported one.
    """

    __slots__ = ("_metric",)

    def __init__(self, metric: M) -> None:
        super().__init__()
        self._metric: M = metric

    def __missing__(self, key: Any) -> M:
        values = key if isinstance(key, tuple) else (key,)
        child: M = self._metric.labels(*values)
        self[key] = child
        return child


class SagaMetrics:
    """Every metric the orchestrator exports, registered in a registry of its own."""

    def __init__(self, *, process_collectors: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        if process_collectors:
            # The stock collectors read only this process (/proc/self, gc, platform).
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)
        registry = self.registry
        by_type = ("saga_type",)
        self.sagas_started = Counter(
            "saga_started",
            "Sagas created (a repeated StartSaga is not counted).",
            by_type,
            registry=registry,
        )
        self.sagas_completed = Counter(
            "saga_completed", "Sagas that reached COMPLETED.", by_type, registry=registry
        )
        self.sagas_failed = Counter(
            "saga_failed",
            "Sagas that reached FAILED, compensated or not (compensated + needs_intervention).",
            by_type,
            registry=registry,
        )
        self.sagas_compensated = Counter(
            "saga_compensated",
            "Sagas that failed after every completed step was compensated.",
            by_type,
            registry=registry,
        )
        self.sagas_needing_intervention = Counter(
            "saga_needs_intervention",
            "Sagas that stopped for an operator (a stuck compensation or forward step).",
            by_type,
            registry=registry,
        )
        self.saga_duration = Histogram(
            "saga_duration_seconds",
            "From creation to the terminal state, by outcome "
            "(completed, compensated, needs_intervention).",
            ("saga_type", "outcome"),
            buckets=SAGA_BUCKETS,
            registry=registry,
        )
        self.step_duration = Histogram(
            "saga_step_duration_seconds",
            "One command attempt to a participant, by kind (action, compensation) and outcome "
            "(ok, transient, rejected, outcome_unknown, cancelled, error).",
            ("saga_type", "step", "kind", "outcome"),
            buckets=STEP_BUCKETS,
            registry=registry,
        )
        self.step_retries = Counter(
            "saga_step_retries",
            "Retries scheduled after a failed attempt, by kind (action, compensation).",
            ("saga_type", "step", "kind"),
            registry=registry,
        )
        self.sagas_in_flight = Gauge(
            "saga_in_flight",
            "Sagas this replica is driving now.",
            registry=registry,
        )
        # Counted in a plain int, read at each scrape: a drive's start and end pay an
        # addition, not the gauge's checks and lock.
        self.drives_in_flight = 0
        self.sagas_in_flight.set_function(lambda: self.drives_in_flight)
        self.in_flight_limit = Gauge(
            "saga_in_flight_limit",
            "Sagas this replica drives at most (--max-sagas-in-flight); at the limit, "
            "StartSaga answers RESOURCE_EXHAUSTED and orphans wait.",
            registry=registry,
        )
        self.sagas_needing_intervention_now = Gauge(
            "saga_needing_intervention",
            "Sagas waiting for an operator (retry, resolve), by type; counted in the store, "
            "so every replica reports the same number.",
            ("saga_type",),
            registry=registry,
        )
        self.tracked_events = Counter(
            "saga_tracked_events",
            "Incoming events of tracked (choreographed) saga types by saga type and what "
            "became of them: RECORDED, DUPLICATE, HELD (early: kept until its turn or "
            "until --tracked-wait-for-start), ANOMALY (logged as EVENT_ANOMALY), IGNORED.",
            ("saga_type", "verdict"),
            registry=registry,
        )
        self.tracked_types = Gauge(
            "saga_tracked_type",
            "1 for each tracked (choreographed) saga type this replica serves: multiply "
            "saga_needing_intervention by it to count flagged choreographies.",
            ("saga_type",),
            registry=registry,
        )
        self.watch_streams = Gauge(
            "saga_watch_streams",
            "WatchSaga streams and waiting ExecuteSaga calls on this replica now "
            "(refused past --max-watch-streams).",
            registry=registry,
        )
        self.watch_streams_limit = Gauge(
            "saga_watch_streams_limit",
            "WatchSaga streams and waiting ExecuteSaga calls this replica accepts at once "
            "(--max-watch-streams).",
            registry=registry,
        )
        self.lease_claims = Counter(
            "saga_lease_claims",
            "Unfinished sagas this replica claimed because their lease was missing or "
            "expired: the replica driving them died, froze or restarted.",
            registry=registry,
        )
        self.leases_lost = Counter(
            "saga_leases_lost",
            "Drives this replica stopped because another replica had taken the lease.",
            registry=registry,
        )
        self.grpc_requests = Counter(
            "saga_grpc_server_requests",
            "Requests the orchestrator's gRPC server answered, by method and status code.",
            ("method", "code"),
            registry=registry,
        )
        self.grpc_duration = Histogram(
            "saga_grpc_server_request_duration_seconds",
            "Time to answer a request (a stream: until it ends), by method and status code.",
            ("method", "code"),
            buckets=RPC_BUCKETS,
            registry=registry,
        )
        self.lock_waits = Counter(
            "saga_lock_waits",
            "Sagas that had to queue for a lock key (counted once, when they first queue).",
            by_type,
            registry=registry,
        )
        self.lock_wait_duration = Histogram(
            "saga_lock_wait_seconds",
            "From queueing for lock keys to holding them (sagas that queued).",
            by_type,
            buckets=SAGA_BUCKETS,
            registry=registry,
        )
        self.lock_waiters = Gauge(
            "saga_lock_waiters",
            "Sagas this replica drives that wait for lock keys right now.",
            registry=registry,
        )
        self.store_commit_duration = Histogram(
            "saga_store_commit_duration_seconds",
            "How long a saga waits for its commit to be durable: the group-commit queue "
            "plus the transaction it shares with other sagas' commits.",
            buckets=COMMIT_BUCKETS,
            registry=registry,
        )

        self.retention_deleted = Counter(
            "saga_retention_deleted",
            "Finished sagas deleted by retention, with their steps and transitions.",
            registry=registry,
        )

    def count_needing_intervention(self, counts: Mapping[str, int], types: Iterable[str]) -> None:
        """Set the intervention gauge: every type in `types` or `counts`, 0 when absent."""
        for saga_type in {*types, *counts}:
            self.sagas_needing_intervention_now.labels(saga_type).set(counts.get(saga_type, 0))

    def set_limits(self, *, max_sagas_in_flight: int, max_watch_streams: int) -> None:
        """Export the configured caps, so an alert can compare the gauges with them."""
        self.in_flight_limit.set(max_sagas_in_flight)
        self.watch_streams_limit.set(max_watch_streams)

    def watch_store_pool(self, stats: Callable[[], Mapping[str, int]]) -> None:
        """Export the store's connection pool, read from `stats` at each scrape."""
        self.registry.register(StorePoolCollector(stats))


# psycopg_pool's get_stats() keys: measures of the moment become gauges, its running
# totals counters (milliseconds as seconds); a key it has not counted yet is zero.
POOL_GAUGES: Final = {
    "pool_min": "Connections the store's pool keeps at least.",
    "pool_max": "Connections the store's pool opens at most.",
    "pool_size": "Connections of the store's pool now: in use, idle or being opened.",
    "pool_available": "Idle connections ready in the store's pool.",
    "requests_waiting": "Units of work waiting for a connection of the store's pool.",
}
POOL_COUNTERS: Final = {
    "requests_num": ("requests", "Connections asked of the store's pool."),
    "requests_queued": ("requests_queued", "Requests that had to wait for a connection."),
    "requests_errors": ("requests_errors", "Requests that got no connection (timeout, error)."),
    "requests_wait_ms": ("request_wait_seconds", "Time requests spent waiting for a connection."),
    "usage_ms": ("usage_seconds", "Time connections spent lent out of the pool."),
    "connections_num": ("connections", "Connection attempts the pool made to the server."),
    "connections_ms": ("connect_seconds", "Time the pool spent connecting."),
    "connections_errors": ("connection_errors", "Connection attempts that failed."),
    "connections_lost": ("connections_lost", "Connections found broken and replaced."),
    "returns_bad": ("returns_bad", "Connections returned to the pool in a bad state."),
}


STORE_UNREACHABLE: Final = "server_lost"
"""The key of `Store.pool_stats()` that is 1 while the database is found gone."""


class StorePoolCollector(Collector):
    """The store's pool as `saga_store_pool_*` series, and `saga_store_unreachable`
    (the store's own verdict on its database), read when scraped.

    Nothing is exported while `stats` is empty (a store without a pool, or closed).
    """

    def __init__(self, stats: Callable[[], Mapping[str, int]]) -> None:
        self._stats = stats

    def describe(self) -> Iterator[Metric]:
        return self._families({})

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        return self._families(stats) if stats else iter(())

    def _families(self, stats: Mapping[str, int]) -> Iterator[Metric]:
        for key, help_text in POOL_GAUGES.items():
            gauge = GaugeMetricFamily(f"saga_store_pool_{key}", help_text)
            if stats:
                gauge.add_metric([], stats.get(key, 0))
            yield gauge
        for key, (name, help_text) in POOL_COUNTERS.items():
            counter = CounterMetricFamily(f"saga_store_pool_{name}", help_text)
            if stats:
                value = stats.get(key, 0)
                counter.add_metric([], value / 1000 if key.endswith("_ms") else value)
            yield counter
        unreachable = GaugeMetricFamily(
            "saga_store_unreachable",
            "1 while the store has found its database gone and its probes have not reached "
            "it again; 0 while it answers.",
        )
        if stats:
            unreachable.add_metric([], stats.get(STORE_UNREACHABLE, 0))
        yield unreachable


@dataclass(frozen=True)
class MetricsServer:
    """The running HTTP endpoint; `address` is HOST:PORT as bound (port 0 resolved)."""

    address: str
    close: Callable[[], None]


def parse_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 host in brackets) into its parts; raises ValueError when malformed."""
    host, separator, port = listen.rpartition(":")
    if not separator or not port.isdigit():
        raise ValueError(f"metrics address must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def start_metrics_server(listen: str, metrics: SagaMetrics) -> MetricsServer:
    """Serve `metrics` at http://HOST:PORT/metrics from a daemon thread.

    The scrape runs off the event loop: collecting takes a lock per metric, never
    the loop, so a slow scraper cannot stall sagas.
    """
    host, port = parse_listen(listen)
    # The `*_created` series (one per labelled child) double a scrape for little use.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    server, thread = _start_http_server(port, addr=host, registry=metrics.registry)
    bound_port = server.server_port
    shown = f"[{host}]" if ":" in host else host

    def close() -> None:
        server.shutdown()
        server.server_close()
        if thread is not threading.current_thread():
            thread.join(timeout=5)

    return MetricsServer(f"{shown}:{bound_port}", close)
