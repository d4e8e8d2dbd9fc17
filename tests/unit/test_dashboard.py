"""The dashboard's routes (gateway/dashboard.py) in the real app, in process:
the page and its assets, /streams, a stream's kept frames and thumbnails read
from a real directory store; 404s, 304s, 503s; what needs a token.

The backend here only holds stream infos and reads the store, as both real
backends do (tests/e2e/test_dashboard.py drives the real server in a browser).
"""

from __future__ import annotations

import errno
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from streamgrid import __version__
from streamgrid.core.geometry import GridGeometry
from streamgrid.core.grid import decode_jpeg, encode_jpeg
from streamgrid.core.models import FrameRecord, StreamState
from streamgrid.core.stores.base import StoreError
from streamgrid.core.stores.directory import DirectoryObjectStore
from streamgrid.core.stores.frames import FrameStore
from streamgrid.gateway.app import create_app
from streamgrid.gateway.auth import Action, Authenticator, StaticTokens, action_for
from streamgrid.gateway.backend import StreamInfo, StreamNotFound, read_frame, read_kept_frames
from streamgrid.gateway.dashboard import etag_matches, frame_name, thumbnail
from streamgrid.gateway.listing import ListEntry, entry_of
from streamgrid.gateway.requests import StartRequest

TOKEN = "a-dashboard-token"
LOCAL = "http://127.0.0.1"  # the base URL of the test client: a Host the server answers to


class RefusingObjects(DirectoryObjectStore):
    """A directory whose reads can be refused, as a dead disk refuses them."""

    refuse = False

    def list(self, prefix: str) -> Iterator[str]:
        if self.refuse:
            raise StoreError(os.strerror(errno.EIO))
        yield from super().list(prefix)


class StoredStreams:
    """Streams as given, their frames in a real store: the StreamBackend
    methods the dashboard calls; the others are not called here."""

    def __init__(self, store: FrameStore, infos: list[StreamInfo]) -> None:
        self.store, self.infos = store, {i.stream_id: i for i in infos}

    def start(self, request: StartRequest) -> str:
        raise AssertionError("not called by these tests")

    def list_entries(self) -> list[ListEntry]:
        return [entry_of(info) for info in self.active()]

    def active(self) -> list[StreamInfo]:
        return [i for i in self.infos.values() if i.state != StreamState.STOPPED]

    def info(self, stream_id: str) -> StreamInfo:
        if stream_id not in self.infos:
            raise StreamNotFound(stream_id)
        return self.infos[stream_id]

    def stop(self, stream_id: str, geometry: GridGeometry | None) -> bytes:
        raise AssertionError("not called by these tests")

    def stop_all(self) -> dict[str, str]:
        return {}

    def kept_frames(self, stream_id: str) -> list[FrameRecord]:
        return read_kept_frames(self.store, stream_id, self.info(stream_id).top_k)

    def frame_jpeg(self, stream_id: str, record: FrameRecord) -> bytes | None:
        self.info(stream_id)
        return read_frame(self.store, stream_id, record)

    def close(self) -> None:
        pass


def info(stream_id: str, state: StreamState, top_k: int = 3) -> StreamInfo:
    return StreamInfo(
        stream_id=stream_id,
        url="rtsp://camera.example/live",
        state=state,
        frames_captured=5,
        running_time=12.5,
        started_at=1795000000.0 + len(stream_id),
        last_frame_at=1795000012.0,
        top_k=top_k,
    )


def frame(level: int, width: int = 640, height: int = 480) -> bytes:
    return encode_jpeg(np.full((height, width, 3), level, dtype=np.uint8))


@pytest.fixture
def objects(tmp_path: Path) -> RefusingObjects:
    return RefusingObjects(tmp_path / "store")


@pytest.fixture
def store(objects: RefusingObjects) -> FrameStore:
    store = FrameStore(objects)
    # Five samples of "cam"; top_k 3 keeps the brightest three (as a listing
    # right before the worker deletes an evicted one would still show five).
    for seq, level in enumerate([50, 200, 120, 240, 200]):
        store.put_frame("cam", FrameRecord(seq, float(level), 1795000000.0 + seq), frame(level))
    return store


def client_for(store: FrameStore, authenticator: Authenticator | None = None) -> TestClient:
    infos = [
        info("cam", StreamState.ACTIVE),
        info("empty", StreamState.CONNECTING),
        info("gone", StreamState.STOPPED),
    ]
    app = create_app(lambda: StoredStreams(store, infos), authenticator)
    return TestClient(app, base_url=LOCAL)


@pytest.fixture
def client(store: FrameStore) -> Iterator[TestClient]:
    with client_for(store) as client:
        yield client


def test_a_frame_is_named_by_its_store_key() -> None:
    record = FrameRecord(12, 123.456, 1795000000.123)
    assert frame_name("cam", record) == "000000000012_0123456_1795000000123"


def test_thumbnails_are_160_wide_keep_the_aspect_and_are_never_enlarged() -> None:
    assert decode_jpeg(thumbnail(frame(100, 640, 480))).shape == (120, 160, 3)
    assert decode_jpeg(thumbnail(frame(100, 1920, 1080))).shape == (90, 160, 3)
    assert decode_jpeg(thumbnail(frame(100, 100, 50))).shape == (50, 100, 3)
    with pytest.raises(ValueError):
        thumbnail(b"not a jpeg")


def test_if_none_match_compares_weakly() -> None:
    assert etag_matches('"a"', '"a"')
    assert etag_matches('W/"a", "b"', '"a"')
    assert etag_matches("*", '"a"')
    assert not etag_matches(None, '"a"')
    assert not etag_matches('"ab"', '"a"')


def test_streams_lists_those_not_stopped_oldest_first_with_the_server_clock(
    client: TestClient,
) -> None:
    response = client.get("/streams")
    assert response.status_code == 200
    body = response.json()
    assert [s["stream_id"] for s in body["streams"]] == ["cam", "empty"]
    assert abs(body["now"] - time.time()) < 60
    cam = body["streams"][0]
    assert cam["state"] == "Active" and cam["last_frame_at"] == 1795000012.0
    assert cam["top_k"] == 3 and cam["url"] == "rtsp://camera.example/live"


def test_kept_frames_are_the_top_k_brightest_first(client: TestClient) -> None:
    response = client.get("/streams/cam/frames")
    assert response.status_code == 200
    frames = response.json()["frames"]
    assert [(f["rank"], f["seq"], f["brightness"]) for f in frames] == [
        (0, 3, 240.0),
        (1, 1, 200.0),  # the earlier of two equal frames first, as the grid has them
        (2, 4, 200.0),
    ]
    assert frames[0]["key"] == "000000000003_0240000_1795000003000"
    assert frames[0]["captured_at"] == 1795000003.0
    assert client.get("/streams/empty/frames").json() == {"stream_id": "empty", "frames": []}


def test_a_thumbnail_is_the_ranked_frame_small_with_its_key_as_etag(client: TestClient) -> None:
    response = client.get("/streams/cam/frames/0")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["etag"] == '"000000000003_0240000_1795000003000"'
    assert response.headers["cache-control"] == "private, no-cache"
    image = decode_jpeg(response.content)
    assert image.shape == (120, 160, 3)
    assert abs(float(np.mean(image)) - 240) < 3
    assert abs(float(np.mean(decode_jpeg(client.get("/streams/cam/frames/2").content))) - 200) < 3

    again = client.get("/streams/cam/frames/0", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == response.headers["etag"]
    other = client.get("/streams/cam/frames/1", headers={"If-None-Match": response.headers["etag"]})
    assert other.status_code == 200 and other.headers["etag"] != response.headers["etag"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/streams/cam/frames/3", "No frame 3 for stream cam"),  # top_k 3: ranks 0-2
        (
            "/streams/cam/frames/99999999999999999999",
            "No frame 99999999999999999999 for stream cam",
        ),
        ("/streams/empty/frames/0", "No frame 0 for stream empty"),
        ("/streams/nope/frames", "Stream not found with id nope"),
        ("/streams/nope/frames/0", "Stream not found with id nope"),
        ("/streams/cam/frames/-1", "Not Found"),
        ("/streams/cam/frames/x", "Not Found"),
    ],
)
def test_unknown_streams_and_ranks_are_a_plain_404(
    client: TestClient, path: str, reason: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == reason


def test_a_frame_that_does_not_decode_is_a_500(client: TestClient, store: FrameStore) -> None:
    store.put_frame("cam", FrameRecord(9, 250.0, 1795000009.0), b"\xff\xd8 not really")
    response = client.get("/streams/cam/frames/0")
    assert (response.status_code, response.text) == (500, "Failed to create image")


def test_a_store_that_refuses_reads_is_a_503_with_the_reason(
    client: TestClient, objects: RefusingObjects
) -> None:
    objects.refuse = True
    for path in ("/streams/cam/frames", "/streams/cam/frames/0"):
        response = client.get(path)
        assert response.status_code == 503
        assert response.text == "Store unavailable: Input/output error"


ASSET_RE = re.compile(r"""(?:src|href)="([^"]+)\"""")


def test_the_page_and_its_assets_come_from_the_server(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert f"v{__version__}" in page.text
    assert "$" not in page.text  # every placeholder filled
    assets = [a for a in ASSET_RE.findall(page.text) if not a.startswith("data:")]
    assert sorted(assets) == ["dashboard-assets/dashboard.css", "dashboard-assets/dashboard.js"]
    for text in [page.text] + [client.get("/" + a).text for a in assets]:
        assert "http://" not in text and "https://" not in text  # no CDN, nothing remote
    assert (
        client.get("/dashboard-assets/dashboard.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert client.get("/dashboard-assets/nothing.js").status_code == 404


def test_with_a_token_the_page_loads_without_it_and_its_calls_need_it(store: FrameStore) -> None:
    authenticator = Authenticator([StaticTokens([TOKEN])])
    with client_for(store, authenticator) as client:
        for path in ("/", "/dashboard-assets/dashboard.js", "/dashboard-assets/dashboard.css"):
            assert client.get(path).status_code == 200, path
        for path in ("/streams", "/streams/cam/frames", "/streams/cam/frames/0"):
            response = client.get(path)
            assert response.status_code == 401, path
            assert response.text == "Unauthorized: a bearer token is required"
            authorized = client.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert authorized.status_code == 200, path


@pytest.mark.parametrize(
    ("path", "action"),
    [
        ("/streams", Action("list")),
        ("/streams/abc", Action("get", "abc")),
        ("/streams/abc/frames", Action("get", "abc")),
        ("/streams/abc/frames/0", Action("get", "abc")),
    ],
)
def test_the_dashboard_calls_need_the_verbs_kubectl_would(path: str, action: Action) -> None:
    assert action_for("GET", path) == action


def test_the_document_has_the_json_routes_and_not_the_page(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/streams", "/streams/{stream_id}/frames", "/streams/{stream_id}/frames/{rank}"} <= set(
        paths
    )
    assert "/" not in paths
    rank = paths["/streams/{stream_id}/frames/{rank}"]["get"]["parameters"][1]
    assert rank["name"] == "rank" and rank["schema"]["type"] == "integer"
