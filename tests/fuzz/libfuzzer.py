"""The RTP parser (streamgrid/capture/rtp_parse.c) under libFuzzer, ASan and
UBSan: the target is tests/fuzz/rtp_fuzz.c (docs/fuzzing.md).

    python -m tests.fuzz.libfuzzer [--seconds 600]   fuzz from the kept corpus; inputs
                                                     that add coverage are merged into it
    python -m tests.fuzz.libfuzzer --seed            the kept corpus from the Python
                                                     driver's cases and inputs
    python -m tests.fuzz.libfuzzer --coverage        line coverage of the kept corpus
    python -m tests.fuzz.libfuzzer FILE...           inputs again (reproducers), each once

Exit status 1 when the fuzzer found anything; each reproducer is named.
"""

from __future__ import annotations

import argparse
import base64
import math
import os
import random
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .build import BUILD, PARSER, ROOT, SOURCE
from .case import Case

TARGET = Path(__file__).with_name("rtp_fuzz.c")
CORPUS = Path(__file__).parent / "corpus" / "libfuzzer"
CASES = Path(__file__).parent / "corpus"
SANITIZERS = ["-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all"]
COVERAGE = ["-fsanitize=fuzzer", "-fprofile-instr-generate", "-fcoverage-mapping"]
# An RTSP header may run to 64 KiB before the parser calls it not RTSP.
MAX_LEN = 70_000
STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) .*?exec/s: (\d+)", re.M)


def build(out: Path = BUILD / "rtp_fuzz", flags: list[str] = SANITIZERS) -> Path:
    """Compiles the target with clang; RuntimeError with the reason if it cannot
    (clang and libclang-rt-14-dev: scripts/install-system-deps.sh)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"{out.name}.partial")
    argv = [
        "clang", "-g", "-O1", "-std=gnu11", "-Wall", "-Wextra", "-Werror", *flags,
        f"-I{PARSER.parent}", str(TARGET), str(PARSER), "-o", str(partial),
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except OSError as exc:
        raise RuntimeError(f"cannot run clang for the libFuzzer target: {exc}") from exc
    if done.returncode != 0:
        raise RuntimeError(f"the libFuzzer build failed:\n{' '.join(argv)}\n{done.stderr}")
    partial.replace(out)  # a fuzzer still running keeps its copy
    return out


@dataclass
class Run:
    returncode: int
    seconds: float
    execs: int
    exec_per_s: int
    cov: int
    ft: int
    findings: list[Path] = field(default_factory=list)
    log: str = ""

    def summary(self) -> str:
        return (
            f"libFuzzer: {self.execs} inputs in {self.seconds:.0f} s ({self.exec_per_s} exec/s), "
            f"cov: {self.cov} ft: {self.ft}, {len(self.findings)} finding(s)"
        )

    def reproducers(self) -> str:
        """Each finding: where it is, how to run it again, and its bytes when
        small enough to carry in a log."""
        lines = []
        for path in self.findings:
            lines.append(f"  {path}  (again: python -m tests.fuzz.libfuzzer {path})")
            data = path.read_bytes()
            if len(data) <= 8192:
                lines.append(f"    base64: {base64.b64encode(data).decode()}")
        return "\n".join(lines)


def fuzz(binary: Path, seconds: float, corpora: list[Path], findings: Path) -> Run:
    """Runs ``binary`` for ``seconds`` on ``corpora`` (new inputs go to the
    first); crashes, leaks, hangs (10 s) and out-of-memory land in ``findings``."""
    findings.mkdir(parents=True, exist_ok=True)
    for corpus in corpora:
        corpus.mkdir(parents=True, exist_ok=True)
    argv = [
        str(binary), f"-max_total_time={max(1, round(seconds))}", "-timeout=10",
        f"-max_len={MAX_LEN}", "-print_final_stats=1", f"-artifact_prefix={findings}/",
        *map(str, corpora),
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, errors="replace")
    elapsed = time.monotonic() - started
    log = done.stderr
    statuses = STATUS.findall(log)
    execs, cov, ft, rate = (int(x) for x in statuses[-1]) if statuses else (0, 0, 0, 0)
    final = re.search(r"stat::number_of_executed_units: (\d+)", log)
    average = re.search(r"stat::average_exec_per_sec:\s+(\d+)", log)
    return Run(
        done.returncode,
        elapsed,
        int(final.group(1)) if final else execs,
        int(average.group(1)) if average else rate,
        cov,
        ft,
        sorted(p for p in findings.iterdir() if p.is_file()),
        log,
    )


def merge(binary: Path, into: Path, new: Path) -> None:
    """Adds to ``into`` the inputs of ``new`` that add coverage."""
    subprocess.run(
        [str(binary), "-merge=1", f"-max_len={MAX_LEN}", str(into), str(new)],
        capture_output=True,
        check=True,
    )


def to_input(case: Case) -> bytes:
    """A Python driver's case as the target's input (see rtp_fuzz.c): its
    settings, its first piece's size, its keyframes_only pattern, its bytes."""
    piece = case.chunks[0] if case.chunks else 4096
    k = min(63, max(0, round(math.sqrt(piece)) - 1))
    settings = (case.payload_type < 0) | case.hevc << 1 | k << 2
    modes = sum(1 << i for i in range(8) if case.keyframes[i % len(case.keyframes)])
    return bytes([settings, modes]) + case.stream


def seed_corpus(out: Path, generated: int = 2000) -> int:
    """The kept corpus: the Python driver's corpus cases and ``generated`` of
    its structure-aware inputs, merged down to those that add coverage."""
    from .mutate import make_case
    from .seeds import load_all

    binary = build()
    rng, seeds = random.Random(20261206), load_all()
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp)
        for path in sorted(CASES.glob("*.case")):
            (raw / f"{path.stem}").write_bytes(to_input(Case.read(path))[:MAX_LEN])
        for i in range(generated):
            (raw / f"generated-{i}").write_bytes(to_input(make_case(rng, seeds))[:MAX_LEN])
        out.mkdir(parents=True, exist_ok=True)
        merge(binary, out, raw)
    return len(list(out.iterdir()))


def _report(binary: Path, profile: Path) -> str:
    """llvm-cov's report of rtp_parse.c (lines, regions, branches)."""
    merged = profile.with_suffix(".profdata")
    subprocess.run(["llvm-profdata", "merge", "-o", str(merged), str(profile)], check=True)
    report = ["llvm-cov", "report", str(binary), f"-instr-profile={merged}", str(PARSER)]
    return subprocess.run(report, capture_output=True, text=True, check=True).stdout


def line_coverage(corpora: list[Path], work: Path) -> str:
    """Coverage of rtp_parse.c by every input of ``corpora``, run once each."""
    binary = build(work / "rtp_fuzz_coverage", COVERAGE)
    profile = work / "libfuzzer.profraw"
    subprocess.run(
        [str(binary), "-runs=0", f"-max_len={MAX_LEN}", *map(str, corpora)],
        env={"LLVM_PROFILE_FILE": str(profile)},
        capture_output=True,
        check=True,
    )
    return _report(binary, profile)


def python_driver_coverage(seconds: float, work: Path) -> str:
    """Coverage of rtp_parse.c by the Python driver (python -m tests.fuzz)
    running ``seconds`` on the binding built with clang's coverage."""
    work.mkdir(parents=True, exist_ok=True)
    so = work / f"_rtp{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(
        [
            *["clang", "-shared", "-fPIC", "-O1", "-g", "-std=gnu11", *COVERAGE[1:]],
            *[f"-I{sysconfig.get_paths()['include']}", str(SOURCE), str(PARSER), "-o", str(so)],
        ],
        check=True,
    )
    profile = work / "python.profraw"
    subprocess.run(
        [
            *[sys.executable, "-m", "tests.fuzz", "--child", "--so", str(so), "--seed", "1"],
            *["--seconds", str(seconds), "--work", str(work), "--findings", str(work / "found")],
        ],
        cwd=ROOT,
        env={**os.environ, "LLVM_PROFILE_FILE": str(profile)},
        capture_output=True,
        check=True,
    )
    return _report(so, profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--findings", type=Path, default=BUILD / "findings")
    parser.add_argument("--seed", action="store_true", help="(re)make the kept corpus")
    parser.add_argument("--coverage", action="store_true", help="line coverage of the corpus")
    parser.add_argument(
        "--python-coverage", type=float, metavar="SECONDS", help="the Python driver's, that long"
    )
    parser.add_argument("inputs", nargs="*", type=Path, help="run these once each, and stop")
    args = parser.parse_args()
    if args.inputs:
        raise SystemExit(subprocess.run([str(build()), *map(str, args.inputs)]).returncode)
    if args.seed:
        print(f"{seed_corpus(CORPUS)} inputs in {CORPUS.relative_to(ROOT)}")
        return
    if args.coverage:
        print(line_coverage([CORPUS], BUILD / "coverage"))
        return
    if args.python_coverage:
        print(python_driver_coverage(args.python_coverage, BUILD / "coverage"))
        return
    binary = build()
    new = BUILD / "new-corpus"
    shutil.rmtree(new, ignore_errors=True)
    findings = args.findings / time.strftime("%Y%m%d-%H%M%S")
    run = fuzz(binary, args.seconds, [new, CORPUS], findings)
    print(run.summary())
    if run.findings or run.returncode != 0:
        print(run.log[-6000:])
        print(f"reproducers (copy each into {CORPUS.relative_to(ROOT)} with its fix):")
        print(run.reproducers())
        raise SystemExit(1)
    merge(binary, CORPUS, new)
    print(f"{len(list(CORPUS.iterdir()))} inputs in {CORPUS.relative_to(ROOT)} (commit new ones)")


if __name__ == "__main__":
    main()
