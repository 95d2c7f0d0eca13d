"""A fast loopback target for generator benchmarks: nginx answering 200 to `POST /api/webhook`.

nginx (Debian's `nginx-light`) runs one worker, pinned to a CPU of its own, with the access log
off; `/nginx_status` (stub_status) counts the requests it served, so rates are counted at the
server.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

CONFIG = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location /nginx_status {{ stub_status; }}
        location / {{
            default_type application/json;
            return 200 '{{"received":true,"duplicate":false}}';
        }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Nginx:
    def __init__(self, cpu: int = 0) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not os.path.exists(binary):
            raise FileNotFoundError("nginx is not installed (apt-get install nginx-light)")
        self.dir = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "nginx.conf").write_text(CONFIG.format(dir=self.dir, port=self.port))
        self.proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                str(cpu),
                binary,
                "-c",
                str(self.dir / "nginx.conf"),
                "-p",
                str(self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.served()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("nginx did not start")

    def served(self) -> int:
        """Requests served so far (stub_status), not counting the status requests."""
        with urllib.request.urlopen(self.url + "/nginx_status", timeout=2) as response:
            text = response.read().decode()
        # "server accepts handled requests\n A H R": R counts every request served.
        return int(re.findall(r"\n\s*\d+ \d+ (\d+)", text)[0])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
