"""`kubectl streamgrid` as a user runs it: the real kubectl finds the
installed `kubectl-streamgrid` executable on PATH and runs it with the
arguments after the plugin's name (kubectl's plugin discovery, nothing mocked)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .kube import BIN

PLUGIN = "kubectl-streamgrid"


def installed_plugin_dir() -> Path:
    """Where pip installed the `kubectl-streamgrid` console script (pyproject's
    [project.scripts]): beside this interpreter. Missing means the install
    is stale: fail, never fake it."""
    directory = Path(sys.executable).parent
    if not (directory / PLUGIN).is_file():
        raise RuntimeError(f"{PLUGIN} is not installed in {directory}: pip install -e .")
    return directory


@dataclass
class KubectlPlugin:
    kubeconfig: Path
    plugin_dir: Path
    namespace: str
    env: dict[str, str] = field(default_factory=dict)  # S3 access, a gateway's URL

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """`kubectl streamgrid -n NAMESPACE ARGS...` (kubectl takes no flags
        before a plugin's name: the plugin reads $KUBECONFIG as kubectl does)."""
        env = dict(os.environ)
        env.update(self.env)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self.plugin_dir}{os.pathsep}{env.get('PATH', '')}"
        result = subprocess.run(
            [str(BIN / "kubectl"), "streamgrid", "-n", self.namespace, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl streamgrid {' '.join(args)}: {result.stderr.strip()}")
        return result
