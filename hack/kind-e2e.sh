#!/usr/bin/env bash
# Try redistreams on a local kind cluster (needs Docker, kind, kubectl and helm):
#   1. create a kind cluster (an existing one of that name is reused);
#   2. build the operator image from the repository's Dockerfile and load it into the
#      cluster (kind load docker-image: no registry);
#   3. start a Redis in the cluster (namespace redis, image redis:7, no persistence);
#   4. install the chart (charts/redistreams) with the Redis URL in a Secret;
#   5. apply examples/ to a namespace and wait until every Topic and ConsumerGroup is Ready;
#   6. print their status, and `redistreams status` run in the operator's image.
#
# Usage:
#   hack/kind-e2e.sh            create, install, apply, wait, print
#   hack/kind-e2e.sh --cleanup  the same, then delete the cluster (also when a step fails)
#   hack/kind-e2e.sh --delete   only delete the cluster
#
# Environment (all optional):
#   KIND_CLUSTER_NAME  cluster name (default redistreams)
#   IMAGE              image to build and load (default redistreams:dev)
#   NAMESPACE          namespace for examples/ (default demo)
#   TIMEOUT            how long to wait for each step (default 3m)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CLUSTER="${KIND_CLUSTER_NAME:-redistreams}"
IMAGE="${IMAGE:-redistreams:dev}"
NAMESPACE="${NAMESPACE:-demo}"
TIMEOUT="${TIMEOUT:-3m}"
RELEASE=redistreams
RELEASE_NS=redistreams-system
REDIS_NS=redis
REDIS_URL_IN_CLUSTER="redis://redis.$REDIS_NS.svc.cluster.local:6379/0"

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'kind-e2e.sh: error: %s\n' "$*" >&2; exit 1; }

cleanup=0
case "${1:-}" in
  "") ;;
  --cleanup) cleanup=1 ;;
  --delete)
    kind delete cluster --name "$CLUSTER"
    exit 0 ;;
  -h|--help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0 ;;
  *) die "unknown argument: $1 (try --help)" ;;
esac

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not on PATH (needed: docker, kind, kubectl, helm)"
done
docker info >/dev/null 2>&1 || die "docker does not answer (is the daemon running, may you use it?)"

if [[ "$cleanup" == 1 ]]; then
  trap 'log "deleting kind cluster $CLUSTER"; kind delete cluster --name "$CLUSTER"' EXIT
fi

log "kind cluster $CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  echo "reusing the existing cluster $CLUSTER"
else
  kind create cluster --name "$CLUSTER" --wait "$TIMEOUT"
fi
KUBECTL=(kubectl --context "kind-$CLUSTER")
HELM=(helm --kube-context "kind-$CLUSTER")

log "building $IMAGE from $ROOT/Dockerfile and loading it into the cluster"
docker build -t "$IMAGE" -f "$ROOT/Dockerfile" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

log "Redis in namespace $REDIS_NS"
"${KUBECTL[@]}" create namespace "$REDIS_NS" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
"${KUBECTL[@]}" apply -n "$REDIS_NS" -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: redis}
spec:
  selector: {matchLabels: {app: redis}}
  template:
    metadata: {labels: {app: redis}}
    spec:
      containers:
        - name: redis
          image: redis:7
          args: ["--save", "", "--appendonly", "no"]
          ports: [{containerPort: 6379}]
---
apiVersion: v1
kind: Service
metadata: {name: redis}
spec:
  selector: {app: redis}
  ports: [{port: 6379}]
YAML
"${KUBECTL[@]}" -n "$REDIS_NS" rollout status deployment/redis --timeout "$TIMEOUT"

log "installing the chart (release $RELEASE in $RELEASE_NS)"
"${KUBECTL[@]}" create namespace "$RELEASE_NS" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
"${KUBECTL[@]}" -n "$RELEASE_NS" create secret generic redis-main --from-literal=url="$REDIS_URL_IN_CLUSTER" \
  --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
"${HELM[@]}" upgrade --install "$RELEASE" "$ROOT/charts/redistreams" -n "$RELEASE_NS" \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
  --set redis.existingSecret=redis-main --wait --timeout "$TIMEOUT"

log "applying examples/ to namespace $NAMESPACE"
"${KUBECTL[@]}" create namespace "$NAMESPACE" --dry-run=client -o yaml | "${KUBECTL[@]}" apply -f -
"${KUBECTL[@]}" apply -n "$NAMESPACE" -f "$ROOT/examples/topics.yaml" -f "$ROOT/examples/consumergroups.yaml"

log "waiting for every Topic and ConsumerGroup to be Ready"
if ! "${KUBECTL[@]}" wait -n "$NAMESPACE" --for=condition=Ready topics,consumergroups --all --timeout "$TIMEOUT"; then
  "${KUBECTL[@]}" get -n "$NAMESPACE" topics,consumergroups -o wide >&2 || true
  "${KUBECTL[@]}" logs -n "$RELEASE_NS" -l app.kubernetes.io/name=redistreams --tail 50 >&2 || true
  die "not Ready within $TIMEOUT (status and operator logs above)"
fi

log "status"
"${KUBECTL[@]}" get -n "$NAMESPACE" topics,consumergroups
"${KUBECTL[@]}" run -n "$REDIS_NS" redistreams-status --rm -i --restart=Never --image "$IMAGE" \
  --image-pull-policy=Never --env "REDIS_URL=$REDIS_URL_IN_CLUSTER" -- status

log "done: kubectl --context kind-$CLUSTER get -n $NAMESPACE topics,consumergroups"
[[ "$cleanup" == 1 ]] || echo "delete the cluster with: hack/kind-e2e.sh --delete" >&2
