"""The FrameStore contract, run against both implementations: a local
directory and a real S3 server (SeaweedFS)."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from streamgrid.core.models import FrameRecord, Manifest, StreamState
from streamgrid.core.stores.base import ObjectStore, StoreError, store_error_text
from streamgrid.core.stores.directory import DirectoryObjectStore
from streamgrid.core.stores.factory import open_object_store
from streamgrid.core.stores.frames import FrameStore, frame_key, parse_frame_key
from streamgrid.core.stores.s3_boto3 import S3ObjectStore
from streamgrid.core.stores.s3lite import (
    S3ConnectionError,
    S3Error,
    S3LiteClient,
    S3LiteObjectStore,
)
from testbed.s3 import S3Server


def lite_store(
    s3: S3Server, bucket: str, prefix: str = "", secret: str | None = None
) -> ObjectStore:
    client = S3LiteClient(s3.endpoint, s3.access_key, secret or s3.secret_key)
    return S3LiteObjectStore(client, bucket, prefix)


@pytest.fixture(params=["dir", "s3", "s3lite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> FrameStore:
    if request.param == "dir":
        return FrameStore(DirectoryObjectStore(tmp_path / "store"))
    s3: S3Server = request.getfixturevalue("s3")
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    objects: ObjectStore
    if request.param == "s3":
        objects = S3ObjectStore(s3.client(), bucket, prefix="some/prefix")
    else:
        objects = lite_store(s3, bucket, "some/prefix")
    objects.ensure_ready()
    return FrameStore(objects)


def test_frame_key_round_trip() -> None:
    record = FrameRecord(42, 187.125, 1795000000.123)
    name = frame_key("abc", record).rsplit("/", 1)[-1]
    assert parse_frame_key(name) == record
    assert parse_frame_key("garbage.jpg") is None


def test_frames_round_trip_and_listing_rebuilds_records(store: FrameStore) -> None:
    records = [FrameRecord(i, 10.5 * i, 1795000000.0 + i) for i in range(5)]
    for r in records:
        store.put_frame("s1", r, f"jpeg-{r.seq}".encode())
    store.put_frame("s2", FrameRecord(0, 1.0, 1.0), b"other stream")
    assert sorted(store.list_frames("s1"), key=lambda r: r.seq) == records
    assert store.get_frame("s1", records[3]) == b"jpeg-3"
    store.delete_frame("s1", records[3])
    assert store.get_frame("s1", records[3]) is None
    assert len(store.list_frames("s1")) == 4
    assert len(store.list_frames("s2")) == 1


def test_manifest_and_grid(store: FrameStore) -> None:
    assert store.get_manifest("s1") is None
    manifest = Manifest("s1", 12, [FrameRecord(3, 99.0, 5.0)], StreamState.STOPPED, 6.0, True)
    store.put_manifest(manifest)
    assert store.get_manifest("s1") == manifest
    store.put_grid("s1", "grid_a.jpg", b"grid")
    assert store.get_grid("s1", "grid_a.jpg") == b"grid"
    assert store.get_grid("s1", "grid_b.jpg") is None


def test_delete_stream_removes_only_that_stream(store: FrameStore) -> None:
    store.put_frame("s1", FrameRecord(0, 1.0, 1.0), b"a")
    store.put_manifest(Manifest("s1", 1, [], StreamState.STOPPED, 1.0))
    store.put_frame("s10", FrameRecord(0, 1.0, 1.0), b"b")
    store.delete_stream("s1")
    assert store.list_frames("s1") == []
    assert store.get_manifest("s1") is None
    assert len(store.list_frames("s10")) == 1


def test_directory_store_refuses_keys_outside_its_root(tmp_path: Path) -> None:
    objects = DirectoryObjectStore(tmp_path / "root")
    with pytest.raises(StoreError):
        objects.put("../escape", b"x", "text/plain")


def test_s3_rejects_a_wrong_secret(s3: S3Server) -> None:
    """Auth is real: the server refuses a bad signature."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match=r"SignatureDoesNotMatch|AccessDenied|InvalidAccessKey"):
        s3.client(secret_key="wrong-secret").list_buckets()


# -- the standard-library client (core/s3lite.py) against the real server -------


def test_s3lite_lists_past_one_page(s3: S3Server) -> None:
    """ListObjectsV2 answers at most 1000 keys a page: the rest come by token."""
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    objects = lite_store(s3, bucket, "p")
    objects.ensure_ready()
    keys = [f"s/frames/{i:05d}.jpg" for i in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: objects.put(key, b"x", "image/jpeg"), keys))
    objects.put("s0/other.jpg", b"x", "image/jpeg")  # a sibling prefix, not listed
    assert sorted(objects.list("s/")) == keys
    boto = S3ObjectStore(s3.client(), bucket, "p")
    assert sorted(boto.list("s/")) == keys  # the same objects, seen by boto3


ODD_KEYS = [
    "a b/c d.jpg",
    "plus+sign/x+y.jpg",
    "ünïcödé/фото.jpg",
    "tilde~_.-/(1)!*'.jpg",
    "q?x=1&y#z",
]


def test_s3lite_keeps_odd_keys_as_they_are(s3: S3Server) -> None:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    objects = lite_store(s3, bucket)
    objects.ensure_ready()
    for i, key in enumerate(ODD_KEYS):
        objects.put(f"odd/{key}", f"v{i}".encode(), "application/octet-stream")
    assert sorted(objects.list("odd/")) == sorted(f"odd/{key}" for key in ODD_KEYS)
    for i, key in enumerate(ODD_KEYS):
        assert objects.get(f"odd/{key}") == f"v{i}".encode()
    # boto3 reads what the lite client wrote under the same names.
    boto = S3ObjectStore(s3.client(), bucket)
    assert sorted(boto.list("odd/")) == sorted(f"odd/{key}" for key in ODD_KEYS)
    assert boto.get(f"odd/{ODD_KEYS[2]}") == b"v2"
    for key in ODD_KEYS:
        objects.delete(f"odd/{key}")
    assert list(objects.list("odd/")) == []


def test_s3lite_put_sends_the_content_type(s3: S3Server) -> None:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    objects = lite_store(s3, bucket)
    objects.ensure_ready()
    objects.put("m.json", b"{}", "application/json")
    head = s3.client().head_object(Bucket=bucket, Key="m.json")
    assert head["ContentType"] == "application/json"


def test_s3lite_wrong_secret_gives_a_clear_store_error(s3: S3Server) -> None:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(bucket)
    objects = lite_store(s3, bucket, secret="wrong-secret")
    with pytest.raises(S3Error) as caught:
        objects.put("k.jpg", b"x", "image/jpeg")
    reason = store_error_text(caught.value)
    assert reason.startswith(f"S3 PUT {bucket}/k.jpg failed: 403 "), reason
    assert caught.value.code in ("SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId")
    assert "wrong-secret" not in reason and "\n" not in reason


def test_s3lite_unreachable_endpoint_fails_fast() -> None:
    # A port nothing listens on: refused at once, three times.
    objects = S3LiteObjectStore(S3LiteClient("http://127.0.0.1:9", "id", "secret"), "b")
    started = time.monotonic()
    with pytest.raises(S3ConnectionError, match=re.escape("cannot reach http://127.0.0.1:9")):
        objects.get("k")
    assert time.monotonic() - started < 3


# -- the same faults, the same error: every adapter raises StoreError ----------


def faulty_store(kind: str, fault: str, s3: S3Server, tmp_path: Path) -> ObjectStore:
    """``kind``'s store, opened as the processes open theirs, with ``fault``."""
    if kind == "dir":
        assert fault == "unwritable"
        root = tmp_path / "root"
        root.mkdir()
        (root / "s").write_bytes(b"a file where the stream's folder would be")
        return open_object_store(str(root))
    bucket, secret = f"t-{uuid.uuid4().hex[:12]}", s3.secret_key
    endpoint = s3.endpoint
    if fault == "wrong-credentials":
        s3.create_bucket(bucket)
        secret = "wrong-secret"
    elif fault == "unreachable":
        endpoint = "http://127.0.0.1:9"  # nothing listens: refused at once
    return open_object_store(
        f"s3://{bucket}/p",
        s3_endpoint_url=endpoint,
        s3_access_key_id=s3.access_key,
        s3_secret_access_key=secret,
        lite=kind == "s3lite",
    )


# The calls each fault fails. SeaweedFS creates a missing bucket on a PUT (and
# ensure_ready creates it): those two succeed there. A directory reads a file
# in its way as no folder to list.
FAILING_CALLS = {
    "unwritable": ("put", "get", "delete"),
    "wrong-credentials": ("put", "get", "list", "delete", "ensure_ready"),
    "missing-bucket": ("get", "list", "delete"),
    "unreachable": ("put", "get", "list", "delete", "ensure_ready"),
}


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("dir", "unwritable"),
        *[
            (kind, fault)
            for kind in ("boto3", "s3lite")
            for fault in ("wrong-credentials", "missing-bucket", "unreachable")
        ],
    ],
)
def test_every_adapter_raises_only_store_error_with_a_one_line_reason(
    kind: str, fault: str, s3: S3Server, tmp_path: Path
) -> None:
    objects = faulty_store(kind, fault, s3, tmp_path)
    calls: dict[str, Callable[[], object]] = {
        "put": lambda: objects.put("s/frames/x.jpg", b"x", "image/jpeg"),
        "get": lambda: objects.get("s/frames/x.jpg"),
        "list": lambda: list(objects.list("s/")),
        "delete": lambda: objects.delete("s/frames/x.jpg"),
        "ensure_ready": objects.ensure_ready,
    }
    for name in FAILING_CALLS[fault]:
        with pytest.raises(StoreError) as caught:
            calls[name]()
        reason = str(caught.value)
        assert reason and "\n" not in reason and len(reason) <= 300, (name, reason)
        assert store_error_text(caught.value) == reason, name
        assert "wrong-secret" not in reason and s3.secret_key not in reason, name


def test_a_directory_store_whose_root_cannot_be_made_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(StoreError, match=r"^Not a directory$"):
        open_object_store(str(tmp_path / "file" / "root"))
