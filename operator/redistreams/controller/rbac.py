"""The Kubernetes permissions the operator needs, and nothing more.

One source for the chart's ClusterRole (or per-namespace Roles), the leader-election Role
in the operator's own namespace, and for the tests that run the operator under exactly
these rules. kopf runs standalone with scanning off, so it needs no access to CRDs,
namespaces or peering objects.
"""

from __future__ import annotations

from typing import Any

from ..model import API_GROUP

OPERATOR_RULES: list[dict[str, Any]] = [
    {"apiGroups": [API_GROUP], "resources": ["topics", "consumergroups"], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": [API_GROUP], "resources": ["topics/status", "consumergroups/status"], "verbs": ["patch"]},
    # patch: a repeated Event raises the count of the one already posted (controller/events.py).
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
]

# Only for Topics with spec.connection.secretRef; the chart can scope it to namespaces.
# watch: each Secret a Topic names is watched by name (controller/secrets.py); never list.
SECRET_RULES: list[dict[str, Any]] = [
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "watch"]},
]


# Leader election (controller/leadership.py): the Lease and its LeaderElection Events, in
# the operator's namespace only (a Role, never cluster-wide).
LEADER_ELECTION_RULES: list[dict[str, Any]] = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
]


def leader_election_role(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": LEADER_ELECTION_RULES,
    }


def cluster_role(name: str, with_secrets: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": name},
        "rules": OPERATOR_RULES + (SECRET_RULES if with_secrets else []),
    }
