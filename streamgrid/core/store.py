"""Where kept frames, manifests and grids live: a local directory or S3.

Layout, one prefix per stream (the contract between worker and gateway):

    <stream_id>/frames/<seq:012d>_<brightness*1000:07d>_<captured_at ms:013d>.jpg
    <stream_id>/manifest.json
    <stream_id>/grids/grid_<cols>x<rows>_<w>x<h>_n<frames>.jpg

A frame's key alone carries its score, sequence number and capture time, so
the top K is rebuilt from one listing after a crash, with no per-object reads.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .models import FrameRecord, Manifest
from .urls import mask_secrets

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_FRAME_KEY_RE = re.compile(r"^(?P<seq>\d{12})_(?P<b>\d{7})_(?P<ms>\d{13})\.jpg$")


class StoreError(RuntimeError):
    pass


def store_error_text(exc: BaseException) -> str:
    """Why a store call failed, in one short line for a status reason: an
    OSError's strerror ("No space left on device", without "[Errno 28]"),
    else the client's own text (S3), credentials masked."""
    strerror = exc.strerror if isinstance(exc, OSError) else None
    text = " ".join(str(strerror or exc).split())
    return mask_secrets(text)[:300] or type(exc).__name__


class ObjectStore(ABC):
    """The few object operations the frame store needs."""

    @abstractmethod
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    @abstractmethod
    def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]:
        """Keys under ``prefix`` (which ends with '/')."""

    def delete_prefix(self, prefix: str) -> None:
        for key in list(self.list(prefix)):
            self.delete(key)

    def describe(self) -> str:
        return type(self).__name__

    def ensure_ready(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Create what must exist before the first write (S3: the bucket)."""


class DirectoryObjectStore(ObjectStore):
    """Objects as files under a root directory; writes are atomic renames."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise StoreError("key escapes the store root")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader (or a crash) never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> Iterator[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                yield path.relative_to(self.root).as_posix()

    def delete_prefix(self, prefix: str) -> None:
        super().delete_prefix(prefix)
        base = self._path(prefix)
        for d in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
            d.rmdir()
        if base.is_dir():
            base.rmdir()

    def describe(self) -> str:
        return f"dir:{self.root}"


class S3ObjectStore(ObjectStore):
    """Objects in an S3 bucket (MinIO, SeaweedFS, AWS), under an optional prefix."""

    def __init__(self, client: S3Client, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket = client, bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type
        )

    def get(self, key: str) -> bytes | None:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
        except self.client.exceptions.NoSuchKey:
            return None
        return response["Body"].read()

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(self.prefix) :]

    def ensure_ready(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self.client.exceptions.ClientError:
            self.client.create_bucket(Bucket=self.bucket)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def frame_key(stream_id: str, record: FrameRecord) -> str:
    milli = round(record.brightness * 1000)
    ms = round(record.captured_at * 1000)
    return f"{stream_id}/frames/{record.seq:012d}_{milli:07d}_{ms:013d}.jpg"


def parse_frame_key(name: str) -> FrameRecord | None:
    m = _FRAME_KEY_RE.match(name)
    if not m:
        return None
    return FrameRecord(int(m["seq"]), int(m["b"]) / 1000, int(m["ms"]) / 1000)


class FrameStore:
    """Kept frames, manifests and grids of every stream, over one ObjectStore."""

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects

    def describe(self) -> str:
        return self.objects.describe()

    def ensure_ready(self) -> None:
        self.objects.ensure_ready()

    def put_frame(self, stream_id: str, record: FrameRecord, jpeg: bytes) -> None:
        self.objects.put(frame_key(stream_id, record), jpeg, "image/jpeg")

    def delete_frame(self, stream_id: str, record: FrameRecord) -> None:
        self.objects.delete(frame_key(stream_id, record))

    def get_frame(self, stream_id: str, record: FrameRecord) -> bytes | None:
        return self.objects.get(frame_key(stream_id, record))

    def list_frames(self, stream_id: str) -> list[FrameRecord]:
        records = []
        for key in self.objects.list(f"{stream_id}/frames/"):
            record = parse_frame_key(key.rsplit("/", 1)[-1])
            if record is not None:
                records.append(record)
        return records

    def put_manifest(self, manifest: Manifest) -> None:
        data = json.dumps(manifest.to_json(), separators=(",", ":")).encode()
        self.objects.put(f"{manifest.stream_id}/manifest.json", data, "application/json")

    def get_manifest(self, stream_id: str) -> Manifest | None:
        data = self.objects.get(f"{stream_id}/manifest.json")
        if data is None:
            return None
        try:
            parsed: Any = json.loads(data)
            return Manifest.from_json(parsed)
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"unreadable manifest for {stream_id}: {exc}") from None

    def put_grid(self, stream_id: str, name: str, jpeg: bytes) -> None:
        self.objects.put(f"{stream_id}/grids/{name}", jpeg, "image/jpeg")

    def get_grid(self, stream_id: str, name: str) -> bytes | None:
        return self.objects.get(f"{stream_id}/grids/{name}")

    def delete_stream(self, stream_id: str) -> None:
        self.objects.delete_prefix(f"{stream_id}/")

    def list_grids(self, stream_id: str) -> list[str]:
        """Names of the stream's stored grids, as put_grid was given them."""
        prefix = f"{stream_id}/grids/"
        return [key[len(prefix) :] for key in self.objects.list(prefix)]

    def delete_grid(self, stream_id: str, name: str) -> None:
        self.objects.delete(f"{stream_id}/grids/{name}")


def open_object_store(
    store_url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_region: str = "us-east-1",
    lite: bool = False,
) -> ObjectStore:
    """``file:///path``, a plain path, or ``s3://bucket[/prefix]``.

    ``lite``: with both S3 keys given, the standard-library client
    (core/s3lite.py, ~20 MB less per process than boto3); without keys,
    boto3 all the same, for its credential chain (IRSA, instance profiles).
    """
    parts = urlsplit(store_url)
    if parts.scheme in ("", "file"):
        return DirectoryObjectStore(Path(parts.path if parts.scheme else store_url))
    if parts.scheme == "s3" and lite and s3_access_key_id and s3_secret_access_key:
        from .s3lite import S3LiteClient, S3LiteObjectStore

        if not parts.netloc:
            raise StoreError("s3 store URL needs a bucket: s3://bucket[/prefix]")
        endpoint = s3_endpoint_url or f"https://s3.{s3_region}.amazonaws.com"
        lite_client = S3LiteClient(
            endpoint, s3_access_key_id, s3_secret_access_key, region=s3_region
        )
        return S3LiteObjectStore(lite_client, parts.netloc, parts.path)
    if parts.scheme == "s3":
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=s3_endpoint_url or None,
            aws_access_key_id=s3_access_key_id or None,
            aws_secret_access_key=s3_secret_access_key or None,
            region_name=s3_region,
            config=Config(
                connect_timeout=5,
                read_timeout=15,
                retries={"max_attempts": 3, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
        if not parts.netloc:
            raise StoreError("s3 store URL needs a bucket: s3://bucket[/prefix]")
        return S3ObjectStore(client, parts.netloc, parts.path)
    raise StoreError(f"unsupported store URL scheme {parts.scheme!r}: use a path or s3://")
