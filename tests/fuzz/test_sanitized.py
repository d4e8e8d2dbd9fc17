"""The C receive loop under AddressSanitizer and UndefinedBehaviorSanitizer: the
corpus replayed, then a bounded fuzzing run (FUZZ_CI_SECONDS, 60 by default).
It fails loudly if the sanitized build cannot be made, and names the
reproducer of anything found (``make fuzz`` runs the same thing longer)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .build import ROOT, build_sanitized
from .isolated import run_isolated

CORPUS = Path(__file__).parent / "corpus"
SECONDS = float(os.environ.get("FUZZ_CI_SECONDS", "60"))


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A RuntimeError here (no gcc, no ASan runtime, no Python headers) fails
    # the tests: the fuzzing must not silently stop.
    return build_sanitized(out_dir=tmp_path_factory.mktemp("sanitized"))


def test_the_corpus_under_the_sanitizers(sanitized: Path) -> None:
    paths = sorted(CORPUS.glob("*.case"))
    assert paths, f"no corpus in {CORPUS}"
    results = run_isolated(paths, sanitized=sanitized, timeout=30.0)
    failed = [f"{r.path}: {r.status}: {r.detail[-3000:]}" for r in results if r.status != "ok"]
    assert not failed, "\n".join(failed)


@pytest.mark.slow
@pytest.mark.timeout(SECONDS + 240)
def test_a_bounded_fuzzing_run_finds_nothing(tmp_path: Path) -> None:
    findings = tmp_path / "findings"
    run = subprocess.run(
        [
            *[sys.executable, "-m", "tests.fuzz", "--seconds", str(SECONDS)],
            *["--findings", str(findings), "--work", str(tmp_path / "work")],
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS + 180,
    )
    print(run.stdout[-5000:])
    summary = [line for line in run.stdout.splitlines() if line.startswith("fuzz summary")]
    assert summary, f"the fuzzer did not finish ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    found = sorted(findings.glob("*.case")) if findings.exists() else []
    assert run.returncode == 0 and not found, (
        "the fuzzer found inputs that break the C receive loop; reproducers:\n"
        + "\n".join(f"  {p}  (python -m tests.fuzz.isolated --sanitized ... {p})" for p in found)
        + f"\n{run.stdout[-8000:]}\n{run.stderr[-4000:]}"
    )
