"""TLS to Redis: what a failed handshake means, and certificates handed over as PEM text.

redis-py reports a refused certificate as a ``ConnectionError`` whose text is OpenSSL's;
``tls_problem`` finds the ``ssl`` error underneath and says which side's certificate
failed and which setting to look at. ``TLSMaterial`` holds the PEM text of a Secret's
``ca.crt``, ``tls.crt`` and ``tls.key`` and writes it, once, to files only this process
can read (redis-py loads certificates from files), returning the URL options naming them.
Neither the text nor the file paths are ever shown: the operator names the Secret.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from urllib.parse import quote

# The keys of a kubernetes.io/tls Secret (and cert-manager's), mapped to redis-py options.
SECRET_KEYS = {"ca.crt": "ssl_ca_certs", "tls.crt": "ssl_certfile", "tls.key": "ssl_keyfile"}

_CLIENT_CERT = "the client certificate (ssl_certfile and ssl_keyfile, or the Secret's tls.crt and tls.key)"
_CA = "the CA (ssl_ca_certs, or the Secret's ca.crt)"


def tls_problem(exc: BaseException) -> str | None:
    """What went wrong in TLS, in words naming the certificate and the setting, or None
    when ``exc`` (or what it wraps) is not a TLS failure."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        found = _describe(error)
        if found:
            return found
        error = error.__cause__ or error.__context__
    return None


def _describe(error: BaseException) -> str | None:
    if isinstance(error, ssl.SSLCertVerificationError):
        detail = error.verify_message or "verification failed"
        if "mismatch" in detail:
            return (f"the server's certificate does not name the host in the URL ({detail}); connect by a "
                    "name the certificate lists")
        if "expired" in detail:
            return "the server's certificate has expired"
        return f"the server's certificate is not signed by {_CA}: {detail}"
    text = str(error)
    if isinstance(error, ssl.SSLError):
        reason = (error.reason or "").upper()
        if "CERTIFICATE_REQUIRED" in reason:
            return f"the server requires a client certificate: set {_CLIENT_CERT}"
        if "CERTIFICATE_EXPIRED" in reason:
            return f"the server refused {_CLIENT_CERT}: it has expired"
        if any(word in reason for word in ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN")):
            return f"the server refused {_CLIENT_CERT}: not issued by a CA it trusts"
        if "KEY_VALUES_MISMATCH" in reason:
            return "the client key (ssl_keyfile, tls.key) does not belong to the client certificate"
        if reason in ("PEM_LIB", "NO_START_LINE") or "PEM" in reason:
            return "the client certificate or key is not PEM text (or its password is wrong)"
        if "WRONG_VERSION_NUMBER" in reason or "RECORD_LAYER" in reason or "PACKET_LENGTH_TOO_LONG" in reason:
            return "the server does not speak TLS on this port (use redis:// for a plain-text port)"
        if isinstance(error, ssl.SSLEOFError) or "EOF" in reason:
            return (f"the server closed the connection during TLS set-up: it most likely refused {_CLIENT_CERT} "
                    "(missing, expired, or not issued by a CA it trusts)")
        return f"TLS failed: {error.reason or text}"
    if isinstance(error, TimeoutError) and "handshake" in text:
        return "no TLS handshake in time: is the server speaking plain text on this port? (then use redis://)"
    return None


@dataclass(frozen=True)
class TLSMaterial:
    """PEM text of a CA, a client certificate and its key (each optional), as read from
    a Secret. Hashable, so a connection cache can key on it; ``repr`` shows no text."""

    ca: bytes | None = field(default=None, repr=False)
    cert: bytes | None = field(default=None, repr=False)
    key: bytes | None = field(default=None, repr=False)

    def __bool__(self) -> bool:
        return any((self.ca, self.cert, self.key))

    def problem(self) -> str | None:
        """Why this material cannot be used, without quoting it; None when fine."""
        if bool(self.cert) != bool(self.key):
            return "tls.crt and tls.key go together: the Secret holds only one of them"
        for name, data in (("ca.crt", self.ca), ("tls.crt", self.cert)):
            if data is not None and b"-----BEGIN CERTIFICATE-----" not in data:
                return f"{name} is not a PEM certificate"
        if self.key is not None and b"PRIVATE KEY-----" not in self.key:
            return "tls.key is not a PEM private key"
        return None

    def url_options(self) -> dict[str, str]:
        """The redis-py options naming files that hold this material (written on first
        use, in a directory only this user can enter, each file readable by it alone)."""
        return _store.files(self)


def with_options(url: str, options: dict[str, str]) -> str:
    """``url`` with these query options, replacing any of the same name it had."""
    base, _, fragment = url.partition("#")
    base, sep, query = base.partition("?")
    kept = [p for p in query.split("&") if p and p.partition("=")[0] not in options] if sep else []
    kept += [f"{name}={quote(value, safe='/')}" for name, value in options.items()]
    return f"{base}?{'&'.join(kept)}" + (f"#{fragment}" if fragment else "")


class _FileStore:
    """One private temporary directory per process; one sub-directory per material,
    removed at exit."""

    def __init__(self) -> None:
        self._root: str | None = None
        self._made: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def files(self, material: TLSMaterial) -> dict[str, str]:
        digest = hashlib.sha256(b"\0".join(d or b"" for d in (material.ca, material.cert, material.key))).hexdigest()
        with self._lock:
            if digest in self._made:
                return self._made[digest]
            if self._root is None:
                self._root = tempfile.mkdtemp(prefix="redistreams-tls-")  # mode 0700
                atexit.register(shutil.rmtree, self._root, True)
            directory = os.path.join(self._root, digest[:16])
            os.makedirs(directory, mode=0o700, exist_ok=True)
            options: dict[str, str] = {}
            for (name, option), data in zip(SECRET_KEYS.items(), (material.ca, material.cert, material.key)):
                if data is None:
                    continue
                path = os.path.join(directory, name)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                options[option] = path
            self._made[digest] = options
            return options


_store = _FileStore()
