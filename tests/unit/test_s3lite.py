"""core/stores/s3lite.py without an S3 server: its SigV4 signer against AWS's
published test vector and botocore's signer, its listing parser, its choice
in open_object_store, and its retries against a small local HTTP server."""

from __future__ import annotations

import datetime
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streamgrid.capture.settings import CaptureSettings
from streamgrid.core.stores.base import StoreError, store_error_text
from streamgrid.core.stores.factory import open_object_store
from streamgrid.core.stores.s3_boto3 import S3ObjectStore
from streamgrid.core.stores.s3lite import (
    EMPTY_SHA256,
    MAX_LIST_BYTES,
    S3ConnectionError,
    S3Error,
    S3LiteClient,
    S3LiteObjectStore,
    parse_list_page,
    sigv4_authorization,
    uri_encode,
)

AWS_KEY, AWS_SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def test_signature_matches_the_aws_get_vanilla_test_vector() -> None:
    authorization = sigv4_authorization(
        method="GET",
        canonical_uri="/",
        query=[],
        headers={"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"},
        payload_sha256=EMPTY_SHA256,
        access_key_id=AWS_KEY,
        secret_access_key=AWS_SECRET,
        region="us-east-1",
        service="service",
        amz_date="20150830T123600Z",
    )
    assert authorization == (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
        "SignedHeaders=host;x-amz-date, "
        "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    )


@pytest.mark.parametrize(
    ("method", "key", "query", "body", "content_type"),
    [
        ("PUT", "s1/frames/000000000001_0187125_1795000000123.jpg", {}, b"jpeg", "image/jpeg"),
        ("GET", "a key/with spaces+plus/ünïcode~_.-!*'()", {}, b"", None),
        ("DELETE", "s1/manifest.json", {}, b"", None),
        (
            "GET",
            None,
            {"list-type": "2", "prefix": "p/s 1/", "continuation-token": "a+b/c=="},
            b"",
            None,
        ),
        ("HEAD", None, {}, b"", None),
    ],
)
def test_signature_matches_botocore(
    monkeypatch: pytest.MonkeyPatch,
    method: str,
    key: str | None,
    query: dict[str, str],
    body: bytes,
    content_type: str | None,
) -> None:
    """The same request signed by botocore's S3 signer and by ours."""
    import hashlib

    from botocore import auth as botocore_auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    moment = datetime.datetime(2026, 11, 29, 12, 34, 56)
    monkeypatch.setattr(botocore_auth, "get_current_datetime", lambda: moment)
    path = "/bucket" + ("/" + uri_encode(key, slash=True) if key is not None else "")
    headers = {"Content-Type": content_type} if content_type else {}
    request = AWSRequest(
        method=method,
        url=f"http://127.0.0.1:8333{path}",
        params=query,
        data=body,
        headers=headers,
    )
    botocore_auth.S3SigV4Auth(Credentials(AWS_KEY, AWS_SECRET), "s3", "eu-west-1").add_auth(request)
    amz_date = moment.strftime("%Y%m%dT%H%M%SZ")
    payload = hashlib.sha256(body).hexdigest()
    ours = sigv4_authorization(
        method=method,
        canonical_uri=path,
        query=list(query.items()),
        headers={
            "host": "127.0.0.1:8333",
            "x-amz-date": amz_date,
            "x-amz-content-sha256": payload,
            **({"content-type": content_type} if content_type else {}),
        },
        payload_sha256=payload,
        access_key_id=AWS_KEY,
        secret_access_key=AWS_SECRET,
        region="eu-west-1",
        service="s3",
        amz_date=amz_date,
    )
    assert request.headers["X-Amz-Content-SHA256"] == payload
    assert ours == request.headers["Authorization"]


def test_keys_are_encoded_per_segment() -> None:
    assert uri_encode("a b/c+d/é~_.-", slash=True) == "a%20b/c%2Bd/%C3%A9~_.-"
    assert uri_encode("a/b") == "a%2Fb"


LIST_PAGE = b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix>p/</Prefix><EncodingType>url</EncodingType>
  <IsTruncated>true</IsTruncated><NextContinuationToken>tok+en/1</NextContinuationToken>
  <Contents><Key>p/a%20b%2Bc</Key><Size>1</Size></Contents>
  <Contents><Key>p/%C3%BC</Key><Size>1</Size></Contents>
</ListBucketResult>"""


def test_a_listing_page_gives_decoded_keys_and_the_next_token() -> None:
    assert parse_list_page(LIST_PAGE) == (["p/a b+c", "p/ü"], "tok+en/1")
    last = LIST_PAGE.replace(b"<IsTruncated>true", b"<IsTruncated>false")
    assert parse_list_page(last)[1] is None


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"<Error><Code>x</Code></Error>", "not a ListBucketResult"),
        (b"not xml", "not valid XML"),
        (
            b'<!DOCTYPE l [<!ENTITY a "aaaa">]><ListBucketResult>&a;</ListBucketResult>',
            "not a ListBucketResult",
        ),
        (b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>", "no continu"),
        (b"<ListBucketResult>" + b" " * MAX_LIST_BYTES + b"</ListBucketResult>", "too large"),
    ],
)
def test_a_bad_listing_page_is_refused(body: bytes, why: str) -> None:
    with pytest.raises(StoreError, match=why):
        parse_list_page(body)


def test_an_s3_error_reads_as_one_short_reason() -> None:
    error = S3Error("PUT", "b/s1/frames/x.jpg", 507, "InsufficientStorage", "")
    assert store_error_text(error) == "S3 PUT b/s1/frames/x.jpg failed: 507 InsufficientStorage"
    error = S3Error("GET", "b/k", 403, "AccessDenied", "Access Denied.")
    assert store_error_text(error) == "S3 GET b/k failed: 403 AccessDenied (Access Denied.)"


# -- which client open_object_store picks ---------------------------------------


def test_lite_is_used_only_when_asked_and_both_keys_are_given() -> None:
    keys = {"s3_access_key_id": "id", "s3_secret_access_key": "secret"}
    url = "s3://bucket/prefix"
    lite = open_object_store(url, s3_endpoint_url="http://127.0.0.1:9", lite=True, **keys)
    assert isinstance(lite, S3LiteObjectStore)
    assert (lite.bucket, lite.prefix) == ("bucket", "prefix/")
    assert lite.client.endpoint_url == "http://127.0.0.1:9"
    assert "secret" not in repr(lite.client)
    assert isinstance(open_object_store(url, lite=False, **keys), S3ObjectStore)
    # No keys: boto3's credential chain (IRSA, instance profiles).
    assert isinstance(open_object_store(url, lite=True), S3ObjectStore)
    aws = open_object_store(url, s3_region="eu-west-1", lite=True, **keys)
    assert isinstance(aws, S3LiteObjectStore)
    assert aws.client.endpoint_url == "https://s3.eu-west-1.amazonaws.com"
    with pytest.raises(StoreError, match="needs a bucket"):
        open_object_store("s3://", lite=True, **keys)


@pytest.mark.parametrize("lite", [True, False])
@pytest.mark.parametrize(
    ("url", "endpoint", "why"),
    [
        ("s3://[bad/p", None, "Invalid IPv6 URL"),
        ("s3://b/p", "http://[::1", "Invalid IPv6 URL"),
        ("s3://b/p", "not a url", "endpoint"),
        ("ftp://b/p", None, "unsupported store URL scheme"),
    ],
)
def test_a_malformed_store_or_endpoint_url_is_a_store_error(
    url: str, endpoint: str | None, why: str, lite: bool
) -> None:
    keys = {"s3_access_key_id": "id", "s3_secret_access_key": "secret"}
    with pytest.raises(StoreError, match=why):
        open_object_store(url, s3_endpoint_url=endpoint, lite=lite, **keys)


def test_a_lite_endpoint_whose_port_is_not_a_number_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="Port could not be cast"):
        S3LiteClient("http://127.0.0.1:abc", "id", "secret")


def test_the_capture_settings_ask_for_lite_unless_told_boto3(tmp_path: Path) -> None:
    common = {
        "stream_id": "cam-1",
        "source_url": "rtsp://127.0.0.1:8554/cam",
        "store_url": "s3://bucket/p",
        "s3_endpoint_url": "http://127.0.0.1:9",
        "s3_access_key_id": "id",
        "s3_secret_access_key": "secret",
    }
    auto = CaptureSettings(**common).open_store()
    assert isinstance(auto.objects, S3LiteObjectStore)
    boto = CaptureSettings(**common, s3_client="boto3").open_store()
    assert isinstance(boto.objects, S3ObjectStore)


def test_the_capture_worker_with_s3_keys_never_loads_boto3() -> None:
    """boto3 costs each capture pod ~22 MB: only its adapter imports it."""
    code = (
        "import sys\n"
        "import streamgrid.capture.__main__\n"
        "from streamgrid.capture.settings import CaptureSettings\n"
        "store = CaptureSettings(stream_id='c', source_url='rtsp://127.0.0.1:9/x',\n"
        "    store_url='s3://b/p', s3_endpoint_url='http://127.0.0.1:9',\n"
        "    s3_access_key_id='id', s3_secret_access_key='secret').open_store()\n"
        "print(type(store.objects).__name__, sorted({'boto3', 'botocore'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["S3LiteObjectStore", "[]"], out.stdout + out.stderr


# -- retries, against a real (small) HTTP server -------------------------------


class _Scripted(BaseHTTPRequestHandler):
    """Answers each request with the next (status, body) of the server's script."""

    protocol_version = "HTTP/1.1"
    server: _ScriptedServer

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        headers["client-port"] = str(self.client_address[1])
        self.server.seen.append((self.command, self.path, headers))
        status, body = self.server.script.pop(0) if self.server.script else (200, b"")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        # Drop the connection without a "Connection: close", as a server's idle
        # timeout does: the client finds out on its next request.
        self.close_connection = self.server.drop_connections

    do_GET = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _ScriptedServer(ThreadingHTTPServer):
    script: list[tuple[int, bytes]]
    seen: list[tuple[str, str, dict[str, str]]]
    drop_connections: bool


@pytest.fixture
def scripted() -> Iterator[_ScriptedServer]:
    server = _ScriptedServer(("127.0.0.1", 0), _Scripted)
    server.script, server.seen, server.drop_connections = [], [], False
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def _client(server: _ScriptedServer) -> S3LiteClient:
    return S3LiteClient(f"http://127.0.0.1:{server.server_address[1]}", "id", "secret")


def _error(code: str) -> bytes:
    return f"<Error><Code>{code}</Code><Message>m</Message></Error>".encode()


def test_slow_down_is_retried_and_one_connection_is_kept(scripted: _ScriptedServer) -> None:
    scripted.script = [(503, _error("SlowDown")), (500, _error("InternalError")), (200, b"")]
    client = _client(scripted)
    client.put_object("b", "k 1", b"data", "image/jpeg")
    assert [(m, p) for m, p, _ in scripted.seen] == [("PUT", "/b/k%201")] * 3
    assert scripted.seen[-1][2]["content-type"] == "image/jpeg"
    assert scripted.seen[-1][2]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=id/")
    assert client.get_object("b", "k 1") == b""
    # Keep-alive: every request on the one connection.
    assert len({headers["client-port"] for _, _, headers in scripted.seen}) == 1


def test_a_connection_the_server_dropped_is_reopened_at_once(scripted: _ScriptedServer) -> None:
    scripted.drop_connections = True
    # One attempt: the reconnect to replace a dropped idle connection is free.
    client = S3LiteClient(
        f"http://127.0.0.1:{scripted.server_address[1]}", "id", "s", max_attempts=1
    )
    for i in range(3):
        client.put_object("b", f"k{i}", b"x", "text/plain")
    # Each request went out once, each on a fresh connection.
    assert [p for _, p, _ in scripted.seen] == ["/b/k0", "/b/k1", "/b/k2"]
    assert len({headers["client-port"] for _, _, headers in scripted.seen}) == 3


def test_three_failures_give_up_with_the_last_reason(scripted: _ScriptedServer) -> None:
    scripted.script = [(503, _error("SlowDown"))] * 3
    with pytest.raises(S3Error, match=r"S3 PUT b/k failed: 503 SlowDown \(m\)"):
        _client(scripted).put_object("b", "k", b"x", "text/plain")
    assert len(scripted.seen) == 3


def test_a_client_error_is_not_retried_and_404_nosuchkey_is_none(
    scripted: _ScriptedServer,
) -> None:
    scripted.script = [(403, _error("AccessDenied")), (404, _error("NoSuchKey"))]
    client = _client(scripted)
    with pytest.raises(S3Error, match="403 AccessDenied"):
        client.delete_object("b", "k")
    assert client.get_object("b", "k") is None
    scripted.script = [(404, _error("NoSuchBucket"))]
    with pytest.raises(S3Error, match="404 NoSuchBucket"):
        client.get_object("b", "k")
    scripted.script = [(404, b"")]  # HEAD: no body, the status names it
    with pytest.raises(S3Error, match="S3 HEAD b failed: 404 NotFound"):
        client.head_bucket("b")
    assert len(scripted.seen) == 4


def test_an_unreachable_endpoint_fails_fast_with_a_clear_reason(
    scripted: _ScriptedServer,
) -> None:
    port = scripted.server_address[1]
    scripted.shutdown()
    scripted.server_close()
    started = time.monotonic()
    client = S3LiteClient(f"http://127.0.0.1:{port}", "id", "secret")
    with pytest.raises(S3ConnectionError) as caught:
        client.get_object("b", "k")
    assert time.monotonic() - started < 3
    assert store_error_text(caught.value) == (
        f"S3 GET b/k failed: cannot reach http://127.0.0.1:{port}: Connection refused"
    )
