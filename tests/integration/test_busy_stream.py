"""The shared busy-stream workload (tests/support/workloads.py) reports its own failures:
an exception in a worker thread fails the caller instead of becoming a pytest warning."""

from __future__ import annotations

import time

import pytest
import redis

from tests.support.redis_server import RedisServer
from tests.support.workloads import BusyStream

pytestmark = pytest.mark.integration


def test_a_failure_in_a_worker_thread_is_raised_in_the_caller_and_stops_the_others(
        redis_server: RedisServer) -> None:
    # No such group: the consumer's first read fails (NOGROUP) while the publisher runs.
    busy = BusyStream(redis_server.client, "busy", "missing", messages=1_000_000, consumers={"c": 0.0})
    with pytest.raises(redis.ResponseError, match="NOGROUP"):
        with busy:
            while busy.running():
                time.sleep(0.01)
    assert len(busy.published) < 1_000_000  # the publisher stopped too
    assert not busy.running()
