"""The built wheel installed into fresh venvs, as a user would: `pip install redistreams`
gives the CLI and the client without the operator's dependencies, `redistreams[operator]`
adds them. Dependencies come from the package index (cached in ~/.cache/redistreams/pip).
One venv for the module: the operator's test, last, adds the extra to it."""

from __future__ import annotations

import os
import subprocess
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import RedisServer

from .conftest import PIP_CACHE, ROOT, VERSION, WHEEL, artifact

OPERATOR_ONLY = ("kopf", "aiohttp", "prometheus_client")
FIND = "import importlib.util, sys; print(*[m for m in sys.argv[1:] if importlib.util.find_spec(m)])"


class Venv:
    def __init__(self, path: Path) -> None:
        self.path = path
        venv.EnvBuilder(with_pip=True).create(path)
        self.python = str(path / "bin" / "python")

    def pip_install(self, requirement: str) -> None:
        subprocess.run([self.python, "-m", "pip", "install", "-q", "--cache-dir", str(PIP_CACHE), requirement],
                       check=True, capture_output=True, text=True, timeout=600)

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        # Outside the checkout, without our PYTHONPATH: only what the venv installed is seen.
        clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "REDIS_URL")}
        return subprocess.run([str(self.path / "bin" / args[0]), *args[1:]], capture_output=True, text=True,
                              timeout=120, cwd=self.path, env={**clean, **(env or {})})


@pytest.fixture(scope="module")
def cli_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    wheel = artifact(WHEEL, "dist")
    env = Venv(tmp_path_factory.mktemp("cli-only") / "venv")
    env.pip_install(str(wheel))
    yield env


@pytest.fixture(scope="module")
def with_operator(cli_only: Venv) -> Venv:
    """The same venv with the extra added (as `pip install 'redistreams[operator]'` over an
    install would): the tests above it in this file see it without the extra."""
    cli_only.pip_install(f"{WHEEL}[operator]")
    return cli_only


def test_the_wheel_is_the_checkout() -> None:
    """The wheel tested here holds the checkout's modules as they are (else `make dist`)."""
    with zipfile.ZipFile(artifact(WHEEL, "dist")) as wheel:
        packaged = {n: wheel.read(n) for n in wheel.namelist() if n.startswith("redistreams/")}
    source = ROOT / "operator"
    checkout = {p.relative_to(source).as_posix(): p.read_bytes() for p in (source / "redistreams").rglob("*")
                if p.is_file() and p.suffix in (".py", ".lua")}
    stale = sorted(n for n in checkout.keys() | packaged.keys()
                   if n.endswith((".py", ".lua")) and checkout.get(n) != packaged.get(n))
    assert not stale, f"dist/ is not the checkout ({', '.join(stale[:5])}): run `make dist`"


def test_cli_without_the_operator_extra(cli_only: Venv) -> None:
    version = cli_only.run("redistreams", "--version")
    assert version.returncode == 0 and VERSION in version.stdout, version.stdout + version.stderr
    help_ = cli_only.run("redistreams", "apply", "--help")
    assert help_.returncode == 0 and "Usage: redistreams apply" in help_.stdout, help_.stderr
    found = cli_only.run("python", "-c", FIND, *OPERATOR_ONLY, "redis", "pydantic", "click")
    assert found.stdout.split() == ["redis", "pydantic", "click"], found.stdout + found.stderr


def test_operator_without_its_extra_says_how_to_install_it(cli_only: Venv) -> None:
    assert cli_only.run("redistreams", "operator", "--help").returncode == 0
    result = cli_only.run("redistreams", "operator")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: the operator needs the 'operator' extra (not installed: kopf, aiohttp, prometheus_client): "
        "pip install 'redistreams[operator]'"]
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_without_the_operator_extra_applies_and_publishes(cli_only: Venv, tmp_path: Path) -> None:
    server = RedisServer().start()
    try:
        url = {"REDIS_URL": server.url}
        applied = cli_only.run("redistreams", "apply", "-f", str(ROOT / "examples"), env=url)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert server.client().exists("orders") == 1
        # The client library, as an application imports it.
        code = ("import asyncio\nfrom redistreams.pubsub import open_topic\n"
                "async def main():\n"
                "    async with await open_topic('redis://orders') as topic: print(await topic.send(b'hello'))\n"
                "asyncio.run(main())")
        published = cli_only.run("python", "-c", code, env=url)
        assert published.returncode == 0, published.stderr
        assert server.client().xlen("orders") == 1
    finally:
        server.close()


def test_operator_extra_installs_the_operator(with_operator: Venv) -> None:
    found = with_operator.run("python", "-c", FIND, *OPERATOR_ONLY)
    assert found.stdout.split() == list(OPERATOR_ONLY), found.stdout + found.stderr
    loaded = with_operator.run("python", "-c", "import redistreams.controller.main")
    assert loaded.returncode == 0, loaded.stderr
    help_ = with_operator.run("redistreams", "operator", "--help")
    assert help_.returncode == 0 and "--leader-elect" in help_.stdout
