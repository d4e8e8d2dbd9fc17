"""Fuzzes the C receive loop (streamgrid/capture/_rtp.c), built with ASan and
UBSan, over a socket pair, for a given time; prints a summary.

    python -m tests.fuzz [--seconds 600] [--findings tests/fuzz/corpus] [--seed N]

A child process runs the inputs (tests/fuzz/mutate.py), each under a watchdog
(SIGALRM's default action: it ends the process even while C code holds the
GIL); before each, it writes the input to work/current.case. When the child
dies (a sanitizer's report, a signal, a hang), this saves that input to the
findings folder, and the report next to it in the work folder, and starts a
new child. An invariant broken without a crash is saved by the child itself.
Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from .build import BUILD, ROOT, SOURCE, build_sanitized
from .case import Finding, drive
from .isolated import load_module, sanitizer_env
from .mutate import make_case
from .seeds import load_all

HANG_SECONDS = 15.0  # one input; a clean one takes milliseconds


def save_finding(findings: Path, kind: str, case_bytes: bytes) -> Path:
    findings.mkdir(parents=True, exist_ok=True)
    path = findings / f"{kind}-{hashlib.sha1(case_bytes).hexdigest()[:12]}.case"
    path.write_bytes(case_bytes)
    return path


def child(args: argparse.Namespace) -> None:
    module = load_module(args.so)
    seeds = load_all()
    rng = random.Random(args.seed)
    current = args.work / "current.case"
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    deadline = time.monotonic() + args.seconds
    execs, reported = 0, time.monotonic()
    while time.monotonic() < deadline:
        case = make_case(rng, seeds)
        data = case.dump()
        current.write_bytes(data)
        signal.setitimer(signal.ITIMER_REAL, HANG_SECONDS)
        try:
            drive(module, case, budget=HANG_SECONDS - 5)
        except Finding as exc:
            path = save_finding(args.findings, "finding", data)
            print(json.dumps({"finding": str(path), "why": str(exc)[:2000]}), flush=True)
        signal.setitimer(signal.ITIMER_REAL, 0)
        execs += 1
        if execs % 50 == 0 or time.monotonic() - reported > 1.0:
            print(json.dumps({"execs": execs}), flush=True)
            reported = time.monotonic()
    print(json.dumps({"execs": execs, "done": True}), flush=True)


def run_child(
    args: argparse.Namespace, so: Path, seed: int, seconds: float
) -> tuple[int, bool, list[Path], str]:
    """(inputs run, ended cleanly, findings, stderr) of one child."""
    argv = [sys.executable, "-m", "tests.fuzz", "--child", "--so", str(so)]
    argv += ["--seed", str(seed), "--seconds", str(seconds)]
    argv += ["--work", str(args.work), "--findings", str(args.findings)]
    log = args.work / "child.stderr"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=sanitizer_env(), stdout=subprocess.PIPE, stderr=stderr
        )
        assert process.stdout is not None
        execs, done, findings = 0, False, []
        buffered = b""
        last_word = time.monotonic()
        while True:
            ready, _, _ = select.select([process.stdout], [], [], 1.0)
            if ready:
                chunk = os.read(process.stdout.fileno(), 65536)
                if not chunk:
                    break
                last_word = time.monotonic()
                buffered += chunk
                *lines, buffered = buffered.split(b"\n")
                for line in lines:
                    event = json.loads(line)
                    execs = max(execs, event.get("execs", 0))
                    done = done or bool(event.get("done"))
                    if "finding" in event:
                        findings.append(Path(event["finding"]))
                        print(f"FINDING {event['finding']}: {event['why'][:300]}", flush=True)
            elif time.monotonic() - last_word > 2 * HANG_SECONDS + 30:
                process.kill()  # our own child, by its PID: the watchdog did not fire
                break
        process.wait()
    report = log.read_text(errors="replace")
    if process.returncode != 0 or not done:
        kind = "hang" if process.returncode == -signal.SIGALRM else "crash"
        current = args.work / "current.case"
        if current.exists():
            path = save_finding(args.findings, kind, current.read_bytes())
            (args.work / f"{path.stem}.log").write_text(report)
            print(f"FINDING {path} ({kind}, exit status {process.returncode})", flush=True)
            print(report[-3000:], flush=True)
            findings.append(path)
            execs += 1
    return execs, process.returncode == 0 and done, findings, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--findings", type=Path, default=Path(__file__).parent / "corpus")
    parser.add_argument("--work", type=Path, default=BUILD / "work")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--source", type=Path, default=None, help="another _rtp.c to fuzz")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--so", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        child(args)
        return
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    so = build_sanitized(args.source or SOURCE, args.work / "sanitized")
    print(f"fuzzing {so} (ASan + UBSan) for {args.seconds:g} s, seed {seed}", flush=True)
    started = time.monotonic()
    execs, restarts = 0, 0
    findings: list[Path] = []
    while (left := args.seconds - (time.monotonic() - started)) > 1:
        n, clean, found, report = run_child(args, so, seed + restarts, left)
        execs, findings = execs + n, findings + found
        restarts += 1
        if not clean and not found:
            raise SystemExit(f"the fuzzing child failed without an input to blame:\n{report}")
    elapsed = time.monotonic() - started
    print(
        f"fuzz summary: {execs} inputs in {elapsed:.0f} s ({execs / elapsed:.0f} execs/s), "
        f"{restarts} child process(es), {len(findings)} finding(s)",
        flush=True,
    )
    for path in findings:
        print(f"  reproducer: {path}  (replay: python -m tests.fuzz.isolated {path})")
    if findings:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
