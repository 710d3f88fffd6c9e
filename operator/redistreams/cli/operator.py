"""operator: run the Kubernetes operator. The only command that loads the controller
(and kopf), inside the command, so every other command starts without them."""

from __future__ import annotations

import click

from .options import CLUSTER_ID, duration_option
from .output import fail

OFF = ("0", "off")  # --observe-interval values that turn observation off
# Top-level modules of the `operator` extra (pyproject.toml); `pip install redistreams`
# alone gives the CLI and the client without them.
OPERATOR_EXTRA_MODULES = ("kopf", "aiohttp", "prometheus_client")
INSTALL_OPERATOR_EXTRA = "pip install 'redistreams[operator]'"


@click.command("operator")
@click.option("--namespace", "namespaces", multiple=True, metavar="NS",
              help="Watch only this namespace (repeatable). Default: all namespaces.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch all namespaces (the default).")
@click.option("--redis-url", metavar="URL", help="Default Redis (default: $REDIS_URL).")
@click.option("--cluster-id", envvar="REDISTREAMS_CLUSTER_ID", default=CLUSTER_ID, show_default=True,
              help="Owner identity of this cluster in Redis' ownership records.")
@click.option("--resync-interval", default="60s", show_default=True, metavar="DURATION",
              help="Drift check period (±10% jitter). One pass reads each stream once for drift, status, "
                   "metrics and retention, every min(--resync-interval, --observe-interval).")
@click.option("--status-interval", default="30s", show_default=True, metavar="DURATION",
              help="Write changing figures (length, lag…) to status at most this often.")
@click.option("--observe-interval", default="30s", show_default=True, metavar="DURATION",
              help="Stream metrics and retention in bounded steps at least this often, from the same read "
                   "as the drift check (off: no stream metrics; retention then runs with each reconcile).")
@click.option("--liveness", default="http://0.0.0.0:8080/healthz", show_default=True,
              help="Liveness endpoint URL, or empty to disable.")
@click.option("--metrics-port", type=int, default=8081, show_default=True,
              help="Serve Prometheus metrics on this port (0: off).")
@click.option("--leader-elect/--no-leader-elect", default=False, show_default=True,
              help="Reconcile only while holding a coordination.k8s.io Lease, so replicas can stand by "
                   "(the chart turns it on).")
@click.option("--lease-name", default="redistreams-operator", show_default=True, help="The Lease's name.")
@click.option("--lease-namespace", envvar="POD_NAMESPACE", metavar="NS",
              help="The Lease's namespace (default: $POD_NAMESPACE, else the kubeconfig's, else default).")
@click.option("--lease-duration", default="10s", show_default=True, metavar="DURATION",
              help="A standby takes over this long after the leader's last renewal.")
@click.option("--renew-deadline", default="7s", show_default=True, metavar="DURATION",
              help="The leader stops (exits) when it has not renewed for this long; below --lease-duration.")
@click.option("--retry-period", default="2s", show_default=True, metavar="DURATION",
              help="Renewal and standby polling period.")
@click.option("--tenant", "tenants", multiple=True, metavar="NS=PREFIX", envvar="REDISTREAMS_TENANTS",
              help="Namespace NS may declare only streams starting with PREFIX (repeatable; * for every "
                   "namespace not listed, {namespace} for its name). With any entry, unlisted namespaces may "
                   "declare nothing. Env: REDISTREAMS_TENANTS, space-separated.")
@click.option("--tenancy-file", metavar="PATH", envvar="REDISTREAMS_TENANCY_FILE",
              help="YAML mapping of namespace to a prefix or a list of prefixes (as --tenant).")
@click.option("--log-format", type=click.Choice(["plain", "full", "json"]), default="full", show_default=True)
@click.option("-v", "--verbose", is_flag=True)
@click.pass_context
def operator_command(ctx: click.Context, namespaces: tuple[str, ...], all_namespaces: bool, redis_url: str | None,
                     cluster_id: str, resync_interval: str, status_interval: str, observe_interval: str,
                     liveness: str, metrics_port: int, leader_elect: bool, lease_name: str,
                     lease_namespace: str | None, lease_duration: str, renew_deadline: str, retry_period: str,
                     tenants: tuple[str, ...], tenancy_file: str | None, log_format: str, verbose: bool) -> None:
    """Run the Kubernetes operator for Topic and ConsumerGroup resources."""
    from ..connection import ConnectionConfigError, RedisTarget, default_url
    from ..tenancy import Tenancy, TenancyError

    try:
        from ..controller.leadership import LeaseConfig, default_lease_namespace
        from ..controller.main import run
        from ..controller.runtime import OperatorConfig
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in OPERATOR_EXTRA_MODULES:
            raise
        from importlib.util import find_spec

        missing = ", ".join(m for m in OPERATOR_EXTRA_MODULES if find_spec(m) is None)
        fail(f"the operator needs the 'operator' extra (not installed: {missing}): {INSTALL_OPERATOR_EXTRA}")

    if all_namespaces and namespaces:
        fail("give either --namespace or --all-namespaces")
    try:
        tenancy = Tenancy.load(tenants, tenancy_file)
    except TenancyError as exc:
        fail(str(exc))
    config = OperatorConfig(
        cluster_id=cluster_id,
        redis_url=redis_url or ctx.find_root().params.get("redis_url") or default_url(),
        resync_interval=duration_option(resync_interval, "--resync-interval"),
        status_interval=duration_option(status_interval, "--status-interval"),
        observe_interval=0.0 if observe_interval in OFF else duration_option(observe_interval, "--observe-interval"),
        tenancy=tenancy,
    )
    try:  # an unusable default URL is a start-up error, not a status on every Topic
        RedisTarget(config.redis_url).client()
    except ConnectionConfigError as exc:
        fail(str(exc))
    lease = None
    if leader_elect:
        try:
            lease = LeaseConfig(name=lease_name, namespace=lease_namespace or default_lease_namespace(),
                                lease_duration=duration_option(lease_duration, "--lease-duration"),
                                renew_deadline=duration_option(renew_deadline, "--renew-deadline"),
                                retry_period=duration_option(retry_period, "--retry-period"))
        except ValueError as exc:
            fail(str(exc))
    problem = kube_config_problem()  # the options are checked first: they need no cluster
    if problem is not None:
        fail(problem)
    run(config, list(namespaces), liveness or None, verbose, log_format, metrics_port, lease)


# Where kopf's service-account login (our login handler's first choice) reads its token.
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
API_CONNECT_TIMEOUT = 5.0  # seconds for the API server outside a cluster to accept a connection


def kube_config_problem() -> str | None:
    """What keeps the operator from logging in to Kubernetes, in one line; None when it
    can: a service account token (in a cluster), else a kubeconfig (KUBECONFIG, else
    ~/.kube/config) that loads and whose API server accepts a connection. kopf would
    otherwise end in a traceback, or retry an unreachable server for minutes."""
    import os

    if os.path.exists(SERVICE_ACCOUNT_TOKEN):
        return None  # in a cluster: kopf retries a server that is not up yet, as it should
    default = os.path.expanduser("~/.kube/config")
    listed = os.environ.get("KUBECONFIG", "")
    paths = [os.path.expanduser(p.strip()) for p in listed.split(os.pathsep) if p.strip()]
    if not paths:
        if not os.path.exists(default):
            where = ("not in a cluster (KUBERNETES_SERVICE_HOST unset)" if not os.environ.get("KUBERNETES_SERVICE_HOST")
                     else f"no service account token at {SERVICE_ACCOUNT_TOKEN}")
            return f"no Kubernetes configuration: {where} and no kubeconfig at {default}; set KUBECONFIG"
        paths = [default]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        return f"no Kubernetes configuration: KUBECONFIG names {', '.join(missing)}, which does not exist"
    return _api_server_problem(", ".join(paths))


def _api_server_problem(source: str) -> str | None:
    import socket
    from urllib.parse import urlsplit

    import kopf

    try:
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    except Exception as exc:  # noqa: BLE001 - kopf raises what the YAML and file reads raise
        return f"kubeconfig {source} cannot be used: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    if info is None or not info.server:
        return f"kubeconfig {source} names no API server (current-context and its cluster)"
    url = urlsplit(info.server)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=API_CONNECT_TIMEOUT).close()
    except OSError as exc:
        return f"Kubernetes API server {info.server} (from {source}) is unreachable: {exc.strerror or exc}"
    return None
