"""A real Kubernetes control plane (etcd + kube-apiserver) on loopback for tests.

Plain Python, no pytest inside: usable from fixtures, scripts or a REPL::

    with ControlPlane() as cp:
        cp.cluster.request("GET", "/version").json
        token = cp.cluster.create_token("ns", "my-sa")

What it does:

* finds the binaries (env ``KUBE_APISERVER`` and ``ETCD``, else it runs
  ``hack/control-plane.sh --print-env``, which builds them once into a cache);
* starts etcd on free loopback ports with its data in a temporary directory
  (``/dev/shm`` when possible) and ``--unsafe-no-fsync``;
* generates a CA, a serving certificate (127.0.0.1, localhost) and a
  service-account RSA key pair (with ``cryptography`` if installed, else the
  ``openssl`` command);
* starts kube-apiserver with TLS, RBAC, a static admin token in
  ``system:masters``, ``--disable-admission-plugins=ServiceAccount`` and the
  service-account issuer flags; waits for ``/readyz``;
* writes an admin kubeconfig (JSON, which is valid YAML).

There is no controller-manager, scheduler or kubelet: no garbage collection,
namespaces never finish deleting, no default ServiceAccounts, no Pods run.

``Cluster`` is the small client-side view (server URL, CA, token or client
certificate) used by tests; ``Cluster.from_kubeconfig`` reads an existing
cluster's kubeconfig instead (needs PyYAML for YAML files).

Only the standard library is required. Start one by hand (from the repository root)::

    python -m tests.support.controlplane
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import dataclasses
import datetime
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.net import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "hack" / "control-plane.sh"

READY_TIMEOUT = float(os.environ.get("REDISTREAMS_CP_READY_TIMEOUT", "120"))
LOG_TAIL_LINES = 40
WORKDIR_PREFIX = "redistreams-cp-"


class ControlPlaneError(RuntimeError):
    """The control plane could not be built, started or reached."""


class _PortTaken(Exception):
    """kube-apiserver lost the race for its free port."""


_KEEP_HINT = " (REDISTREAMS_CP_KEEP=1 keeps the work dir and its logs)"


# --------------------------------------------------------------------------
# HTTP client side
# --------------------------------------------------------------------------


@dataclasses.dataclass
class ApiResponse:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def raise_for_status(self) -> ApiResponse:
        if not self.ok:
            raise ControlPlaneError(f"HTTP {self.status}: {self.text[:500]}")
        return self


@dataclasses.dataclass
class Cluster:
    """How to reach one API server: URL, trust and credentials.

    ``ca_data`` is PEM bytes (None means the system trust store, unless
    ``insecure_skip_tls_verify``). Authenticate with ``token`` or with a
    client certificate (``client_cert_path`` plus ``client_key_path``).
    """

    server: str
    ca_data: bytes | None = None
    token: str | None = None
    client_cert_path: str | None = None
    client_key_path: str | None = None
    insecure_skip_tls_verify: bool = False
    kubeconfig_path: str | None = None
    _tmpdir: str | None = dataclasses.field(default=None, repr=False)

    # -- TLS -------------------------------------------------------------

    def ssl_context(self, with_client_cert: bool = True) -> ssl.SSLContext:
        if self.insecure_skip_tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data:
            ctx = ssl.create_default_context(cadata=self.ca_data.decode("ascii"))
        else:
            ctx = ssl.create_default_context()
        if with_client_cert and self.client_cert_path:
            ctx.load_cert_chain(self.client_cert_path, self.client_key_path)
        return ctx

    # -- requests --------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        anonymous: bool = False,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> ApiResponse:
        """One API call. ``body`` (dict/list) is sent as JSON.

        ``token`` overrides the cluster's credentials (e.g. a ServiceAccount
        token); ``anonymous`` sends none. Non-2xx answers are returned, not
        raised; use ``.raise_for_status()``.
        """
        url = self.server.rstrip("/") + path
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        use_cert = not anonymous and token is None
        bearer = token if token is not None else (None if anonymous else self.token)
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}),  # never send loopback traffic to a proxy
            urllib.request.HTTPSHandler(context=self.ssl_context(use_cert)),
        )
        try:
            with opener.open(req, timeout=timeout) as resp:
                return ApiResponse(resp.status, resp.read(), dict(resp.headers))
        except urllib.error.HTTPError as err:
            return ApiResponse(err.code, err.read(), dict(err.headers or {}))

    def get(self, path: str, **kw: Any) -> ApiResponse:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> ApiResponse:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> ApiResponse:
        return self.request("DELETE", path, **kw)

    def version(self) -> dict[str, Any]:
        return self.get("/version").raise_for_status().json

    def create_token(
        self,
        namespace: str,
        service_account: str,
        *,
        expiration_seconds: int = 3600,
        audiences: list[str] | None = None,
    ) -> str:
        """Mint a ServiceAccount token through the TokenRequest API."""
        return request_service_account_token(
            self,
            namespace,
            service_account,
            expiration_seconds=expiration_seconds,
            audiences=audiences,
        )

    def kubeconfig_for_token(self, token: str, path: str | os.PathLike[str]) -> str:
        """Write a kubeconfig for this server that authenticates with ``token``."""
        write_kubeconfig(path, self.server, self.ca_data, token=token,
                         insecure=self.insecure_skip_tls_verify)
        return str(path)

    # -- from a kubeconfig -------------------------------------------------

    @classmethod
    def from_kubeconfig(
        cls, path: str | os.PathLike[str] | None = None, context: str | None = None
    ) -> Cluster:
        """Read server, CA and credentials from a kubeconfig.

        ``path`` defaults to ``$KUBECONFIG`` (a ``:``-separated list is merged,
        first definition wins, as kubectl does) and then ``~/.kube/config``.
        Supports token, tokenFile and client certificates (inline or files);
        exec and auth-provider plugins are not supported.
        """
        paths = _kubeconfig_paths(path)
        merged: dict[str, dict[str, Any]] = {"clusters": {}, "users": {}, "contexts": {}}
        current = None
        base_dirs: dict[tuple[str, str], Path] = {}
        for p in paths:
            doc = _load_yaml_or_json(p) or {}
            current = current or doc.get("current-context")
            for kind in merged:
                for item in doc.get(kind) or []:
                    name = item.get("name")
                    if name is not None and name not in merged[kind]:
                        key = kind[:-1]  # cluster / user / context
                        merged[kind][name] = item.get(key) or {}
                        base_dirs[(kind, name)] = p.parent
        context = context or current
        if not context or context not in merged["contexts"]:
            raise ControlPlaneError(f"kubeconfig {paths}: no context {context!r}")
        ctx = merged["contexts"][context]
        cl_name, user_name = ctx.get("cluster"), ctx.get("user")
        cl = merged["clusters"].get(cl_name)
        if cl is None:
            raise ControlPlaneError(f"kubeconfig: context {context!r} names unknown cluster {cl_name!r}")
        user = merged["users"].get(user_name, {}) if user_name else {}
        cl_dir = base_dirs[("clusters", cl_name)]
        user_dir = base_dirs.get(("users", user_name), cl_dir)

        def rel(base: Path, p: str) -> str:
            return str((base / os.path.expanduser(p)).resolve())

        ca_data = None
        if cl.get("certificate-authority-data"):
            ca_data = base64.b64decode(cl["certificate-authority-data"])
        elif cl.get("certificate-authority"):
            ca_data = Path(rel(cl_dir, cl["certificate-authority"])).read_bytes()

        if "exec" in user or "auth-provider" in user:
            raise ControlPlaneError(
                "kubeconfig user uses an exec/auth-provider plugin; this test helper "
                "supports token, tokenFile and client certificates only"
            )
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(rel(user_dir, user["tokenFile"])).read_text().strip()

        tmpdir = None
        cert_path = key_path = None
        if user.get("client-certificate-data") or user.get("client-key-data"):
            tmpdir = tempfile.mkdtemp(prefix="redistreams-kubeconfig-")
            cert_path = os.path.join(tmpdir, "client.crt")
            key_path = os.path.join(tmpdir, "client.key")
            _write_private(cert_path, base64.b64decode(user.get("client-certificate-data", "")))
            _write_private(key_path, base64.b64decode(user.get("client-key-data", "")))
        if user.get("client-certificate"):
            cert_path = rel(user_dir, user["client-certificate"])
        if user.get("client-key"):
            key_path = rel(user_dir, user["client-key"])

        cluster = cls(
            server=cl["server"],
            ca_data=ca_data,
            token=token,
            client_cert_path=cert_path,
            client_key_path=key_path,
            insecure_skip_tls_verify=bool(cl.get("insecure-skip-tls-verify")),
            kubeconfig_path=str(paths[0]),
            _tmpdir=tmpdir,
        )
        if tmpdir:
            atexit.register(cluster.close)
        return cluster

    def close(self) -> None:
        """Remove temporary files made by ``from_kubeconfig``."""
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None


def request_service_account_token(
    cluster: Cluster,
    namespace: str,
    service_account: str,
    *,
    expiration_seconds: int = 3600,
    audiences: list[str] | None = None,
) -> str:
    """POST a TokenRequest for ``namespace/service_account`` and return the token.

    The API server enforces a minimum of 600 s for ``expiration_seconds``.
    """
    spec: dict[str, Any] = {"expirationSeconds": int(expiration_seconds)}
    if audiences:
        spec["audiences"] = list(audiences)
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
    path = (
        f"/api/v1/namespaces/{urllib.parse.quote(namespace)}"
        f"/serviceaccounts/{urllib.parse.quote(service_account)}/token"
    )
    resp = cluster.post(path, body)
    if not resp.ok:
        raise ControlPlaneError(
            f"TokenRequest for {namespace}/{service_account} failed: HTTP {resp.status}: {resp.text[:500]}"
        )
    return resp.json["status"]["token"]


def write_kubeconfig(
    path: str | os.PathLike[str],
    server: str,
    ca_data: bytes | None,
    *,
    token: str | None = None,
    name: str = "redistreams-test",
    user: str = "admin",
    insecure: bool = False,
) -> None:
    """Write a one-context kubeconfig (JSON, which kubectl and kopf read as YAML)."""
    cluster: dict[str, Any] = {"server": server}
    if ca_data:
        cluster["certificate-authority-data"] = base64.b64encode(ca_data).decode()
    if insecure:
        cluster["insecure-skip-tls-verify"] = True
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": user, "user": {"token": token} if token else {}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user}}],
        "current-context": name,
        "preferences": {},
    }
    _write_private(str(path), (json.dumps(doc, indent=2) + "\n").encode())


def _kubeconfig_paths(path: str | os.PathLike[str] | None) -> list[Path]:
    if path is not None:
        candidates = [Path(path)]
    elif os.environ.get("KUBECONFIG"):
        candidates = [Path(p) for p in os.environ["KUBECONFIG"].split(os.pathsep) if p]
    else:
        candidates = [Path.home() / ".kube" / "config"]
    found = [p.expanduser() for p in candidates if p.expanduser().is_file()]
    if not found:
        raise ControlPlaneError(f"no kubeconfig file found among {[str(p) for p in candidates]}")
    return found


def _load_yaml_or_json(path: Path) -> Any:
    text = path.read_text()
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        import yaml  # PyYAML, only needed for YAML kubeconfigs
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ControlPlaneError(f"{path} is YAML; install PyYAML to read it") from exc
    return yaml.safe_load(text)


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------
# binaries
# --------------------------------------------------------------------------


def find_binaries(build: bool = True) -> tuple[str, str]:
    """Return ``(kube_apiserver, etcd)`` paths.

    Uses env ``KUBE_APISERVER`` and ``ETCD`` when both are set; otherwise runs
    ``hack/control-plane.sh --print-env`` (which builds on first use, 10-25
    minutes; its progress goes to stderr). With ``build=False`` it only checks
    the cache (``--check``).
    """
    kas, etcd = os.environ.get("KUBE_APISERVER"), os.environ.get("ETCD")
    if kas and etcd:
        for p in (kas, etcd):
            if not os.access(p, os.X_OK):
                raise ControlPlaneError(f"{p} (from the environment) is not an executable file")
        return kas, etcd
    if not BUILD_SCRIPT.is_file():
        raise ControlPlaneError(f"set KUBE_APISERVER and ETCD, or provide {BUILD_SCRIPT}")
    args = ["bash", str(BUILD_SCRIPT), "--print-env" if build else "--check"]
    if not build:
        args.append("--print-env")
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=None, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"{' '.join(args)} failed with exit code {proc.returncode} (see its output above)"
        )
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        parts = shlex.split(line)
        if parts and parts[0] == "export":
            parts = parts[1:]
        for part in parts:
            key, sep, value = part.partition("=")
            if sep and key in ("KUBE_APISERVER", "ETCD"):
                found[key] = value
    if set(found) != {"KUBE_APISERVER", "ETCD"}:
        raise ControlPlaneError(f"unexpected output from {BUILD_SCRIPT}: {proc.stdout!r}")
    return found["KUBE_APISERVER"], found["ETCD"]


def binary_version(kube_apiserver: str) -> str:
    """``v1.35.4`` from ``kube-apiserver --version`` ("Kubernetes v1.35.4")."""
    out = subprocess.run([kube_apiserver, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip().split()[-1]


# --------------------------------------------------------------------------
# key material
# --------------------------------------------------------------------------


def _generate_pki(d: Path) -> None:
    """Write ca.crt, serving.crt/.key, sa.key/sa.pub into ``d``."""
    if importlib.util.find_spec("cryptography") is None:
        _generate_pki_openssl(d)
    else:
        _generate_pki_cryptography(d)


def _generate_pki_cryptography(d: Path) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2)

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "redistreams-test-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            ]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    (d / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (d / "serving.crt").write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    _write_private(str(d / "serving.key"), pem_key(srv_key))
    _write_private(str(d / "sa.key"), pem_key(sa_key))
    (d / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _generate_pki_openssl(d: Path) -> None:
    if not shutil.which("openssl"):
        raise ControlPlaneError("need the 'cryptography' package or the openssl command")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=redistreams-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", "serving.key", "-out", "serving.csr", "-subj", "/CN=kube-apiserver")
    (d / "serving.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
        "extendedKeyUsage=serverAuth\n"
    )
    run("x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "serving.crt", "-days", "2", "-extfile", "serving.ext")
    run("genrsa", "-out", "sa.key", "2048")
    run("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    for f in ("ca.key", "serving.csr", "serving.ext", "ca.srl"):
        with contextlib.suppress(FileNotFoundError):
            (d / f).unlink()


# --------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        data = path.read_bytes()[-64 * 1024:]
    except OSError:
        return "(no log)"
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    # Linux: the child gets SIGTERM when the thread that started it exits, so
    # a killed test run leaves no orphaned servers behind (etcd exits at once;
    # kube-apiserver, losing etcd at the same time, takes about 10 s).
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class ControlPlane:
    """etcd + kube-apiserver on loopback ports; see the module docstring.

    Attributes after ``start()``: ``server``, ``ca_path``, ``ca_data``,
    ``admin_token``, ``kubeconfig_path``, ``version``, ``cluster`` (admin
    ``Cluster``), ``workdir`` (temp dir with ``etcd.log`` and
    ``kube-apiserver.log``), ``startup_seconds``.

    ``die_with_parent`` makes the servers receive SIGTERM when the thread that
    called ``start()`` exits (Linux); start from a thread that lives as long as
    the control plane, e.g. the main thread of pytest. ``keep_workdir`` (or env
    ``REDISTREAMS_CP_KEEP=1``) keeps the temp dir and its logs after ``stop()``.
    """

    def __init__(
        self,
        kube_apiserver: str | None = None,
        etcd: str | None = None,
        *,
        ready_timeout: float = READY_TIMEOUT,
        extra_apiserver_args: list[str] | None = None,
        keep_workdir: bool | None = None,
        die_with_parent: bool = True,
    ) -> None:
        self._kas_bin = kube_apiserver
        self._etcd_bin = etcd
        self.ready_timeout = ready_timeout
        self.extra_apiserver_args = list(extra_apiserver_args or [])
        if keep_workdir is None:
            keep_workdir = os.environ.get("REDISTREAMS_CP_KEEP") == "1"
        self.keep_workdir = keep_workdir
        self.die_with_parent = die_with_parent

        self.workdir: Path | None = None
        self.server = ""
        self.ca_path = ""
        self.ca_data = b""
        self.admin_token = ""
        self.kubeconfig_path = ""
        self.version = ""
        self.etcd_url = ""
        self.startup_seconds = 0.0
        self.cluster: Cluster | None = None
        self._etcd: subprocess.Popen[bytes] | None = None
        self._kas: subprocess.Popen[bytes] | None = None
        self._logs: list[Any] = []

    # -- context manager ---------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> ControlPlane:
        if self._kas is not None:
            return self
        if not (self._kas_bin and self._etcd_bin):
            self._kas_bin, self._etcd_bin = find_binaries()
        self.version = binary_version(self._kas_bin)
        t0 = time.monotonic()
        base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
        _remove_stale_workdirs(base)
        self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX, dir=base))
        atexit.register(self.stop)
        try:
            (self.workdir / "owner.pid").write_text(f"{os.getpid()}\n")
            pki = self.workdir / "pki"
            pki.mkdir()
            _generate_pki(pki)
            self.ca_path = str(pki / "ca.crt")
            self.ca_data = (pki / "ca.crt").read_bytes()
            self.admin_token = secrets.token_urlsafe(32)
            tokens = self.workdir / "tokens.csv"
            _write_private(str(tokens), f'{self.admin_token},admin,admin-uid,"system:masters"\n'.encode())

            self._start_etcd()
            self._start_apiserver(pki, tokens)
            self.kubeconfig_path = str(self.workdir / "kubeconfig")
            write_kubeconfig(self.kubeconfig_path, self.server, self.ca_data, token=self.admin_token)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _popen(self, args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        assert self.workdir is not None
        log = open(self.workdir / log_name, "ab")
        self._logs.append(log)
        log.write(("+ " + shlex.join(args) + "\n").encode())
        log.flush()
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )

    def _start_etcd(self, attempts: int = 3) -> None:
        assert self.workdir is not None
        log = self.workdir / "etcd.log"
        for attempt in range(attempts):
            client, peer = free_port(), free_port()
            self.etcd_url = f"http://127.0.0.1:{client}"
            peer_url = f"http://127.0.0.1:{peer}"
            data_dir = self.workdir / f"etcd-data-{attempt}"
            self._etcd = self._popen([
                self._etcd_bin,
                "--name=redistreams-test",
                f"--data-dir={data_dir}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=redistreams-test={peer_url}",
                "--initial-cluster-state=new",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ], "etcd.log")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self._etcd.poll() is not None:
                    break
                if _etcd_healthy(self.etcd_url):
                    return
                time.sleep(0.1)
            self._terminate(self._etcd)
            self._etcd = None
            if "address already in use" not in _tail(log):
                break
        raise ControlPlaneError(f"etcd did not become healthy; tail of etcd.log{_KEEP_HINT}:\n{_tail(log)}")

    def _start_apiserver(self, pki: Path, tokens: Path, attempts: int = 3) -> None:
        assert self.workdir is not None
        log = self.workdir / "kube-apiserver.log"
        for _ in range(attempts):
            port = free_port()
            self.server = f"https://127.0.0.1:{port}"
            self._kas = self._popen([
                self._kas_bin,
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                f"--secure-port={port}",
                # Loopback advertise address: no dependency on a default route,
                # and no Endpoints for the "kubernetes" Service (loopback IPs
                # are invalid there), hence the reconciler is off.
                "--advertise-address=127.0.0.1",
                "--endpoint-reconciler-type=none",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--profiling=false",
                *self.extra_apiserver_args,
            ], "kube-apiserver.log")
            self.cluster = Cluster(server=self.server, ca_data=self.ca_data, token=self.admin_token)
            try:
                self._wait_ready()
                return
            except _PortTaken:  # lost the race for the free port: try another
                self._kas = None
        raise ControlPlaneError(f"kube-apiserver could not bind a port; tail of {log.name}:\n{_tail(log)}")

    def _wait_ready(self) -> None:
        assert self.workdir is not None and self.cluster is not None and self._kas is not None
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            if self._kas.poll() is not None:
                tail = _tail(self.workdir / "kube-apiserver.log")
                if "address already in use" in tail:
                    raise _PortTaken()
                raise ControlPlaneError(
                    f"kube-apiserver exited with code {self._kas.returncode} before /readyz; "
                    f"tail of kube-apiserver.log{_KEEP_HINT}:\n{tail}"
                )
            if self._etcd is not None and self._etcd.poll() is not None:
                raise ControlPlaneError(
                    f"etcd exited with code {self._etcd.returncode}; tail of etcd.log{_KEEP_HINT}:\n"
                    f"{_tail(self.workdir / 'etcd.log')}"
                )
            try:
                resp = self.cluster.get("/readyz", timeout=5)
                if resp.status == 200:
                    return
                failing = [ln for ln in resp.text.splitlines() if ln.startswith("[-]")]
                last = f"HTTP {resp.status}: " + ("; ".join(failing) or resp.text[-500:])
            except (OSError, ssl.SSLError) as exc:
                last = repr(exc)
            time.sleep(0.25)
        raise ControlPlaneError(
            f"kube-apiserver not ready after {self.ready_timeout:.0f} s (last /readyz: {last}); "
            f"tail of kube-apiserver.log{_KEEP_HINT}:\n{_tail(self.workdir / 'kube-apiserver.log')}"
        )

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd (SIGTERM, then SIGKILL); remove the temp dir."""
        self._terminate(self._kas)
        self._terminate(self._etcd)
        self._kas = self._etcd = None
        for log in self._logs:
            with contextlib.suppress(Exception):
                log.close()
        self._logs.clear()
        if self.workdir is not None:
            if self.keep_workdir:
                with contextlib.suppress(OSError):
                    (self.workdir / "owner.pid").unlink()  # kept: not stale
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    # -- helpers -----------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._kas is not None and self._kas.poll() is None

    def env(self) -> dict[str, str]:
        """Environment for child processes (kubectl, kopf) to use this cluster."""
        return {"KUBECONFIG": self.kubeconfig_path}

    def pids(self) -> dict[str, int]:
        return {
            name: proc.pid
            for name, proc in (("kube-apiserver", self._kas), ("etcd", self._etcd))
            if proc is not None
        }

    def memory_rss(self) -> dict[str, int]:
        """Resident set size in bytes of each server process."""
        return {name: _rss_bytes(pid) for name, pid in self.pids().items()}


def _remove_stale_workdirs(base: str) -> None:
    """Remove work dirs whose owning process died without ``stop()`` (SIGKILL).

    Their servers got SIGTERM through PR_SET_PDEATHSIG; only the files remain.
    Dirs without ``owner.pid`` (kept ones, or not ours) are left alone.
    """
    for d in Path(base).glob(WORKDIR_PREFIX + "*"):
        try:
            pid = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except OSError:
            pass


def _etcd_healthy(url: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url + "/health", timeout=2) as resp:
            return json.loads(resp.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


def wait_for(check: Any, what: str, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll ``check()`` until it returns something truthy, and return that (the default
    deadline is for a loaded machine: the wait ends as soon as the check passes)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


CRD_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def install_crds(cluster: Cluster, crds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Create (or replace) CRDs and wait until they are Established and served.

    Returns per CRD name the API server's ``warning`` header and its ``conditions``.
    """
    out: dict[str, dict[str, Any]] = {}
    for crd in crds:
        name = crd["metadata"]["name"]
        response = cluster.post(CRD_PATH, crd)
        if response.status == 409:  # an existing cluster: replace
            existing = cluster.get(f"{CRD_PATH}/{name}").raise_for_status().json
            crd = {**crd, "metadata": {**crd["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}}
            response = cluster.request("PUT", f"{CRD_PATH}/{name}", crd)
        response.raise_for_status()
        out[name] = {"warning": response.headers.get("Warning")}
    for crd in crds:
        name = crd["metadata"]["name"]

        def established(name: str = name) -> dict[str, Any] | None:
            body = cluster.get(f"{CRD_PATH}/{name}").raise_for_status().json
            conditions = {c["type"]: c for c in body.get("status", {}).get("conditions", [])}
            return conditions if conditions.get("Established", {}).get("status") == "True" else None

        out[name]["conditions"] = wait_for(established, f"{name} Established")
        spec = crd["spec"]
        path = f"/apis/{spec['group']}/{spec['versions'][0]['name']}/{spec['names']['plural']}"
        wait_for(lambda path=path: cluster.get(path).status == 200, f"{name} served")  # discovery lags a little
    return out


@contextlib.contextmanager
def cluster_for_tests() -> Iterator[tuple[Cluster, ControlPlane | None]]:
    """Yield ``(cluster, control_plane)`` for a test session.

    With ``REDISTREAMS_E2E_USE_KUBECONFIG=1`` and ``KUBECONFIG`` set, the
    existing cluster from that kubeconfig is used and ``control_plane`` is
    None; otherwise a ``ControlPlane`` is started (and stopped afterwards).
    """
    if os.environ.get("REDISTREAMS_E2E_USE_KUBECONFIG") == "1" and os.environ.get("KUBECONFIG"):
        cluster = Cluster.from_kubeconfig()
        try:
            yield cluster, None
        finally:
            cluster.close()
        return
    with ControlPlane() as cp:
        assert cp.cluster is not None
        yield cp.cluster, cp


if __name__ == "__main__":  # manual use: start, print how to reach it, wait for Ctrl-C
    with ControlPlane(keep_workdir=False) as _cp:
        print(f"kube-apiserver {_cp.version} ready in {_cp.startup_seconds:.1f} s at {_cp.server}")
        print(f"export KUBECONFIG={_cp.kubeconfig_path}")
        print("Ctrl-C to stop", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
