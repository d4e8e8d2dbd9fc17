"""A real browser on a hostile page: headless Chromium opens a page that
another origin serves (a small HTTP server on another port, as
http://localhost:<port> against the server's http://127.0.0.1:<port>), which
submits forms to the API and tries ``fetch()`` reads and an ``<img>`` of a
kept frame. Nothing is started or stopped, the page reads nothing, and the
server's log shows it refused each write (so the browser did send them).
Then DNS rebinding: the browser resolves an attacker's name to 127.0.0.1
(``--host-resolver-rules``) and opens the API under that name: it gets the
421, not the streams."""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from testbed.api import details, start, wait_for
from testbed.browser import chromium, wait
from testbed.camera import Camera
from testbed.server import Server

REBOUND = "rebind.evil.test"

PAGE = """<!doctype html>
<html><head><title>attacking</title></head><body>
<iframe name="sink-start"></iframe><iframe name="sink-stop-one"></iframe>
<iframe name="sink-stop-all"></iframe>
<form id="start" method="POST" target="sink-start"
      action="{target}/start?capture_interval=5">
  <input name="rtsp_url" value="{camera}"></form>
<form id="stop-one" method="POST" target="sink-stop-one" action="{target}/stop/{stream_id}">
</form>
<form id="stop-all" method="POST" target="sink-stop-all" action="{target}/stop"></form>
<script>
"use strict";
const target = {target_js};
const results = {{}};
const submitted = (id) => new Promise((resolve) => {{
  const form = document.getElementById(id);
  document.getElementsByName(form.target)[0].addEventListener("load", () => resolve("loaded"));
  form.submit();
}});
const read = (path) => fetch(target + path).then(
  async (r) => "read " + r.status + ": " + (await r.text()).slice(0, 200),
  (e) => "blocked: " + e.name);
const blind = (path, body) => fetch(target + path, {{method: "POST", mode: "no-cors", body}})
  .then((r) => "sent (" + r.type + ")", (e) => "blocked: " + e.name);
const image = (path) => new Promise((resolve) => {{
  const img = new Image();
  img.onload = () => resolve("loaded " + img.naturalWidth + "px");
  img.onerror = () => resolve("refused");
  img.src = target + path;
}});
(async () => {{
  results.formStart = await submitted("start");
  results.formStopOne = await submitted("stop-one");
  results.formStopAll = await submitted("stop-all");
  results.readList = await read("/list");
  results.readStreams = await read("/streams");
  results.readFrames = await read("/streams/{stream_id}/frames");
  results.blindStart = await blind("/start", new URLSearchParams({{rtsp_url: {camera_js}}}));
  results.blindStop = await blind("/stop");
  results.frameImage = await image("/streams/{stream_id}/frames/0");
  window.attackResults = results;
  document.title = "done";
}})();
</script></body></html>
"""


class AttackerSite:
    """Serves one page, as any web site the user happens to open."""

    def __init__(self, page: str) -> None:
        body = page.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> AttackerSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def running(server: Server, camera: Camera) -> Iterator[str]:
    """A stream the user started, with kept frames for the page to go after."""
    with server.client() as client:
        stream_id = start(client, camera.url(), capture_interval=0.2)
        wait_for(client, stream_id, lambda d: d["kept"] >= 1, 60, "a kept frame")
        yield stream_id
        client.post(f"/stop/{stream_id}")


def refusals(server: Server) -> list[dict[str, Any]]:
    lines = [line for line in server.process.log_text().splitlines() if line.startswith("{")]
    events = [json.loads(line) for line in lines]
    return [e for e in events if e.get("event") == "request.cross_site_refused"]


def test_a_hostile_page_in_a_real_browser_drives_and_reads_nothing(
    server: Server, camera: Camera, running: str, work_dir: Path, tmp_path: Path
) -> None:
    page = PAGE.format(
        target=html.escape(server.base_url),
        target_js=json.dumps(server.base_url),
        camera=html.escape(camera.url()),
        camera_js=json.dumps(camera.url()),
        stream_id=running,
    )
    with server.client() as client:
        before = client.get("/list").json()["active_streams"]
    assert list(before) == [running]
    seen_before = len(refusals(server))
    log = work_dir / "chromedriver-attack.log"
    with AttackerSite(page) as site, chromium(log, tmp_path / "profile") as browser:
        origin = f"http://localhost:{site.port}"
        browser.set_script_timeout(30)
        browser.get(f"{origin}/attack.html")
        wait(browser, "the page's attempts", lambda d: d.title == "done")
        results: dict[str, str] = browser.execute_script("return window.attackResults")

    # The page read nothing: each read failed in the browser.
    for name in ("readList", "readStreams", "readFrames"):
        assert results[name] == "blocked: TypeError", results
    assert results["frameImage"] == "refused", results
    # Its forms and blind POSTs reached the server, and were refused.
    for name in ("formStart", "formStopOne", "formStopAll"):
        assert results[name] == "loaded", results
    refused = refusals(server)[seen_before:]
    refused_writes = sorted(
        (e["method"], e["path"]) for e in refused if e["origin"] == origin and e["method"] == "POST"
    )
    forms = [("POST", "/start"), ("POST", f"/stop/{running}"), ("POST", "/stop")]
    blind = [("POST", "/start"), ("POST", "/stop")]
    assert refused_writes == sorted(forms + blind), refused
    # Nothing was started or stopped.
    with server.client() as client:
        after = client.get("/list").json()["active_streams"]
        assert list(after) == [running]
        assert details(client, running)["state"] == "Active"


def test_a_rebound_name_gets_the_421_not_the_streams(
    server: Server, running: str, work_dir: Path, tmp_path: Path
) -> None:
    port = server.base_url.rsplit(":", 1)[1]
    rules = f"--host-resolver-rules=MAP {REBOUND} 127.0.0.1"
    log = work_dir / "chromedriver-rebind.log"
    with chromium(log, tmp_path / "profile", rules) as browser:
        for path in ("/list", "/streams", "/"):
            browser.get(f"http://{REBOUND}:{port}{path}")
            text = browser.find_element(By.TAG_NAME, "body").text
            assert "STREAMGRID_ALLOWED_HOSTS" in text, text
            assert running not in browser.page_source
        # The same browser, by the server's own address, is served.
        browser.get(f"{server.base_url}/list")
        assert running in browser.find_element(By.TAG_NAME, "body").text
