"""Redis Cluster without servers: redis+cluster:// URLs, the per-slot registry key, slots."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot as redis_key_slot

from redistreams.cluster import cluster_seeds
from redistreams.connection import ConnectionConfigError, RedisTarget, SeedClient, redact
from redistreams.engine.registry import SLOTS, Registry, SlotRegistry, key_slot, slot_tags

PW = "S3cret-Pw9"


def test_every_slot_has_a_short_tag_of_its_own() -> None:
    tags = slot_tags()
    assert len(tags) == SLOTS and max(map(len, tags)) <= 3
    assert all(redis_key_slot(tag.encode()) == slot for slot, tag in enumerate(tags))


@given(st.text(max_size=40))
def test_the_registry_key_of_a_stream_is_in_the_streams_slot(stream: str) -> None:
    registry = SlotRegistry("redistreams:owners").key_for(stream)
    assert registry.startswith("redistreams:owners{") and registry.endswith("}")
    expected = redis_key_slot(stream.encode("utf-8", "surrogateescape"))
    assert key_slot(stream) == expected == redis_key_slot(registry.encode())


@pytest.mark.parametrize("stream", ["{orders}.in", "{orders}.out", "a{}b{c}", "x{y", "{}", "ünï{流}", "🚀"])
def test_hash_tags_count_as_redis_counts_them(stream: str) -> None:
    assert key_slot(stream) == redis_key_slot(stream.encode())
    assert key_slot(b"\xff{tag}") == redis_key_slot(b"tag")


def test_a_standalone_registry_is_the_configured_key() -> None:
    assert Registry("redistreams:owners").key_for("anything") == "redistreams:owners"


def test_a_registry_key_with_its_own_hash_tag_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="hash tag"):
        SlotRegistry("redistreams:{owners}")
    SlotRegistry("redistreams:{}owners")  # an empty tag is no tag


def test_cluster_urls_are_checked_like_redis_urls_and_masked() -> None:
    url = f"redis+cluster://app:{PW}@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/0?socket_timeout=2"
    plain, seeds = cluster_seeds(url)
    assert seeds == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    assert plain.startswith("redis://app:") and "10.0.0.1:7000" in plain
    client = RedisTarget(url).client()
    assert isinstance(client, SeedClient) and client.cluster_mode is True
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 2
    assert redact(url) == "redis+cluster://app:***@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002/0?socket_timeout=2"
    assert redact("redis+cluster://10.0.0.1:7000,10.0.0.2:7001") == "redis+cluster://10.0.0.1:7000,10.0.0.2:7001"
    assert redact(f"rediss+cluster://h1:1,h2:2?password={PW}") == "rediss+cluster://h1:1,h2:2?password=***"


@pytest.mark.parametrize(("url", "problem"), [
    (f"redis+cluster://:{PW}@h1:7000/3", "only database 0"),
    (f"redis+cluster://:{PW}@h1:7000?db=2", "only database 0"),
    (f"redis+cluster://:{PW}@h1:7000,h2", "not host:port"),
    (f"redis+cluster://:{PW}@h1:7000,h2:x", "not a number"),
    (f"redis+cluster://:{PW}@h1:7000,:7001", "not host:port"),
    (f"redis+cluster://:{PW}@h1:7000?colour=red", "not a Redis connection option"),
])
def test_unusable_cluster_urls_say_why_without_the_password(url: str, problem: str) -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        RedisTarget(url).client()
    assert problem in str(caught.value) and PW not in str(caught.value)


def test_a_tcp_url_may_turn_out_to_be_a_cluster_a_socket_never() -> None:
    assert RedisTarget("redis://127.0.0.1:1/0").client().cluster_mode is None  # type: ignore[attr-defined]
    assert RedisTarget("unix:///tmp/nothing.sock").client().cluster_mode is False  # type: ignore[attr-defined]
