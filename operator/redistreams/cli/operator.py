"""operator: run the Kubernetes operator. The only command that loads the controller
(and kopf), inside the command, so every other command starts without them."""

from __future__ import annotations

import click

from .options import CLUSTER_ID, duration_option
from .output import fail

OFF = ("0", "off")  # --observe-interval values that turn observation off


@click.command("operator")
@click.option("--namespace", "namespaces", multiple=True, metavar="NS",
              help="Watch only this namespace (repeatable). Default: all namespaces.")
@click.option("-A", "--all-namespaces", is_flag=True, help="Watch all namespaces (the default).")
@click.option("--redis-url", metavar="URL", help="Default Redis (default: $REDIS_URL).")
@click.option("--cluster-id", envvar="REDISTREAMS_CLUSTER_ID", default=CLUSTER_ID, show_default=True,
              help="Owner identity of this cluster in Redis' ownership records.")
@click.option("--resync-interval", default="60s", show_default=True,
              help="Drift check period (±10% jitter). One pass reads each stream once for drift, status, "
                   "metrics and retention, every min(--resync-interval, --observe-interval).")
@click.option("--status-interval", default="30s", show_default=True,
              help="Write changing figures (length, lag…) to status at most this often.")
@click.option("--observe-interval", default="30s", show_default=True,
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
@click.option("--lease-duration", default="10s", show_default=True,
              help="A standby takes over this long after the leader's last renewal.")
@click.option("--renew-deadline", default="7s", show_default=True,
              help="The leader stops (exits) when it has not renewed for this long; below --lease-duration.")
@click.option("--retry-period", default="2s", show_default=True, help="Renewal and standby polling period.")
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
    from ..controller.leadership import LeaseConfig, default_lease_namespace
    from ..controller.main import run
    from ..controller.runtime import OperatorConfig
    from ..tenancy import Tenancy, TenancyError

    if all_namespaces and namespaces:
        fail("give either --namespace or --all-namespaces")
    try:
        tenancy = Tenancy.load(tenants, tenancy_file)
    except TenancyError as exc:
        fail(str(exc))
    config = OperatorConfig(
        cluster_id=cluster_id,
        redis_url=redis_url or ctx.find_root().params.get("redis_url") or default_url(),
        resync_interval=duration_option(resync_interval),
        status_interval=duration_option(status_interval),
        observe_interval=0.0 if observe_interval in OFF else duration_option(observe_interval),
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
                                lease_duration=duration_option(lease_duration),
                                renew_deadline=duration_option(renew_deadline),
                                retry_period=duration_option(retry_period))
        except ValueError as exc:
            fail(str(exc))
    run(config, list(namespaces), liveness or None, verbose, log_format, metrics_port, lease)
