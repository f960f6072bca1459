"""kill -9 ``stockade-distributor build`` during build and publish; what is served stays whole.

The real CLI runs in a subprocess on feeds this test writes. ``STOCKADE_TEST_PAUSE_AT`` makes
``distributor.publish`` stop at a named step so the kill lands exactly there; a few kills at
random times cover the rest (parsing, condensing, signing). After every kill:

- every object's name is its SHA-256 and every published bundle verifies on a sensor;
- ``current`` and ``pointer.stockade`` name the previous or the new version, never a missing
  or torn file;
- another tenant's list is byte for byte untouched;
and the next build publishes, removing the temporary files the killed one left.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from blocklist.pointer import verify_pointer
from blocklist.signing import PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import publish
from distributor.keys import ROOT_PUB, keygen

CLI = Path(sys.executable).with_name("stockade-distributor")
PROFILE = "linux-sensor"
FEEDS_TOML = """\
[[feed]]
name = "dom"
vendor = "vendor-1"
format = "domains"
source = "dom.txt"
category = "malware"
"""
_OBJECT_RE = re.compile(r"[0-9a-f]{64}\.(stockade|delta)")
RANDOM_KILLS = 6
#: guards against a hang only: a build here takes about a second
HANG_GUARD_SECONDS = 120.0


@dataclass
class Work:
    dir: Path
    builds: int = 0

    @property
    def out(self) -> Path:
        return self.dir / "out"

    def args(self, tenant: str) -> list[str]:
        return [
            str(CLI),
            "build",
            "--config",
            str(self.dir / "feeds.toml"),
            "--profile",
            PROFILE,
            "--tenant",
            tenant,
            "--keys",
            str(self.dir / "keys"),
            "--out",
            str(self.out),
            "--state",
            str(self.dir / "state"),
            "--quiet",
        ]

    def new_input(self) -> None:
        """Another feed content, so that the next build is a new list."""
        self.builds += 1
        names = "".join(f"evil{i}.example.net\n" for i in range(self.builds + 1))
        (self.dir / "dom.txt").write_text(names)

    def start(self, tenant: str = "acme", pause_at: str | None = None) -> subprocess.Popen[str]:
        self.new_input()
        env = {k: v for k, v in os.environ.items() if k != publish.PAUSE_ENV}
        if pause_at is not None:
            env[publish.PAUSE_ENV] = pause_at
        return subprocess.Popen(
            self.args(tenant),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def build(self, tenant: str = "acme") -> None:
        proc = self.start(tenant)
        _, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
        assert proc.returncode == 0, err


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Work]:
    (tmp_path / "feeds.toml").write_text(FEEDS_TOML)
    keygen(tmp_path / "keys")
    yield Work(tmp_path)


def tree(d: Path) -> dict[str, bytes]:
    """Every file under ``d`` -> its SHA-256."""
    return {
        str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).digest()
        for p in sorted(d.rglob("*"))
        if p.is_file()
    }


def sensor(work: Work, tenant: str = "acme") -> TrustedListState:
    root = PublicKey.from_pem((work.dir / "keys" / ROOT_PUB).read_bytes())
    return TrustedListState([root], TrustPolicy(tenant=tenant, profile=PROFILE))


def served_versions(work: Work, tenant: str = "acme") -> tuple[int, int]:
    """(current's version, pointer's version), each checked whole; 0 when absent."""
    d = work.out / tenant / PROFILE
    cur = publish.current(work.out, tenant, PROFILE)
    if (d / publish.CURRENT).exists():
        assert cur is not None, f"current names a missing file: {(d / 'current').read_bytes()!r}"
    current_version = 0
    if cur is not None:
        current_version = sensor(work, tenant).check(cur.read_bytes()).header.version
        assert cur.name == publish.bundle_name(current_version)
    pointer_version = 0
    if (d / publish.POINTER).exists():
        pointer = verify_pointer(sensor(work, tenant), (d / publish.POINTER).read_bytes())
        full = (work.out / pointer.full.path).read_bytes()
        assert pointer.full.matches(full)
        assert sensor(work, tenant).check(full).header.version == pointer.version
        for delta in pointer.deltas:
            assert delta.ref.matches((work.out / delta.ref.path).read_bytes())
        pointer_version = pointer.version
    return current_version, pointer_version


def check_everything_whole(work: Work) -> None:
    objects = work.out / "objects"
    for p in objects.iterdir() if objects.is_dir() else ():
        if p.name.startswith("."):
            continue  # a temporary file: never named by anything
        assert _OBJECT_RE.fullmatch(p.name), p.name
        assert hashlib.sha256(p.read_bytes()).hexdigest() == p.name.split(".")[0], p.name
    for tenant_dir in work.out.iterdir():
        if tenant_dir.name in ("objects", "roots"):
            continue
        for v in tenant_dir.glob(f"{PROFILE}/v*.stockade"):
            data = v.read_bytes()
            assert sensor(work, tenant_dir.name).check(data), v
            obj = objects / f"{hashlib.sha256(data).hexdigest()}.stockade"
            assert os.stat(obj).st_ino == os.stat(v).st_ino, v


def temp_files(work: Work) -> list[Path]:
    return [p for p in work.out.rglob(".*") if ".tmp-" in p.name]


def kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=HANG_GUARD_SECONDS)
    if proc.stderr is not None:
        proc.stderr.close()


def test_kill_at_every_publish_step_leaves_previous_or_new_version(work: Work) -> None:
    work.build("other")
    other = tree(work.out / "other")
    work.build()
    served = served_versions(work)
    assert served == (1, 1)
    for step in publish.PAUSE_STEPS:
        before = served
        proc = work.start(pause_at=step)
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the build runs until publish reaches the step
        assert f"paused at {step}" in line, (step, line, proc.stderr.read())
        kill(proc)
        new = publish.next_version(work.out, "acme", PROFILE) - 1  # what it was publishing
        check_everything_whole(work)
        served = served_versions(work)
        for what, version, old in zip(("current", "pointer"), served, before, strict=True):
            assert version in (old, new), (step, what, version, old, new)
        if step == "object-temp":
            assert temp_files(work), "the kill left no temporary file: the step is not covered"
        if step == "current":
            assert served == (new, new)
        assert tree(work.out / "other") == other
    # the next build publishes over whatever the kills left, and sweeps their temp files
    work.build()
    check_everything_whole(work)
    newest = publish.next_version(work.out, "acme", PROFILE) - 1
    assert served_versions(work) == (newest, newest)
    assert temp_files(work) == []
    assert tree(work.out / "other") == other


def test_kills_at_random_times_never_serve_a_partial_file(work: Work) -> None:
    work.build("other")
    other = tree(work.out / "other")
    work.build()
    rng = random.Random(6)
    served = served_versions(work)
    for _ in range(RANDOM_KILLS):
        proc = work.start()
        time.sleep(rng.uniform(0.0, 1.2))  # a build takes about a second here
        kill(proc)
        check_everything_whole(work)
        before, served = served, served_versions(work)
        newest = publish.next_version(work.out, "acme", PROFILE) - 1
        for version, old in zip(served, before, strict=True):
            assert version in (old, newest)
        assert tree(work.out / "other") == other
    work.build()
    newest = publish.next_version(work.out, "acme", PROFILE) - 1
    assert served_versions(work) == (newest, newest)
    assert temp_files(work) == []
    assert tree(work.out / "other") == other
