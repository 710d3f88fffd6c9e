"""The few Kubernetes API calls kopf does not make for us: reading Secrets, writing
status from the periodic resync, and the leader-election Lease and its Events.
aiohttp (already a kopf dependency) with the credentials kopf logs in with."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import kopf

from ..model import API_GROUP, API_VERSION

LEASES = "/apis/coordination.k8s.io/v1"
# Requests in flight at once: a burst's status writes (one task per object) opened up to
# aiohttp's default 100 connections, each a TLS handshake for both sides; the Event
# recorder posts 24 at a time.
CONNECTIONS = 24


class KubeError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class KubeAPI:
    """``relogin`` gives fresh credentials when the API server answers 401 (a rotated
    service-account token): the request is sent once more with them."""

    def __init__(self, info: kopf.ConnectionInfo,
                 relogin: Callable[[], kopf.ConnectionInfo | None] | None = None) -> None:
        self.relogin = relogin
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._use(info)

    def _use(self, info: kopf.ConnectionInfo) -> None:
        self.server = info.server.rstrip("/")
        context = ssl.create_default_context()
        if info.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if info.ca_path:
            context.load_verify_locations(cafile=str(info.ca_path))
        if info.ca_data:
            data = info.ca_data.decode() if isinstance(info.ca_data, bytes) else info.ca_data
            if "BEGIN CERTIFICATE" not in data:
                data = base64.b64decode(data).decode()
            context.load_verify_locations(cadata=data)
        if info.certificate_path and info.private_key_path:
            context.load_cert_chain(str(info.certificate_path), str(info.private_key_path))
        self.headers = {"Authorization": f"Bearer {info.token}"} if info.token else {}
        self._ssl = context

    async def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON; with ``answer=False`` None (writes whose answer, the whole
        object, nobody reads: decoding it was ~4% of the operator's CPU in a burst, py-spy)."""
        try:
            return await self._send(method, path, **kwargs)
        except KubeError as exc:
            info = self.relogin() if exc.status == 401 and self.relogin is not None else None
            if info is None:
                raise
        await self._relogin(info)
        return await self._send(method, path, **kwargs)

    async def _relogin(self, info: kopf.ConnectionInfo) -> None:
        for stale in (self._session, self._watch_session):
            if stale is not None:
                await stale.close()
        self._session = self._watch_session = None
        self._use(info)

    async def _send(self, method: str, path: str, answer: bool = True, **kwargs: Any) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers, connector=aiohttp.TCPConnector(ssl=self._ssl, limit=CONNECTIONS),
                # Per request once connected, not counting the wait for a free connection.
                timeout=aiohttp.ClientTimeout(sock_connect=30, sock_read=30),
            )
        async with self._session.request(method, self.server + path, **kwargs) as response:
            if response.status >= 400:
                raise KubeError(response.status, await response.text())
            if not answer:
                await response.read()
                return None
            return await response.json()

    async def secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """The decoded value, or None when the Secret or the key does not exist."""
        data = await self.secret_data(namespace, name)
        raw = None if data is None else data.get(key)
        return None if raw is None else raw.decode()

    async def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """Every key of the Secret, decoded from base64; None when it does not exist."""
        return (await self.read_secret(namespace, name))[0]

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, bytes] | None, str]:
        """The Secret's keys (None when it does not exist) and its resourceVersion to watch
        it from ("" when it does not exist: a watch then starts from the current state)."""
        try:
            secret = await self._request("GET", f"/api/v1/namespaces/{namespace}/secrets/{name}")
        except KubeError as exc:
            if exc.status == 404:
                return None, ""
            raise
        return secret_values(secret), secret["metadata"]["resourceVersion"]

    async def watch_secret(self, namespace: str, name: str, resource_version: str, timeout: int
                           ) -> AsyncIterator[dict[str, Any]]:
        """The watch events of one Secret after ``resource_version`` (empty: its current
        state first, as ADDED), for about ``timeout`` seconds (the API server then ends the
        stream). Bookmarks keep the version current. Needs only the watch verb, no list."""
        params = {"watch": "1", "fieldSelector": f"metadata.name={name}", "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(timeout)}
        if resource_version:
            params["resourceVersion"] = resource_version
        path = f"/api/v1/namespaces/{namespace}/secrets"
        try:
            async for event in self._stream(path, params, timeout):
                yield event
        except KubeError as exc:
            info = self.relogin() if exc.status == 401 and self.relogin is not None else None
            if info is None:
                raise
            await self._relogin(info)
            async for event in self._stream(path, params, timeout):
                yield event

    async def _stream(self, path: str, params: dict[str, str], timeout: int) -> AsyncIterator[dict[str, Any]]:
        if self._watch_session is None:
            # Watches are long requests: their own connections, never holding up the others.
            self._watch_session = aiohttp.ClientSession(headers=self.headers,
                                                        connector=aiohttp.TCPConnector(ssl=self._ssl, limit=0))
        async with self._watch_session.get(
                self.server + path, params=params,
                timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=timeout + 30)) as response:
            if response.status >= 400:
                raise KubeError(response.status, await response.text())
            # By hand, not readline(): a Secret can be larger than aiohttp's line limit.
            pending = b""
            async for chunk in response.content.iter_any():
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        yield json.loads(line)

    async def patch_status(self, plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        await self._request(
            "PATCH",
            f"/apis/{API_GROUP}/{API_VERSION}/namespaces/{namespace}/{plural}/{name}/status",
            json={"status": status},
            headers={"Content-Type": "application/merge-patch+json"}, answer=False,
        )

    # -- leader election (coordination.k8s.io/v1 Lease) ---------------------------------

    async def get_lease(self, namespace: str, name: str, timeout: float) -> dict[str, Any] | None:
        """The Lease, or None when it does not exist."""
        try:
            lease: dict[str, Any] = await self._request("GET", f"{LEASES}/namespaces/{namespace}/leases/{name}",
                                                        timeout=aiohttp.ClientTimeout(total=timeout))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return lease

    async def create_lease(self, namespace: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Creates the Lease; KubeError 409 when another replica created it first."""
        lease: dict[str, Any] = await self._request("POST", f"{LEASES}/namespaces/{namespace}/leases", json=body,
                                                    timeout=aiohttp.ClientTimeout(total=timeout))
        return lease

    async def replace_lease(self, namespace: str, name: str, body: dict[str, Any], timeout: float
                            ) -> dict[str, Any]:
        """PUT with the body's metadata.resourceVersion: KubeError 409 when the Lease changed
        since it was read (optimistic concurrency, as client-go's resource lock)."""
        lease: dict[str, Any] = await self._request("PUT", f"{LEASES}/namespaces/{namespace}/leases/{name}",
                                                    json=body, timeout=aiohttp.ClientTimeout(total=timeout))
        return lease

    async def post_event(self, namespace: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Creates the Event; returns it as stored (its generated name)."""
        event: dict[str, Any] = await self._request("POST", f"/api/v1/namespaces/{namespace}/events", json=body,
                                                    timeout=aiohttp.ClientTimeout(total=timeout))
        return event

    async def patch_event(self, namespace: str, name: str, changes: dict[str, Any], timeout: float) -> None:
        """Merge-patches an Event (a repeat's count and lastTimestamp)."""
        await self._request("PATCH", f"/api/v1/namespaces/{namespace}/events/{name}", json=changes,
                            headers={"Content-Type": "application/merge-patch+json"},
                            timeout=aiohttp.ClientTimeout(total=timeout), answer=False)

    async def close(self) -> None:
        for session in (self._session, self._watch_session):
            if session is not None:
                await session.close()


def secret_values(secret: dict[str, Any]) -> dict[str, bytes]:
    """Every key of a Secret object, decoded from base64."""
    return {key: base64.b64decode(raw) for key, raw in (secret.get("data") or {}).items()}


def fresh_login() -> kopf.ConnectionInfo:
    """The credentials kopf would use, read again: the pod's service account (its token
    file is rotated by the kubelet), else the kubeconfig."""
    settings = kopf.OperatorSettings()
    info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None:
        raise kopf.LoginError("no service account and no kubeconfig to log in with")
    return info
