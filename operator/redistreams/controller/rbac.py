"""The Kubernetes permissions the operator needs, and nothing more.

One source for the chart's ClusterRole and for the tests that run the operator under
exactly these rules. kopf runs standalone with scanning off, so it needs no access to
CRDs, namespaces or peering objects.
"""

from __future__ import annotations

from typing import Any

from ..model import API_GROUP

OPERATOR_RULES: list[dict[str, Any]] = [
    {"apiGroups": [API_GROUP], "resources": ["topics", "consumergroups"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": [API_GROUP], "resources": ["topics/status", "consumergroups/status"], "verbs": ["patch"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]

# Only for Topics with spec.connection.secretRef; the chart can scope it to namespaces.
SECRET_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]},
]


def cluster_role(name: str, with_secrets: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": OPERATOR_RULES + (SECRET_RULES if with_secrets else []),
    }
