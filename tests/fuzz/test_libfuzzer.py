"""The RTP parser (streamgrid/capture/rtp_parse.c) under libFuzzer, ASan and
UBSan for a fixed budget (FUZZ_CI_SECONDS, 60 by default), from the kept corpus
(tests/fuzz/corpus/libfuzzer/), which it replays first. It fails loudly if
clang or its runtimes are missing, and names each reproducer (``make fuzz``
runs the same thing longer)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .libfuzzer import CORPUS, build, fuzz

SECONDS = float(os.environ.get("FUZZ_CI_SECONDS", "60"))


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 300)
def test_a_bounded_libfuzzer_run_finds_nothing(tmp_path: Path) -> None:
    assert len(list(CORPUS.iterdir())) >= 100, f"the kept corpus in {CORPUS} is missing"
    # A RuntimeError here (no clang, no libclang-rt-14-dev) fails the test.
    binary = build(tmp_path / "rtp_fuzz")
    run = fuzz(binary, SECONDS, [tmp_path / "new", CORPUS], tmp_path / "findings")
    print(run.summary())
    assert run.returncode == 0 and not run.findings, (
        "libFuzzer found inputs that break the RTP parser; reproducers:\n"
        + run.reproducers()
        + f"\n{run.log[-8000:]}"
    )
    assert run.execs > 0 and "Done" in run.log, f"libFuzzer did not finish:\n{run.log[-8000:]}"
