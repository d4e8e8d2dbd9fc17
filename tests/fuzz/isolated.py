"""Runs cases in a child process, each under a watchdog: a reader that crashes
the process, or spins in C holding the GIL (where no Python signal handler can
run), kills the child, not the test run, and the case is reported as such.

    python -m tests.fuzz.isolated [--sanitized SO] [--timeout S] CASE_FILE...

prints one JSON line before and after each case; ``run_isolated`` reads them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .case import Case, Finding, drive

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    path: Path
    status: str  # "ok", "finding" (a broken invariant), "crash" or "hang"
    detail: str  # the end of the stream (ok), the finding, or the child's stderr tail
    units: list[tuple[int, int, bool]]  # (length, pts, key) of each unit handed out
    counts: tuple[int, int, int, int]
    last_status: int


def load_module(sanitized: Path | None) -> ModuleType:
    """The normal build (in place), or the sanitized one at ``sanitized``."""
    if sanitized is None:
        from streamgrid.capture import _rtp

        return _rtp
    spec = importlib.util.spec_from_file_location("_rtp", sanitized)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sanitizer_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a Python that loads the sanitized build needs: ASan's and
    UBSan's runtimes preloaded (Python itself is not built with them)."""
    env = dict(os.environ if base is None else base)
    libs = [
        subprocess.run(
            ["gcc", f"-print-file-name={name}"], capture_output=True, text=True, check=True
        ).stdout.strip()
        for name in ("libasan.so", "libubsan.so")
    ]
    env["LD_PRELOAD"] = " ".join(libs)
    # Leaks: Python's own allocations at exit would drown the report.
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=0:exitcode=86"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1:exitcode=87"
    return env


def run_isolated(
    paths: list[Path], sanitized: Path | None = None, timeout: float = 20.0
) -> list[Result]:
    """Each case of ``paths``, in a child process (restarted after a crash or a
    hang) with ``timeout`` seconds per case."""
    results: list[Result] = []
    remaining = list(paths)
    env = sanitizer_env() if sanitized else dict(os.environ)
    while remaining:
        argv = [sys.executable, "-m", "tests.fuzz.isolated", "--timeout", str(timeout)]
        if sanitized:
            argv += ["--sanitized", str(sanitized)]
        child = subprocess.run(
            [*argv, *map(str, remaining)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            # The watchdog inside is per case; this is a backstop for the whole run.
            timeout=timeout * (len(remaining) + 2) + 30,
        )
        started: Path | None = None
        for line in child.stdout.splitlines():
            event = json.loads(line)
            if "start" in event:
                started = Path(event["start"])
                continue
            results.append(
                Result(
                    Path(event["path"]),
                    event["status"],
                    event["detail"],
                    [(n, p, k) for n, p, k in event["units"]],
                    tuple(event["counts"]),
                    event["last_status"],
                )
            )
            started = None
        done = {r.path for r in results}
        if started is not None:  # the child died inside this case
            status = "hang" if child.returncode == -signal.SIGALRM else "crash"
            detail = f"exit status {child.returncode}\n{child.stderr[-6000:]}"
            results.append(Result(started, status, detail, [], (0, 0, 0, 0), 0))
            done.add(started)
        elif child.returncode != 0:
            raise RuntimeError(f"the replay child failed ({child.returncode}):\n{child.stderr}")
        remaining = [p for p in remaining if p not in done]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sanitized", type=Path)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("cases", nargs="+", type=Path)
    args = parser.parse_args()
    module = load_module(args.sanitized)
    # The default action of SIGALRM ends the process even while C code holds the GIL.
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    for path in args.cases:
        print(json.dumps({"start": str(path)}), flush=True)
        case = Case.read(path)
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
        event: dict[str, object] = {"path": str(path), "units": [], "counts": [0, 0, 0, 0]}
        try:
            outcome = drive(module, case, budget=args.timeout)
        except Finding as exc:
            event.update(status="finding", detail=str(exc), last_status=0)
        else:
            event.update(
                status="ok",
                detail=outcome.error,
                units=[(len(d), p, k) for d, p, k in outcome.units],
                counts=list(outcome.counts),
                last_status=outcome.last_status,
            )
        signal.setitimer(signal.ITIMER_REAL, 0)
        print(json.dumps(event), flush=True)


if __name__ == "__main__":
    main()
