"""The streams' layout over an object store (a local directory or S3).

Layout, one prefix per stream (the contract between worker and gateway):

    <stream_id>/frames/<seq:012d>_<brightness*1000:07d>_<captured_at ms:013d>.jpg
    <stream_id>/manifest.json
    <stream_id>/grids/grid_<cols>x<rows>_<w>x<h>_n<frames>.jpg

A frame's key alone carries its score, sequence number and capture time, so
the top K is rebuilt from one listing after a crash, with no per-object reads.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..models import FrameRecord, Manifest
from .base import ObjectStore, StoreError

_FRAME_KEY_RE = re.compile(r"^(?P<seq>\d{12})_(?P<b>\d{7})_(?P<ms>\d{13})\.jpg$")


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
    """Kept frames, manifests and grids of every stream, over one ObjectStore.
    Every method raises only StoreError."""

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
