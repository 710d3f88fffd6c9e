"""Conventions every command shares (issue 15): exit codes in each --help, kubectl's
one error style for usage errors, DURATION options, shell completion scripts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from redistreams.cli import COMMANDS, EXIT_CODES
from tests.support.cli import ROOT


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "redistreams.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env)


def test_every_command_lists_its_exit_codes() -> None:
    assert set(EXIT_CODES) == set(COMMANDS)
    for command in COMMANDS:
        shown = run(command, "--help")
        assert shown.returncode == 0, shown.stderr
        listed = shown.stdout.split("Exit codes:\n", 1)[1].splitlines()
        assert [line.strip() for line in listed if line.strip()] == list(EXIT_CODES[command]), command
    top = run("--help").stdout
    assert "Exit codes (each command's --help lists its own):" in top


def test_usage_errors_have_one_style_and_exit_2() -> None:
    unknown = run("status", "--no-such-flag")
    assert unknown.returncode == 2
    assert unknown.stderr == "error: No such option '--no-such-flag'.\nSee 'redistreams status --help' for usage.\n"
    bad_duration = run("wait", "--stream", "s", "--timeout", "soon")
    assert bad_duration.returncode == 2
    assert bad_duration.stderr.startswith("error: Invalid value") and 'invalid duration "soon"' in bad_duration.stderr
    assert bad_duration.stderr.endswith("See 'redistreams wait --help' for usage.\n")
    top = run("--redis-timeout", "-1", "status")
    assert top.returncode == 2 and top.stderr.splitlines()[-1] == "See 'redistreams --help' for usage."
    assert "Usage:" not in unknown.stderr + bad_duration.stderr + top.stderr


def test_durations_are_shown_as_duration() -> None:
    for command, options in {"wait": ("--timeout", "--interval"), "status": ("--interval",),
                             "sub": ("--timeout",), "operator": ("--resync-interval", "--status-interval",
                             "--observe-interval", "--lease-duration", "--renew-deadline", "--retry-period")}.items():
        text = run(command, "--help").stdout
        for option in options:
            assert f"{option} DURATION" in text, (command, option)
    assert "--redis-timeout DURATION" in run("--help").stdout


def test_redis_timeout_takes_a_duration_or_seconds() -> None:
    # --client asks no server: the option is only parsed.
    for value in ("10", "2.5", "1m", "90s"):
        assert run("--redis-timeout", value, "version", "--client").returncode == 0, value
    for value in ("0", "nan", "inf", "soon"):
        assert run("--redis-timeout", value, "version", "--client").returncode == 2, value


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash")
def test_bash_completion_script_registers_and_completes() -> None:
    script = run("completion", "bash")
    assert script.returncode == 0 and "_REDISTREAMS_COMPLETE=bash_complete" in script.stdout
    # The script sourced in a real bash registers a completion function for the command.
    registered = subprocess.run(["bash", "--norc", "--noprofile", "-c", f"{script.stdout}\ncomplete -p redistreams"],
                                capture_output=True, text=True, timeout=60)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip() == "complete -o nosort -F _redistreams_completion redistreams"
    # What that function asks the command: subcommands, then a command's options.
    env = {"_REDISTREAMS_COMPLETE": "bash_complete", "COMP_WORDS": "redistreams ver", "COMP_CWORD": "1"}
    assert run(env=env).stdout.splitlines() == ["plain,version"]
    env = {"_REDISTREAMS_COMPLETE": "bash_complete", "COMP_WORDS": "redistreams completion ", "COMP_CWORD": "2"}
    assert run(env=env).stdout.splitlines() == ["plain,bash", "plain,zsh", "plain,fish"]
    env = {"_REDISTREAMS_COMPLETE": "bash_complete", "COMP_WORDS": "redistreams status --no-h", "COMP_CWORD": "2"}
    assert run(env=env).stdout.splitlines() == ["plain,--no-headers"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts(shell: str) -> None:
    script = run("completion", shell)
    assert script.returncode == 0
    assert f"_REDISTREAMS_COMPLETE={shell}_complete" in script.stdout
    assert "redistreams" in script.stdout.splitlines()[-1] or "compdef" in script.stdout


def test_unknown_shell_is_refused() -> None:
    refused = run("completion", "tcsh")
    assert refused.returncode == 2 and refused.stderr.startswith("error: Invalid value for 'SHELL'")


def test_server_version_names_valkey_and_redis() -> None:
    from redistreams.cli.about import server_version

    valkey = {"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.0.1", "redis_mode": "cluster"}
    assert server_version(valkey) == {"name": "Valkey", "version": "8.0.1", "mode": "cluster"}
    assert server_version({"redis_version": "7.4.1", "redis_mode": "standalone"}) == {
        "name": "Redis", "version": "7.4.1", "mode": "standalone"}
    per_node = {"127.0.0.1:7000": {"redis_version": "7.4.1", "redis_mode": "cluster"}}
    assert server_version(per_node) == {"name": "Redis", "version": "7.4.1", "mode": "cluster"}
