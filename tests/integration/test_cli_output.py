"""Output conventions of the CLI (issue 15, kubectl as the model) against a real
redis-server: -o name|json|yaml, the summary after apply, plan as a field-level diff
(coloured on a terminal only), -l selectors, status owners, consumers, --no-headers,
-n, -o wide|name, and `version`."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.support.cli import ROOT
from tests.support.manifests import TOPICS, group, topic, write
from tests.support.net import ReservedPort
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

LABELLED = """
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: orders, labels: {app: shop, tier: front}}
---
apiVersion: redistreams.dev/v1alpha1
kind: Topic
metadata: {name: logs, labels: {app: ops}}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: billing, labels: {app: shop}}
spec: {topicRef: {name: orders}}
---
apiVersion: redistreams.dev/v1alpha1
kind: ConsumerGroup
metadata: {name: audit, labels: {app: ops}}
spec: {topicRef: {name: orders}}
"""


def test_apply_prints_a_summary_on_stderr_and_names_with_o_name(cli, redis_server: RedisServer,
                                                                 tmp_path: Path) -> None:
    path = write(tmp_path, TOPICS)
    applied = cli("apply", "-f", path)
    assert applied.returncode == 0, applied.stderr
    assert len(applied.stdout.splitlines()) == 4  # stdout: one line per resource, nothing else
    assert applied.stderr == "4 created, 0 failed\n"
    again = cli("apply", "-f", path, "-o", "name")
    assert again.returncode == 0
    assert again.stdout.splitlines() == ["topic.redistreams.dev/orders", "topic.redistreams.dev/topics-1",
                                         "consumergroup.redistreams.dev/billing",
                                         "consumergroup.redistreams.dev/group1"]
    assert again.stderr == ""  # the summary is for people reading text
    redis_server.client().set("x", "not a stream")
    mixed = cli("apply", "-f", write(tmp_path, TOPICS + topic("broken", streamName="x"), "more.yaml"))
    assert mixed.returncode == 1
    assert mixed.stderr.splitlines()[-1] == "4 unchanged, 1 failed"
    as_yaml = yaml.safe_load(cli("apply", "-f", path, "-o", "yaml").stdout)
    as_json = json.loads(cli("apply", "-f", path, "-o", "json").stdout)
    assert as_yaml == as_json and [r["outcome"] for r in as_json["results"]] == ["unchanged"] * 4
    preview = cli("delete", "-f", path, "--dry-run")
    assert preview.returncode == 0 and preview.stderr == "4 released, 0 failed (dry run)\n"
    gone = cli("delete", "-f", write(tmp_path, topic("orders", deletionPolicy="Delete")
                                     + group("billing", "orders", deletionPolicy="Delete"), "delete.yaml"))
    assert gone.returncode == 0 and gone.stderr == "2 deleted, 0 failed\n"


def test_plan_is_a_field_level_diff(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, topic("orders") + group("billing", "orders", startId="0"))
    planned = cli("plan", "-f", path)
    assert planned.returncode == 1
    assert planned.stdout.splitlines() == [
        '+ topic/orders: create stream "orders"; record ownership',
        "    + stream: orders",
        "    + managedBy: default/default/orders",
        '+ consumergroup/billing: create group "billing" on "orders" at 0; record ownership',
        "    + group: billing",
        "    + lastDeliveredId: 0",
        "    + managedBy: default/default/billing",
    ]
    assert "\x1b[" not in planned.stdout  # a pipe gets no colour
    names = cli("plan", "-f", path, "-o", "name")
    assert names.stdout.splitlines() == ["topic.redistreams.dev/orders", "consumergroup.redistreams.dev/billing"]
    assert cli("apply", "-f", path).returncode == 0
    assert cli("plan", "-f", path, "-o", "name").stdout == ""  # in sync: nothing to name
    # Retention and consumer cleanup, field by field.
    r = redis_server.client()
    ids = [r.xadd("orders", {"body": str(i)}) for i in range(6)]
    r.xgroup_createconsumer("orders", "billing", "idle-one")
    time.sleep(1.1)
    changed = write(tmp_path, topic("orders", retention={"maxLength": 2, "allowTrimmingUnconsumed": True})
                    + group("billing", "orders", startId="0", consumerCleanup={"idleAfter": "1s"}), "changed.yaml")
    planned = cli("plan", "-f", changed)
    assert planned.returncode == 1, planned.stderr
    lines = planned.stdout.splitlines()
    assert lines[0] == "~ topic/orders: trim 4 entries over maxLength 2"
    assert lines[1] == "    ~ length: 6 -> 2"
    assert lines[2].startswith('~ consumergroup/billing: remove consumer "idle-one"')
    assert lines[3].startswith("    - consumers.idle-one: idle ") and lines[3].endswith(", 0 pending")
    as_json = json.loads(cli("plan", "-f", changed, "-o", "json").stdout)
    assert as_json["plan"][0]["changes"] == [{"field": "length", "op": "change", "from": 6, "to": 2}]
    assert [c["field"] for c in as_json["plan"][1]["changes"]] == ["consumers.idle-one"]
    assert as_json["plan"][0]["summary"] == "trim 4 entries over maxLength 2"  # the fields before stay
    # A group that has not read the entries keeps them: the diff says so.
    kept = write(tmp_path, topic("orders", retention={"maxLength": 2}) + group("billing", "orders"), "kept.yaml")
    r.xreadgroup("billing", "c", {"orders": ">"}, count=4)
    r.xack("orders", "billing", *ids[:4])
    planned = cli("plan", "-f", kept)
    assert planned.stdout.splitlines()[1] == (
        '    ~ length: 6 -> 2 (entries group "billing" has not received are kept)')


def test_plan_colour_only_on_a_terminal_without_no_color(redis_server: RedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, TOPICS)

    def on_terminal(env: dict[str, str]) -> str:
        main, child = pty.openpty()
        full_env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "REDIS_URL")}
        process = subprocess.Popen([sys.executable, "-m", "redistreams.cli", "--redis-url", redis_server.url,
                                    "plan", "-f", path], stdout=child, stderr=subprocess.DEVNULL, cwd=ROOT,
                                   env={**full_env, **env})
        os.close(child)
        chunks = []
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(main)
        assert process.wait(timeout=60) == 1
        return b"".join(chunks).decode()

    coloured = on_terminal({})
    assert '\x1b[32m+ topic/orders: create stream "orders"; record ownership\x1b[0m' in coloured
    assert "\x1b[32m    + stream: orders\x1b[0m" in coloured
    plain = on_terminal({"NO_COLOR": "1"})
    assert "\x1b[" not in plain and '+ topic/orders: create stream "orders"' in plain


def test_selector_acts_on_matching_resources_only(cli, redis_server: RedisServer, tmp_path: Path) -> None:
    path = write(tmp_path, LABELLED)
    r = redis_server.client()
    shop = cli("apply", "-f", path, "-l", "app in (shop, other),!legacy")
    assert shop.returncode == 0, shop.stderr
    assert [line.split()[:2] for line in shop.stdout.splitlines()] == [["topic/orders", "created:"],
                                                                     ["consumergroup/billing", "created:"]]
    assert r.exists("orders") and not r.exists("logs")
    # wait -f -l waits for the selected resources only.
    assert cli("wait", "-f", path, "-l", "app=shop", "--timeout", "1s").returncode == 0
    assert cli("wait", "-f", path, "--timeout", "1s", "--interval", "1s").returncode == 1  # logs is missing
    assert [g["name"] for g in r.xinfo_groups("orders")] == ["billing"]
    # A group selected without its Topic: the Topic is still read from the input.
    ops = cli("apply", "-f", path, "-l", "app!=shop", "-o", "name")
    assert ops.returncode == 0, ops.stderr
    assert ops.stdout.splitlines() == ["topic.redistreams.dev/logs", "consumergroup.redistreams.dev/audit"]
    assert sorted(g["name"] for g in r.xinfo_groups("orders")) == ["audit", "billing"]
    assert cli("plan", "-f", path, "-l", "!tier", "-o", "name").stdout == ""
    none = cli("plan", "-f", path, "-l", "app notin (shop,ops)")
    assert none.returncode == 0 and "no resources in the input match" in none.stderr
    status = json.loads(cli("status", "-f", path, "-l", "tier", "-o", "json").stdout)
    assert [s["stream"] for s in status["streams"]] == ["orders"]
    for bad in ("app in (shop", "app=sh op", "=x", "app==shop,,"):
        refused = cli("apply", "-f", path, "-l", bad)
        assert refused.returncode == 2, bad
        assert refused.stderr.startswith(f"error: Invalid value for '-l' / '--selector': invalid selector \"{bad}\"")


def test_status_shows_group_owners_consumers_and_filters_by_namespace(cli, redis_server: RedisServer,
                                                                      tmp_path: Path) -> None:
    assert cli("apply", "-f", write(tmp_path, TOPICS)).returncode == 0
    assert cli("apply", "-n", "team-b", "-f", write(tmp_path, topic("payments") + group("ledger", "payments"),
                                                    "b.yaml")).returncode == 0
    r = redis_server.client()
    r.xadd("unmanaged", {"body": "x"})
    r.xgroup_create("unmanaged", "by-hand", "0")
    r.xadd("orders", {"body": "1"})
    r.xreadgroup("billing", "worker-1", {"orders": ">"})
    table = cli("status")
    assert table.returncode == 0, table.stderr
    rows = [line.split() for line in table.stdout.splitlines()]
    groups_header = rows.index(["STREAM", "GROUP", "LAG", "PENDING", "CONSUMERS", "LAST", "DELIVERED", "OLDEST",
                                "PENDING", "MANAGED", "BY"])
    owners = {(row[0], row[1]): row[-1] for row in rows[groups_header + 1:]}
    assert owners == {("orders", "billing"): "default/billing", ("payments", "ledger"): "team-b/ledger",
                      ("topics/1", "group1"): "default/group1", ("unmanaged", "by-hand"): "-"}
    bare = cli("status", "--no-headers")
    assert not any(line.startswith("STREAM") for line in bare.stdout.splitlines())
    # The same rows (ages aside, they move on) without the headers.
    assert [line.split()[:2] for line in bare.stdout.splitlines() if line] == [
        line[:2] for line in rows if line and line[0] != "STREAM"]
    # -n: streams whose Topic is in that namespace; streams named are always shown.
    team_b = json.loads(cli("status", "-n", "team-b", "-o", "json").stdout)
    assert [s["stream"] for s in team_b["streams"]] == ["payments"]
    named = json.loads(cli("status", "unmanaged", "-n", "team-b", "-o", "json").stdout)
    assert [s["stream"] for s in named["streams"]] == ["unmanaged"]
    nothing = cli("status", "-n", "nobody")
    assert nothing.returncode == 0 and nothing.stdout == ""
    assert nothing.stderr == 'No streams found owned in namespace "nobody".\n'
    assert cli("status", "-o", "name").stdout.splitlines() == ["stream/orders", "stream/payments", "stream/topics/1",
                                                              "stream/unmanaged"]
    # Consumers: not read unless asked; --consumers or -o wide lists name, pending, idle.
    plain = json.loads(cli("status", "orders", "-o", "json").stdout)["streams"][0]["groups"][0]
    assert "consumerDetails" not in plain
    detailed = json.loads(cli("status", "orders", "--consumers", "-o", "json").stdout)["streams"][0]["groups"][0]
    (worker,) = detailed["consumerDetails"]
    assert worker["name"] == "worker-1" and worker["pending"] == 1 and worker["idleSeconds"] >= 0
    wide = cli("status", "orders", "-o", "wide")
    lines = [line.split() for line in wide.stdout.splitlines()]
    assert ["STREAM", "GROUP", "CONSUMER", "PENDING", "IDLE", "INACTIVE"] in lines
    consumer_row = lines[lines.index(["STREAM", "GROUP", "CONSUMER", "PENDING", "IDLE", "INACTIVE"]) + 1]
    assert consumer_row[:4] == ["orders", "billing", "worker-1", "1"]
    assert "default/default/billing" in wide.stdout  # wide names the owner's cluster id too


def test_version_prints_client_and_server(cli, redis_server: RedisServer) -> None:
    info = redis_server.client().info("server")
    shown = cli("version")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"Client Version: 0.1.0\nServer Version: Redis {info['redis_version']}\n"
    as_json = json.loads(cli("version", "-o", "json").stdout)
    assert as_json["clientVersion"]["version"] == "0.1.0"
    assert as_json["serverVersion"] == {"name": "Redis", "version": info["redis_version"],
                                        "mode": info["redis_mode"]}
    with ReservedPort() as port:  # nothing listens there, nor starts to meanwhile
        down = cli("--redis-timeout", "2", "version", url=f"redis://127.0.0.1:{port}/0")
        client_only = cli("version", "--client", url=f"redis://127.0.0.1:{port}/0")
    assert down.returncode == 1
    assert down.stdout == "Client Version: 0.1.0\n"
    assert down.stderr.startswith("error: Redis at redis://127.0.0.1:") and "is unreachable" in down.stderr
    assert client_only.returncode == 0 and client_only.stdout == "Client Version: 0.1.0\n"


def test_version_on_a_redis_cluster(cli, redis_cluster) -> None:
    shown = cli("version", "-o", "json", url=redis_cluster.url)
    assert shown.returncode == 0, shown.stderr
    server = json.loads(shown.stdout)["serverVersion"]
    assert server["name"] == "Redis" and server["mode"] == "cluster"
    assert server["version"] == redis_cluster.nodes[0].client().info("server")["redis_version"]
