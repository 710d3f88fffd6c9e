"""The resource model: durations, defaults, and every malformed manifest in the corpus."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from redistreams.manifests import load
from redistreams.model import ConsumerGroup, Topic
from redistreams.units import format_duration, parse_duration

CORPUS = Path(__file__).parent / "corpus"
BAD = sorted((CORPUS / "bad").glob("*.yaml"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("36h", 129600), ("7d", 604800), ("1h30m", 5400), ("1d2h3m4s", 93784), ("01m", 60)],
)
def test_durations_parse(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "7days", "0s", "0d0h", "1.5h", "-5m", "5", "m", "1h 30m", "30m1h", "1w", "1s1s", "5ms"])
def test_durations_reject(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_duration_round_trip() -> None:
    for seconds in (1, 59, 60, 3661, 93784, 604800):
        assert parse_duration(format_duration(seconds)) == seconds


def test_defaults() -> None:
    topic = Topic.model_validate(
        {"apiVersion": "redistreams.dev/v1alpha1", "kind": "Topic", "metadata": {"name": "orders"}}
    )
    assert topic.stream == "orders"
    assert topic.namespace == "default"
    assert topic.spec.deletionPolicy == "Retain"
    assert topic.spec.retention is None
    group = ConsumerGroup.model_validate(
        {
            "apiVersion": "redistreams.dev/v1alpha1",
            "kind": "ConsumerGroup",
            "metadata": {"name": "billing"},
            "spec": {"topicRef": {"name": "orders"}},
        }
    )
    assert group.group == "billing"
    assert group.spec.startId == "$"
    assert group.spec.deletionPolicy == "Retain"
    assert group.label == "consumergroup/billing"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_manifest_is_rejected_with_a_precise_message(path: Path) -> None:
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    result = load([str(path)])
    assert result.errors, f"{path.name} was accepted"
    assert any(expected in error for error in result.errors), result.errors
    assert all(error.startswith(str(path)) for error in result.errors), result.errors


@pytest.mark.parametrize("path", sorted((CORPUS / "unresolved").glob("*.yaml")), ids=lambda p: p.stem)
def test_a_group_without_its_topic_is_left_to_resolve(path: Path) -> None:
    """Not an input error by itself: the CLI looks for the Topic in Redis, then reports it."""
    expected = path.read_text().splitlines()[0].removeprefix("# expect: ")
    result = load([str(path)])
    assert result.errors == [] and [g.resource.name for g in result.unresolved] == ["billing"]
    assert result.groups_with_topics == [] and result.streams() == {t.stream: [] for t in result.topics}
    message = result.unresolved_error(result.unresolved[0], " nor in Redis")
    assert message.startswith(str(path)) and expected in message, message
    assert message.endswith("manifests nor in Redis: apply the Topic first, or include its file with -f")
    result.resolve_topic(result.unresolved[0], "orders/1")
    assert result.unresolved == [] and [t.stream for _, t in result.groups_with_topics] == ["orders/1"]


def test_other_groups_are_skipped_unless_a_near_miss() -> None:
    for api_version in ("apps/v1", "sns.aws.upbound.io/v1beta1", "kafka.strimzi.io/v1beta2", "v1"):
        kind = "ConfigMap" if api_version == "v1" else "Topic"
        text = f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: a}}\n"
        result = load(["-"], stdin=io.BytesIO(text.encode()))
        assert result.errors == [] and len(result.notices) == 1, (api_version, result.errors)
    for api_version in ("redistream.dev/v1alpha1", "Redistreams.dev/v1alpha1", "redistreams.io/v1alpha1",
                        "redistreams.example.com/v1"):
        text = f"apiVersion: {api_version}\nkind: Topic\nmetadata: {{name: a}}\n"
        result = load(["-"], stdin=io.BytesIO(text.encode()))
        assert len(result.errors) == 1 and "apiVersion: unknown API group" in result.errors[0], api_version


def test_good_gitops_folder() -> None:
    result = load([str(CORPUS / "good")])
    assert result.errors == []
    assert [t.name for t in result.topics] == ["topics-1"]
    assert [g.name for g in result.groups] == ["group1", "group2"]
    topic = result.topics[0]
    assert topic.stream == "topics/1"
    assert topic.namespace == "team-a"
    assert topic.spec.retention is not None and topic.spec.retention.maxLength == 1000
    assert topic.spec.connection is not None and topic.spec.connection.secretRef.key == "url"
    assert result.groups[1].group == "Group Two:α"
    assert any('skipping Deployment "web" (apps/v1)' in n for n in result.notices)
    assert any('skipping ConfigMap "settings"' in n and "item 2" in n for n in result.notices)
