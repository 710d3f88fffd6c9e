"""Do these streams and groups exist? Asked over plain sockets, without redis-py.

``redistreams wait`` runs in init containers and scripts, and importing redis-py costs
more than the whole answer (~170 ms of a ~50 ms question). This probe reads the URL forms
people use (``redis://``, ``rediss://`` with CA and client certificate files,
``unix://``, ``redis+sentinel://``, ``redis+cluster://``, and a plain URL to a cluster
node, following MOVED and ASK), logs in and selects the database as redis-py would, and
sends what the engine's observation sends for ``wait``: XINFO STREAM and XINFO GROUPS per
stream, TYPE for a key of another type. hiredis (redis-py's own parser) reads the replies.
On a Redis Cluster it follows redirections instead of reading the slot map, so it needs
none of the commands redis-py's cluster client asks for (CLUSTER SLOTS, COMMAND, INFO).

It answers only what it is sure of. A URL outside these plain forms (``ProbeURL.read``
gives None) and any reply that is not a plain answer (a refused login, NOPERM, a
timeout, a TLS failure, an unreachable server…) raise ``Unsure``: the caller asks the
engine instead, which checks the URL and words every failure as it always has.
``tests/unit/test_probe_url.py`` checks that every URL read here means to redis-py (and
to connection.py's checks) exactly what it means here.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import unquote, unquote_plus

import hiredis

from .urltext import GO_ONLY_PARAMS

DEFAULT_PORT, SENTINEL_PORT = 6379, 26379
CONNECT_TIMEOUT = 5.0  # RedisTarget's default
REDIRECTS = 5  # MOVED/ASK hops per command before giving the question to the engine

# URL text read here: RFC 3986 unreserved characters and %-escapes in names and
# passwords; anything else (an unencoded '@', '/', a space, a fragment…) goes to the
# engine's checks, which explain what is wrong with it.
_TEXT = r"(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})"
_USERINFO = re.compile(rf"(?P<user>{_TEXT}*)(?::(?P<password>{_TEXT}*))?")
_HOST = re.compile(r"(?P<host>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>[0-9]{1,5}))?")
_SOCKET_PATH = re.compile(rf"(?:/{_TEXT}+)+")
_SEGMENT = re.compile(rf"{_TEXT}+")
_QUERY_VALUE = re.compile(r"(?:[A-Za-z0-9._~/:+-]|%[0-9A-Fa-f]{2})+")
_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_CERT_REQS = {"none": 0, "optional": 1, "required": 2}  # ssl.CERT_NONE, CERT_OPTIONAL, CERT_REQUIRED
_BOOLEANS = {"true": True, "1": True, "yes": True, "y": True, "false": False, "0": False, "no": False, "n": False}
_TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_ca_path")
_OPTIONS = frozenset({"db", "username", "password", "socket_timeout", "socket_connect_timeout",
                      "ssl_cert_reqs", "ssl_check_hostname", *_TLS_FILES})
_SENTINEL_OPTIONS = frozenset({"sentinel_username", "sentinel_password"})


class Unsure(Exception):
    """No plain answer: ask the engine (the reason is for tests and debugging, never shown)."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach and log in to one server, as redis-py's connection would."""

    host: str = "localhost"
    port: int = DEFAULT_PORT
    path: str | None = None  # a unix socket
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    tls_files: tuple[tuple[str, str], ...] = ()  # (ssl_* option, path)
    cert_reqs: int = 2
    check_hostname: bool = True
    socket_timeout: float | None = None
    connect_timeout: float | None = None

    def at(self, host: str, port: int) -> Endpoint:
        return replace(self, host=host, port=port, path=None)


@dataclass(frozen=True)
class ProbeURL:
    """A URL this probe can use: one server, sentinels and a master name, or cluster seeds."""

    endpoint: Endpoint  # the server, or the settings of the master / of every cluster node
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    sentinel: Endpoint | None = None  # the sentinels' own settings
    seeds: tuple[tuple[str, int], ...] = ()

    @classmethod
    def read(cls, url: object, *, socket_timeout: float = 10.0,
             connect_timeout: float = CONNECT_TIMEOUT) -> ProbeURL | None:
        """The URL's meaning, or None when it is not one of the plain forms read here."""
        if not isinstance(url, str) or not url.isascii():
            return None
        url = url.rstrip("\r\n")  # a Secret's trailing newline, which redis-py drops too
        if any(c <= " " or c in "#\x7f" for c in url):
            return None
        scheme, sep, rest = url.partition("://")
        if not sep:
            return None
        base, _, query = rest.partition("?")
        options = _options(query)
        if options is None:
            return None
        timeouts = {"socket_timeout": socket_timeout, "connect_timeout": connect_timeout}
        if scheme in ("redis", "rediss", "unix"):
            endpoint = _endpoint(scheme, base, options, timeouts)
            return None if endpoint is None else cls(endpoint)
        if scheme in ("redis+sentinel", "rediss+sentinel"):
            return _sentinel_url(scheme, base, options, timeouts)
        if scheme in ("redis+cluster", "rediss+cluster"):
            return _cluster_url(scheme, base, options, timeouts)
        return None


def _options(query: str) -> dict[str, str] | None:
    options: dict[str, str] = {}
    seen: set[str] = set()
    for pair in query.split("&") if query else ():
        name, sep, value = pair.partition("=")
        if not sep or not _QUERY_VALUE.fullmatch(value) or name in seen:
            return None
        seen.add(name)
        if name in GO_ONLY_PARAMS and name != "db":
            continue  # go-redis' settings in a URL shared with Go services: ignored, as connection.py does
        if name not in _OPTIONS | _SENTINEL_OPTIONS:
            return None
        options[name] = unquote_plus(value)  # parse_qs' decoding, as redis-py reads values
    return options


def _userinfo(text: str) -> tuple[str | None, str | None] | None:
    match = _USERINFO.fullmatch(text)
    if match is None:
        return None
    user, password = match.group("user"), match.group("password")
    return (unquote(user) if user else None), (unquote(password) if password else None)


def _address(text: str, default_port: int | None, lower: bool = False) -> tuple[str, int] | None:
    """(host, port) of ``host[:port]``; ``lower``: as urlsplit gives a URL's host name
    (sentinel and cluster host lists keep the case they were given in)."""
    match = _HOST.fullmatch(text)
    if match is None:
        return None
    host, port = match.group("host"), match.group("port")
    if host.startswith("["):
        host = host[1:-1]
    else:
        try:
            host.encode("idna")  # what the socket layer does; connection.py refuses what fails
        except UnicodeError:
            return None
    if lower:
        host = host.lower()
    if port is None:
        return (host, default_port) if default_port else None
    number = int(port)
    return (host, number) if 0 < number < 65536 else None


def _endpoint(scheme: str, base: str, options: dict[str, str], timeouts: dict[str, float],
              sentinel_options: bool = False) -> Endpoint | None:
    """redis-py's reading of a redis://, rediss:// or unix:// URL, limited to plain forms."""
    if not sentinel_options and options.keys() & _SENTINEL_OPTIONS:
        return None
    tls = scheme == "rediss"
    if not tls and options.keys() & {"ssl_cert_reqs", "ssl_check_hostname", *_TLS_FILES}:
        return None  # connection.py refuses them, saying why
    userinfo, at, hostpath = base.rpartition("@")
    if at and "@" in userinfo:
        return None
    credentials = _userinfo(userinfo) if at else (None, None)
    if credentials is None:
        return None
    username = credentials[0] or options.get("username")
    password = credentials[1] or options.get("password")
    if username and not password:
        return None  # redis-py would send AUTH with a user alone
    values: dict[str, Any] = {"username": username, "password": password, "tls": tls}
    if scheme == "unix":
        if not _SOCKET_PATH.fullmatch(hostpath):
            return None
        values["path"] = unquote(hostpath)
    else:
        hostport, slash, path = hostpath.partition("/")
        address = _address(hostport, DEFAULT_PORT, lower=True)
        if address is None or (slash and path and not path.isdigit()):
            return None
        values["host"], values["port"] = address
        if path:
            values["db"] = int(path)
    if "db" in options:
        if not options["db"].isdigit():
            return None
        values["db"] = int(options["db"])
    for name, key in (("socket_timeout", "socket_timeout"), ("socket_connect_timeout", "connect_timeout")):
        if name in options:
            if not _SECONDS.fullmatch(options[name]) or not float(options[name]) > 0:
                return None
            values[key] = float(options[name])
        else:
            values[key] = timeouts[key]
    if "ssl_cert_reqs" in options:
        if options["ssl_cert_reqs"] not in _CERT_REQS:
            return None
        values["cert_reqs"] = _CERT_REQS[options["ssl_cert_reqs"]]
    if "ssl_check_hostname" in options:
        if options["ssl_check_hostname"].lower() not in _BOOLEANS:
            return None
        values["check_hostname"] = _BOOLEANS[options["ssl_check_hostname"].lower()]
    values["tls_files"] = tuple((name, options[name]) for name in _TLS_FILES if name in options)
    return Endpoint(**values)


def _sentinel_url(scheme: str, base: str, options: dict[str, str], timeouts: dict[str, float]) -> ProbeURL | None:
    """``redis+sentinel://[user:pw@]h[:p][,h[:p]…]/<master>[/<db>]``: read as sentinel.py does."""
    userinfo, at, hostpath = base.rpartition("@")
    hosts, _, path = hostpath.partition("/")
    segments = path.split("/") if path else []
    if not segments or len(segments) > 2 or not all(_SEGMENT.fullmatch(s) for s in segments):
        return None
    if len(segments) == 2 and not segments[1].isdigit():
        return None
    sentinels = [_address(h, SENTINEL_PORT) for h in hosts.split(",")]
    if not all(sentinels) or not sentinels:
        return None
    master_options = {k: v for k, v in options.items() if k not in _SENTINEL_OPTIONS}
    # The master's settings: the URL read as a redis:// URL to its first sentinel, as sentinel.py does.
    db = segments[1] if len(segments) == 2 else ""
    plain = "rediss" if scheme.startswith("rediss") else "redis"
    master = _endpoint(plain, f"{userinfo}{at}{hosts.split(',')[0]}/{db}", master_options, timeouts)
    if master is None:
        return None
    # The sentinels get the timeouts and TLS settings, and their own credentials only.
    sentinel = replace(master, username=options.get("sentinel_username") or None,
                       password=options.get("sentinel_password") or None, db=0)
    if sentinel.username and not sentinel.password:
        return None
    return ProbeURL(master, sentinels=tuple(s for s in sentinels if s), service=unquote(segments[0]),
                    sentinel=sentinel)


def _cluster_url(scheme: str, base: str, options: dict[str, str], timeouts: dict[str, float]) -> ProbeURL | None:
    """``redis+cluster://[user:pw@]h:p[,h:p…][/0]``: read as cluster.py does."""
    userinfo, at, hostpath = base.rpartition("@")
    hosts, _, path = hostpath.partition("/")
    if path not in ("", "0") or options.get("db", "0") != "0":
        return None
    seeds = [_address(h, None) for h in hosts.split(",")]
    if not all(seeds):
        return None
    plain = "rediss" if scheme.startswith("rediss") else "redis"
    endpoint = _endpoint(plain, f"{userinfo}{at}{hosts.split(',')[0]}/{path}", options, timeouts)
    if endpoint is None:
        return None
    return ProbeURL(endpoint, seeds=tuple(s for s in seeds if s))


# -- talking to Redis -----------------------------------------------------------------


class _Connection:
    """One socket to one server, logged in; commands are pipelined."""

    def __init__(self, endpoint: Endpoint, prologue: Iterable[tuple[Any, ...]] = ()) -> None:
        self.endpoint = endpoint
        self.sock = _connect(endpoint)
        self.reader = hiredis.Reader(encoding="utf-8", errors="surrogateescape")
        login: list[tuple[Any, ...]] = []
        if endpoint.password:
            login.append(("AUTH", endpoint.username, endpoint.password) if endpoint.username
                         else ("AUTH", endpoint.password))
        if endpoint.db:
            login.append(("SELECT", endpoint.db))
        self.logins = len(login)
        self.prologue = [*login, *prologue]  # sent in front of the first commands
        self.prologue_replies: list[Any] = []  # the replies to ``prologue`` after the login

    def call(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        prologue, self.prologue = self.prologue, []
        sent = [*prologue, *commands]
        try:
            self.sock.sendall(b"".join(hiredis.pack_command(c) for c in sent))
            replies = [self._read() for _ in sent]
        except (OSError, hiredis.HiredisError) as exc:
            raise Unsure(f"{type(exc).__name__}: {exc}") from None
        if prologue:
            if any(isinstance(r, Exception) for r in replies[:self.logins]):
                raise Unsure("login refused")  # the engine words it (WRONGPASS, NOAUTH…)
            self.prologue_replies = replies[self.logins:len(prologue)]
        return replies[len(prologue):]

    def _read(self) -> Any:
        while True:
            reply = self.reader.gets()
            if reply is not False:
                return reply
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the server")
            self.reader.feed(data)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _connect(endpoint: Endpoint) -> socket.socket:
    try:
        if endpoint.path is not None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(endpoint.connect_timeout)
            try:
                sock.connect(endpoint.path)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((endpoint.host, endpoint.port), timeout=endpoint.connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if endpoint.tls:
                sock = _tls(sock, endpoint)
        sock.settimeout(endpoint.socket_timeout)
        return sock
    except Exception as exc:  # noqa: BLE001 - OSError (ssl.SSLError too), or a TLS file setting refused
        raise Unsure(f"cannot connect: {type(exc).__name__}") from None


def _tls(sock: socket.socket, endpoint: Endpoint) -> socket.socket:
    """The context redis-py's SSLConnection builds from the same options."""
    import ssl  # only for rediss://

    try:
        context = ssl.create_default_context()
        context.check_hostname = endpoint.check_hostname if endpoint.cert_reqs else False
        context.verify_mode = ssl.VerifyMode(endpoint.cert_reqs)
        files = dict(endpoint.tls_files)
        if "ssl_certfile" in files or "ssl_keyfile" in files:
            context.load_cert_chain(certfile=files.get("ssl_certfile"),  # type: ignore[arg-type]
                                    keyfile=files.get("ssl_keyfile"))
        if "ssl_ca_certs" in files or "ssl_ca_path" in files:
            context.load_verify_locations(cafile=files.get("ssl_ca_certs"), capath=files.get("ssl_ca_path"))
        return context.wrap_socket(sock, server_hostname=endpoint.host)
    except BaseException:
        sock.close()
        raise


@dataclass
class Presence:
    """What ``wait`` needs of a stream (the fields of the engine's StreamState it reads)."""

    key: str
    type: str = "none"
    groups: frozenset[str] = field(default_factory=frozenset)
    failure: None = None  # a failure is never an answer here: Unsure is raised instead

    @property
    def exists(self) -> bool:
        return self.type == "stream"


class Probe:
    """Answers "which of these streams and groups exist" for one URL; ``Unsure`` otherwise.
    Connections stay open between questions (``wait`` asks every interval)."""

    def __init__(self, url: ProbeURL) -> None:
        self.url = url
        self._connections: dict[tuple[str, int] | str, _Connection] = {}
        self._home: tuple[str, int] | str | None = None

    @classmethod
    def for_url(cls, url: str, *, socket_timeout: float = 10.0) -> Probe | None:
        """A probe for ``url``, or None when only the engine can read it."""
        read = ProbeURL.read(url, socket_timeout=socket_timeout)
        return None if read is None else cls(read)

    def presence(self, keys: Iterable[str]) -> dict[str, Presence]:
        """Type and group names of each key. Raises ``Unsure`` for anything but plain answers."""
        keys = list(dict.fromkeys(keys))
        try:
            return self._presence(keys)
        except Unsure:
            self.close()
            raise

    def _presence(self, keys: list[str]) -> dict[str, Presence]:
        commands = [c for key in keys for c in (("XINFO", "STREAM", _wire(key)), ("XINFO", "GROUPS", _wire(key)))]
        replies = self._routed(commands)
        found: dict[str, Presence] = {}
        other_type = []
        for index, key in enumerate(keys):
            info, groups = replies[2 * index], replies[2 * index + 1]
            if isinstance(info, Exception):
                text = str(info)
                if "no such key" in text:
                    found[key] = Presence(key)
                    continue
                if not text.startswith("WRONGTYPE"):
                    raise Unsure(_first_word(text))
                other_type.append(key)
                continue
            if isinstance(groups, Exception) or not isinstance(groups, list):
                raise Unsure(_first_word(str(groups)))
            found[key] = Presence(key, "stream", frozenset(_group_names(groups)))
        if other_type:
            for key, reply in zip(other_type, self._routed([("TYPE", _wire(k)) for k in other_type])):
                if isinstance(reply, Exception) or not isinstance(reply, str):
                    raise Unsure(_first_word(str(reply)))
                found[key] = Presence(key, reply)
        return {key: found[key] for key in keys}

    def _routed(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Each command's reply from the server holding its key, following MOVED and ASK."""
        results: list[Any] = [None] * len(commands)
        home = self._home_address()
        todo: dict[int, tuple[tuple[str, int] | str, bool]] = {i: (home, False) for i in range(len(commands))}
        for _ in range(REDIRECTS + 1):
            by_node: dict[tuple[tuple[str, int] | str, bool], list[int]] = {}
            for index, where in todo.items():
                by_node.setdefault(where, []).append(index)
            todo = {}
            for (address, asking), indexes in by_node.items():
                connection = self._connection(address)
                if asking:  # each command after its own ASKING, whose OK is skipped
                    sent = [c for i in indexes for c in (("ASKING",), commands[i])]
                    replies = connection.call(sent)[1::2]
                else:
                    replies = connection.call([commands[i] for i in indexes])
                for index, reply in zip(indexes, replies):
                    moved = _redirect(reply, address)
                    if moved is None:
                        results[index] = reply
                    else:
                        todo[index] = moved
            if not todo:
                return results
        raise Unsure("redirected too often")

    def _home_address(self) -> tuple[str, int] | str:
        if self._home is not None:
            return self._home
        endpoint = self.url.endpoint
        if self.url.sentinels:
            self._home = self._master()
        elif self.url.seeds:
            for seed in self.url.seeds:  # the first seed that answers
                try:
                    self._connection(seed)
                except Unsure:
                    continue
                self._home = seed
                break
            else:
                raise Unsure("no cluster seed answered")
        else:
            self._home = endpoint.path if endpoint.path is not None else (endpoint.host, endpoint.port)
        return self._home

    def _master(self) -> tuple[str, int]:
        """The master the first sentinel that knows it names (redis-py's rule: flagged
        master, neither subjectively nor objectively down); then its ROLE must agree."""
        assert self.url.sentinel is not None
        for host, port in self.url.sentinels:
            try:
                connection = _Connection(self.url.sentinel.at(host, port))
            except Unsure:
                continue
            try:
                reply = connection.call([("SENTINEL", "MASTER", self.url.service)])[0]
            except Unsure:
                continue
            finally:
                connection.close()
            if isinstance(reply, list):
                state = dict(zip(reply[::2], reply[1::2]))
                flags = str(state.get("flags", "")).split(",")
                named_port = str(state.get("port", ""))
                if "master" in flags and "s_down" not in flags and "o_down" not in flags and named_port.isdigit():
                    address = (str(state.get("ip")), int(named_port))
                    master = self._connection(address, prologue=[("ROLE",)])
                    master.call([])
                    role = master.prologue_replies[-1] if master.prologue_replies else None
                    # A refused ROLE (ACL) is no evidence either way; another role is.
                    if isinstance(role, list) and role and role[0] != "master":
                        raise Unsure("the named master is not one")
                    return address
        raise Unsure("no sentinel named the master")

    def _connection(self, address: tuple[str, int] | str,
                    prologue: Iterable[tuple[Any, ...]] = ()) -> _Connection:
        connection = self._connections.get(address)
        if connection is None:
            endpoint = self.url.endpoint
            if isinstance(address, tuple):
                endpoint = endpoint.at(*address)
            connection = self._connections[address] = _Connection(endpoint, prologue)
        return connection

    def close(self) -> None:
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        self._home = None


def _redirect(reply: Any, current: tuple[str, int] | str) -> tuple[tuple[str, int], bool] | None:
    """(node, asking) for a MOVED or ASK reply; None for any other reply."""
    if not isinstance(reply, Exception):
        return None
    kind, _, rest = str(reply).partition(" ")
    if kind not in ("MOVED", "ASK"):
        return None
    node = rest.partition(" ")[2]
    host, _, port = node.rpartition(":")
    if not port.isdigit():
        raise Unsure("unreadable redirection")
    if not host:  # "MOVED 3999 :6380": the host that was asked
        if not isinstance(current, tuple):
            raise Unsure("redirected from a unix socket")
        host = current[0]
    return (host.strip("[]"), int(port)), kind == "ASK"


def _group_names(groups: list[Any]) -> Iterable[str]:
    for group in groups:
        if isinstance(group, list):
            fields = dict(zip(group[::2], group[1::2]))
            if isinstance(fields.get("name"), str):
                yield fields["name"]


def _wire(key: str) -> bytes:
    """A key as Redis has it (names that are not UTF-8 arrive with surrogateescape)."""
    return key.encode("utf-8", "surrogateescape")


def _first_word(text: str) -> str:
    return text.split(" ", 1)[0][:40]

