"""redis+sentinel:// URLs read into sentinel addresses, the master's name and two sets
of connection settings (the master's and the sentinels')."""

from __future__ import annotations

from redistreams.connection import redact
from redistreams.sentinel import DEFAULT_PORT, SentinelURL


def test_hosts_master_db_and_both_credentials() -> None:
    spec = SentinelURL.parse("redis+sentinel://app:pw%40x@h1,h2:26380,[::1]:26381/my%2Fmaster/2"
                             "?sentinel_username=watch&sentinel_password=spw&socket_timeout=3")
    assert spec.sentinels == (("h1", DEFAULT_PORT), ("h2", 26380), ("::1", 26381))
    assert spec.service == "my/master" and not spec.tls
    assert spec.master["username"] == "app" and spec.master["password"] == "pw@x"
    assert spec.master["db"] == 2 and spec.master["socket_timeout"] == 3.0
    assert spec.sentinel == {"username": "watch", "password": "spw", "socket_timeout": 3.0}
    assert "pw" not in repr(spec)


def test_no_sentinel_credentials_unless_given_and_db_from_the_query() -> None:
    spec = SentinelURL.parse("redis+sentinel://:pw@h1:26379/mymaster?db=4")
    assert spec.master["db"] == 4 and spec.master["password"] == "pw"
    assert "password" not in spec.sentinel and "username" not in spec.sentinel


def test_tls_to_the_sentinels_and_the_master() -> None:
    spec = SentinelURL.parse("rediss+sentinel://h1/mymaster?ssl_ca_certs=/etc/ca.crt&ssl_check_hostname=false")
    assert spec.tls and spec.master["ssl"] is True and spec.sentinel["ssl"] is True
    assert spec.master["ssl_ca_certs"] == spec.sentinel["ssl_ca_certs"] == "/etc/ca.crt"
    assert spec.sentinel["ssl_check_hostname"] is False


def test_both_passwords_are_masked() -> None:
    shown = redact("rediss+sentinel://app:SECRET1@h1:26379,h2/m/0?sentinel_password=SECRET2&db=0")
    assert shown == "rediss+sentinel://app:***@h1:26379,h2/m/0?sentinel_password=***&db=0"
