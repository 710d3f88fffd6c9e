"""redact() and RedisTarget's URL errors: no credential form redis-py accepts is ever shown,
and nothing here raises anything but ConnectionConfigError."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from redistreams.connection import ConnectionConfigError, RedisTarget, redact
from redistreams.engine.errors import describe

# Every password below contains SECRET and every other part of a URL is lower-case, so
# "SECRET" in an output is a leak of some part of a password, never a coincidence.
PW = "SECRET-Pw9"

FORMS = [
    # (URL, what redact must show)
    (f"redis://:{PW}@localhost:6379/0", "redis://:***@localhost:6379/0"),
    (f"redis://app:{PW}@localhost:6379/0", "redis://app:***@localhost:6379/0"),
    (f"rediss://app:{PW}@cache.example:6380/2", "rediss://app:***@cache.example:6380/2"),
    (f"unix://:{PW}@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
    (f"unix://app:{PW}@/run/redis.sock", "unix://app:***@/run/redis.sock"),
    (f"unix:///run/redis.sock?db=0&password={PW}", "unix:///run/redis.sock?db=0&password=***"),
    (f"redis://localhost/0?password={PW}", "redis://localhost/0?password=***"),
    (f"redis://localhost/0?username=app&password={PW}&db=1", "redis://localhost/0?username=app&password=***&db=1"),
    (f"redis://localhost/0?password={quote(PW + '&/#@', safe='')}", "redis://localhost/0?password=***"),
    (f"redis://:{quote(PW + '@:/?#', safe='')}@localhost/0", "redis://:***@localhost/0"),
    (f"redis://localhost/0?password={PW}&password=SECRET2", "redis://localhost/0?password=***&password=***"),
    (f"redis://localhost/0?Password={PW}", "redis://localhost/0?Password=***"),
    (f"redis://localhost/0?PASSWORD={PW}", "redis://localhost/0?PASSWORD=***"),
    (f"redis://localhost/0?pass%77ord={PW}", "redis://localhost/0?pass%77ord=***"),
    (f"redis://localhost/0?pass%2577ord={PW}", "redis://localhost/0?pass%2577ord=***"),
    (f"redis://localhost/0?pasword={PW}", "redis://localhost/0?pasword=***"),  # misspelt: refused, still shown
    (f"rediss://localhost/0?ssl_password={PW}", "rediss://localhost/0?ssl_password=***"),
    (f"REDIS://:{PW}@localhost/0", "REDIS://:***@localhost/0"),  # refused by redis-py, shown in its error
    (f"redis+sentinel://app:{PW}@h1:26379,h2:26379/mymaster?sentinel_password=SECRET3",
     "redis+sentinel://app:***@h1:26379,h2:26379/mymaster?sentinel_password=***"),
    (f"redis://localhost/0?auth_token={PW}", "redis://localhost/0?auth_token=***"),
    # malformed: the password is masked whole, whatever urlsplit would make of it
    (f"redis://:{PW}@localhost:63 79/0", "redis://:***@localhost:63 79/0"),
    (f"redis://:{PW}/x@localhost/0", "redis://:***@localhost/0"),
    (f"redis://:{PW}?x@localhost/0", "redis://:***@localhost/0"),
    (f"redis://:{PW}#x@localhost/0", "redis://:***@localhost/0"),
    (f"redis://:{PW}@x@localhost/0", "redis://:***@localhost/0"),
    (f"redis://:{PW}", "redis://:***"),  # host forgotten
    (f"redis://app:{PW}", "redis://app:***"),
    (f"redis://:{PW}@[::1/0", "redis://:***@[::1/0"),
    (f":{PW}@localhost:6379", ":***@localhost:6379"),  # scheme forgotten
    (f"redis://localhost/0?password={PW}&x&db=1", "redis://localhost/0?password=***&db=1"),  # "&" in it
    # not secret: shown as is
    ("redis://app@localhost:6379/0", "redis://app@localhost:6379/0"),
    *[(u, u) for u in ["redis://localhost:6379/0?username=app@corp&client_name=a@b"]],
    ("redis://[::1]:6379/0", "redis://[::1]:6379/0"),
    ("unix:///run/redis@main.sock", "unix:///run/redis@main.sock"),
]


@pytest.mark.parametrize(("url", "shown"), FORMS)
def test_every_credential_form_is_masked(url: str, shown: str) -> None:
    assert redact(url) == shown
    assert "SECRET" not in redact(url)
    assert redact(redact(url)) == redact(url)  # masking what is masked changes nothing


def test_urls_inside_text_and_unprintable_input() -> None:
    text = f"tried redis://app:{PW}@a:1/0 and unix://:{PW}@/s.sock?password={PW}, gave up"
    assert redact(text) == "tried redis://app:***@a:1/0 and unix://:***@/s.sock?password=***"
    assert redact(f"redis://:{PW}@h/\udcff") == "redis://:***@h/\\xff"  # not UTF-8: \xNN
    assert redact(f"redis://:{PW}\ud800@h/0") == "redis://:***@h/0"
    assert redact(f"redis://:{PW}@h/0\n") == "redis://:***@h/0\\x0a"  # a Secret's newline made visible
    assert redact(f"redis://:{PW}@h/0".encode()) == "redis://:***@h/0"
    assert redact(None) == "" and redact(12) == "12" and redact("") == ""


def test_long_input_is_cut_after_masking() -> None:
    shown = redact(f"redis://:{PW}@h/0?client_name=" + "x" * 100_000)
    assert shown.startswith("redis://:***@h/0?client_name=x") and shown.endswith("more characters)")
    assert len(shown) < 1100


@pytest.mark.parametrize("piece", ["@", ":", "?", "=", "&", "redis://", ":x@", "?password=", "&password=x",
                                   "a=b&", "[", "%", "\udcff", "\x00", "redis://:p@h?a=b@"])
def test_pathological_input_is_fast(piece: str) -> None:
    text = piece * (200_000 // len(piece)) + f"redis://:{PW}@h"
    start = time.monotonic()
    shown = redact(text)
    assert time.monotonic() - start < 5  # linear, not quadratic
    assert "SECRET" not in shown


def test_describe_shows_its_target_redacted() -> None:
    failure = describe(redis.ConnectionError("Error 111 connecting to h:1."), f"redis://:{PW}@h:63 79/0")
    assert "SECRET" not in failure.message and "redis://:***@h:63 79/0" in failure.message
    failure = describe(redis.AuthenticationError("invalid password"), f"unix:///s.sock?password={PW}")
    assert "SECRET" not in failure.message and failure.reason == "AuthenticationFailed"


# -- RedisTarget --------------------------------------------------------------------------

MALFORMED = [
    # (URL, words the problem must contain)
    (f"redis://:{PW}@hostq:63 79/0", "port is not a number"),
    (f"redis://:{PW}@hostq:99999/0", "port is out of range"),
    (f"redis://:{PW}@hostq/abc", "database number"),
    (f"redis://:{PW}@hostq/-1", "must not be negative"),
    (f"redis://hostq/0?db=abc&password={PW}", "'db'"),
    (f"redis://hostq/0?nonsense=1&password={PW}", "query parameter 1 is not"),
    (f"redis://hostq/0?Password={PW}", "case-sensitive: 'password'"),
    (f"redis://hostq/0?pasword={PW}", "did you mean 'password'"),
    (f"redis://hostq/0?sentinel_password={PW}", "query parameter 1 is not"),
    (f"redis://:{PW}@hostq/0?ssl_password={PW}", "does not apply to redis://"),
    (f"redis://:{PW}@hostq/0?retry=3", "cannot be set in a URL"),
    (f"redis://:{PW}@hostq/0?credential_provider=x", "cannot be set in a URL"),
    (f"redis://:{PW}@hostq/0?socket_timeout=-1", "'socket_timeout'"),
    (f"redis://:{PW}@hostq/0?socket_timeout=nan", "'socket_timeout'"),
    (f"redis://:{PW}@hostq/0?max_connections=0", "'max_connections'"),
    (f"rediss://:{PW}@hostq/0?ssl_cert_reqs=maybe", "'ssl_cert_reqs'"),
    (f"rediss://:{PW}@hostq/0?ssl_min_version=99", "'ssl_min_version'"),
    (f"http://:{PW}@hostq:6379", "unsupported scheme"),
    (f"redis+sentinel://:{PW}@hostq:26379,h2:26379/", "master name is missing"),
    (f"redis+sentinel://:{PW}@hostq:26379,h2:26379", "master name is missing"),
    (f"redis+sentinel://:{PW}@hostq:26379,,h2/m", "sentinel address is empty"),
    (f"redis+sentinel://:{PW}@hostq:26379,h2:2x/m", "sentinel address: the port is not a number"),
    (f"redis+sentinel://:{PW}@hostq:26379/m/x/y", "/<master>/<db>"),
    (f"redis+sentinel://:{PW}@hostq:26379/m/zero", "database number"),
    (f"redis+sentinel://hostq/m?sentinel_password={PW}&nonsense=1", "query parameter 1 is not"),
    (f"redis+sentinel://:{PW}@hostq/m?ssl_password={PW}", "does not apply to redis://"),
    (f"redis+cassandra://:{PW}@hostq:6379/0", "unsupported scheme"),
    (f"REDIS://:{PW}@hostq/0", "lower-case"),
    (f":{PW}@hostq:6379", "does not start with a scheme"),
    (f"hostq:6379?password={PW}", "does not start with a scheme"),
    (f" redis://:{PW}@hostq/0", "starts with whitespace"),
    ("", "empty"),
    ("   ", "empty"),
    ("garbage", "does not start with a scheme"),
    (f"redis://:{PW}@hostq\x00x/0", "control characters"),
    (f"redis://:{PW}\udcff@hostq/0", "not UTF-8"),
    (f"redis://:{PW}@hostq..x/0", "host name is not valid"),
    (f"redis://:{PW}@[::1/0", "IPv6"),
    (f"redis://:{PW}/x@hostq/0", "port is not a number"),
    (f"redis://:1234/{PW}@hostq/0", "ambiguous"),  # urlsplit: port 1234, no password
    (f"unix://:{PW}@/run/redis@1.sock", "ambiguous"),
    (f"unix://:{PW}@", "socket path is missing"),
]


KNOWN_WORDS = {"redis", "rediss", "unix", "sock", "password", "ssl_password", "socket_timeout", "max_connections",
               "ssl_cert_reqs", "ssl_min_version", "credential_provider", "retry", "sentinel"}


@pytest.mark.parametrize(("url", "words"), MALFORMED)
def test_unusable_urls_raise_only_connection_config_error(url: str, words: str) -> None:
    with pytest.raises(ConnectionConfigError) as caught:
        RedisTarget(url).client()
    exc = caught.value
    assert words in exc.problem
    assert "SECRET" not in str(exc) and "SECRET" not in exc.problem
    # The problem quotes no part of the URL (it may come from a Secret), only names of
    # options and schemes it was compared with.
    assert not set(re.findall(r"\w{4,}", url)) - KNOWN_WORDS & set(re.findall(r"\w{4,}", exc.problem)), exc.problem
    # No redis-py or urllib text (which may quote the URL) chained into a traceback.
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)
    assert "SECRET" not in str(exc.about('Secret "ns/s" key "url"'))
    assert str(exc.about('Secret "ns/s" key "url"')) == f'Secret "ns/s" key "url": {exc.problem}'


@pytest.mark.parametrize("url", [
    f"redis://:{PW}@localhost:6379/0", f"redis://app:{PW}@localhost/3", f"redis://localhost/0?password={PW}",
    f"redis://localhost:6379/0?password={quote(PW + '&#', safe='')}", f"rediss://app:{PW}@localhost/0?ssl_password=x",
    f"unix:///run/redis.sock?password={PW}&db=2", f"unix://:{PW}@/run/redis.sock", "redis://", "redis://localhost",
    "redis://localhost:6379/", "redis://localhost/0?dial_timeout=3s&pool_size=5", "redis://[::1]:6379/0",
    "redis://localhost:6379/0?username=app@corp&client_name=x", f"redis://:{PW}@localhost:6379/0\n",
    "redis://localhost/0?socket_timeout=2.5&health_check_interval=10&max_connections=5",
    f"redis+sentinel://app:{PW}@h1,h2:26380,[::1]:26381/mymaster/2?sentinel_password={PW}&socket_timeout=3",
    f"rediss+sentinel://h1:26379/mymaster?ssl_ca_certs=/ca.crt&sentinel_username=s&sentinel_password={PW}",
])
def test_usable_urls_still_work(url: str) -> None:
    RedisTarget(url).client()


# -- properties ---------------------------------------------------------------------------

LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
# A password in user:password@ may hold anything but "=" (with a "?" before it, the "@"
# looks like a query value's) and characters that start a URL in text (space, quotes,
# brackets, "=", ","), the two ambiguities client() refuses and redact() does not untangle.
USERINFO_PW = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/?#@:!$%^*)]~;+&-_.", max_size=12)
QUERY_PW = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/?#@:!$%^*()[]~;+=,' -_.", max_size=12)
PROSE = st.text(LOWER + " :@/?=&#%.,-\"'()[]", max_size=30)
SCHEME = st.sampled_from(["redis", "rediss", "unix", "redis+sentinel", "REDIS", "valkey", "http"])
NAME = st.text(LOWER + "._-", max_size=8)
HOST = st.one_of(st.from_regex(r"[a-z0-9.-]{0,12}", fullmatch=True), st.just("[::1]"), st.just("h1:1,h2:2"))
PORT = st.one_of(st.just(""), st.integers(0, 70000).map(lambda p: f":{p}"),
                 st.text(LOWER + " ", max_size=5).map(":".__add__))
PATH = st.text(LOWER + "/._-", max_size=10).map(lambda p: "/" + p if p else "")
PARAMS = st.lists(st.tuples(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), st.text(LOWER, max_size=5)), max_size=3)
SECRET_KEY = st.sampled_from(["password", "Password", "PASSWORD", "pass%77ord", "%70assword", "ssl_password",
                              "sentinel_password", "pasword", "auth_token", "pass+word"])


def _query(params: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in params if "pass" not in k and "auth" not in k)


def _secret(middle: str) -> str:
    return f"SECRET{middle}SECRET"


@st.composite
def userinfo_urls(draw: st.DrawFn) -> str:
    password = _secret(draw(USERINFO_PW))
    if draw(st.booleans()):
        password = quote(password, safe="")
    query = _query(draw(PARAMS))
    return (f"{draw(SCHEME)}://{draw(NAME)}:{password}@{draw(HOST)}{draw(PORT)}{draw(PATH)}"
            + (f"?{query}" if query else ""))


@st.composite
def query_urls(draw: st.DrawFn) -> str:
    password = _secret(draw(QUERY_PW))
    if draw(st.booleans()):
        password = quote(password, safe="")
    before, after = _query(draw(PARAMS)), _query(draw(PARAMS))
    user = draw(st.sampled_from(["", "app@", ":@"]))
    return (f"{draw(SCHEME)}://{user}{draw(HOST)}{draw(PORT)}{draw(PATH)}?{before + '&' if before else ''}"
            f"{draw(SECRET_KEY)}={password}{'&' + after if after else ''}")


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)  # loaded CI
@given(url=st.one_of(userinfo_urls(), query_urls()), before=PROSE, after=PROSE)
def test_no_part_of_a_password_is_ever_shown(url: str, before: str, after: str) -> None:
    assert "SECRET" not in redact(url)
    assert "SECRET" not in redact(f"{before} {url} {after}")
    try:
        RedisTarget(url).client()
    except ConnectionConfigError as exc:
        assert "SECRET" not in str(exc) and "SECRET" not in exc.problem


@settings(max_examples=300)
@given(st.text(st.characters(exclude_categories=()), max_size=200))
def test_redact_never_raises_and_shows_printable_text(text: str) -> None:
    shown = redact(text)
    assert isinstance(shown, str)
    shown.encode("utf-8")  # printable anywhere: no lone surrogates


@settings(max_examples=300, deadline=None)  # builds clients: slow on a loaded machine
@given(tail=st.text(st.characters(exclude_categories=()), max_size=60),
       scheme=st.sampled_from(["redis://", "rediss://", "unix://", "redis://:SECRET@", "redis://h/0?password=SECRET",
                               "redis+sentinel://:SECRET@", "rediss+sentinel://h/m?sentinel_password=SECRET&"]))
def test_client_raises_nothing_but_connection_config_error(tail: str, scheme: str) -> None:
    try:
        RedisTarget(scheme + tail).client()
    except ConnectionConfigError as exc:
        assert "SECRET" not in str(exc) and "SECRET" not in exc.problem
