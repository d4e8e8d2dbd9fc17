"""A small Kubernetes API client: JSON over HTTPS, one keep-alive connection
per thread, with the credentials of the pod's service account, a kubeconfig,
or a kubeconfig's exec plugin.

The operator's, and Kopf's login too (one set of credentials, handlers.py).
Not the official client: its import alone is 55 MB of model classes, a
sixth of the operator at 10,000 streams, and everything here is read and
written as plain JSON anyway.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

Obj = dict[str, Any]

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
# The most of an answer read: a LIST page of 500 pods is a few MB.
MAX_ANSWER = 64 * 1024 * 1024
# The most of an error's body kept (the API server's Status is a few hundred bytes).
MAX_ERROR_BODY = 64 * 1024
# An exec plugin's token is asked for again this long before it expires.
EXEC_REFRESH_MARGIN_SECONDS = 60.0
EXEC_TIMEOUT_SECONDS = 60.0


class ConfigError(ValueError):
    """No usable credentials: no service account, and the kubeconfig is
    missing, unreadable, or names no current context."""


class ApiError(Exception):
    """The API server answered with an error status; ``status`` 0: it could
    not be reached, or its answer could not be read."""

    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"({status}) {reason}")
        self.status, self.reason, self.body = status, reason, body


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are. Secrets are kept
    out of ``repr`` (a traceback's locals, a log line)."""

    server: str
    ca_file: str | None = None
    ca_pem: str | None = None
    insecure: bool = False
    token: str | None = field(default=None, repr=False)
    token_file: str | None = None  # read at each use: projected tokens rotate
    cert_file: str | None = None
    key_file: str | None = None
    cert_pem: str | None = field(default=None, repr=False)
    key_pem: str | None = field(default=None, repr=False)
    exec_plugin: Mapping[str, Any] | None = field(default=None, repr=False)
    expires_at: datetime | None = None  # the token's, when a plugin said
    namespace: str | None = None

    def bearer(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text().strip() or None
        return self.token

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_pem)
        if self.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_file and self.key_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        elif self.cert_pem and self.key_pem:
            _load_cert_chain_from_memory(context, self.cert_pem, self.key_pem)
        return context

    def refreshed(self) -> Credentials:
        """These credentials with a fresh token from the exec plugin (or as they are)."""
        if self.exec_plugin is None:
            return self
        status = run_exec_plugin(self.exec_plugin)
        return replace(
            self,
            token=status.get("token") or self.token,
            cert_pem=status.get("clientCertificateData") or self.cert_pem,
            key_pem=status.get("clientKeyData") or self.key_pem,
            expires_at=_parse_time(status.get("expirationTimestamp")),
        )


def _load_cert_chain_from_memory(context: ssl.SSLContext, cert_pem: str, key_pem: str) -> None:
    """ssl loads a client certificate from files only: a private directory,
    emptied as soon as it is loaded."""
    with tempfile.TemporaryDirectory(prefix="streamgrid-kube-") as directory:
        cert, key = Path(directory, "client.crt"), Path(directory, "client.key")
        cert.write_text(cert_pem)
        key.touch(mode=0o600)
        key.write_text(key_pem)
        context.load_cert_chain(str(cert), str(key))


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    return None


def _pem(data: object) -> str | None:
    """A kubeconfig's ``*-data`` field (base64 of PEM) as PEM text."""
    if not data:
        return None
    try:
        return base64.b64decode(str(data), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise ConfigError("a kubeconfig *-data field is not base64 of PEM") from None


def load_credentials(kubeconfig: str | None = None) -> Credentials:
    """In a pod (and no kubeconfig named): the service account; elsewhere
    ``kubeconfig``, else $KUBECONFIG (its files merged, the first name
    wins), else ~/.kube/config; its current context."""
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    if kubeconfig is None and host and (SERVICE_ACCOUNT / "token").exists():
        namespace_file = SERVICE_ACCOUNT / "namespace"
        return Credentials(
            server=f"https://{_host_for_url(host)}:{port or 443}",
            ca_file=str(SERVICE_ACCOUNT / "ca.crt"),
            token_file=str(SERVICE_ACCOUNT / "token"),
            namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
        )
    paths = [kubeconfig] if kubeconfig else os.environ.get("KUBECONFIG", "").split(os.pathsep)
    paths = [os.path.expanduser(p) for p in paths if p] or [os.path.expanduser("~/.kube/config")]
    return credentials_from_kubeconfig([Path(p) for p in paths])


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def credentials_from_kubeconfig(paths: list[Path]) -> Credentials:
    import yaml  # only here: a pod's service account needs no YAML

    current: str | None = None
    sections: dict[str, dict[str, tuple[Obj, Path]]] = {"contexts": {}, "clusters": {}, "users": {}}
    for path in paths:
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the kubeconfig {path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"the kubeconfig {path} is not a mapping")
        current = current or loaded.get("current-context")
        for section, key in (("contexts", "context"), ("clusters", "cluster"), ("users", "user")):
            for item in loaded.get(section) or []:
                if isinstance(item, dict) and "name" in item:
                    sections[section].setdefault(item["name"], (item.get(key) or {}, path.parent))
    if not current or current not in sections["contexts"]:
        raise ConfigError(f"no current context in the kubeconfig ({', '.join(map(str, paths))})")
    context, _ = sections["contexts"][current]
    if context.get("cluster") not in sections["clusters"]:
        raise ConfigError(f"the context {current} names no known cluster")
    cluster, cluster_dir = sections["clusters"][context["cluster"]]
    user, user_dir = sections["users"].get(context.get("user") or "", ({}, cluster_dir))

    def path_in(base: Path, value: object) -> str | None:
        return str(base / os.path.expanduser(str(value))) if value else None

    if not cluster.get("server"):
        raise ConfigError(f"the cluster of context {current} has no server")
    credentials = Credentials(
        server=str(cluster["server"]).rstrip("/"),
        ca_file=path_in(cluster_dir, cluster.get("certificate-authority")),
        ca_pem=_pem(cluster.get("certificate-authority-data")),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        token=user.get("token"),
        token_file=path_in(user_dir, user.get("tokenFile")),
        cert_file=path_in(user_dir, user.get("client-certificate")),
        key_file=path_in(user_dir, user.get("client-key")),
        cert_pem=_pem(user.get("client-certificate-data")),
        key_pem=_pem(user.get("client-key-data")),
        exec_plugin=user.get("exec"),
        namespace=context.get("namespace"),
    )
    return credentials.refreshed()


def run_exec_plugin(plugin: Mapping[str, Any]) -> Obj:
    """An exec credential plugin's answer (``status``: token, or client
    certificate and key, and when it expires), as kubectl runs it."""
    command = [str(plugin.get("command") or ""), *(str(a) for a in plugin.get("args") or [])]
    env = {**os.environ, **{str(e["name"]): str(e["value"]) for e in plugin.get("env") or []}}
    api_version = str(plugin.get("apiVersion") or "client.authentication.k8s.io/v1")
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}
    )
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, timeout=EXEC_TIMEOUT_SECONDS, check=True
        )
        status = json.loads(done.stdout).get("status")
    except (OSError, subprocess.SubprocessError, ValueError, AttributeError) as exc:
        raise ConfigError(f"the kubeconfig's exec plugin {command[0]!r} failed: {exc}") from None
    if not isinstance(status, dict):
        raise ConfigError(f"the kubeconfig's exec plugin {command[0]!r} gave no status")
    return status


class KubeClient:
    """Requests to one API server; thread-safe (a connection per thread)."""

    def __init__(self, credentials: Credentials, timeout: float = 30.0) -> None:
        parts = urlsplit(credentials.server)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ConfigError(f"not an API server URL: {credentials.server!r}")
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._lock = threading.Lock()
        self._credentials = credentials
        self._context = credentials.ssl_context() if parts.scheme == "https" else None
        self._local = threading.local()

    @property
    def credentials(self) -> Credentials:
        with self._lock:
            return self._credentials

    def get(self, path: str, query: Mapping[str, object] | None = None) -> Obj:
        return self.request("GET", path, query=query)

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, object] | None = None,
        body: object = None,
        content_type: str = "application/json",
    ) -> Obj:
        """The answer as JSON; ApiError for an error status, or when the
        server cannot be reached (status 0)."""
        target = self._prefix + path
        if query:
            target += "?" + urlencode({k: str(v) for k, v in query.items() if v is not None})
        payload = None if body is None else json.dumps(body).encode()
        status, reason, answer = self._exchange(method, target, payload, content_type)
        if status == 401 and self._refresh():
            status, reason, answer = self._exchange(method, target, payload, content_type)
        if status >= 400:
            raise ApiError(status, reason, answer[:MAX_ERROR_BODY].decode(errors="replace"))
        try:
            loaded: Obj = json.loads(answer) if answer else {}
        except ValueError:
            raise ApiError(0, f"the API server's answer to {method} is not JSON") from None
        return loaded

    def _headers(self, payload: bytes | None, content_type: str) -> dict[str, str]:
        credentials = self.credentials
        expires = credentials.expires_at
        if expires is not None and expires.timestamp() - time.time() < EXEC_REFRESH_MARGIN_SECONDS:
            credentials = self._refreshed()
        headers = {"Accept": "application/json", "User-Agent": "streamgrid-operator"}
        token = credentials.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if payload is not None:
            headers["Content-Type"] = content_type
        return headers

    def _refreshed(self) -> Credentials:
        with self._lock:
            self._credentials = self._credentials.refreshed()
            return self._credentials

    def _refresh(self) -> bool:
        """A new token after a 401, when a plugin makes them (else: the 401 stands)."""
        if self.credentials.exec_plugin is None:
            return False
        self._refreshed()
        return True

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._context is not None:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._context
                )
            else:
                connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
            self._local.connection = connection
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            connection.close()

    def _exchange(
        self, method: str, target: str, payload: bytes | None, content_type: str
    ) -> tuple[int, str, bytes]:
        headers = self._headers(payload, content_type)
        for attempt in (1, 2):
            reused = getattr(self._local, "connection", None) is not None
            connection = self._connection()
            try:
                connection.request(method, target, body=payload, headers=headers)
                reply = connection.getresponse()
                answer = reply.read(MAX_ANSWER + 1)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                self._drop_connection()
                # A kept-alive connection the server closed while idle: once
                # more on a new one (the request never reached it).
                if reused and attempt == 1:
                    continue
                raise ApiError(0, f"the API server closed the connection ({exc!r})") from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                raise ApiError(0, f"cannot reach the API server ({exc!r})") from None
            if len(answer) > MAX_ANSWER:
                self._drop_connection()
                raise ApiError(0, f"the API server's answer is over {MAX_ANSWER} bytes")
            if reply.will_close:
                self._drop_connection()
            return reply.status, reply.reason, answer
        raise AssertionError("unreachable")


def segment(name: str) -> str:
    """A name as one path segment."""
    return quote(name, safe="")
