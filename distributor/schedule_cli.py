"""``stockade-distributor schedule`` and ``build --now``: the scheduler in the foreground,
or its refresh -> rebuild -> publish -> push pass once (``distributor.scheduler``).

``register(subparsers)`` adds ``schedule``; ``cmd_build_now`` is what ``build --now`` runs.
Neither imports ``distributor.cli`` (which registers them), so there is no import cycle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import signal
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from .cliargs import DEFAULT_STATE, hours, store_url
from .errors import DistributorError
from .push import (
    PushResult,
    PushTarget,
    TargetProvider,
    derive_push_secret,
    load_push_key,
    new_push_key,
    no_targets,
)
from .scheduler import (
    DEFAULT_REBUILD_MINUTES,
    ListTarget,
    Pipeline,
    PipelineSettings,
    RunReport,
    Schedule,
)

EXIT_OK = 0
EXIT_ERROR = 1

log = logging.getLogger("stockade.distributor.schedule")

#: Which appliances get each new version; the fleet replaces this (``distributor.fleet``).
push_targets: TargetProvider = no_targets
#: Which lists to keep built besides ``--list``; the fleet replaces this.
fleet_lists: Callable[[], Sequence[ListTarget]] | None = None


def _list_target(text: str) -> ListTarget:
    tenant, sep, profile = text.partition("/")
    if not sep or not tenant or not profile:
        raise argparse.ArgumentTypeError(f"expected TENANT/PROFILE, got {text!r}")
    return ListTarget(tenant, profile)


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text!r}") from e
    if not math.isfinite(value) or not 1 <= value <= 7 * 24 * 60:
        raise argparse.ArgumentTypeError("must be 1..10080 minutes")
    return value


def _settings(args: argparse.Namespace, lists: Sequence[ListTarget]) -> PipelineSettings:
    return PipelineSettings(
        config=Path(args.config),
        store_url=store_url(args),
        out=Path(args.out),
        keys=Path(args.keys),
        state=Path(args.state),
        lists=tuple(lists),
        valid_for=timedelta(hours=args.valid_hours),
        grace=timedelta(days=getattr(args, "grace_days", 7.0)),
        rebuild_minutes=getattr(args, "rebuild_minutes", DEFAULT_REBUILD_MINUTES),
    )


def _all_lists(settings: PipelineSettings) -> Callable[[], Sequence[ListTarget]]:
    def lists() -> Sequence[ListTarget]:
        extra = list(fleet_lists()) if fleet_lists is not None else []
        return [*settings.lists, *(t for t in extra if t not in settings.lists)]

    return lists


def _print_report(report: RunReport, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, default=str))
        return
    for o in report.feeds:
        print(f"feed {o.feed}: {o.status}" + (f" ({o.reason})" if o.reason else ""))
    for b in report.lists:
        line = f"list {b.tenant}/{b.profile}: {b.status}"
        if b.status == "built":
            line += f", published version {b.version}"
        elif b.status == "unchanged":
            line += f" inputs, still version {b.version}"
        else:
            line += f": {b.reason}"
        print(line)
    for p in report.pushes:
        print(
            f"push v{p.version} to {p.target} ({p.url}): {p.status} after {p.attempts} "
            f"attempt(s)" + (f": {p.reason}" if p.reason else "")
        )


class _FleetHooks:
    """Lists to keep built and appliances to push to, from the fleet tables (``--fleet``).

    Each appliance's push secret is derived from ``--push-key`` (``distributor.push``), so
    nothing secret is stored per appliance; push outcomes land in the appliance's last error.
    """

    def __init__(self, url: str, push_key: Path | None) -> None:
        from .fleet import Fleet

        self.fleet = Fleet.open(url)
        self.key = load_push_key(push_key) if push_key is not None else None

    def lists(self) -> Sequence[ListTarget]:
        out = []
        for tenant, profile in self.fleet.list_targets():
            subscribed = frozenset(self.fleet.show_tenant(tenant).subscriptions)
            out.append(ListTarget(tenant, profile, subscribed or None))
        return out

    def targets(self, tenant: str, profile: str) -> list[PushTarget]:
        if self.key is None:
            return []  # no push key: appliances with a push URL are only polled
        return [
            PushTarget(
                a.tenant,
                a.profile,
                a.name,
                a.push_url,
                derive_push_secret(self.key, a.tenant, a.name),
                a.version_held,
            )
            for a in self.fleet.push_targets(tenant, profile)
            if a.push_url
        ]

    def record(self, results: Sequence[PushResult]) -> None:
        for r in results:
            delivered = r.status == "delivered"
            error = None if delivered else f"push v{r.version}: {r.reason}"
            try:
                self.fleet.record_push(
                    r.tenant, r.target, error, delivered_version=r.version if delivered else None
                )
            except DistributorError as e:  # removed meanwhile: nothing to record
                log.info("push result for %s/%s not recorded: %s", r.tenant, r.target, e)

    def close(self) -> None:
        self.fleet.close()


def _hooks(args: argparse.Namespace) -> _FleetHooks | None:
    url = getattr(args, "fleet", None)
    key = getattr(args, "push_key", None)
    if url is None:
        if key is not None:
            raise DistributorError("--push-key needs --fleet (the appliances to push to)")
        return None
    return _FleetHooks(str(url), Path(key) if key else None)


def _pipeline(settings: PipelineSettings, hooks: _FleetHooks | None) -> Pipeline:
    if hooks is None:
        return Pipeline(settings, lists=_all_lists(settings), push_targets=push_targets)
    extra = hooks.lists

    def lists() -> Sequence[ListTarget]:
        return [*settings.lists, *(t for t in extra() if t not in settings.lists)]

    return Pipeline(settings, lists=lists, push_targets=hooks.targets, on_push=hooks.record)


def cmd_build_now(args: argparse.Namespace) -> int:
    """``build --now``: refresh the config's feeds into the store, then rebuild, publish and
    push this tenant's list for this profile if its inputs changed."""
    if not args.config:
        raise DistributorError("build --now needs --config (its feeds are refreshed first)")
    settings = _settings(args, [ListTarget(args.tenant, args.profile)])
    hooks = _hooks(args)

    async def main() -> RunReport:
        pipeline = _pipeline(settings, hooks)
        try:
            return await pipeline.run_once()
        finally:
            pipeline.close()

    try:
        report = asyncio.run(main())
    finally:
        if hooks is not None:
            hooks.close()
    _print_report(report, as_json=bool(getattr(args, "json", False)))
    ok = all(b.status != "failed" for b in report.lists) and all(
        o.status in ("ingested", "unchanged") for o in report.feeds
    )
    return EXIT_OK if ok else EXIT_ERROR


def cmd_schedule(args: argparse.Namespace) -> int:
    settings = _settings(args, args.list or [])
    hooks = _hooks(args)
    if not settings.lists and fleet_lists is None and hooks is None:
        raise DistributorError("give at least one --list TENANT/PROFILE (or --fleet) to keep built")

    async def main() -> None:
        pipeline = _pipeline(settings, hooks)
        schedule = Schedule(pipeline)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            changes = schedule.start()
            summary = ", ".join(f"{len(v)} {k}" for k, v in changes.items() if v)
            print(f"scheduling: jobs {summary}", flush=True)
            for job_id, when in sorted(schedule.next_run_times().items()):
                print(f"  {job_id}: next run {when.isoformat() if when else 'paused'}", flush=True)
            await stop.wait()
            print("stopping: the jobs stay in the store for the next start", flush=True)
        finally:
            schedule.shutdown()
            # a job still running finishes its current step under the lock, then stops here
            async with pipeline.lock:
                pipeline.close()

    try:
        asyncio.run(main())
    finally:
        if hooks is not None:
            hooks.close()
    return EXIT_OK


def add_fleet_options(p: argparse.ArgumentParser) -> None:
    """``--fleet`` and ``--push-key`` (``schedule`` and ``build --now``)."""
    p.add_argument(
        "--fleet",
        metavar="URL",
        help="store URL holding the fleet (usually the --store URL): build every list an "
        "appliance fetches, with its tenant's subscriptions, and push to appliances with a "
        "push URL",
    )
    p.add_argument(
        "--push-key",
        metavar="FILE",
        help="32-byte key the appliances' push secrets derive from (stockade-distributor "
        "push-key); without it nothing is pushed",
    )


def add_now_option(build_parser: argparse.ArgumentParser) -> None:
    """``build --now``: the scheduler's steps once (shared with ``distributor.cli``)."""
    build_parser.add_argument(
        "--now",
        action="store_true",
        help="refresh the config's feeds into the store, then rebuild, publish and push the "
        "list if its inputs changed (the scheduler's steps, once)",
    )


def register(subparsers: Any) -> None:
    s: argparse.ArgumentParser = subparsers.add_parser(
        "schedule",
        help="refresh feeds at their intervals, rebuild changed lists, publish and push",
    )
    s.add_argument("--config", required=True, help="feeds TOML file (refresh_minutes per feed)")
    s.add_argument(
        "--state", default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})"
    )
    s.add_argument(
        "--store", help="store URL (the jobs are kept there too; default: sqlite in --state)"
    )
    s.add_argument("--out", required=True, help="output directory for published lists")
    s.add_argument("--keys", required=True, help="online key directory")
    s.add_argument(
        "--list",
        action="append",
        type=_list_target,
        help="TENANT/PROFILE to keep built (repeatable)",
    )
    s.add_argument("--valid-hours", type=hours, default=168.0, help="list lifetime (default 168)")
    s.add_argument(
        "--rebuild-minutes",
        type=_minutes,
        default=DEFAULT_REBUILD_MINUTES,
        help="check every list at least this often (TTL expiry, re-signing; default 60)",
    )
    s.add_argument(
        "--grace-days", type=float, default=7.0, help="keep dropped entries this long (default 7)"
    )
    add_fleet_options(s)
    s.set_defaults(func=cmd_schedule)

    k: argparse.ArgumentParser = subparsers.add_parser(
        "push-key",
        help="make the push key (once), or print the push secret of one appliance",
    )
    k.add_argument("--file", required=True, help="the push key file (0600)")
    k.add_argument(
        "--secret-for",
        metavar="TENANT/APPLIANCE",
        type=_appliance_name,
        help="print this appliance's push secret (for its [push] token_file) instead",
    )
    k.set_defaults(func=cmd_push_key)


def _appliance_name(text: str) -> tuple[str, str]:
    tenant, sep, name = text.partition("/")
    if not sep or not tenant or not name:
        raise argparse.ArgumentTypeError(f"expected TENANT/APPLIANCE, got {text!r}")
    return tenant, name


def cmd_push_key(args: argparse.Namespace) -> int:
    path = Path(args.file)
    if args.secret_for is None:
        new_push_key(path)
        print(f"wrote push key {path} (keep it with the distributor's online keys)")
        return EXIT_OK
    tenant, name = args.secret_for
    print(derive_push_secret(load_push_key(path), tenant, name))
    return EXIT_OK
