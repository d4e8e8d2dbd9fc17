"""`streamgrid serve` as a real subprocess, for the end-to-end API tests."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from .processes import ManagedProcess, free_port

# Names and an origin every test server allows besides its defaults, so the
# browser tests can check that allowed ones are served (tests/e2e/test_browsers.py).
ALLOWED_HOSTS = "*.allowed.test,gateway.allowed.test"
ALLOWED_ORIGIN = "http://app.allowed.test:3000"


@dataclass
class Server:
    process: ManagedProcess
    base_url: str
    store_url: str
    env: dict[str, str]
    # Other logs that belong to this runtime (cluster: operator, capture pods).
    extra_logs: list[Path] = field(default_factory=list)

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=timeout)

    def log_text(self) -> str:
        """Every log of the runtime: the gateway's, and any extra (files or folders)."""
        texts = [self.process.log_text()]
        for path in self.extra_logs:
            files = sorted(path.glob("*.log")) if path.is_dir() else [path]
            texts += [f.read_text(errors="replace") for f in files if f.exists()]
        return "\n".join(texts)


def start_server(
    work: Path,
    name: str,
    store_env: dict[str, str] | None = None,
    extra_env: dict[str, str] | None = None,
) -> Server:
    port = free_port()
    data = work / f"{name}-data"
    env = dict(os.environ)
    env.update({"STREAMGRID_STORE_URL": str(data), "PYTHONUNBUFFERED": "1"})
    env.update(
        {"STREAMGRID_ALLOWED_HOSTS": ALLOWED_HOSTS, "STREAMGRID_ALLOWED_ORIGINS": ALLOWED_ORIGIN}
    )
    env.update(store_env or {})
    env.update(extra_env or {})
    argv = [sys.executable, "-m", "streamgrid.cli", "serve", "--port", str(port)]
    process = ManagedProcess(name, argv, work / f"{name}.log", env=env).start()
    server = Server(process, f"http://127.0.0.1:{port}", env["STREAMGRID_STORE_URL"], env)
    process.wait_for_http(server.base_url + "/healthz", 30, f"{name} to serve", step=0.05)
    return server
