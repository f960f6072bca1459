"""The scheduler with its real parts: a SQLite job store in tmp_path, feeds served by a
loopback aiohttp server and local files, real keys, real builds, a real published list."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy
from aiohttp import web

from blocklist.signing import PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import keys as keyfiles
from distributor import publish
from distributor.cli import main
from distributor.config import from_toml_text
from distributor.errors import ConfigError
from distributor.scheduler import (
    FEED_JOB_PREFIX,
    JOB_TABLE,
    REBUILD_JOB,
    ListTarget,
    Pipeline,
    PipelineSettings,
    Schedule,
    job_store_url,
    rebuild_job,
    refresh_feed_job,
)

TENANT = "acme"
PROFILE = "linux-sensor"
#: A guard against hangs only: never an assertion about speed.
HANG_GUARD_SECONDS = 60.0


class Origin:
    """A feed vendor on 127.0.0.1: serves ``body`` at /feed.txt."""

    def __init__(self) -> None:
        self.body = b"evil-one.example\nevil-two.example\n"
        self.requests = 0
        self.url = ""

    async def handle(self, _request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(body=self.body, content_type="text/plain")


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    o = Origin()
    app = web.Application()
    app.router.add_get("/feed.txt", o.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    o.url = f"http://127.0.0.1:{port}/feed.txt"
    yield o
    await runner.cleanup()


def feeds_toml(url: str, *, remote_minutes: float = 5, local_minutes: float = 30) -> str:
    return f"""
[[feed]]
name = "remote"
vendor = "vendor-1"
format = "domains"
source = "{url}"
category = "malware"
refresh_minutes = {remote_minutes}
[feed.fetch]
retries = 0

[[feed]]
name = "local"
vendor = "vendor-2"
format = "domains"
source = "local.txt"
category = "phishing"
refresh_minutes = {local_minutes}

[[feed]]
name = "off"
format = "domains"
source = "never-read.txt"
enabled = false
"""


@pytest.fixture
def work(tmp_path: Path, origin: Origin) -> Path:
    (tmp_path / "feeds.toml").write_text(feeds_toml(origin.url))
    (tmp_path / "local.txt").write_text("phish-one.example\n")
    keyfiles.keygen(tmp_path / "keys")
    return tmp_path


def settings(work: Path, **kw: object) -> PipelineSettings:
    base: dict[str, object] = {
        "config": work / "feeds.toml",
        "store_url": f"sqlite:///{work / 'store.db'}",
        "out": work / "out",
        "keys": work / "keys",
        "state": work / "state",
        "lists": (ListTarget(TENANT, PROFILE),),
    }
    base.update(kw)
    return PipelineSettings(**base)  # type: ignore[arg-type]


def stored_job_ids(where: Path | str) -> list[str]:
    """The job ids in the job table, read with plain SQL (not through APScheduler)."""
    url = where if isinstance(where, str) else f"sqlite:///{where / 'store.db'}"
    engine = sqlalchemy.create_engine(job_store_url(url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(f"SELECT id FROM {JOB_TABLE}")).all()
    finally:
        engine.dispose()
    return sorted(r[0] for r in rows)


def published_names(out: Path) -> set[str]:
    v = publish.published_versions(out, TENANT, PROFILE)
    held = publish.current(out, TENANT, PROFILE)
    return {f"v{n}" for n in v} | ({f"current={held.name}"} if held else set())


def list_names(out: Path, version: int, tenant: str = TENANT) -> set[str]:
    """The names in published version ``version``, read back through the signed bundle."""
    path = publish.list_dir(out, tenant, PROFILE) / publish.bundle_name(version)
    root = PublicKey.from_pem((out.parent / "keys" / keyfiles.ROOT_PUB).read_bytes())
    state = TrustedListState([root], TrustPolicy(tenant=tenant, profile=PROFILE))
    return {e.value for e in state.check(path.read_bytes()).blocklist.entries}


# --- jobs -------------------------------------------------------------------------------


async def test_one_job_per_enabled_feed_at_its_interval_with_jitter(work: Path) -> None:
    pipeline = Pipeline(settings(work, rebuild_minutes=45))
    schedule = Schedule(pipeline)
    try:
        changes = schedule.start()
        jobs = {j.id: j for j in schedule.scheduler.get_jobs()}
    finally:
        schedule.shutdown()
        pipeline.close()
    assert sorted(changes["added"]) == ["feed:local", "feed:remote", REBUILD_JOB]
    assert set(jobs) == {"feed:local", "feed:remote", REBUILD_JOB}  # the disabled feed: none
    assert jobs["feed:remote"].trigger.interval == timedelta(minutes=5)
    assert jobs["feed:remote"].trigger.jitter == 30  # a tenth of the interval
    assert jobs["feed:local"].trigger.interval == timedelta(minutes=30)
    assert jobs["feed:local"].trigger.jitter == 180
    assert jobs[REBUILD_JOB].trigger.interval == timedelta(minutes=45)
    assert jobs["feed:remote"].args == ("remote",)
    now = datetime.now(UTC)
    for job in jobs.values():
        assert job.next_run_time is not None and job.next_run_time > now - timedelta(minutes=1)
    assert stored_job_ids(work) == ["feed:local", "feed:remote", REBUILD_JOB]


async def test_jobs_and_their_next_run_times_survive_a_restart(work: Path, store_url: str) -> None:
    """On SQLite and on PostgreSQL (the store's two backends, ``store_url``)."""
    first = Pipeline(settings(work, store_url=store_url))
    schedule = Schedule(first)
    schedule.start()
    before = schedule.next_run_times()
    schedule.shutdown()
    first.close()

    second = Pipeline(settings(work, store_url=store_url))
    again = Schedule(second)
    try:
        changes = again.start()
        after = again.next_run_times()
    finally:
        again.shutdown()
        second.close()
    assert changes["added"] == [] and changes["rescheduled"] == [] and changes["removed"] == []
    assert sorted(changes["kept"]) == sorted(before)
    assert after == before  # the same next run times: read back, not recomputed
    assert stored_job_ids(store_url) == sorted(before)  # no job duplicated


async def test_a_restart_with_a_changed_config_reconciles_the_jobs(
    work: Path, origin: Origin
) -> None:
    first = Pipeline(settings(work))
    schedule = Schedule(first)
    schedule.start()
    before = schedule.next_run_times()
    schedule.shutdown()
    first.close()
    # remote every 10 minutes now, local gone, a new feed
    text = feeds_toml(origin.url, remote_minutes=10).replace('name = "local"', 'name = "other"')
    (work / "feeds.toml").write_text(text)
    second = Pipeline(settings(work))
    again = Schedule(second)
    try:
        changes = again.start()
        jobs = {j.id: j for j in again.scheduler.get_jobs()}
    finally:
        again.shutdown()
        second.close()
    assert changes["rescheduled"] == ["feed:remote"]
    assert changes["removed"] == ["feed:local"]
    assert changes["added"] == ["feed:other"]
    assert changes["kept"] == [REBUILD_JOB]
    assert jobs["feed:remote"].trigger.interval == timedelta(minutes=10)
    assert jobs[REBUILD_JOB].next_run_time == before[REBUILD_JOB]
    assert stored_job_ids(work) == ["feed:other", "feed:remote", REBUILD_JOB]


# --- rebuild ----------------------------------------------------------------------------


async def test_a_run_publishes_a_list_and_unchanged_inputs_make_no_new_version(
    work: Path, origin: Origin
) -> None:
    pipeline = Pipeline(settings(work))
    try:
        first = await pipeline.run_once()
        assert [o.status for o in first.feeds] == ["ingested", "ingested"]
        assert [(b.status, b.version) for b in first.lists] == [("built", 1)]
        assert list_names(work / "out", 1) >= {
            "evil-one.example",
            "evil-two.example",
            "phish-one.example",
        }
        # the feeds answer the same content: nothing to publish
        second = await pipeline.run_once()
        assert [o.status for o in second.feeds] == ["unchanged", "unchanged"]
        assert [(b.status, b.version) for b in second.lists] == [("unchanged", 1)]
        assert publish.published_versions(work / "out", TENANT, PROFILE) == [1]
        # the vendor changes its feed: a new version with the new entry
        origin.body += b"evil-three.example\n"
        third = await pipeline.run_once()
        assert [(b.status, b.version) for b in third.lists] == [("built", 2)]
        assert "evil-three.example" in list_names(work / "out", 2)
        assert published_names(work / "out") == {"v1", "v2", "current=v00000002.stockade"}
    finally:
        pipeline.close()


async def test_only_lists_whose_feeds_changed_are_rebuilt(work: Path, origin: Origin) -> None:
    remote_only = ListTarget("remote-only", PROFILE, frozenset({"remote"}))
    local_only = ListTarget("local-only", PROFILE, frozenset({"local"}))
    pipeline = Pipeline(settings(work, lists=(remote_only, local_only)))
    try:
        first = await pipeline.run_once()
        assert [(b.tenant, b.status) for b in first.lists] == [
            ("remote-only", "built"),
            ("local-only", "built"),
        ]
        (work / "local.txt").write_text("phish-one.example\nphish-two.example\n")
        second = await pipeline.run_once()
        assert [(b.tenant, b.status, b.version) for b in second.lists] == [
            ("remote-only", "unchanged", 1),
            ("local-only", "built", 2),
        ]
    finally:
        pipeline.close()


async def test_a_list_is_re_signed_when_half_its_lifetime_is_gone(work: Path) -> None:
    pipeline = Pipeline(settings(work, valid_for=timedelta(hours=10)))
    try:
        now = datetime.now(UTC)
        await pipeline.refresh()
        assert [b.status for b in await pipeline.rebuild(now)] == ["built"]
        assert [b.status for b in await pipeline.rebuild(now + timedelta(hours=4))] == ["unchanged"]
        assert [
            (b.status, b.version) for b in await pipeline.rebuild(now + timedelta(hours=6))
        ] == [("built", 2)]
    finally:
        pipeline.close()


async def test_a_manual_build_in_between_makes_the_next_run_rebuild(work: Path) -> None:
    """The digest belongs to the version it built: another version in force is rebuilt over."""
    pipeline = Pipeline(settings(work))
    try:
        await pipeline.run_once()
        state = work / "state" / "schedule" / TENANT / f"{PROFILE}.json"
        recorded = json.loads(state.read_text())
        recorded["version"] = 0
        state.write_text(json.dumps(recorded))
        again = await pipeline.run_once()
        assert [(b.status, b.version) for b in again.lists] == [("built", 2)]
    finally:
        pipeline.close()


async def test_an_ingest_with_new_content_runs_the_rebuild_job(work: Path, origin: Origin) -> None:
    pipeline = Pipeline(settings(work))
    schedule = Schedule(pipeline)
    try:
        schedule.start()
        await refresh_feed_job("local")  # new content: the rebuild job moves to now
        deadline = asyncio.get_running_loop().time() + HANG_GUARD_SECONDS
        while publish.current(work / "out", TENANT, PROFILE) is None:
            assert asyncio.get_running_loop().time() < deadline, "the rebuild job never ran"
            await asyncio.sleep(0.05)
        async with pipeline.lock:  # the job's build has finished
            pass
        assert origin.requests == 0  # only the local feed was refreshed
        assert list_names(work / "out", 1) == {"phish-one.example"}
        job = schedule.scheduler.get_job(REBUILD_JOB)
        assert job is not None and job.next_run_time > datetime.now(UTC) + timedelta(minutes=30)
    finally:
        schedule.shutdown()
        pipeline.close()


async def test_a_feed_job_finds_no_pipeline_outside_a_schedule() -> None:
    from distributor.scheduler import ScheduleError

    with pytest.raises(ScheduleError, match="no pipeline"):
        await refresh_feed_job("remote")


# --- the command line -------------------------------------------------------------------


LOCAL_ONLY = '[[feed]]\nname = "local"\nformat = "domains"\nsource = "local.txt"\n'


def now_args(work: Path, *extra: str) -> list[str]:
    return [
        "build",
        "--now",
        "--config",
        str(work / "feeds.toml"),
        "--profile",
        PROFILE,
        "--tenant",
        TENANT,
        "--keys",
        str(work / "keys"),
        "--out",
        str(work / "out"),
        "--state",
        str(work / "state"),
        *extra,
    ]


def test_build_now_refreshes_builds_and_then_finds_nothing_changed(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # main() runs its own event loop in this thread: a local feed (the origin would stall)
    (work / "feeds.toml").write_text(LOCAL_ONLY)
    assert main(now_args(work)) == 0
    out = capsys.readouterr().out
    assert "feed local: ingested" in out
    assert f"list {TENANT}/{PROFILE}: built, published version 1" in out
    assert main(now_args(work, "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["lists"] == [
        {"tenant": TENANT, "profile": PROFILE, "status": "unchanged", "version": 1, "reason": ""}
    ]
    assert publish.published_versions(work / "out", TENANT, PROFILE) == [1]


def test_build_without_now_is_unchanged(work: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Plain ``build`` parses the config's files itself and always publishes, as before."""
    args = now_args(work)
    args.remove("--now")
    (work / "feeds.toml").write_text(LOCAL_ONLY)
    assert main(args) == 0
    assert main(args) == 0
    assert publish.published_versions(work / "out", TENANT, PROFILE) == [1, 2]
    assert not (work / "state" / "schedule").exists()


def test_schedule_runs_in_the_foreground_and_stops_cleanly_on_sigterm(work: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "distributor.cli",
        "schedule",
        "--config",
        str(work / "feeds.toml"),
        "--out",
        str(work / "out"),
        "--keys",
        str(work / "keys"),
        "--state",
        str(work / "state"),
        "--store",
        f"sqlite:///{work / 'store.db'}",
        "--list",
        f"{TENANT}/{PROFILE}",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        assert first.startswith("scheduling: jobs 3 added"), first + proc.stderr.read()
        proc.terminate()
        out, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "stopping" in out and "Traceback" not in err
    assert stored_job_ids(work) == ["feed:local", "feed:remote", REBUILD_JOB]
    assert [j for j in stored_job_ids(work) if j.startswith(FEED_JOB_PREFIX)]


def test_refresh_minutes_is_validated_per_feed_and_in_defaults() -> None:
    feed = '[[feed]]\nname = "a"\nformat = "domains"\nsource = "a.txt"\n'
    assert from_toml_text(feed).get("a").refresh_minutes == 60.0
    fs = from_toml_text("[defaults]\nrefresh_minutes = 15\n" + feed + feed.replace('"a"', '"b"', 1))
    assert [f.refresh_minutes for f in fs] == [15.0, 15.0]
    assert from_toml_text(feed + "refresh_minutes = 2.5\n").get("a").refresh_minutes == 2.5
    for value, error in [
        ("0", "must be 1..10080, got 0"),
        ("20000", "must be 1..10080"),
        ('"hourly"', "expected a number 1..10080, got a string"),
        ("true", "expected a number"),
    ]:
        with pytest.raises(ConfigError, match=error) as e:
            from_toml_text(feed + f"refresh_minutes = {value}\n", origin="feeds.toml")
        assert "feeds.toml:5" in str(e.value) and "refresh_minutes" in str(e.value)
    with pytest.raises(ConfigError, match=r"\[defaults\].*refresh_minutes"):
        from_toml_text("[defaults]\nrefresh_minutes = -1\n" + feed)


async def test_a_broken_config_is_logged_by_the_jobs_not_raised(
    work: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = Pipeline(settings(work))
    schedule = Schedule(pipeline)
    try:
        schedule.start()
        (work / "feeds.toml").write_text("[[feed]]\nname = 3\n")
        await refresh_feed_job("local")
        await rebuild_job()
        assert schedule.scheduler.get_job(REBUILD_JOB) is not None  # the jobs stay
    finally:
        schedule.shutdown()
        pipeline.close()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any(m.startswith("feed local: refresh failed:") and "feeds.toml" in m for m in errors)
    assert any(m.startswith("list acme/linux-sensor: build failed:") for m in errors)
    assert publish.current(work / "out", TENANT, PROFILE) is None
