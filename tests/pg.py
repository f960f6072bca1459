"""A throwaway PostgreSQL cluster for the tests, started and removed by the test session.

The cluster lives in a temporary directory: ``initdb`` there, ``postgres`` listening on
127.0.0.1 on a free port (its unix socket in the same directory, nothing in /etc or /run),
trust authentication, durability off (fsync, full-page writes: a crash loses nothing a test
needs). It is started once per session, on first use, and stopped with a fast shutdown
(SIGINT) at the end. Every test gets a schema of its own in the database ``stockade``
(``CREATE SCHEMA``; the URL sets it as the ``search_path``), so tests stay independent of
each other and of their order: the store's tables, alembic's version table and everything a
test creates land there. A schema costs milliseconds where ``CREATE DATABASE`` copies a
template (0.1-0.6 s, depending on the disk).

``initdb`` and ``postgres`` refuse to run as root: as root they run as the ``postgres`` user
(the Debian package creates it) on a directory it owns, switched to by ``Popen(user=...)``
rather than ``runuser``, so that no wrapper process stands between the teardown's signal
and the postmaster; as anyone else, as that user themselves.
The binaries come from the Debian ``postgresql`` package (``make setup`` installs it): when
they are missing the tests that need them fail and say so, unless ``STOCKADE_NO_POSTGRES=1``
asks to skip them.
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

SKIP_ENV = "STOCKADE_NO_POSTGRES"
#: Where Debian puts the server binaries (not on PATH); ``STOCKADE_PG_BIN`` overrides.
BIN_GLOB = "/usr/lib/postgresql/*/bin"
OS_USER = "postgres"
#: The database the tests' schemas live in.
DATABASE = "stockade"
#: Guards against a hang only: initdb and a start take about a second.
HANG_GUARD_SECONDS = 60.0
START_ATTEMPTS = 3  # a free port can be taken by someone else before postgres binds it
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "40",
    "shared_buffers": "32MB",
    "log_min_messages": "warning",
    # far from UTC, at an odd offset: the store keeps epoch seconds, so this must change nothing
    "timezone": "<+1245>-12:45",
}
SETUP_HINT = (
    "run `make setup` (it installs the Debian postgresql package), "
    f"or set {SKIP_ENV}=1 to skip the PostgreSQL tests"
)


def find_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory holding initdb and postgres."""
    given = os.environ.get("STOCKADE_PG_BIN")
    candidates = [given] if given else sorted(glob.glob(BIN_GLOB), key=_version, reverse=True)
    for c in candidates:
        path = Path(c)
        if (path / "initdb").is_file() and (path / "postgres").is_file():
            return path
    return None


def _version(bin_dir: str) -> int:
    name = Path(bin_dir).parent.name
    return int(name) if name.isdigit() else 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that drop root to the postgres user (nothing when not root).

    Popen switches user itself, with no wrapper process in between: the signals of the
    teardown reach the postmaster.
    """
    if os.geteuid() != 0:
        return {}
    return {"user": OS_USER, "group": OS_USER, "extra_groups": []}


@dataclass
class Cluster:
    root: Path
    port: int
    process: subprocess.Popen[bytes]
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, database: str = DATABASE, schema: str | None = None) -> str:
        """SQLAlchemy URL of a database, working in ``schema`` when one is given."""
        url = f"postgresql+psycopg://{OS_USER}@127.0.0.1:{self.port}/{database}"
        return url + (f"?options=-c%20search_path%3D{schema}" if schema else "")

    def execute(self, sql: str, database: str = "postgres") -> None:
        """One statement, autocommit (CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            conn.execute(sql.encode())

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={OS_USER} dbname={database}"

    def create_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of ``template`` (which nobody may be connected
        to); returns its name.
        """
        name = f"test_{next(self._names)}"
        self.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
        return name

    def create_schema(self) -> str:
        """A new, empty schema in ``DATABASE``; returns its name."""
        name = f"test_{next(self._names)}"
        self.execute(f"CREATE SCHEMA {name}", DATABASE)
        return name

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown: ends open sessions
            try:
                self.process.wait(HANG_GUARD_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _fail(message: str, log: Path | None = None) -> None:
    if log is not None and log.exists():
        message += "\n--- server log ---\n" + log.read_text(errors="replace")[-4000:]
    pytest.fail(message, pytrace=False)


def _wait_ready(cluster: Cluster) -> bool:
    """Poll until the server accepts a connection; False when it exited instead."""
    import psycopg

    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while time.monotonic() < deadline:
        if cluster.process.poll() is not None:
            return False
        try:
            with psycopg.connect(cluster.dsn("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            time.sleep(0.02)
    _fail(f"PostgreSQL on port {cluster.port} not ready after {HANG_GUARD_SECONDS} s", cluster.log)
    return False  # pragma: no cover - _fail raises


def start_cluster() -> Cluster:
    """initdb + postgres in a new temporary directory; the caller stops it and removes it."""
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: PostgreSQL tests skipped")
    bin_dir = find_bin()
    if bin_dir is None:
        where = os.environ.get("STOCKADE_PG_BIN") or BIN_GLOB
        _fail(f"PostgreSQL server binaries (initdb, postgres) not found in {where}: {SETUP_HINT}")
    assert bin_dir is not None
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _fail(f"the psycopg (3) driver is not installed in this Python: {SETUP_HINT}")
    user = _as_postgres()
    root = Path(tempfile.mkdtemp(prefix="stockade-pg-"))
    cluster: Cluster | None = None
    try:
        if user:
            try:
                shutil.chown(root, OS_USER, OS_USER)
            except LookupError:
                _fail(f"no {OS_USER!r} user to run PostgreSQL as (not root): {SETUP_HINT}")
        init = subprocess.run(
            [
                *(bin_dir / "initdb", "-D", root / "data", "-U", OS_USER, "--auth=trust"),
                *("--encoding=UTF8", "--no-locale", "--no-sync"),
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_SECONDS,
            check=False,
            **user,
        )
        if init.returncode != 0:
            _fail(f"initdb failed (exit {init.returncode}):\n{init.stdout}{init.stderr}")
        for _ in range(START_ATTEMPTS):
            port = _free_port()
            settings = {**SERVER_SETTINGS, "port": str(port), "unix_socket_directories": str(root)}
            args = [str(bin_dir / "postgres"), "-D", str(root / "data")]
            for key, value in settings.items():
                args += ["-c", f"{key}={value}"]
            with open(root / "server.log", "ab") as log:
                process = subprocess.Popen(
                    args,
                    cwd=root,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # a ^C of the test run is the teardown's to send
                    **user,
                )
            cluster = Cluster(root, port, process)
            if _wait_ready(cluster):
                cluster.execute(f"CREATE DATABASE {DATABASE}")
                return cluster
        _fail(f"PostgreSQL did not start ({START_ATTEMPTS} attempts)", root / "server.log")
        raise AssertionError("unreachable")  # pragma: no cover
    except BaseException:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[Cluster]:
    """One cluster for the whole session, started on first use."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster: Cluster) -> str:
    """SQLAlchemy URL of a new, empty schema for this test alone."""
    return postgres_cluster.url(schema=postgres_cluster.create_schema())
