"""A small S3 client on the standard library, for the capture pods.

boto3 costs a capture pod ~22 MB of private memory (its import, then the
whole S3 service model for one client); at one pod per camera that is GBs of
cluster RAM. The worker needs six calls: PUT, GET, DELETE object, list keys
(ListObjectsV2), HEAD and create bucket. This does those, signed with AWS
Signature Version 4, path-style (``{endpoint}/{bucket}/{key}``), over one
keep-alive connection per thread, retrying as the boto3 store is configured
to (3 attempts, connection errors and transient 5xx/throttling).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import random
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote, unquote_plus, urlsplit

from .base import ObjectStore, StoreError, store_error_text

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 15.0
MAX_ATTEMPTS = 3
# A listing page is at most 1000 keys (~1 MB of XML); anything far larger is
# not an S3 answer.
MAX_LIST_BYTES = 16 * 1024 * 1024
MAX_ERROR_BYTES = 64 * 1024
# What boto3's "standard" retry mode treats as transient.
_RETRY_STATUSES = frozenset({500, 502, 503, 504, 429})
_RETRY_CODES = frozenset(
    {"SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "RequestLimitExceeded"}
)
# A reused keep-alive connection the server has closed fails like this on the
# next request: reconnect once without counting an attempt.
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class S3Error(StoreError):
    """The server answered with an error: ``S3 PUT b/k failed: 403 AccessDenied (...)``."""

    def __init__(self, operation: str, target: str, status: int, code: str, message: str) -> None:
        self.operation, self.target = operation, target
        self.status, self.code, self.message = status, code, message
        detail = f" ({message})" if message else ""
        super().__init__(f"S3 {operation} {target} failed: {status} {code}{detail}")


class S3ConnectionError(StoreError):
    """No answer: the endpoint refused, timed out or broke the connection."""

    def __init__(self, operation: str, target: str, endpoint: str, reason: str) -> None:
        self.operation, self.target = operation, target
        super().__init__(f"S3 {operation} {target} failed: cannot reach {endpoint}: {reason}")


def uri_encode(text: str, *, slash: bool = False) -> str:
    """SigV4's encoding: every byte but unreserved ones (and '/' in a path)."""
    return quote(text, safe="-_.~/" if slash else "-_.~")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(("AWS4" + secret_access_key).encode(), date)
    return _hmac(_hmac(_hmac(key, region), service), "aws4_request")


def canonical_query(query: Sequence[tuple[str, str]]) -> str:
    pairs = sorted((uri_encode(k), uri_encode(v)) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in pairs)


def sigv4_authorization(
    *,
    method: str,
    canonical_uri: str,
    query: Sequence[tuple[str, str]],
    headers: Mapping[str, str],
    payload_sha256: str,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str,
    amz_date: str,
) -> str:
    """The Authorization header for a request whose every header in ``headers``
    is signed (they must include host and x-amz-date). ``canonical_uri`` is
    the path as sent, already encoded (S3 signs it as is: no normalising)."""
    canonical_headers = {name.lower().strip(): " ".join(v.split()) for name, v in headers.items()}
    names = sorted(canonical_headers)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(
        [
            method,
            canonical_uri,
            canonical_query(query),
            "".join(f"{name}:{canonical_headers[name]}\n" for name in names),
            signed_headers,
            payload_sha256,
        ]
    )
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = signing_key(secret_access_key, amz_date[:8], region, service)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return (
        f"AWS4-HMAC-SHA256 Credential={access_key_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )


@dataclass(frozen=True)
class S3Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


def _error_code(body: bytes) -> tuple[str, str]:
    """(Code, Message) of an S3 error document; empty when there is none."""
    if not body.lstrip().startswith(b"<") or b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        return "", ""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return "", ""
    code = root.findtext("Code") or root.findtext("{*}Code") or ""
    message = root.findtext("Message") or root.findtext("{*}Message") or ""
    return " ".join(code.split())[:80], " ".join(message.split())[:200]


def parse_list_page(body: bytes) -> tuple[list[str], str | None]:
    """Keys of one ListObjectsV2 page and the next page's continuation token."""
    if len(body) > MAX_LIST_BYTES:
        raise StoreError("S3 listing page too large")
    # No DTDs: an S3 answer never has one, and entities are how XML bombs work.
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise StoreError("S3 listing is not a ListBucketResult document")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise StoreError(f"S3 listing is not valid XML: {exc}") from None
    if root.tag.rsplit("}", 1)[-1] != "ListBucketResult":
        raise StoreError("S3 listing is not a ListBucketResult document")
    url_encoded = (root.findtext("{*}EncodingType") or "").strip().lower() == "url"
    keys = []
    for contents in root.iterfind("{*}Contents"):
        key = contents.findtext("{*}Key")
        if key is not None:
            keys.append(unquote_plus(key) if url_encoded else key)
    truncated = (root.findtext("{*}IsTruncated") or "").strip().lower() == "true"
    token = root.findtext("{*}NextContinuationToken") if truncated else None
    if truncated and not token:
        raise StoreError("S3 listing is truncated but has no continuation token")
    return keys, token


@dataclass
class S3LiteClient:
    """Signed path-style requests to one S3 endpoint, with one set of keys."""

    endpoint_url: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str = "us-east-1"
    connect_timeout: float = CONNECT_TIMEOUT
    read_timeout: float = READ_TIMEOUT
    max_attempts: int = MAX_ATTEMPTS
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            parts = urlsplit(self.endpoint_url)
            port = parts.port
        except ValueError as exc:  # "Invalid IPv6 URL", a port that is not a number
            raise StoreError(store_error_text(exc)) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise StoreError("S3 endpoint URL must be http://host[:port] or https://host[:port]")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise StoreError("S3 endpoint URL takes no query, fragment or user")
        self._https = parts.scheme == "https"
        self._hostname = parts.hostname
        self._port = port
        default_port = 443 if self._https else 80
        # The Host header as signed: the port only when it is not the scheme's own.
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        self._host = host if port in (None, default_port) else f"{host}:{port}"
        self._base_path = parts.path.rstrip("/")
        self._endpoint = f"{parts.scheme}://{self._host}"
        self._ssl = ssl.create_default_context() if self._https else None

    # -- the calls the store makes --------------------------------------------
    def put_object(self, bucket: str, key: str, data: bytes, content_type: str) -> None:
        self._call("PUT", "PUT", bucket, key, body=data, headers={"content-type": content_type})

    def get_object(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key."""
        try:
            return self._call("GET", "GET", bucket, key).body
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                return None
            raise

    def delete_object(self, bucket: str, key: str) -> None:
        self._call("DELETE", "DELETE", bucket, key)

    def list_keys(self, bucket: str, prefix: str) -> Iterator[str]:
        """Every key under ``prefix``, page by page (ListObjectsV2)."""
        token: str | None = None
        while True:
            # encoding-type=url: a key may hold characters XML 1.0 cannot carry.
            query = [("list-type", "2"), ("prefix", prefix), ("encoding-type", "url")]
            if token is not None:
                query.append(("continuation-token", token))
            response = self._call("LIST", "GET", bucket, None, query=query, max_body=MAX_LIST_BYTES)
            keys, token = parse_list_page(response.body)
            yield from keys
            if token is None:
                return

    def head_bucket(self, bucket: str) -> None:
        self._call("HEAD", "HEAD", bucket, None)

    def create_bucket(self, bucket: str) -> None:
        self._call("CREATE", "PUT", bucket, None)

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # -- one request ---------------------------------------------------------
    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was opened just now."""
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.sock is not None:
            return conn, False
        if conn is None:
            if self._ssl is not None:
                conn = http.client.HTTPSConnection(
                    self._hostname, self._port, timeout=self.connect_timeout, context=self._ssl
                )
            else:
                conn = http.client.HTTPConnection(
                    self._hostname, self._port, timeout=self.connect_timeout
                )
            self._local.conn = conn
        conn.timeout = self.connect_timeout
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(self.read_timeout)  # connected: now the read timeout
        return conn, True

    def _call(
        self,
        operation: str,
        method: str,
        bucket: str,
        key: str | None,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        max_body: int | None = None,
    ) -> S3Response:
        target = f"{bucket}/{key}" if key is not None else bucket
        path = f"{self._base_path}/{uri_encode(bucket)}"
        if key is not None:
            path += "/" + uri_encode(key, slash=True)
        attempt = 0
        while True:
            try:
                response = self._send(method, path, query, body, headers or {}, max_body)
            except StoreError:  # an answer refused as too large: not a connection's fault
                raise
            except (OSError, http.client.HTTPException) as exc:
                stale = isinstance(exc, _STALE_CONNECTION) and getattr(self._local, "reused", False)
                self.close()
                if not stale:
                    attempt += 1
                if attempt >= self.max_attempts:
                    reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
                    raise S3ConnectionError(
                        operation, target, self._endpoint, reason or type(exc).__name__
                    ) from None
                if not stale:
                    self._backoff(attempt)
                continue
            if response.status < 300:
                return response
            code, message = _error_code(response.body)
            if not code:
                code = http.client.responses.get(response.status, "Error").replace(" ", "")
            attempt += 1
            if attempt < self.max_attempts and (
                response.status in _RETRY_STATUSES or code in _RETRY_CODES
            ):
                self._backoff(attempt)
                continue
            raise S3Error(operation, target, response.status, code, message)

    def _send(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: bytes,
        headers: Mapping[str, str],
        max_body: int | None,
    ) -> S3Response:
        amz_date = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        payload_sha256 = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        signed = {
            "host": self._host,
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload_sha256,
            **headers,
        }
        authorization = sigv4_authorization(
            method=method,
            canonical_uri=path,
            query=query,
            headers=signed,
            payload_sha256=payload_sha256,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
            service="s3",
            amz_date=amz_date,
        )
        url = path + ("?" + canonical_query(query) if query else "")
        self._local.reused = False
        conn, fresh = self._connection()
        self._local.reused = not fresh
        send_body = body if body or method in ("PUT", "POST") else None
        conn.request(
            method, url, body=send_body, headers={**signed, "authorization": authorization}
        )
        resp = conn.getresponse()
        limit = max_body if resp.status < 300 else MAX_ERROR_BYTES
        length = resp.getheader("content-length")
        if limit is not None and length is not None and length.isdigit() and int(length) > limit:
            self.close()  # not reading it: the connection cannot be reused
            raise StoreError(f"S3 {method} answer too large: {length} bytes")
        data = resp.read() if limit is None else resp.read(limit + 1)
        if limit is not None and len(data) > limit:
            self.close()
            if resp.status >= 300:
                data = data[:limit]
            else:
                raise StoreError(f"S3 {method} answer larger than {limit} bytes")
        elif resp.will_close:
            self.close()
        return S3Response(resp.status, dict(resp.getheaders()), data)

    @staticmethod
    def _backoff(attempt: int) -> None:
        # Short, with jitter: ~0.1 s, then ~0.2 s.
        time.sleep(0.1 * 2 ** (attempt - 1) * random.uniform(0.5, 1.0))


class S3LiteObjectStore(ObjectStore):
    """S3ObjectStore's behaviour, over S3LiteClient instead of boto3."""

    def __init__(self, client: S3LiteClient, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(self.bucket, self.prefix + key, data, content_type)

    def get(self, key: str) -> bytes | None:
        return self.client.get_object(self.bucket, self.prefix + key)

    def delete(self, key: str) -> None:
        self.client.delete_object(self.bucket, self.prefix + key)

    def list(self, prefix: str) -> Iterator[str]:
        for key in self.client.list_keys(self.bucket, self.prefix + prefix):
            yield key[len(self.prefix) :]

    def ensure_ready(self) -> None:
        try:
            self.client.head_bucket(self.bucket)
        except S3Error:
            self.client.create_bucket(self.bucket)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"
