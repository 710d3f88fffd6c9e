"""probe.ProbeURL reads a URL exactly as the engine's path does (connection.py's checks,
redis-py's parse_url, sentinel.py, cluster.py), or not at all.

``redistreams wait`` answers through the probe without redis-py; a URL read differently
there would reach another server, log in as someone else, or answer for a URL the engine
refuses. So every URL of a generated corpus that the probe reads must pass the engine's
checks and mean the same host, port, socket, database, credentials, TLS files and
timeouts; the plain forms people use must be read (else wait stays slow).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from redistreams.cluster import cluster_seeds
from redistreams.connection import ConnectionConfigError, _checked, _parse_url
from redistreams.probe import SENTINEL_PORT, Endpoint, ProbeURL
from redistreams.sentinel import SentinelURL

CLI_TIMEOUT, CONNECT_TIMEOUT = 7.0, 5.0
CERT_REQS = {"none": 0, "optional": 1, "required": 2}
FALSE_STRINGS = ("0", "F", "FALSE", "N", "NO")  # redis-py's to_bool
TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path")


def expected_endpoint(kwargs: dict[str, Any], tls: bool, timeouts: dict[str, Any]) -> Endpoint:
    """What redis-py's keyword arguments (plus the CLI's timeouts) mean, as an Endpoint."""
    check = kwargs.get("ssl_check_hostname", True)
    if isinstance(check, str):
        check = check.upper() not in FALSE_STRINGS
    return Endpoint(
        host=kwargs.get("host", "localhost"), port=kwargs.get("port", 6379), path=kwargs.get("path"),
        username=kwargs.get("username"), password=kwargs.get("password"), db=kwargs.get("db", 0), tls=tls,
        tls_files=tuple((n, kwargs[n]) for n in TLS_FILES if n in kwargs),
        cert_reqs=CERT_REQS[kwargs.get("ssl_cert_reqs", "required")], check_hostname=bool(check),
        socket_timeout=kwargs.get("socket_timeout", timeouts["socket_timeout"]),
        connect_timeout=kwargs.get("socket_connect_timeout", timeouts["socket_connect_timeout"]),
    )


def engine_reading(url: str) -> ProbeURL:
    """The URL as the engine's path reads it; ConnectionConfigError when it refuses it."""
    timeouts = {"socket_timeout": CLI_TIMEOUT, "socket_connect_timeout": CONNECT_TIMEOUT}
    if url.startswith(("redis+sentinel://", "rediss+sentinel://")):
        spec = SentinelURL.parse(url)
        master = expected_endpoint({**spec.master, "host": "", "port": 0}, spec.tls, timeouts)
        sentinel_kwargs = {"username": None, "password": None, **spec.sentinel}
        sentinel = expected_endpoint({**sentinel_kwargs, "host": "", "port": 0}, spec.tls, timeouts)
        return ProbeURL(master, sentinels=spec.sentinels, service=spec.service, sentinel=sentinel)
    if url.startswith(("redis+cluster://", "rediss+cluster://")):
        checked, seeds = cluster_seeds(url)
        kwargs = _parse_url(checked)
        return ProbeURL(expected_endpoint(kwargs, checked.startswith("rediss"), timeouts), seeds=tuple(seeds))
    checked = _checked(url)
    return ProbeURL(expected_endpoint(_parse_url(checked), checked.startswith("rediss"), timeouts))


def comparable(read: ProbeURL) -> ProbeURL:
    """Sentinel and cluster URLs: the host of the settings template is not used."""
    if read.sentinels:
        assert read.sentinel is not None
        return ProbeURL(read.endpoint.at("", 0), read.sentinels, read.service, read.sentinel.at("", 0))
    return read


def probe_reading(url: str) -> ProbeURL | None:
    return ProbeURL.read(url, socket_timeout=CLI_TIMEOUT, connect_timeout=CONNECT_TIMEOUT)


def assert_same_meaning(url: str) -> bool:
    """True when the probe reads ``url`` (and then it means what the engine reads)."""
    read = probe_reading(url)
    if read is None:
        return False
    try:
        engine = engine_reading(url)
    except ConnectionConfigError as exc:
        pytest.fail(f"the probe reads {url!r}, which the engine refuses: {exc}")
    assert comparable(read) == comparable(engine), url
    return True


COMMON = [
    "redis://127.0.0.1:6379/0",
    "redis://localhost",
    "redis://redis-master.cache.svc.cluster.local:6379/2",
    "redis://:s3cret@redis:6379/0",
    "redis://app:p%40ss%2Fword@redis:6379/0",
    "redis://redis:6379/0?password=pw&username=app",
    "redis://[::1]:6380/1",
    "redis://127.0.0.1:6379/0\n",  # a Secret written with echo
    "redis://127.0.0.1:6379/0?socket_timeout=2.5&socket_connect_timeout=1",
    "rediss://redis:6380/0",
    "rediss://app:pw@redis:6380/0?ssl_ca_certs=/etc/redis/ca.crt",
    "rediss://redis:6380/0?ssl_ca_certs=/tls/ca.crt&ssl_certfile=/tls/tls.crt&ssl_keyfile=/tls/tls.key",
    "rediss://10.0.0.7:6380/0?ssl_cert_reqs=none",
    "rediss://10.0.0.7:6380/0?ssl_check_hostname=false&ssl_ca_certs=/ca.pem",
    "redis://redis:6379/0?dial_timeout=5s&read_timeout=3s&pool_size=10",  # shared with a Go service
    "unix:///var/run/redis/redis.sock",
    "unix:///tmp/redis.sock?db=3",
    "unix://:pw@/tmp/redis.sock",
    "unix:///tmp/redis.sock?password=pw",
    "redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster",
    "redis+sentinel://:pw@s1,s2/mymaster/2?sentinel_password=sp",
    "redis+sentinel://app:pw@[::1]:5000/main/0?sentinel_username=su&sentinel_password=sp",
    "rediss+sentinel://s1:26379/mymaster/0?ssl_ca_certs=/ca.pem",
    "redis+cluster://n1:7000,n2:7001,n3:7002",
    "redis+cluster://:pw@n1:7000/0",
    "rediss+cluster://n1:7000,n2:7000?ssl_ca_certs=/ca.pem",
]


@pytest.mark.parametrize("url", COMMON)
def test_the_forms_people_use_are_read_as_the_engine_reads_them(url: str) -> None:
    assert assert_same_meaning(url), f"the probe leaves {url!r} to the engine"


# Pieces of URLs, valid and not: every combination the probe reads must mean the same.
USERINFO = ["", "user:pw@", ":pw@", "user@", ":p%40ss@", "u%3Au:p%2Fw@", "us.er_~-:pa.ss~_-@", "a@b:c@",
            "user:pw:x@", ":@", "user:@", "u:p w@", "u:p/w@", "u:p?w@", "u:p#w@", "u:%zz@", "u:%ff%fe@"]
HOSTS = ["127.0.0.1:6380", "localhost", "Redis.Example.COM:7000", "[::1]:6390", "[::1]", "h:0", "h:65535",
         "h:65536", "h:", "h_1.svc:1", "-a.b:1", "a..b:1", "x" * 64 + ":1", "h:6379x", "[::1:6390", "h:+1", ""]
PATHS = ["", "/", "/0", "/3", "/01", "/x", "/0/", "/%30", "/-1", "/ 1", "/00000000000000000001"]
QUERIES = ["", "?db=2", "?db=-2", "?db=x", "?socket_timeout=2.5", "?socket_timeout=.5", "?socket_timeout=0",
           "?socket_connect_timeout=0.1", "?password=q%26w", "?password=a+b", "?username=u&password=p",
           "?username=u", "?ssl_ca_certs=/tmp/ca.pem", "?ssl_cert_reqs=none", "?ssl_cert_reqs=NONE",
           "?ssl_cert_reqs=optional", "?ssl_check_hostname=false", "?ssl_check_hostname=No",
           "?ssl_check_hostname=y", "?ssl_check_hostname=maybe", "?db=2&db=3", "?protocol=3", "?dial_timeout=1",
           "?socket_timeout=nan", "?socket_timeout=1e3", "?ssl_certfile=/c.pem&ssl_keyfile=/k.pem",
           "?ssl_keyfile=/k.pem", "?db=", "?sentinel_password=x", "?Password=x", "?password", "?&", "#frag",
           "?ssl_ca_path=/etc/ssl/certs", "?ssl_ca_certs=%2Ftmp%2Fca.pem", "?password=%E2%82%AC",
           "?dial_timeout=5s&pool_size=10", "?client_name=x&db=1", "?read_timeout=3s&read_timeout=4s",
           "?protocol=3&password=p", "?identitysuffix=a%2Fb"]
SCHEMES = ["redis://", "rediss://", "unix://", "REDIS://", "redis:", "http://", " redis://"]
SOCKETS = ["/tmp/r.sock", "/var/run/redis/redis-server.sock", "/tmp/r%20s.sock", "", "/", "tmp/r.sock", "//x"]


def corpus(size: int = 4000) -> list[str]:
    rng = random.Random(14)
    urls = set()
    tcp = list(itertools.product(SCHEMES, USERINFO, HOSTS, PATHS, QUERIES))
    for scheme, userinfo, host, path, query in rng.sample(tcp, size):
        urls.add(f"{scheme}{userinfo}{host}{path}{query}")
    # mostly valid pieces, so that many URLs are read and compared
    likely = list(itertools.product(SCHEMES[:2], USERINFO[:8], HOSTS[:7], PATHS[:6], QUERIES[:22]))
    for scheme, userinfo, host, path, query in rng.sample(likely, size // 2):
        urls.add(f"{scheme}{userinfo}{host}{path}{query}")
    for userinfo, sock, query in itertools.product(USERINFO, SOCKETS, QUERIES):
        urls.add(f"unix://{userinfo}{sock}{query}")
    for scheme in ("redis+sentinel://", "rediss+sentinel://"):
        for userinfo, hosts, path, query in itertools.product(
                USERINFO[:8], ["s1", "s1:5000,S2:5001", "[::1]:5000,s2", "s1,,s2", "s1:x", "s1:0"],
                ["/m", "/m/2", "", "/", "/m/x", "/m%20x/1", "/m/1/2", "/M.a-1"],
                ["", "?sentinel_password=sp", "?sentinel_username=su&sentinel_password=sp", "?sentinel_username=su",
                 "?ssl_ca_certs=/ca.pem&socket_timeout=3", "?db=4", "?password=mp"]):
            urls.add(f"{scheme}{userinfo}{hosts}{path}{query}")
    for scheme in ("redis+cluster://", "rediss+cluster://"):
        for userinfo, hosts, path, query in itertools.product(
                USERINFO[:8], ["n1:7000", "n1:7000,N2:7001", "[::1]:7000", "n1", "n1:7000,", "n1:99999"],
                ["", "/", "/0", "/1"], ["", "?db=0", "?db=1", "?ssl_ca_certs=/ca.pem", "?socket_timeout=1"]):
            urls.add(f"{scheme}{userinfo}{hosts}{path}{query}")
    return sorted(urls)


def test_every_url_the_probe_reads_means_what_the_engine_reads() -> None:
    urls = corpus()
    read = [url for url in urls if assert_same_meaning(url)]
    # Not a vacuous pass: many of each form are read (and compared); most pieces are invalid.
    for scheme in ("redis://", "rediss://", "unix://", "redis+sentinel://", "rediss+sentinel://", "redis+cluster://",
                   "rediss+cluster://"):
        assert sum(url.startswith(scheme) for url in read) >= 50, scheme


@pytest.mark.parametrize("url", [
    "redis://u:p/w@h:6379/0",  # ambiguous: the engine explains it
    "redis://h:6379/0?socket_keepalive=true",  # settings the probe does not apply
    "redis://h:6379/0?health_check_interval=5",
    "redis://h:6379/0#x",
    "redis+sentinel://s1:26379",  # no master name
    "redis+cluster://n1:7000/1",  # a cluster has only db 0
    "redis://h:6379/0?ssl_ca_certs=/ca.pem",  # TLS options on redis://: the engine refuses, naming it
    "redis://héte:6379/0",
    "redis://user@h:6379/0",  # AUTH with a user alone
])
def test_other_urls_are_left_to_the_engine(url: str) -> None:
    assert probe_reading(url) is None


def test_timeouts_come_from_the_cli_unless_the_url_sets_them() -> None:
    read = ProbeURL.read("redis://h/0", socket_timeout=2.0)
    assert read is not None and read.endpoint.socket_timeout == 2.0 and read.endpoint.connect_timeout == 5.0
    read = ProbeURL.read("redis://h/0?socket_timeout=3&socket_connect_timeout=4", socket_timeout=2.0)
    assert read is not None and (read.endpoint.socket_timeout, read.endpoint.connect_timeout) == (3.0, 4.0)
    sentinel = ProbeURL.read("redis+sentinel://s1/m", socket_timeout=2.0)
    assert sentinel is not None and sentinel.sentinels == (("s1", SENTINEL_PORT),)
    assert sentinel.sentinel is not None and sentinel.sentinel.socket_timeout == 2.0
