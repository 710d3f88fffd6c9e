"""Manifests for `redistreams apply/plan/delete` tests: one JSON document per resource
(JSON is YAML), joined with ``---``, written to a file the CLI reads."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

API_VERSION = "redistreams.dev/v1alpha1"

# Two topics (one with a stream name that is not its resource name), a group on each.
TOPICS = """
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: orders}
---
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: topics-1}
spec: {streamName: topics/1}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: billing}
spec: {topicRef: {name: orders}}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: group1}
spec: {topicRef: {name: topics-1}}
---
"""


def write(tmp_path: Path, text: str, name: str = "manifests.yaml") -> str:
    """Writes ``text`` (dedented) to ``tmp_path/name``; returns the path for ``-f``."""
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def topic(name: str, **spec: object) -> str:
    return json.dumps(
        {"apiVersion": API_VERSION, "kind": "Topic", "metadata": {"name": name}, "spec": spec}
    ) + "\n---\n"


def group(name: str, topic_name: str, **spec: object) -> str:
    return json.dumps(
        {
            "apiVersion": API_VERSION,
            "kind": "ConsumerGroup",
            "metadata": {"name": name},
            "spec": {"topicRef": {"name": topic_name}, **spec},
        }
    ) + "\n---\n"
