"""Prometheus metrics of the operator itself. Values are recorded by the reconcile path;
a scrape never calls Redis or the Kubernetes API."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "redistreams_reconciles_total", "Resources reconciled, by kind and outcome (ready or the failure reason).",
    ["kind", "outcome"], registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "redistreams_engine_batch_seconds", "Duration of one engine batch (observe, plan, apply).",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY,
)
REDIS_ROUND_TRIPS = Counter(
    "redistreams_redis_round_trips_total", "Pipelined round trips sent to Redis.", registry=REGISTRY,
)
REDIS_WRITES = Counter(
    "redistreams_redis_writes_total", "Write commands sent to Redis.", registry=REGISTRY,
)
STATUS_WRITES = Counter(
    "redistreams_status_writes_total", "Status patches written to the Kubernetes API, by kind.",
    ["kind"], registry=REGISTRY,
)


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Serve /metrics from a background thread."""
    start_http_server(port, address, registry=REGISTRY)
