"""The dashboard at ``/`` in a real browser: Debian's headless Chromium driven
by Selenium, against the real embedded server and the real RTSP test camera.

A stream started with the page's form shows its thumbnails, which change as
brighter frames are kept; the stop button shows the grid and offers it for
download. Screenshots of both go to the artifacts folder
(``$STREAMGRID_TEST_ARTIFACTS``, by default ``.ci/artifacts/`` in the
repository): ``dashboard-live.png`` and ``dashboard-stopped.png``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from streamgrid.core.grid import decode_jpeg
from testbed.api import details, start, wait_for
from testbed.browser import chromium, wait
from testbed.camera import Camera
from testbed.server import Server, start_server

TOKEN = "dashboard-token-0123456789abcdef"


@pytest.fixture(scope="module")
def artifacts() -> Path:
    """Where the screenshots go, kept by CI with the logs."""
    default = Path(__file__).resolve().parents[2] / ".ci" / "artifacts"
    path = Path(os.environ.get("STREAMGRID_TEST_ARTIFACTS") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser(work_dir: Path, tmp_path: Path) -> Iterator[WebDriver]:
    with chromium(work_dir / "chromedriver.log", tmp_path / "chromium-profile") as driver:
        yield driver


def thumbnail_keys(driver: WebDriver, stream_id: str) -> dict[int, str]:
    """Rank -> frame key of each thumbnail shown and loaded (from a blob: URL)."""
    script = """
        const card = document.querySelector(`article[data-stream-id="${arguments[0]}"]`);
        if (!card) return {};
        const shown = {};
        for (const img of card.querySelectorAll("img.thumb")) {
            if (img.complete && img.naturalWidth > 0 && img.src.startsWith("blob:")) {
                shown[img.dataset.rank] = img.dataset.key;
            }
        }
        return shown;
    """
    shown: dict[str, str] = driver.execute_script(script, stream_id)
    return {int(rank): key for rank, key in shown.items()}


def card_of(driver: WebDriver, stream_id: str) -> WebElement:
    return driver.find_element(By.CSS_SELECTOR, f'article[data-stream-id="{stream_id}"]')


def fetch_in_page(driver: WebDriver, url: str) -> bytes:
    """What the browser gets for ``url`` (a blob: URL is only the page's to read)."""
    script = """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0])
            .then((r) => r.blob())
            .then((b) => new Promise((resolve) => {
                const reader = new FileReader();
                reader.onload = () => resolve(reader.result.split(",")[1]);
                reader.readAsDataURL(b);
            }))
            .then(done, (e) => done("error:" + e));
    """
    encoded: Any = driver.execute_async_script(script, url)
    assert isinstance(encoded, str) and not encoded.startswith("error:"), encoded
    return base64.b64decode(encoded)


def test_start_watch_and_stop_a_stream_in_the_browser(
    server: Server, camera: Camera, browser: WebDriver, artifacts: Path
) -> None:
    browser.set_script_timeout(30)
    browser.get(server.base_url + "/")
    assert browser.title == "streamgrid"
    wait(browser, "the first poll", lambda d: "Updated" in d.find_element(By.ID, "connection").text)

    # Start with the form: 9 frames kept, a sample every 0.2 s.
    # /demo: a brightness sweep with a moving bar, something to see in the screenshots.
    browser.find_element(By.ID, "rtsp-url").send_keys(camera.url("/demo"))
    interval = browser.find_element(By.ID, "capture-interval")
    interval.clear()
    interval.send_keys("0.2")
    browser.find_element(By.ID, "start").click()
    message = wait(
        browser,
        "the start message",
        lambda d: (
            d.find_element(By.ID, "start-message").text.startswith("Started ")
            and d.find_element(By.ID, "start-message").text
        ),
    )
    stream_id = str(message).removeprefix("Started ").rstrip(".")
    card = wait(browser, "the stream's card", lambda d: card_of(d, stream_id))

    # Its thumbnails appear, and change as brighter frames are kept.
    first = wait(browser, "a first thumbnail", lambda d: thumbnail_keys(d, stream_id))
    wait(
        browser,
        "the thumbnails to change",
        lambda d: (keys := thumbnail_keys(d, stream_id)) != first and len(keys) >= 2,
    )
    full = wait(browser, "9 thumbnails", lambda d: len(thumbnail_keys(d, stream_id)) == 9 or None)
    assert full
    with server.client() as client:
        kept = client.get(f"/streams/{stream_id}/frames").json()["frames"]
    assert len(kept) == 9
    assert [f["brightness"] for f in kept] == sorted((f["brightness"] for f in kept), reverse=True)
    widths = browser.execute_script(
        "return [...arguments[0].querySelectorAll('img.thumb')].map((i) => i.naturalWidth);", card
    )
    assert widths == [160] * 9

    # What the card says of the stream.
    wait(
        browser,
        "state Active",
        lambda d: card.find_element(By.CLASS_NAME, "state").text == "Active",
    )
    wait(browser, "9 samples", lambda d: int(card.find_element(By.CLASS_NAME, "frames").text) >= 9)
    assert card.find_element(By.CLASS_NAME, "url").text == camera.url("/demo")
    assert card.find_element(By.CLASS_NAME, "age").text.endswith(" ago")
    assert card.find_element(By.CLASS_NAME, "running").text.endswith(" s")
    browser.save_screenshot(str(artifacts / "dashboard-live.png"))

    # Stop: the grid is shown, and offered for download.
    card.find_element(By.CLASS_NAME, "stop").click()
    grid = wait(
        browser,
        "the grid",
        lambda d: (
            d.execute_script("return arguments[0].naturalWidth", card_grid(card)) == 900
            and card_grid(card)
        ),
    )
    assert isinstance(grid, WebElement) and grid.is_displayed()
    link = card.find_element(By.CLASS_NAME, "download")
    assert link.get_attribute("download") == f"streamgrid-{stream_id}.jpg"
    href = link.get_attribute("href") or ""
    assert href.startswith("blob:")
    jpeg = fetch_in_page(browser, href)
    assert jpeg[:2] == b"\xff\xd8"
    assert decode_jpeg(jpeg).shape[:2] == (900, 900)
    assert card.find_element(By.CLASS_NAME, "state").text == "Stopped"
    with server.client() as client:
        assert details(client, stream_id)["state"] == "Stopped"
    browser.execute_script("arguments[0].scrollIntoView()", card)
    browser.save_screenshot(str(artifacts / "dashboard-stopped.png"))
    for name in ("dashboard-live.png", "dashboard-stopped.png"):
        assert (artifacts / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name

    # A stopped stream's card stays (with its grid) after the next polls.
    browser.execute_script("return new Promise((r) => setTimeout(r, 2500))")
    assert card_grid(card).is_displayed()


def test_kept_frames_and_thumbnails_come_from_the_store(any_server: Server, camera: Camera) -> None:
    """The routes the page polls, on each runtime and store: the cluster's
    capture pods write to S3, and the gateway reads the frames from there."""
    with any_server.client() as client:
        stream_id = start(client, camera.url("/gray"), capture_interval=0.2, top_k=4)
        try:
            wait_for(client, stream_id, lambda d: d["kept"] >= 4, 60, "4 kept frames")
            listed = client.get("/streams").json()["streams"]
            assert stream_id in [s["stream_id"] for s in listed]
            frames = client.get(f"/streams/{stream_id}/frames").json()["frames"]
            assert [f["rank"] for f in frames] == [0, 1, 2, 3]
            levels = [f["brightness"] for f in frames]
            assert levels == sorted(levels, reverse=True)
            for f in frames:
                assert camera.near_level(f["brightness"], f["captured_at"]), f
            thumb = client.get(f"/streams/{stream_id}/frames/0")
            assert thumb.status_code == 200, thumb.text
            # The ETag names the frame sent: its brightness is in its key.
            key = thumb.headers["etag"].strip('"')
            brightness = int(key.split("_")[1]) / 1000
            image = decode_jpeg(thumb.content)
            assert image.shape[1] == 160
            assert abs(float(image.mean()) - brightness) < 3
            again = client.get(
                f"/streams/{stream_id}/frames/0", headers={"If-None-Match": thumb.headers["etag"]}
            )
            # 304 while rank 0 holds that frame; a brighter one since is a new ETag.
            assert again.status_code == 304 or again.headers["etag"] != thumb.headers["etag"]
            missing = client.get(f"/streams/{stream_id}/frames/4")
            assert (missing.status_code, missing.text) == (
                404,
                f"No frame 4 for stream {stream_id}",
            )
        finally:
            assert client.post(f"/stop/{stream_id}").status_code == 200
        # Stopped: no longer listed, its frames still there until the retention.
        assert stream_id not in [s["stream_id"] for s in client.get("/streams").json()["streams"]]
        kept = client.get(f"/streams/{stream_id}/frames").json()["frames"]
        assert len(kept) == 4


def card_grid(card: WebElement) -> WebElement:
    return card.find_element(By.CSS_SELECTOR, "img.grid")


@pytest.fixture(scope="module")
def token_server(work_dir: Path) -> Iterator[Server]:
    server = start_server(
        work_dir,
        "server-dashboard-token",
        extra_env={
            "STREAMGRID_API_TOKEN": TOKEN,
            "STREAMGRID_STATE_DIR": str(work_dir / "server-dashboard-token-state"),
        },
    )
    yield server
    server.process.stop()


def test_with_a_token_the_page_asks_for_it_and_sends_it(
    token_server: Server, camera: Camera, browser: WebDriver
) -> None:
    with token_server.client() as client:
        client.headers["Authorization"] = f"Bearer {TOKEN}"
        stream_id = start(client, camera.url("/gray"), capture_interval=0.2, top_k=4)
        try:
            browser.get(token_server.base_url + "/")  # the page loads without a token
            form = wait(browser, "the token form", lambda d: displayed(d, "token-form"))
            assert form is not None and "needs an API token" in form.text
            browser.find_element(By.ID, "token").send_keys("wrong-token")
            browser.find_element(By.ID, "token-form").submit()
            wait(
                browser,
                "the refusal",
                lambda d: "refused" in d.find_element(By.ID, "token-reason").text,
            )
            assert "Unauthorized: invalid bearer token" in browser.page_source
            browser.find_element(By.ID, "token").send_keys(TOKEN)
            browser.find_element(By.ID, "token-form").submit()
            wait(browser, "the stream's card", lambda d: card_of(d, stream_id))
            keys = wait(browser, "thumbnails", lambda d: len(thumbnail_keys(d, stream_id)) >= 1)
            assert keys
            assert not browser.find_element(By.ID, "token-form").is_displayed()
            assert TOKEN not in browser.page_source
        finally:
            assert client.post(f"/stop/{stream_id}").status_code == 200
    assert TOKEN not in token_server.log_text()


def displayed(driver: WebDriver, element_id: str) -> WebElement | None:
    try:
        element = driver.find_element(By.ID, element_id)
    except WebDriverException:
        return None
    return element if element.is_displayed() else None
