"""Schedules: refresh each feed at its interval, rebuild the lists whose inputs changed,
publish, push. ``stockade-distributor schedule`` runs it; ``build --now`` runs it once.

APScheduler 3's ``AsyncIOScheduler`` runs the jobs on the event loop (``serve`` and the push
client are asyncio too); blocking work (the store, a build) goes to a thread. The job store
is ``SQLAlchemyJobStore`` on the store database (table ``stockade_jobs``), so job state
survives a restart: each feed has one job ``feed:<name>`` (an interval trigger of the feed's
``refresh_minutes`` with a jitter of a tenth of it, so feeds of one vendor do not all hit
it at the same second) and there is one job ``rebuild``. A restart reconciles the stored
jobs with the config: a job whose trigger is unchanged keeps its next run time, a changed
interval is rescheduled, a removed feed's job is deleted, a new feed's added; none is ever
duplicated (fixed ids). The store pickles job functions by reference and their arguments
(only a feed name), so the functions are module-level and find the running ``Pipeline``
through ``current_pipeline()``: the settings of the running process, never stale pickles.

"Inputs changed" is known by a digest per list of what the build reads: the live indicators
of the list's feeds as the store holds them (type, value and each feed's verdict: vendor,
allow, confidence, category, status, tags, expiry, whether it went missing; not the seen
times, which move at every refresh), the feed config file, the profile, the tenant and the
keys. It is kept after each publish in ``STATE/schedule/{tenant}/{profile}.json`` with the
version it produced. A list is rebuilt when its digest differs, when the published version
is not the one the digest belongs to (a manual build happened), or when less than half of
its lifetime is left (a list nobody re-signs would expire on every sensor). A feed refresh
that ingested new content moves the rebuild job to now; the rebuild job's own interval
catches what time alone changes (indicators ageing out of their TTL, the re-sign).
All jobs of a process share one lock: the store sees one writer and builds never overlap.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from blocklist.fileio import write_atomic

from . import publish
from .build import build_and_publish, capacity_of
from .condense.pipeline import Condenser
from .config import FeedConfig, FeedSet, load_feed_config
from .errors import DistributorError
from .feedcache import FeedCache
from .fleet import Fleet, Tenant, UnknownTenant
from .indicators import Indicator
from .ingest import DEFAULT_GRACE, FeedOutcome, feed_reports, ingest_feeds
from .keys import OnlineKeys
from .profiles import FirmwareProfile, load_profile
from .push import PushResult, RetryPolicy, TargetProvider, no_targets, push_version
from .store import Store, StoreError
from .store.store import parse_store_url
from .tenant_inputs import apply_tenant

log = logging.getLogger("stockade.distributor.scheduler")

JOB_TABLE = "stockade_jobs"
FEED_JOB_PREFIX = "feed:"
REBUILD_JOB = "rebuild"
DEFAULT_REBUILD_MINUTES = 60.0
#: Jitter of a feed's refresh, as a share of its interval.
JITTER_FRACTION = 0.1
STATE_SUBDIR = "schedule"
SQLITE_BUSY_SECONDS = 300.0
INPUTS_VERSION = b"stockade-inputs-v1"


class ScheduleError(DistributorError):
    """A schedule that cannot run: no pipeline, a bad job store URL, an unusable list."""


@dataclass(frozen=True, slots=True)
class ListTarget:
    """A list to keep built: one tenant's list for one profile (name or TOML path), from
    ``feeds`` only (the tenant's subscriptions) or from every feed (None)."""

    tenant: str
    profile: str
    feeds: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    config: Path
    store_url: str
    out: Path
    keys: Path
    state: Path
    lists: tuple[ListTarget, ...] = ()
    valid_for: timedelta = timedelta(hours=168)
    grace: timedelta = DEFAULT_GRACE
    concurrency: int = 4
    rebuild_minutes: float = DEFAULT_REBUILD_MINUTES
    push_policy: RetryPolicy = field(default_factory=RetryPolicy)
    push_concurrency: int = 32


BuildStatus = Literal["built", "unchanged", "failed"]


@dataclass(frozen=True, slots=True)
class ListBuild:
    tenant: str
    profile: str
    status: BuildStatus
    version: int = 0
    reason: str = ""
    inputs_sha256: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "profile": self.profile,
            "status": self.status,
            "version": self.version,
            "reason": self.reason,
        }


@dataclass
class RunReport:
    """One refresh -> rebuild -> publish -> push pass (``build --now``, or the jobs')."""

    feeds: list[FeedOutcome] = field(default_factory=list)
    lists: list[ListBuild] = field(default_factory=list)
    pushes: list[PushResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "feeds": [o.to_dict() for o in self.feeds],
            "lists": [b.to_dict() for b in self.lists],
            "pushes": [p.to_dict() for p in self.pushes],
        }


def job_store_url(url: str) -> str:
    """The store URL as SQLAlchemy takes it (``store.parse_store_url``), password included."""
    try:
        return parse_store_url(url).render_as_string(hide_password=False)
    except StoreError as e:
        raise ScheduleError(str(e)) from e


# --- what a list is built from ----------------------------------------------------------


def _in(feeds: frozenset[str] | None, name: str) -> bool:
    return feeds is None or name in feeds


def inputs_digest(
    store: Store,
    target: ListTarget,
    now: datetime,
    *,
    config_bytes: bytes,
    profile: FirmwareProfile,
    keys: OnlineKeys,
) -> str:
    """SHA-256 of everything the build of ``target`` reads (see the module docstring)."""
    h = hashlib.sha256(INPUTS_VERSION)

    def part(*values: object) -> None:
        h.update(json.dumps(values, default=str, separators=(",", ":")).encode() + b"\n")

    part("tenant", target.tenant, "profile", repr(profile))
    tenant = _fleet_tenant(store, target.tenant)
    if tenant is not None:
        part("fleet", tenant.allow, tenant.deny, tenant.subscriptions)
    part("config", hashlib.sha256(config_bytes).hexdigest())
    part("keys", keys.signing.keyid, hashlib.sha256(keys.keyring.to_bytes()).hexdigest())
    for active in store.active(now):
        obs = sorted(
            (
                ob.feed,
                ob.vendor,
                ob.allow,
                ob.confidence,
                ob.category,
                ob.status,
                list(ob.tags),
                ob.expires.isoformat() if ob.expires else None,
                ob.missing_since is not None,
            )
            for ob in active.observations
            if _in(target.feeds, ob.feed)
        )
        if obs:
            part(str(active.type), active.value, obs)
    return h.hexdigest()


def _fleet_tenant(store: Store, name: str) -> Tenant | None:
    """The fleet's settings of tenant ``name`` (None: not a fleet tenant, or no fleet)."""
    try:
        return Fleet(store).show_tenant(name)
    except UnknownTenant:
        return None


def _state_path(state: Path, tenant: str, profile: str) -> Path:
    return publish.list_dir(state / STATE_SUBDIR, tenant, profile).with_suffix(".json")


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _parsed(
    store: Store, feeds: frozenset[str] | None, now: datetime
) -> tuple[list[tuple[list[Indicator], str]], list[dict[str, Any]]]:
    parsed = [
        ([ind], vendor)
        for active in store.active(now)
        for ind, vendor in active.indicators()
        if _in(feeds, ind.source)
    ]
    reports = feed_reports(store, feeds)
    return parsed, reports


# --- the pipeline -----------------------------------------------------------------------


class Pipeline:
    """Refresh, rebuild, publish and push with one store; one step at a time (``lock``)."""

    def __init__(
        self,
        settings: PipelineSettings,
        *,
        lists: Callable[[], Sequence[ListTarget]] | None = None,
        push_targets: TargetProvider = no_targets,
        on_push: Callable[[Sequence[PushResult]], None] | None = None,
    ) -> None:
        """``lists``: which lists to keep built (default: ``settings.lists``); the fleet gives
        them later. ``push_targets``: the appliances to push each new version to;
        ``on_push``: gets each list's push results (the fleet records them per appliance)."""
        self.settings = settings
        self._lists = lists or (lambda: settings.lists)
        self.push_targets = push_targets
        self.on_push = on_push
        self.store = Store.open(settings.store_url)
        # absolute: the cache checks that a download's temporary file is in its directory
        self.cache = FeedCache((settings.state / "cache").resolve())
        self.lock = asyncio.Lock()
        self.scheduler: AsyncIOScheduler | None = None

    def close(self) -> None:
        self.store.close()

    def feedset(self) -> FeedSet:
        return load_feed_config(self.settings.config)

    async def refresh(self, names: Iterable[str] | None = None) -> list[FeedOutcome]:
        """Ingest the named feeds (default: every enabled feed of the config)."""
        feedset = self.feedset()
        wanted = None if names is None else set(names)
        feeds: list[FeedConfig] = [
            f for f in feedset.enabled() if wanted is None or f.name in wanted
        ]
        if not feeds:
            return []
        async with self.lock:
            return await ingest_feeds(
                feeds,
                self.store,
                self.cache,
                grace=self.settings.grace,
                concurrency=max(1, self.settings.concurrency),
            )

    def _build_one(self, target: ListTarget, now: datetime, config_bytes: bytes) -> ListBuild:
        s = self.settings
        profile = load_profile(target.profile)
        keys = OnlineKeys.load(s.keys, now=now)
        digest = inputs_digest(
            self.store, target, now, config_bytes=config_bytes, profile=profile, keys=keys
        )
        state_path = _state_path(s.state, target.tenant, profile.name)
        state = _read_state(state_path)
        held = publish.current(s.out, target.tenant, profile.name)
        current_version = int(held.stem.lstrip("v")) if held is not None else 0
        expires_text = state.get("expires")
        half_life_left = False
        if isinstance(expires_text, str):
            try:
                half_life_left = datetime.fromisoformat(expires_text) - now > s.valid_for / 2
            except ValueError:
                half_life_left = False
        if (
            state.get("inputs_sha256") == digest
            and state.get("version") == current_version
            and current_version > 0
            and half_life_left
        ):
            return ListBuild(
                target.tenant, profile.name, "unchanged", current_version, inputs_sha256=digest
            )
        if not any(st.last_ok_at is not None for st in self.store.feed_states()):
            raise ScheduleError(f"store {self.store.url} holds no ingested feed: nothing to build")
        parsed, reports = _parsed(self.store, target.feeds, now)
        settings = self.feedset().condense
        tenant = _fleet_tenant(self.store, target.tenant)
        if tenant is not None:  # a fleet tenant: its subscriptions, deny and allow entries
            parsed, settings = apply_tenant(tenant, parsed, settings, s.state)
        condenser = Condenser(settings, now=now, cache_dir=s.state / "cache" / "models")
        result = build_and_publish(
            parsed=parsed,
            feed_reports=reports,
            cap=capacity_of(profile),
            tenant=target.tenant,
            profile=profile.name,
            keys=keys,
            out=s.out,
            valid_for=s.valid_for,
            now=now,
            condenser=condenser,
            coarsen=profile.coarsen,
        )
        version = int(result.report["version"])
        # after the publish: a crash in between costs one extra version, never a lost one
        write_atomic(
            state_path,
            json.dumps(
                {
                    "inputs_sha256": digest,
                    "version": version,
                    "expires": result.report["expires"],
                    "built_at": now.isoformat(),
                },
                indent=2,
            ).encode(),
        )
        return ListBuild(target.tenant, profile.name, "built", version, inputs_sha256=digest)

    async def rebuild(self, now: datetime | None = None) -> list[ListBuild]:
        """Build and publish every list whose inputs changed; one list's failure is its own."""
        when = (now or datetime.now(UTC)).replace(microsecond=0)
        out: list[ListBuild] = []
        async with self.lock:
            try:
                config_bytes = self.settings.config.read_bytes()
            except OSError as e:
                raise ScheduleError(f"cannot read feed config {self.settings.config}: {e}") from e
            for target in self._lists():
                try:
                    build = await asyncio.to_thread(self._build_one, target, when, config_bytes)
                except Exception as e:  # noqa: BLE001 - one list's failure never stops the others
                    log.error("list %s/%s: build failed: %s", target.tenant, target.profile, e)
                    build = ListBuild(target.tenant, target.profile, "failed", reason=str(e))
                else:
                    log.info(
                        "list %s/%s: %s (version %d)",
                        build.tenant,
                        build.profile,
                        build.status,
                        build.version,
                    )
                out.append(build)
        return out

    async def push(self, builds: Sequence[ListBuild]) -> list[PushResult]:
        """A new version goes to every target; an unchanged one to the targets not known to
        hold it (a push that failed, or never happened because the distributor restarted
        mid-backoff, is made good on the next pass instead of waiting for a new version)."""
        results: list[PushResult] = []
        for b in builds:
            if b.status not in ("built", "unchanged") or not b.version:
                continue
            try:
                targets = self.push_targets(b.tenant, b.profile)
                if b.status == "unchanged":
                    targets = [
                        t for t in targets if t.held_version is None or t.held_version < b.version
                    ]
                pushed = await push_version(
                    self.settings.out,
                    b.tenant,
                    b.profile,
                    b.version,
                    targets,
                    policy=self.settings.push_policy,
                    concurrency=self.settings.push_concurrency,
                )
                results += pushed
                if self.on_push is not None and pushed:
                    self.on_push(pushed)
            except Exception as e:  # noqa: BLE001 - a push problem never undoes a publish
                log.error("push of %s/%s v%d failed: %s", b.tenant, b.profile, b.version, e)
        return results

    async def rebuild_and_push(self, now: datetime | None = None) -> RunReport:
        builds = await self.rebuild(now)
        return RunReport(lists=builds, pushes=await self.push(builds))

    async def run_once(self, now: datetime | None = None) -> RunReport:
        """``build --now``: refresh every feed, then rebuild, publish and push what changed."""
        feeds = await self.refresh()
        report = await self.rebuild_and_push(now)
        report.feeds = feeds
        return report

    def request_rebuild(self) -> None:
        """Run the rebuild job now (after an ingest brought new content)."""
        if self.scheduler is None:
            return
        job = self.scheduler.get_job(REBUILD_JOB)
        if job is not None:
            job.modify(next_run_time=datetime.now(UTC))


# --- the jobs (module level: the job store pickles references to them) -------------------

_current: list[Pipeline] = []


def current_pipeline() -> Pipeline:
    if not _current:
        raise ScheduleError("no pipeline is running in this process (start a Schedule first)")
    return _current[-1]


async def refresh_feed_job(feed: str) -> None:
    pipeline = current_pipeline()
    try:
        outcomes = await pipeline.refresh([feed])
    except DistributorError as e:  # a broken config: said once per run, the job stays
        log.error("feed %s: refresh failed: %s", feed, e)
        return
    for o in outcomes:
        level = logging.INFO if o.status in ("ingested", "unchanged") else logging.WARNING
        log.log(level, "feed %s: %s %s", o.feed, o.status, o.reason)
    if any(o.status == "ingested" for o in outcomes):
        pipeline.request_rebuild()


async def rebuild_job() -> None:
    pipeline = current_pipeline()
    try:
        await pipeline.rebuild_and_push()
    except DistributorError as e:
        log.error("rebuild failed: %s", e)


# --- the schedule -----------------------------------------------------------------------


def feed_trigger(feed: FeedConfig) -> IntervalTrigger:
    seconds = feed.refresh_minutes * 60.0
    return IntervalTrigger(
        seconds=seconds, jitter=max(1, math.ceil(seconds * JITTER_FRACTION)), timezone=UTC
    )


def _same_trigger(a: Any, b: IntervalTrigger) -> bool:
    return (
        isinstance(a, IntervalTrigger)
        and a.interval == b.interval
        and getattr(a, "jitter", None) == getattr(b, "jitter", None)
    )


class Schedule:
    """An ``AsyncIOScheduler`` with the persistent job store, reconciled with the config."""

    def __init__(self, pipeline: Pipeline, *, job_store: str | None = None) -> None:
        self.pipeline = pipeline
        url = job_store_url(job_store or pipeline.settings.store_url)
        # SQLite: wait for a long ingest's write transaction instead of failing after 5 s
        options = (
            {"connect_args": {"timeout": SQLITE_BUSY_SECONDS}} if url.startswith("sqlite") else {}
        )
        store = SQLAlchemyJobStore(url=url, tablename=JOB_TABLE, engine_options=options)
        self.scheduler = AsyncIOScheduler(
            jobstores={"default": store},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    def desired(self) -> dict[str, tuple[Callable[..., Any], tuple[str, ...], IntervalTrigger]]:
        jobs: dict[str, tuple[Callable[..., Any], tuple[str, ...], IntervalTrigger]] = {}
        for feed in self.pipeline.feedset().enabled():
            jobs[FEED_JOB_PREFIX + feed.name] = (refresh_feed_job, (feed.name,), feed_trigger(feed))
        minutes = self.pipeline.settings.rebuild_minutes
        jobs[REBUILD_JOB] = (
            rebuild_job,
            (),
            IntervalTrigger(seconds=minutes * 60.0, timezone=UTC),
        )
        return jobs

    def start(self) -> dict[str, list[str]]:
        """Start (on the running loop) and reconcile; returns the job ids kept, added,
        rescheduled and removed."""
        _current.append(self.pipeline)
        self.pipeline.scheduler = self.scheduler
        # paused: nothing runs before the stored jobs match the config
        self.scheduler.start(paused=True)
        changes: dict[str, list[str]] = {"kept": [], "added": [], "rescheduled": [], "removed": []}
        want = self.desired()
        for job in self.scheduler.get_jobs():
            if job.id not in want:
                job.remove()
                changes["removed"].append(job.id)
                continue
            func, args, trigger = want.pop(job.id)
            if job.func is not func or tuple(job.args) != args:
                job.modify(func=func, args=args)
            if _same_trigger(job.trigger, trigger):
                changes["kept"].append(job.id)
            else:
                job.reschedule(trigger)
                changes["rescheduled"].append(job.id)
        for job_id, (func, args, trigger) in want.items():
            self.scheduler.add_job(func, trigger, args=args, id=job_id, name=job_id)
            changes["added"].append(job_id)
        self.scheduler.resume()
        for name, ids in changes.items():
            if ids:
                log.info("jobs %s: %s", name, ", ".join(sorted(ids)))
        return changes

    def next_run_times(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self.scheduler.get_jobs()}

    def shutdown(self) -> None:
        """Stop scheduling; running jobs are not interrupted (they finish on the loop)."""
        if self.scheduler.running:
            # the asyncio scheduler shuts down on the loop: do it directly, synchronously
            from apscheduler.schedulers.base import BaseScheduler

            BaseScheduler.shutdown(self.scheduler, wait=False)
            self.scheduler._stop_timer()
        if self.pipeline in _current:
            _current.remove(self.pipeline)
        self.pipeline.scheduler = None
