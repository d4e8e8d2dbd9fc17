"""The gateway's stream cache is the one watch cache (core/watch_cache.py):
newest resourceVersion wins, and a deleted stream stays deleted when a late
answer (our own write's, which raced the watch) arrives after its DELETED."""

from __future__ import annotations

import threading
from typing import Any

from streamgrid.gateway.kube import StreamCache


def stream(name: str, version: int, state: str = "Active", desired: str = "Running") -> Any:
    return {
        "metadata": {"name": name, "namespace": "ns", "resourceVersion": str(version)},
        "spec": {"source": {"url": "rtsp://cam/x"}, "state": desired},
        "status": {"state": state, "framesCaptured": version},
    }


def cache() -> StreamCache:
    return StreamCache(custom=None, namespace="ns")  # no watch started


def test_a_deleted_stream_does_not_come_back_on_a_late_answer() -> None:
    c = cache()
    c.put(stream("a", 10))
    c.objects.delete(stream("a", 12))  # the watch's DELETED
    c.put(stream("a", 11))  # the answer of a PATCH sent before the delete
    assert c.get("a") is None
    assert c.list_entries() == [] and c.states() == {}


def test_the_newest_version_wins_and_indexes_follow() -> None:
    c = cache()
    c.put(stream("a", 5, state="Active"))
    c.put(stream("a", 4, state="Pending"))  # older: ignored
    assert c.states() == {"a": ("Running", "Active")}
    c.put(stream("a", 6, state="Stopped", desired="Stopped"))
    assert c.states() == {"a": ("Stopped", "Stopped")}
    assert c.list_entries() == []  # a stopped stream is not listed


def test_a_relist_drops_what_went_while_the_watch_was_down() -> None:
    c = cache()
    c.put(stream("a", 5))
    c.put(stream("b", 6))
    c.objects.replace_all([stream("b", 6)], 20)
    assert c.get("a") is None and c.get("b") is not None


def test_wait_for_wakes_on_a_change() -> None:
    c = cache()
    c.put(stream("a", 1, state="Active"))
    started = threading.Event()

    def stop_later() -> None:
        started.wait(5)
        c.put(stream("a", 2, state="Stopped", desired="Stopped"))

    thread = threading.Thread(target=stop_later)
    thread.start()
    started.set()
    assert c.wait_for("a", lambda s: (s or {}).get("status", {}).get("state") == "Stopped", 5)
    thread.join()
    assert not c.wait_for("a", lambda s: s is None, 0.2)
