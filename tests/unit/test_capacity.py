"""The embedded runtime's default stream cap: what the machine holds, measured
at start (gateway/capacity.py), said in /start's 429."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamgrid.gateway import capacity
from streamgrid.gateway.backend import TooManyStreams
from streamgrid.gateway.capacity import MB_PER_STREAM, SERVER_MB, STREAMS_PER_CORE, Capacity
from streamgrid.gateway.local import LocalBackend
from streamgrid.gateway.requests import StartRequest
from streamgrid.gateway.settings import GatewaySettings
from streamgrid.gateway.workers import ExecSpawner
from testbed.worker import dir_store


def machine(root: Path, available_kb: int, cgroup: dict[str, str] | None = None) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/meminfo").write_text(
        f"MemTotal:       32000000 kB\nMemFree:         1000000 kB\n"
        f"MemAvailable:   {available_kb} kB\n"
    )
    (root / "proc/self/cgroup").write_text("0::/box\n")
    (root / "sys/fs/cgroup/box").mkdir(parents=True)
    for name, text in (cgroup or {}).items():
        (root / "sys/fs/cgroup/box" / name).write_text(text + "\n")
    return root


def test_the_cap_is_the_lesser_of_what_the_cores_and_the_memory_hold() -> None:
    cores = len(os.sched_getaffinity(0))
    roomy = Capacity(cores, 64_000)
    assert roomy.streams() == cores * STREAMS_PER_CORE == roomy.by_cpu
    tight = Capacity(cores, SERVER_MB + 10 * MB_PER_STREAM)
    assert tight.streams() == 10 == tight.by_memory
    assert Capacity(0.01, 10).streams() == 1  # never none


def test_a_cgroup_limits_the_cores_and_the_memory(tmp_path: Path) -> None:
    root = machine(
        tmp_path,
        available_kb=16_000_000,
        cgroup={"cpu.max": "50000 100000", "memory.max": str(2**30), "memory.current": "0"},
    )
    measured = capacity.measure(root)
    assert measured.cores == min(0.5, len(os.sched_getaffinity(0)))
    assert measured.memory_mb == 1024  # the cgroup's limit, not the machine's 15.6 GB
    unlimited = capacity.measure(
        machine(tmp_path / "free", 16_000_000, {"cpu.max": "max 100000", "memory.max": "max"})
    )
    assert unlimited.cores == len(os.sched_getaffinity(0))
    assert unlimited.memory_mb == pytest.approx(16_000_000 / 1024)


def test_unset_the_embedded_cap_is_measured_set_it_is_as_given(tmp_path: Path) -> None:
    measured = GatewaySettings(store_url=str(tmp_path))
    assert measured.max_streams == capacity.measure().streams()
    assert measured.stream_limit().startswith(f"{measured.max_streams} (what this machine holds: ")
    assert GatewaySettings(store_url=str(tmp_path), max_streams=3).stream_limit() == "3"
    assert GatewaySettings(backend="kube").max_streams == 64  # the cluster's is the chart's


def test_the_429_says_why_the_measured_cap_is_what_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(capacity, "measure", lambda: Capacity(cores=0.02, memory_mb=64_000))
    settings = GatewaySettings(store_url=str(tmp_path), stop_timeout_seconds=2.0)
    assert settings.max_streams == 1
    backend = LocalBackend(settings, dir_store(tmp_path), spawner=ExecSpawner())
    try:
        backend.start(StartRequest("rtsp://127.0.0.1:9/none"))
        with pytest.raises(TooManyStreams) as refused:
            backend.start(StartRequest("rtsp://127.0.0.1:9/none"))
        limit = refused.value.args[0]
        # What the API prints after "Too many streams: the limit is ".
        by_memory = (64_000 - SERVER_MB) // MB_PER_STREAM
        assert limit == (
            f"1 (what this machine holds: 0.02 CPU cores at {STREAMS_PER_CORE} streams each "
            f"(1), 62.5 GB of memory free at start at {MB_PER_STREAM} MB each ({by_memory}); "
            "STREAMGRID_MAX_STREAMS sets another)"
        )
    finally:
        backend.close()
