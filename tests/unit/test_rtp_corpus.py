"""Replays the fuzz corpus (tests/fuzz/corpus/: inputs that once crashed, hung or
misled the C receive loop) against the normal build: each must be read to its
end, raising nothing but the end of the stream or a documented OSError, within
a time bound, and, where the case says what must come out, give exactly that.

Each case runs in a child process under a watchdog, so that a regression that
spins in C holding the GIL fails this test instead of hanging the run.
"""

from __future__ import annotations

from pathlib import Path

from tests.fuzz.isolated import run_isolated

CORPUS = Path(__file__).resolve().parents[1] / "fuzz" / "corpus"


def test_every_corpus_input_is_read_to_its_end() -> None:
    paths = sorted(CORPUS.glob("*.case"))
    assert len(paths) >= 5, f"the corpus in {CORPUS} is missing"
    results = run_isolated(paths, timeout=20.0)
    assert {r.path for r in results} == set(paths)
    failed = [f"{r.path.name}: {r.status}: {r.detail[-1500:]}" for r in results if r.status != "ok"]
    assert not failed, "\n".join(failed)
