"""The C receive loop built with AddressSanitizer and UndefinedBehaviorSanitizer,
in its own folder (never the in-place .so the rest of the tests load).

UBSan is told not to recover: undefined behaviour aborts like a bad access.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "streamgrid" / "capture" / "_rtp.c"
PARSER = SOURCE.with_name("rtp_parse.c")
BUILD = ROOT / "build" / "fuzz"


def build_sanitized(source: Path = SOURCE, out_dir: Path = BUILD) -> Path:
    """Compiles ``source`` (the binding, with the parser beside it when there is
    one: an older _rtp.c was both) into ``out_dir``; returns the .so. Raises
    RuntimeError, with the compiler's output, if it cannot."""
    parser = source.with_name(PARSER.name)
    sources = [str(source), *([str(parser)] if parser.exists() else [])]
    out_dir.mkdir(parents=True, exist_ok=True)
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out_dir / f"_rtp{suffix}"
    # Built aside, then renamed: a process that has the old one loaded keeps it.
    partial = out_dir / f"_rtp.partial.{os.getpid()}{suffix}"
    argv = [
        "gcc", "-shared", "-fPIC", "-std=gnu11", "-O1", "-g", "-fno-omit-frame-pointer",
        "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
        "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror",
        f"-I{sysconfig.get_paths()['include']}", *sources, "-o", str(partial),
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except OSError as exc:
        raise RuntimeError(f"cannot run gcc for the sanitized build: {exc}") from exc
    if done.returncode != 0:
        raise RuntimeError(f"the sanitized build failed:\n{' '.join(argv)}\n{done.stderr}")
    os.replace(partial, target)
    return target


if __name__ == "__main__":
    print(build_sanitized(Path(sys.argv[1]) if len(sys.argv) > 1 else SOURCE))
