"""Hostile input to the manifest reader: bytes that are not UTF-8, alias bombs, deep
nesting, odd YAML shapes, start IDs past 64 bits.

Every case is an input error with a message naming the file, the document and where
(the CLI exits 2 and writes nothing), never a traceback, a MemoryError or a hang. The
CLI cases at the end run the real command against a real redis-server.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from redistreams.manifests import MAX_DEPTH, ManifestSet, load
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
API = "apiVersion: redistreams.dev/v1alpha1"
TOPIC = f"{API}\nkind: Topic\nmetadata: {{name: orders}}\n"
GROUP = f"{API}\nkind: ConsumerGroup\nmetadata: {{name: billing}}\nspec: {{topicRef: {{name: orders}}}}\n"
# The 0xff is in column 24 of line 3 (the 25th byte: columns count characters, "é" is one).
NOT_UTF8 = f"{API}\nkind: Topic\nmetadata: {{é: x, name: ".encode() + b"\xff}\n"
NOT_UTF8_WHERE = "not valid UTF-8 (line 3, column 24): cannot decode byte 0xff (invalid start byte)"


def from_stdin(data: bytes | str) -> ManifestSet:
    stream = io.BytesIO(data) if isinstance(data, bytes) else io.StringIO(data)
    return load(["-"], stdin=stream)


def only_error(result: ManifestSet) -> str:
    assert not result.resources, result.resources
    assert len(result.errors) == 1, result.errors
    return result.errors[0]


def laughs(levels: int = 9, width: int = 10, kind: str = "Topic") -> str:
    """The billion laughs: each level an anchored list of `width` aliases to the one before."""
    lines = [f"apiVersion: {'v1' if kind == 'ConfigMap' else 'redistreams.dev/v1alpha1'}",
             f"kind: {kind}", "metadata: {name: lol}", "status:", "  l0: &l0 [lol]"]
    for level in range(1, levels + 1):
        lines.append(f"  l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# -- bytes that are not UTF-8 ---------------------------------------------------------------


def test_stdin_that_is_not_utf8_names_stdin_and_the_byte() -> None:
    assert only_error(from_stdin(NOT_UTF8)) == f"<stdin>: {NOT_UTF8_WHERE}"


def test_a_file_that_is_not_utf8_gets_the_same_message(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(NOT_UTF8)
    assert only_error(load([str(path)])) == f"{path}: {NOT_UTF8_WHERE}"


def test_stdin_decoded_by_the_locale_is_read_as_bytes() -> None:
    """sys.stdin is a text stream: the reader takes its bytes (a latin-1 locale would
    otherwise turn 0xff into "ÿ" silently), and a text stream without bytes underneath,
    decoded with surrogateescape, still gives the same message."""
    wrapper = io.TextIOWrapper(io.BytesIO(NOT_UTF8), encoding="latin-1")
    assert only_error(load(["-"], stdin=wrapper)) == f"<stdin>: {NOT_UTF8_WHERE}"
    escaped = NOT_UTF8.decode("utf-8", "surrogateescape")
    assert only_error(from_stdin(escaped)) == f"<stdin>: {NOT_UTF8_WHERE}"


@pytest.mark.parametrize(("data", "expected"), [
    (b"kind: Topic\nname: caf\xc3", "(line 2, column 10): cannot decode byte 0xc3 (unexpected end of data)"),
    (b"kind: \xe2\x28\xa1", "(line 1, column 7): cannot decode byte 0xe2 (invalid continuation byte)"),
    ("kind: Topic\n".encode("utf-16"), "(line 1, column 1): cannot decode byte 0xff (invalid start byte); "
                                       "it looks like UTF-16 (save it as UTF-8)"),
])
def test_bad_utf8_forms(data: bytes, expected: str) -> None:
    assert only_error(from_stdin(data)) == f"<stdin>: not valid UTF-8 {expected}"


def test_unreadable_stdin_is_an_input_error() -> None:
    closed = io.BytesIO(b"")
    closed.close()
    assert only_error(load(["-"], stdin=closed)).startswith("<stdin>: cannot read: ")


# -- alias bombs and deep nesting -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["Topic", "ConfigMap"])
def test_billion_laughs_is_refused_fast_in_little_memory(kind: str) -> None:
    """1 KB that expands to a billion nodes; a skipped kind is refused too, as kubectl does."""
    text = laughs(kind=kind)
    assert len(text) < 1024
    tracemalloc.start()
    started = time.monotonic()
    try:
        error = only_error(from_stdin(text.encode()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 2
    assert peak < 20 * 2**20
    assert error == ("<stdin>: document 1: excessive aliasing (line 1, column 1): aliases expand "
                     "its 32 nodes to 2,345,679,032")


def test_alias_bomb_far_past_any_count_is_refused() -> None:
    """Doubling 90 times: the count is capped, not carried as a 90-bit number of nodes."""
    error = only_error(from_stdin(laughs(levels=90, width=2).encode()))
    assert "excessive aliasing" in error and "to more than 1,000,000,000,000" in error


def test_merge_key_bomb_is_refused() -> None:
    """Merges of merges: kubectl's YAML library expands each merged alias and refuses this
    as excessive aliasing; so do we, counting `<<` values like any other alias."""
    lines = [TOPIC.strip(), "status:", "  m0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10}"]
    lines += [f"  m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}" for i in range(1, 9)]
    assert "excessive aliasing" in only_error(from_stdin("\n".join(lines).encode()))


@pytest.mark.parametrize("text", [
    TOPIC + "status: &a {again: *a}\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: &a {name: x, self: [*a]}\n",
])
def test_recursive_alias_is_refused(text: str) -> None:
    error = only_error(from_stdin(text.encode()))
    assert error.startswith("<stdin>: document 1: recursive alias (line ")
    assert error.endswith("a node contains an alias to itself")


def test_ordinary_aliases_are_fine() -> None:
    """Anchors for shared labels in a List: a little aliasing, as in real manifests."""
    items = [f"  - {{{API}, kind: Topic, metadata: {{name: t{i}, labels: *labels}}}}" for i in range(300)]
    text = "apiVersion: v1\nkind: List\nmetadata: {labels: &labels {team: a, tier: b}}\nitems:\n" + "\n".join(items)
    result = from_stdin(text.encode())
    assert result.errors == []
    assert len(result.topics) == 300
    assert result.topics[-1].metadata.labels == {"team": "a", "tier": "b"}


def test_small_documents_may_be_mostly_aliases() -> None:
    """Under 1,000 nodes any amount of aliasing is accepted (go-yaml's floor)."""
    text = TOPIC + "status:\n  a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\n  b: [" + ", ".join(["*a"] * 90) + "]\n"
    result = from_stdin(text.encode())
    assert result.errors == [] and len(result.topics) == 1


# Where a deep value may sit: in our fields, in fields we ignore, in a kind we skip.
DEEP_PLACES = {
    "streamName": TOPIC + "spec: {streamName: %s}\n",
    "label value": f"{API}\nkind: Topic\nmetadata: {{name: a, labels: {{a: %s}}}}\n",
    "name": f"{API}\nkind: Topic\nmetadata: {{name: %s}}\n",
    "status": TOPIC + "status: {x: %s}\n",
    "managedFields": f"{API}\nkind: Topic\nmetadata: {{name: a, managedFields: %s}}\n",
    "other kind": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\n",
    "bare list": "%s\n",
}


@pytest.mark.parametrize("place", DEEP_PLACES)
def test_value_nested_500_deep_is_refused(place: str) -> None:
    error = only_error(from_stdin((DEEP_PLACES[place] % nested(500)).encode()))
    assert error.startswith(f"<stdin>: document 1: nested more than {MAX_DEPTH} levels deep (line ")


def test_depth_limit_is_exact() -> None:
    """`status: {x: ...}` sits 2 levels down: MAX_DEPTH - 2 lists fit, one more does not."""
    fits = from_stdin((DEEP_PLACES["status"] % nested(MAX_DEPTH - 2)).encode())
    assert fits.errors == [] and len(fits.topics) == 1
    error = only_error(from_stdin((DEEP_PLACES["status"] % nested(MAX_DEPTH - 1)).encode()))
    # The first list is level 3, in column 13.
    assert error == (f"<stdin>: document 1: nested more than {MAX_DEPTH} levels deep "
                     f"(line 4, column {13 + MAX_DEPTH - 2})")


def test_depth_built_from_aliases_is_refused() -> None:
    """Each anchor wraps the one before: deep only once aliases are expanded."""
    lines = [TOPIC.strip(), "status:", "  d0: &d0 [x]"] + [f"  d{i}: &d{i} [*d{i - 1}]" for i in range(1, 120)]
    error = only_error(from_stdin("\n".join(lines).encode()))
    assert f"nested more than {MAX_DEPTH} levels deep" in error


def test_block_nesting_past_the_parser_limit_is_an_error() -> None:
    text = TOPIC + "status:\n" + "".join(" " * (i + 1) + "k:\n" for i in range(1500))
    error = only_error(from_stdin(text.encode()))
    assert error.startswith("<stdin>: document 1: invalid YAML (line ")
    assert error.endswith("exceeded maximum nesting depth")


def test_refused_documents_do_not_stop_the_others() -> None:
    text = "---\n".join([TOPIC, laughs(), GROUP, TOPIC.replace("orders", "deep") + f"status: {nested(200)}\n"])
    result = from_stdin(text.encode())
    assert [e.split(": ")[1] for e in result.errors] == ["document 2", "document 4"]
    assert [r.resource.name for r in result.resources] == ["orders", "billing"]


# -- other YAML shapes ---------------------------------------------------------------------------


HOSTILE = {
    "huge integer": (TOPIC + "spec: {retention: {maxLength: " + "9" * 5000 + "}}\n",
                     "document 1: invalid YAML (line 4, column 31): integer too large (5000 digits)"),
    "hex integer of a million bits": (TOPIC + "spec: {retention: {maxLength: 0x" + "f" * 250_000 + "}}\n",
                                      'spec.retention.maxLength: must be less than or equal to '
                                      '9223372036854775807, got an integer of 1000000 bits'),
    "integer key at the top": ("1: 2\n" + TOPIC, 'key 1 must be a string (quote it)'),
    "integer key in metadata": (f"{API}\nkind: Topic\nmetadata: {{name: a, 1: b}}\n",
                                'Topic "a": metadata: key 1 must be a string (quote it)'),
    "boolean label key": (f"{API}\nkind: Topic\nmetadata: {{name: a, labels: {{yes: b}}}}\n",
                          'Topic "a": metadata.labels: key true must be a string (quote it)'),
    "null annotation key": (f"{API}\nkind: Topic\nmetadata: {{name: a, annotations: {{~: b}}}}\n",
                            'Topic "a": metadata.annotations: key null must be a string (quote it)'),
    "list as a key": (TOPIC + "? [a, b]\n: c\n", "invalid YAML (line 4, column 3): found unhashable key"),
    "python object tag": ("!!python/object/apply:os.system [echo hi]\n",
                          "invalid YAML (line 1, column 1): unsupported tag !!python/object/apply:os.system "
                          "(manifests are plain YAML)"),
    "python name tag": (f"{API}\nkind: Topic\nmetadata: {{name: !!python/name:os.system }}\n",
                        "unsupported tag !!python/name:os.system"),
    "local tag": (f"{API}\nkind: Topic\nmetadata: {{name: !Ref x}}\n", "unsupported tag !Ref"),
    "bare string": ("hello\n", 'document 1: expected a mapping with apiVersion and kind, got "hello"'),
    "bare number": ("42\n", "document 1: expected a mapping with apiVersion and kind, got 42"),
    "a list": ("- a\n- b\n", "document 1: expected a mapping with apiVersion and kind, got a list"),
    "NUL byte": (TOPIC.replace("orders", "ord\0ers"),
                 "<stdin>: invalid YAML (line 3, column 21): unacceptable character #x0000: "
                 "control characters are not allowed"),
    "impossible date": (TOPIC + "spec: {streamName: 2026-02-30}\n",
                        'invalid YAML (line 4, column 20): invalid timestamp "2026-02-30": day is out of range '
                        "for month (quote it to make it a string)"),
    "!!int that is not": (TOPIC + "spec: {retention: {maxLength: !!int ten}}\n", 'invalid integer "ten"'),
    "!!bool that is not": (TOPIC + "spec: {retention: {allowTrimmingUnconsumed: !!bool maybe}}\n",
                           'invalid boolean "maybe"'),
    "!!timestamp that is not": (TOPIC + "status: {t: !!timestamp soon}\n", 'invalid timestamp "soon"'),
    "!!float that is not": (TOPIC + "status: {t: !!float ''}\n", 'invalid number ""'),
    "kind that is a list": (f"{API}\nkind: [Topic]\nmetadata: {{name: a}}\n",
                            "kind: must be a string, got a list (expected Topic or ConsumerGroup)"),
    "undefined alias": (TOPIC + "spec: {streamName: *nowhere}\n", "found undefined alias"),
    "terminal escapes": (f'{API}\nkind: Topic\nmetadata: {{name: "\\e[2J\\u202eevil"}}\n',
                         r'metadata.name: invalid value "\x1b[2J\u202eevil"'),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_shapes_are_clear_errors(case: str) -> None:
    text, expected = HOSTILE[case]
    error = only_error(from_stdin(text.encode()))
    assert error.startswith("<stdin>: "), error
    assert expected in error, error
    assert error.isprintable() and len(error) <= 1000, error


def test_long_values_are_shortened_in_messages() -> None:
    result = from_stdin(f"apiVersion: {'v' * 100_000}\nkind: {'K' * 100_000}\n".encode())
    (notice,) = result.notices
    assert notice.startswith("skipping KKKK") and "(100000 characters)" in notice and len(notice) < 400
    error = only_error(from_stdin((TOPIC + f"spec: {{deletionPolicy: {'x' * 100_000}}}\n").encode()))
    assert "(100000 characters)" in error and len(error) < 400


def test_other_kind_with_odd_metadata_is_skipped() -> None:
    result = from_stdin(b"apiVersion: v1\nkind: ConfigMap\nmetadata: [1, 2]\n")
    assert result.errors == [] and result.notices == ["skipping ConfigMap (v1) in <stdin>: document 1"]


@pytest.mark.parametrize("namespace", ["0", "false", "[]"])
def test_a_falsy_namespace_is_not_replaced_by_the_default(namespace: str) -> None:
    error = only_error(from_stdin(f"{API}\nkind: Topic\nmetadata: {{name: a, namespace: {namespace}}}\n".encode()))
    assert "metadata.namespace: must be a string" in error


@pytest.mark.parametrize("text", [
    "\ufeff" + TOPIC + "---\n" + GROUP,  # a byte-order mark
    TOPIC + "---\n\ufeff" + GROUP,  # two files with marks, joined with cat
    TOPIC + "---\n\ufeff---\n" + GROUP,
    (TOPIC + "---\n" + GROUP).replace("\n", "\r\n"),  # Windows line ends
])
def test_byte_order_marks_and_crlf_are_fine(text: str) -> None:
    result = from_stdin(text.encode())
    assert result.errors == []
    assert [r.resource.name for r in result.resources] == ["orders", "billing"]


def test_a_bad_value_does_not_leak_into_the_next_document() -> None:
    """A document that fails half-built leaves nothing behind for the next one."""
    bad = TOPIC.replace("orders", "a") + "status: {list: [{t: 2026-13-01}]}\n"
    result = from_stdin("---\n".join([bad, TOPIC, bad.replace("name: a", "name: b"), GROUP]).encode())
    assert [e.split(": ")[1] for e in result.errors] == ["document 1", "document 3"]
    assert [r.resource.name for r in result.resources] == ["orders", "billing"]


# -- start IDs -----------------------------------------------------------------------------------


def group_with(start_id: str) -> bytes:
    return (TOPIC + "---\n" + GROUP.replace("}}\n", f'}}, startId: "{start_id}"}}\n')).encode()


@pytest.mark.parametrize("start_id", ["99999999999999999999999-0", "1-18446744073709551616",
                                      "18446744073709551616-0", "000000000000000000000000018446744073709551616-0"])
def test_start_id_past_64_bits_is_refused(start_id: str) -> None:
    (error,) = from_stdin(group_with(start_id)).errors
    assert error.endswith(
        f'spec.startId: invalid start ID "{start_id}": both parts of an entry ID must fit in 64 bits') \
        or error.endswith(f'spec.startId: invalid start ID "{start_id}" (use $, 0 or an entry ID <ms>-<seq>)'), error


@pytest.mark.parametrize("start_id", ["$", "0", "0-0", "0001-01", "18446744073709551615-18446744073709551615",
                                      "0" * 19 + "18446744073709551615-0"])
def test_start_ids_redis_takes_are_accepted(start_id: str) -> None:
    """0-0 is the same as 0; leading zeros mean the same number to Redis (strtoull), to
    Python and to CEL's uint(), so they are accepted everywhere."""
    result = from_stdin(group_with(start_id))
    assert result.errors == [] and result.groups[0].spec.startId == start_id


# -- the command, against a real redis-server ----------------------------------------------------


def run_cli(server: RedisServer, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Like the `cli` fixture, but stdin is bytes."""
    full_env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"} | (env or {})
    result = subprocess.run([sys.executable, "-m", "redistreams.cli", "--redis-url", server.url, *args],
                            input=stdin, capture_output=True, timeout=120, env=full_env, cwd=ROOT)
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(),
                                       result.stderr.decode("utf-8", "backslashreplace"))


def refused(server: RedisServer, *args: str, stdin: bytes = b"", env: dict[str, str] | None = None) -> str:
    """Runs apply; asserts exit 2, no traceback, nothing written. Returns stderr."""
    before = server.dirty()
    result = run_cli(server, "apply", *args, stdin=stdin, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.endswith("error(s) in the input; nothing was changed\n"), result.stderr
    assert server.dirty() == before
    assert server.client().dbsize() == 0
    return result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("encoding", [None, "latin-1"])
def test_cli_stdin_not_utf8(redis_server: RedisServer, encoding: str | None) -> None:
    """Exit 2 whatever the locale's encoding would make of the bytes."""
    env = {"PYTHONIOENCODING": encoding} if encoding else None
    stderr = refused(redis_server, "-f", "-", stdin=TOPIC.encode() + b"---\n" + NOT_UTF8, env=env)
    assert f"error: <stdin>: {NOT_UTF8_WHERE.replace('line 3', 'line 7')}\n" in stderr


@pytest.mark.integration
def test_cli_file_not_utf8(redis_server: RedisServer, tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(TOPIC)
    bad.write_bytes(NOT_UTF8)
    stderr = refused(redis_server, "-f", str(good), "-f", str(bad))
    assert f"error: {bad}: {NOT_UTF8_WHERE}\n" in stderr


@pytest.mark.integration
def test_cli_alias_bomb_and_deep_nesting(redis_server: RedisServer, tmp_path: Path) -> None:
    path = tmp_path / "bombs.yaml"
    path.write_text(TOPIC + "---\n" + laughs())
    started = time.monotonic()
    stderr = refused(redis_server, "-f", str(path), "-f", "-", stdin=(DEEP_PLACES["status"] % nested(500)).encode())
    assert time.monotonic() - started < 30
    assert f"error: {path}: document 2: excessive aliasing (line 5, column 1)" in stderr
    assert f"error: <stdin>: document 1: nested more than {MAX_DEPTH} levels deep (line 4, column " in stderr


CLI_CASES = ["huge integer", "integer key in metadata", "python object tag", "bare string", "NUL byte",
             "impossible date", "terminal escapes"]


@pytest.mark.integration
@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_hostile_shapes(redis_server: RedisServer, case: str) -> None:
    text, expected = HOSTILE[case]
    stderr = refused(redis_server, "-f", "-", stdin=text.encode())
    assert expected in stderr
    assert all(line.isprintable() for line in stderr.splitlines()), stderr


@pytest.mark.integration
@pytest.mark.parametrize("start_id", ["99999999999999999999999-0", "1-18446744073709551616"])
def test_cli_start_id_past_64_bits_is_invalid_input(redis_server: RedisServer, start_id: str) -> None:
    stderr = refused(redis_server, "-f", "-", stdin=group_with(start_id))
    assert (f'error: <stdin>: document 2: ConsumerGroup "billing": spec.startId: invalid start ID '
            f'"{start_id}": both parts of an entry ID must fit in 64 bits') in stderr


@pytest.mark.integration
@pytest.mark.parametrize(("start_id", "position"), [("0-0", "0-0"), ("0001-01", "1-1")])
def test_cli_start_id_zero_and_leading_zeros(redis_server: RedisServer, start_id: str, position: str) -> None:
    result = run_cli(redis_server, "apply", "-f", "-", stdin=group_with(start_id))
    assert result.returncode == 0, result.stderr
    (info,) = redis_server.client().xinfo_groups("orders")
    assert info["last-delivered-id"] == position


@pytest.mark.integration
def test_cli_byte_order_mark_and_crlf(redis_server: RedisServer) -> None:
    stdin = ("\ufeff" + TOPIC + "---\n\ufeff" + GROUP).replace("\n", "\r\n").encode()
    result = run_cli(redis_server, "apply", "-f", "-", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert [g["name"] for g in redis_server.client().xinfo_groups("orders")] == ["billing"]
