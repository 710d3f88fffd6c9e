"""tls_problem: redis-py's connection errors wrapping an ssl error, in words that name
the certificate and the setting to look at."""

from __future__ import annotations

import ssl

import pytest
import redis

from redistreams.engine.errors import describe
from redistreams.tls import tls_problem, with_options


def wrapped(inner: BaseException) -> redis.ConnectionError:
    """As redis-py raises it: its ConnectionError, the ssl error as the context."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise redis.ConnectionError("Error 1 connecting to 127.0.0.1:6380.") from exc
    except redis.ConnectionError as outer:
        return outer


def verify_error(message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {message}")
    error.verify_message = message
    return error


def ssl_error(reason: str, cls: type[ssl.SSLError] = ssl.SSLError) -> ssl.SSLError:
    error = cls(1, f"[SSL: {reason}] ...")
    error.reason = reason
    return error


@pytest.mark.parametrize("inner, words", [
    (verify_error("self-signed certificate in certificate chain"), "not signed by the CA (ssl_ca_certs"),
    (verify_error("IP address mismatch, certificate is not valid for '10.0.0.1'."), "does not name the host"),
    (verify_error("Hostname mismatch, certificate is not valid for 'redis'."), "does not name the host"),
    (verify_error("certificate has expired"), "the server's certificate has expired"),
    (ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED"), "requires a client certificate"),
    (ssl_error("SSLV3_ALERT_CERTIFICATE_EXPIRED"), "it has expired"),
    (ssl_error("TLSV1_ALERT_UNKNOWN_CA"), "not issued by a CA it trusts"),
    (ssl_error("WRONG_VERSION_NUMBER"), "does not speak TLS on this port"),
    (ssl_error("KEY_VALUES_MISMATCH"), "does not belong to the client certificate"),
    (ssl_error("UNEXPECTED_EOF_WHILE_READING", ssl.SSLEOFError), "closed the connection during TLS set-up"),
    (TimeoutError("_ssl.c:989: The handshake operation timed out"), "speaking plain text"),
])
def test_each_tls_failure_is_named(inner: BaseException, words: str) -> None:
    exc = wrapped(inner)
    assert words in (tls_problem(exc) or "")
    failure = describe(exc, "rediss://:SECRET@cache:6380/0")
    assert failure.reason == "TLSFailed" and words in failure.message and "SECRET" not in failure.message


def test_other_failures_are_not_tls() -> None:
    assert tls_problem(wrapped(ConnectionRefusedError(111, "Connection refused"))) is None
    assert describe(wrapped(ConnectionRefusedError(111, "refused"))).reason == "RedisUnavailable"


def test_options_replace_those_of_the_same_name() -> None:
    url = "rediss://h:6380/0?ssl_ca_certs=/old&db=1#x"
    assert with_options(url, {"ssl_ca_certs": "/new ca"}) == "rediss://h:6380/0?db=1&ssl_ca_certs=/new%20ca#x"
    assert with_options("rediss://h/0", {"ssl_certfile": "/c"}) == "rediss://h/0?ssl_certfile=/c"
