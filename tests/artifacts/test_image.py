"""The operator's image (`make image`, hack/image.sh): its config, and its entrypoint run as
the image's user in a chroot of its unpacked layers, with the arguments the chart gives it.
Chroot needs root (CI runs as root); those tests are skipped otherwise."""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART, CHART_META, IMAGE_TAR, ROOT, VERSION, WHEEL, artifact, tool

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot into the unpacked image needs root (CI runs as root)")


def read_archive() -> tuple[dict[str, Any], dict[str, Any]]:
    """(manifest.json's entry, the image config) of the docker-archive."""
    with tarfile.open(artifact(IMAGE_TAR, "image")) as archive:
        (entry,) = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(archive.extractfile(entry["Config"]))  # type: ignore[arg-type]
    return entry, config


@pytest.fixture(scope="module")
def image() -> tuple[dict[str, Any], dict[str, Any]]:
    return read_archive()


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory, image: tuple[dict[str, Any], dict[str, Any]]) -> Iterator[Path]:
    """The layers unpacked in order, as a runtime would (as root: owners and modes kept)."""
    if os.geteuid() != 0:
        pytest.skip("chroot into the unpacked image needs root (CI runs as root)")
    entry, _ = image
    base = tmp_path_factory.mktemp("image")
    layers, root = base / "layers", base / "rootfs"
    layers.mkdir()
    root.mkdir()
    with tarfile.open(IMAGE_TAR) as archive:
        archive.extractall(layers, members=[archive.getmember(name) for name in entry["Layers"]], filter="data")
    for name in entry["Layers"]:
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-xpf", str(layers / name)], check=True)
    (root / "dev").mkdir(exist_ok=True)
    for dev, major, minor in (("null", 1, 3), ("zero", 1, 5), ("random", 1, 8), ("urandom", 1, 9)):
        os.mknod(root / "dev" / dev, 0o666 | stat.S_IFCHR, os.makedev(major, minor))  # as a runtime mounts them
        os.chmod(root / "dev" / dev, 0o666)
    yield root
    subprocess.run(["rm", "-rf", str(base)], check=False)


def run_entrypoint(root: Path, config: dict[str, Any], args: list[str], user: str) -> subprocess.CompletedProcess[str]:
    """The entrypoint with args, as `user`, with only the image's environment (as a runtime)."""
    cmd = [*config["config"]["Entrypoint"], *args]
    return subprocess.run(["chroot", f"--userspec={user}", str(root), "/usr/bin/env", "-i",
                           *config["config"]["Env"], *cmd], capture_output=True, text=True, timeout=120)


def chart_operator_args() -> list[str]:
    """The operator container's args as the chart renders them by default."""
    out = subprocess.run([tool("helm.sh"), "template", "rs", str(CHART), "--namespace", "rs"],
                         check=True, capture_output=True, text=True)
    (deployment,) = [d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return [container["image"], *container["args"]]


def test_archive_is_a_valid_image() -> None:
    result = subprocess.run([tool("crane.sh"), "validate", "--tarball", str(artifact(IMAGE_TAR, "image"))],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_archive_pushes_to_a_registry(image: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """`crane push` as the README says, to crane's own registry on loopback, read back."""
    crane = tool("crane.sh")
    registry = subprocess.Popen([crane, "registry", "serve", "--address", "127.0.0.1:0"],
                                stderr=subprocess.PIPE, text=True)
    try:
        assert registry.stderr is not None
        line = registry.stderr.readline()
        port = re.search(r"serving on port (\d+)", line)
        assert port, line
        ref = f"127.0.0.1:{port.group(1)}/redistreams:{VERSION}"
        pushed = subprocess.run([crane, "push", str(IMAGE_TAR), ref], capture_output=True, text=True, timeout=300)
        assert pushed.returncode == 0, pushed.stderr
        config = subprocess.run([crane, "config", ref], capture_output=True, text=True, timeout=60)
        assert config.returncode == 0, config.stderr
        assert json.loads(config.stdout) == image[1]
    finally:
        registry.terminate()
        registry.wait(timeout=30)


def records(lines: str) -> set[tuple[str, str]]:
    """(path, hash) of our modules in a RECORD file."""
    rows = (line.split(",") for line in lines.splitlines() if line.startswith("redistreams/"))
    return {(row[0], row[1]) for row in rows if row[0].endswith((".py", ".lua"))}


def test_image_holds_the_wheel(image: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The image's installed package is the wheel in dist/ (else `make image`)."""
    entry, _ = image
    with zipfile.ZipFile(artifact(WHEEL, "dist")) as wheel:
        (record,) = [n for n in wheel.namelist() if n.endswith(".dist-info/RECORD")]
        expected = records(wheel.read(record).decode())
    with tarfile.open(IMAGE_TAR) as archive:
        app = tarfile.open(fileobj=io.BytesIO(archive.extractfile(entry["Layers"][-1]).read()))  # type: ignore[union-attr]
        (member,) = [m for m in app.getmembers() if m.name.endswith(f"redistreams-{VERSION}.dist-info/RECORD")]
        installed = records(app.extractfile(member).read().decode())  # type: ignore[union-attr]
    assert expected and installed == expected, "the image is older than dist/'s wheel: run `make image`"


def test_image_installs_the_pinned_dependencies(image: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """The image runs the dependency versions the tests ran (constraints.txt), not whatever
    was newest on the day it was built."""
    entry, _ = image
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[re.sub(r"[-_.]+", "-", name).lower()] = version
    with tarfile.open(IMAGE_TAR) as archive:
        app = tarfile.open(fileobj=io.BytesIO(archive.extractfile(entry["Layers"][-1]).read()))  # type: ignore[union-attr]
        found = {m.group(1): m.group(2) for m in (re.search(r"/site-packages/([^/]+)-([^-/]+)\.dist-info$", n)
                                                   for n in app.getnames()) if m}
    installed = {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in found.items()}
    for name in ("redis", "pydantic", "kopf", "aiohttp", "click", "prometheus-client"):
        assert installed.get(name) == pinned[name], f"{name}: image {installed.get(name)}, pinned {pinned[name]}"
    unpinned = {n: v for n, v in installed.items() if n in pinned and v != pinned[n]}
    assert not unpinned, f"the image has other versions than constraints.txt: {unpinned}; run make image"


def test_layers_hold_no_device_nodes(image: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Runtimes mount /dev themselves; a rootless one could not create device nodes."""
    entry, _ = image
    with tarfile.open(IMAGE_TAR) as archive:
        for name in entry["Layers"]:
            layer = tarfile.open(fileobj=io.BytesIO(archive.extractfile(name).read()))  # type: ignore[union-attr]
            devices = [m.name for m in layer.getmembers() if m.isdev()]
            assert not devices, f"layer {name[:12]} has device nodes: {devices[:5]}"


def test_config_runs_the_operator_as_a_non_root_user(image: tuple[dict[str, Any], dict[str, Any]]) -> None:
    entry, config = image
    assert entry["RepoTags"] == [f"redistreams:{VERSION}"]
    settings = config["config"]
    uid, _, gid = settings["User"].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, settings["User"]
    assert settings["Entrypoint"] == ["redistreams"] and settings["Cmd"] == ["operator"]
    assert settings["Labels"]["org.opencontainers.image.version"] == VERSION
    assert settings["Labels"]["org.opencontainers.image.title"] == "redistreams"
    assert config["os"] == "linux" and config["architecture"]


def test_the_chart_defaults_name_the_image_built(image: tuple[dict[str, Any], dict[str, Any]]) -> None:
    entry, config = image
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] in ("", None) and CHART_META["appVersion"] == VERSION
    assert f"{values['image']['repository']}:{CHART_META['appVersion']}" == entry["RepoTags"][0]
    image_name, *_ = chart_operator_args()
    assert image_name == entry["RepoTags"][0]
    # The chart's pod runs as the image's user.
    security = values["podSecurityContext"]
    assert f"{security['runAsUser']}:{security['runAsGroup']}" == config["config"]["User"]


@needs_root
def test_entrypoint_runs_as_the_image_user(rootfs: Path, image: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, config = image
    user = config["config"]["User"]
    passwd = (rootfs / "etc" / "passwd").read_text()
    assert f":{user}:" in passwd, "the image's user has no passwd entry"
    version = run_entrypoint(rootfs, config, ["--version"], user)
    assert version.returncode == 0 and VERSION in version.stdout, version.stdout + version.stderr
    help_ = run_entrypoint(rootfs, config, ["--help"], user)
    assert help_.returncode == 0, help_.stderr
    if "version" in help_.stdout.split():  # `redistreams version --client`: no Redis to ask
        named = run_entrypoint(rootfs, config, ["version", "--client"], user)
        assert named.returncode == 0 and VERSION in named.stdout, named.stdout + named.stderr
    # The operator extra is installed and loads (kopf, aiohttp, prometheus-client).
    python = rootfs / "opt" / "redistreams" / "bin" / "python"
    assert python.is_symlink()
    loaded = subprocess.run(["chroot", f"--userspec={user}", str(rootfs), "/opt/redistreams/bin/python", "-c",
                             "import kopf, aiohttp, prometheus_client, redistreams.controller.main"],
                            capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr


@needs_root
def test_entrypoint_takes_the_charts_operator_arguments(rootfs: Path,
                                                        image: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, config = image
    _, *args = chart_operator_args()
    assert args[0] == config["config"]["Cmd"][0] == "operator"
    # --help after the chart's own arguments: click parses them all first, so an option
    # the CLI does not know fails here.
    result = run_entrypoint(rootfs, config, [*args, "--help"], config["config"]["User"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Run the Kubernetes operator" in result.stdout
    plain = run_entrypoint(rootfs, config, ["operator", "--help"], config["config"]["User"])
    assert plain.returncode == 0 and "--leader-elect" in plain.stdout


@needs_root
def test_default_command_starts_the_operator(rootfs: Path, image: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Entrypoint + Cmd, outside a cluster: the operator itself starts (its extra is there)
    and says in one line that it has no Kubernetes to talk to."""
    _, config = image
    result = run_entrypoint(rootfs, config, config["config"]["Cmd"], config["config"]["User"])
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "extra" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "Kubernetes" in line, line


def test_dockerfile_installs_the_operator_extra() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "[operator]" in dockerfile and "USER 65532:65532" in dockerfile


@needs_root
@pytest.mark.e2e
def test_image_operator_reconciles_on_a_real_api_server(rootfs: Path, image: tuple[dict[str, Any], dict[str, Any]],
                                                         tmp_path: Path) -> None:
    """The image's operator, run as its user from the unpacked layers under a ServiceAccount
    bound to the chart's ClusterRole, makes a Topic and its group Ready in a real Redis."""
    from redistreams.crds import generate
    from tests.support.controlplane import cluster_for_tests, install_crds
    from tests.support.kube import create, new_namespace, operator_kubeconfig, wait_ready
    from tests.support.redis_server import RedisServer

    _, config = image
    user = config["config"]["User"]
    redis = RedisServer().start()
    try:
        with cluster_for_tests() as (cluster, _):
            install_crds(cluster, generate())
            ns = new_namespace(cluster, "img")
            kubeconfig = rootfs / "tmp" / f"kubeconfig-{ns}"
            operator_kubeconfig(cluster, kubeconfig)
            kubeconfig.chmod(0o644)
            args = [*config["config"]["Entrypoint"], "operator", "--namespace", ns, "--redis-url", redis.url,
                    "--liveness", "", "--metrics-port", "0", "--cluster-id", "image", "--resync-interval", "2s"]
            with open(tmp_path / "operator.log", "wb") as log:
                operator = subprocess.Popen(["chroot", f"--userspec={user}", str(rootfs), "/usr/bin/env", "-i",
                                             *config["config"]["Env"], f"KUBECONFIG=/tmp/{kubeconfig.name}", *args],
                                            stdout=log, stderr=subprocess.STDOUT)
                try:
                    create(cluster, ns, "Topic", "orders", {"streamName": f"{ns}/orders"})
                    create(cluster, ns, "ConsumerGroup", "billing", {"topicRef": {"name": "orders"}})
                    wait_ready(cluster, ns, "Topic", "orders", timeout=90)
                    wait_ready(cluster, ns, "ConsumerGroup", "billing", timeout=90)
                    assert [g["name"] for g in redis.client().xinfo_groups(f"{ns}/orders")] == ["billing"]
                finally:
                    operator.terminate()
                    operator.wait(30)
            output = (tmp_path / "operator.log").read_bytes()
            assert b"Traceback" not in output and b"Forbidden" not in output, output[-2000:].decode(errors="replace")
    finally:
        redis.close()
