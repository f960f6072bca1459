"""A throwaway nginx serving a directory as static files on 127.0.0.1, for the tests.

nginx runs in the foreground (``daemon off;``) with its prefix, configuration, pid file,
logs and every temporary path inside a temporary directory, so nothing in /etc, /var or /run
is touched; it listens on a free port picked by binding a socket first (nginx cannot be
asked for port 0) and is stopped with SIGQUIT (graceful). The access log records the status
and the If-None-Match header of every request, so a test can see its 304s.

The binary comes from the Debian ``nginx`` package (``make setup`` installs it): when it is
missing the tests that need it fail and say so, unless ``STOCKADE_NO_NGINX=1`` asks to skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

SKIP_ENV = "STOCKADE_NO_NGINX"
BINARY = "/usr/sbin/nginx"
#: Guards against a hang only: nginx starts in milliseconds.
HANG_GUARD_SECONDS = 30.0
START_ATTEMPTS = 3  # a free port can be taken by someone else before nginx binds it
SETUP_HINT = (
    "run `make setup` (it installs the Debian nginx package), "
    f"or set {SKIP_ENV}=1 to skip the nginx tests"
)
#: one line per request: status, path, If-None-Match sent ("-" when none), bytes sent
LOG_FORMAT = "$status $uri $http_if_none_match $body_bytes_sent"

CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
{user}
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    log_format stockade '{log_format}';
    access_log {root}/access.log stockade;
    default_type application/octet-stream;
    sendfile on;
    etag on;
    server {{
        listen 127.0.0.1:{port};
        root {docroot};
        location / {{ try_files $uri =404; }}
    }}
}}
"""


def find_binary() -> Path | None:
    given = os.environ.get("STOCKADE_NGINX") or shutil.which("nginx") or BINARY
    path = Path(given)
    return path if path.is_file() and os.access(path, os.X_OK) else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class Nginx:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> list[tuple[int, str, str]]:
        """(status, path, If-None-Match or '-') of every request logged so far."""
        path = self.root / "access.log"
        lines = path.read_text().splitlines() if path.exists() else []
        out = []
        for line in lines:
            status, uri, inm, _ = line.split(" ", 3)
            out.append((int(status), uri, inm))
        return out

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish open requests
            try:
                self.process.wait(HANG_GUARD_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _fail(message: str, root: Path | None = None) -> None:
    log = root / "error.log" if root is not None else None
    if log is not None and log.exists():
        message += "\n--- nginx error log ---\n" + log.read_text(errors="replace")[-4000:]
    pytest.fail(message, pytrace=False)


def _wait_ready(server: Nginx) -> bool:
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=1):
                return True
        except OSError:
            time.sleep(0.02)
    _fail(f"nginx on port {server.port} not ready after {HANG_GUARD_SECONDS} s", server.root)
    return False  # pragma: no cover - _fail raises


@contextmanager
def serve(docroot: Path) -> Iterator[Nginx]:
    """nginx serving ``docroot`` until the block ends."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: nginx tests skipped")
    binary = find_binary()
    if binary is None:
        where = os.environ.get("STOCKADE_NGINX") or f"{BINARY} and on PATH"
        _fail(f"nginx not found (looked for {where}): {SETUP_HINT}")
    assert binary is not None
    root = Path(tempfile.mkdtemp(prefix="stockade-nginx-"))
    (root / "tmp").mkdir()
    server: Nginx | None = None
    try:
        for _ in range(START_ATTEMPTS):
            port = _free_port()
            conf = CONFIG.format(
                root=root,
                port=port,
                docroot=docroot.resolve(),
                log_format=LOG_FORMAT,
                # as root, workers would drop to nobody, who cannot read a 0700 test directory
                user="user root;" if os.geteuid() == 0 else "",
            )
            (root / "nginx.conf").write_text(conf)
            with open(root / "stderr.log", "ab") as err:
                process = subprocess.Popen(
                    [str(binary), "-p", str(root), "-c", str(root / "nginx.conf"), "-e",
                     str(root / "error.log")],
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            server = Nginx(root, port, process)
            if _wait_ready(server):
                break
            server = None
        if server is None:
            _fail(f"nginx did not start ({START_ATTEMPTS} attempts)", root)
        assert server is not None
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
