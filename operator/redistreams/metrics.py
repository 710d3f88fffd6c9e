"""Prometheus metrics of the operator itself. Values are recorded by the reconcile path;
a scrape never calls Redis or the Kubernetes API."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .printable import printable

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "redistreams_reconciles_total", "Resources reconciled, by kind and outcome (ready or the failure reason).",
    ["kind", "outcome"], registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "redistreams_engine_batch_seconds", "Duration of one engine batch (observe, plan, apply).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY,
)
RESYNC_SECONDS = Histogram(
    "redistreams_resync_seconds",
    "Duration of one periodic pass over every object (one read of each stream, repairs, status writes, "
    "metrics, retention).",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120), registry=REGISTRY,
)
REDIS_ROUND_TRIPS = Counter(
    "redistreams_redis_round_trips_total", "Pipelined round trips sent to Redis.", registry=REGISTRY,
)
REDIS_WRITES = Counter(
    "redistreams_redis_writes_total", "Write commands sent to Redis.", registry=REGISTRY,
)
LEADER = Gauge(
    "redistreams_leader", "1 while this replica holds the leader Lease and reconciles (1 without leader election).",
    registry=REGISTRY,
)
STATUS_WRITES = Counter(
    "redistreams_status_writes_total", "Status patches written to the Kubernetes API, by kind.",
    ["kind"], registry=REGISTRY,
)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics from a background thread."""
    start_http_server(port, address, registry=REGISTRY)


# -- errors and the observation pass ---------------------------------------------------

ERRORS = Counter(
    "redistreams_errors_total",
    "Failures by operation (observe, retention, status, reconcile) and reason (Redis or API error class).",
    ["operation", "reason"], registry=REGISTRY,
)
OBSERVE_SECONDS = Histogram(
    "redistreams_observation_seconds",
    "Duration of the metrics and retention part of one periodic pass (after its read) over all Topics.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=REGISTRY,
)
OBSERVE_LAST = Gauge(
    "redistreams_observation_last_success_timestamp_seconds",
    "When the last observation pass finished; stream metrics are as fresh as this.", registry=REGISTRY,
)
CONSUMERS_SKIPPED = Gauge(
    "redistreams_observation_consumer_detail_skipped_groups",
    "Groups whose per-consumer metrics were left out in the last pass (more consumers than the cap).",
    registry=REGISTRY,
)
RETENTION_TRIMMED = Counter(
    "redistreams_retention_trimmed_entries_total", "Entries removed by continuous retention (all Topics).",
    registry=REGISTRY,
)

# -- per-stream, per-group and per-consumer figures -------------------------------------
#
# Named and labelled like oliver006/redis_exporter's stream metrics (db="db0", stream,
# group, consumer; *_id gauges hold the millisecond part only), plus namespace and topic
# of the Topic resource. Unlike the exporter, a lag Redis cannot tell (NULL) has no
# sample; redis_stream_group_lag_valid says so.

STREAM = ("db", "stream", "namespace", "topic")
GROUP = ("db", "stream", "group", "namespace", "topic")
CONSUMER = ("db", "stream", "group", "consumer", "namespace", "topic")
RESOURCE = ("kind", "namespace", "name")

# name -> (type, help, labels)
FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "redis_stream_length": ("gauge", "The number of elements of the stream", STREAM),
    "redis_stream_radix_tree_keys": ("gauge", "Radix tree keys count", STREAM),
    "redis_stream_radix_tree_nodes": ("gauge", "Radix tree nodes count", STREAM),
    "redis_stream_groups": ("gauge", "Groups count of stream", STREAM),
    "redis_stream_first_entry_id": ("gauge", "The epoch timestamp (ms) of the first message in the stream", STREAM),
    "redis_stream_last_entry_id": ("gauge", "The epoch timestamp (ms) of the last message in the stream", STREAM),
    "redis_stream_last_generated_id": ("gauge", "The epoch timestamp (ms) of the latest message on the stream", STREAM),
    "redis_stream_max_deleted_entry_id": (
        "gauge", "The epoch timestamp (ms) of last message was deleted from the stream", STREAM),
    "redis_stream_entries_added": (
        "counter", "The count of all entries added to the stream during its lifetime", STREAM),
    "redis_stream_group_consumers": ("gauge", "Consumers count of stream group", GROUP),
    "redis_stream_group_messages_pending": ("gauge", "Pending number of messages in that stream group", GROUP),
    "redis_stream_group_last_delivered_id": (
        "gauge", "The epoch timestamp (ms) of the last delivered message", GROUP),
    "redis_stream_group_entries_read": (
        "gauge", "Total number of entries read from the stream group (absent when Redis reports none)", GROUP),
    "redis_stream_group_lag": (
        "gauge", "The number of messages waiting to be delivered to the stream group's consumers "
        "(absent when Redis cannot tell)", GROUP),
    "redis_stream_group_lag_valid": ("gauge", "1 when Redis reports the group's lag, 0 when it is NULL", GROUP),
    "redistreams_stream_group_oldest_pending_seconds": (
        "gauge", "Idle time of the group's oldest pending entry (only groups with pending entries)", GROUP),
    "redistreams_stream_group_pending_below_first_entry": (
        "gauge", "1 when the oldest pending entry is older than the stream's first entry (it was deleted "
        "or trimmed while pending)", GROUP),
    "redis_stream_group_consumer_messages_pending": (
        "gauge", "Pending number of messages for this specific consumer", CONSUMER),
    "redis_stream_group_consumer_idle_seconds": ("gauge", "Consumer idle time in seconds", CONSUMER),
    "redistreams_stream_group_consumer_inactive_seconds": (
        "gauge", "Seconds since the consumer last read successfully (Redis >= 7.2)", CONSUMER),
    "redistreams_resource_ready": ("gauge", "1 when the resource's Ready condition is True, else 0", RESOURCE),
    "redistreams_retention_blocked": (
        "gauge", "1 while retention of the Topic is held back by this consumer group",
        ("namespace", "topic", "group", "reason")),
}

Row = tuple[str, tuple[str, ...], float]


class SnapshotCollector:
    """Serves the figures of the latest observation pass. Each owner (a resource key)
    has its rows replaced as a whole, so series of deleted streams, groups, consumers and
    resources vanish instead of going stale; a scrape only reads memory."""

    def __init__(self) -> None:
        self._rows: dict[Any, list[Row]] = {}
        self._lock = threading.Lock()

    def replace_all(self, rows: dict[Any, list[Row]], *, scope: Callable[[Any], bool] = lambda _: True) -> None:
        """New rows for every owner in scope; owners in scope but absent here are dropped."""
        with self._lock:
            kept = {k: v for k, v in self._rows.items() if not scope(k)}
            self._rows = kept | rows

    def drop(self, owner: Any) -> None:
        with self._lock:
            self._rows.pop(owner, None)

    def clear(self) -> None:
        with self._lock:
            self._rows = {}

    def rows(self) -> list[Row]:
        with self._lock:
            return [row for rows in self._rows.values() for row in rows]

    def collect(self) -> Iterator[Metric]:
        by_name: dict[str, list[tuple[tuple[str, ...], float]]] = {}
        for name, labels, value in self.rows():
            by_name.setdefault(name, []).append((labels, value))
        for name, (kind, text, labelnames) in FAMILIES.items():
            family: Any = (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(
                name, text, labels=labelnames)
            for labels, value in by_name.get(name, ()):
                # Names from Redis may not be UTF-8: one such name must not fail the scrape.
                family.add_metric([printable(label) for label in labels], value)
            yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())  # families are known, samples are not: describe nothing up front


SNAPSHOT = SnapshotCollector()
REGISTRY.register(SNAPSHOT)
