// The streamgrid dashboard: polls GET streams every two seconds, and each
// stream's kept frames; a thumbnail is fetched only when the frame at its rank
// changes (a new key). Requests go through fetch(), so that a bearer token
// (asked for after a 401, kept in sessionStorage) goes with every one of
// them, thumbnails included (shown from blob: URLs).
"use strict";

(() => {
  const POLL_MS = 2000;
  const TOKEN_KEY = "streamgrid.token";
  const cards = new Map(); // stream id -> card (see addCard)
  let polling = false;

  const $ = (selector, root = document) => root.querySelector(selector);

  class ApiError extends Error {
    constructor(status, text) {
      super(text);
      this.status = status;
    }
  }

  // A call to the gateway (paths relative to the page: works behind a prefix).
  async function api(path, init = {}) {
    const headers = new Headers(init.headers);
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.set("Authorization", `Bearer ${token}`);
    const response = await fetch(path, { ...init, headers });
    if (response.ok) return response;
    const text = (await response.text()).trim() || `HTTP ${response.status}`;
    if (response.status === 401) askForToken(text);
    throw new ApiError(response.status, text);
  }

  function streamPath(id, ...rest) {
    return ["streams", encodeURIComponent(id), ...rest].join("/");
  }

  // -- formatting -----------------------------------------------------------
  const pad = (n) => String(n).padStart(2, "0");

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
    const s = Math.max(0, seconds);
    if (s < 60) return `${s.toFixed(1)} s`;
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return h ? `${h} h ${pad(m)} min` : `${m} min ${pad(Math.floor(s % 60))} s`;
  }

  // A frame key: <seq>_<brightness*1000>_<captured ms>, as the store names it.
  function describeKey(key) {
    const [seq, milli, ms] = key.split("_").map(Number);
    const at = new Date(ms).toLocaleTimeString();
    return `#${seq} · brightness ${(milli / 1000).toFixed(1)} · ${at}`;
  }

  function setMessage(element, text, isError = false) {
    element.textContent = text;
    element.classList.toggle("error", isError);
  }

  // -- the token ------------------------------------------------------------
  function askForToken(reason) {
    const form = $("#token-form");
    $("#token-reason").textContent = sessionStorage.getItem(TOKEN_KEY)
      ? `The token was refused (${reason}).`
      : "This server needs an API token.";
    form.hidden = false;
  }

  $("#token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
    $("#token").value = "";
    $("#token-form").hidden = true;
    poll();
  });

  // -- starting -------------------------------------------------------------
  $("#start-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = $("#start-message");
    const query = new URLSearchParams();
    for (const [name, id] of [["capture_interval", "#capture-interval"], ["top_k", "#top-k"]]) {
      const value = $(id).value.trim();
      if (value) query.set(name, value);
    }
    const body = new URLSearchParams({ rtsp_url: $("#rtsp-url").value.trim() });
    $("#start").disabled = true;
    try {
      const response = await api(`start?${query}`, { method: "POST", body });
      const started = await response.json();
      setMessage(message, `Started ${started.stream_id}.`);
      poll();
    } catch (error) {
      setMessage(message, error.message, true);
    } finally {
      $("#start").disabled = false;
    }
  });

  // -- one card per stream --------------------------------------------------
  function addCard(id) {
    const root = $("#stream-template").content.firstElementChild.cloneNode(true);
    root.dataset.streamId = id;
    $(".stream-id", root).textContent = id;
    const card = { id, root, thumbs: [], stopping: false, stopped: false, gridUrl: null };
    $(".stop", root).addEventListener("click", () => stop(card));
    $(".dismiss", root).addEventListener("click", () => removeCard(card));
    $("#streams").append(root);
    cards.set(id, card);
    return card;
  }

  function removeCard(card) {
    for (const thumb of card.thumbs) URL.revokeObjectURL(thumb.url);
    if (card.gridUrl) URL.revokeObjectURL(card.gridUrl);
    card.root.remove();
    cards.delete(card.id);
    showCount();
  }

  function showState(card, state) {
    const element = $(".state", card.root);
    element.textContent = state;
    element.className = `state state-${state.toLowerCase()}`;
    card.root.dataset.state = state;
  }

  function fill(card, stream, now) {
    showState(card, stream.state);
    $(".url", card.root).textContent = stream.url;
    $(".frames", card.root).textContent = String(stream.frames_captured);
    $(".running", card.root).textContent = duration(stream.running_time);
    const age = stream.last_frame_at ? now - stream.last_frame_at : null;
    $(".age", card.root).textContent = age === null ? "—" : `${duration(age)} ago`;
    $(".interval", card.root).textContent = `${stream.capture_interval} s, top ${stream.top_k}`;
    $(".reason", card.root).textContent = stream.reason || "";
    $(".reason-box", card.root).hidden = !stream.reason;
  }

  function showCount() {
    const running = [...cards.values()].filter((c) => !c.stopped).length;
    $("#stream-count").textContent = running ? `(${running} running)` : "";
    $("#no-streams").hidden = cards.size > 0;
  }

  // -- thumbnails -----------------------------------------------------------
  async function refreshThumbs(card) {
    let listing;
    try {
      listing = await (await api(streamPath(card.id, "frames"))).json();
    } catch (error) {
      return; // stopped or expired meanwhile: the next poll says so
    }
    if (card.stopped) return;
    const frames = listing.frames;
    while (card.thumbs.length > frames.length) {
      const gone = card.thumbs.pop();
      URL.revokeObjectURL(gone.url);
      gone.img.remove();
    }
    await Promise.all(frames.map((frame) => showThumb(card, frame)));
  }

  async function showThumb(card, frame) {
    const current = card.thumbs[frame.rank];
    if (current && current.key === frame.key) return;
    let response;
    try {
      response = await api(streamPath(card.id, "frames", frame.rank));
    } catch (error) {
      return; // evicted since the listing: the next poll has the new one
    }
    // The ETag names the frame sent, which may be newer than the listing's.
    const key = (response.headers.get("ETag") || frame.key).replaceAll('"', "");
    const url = URL.createObjectURL(await response.blob());
    let thumb = card.thumbs[frame.rank];
    if (!thumb) {
      const box = $(".thumbs", card.root);
      while (card.thumbs.length <= frame.rank) {
        const img = document.createElement("img");
        img.className = "thumb";
        img.dataset.rank = String(card.thumbs.length);
        box.append(img);
        card.thumbs.push({ img, key: "", url: "" });
      }
      thumb = card.thumbs[frame.rank];
    }
    if (thumb.url) URL.revokeObjectURL(thumb.url);
    thumb.key = key;
    thumb.url = url;
    thumb.img.src = url;
    thumb.img.dataset.key = key;
    thumb.img.alt = thumb.img.title = `Rank ${frame.rank + 1}: ${describeKey(key)}`;
  }

  // -- stopping -------------------------------------------------------------
  async function stop(card) {
    const button = $(".stop", card.root);
    const message = $(".message", card.root);
    card.stopping = true;
    button.disabled = true;
    button.textContent = "Stopping…";
    setMessage(message, "Stopping and composing the grid…");
    try {
      const response = await api(`stop/${encodeURIComponent(card.id)}`, { method: "POST" });
      card.gridUrl = URL.createObjectURL(await response.blob());
      card.stopped = true;
      showState(card, "Stopped");
      $(".grid", card.root).src = card.gridUrl;
      const link = $(".download", card.root);
      link.href = card.gridUrl;
      link.download = `streamgrid-${card.id}.jpg`;
      $(".grid-box", card.root).hidden = false;
      button.hidden = true;
      $(".dismiss", card.root).hidden = false;
      setMessage(message, "");
    } catch (error) {
      setMessage(message, error.message, true);
      button.disabled = false;
      button.textContent = "Stop";
      return;
    } finally {
      card.stopping = false;
      showCount();
    }
    try {
      // Its final count and running time, as of the stop.
      const final = await (await api(streamPath(card.id))).json();
      fill(card, final, final.stopped_at ?? Date.now() / 1000);
    } catch (error) {
      // Shown as it was: the grid is what matters.
    }
  }

  // -- the poll -------------------------------------------------------------
  async function poll() {
    if (polling) return;
    polling = true;
    try {
      const data = await (await api("streams")).json();
      const listed = new Set();
      for (const stream of data.streams) {
        listed.add(stream.stream_id);
        const card = cards.get(stream.stream_id) || addCard(stream.stream_id);
        if (!card.stopped && !card.stopping) fill(card, stream, data.now);
      }
      // Stopped elsewhere (another tab, the CLI): gone, unless its grid is shown here.
      for (const card of [...cards.values()]) {
        if (!listed.has(card.id) && !card.stopped && !card.stopping) removeCard(card);
      }
      showCount();
      setMessage($("#connection"), `Updated ${new Date().toLocaleTimeString()}`);
      const live = [...cards.values()].filter((c) => !c.stopped && listed.has(c.id));
      await Promise.all(live.map(refreshThumbs));
    } catch (error) {
      setMessage($("#connection"), error.message, true);
    } finally {
      polling = false;
    }
  }

  async function loop() {
    await poll();
    setTimeout(loop, POLL_MS);
  }

  loop();
})();
