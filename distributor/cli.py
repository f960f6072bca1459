"""``stockade-distributor``: keygen, ingest, build, explain, serve, token, profiles.

These spellings are a contract that scripts and docs rely on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from blocklist.errors import InvalidIndicator

from . import keys as keyfiles
from . import schedule_cli
from .build import BuildResult, Key, build_and_publish, capacity_of
from .cliargs import DEFAULT_STATE, STORE_FILE, hours, store_url
from .condense.explain import explain_result, render_explanation
from .condense.pipeline import MERGED_REASONS, Condenser, union_keys_for
from .condense.settings import CondenseSettings
from .config import load_feed_config
from .errors import ConfigError, DistributorError
from .feedcache import FeedCache
from .feeds import parse_feed
from .fleet_cli import (
    add_serve_options,
    register_fleet_commands,
    serve_fleet,
    tenant_build_inputs,
)
from .indicators import Indicator
from .ingest import FeedOutcome, feed_reports, ingest_feeds, store_indicators
from .keys import OnlineKeys
from .keys_cli import add_keygen_options, keygen_mode
from .keys_cli import register as register_keys
from .profiles import DEFAULT_PROFILE_DIR, FirmwareProfile, list_profiles, load_profile
from .server import ListServer, start
from .store import Store
from .tokens import TokenStore

log = logging.getLogger("stockade.distributor")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2


#: A list that outlives this is a list nobody re-signs; also keeps timedelta from overflowing.
def cmd_keygen(args: argparse.Namespace) -> int:
    rc = keygen_mode(args)  # --root / --online (ADR 0003); None: as before
    if rc is not None:
        return rc
    paths = keyfiles.keygen(Path(args.dir))
    print(f"root key (keep OFFLINE):  {paths[keyfiles.ROOT_KEY]}")
    print(f"root public key (pin it on sensors with --trust): {paths[keyfiles.ROOT_PUB]}")
    print(f"online signing key:       {paths[keyfiles.SIGNING_KEY]}")
    print(f"root-signed keyring:      {paths[keyfiles.KEYRING]}")
    return EXIT_OK


def _parsed_from_store(
    args: argparse.Namespace,
) -> tuple[list[tuple[list[Indicator], str]], list[dict[str, Any]]]:
    # A mistyped --state must not open a new, empty store and publish an empty list.
    if not args.store and not (Path(args.state) / STORE_FILE).is_file():
        raise DistributorError(f"no store in {args.state}: run ingest first")
    with Store.open(store_url(args)) as store:
        if not any(s.last_ok_at is not None for s in store.feed_states()):
            raise DistributorError(f"store {store.url} holds no ingested feed: run ingest first")
        parsed = list(store_indicators(store, datetime.now(UTC)))
        reports = feed_reports(store)
    return parsed, reports


def _gather(
    args: argparse.Namespace, *, quiet: bool
) -> tuple[list[tuple[list[Indicator], str]], list[dict[str, Any]], CondenseSettings]:
    """The parsed feeds (from the config's files or the store) and the condensing settings."""
    feedset = load_feed_config(Path(args.config)) if args.config else None
    settings = feedset.condense if feedset is not None else CondenseSettings()
    if args.from_store:
        parsed, reports = _parsed_from_store(args)
        return parsed, reports, settings
    if feedset is None:
        raise DistributorError("give --config FILE, or --from-store")
    parsed = []
    reports = []
    for feed in feedset.feeds:
        if not feed.enabled:
            continue
        try:
            indicators, report = parse_feed(feed)
        except DistributorError as e:
            # One broken feed never stops the build: report it and go on with the others.
            log.error("%s", e)
            reports.append({"feed": feed.name, "error": str(e)})
            continue
        parsed.append((indicators, feed.vendor))
        reports.append(report.to_dict())
        if not quiet:
            # with --json, stdout carries only the report
            print(report.summary(), file=sys.stderr if args.json else sys.stdout)
    return parsed, reports, settings


def _run_build(
    args: argparse.Namespace, *, publish: bool, watch: Sequence[Key] = ()
) -> tuple[FirmwareProfile, BuildResult]:
    profile = load_profile(args.profile)
    keys = OnlineKeys.load(Path(args.keys))
    parsed, reports, settings = _gather(args, quiet=args.quiet or not publish)
    parsed, settings = tenant_build_inputs(args, parsed, settings)  # a fleet tenant's lists
    now = datetime.now(UTC)
    condenser = Condenser(settings, now=now, cache_dir=Path(args.state) / "cache" / "models")
    result = build_and_publish(
        parsed=parsed,
        feed_reports=reports,
        cap=capacity_of(profile),
        tenant=args.tenant,
        profile=profile.name,
        keys=keys,
        out=Path(args.out) if publish else None,
        valid_for=timedelta(hours=args.valid_hours),
        now=now,
        condenser=condenser,
        coarsen=profile.coarsen,
        watch=watch,
    )
    return profile, result


def cmd_build(args: argparse.Namespace) -> int:
    if args.now:  # the scheduler's refresh -> rebuild -> publish -> push, once
        return schedule_cli.cmd_build_now(args)
    profile, result = _run_build(args, publish=True)
    r = result.report
    if args.json:
        print(json.dumps(r, indent=2, default=str))
        return EXIT_OK
    kept = ", ".join(f"{n} {t}" for t, n in sorted(r["kept"].items())) or "nothing"
    c = r.get("condense") or {}
    print(
        f"built {result.path}\n"
        f"  tenant {args.tenant}, profile {profile.name}, version {r['version']}, "
        f"expires {r['expires']}\n"
        f"  union {r['union_block_entries']} block + {r['union_allow_entries']} allow entries"
        f" -> {c.get('candidates', '?')} candidates; "
        f"kept {kept}; {r['allow_exceptions']} allow exceptions\n"
        f"  estimated protection kept {r['estimated_protection_kept']:.1%}\n"
        f"  bundle {r['bundle_bytes']} bytes (profile limit {profile.max_bytes}), "
        f"signed by key {r['key_id'][:16]}"
    )
    for name, n in (c.get("domain_decisions") or {}).items():
        print(f"  registrable domains {name}: {n}")
    for note in c.get("reference_notes") or []:
        print(f"  note: {note}")
    for warning in r.get("warnings", []):
        print(f"  warning: {warning}")
    for reason, n in sorted(r["dropped"].items(), key=lambda kv: -kv[1]):
        examples = "; ".join(r["dropped_examples"].get(reason, []))
        verb = "merged" if reason in MERGED_REASONS else "dropped"
        print(f"  {verb} {n}: {reason}" + (f" (e.g. {examples})" if examples else ""))
    return EXIT_OK


def cmd_explain(args: argparse.Namespace) -> int:
    try:
        keys_wanted = union_keys_for(args.indicator)
    except InvalidIndicator as e:
        raise DistributorError(f"cannot read {args.indicator!r} as an indicator: {e.reason}") from e
    _, result = _run_build(args, publish=False, watch=keys_wanted)
    doc = explain_result(result, keys_wanted)
    if args.json:
        print(json.dumps(doc, indent=2, default=str))
    else:
        print(render_explanation(doc))
    return EXIT_OK


def _build_inputs(p: argparse.ArgumentParser) -> None:
    """What ``build`` and ``explain`` share: the same inputs give the same list."""
    p.add_argument(
        "--config",
        help="feeds TOML file: its feeds (parsed now) and its [reference], [score], "
        "[categorize] and [tenants.*] tables",
    )
    p.add_argument(
        "--from-store",
        action="store_true",
        help="take the indicators from the store (run ingest first); --config then only "
        "gives the condensing tables",
    )
    p.add_argument(
        "--state", default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})"
    )
    p.add_argument("--store", help="store URL (default: sqlite file in --state)")
    p.add_argument("--profile", required=True, help="firmware profile name or TOML path")
    p.add_argument("--tenant", required=True)
    p.add_argument("--keys", required=True, help="key directory made by keygen")
    p.add_argument("--valid-hours", type=hours, default=168.0, help="list lifetime (default 168)")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def cmd_ingest(args: argparse.Namespace) -> int:
    feedset = load_feed_config(Path(args.config))
    feeds = list(feedset.feeds)
    if args.feed:
        unknown = sorted(set(args.feed) - {f.name for f in feeds})
        if unknown:
            raise ConfigError(f"no feed named {', '.join(unknown)} in {args.config}")
        feeds = [f for f in feeds if f.name in args.feed]
    # absolute: the cache checks that a download's temporary file (an absolute path from
    # tempfile) is in the feed's directory before promoting it
    cache = FeedCache((Path(args.cache) if args.cache else Path(args.state) / "cache").resolve())
    console = Console(stderr=True)
    with Store.open(store_url(args)) as store:
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=args.json,
        ) as progress:
            task = progress.add_task("ingesting feeds", total=len([f for f in feeds if f.enabled]))

            def done(out: FeedOutcome) -> None:
                progress.update(task, advance=1, description=f"{out.feed}: {out.status}")

            outcomes = asyncio.run(
                ingest_feeds(
                    feeds,
                    store,
                    cache,
                    grace=timedelta(days=args.grace_days),
                    concurrency=max(1, args.concurrency),
                    on_done=done,
                )
            )
        stats = store.stats()
    if args.json:
        print(json.dumps([o.to_dict() for o in outcomes], indent=2, default=str))
    else:
        out = Console()
        if not out.is_terminal:
            out = Console(width=160)
        _outcome_table(outcomes, out)
        print(
            f"store: {stats.indicators:,} indicators from {stats.feeds} feeds "
            f"({stats.missing_observations:,} observations in their grace period)"
        )
    return EXIT_OK if all(o.status in ("ingested", "unchanged") for o in outcomes) else EXIT_ERROR


def _outcome_table(outcomes: Sequence[FeedOutcome], console: Console) -> None:
    table = Table(title="ingest")
    for col in (
        "feed",
        "status",
        "read",
        "accepted",
        "new",
        "updated",
        "expired",
        "rejected / reason",
    ):
        table.add_column(
            col,
            justify="right" if col in ("read", "accepted", "new", "updated", "expired") else "left",
        )
    for o in outcomes:
        d = o.to_dict()
        rejected = d["rejected"]
        assert isinstance(rejected, dict)
        why = ", ".join(f"{n} {r}" for r, n in sorted(rejected.items(), key=lambda kv: -kv[1])[:3])
        if o.status not in ("ingested", "unchanged"):
            why = o.reason or why
        style = {
            "ingested": "green",
            "unchanged": "cyan",
            "quarantined": "yellow",
            "failed": "red",
        }[o.status]
        table.add_row(
            o.feed,
            f"[{style}]{o.status}[/{style}]",
            *(f"{d[k]:,}" for k in ("read", "accepted", "new", "updated", "expired")),
            why,
        )
    console.print(table)


def cmd_serve(args: argparse.Namespace) -> int:
    # telemetry intake (POST /v1/telemetry) needs a store; without one it answers 503
    # --fleet: appliances authenticate through the store (and the admin API may be mounted)
    fleet, fleet_options = serve_fleet(args)
    telemetry = Store.open(str(args.telemetry_store)) if args.telemetry_store else None
    if telemetry is None and fleet is not None:
        telemetry = fleet.store
    tokens = Path(args.tokens) if args.tokens else None
    server = ListServer(
        Path(args.lists),
        tokens,
        telemetry_store=telemetry,
        profiles_dir=Path(args.profiles_dir) if args.profiles_dir else DEFAULT_PROFILE_DIR,
        **fleet_options,
    )

    async def main() -> None:
        runner = await start(server, args.host, args.port)
        print(f"serving {args.lists} on http://{args.host}:{args.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        if telemetry is not None:
            telemetry.close()
        if fleet is not None:
            fleet.close()
    return EXIT_OK


def cmd_token_add(args: argparse.Namespace) -> int:
    path = Path(args.tokens)
    store = TokenStore.load(path)
    token = store.add(args.name, args.tenant, args.profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(store.to_toml())
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as e:
        raise DistributorError(f"cannot write token file {path}: {e.strerror or e}") from e
    print(token)
    print(
        f"appliance {args.name} of tenant {args.tenant} may fetch {', '.join(args.profile)}; "
        "the token is shown once and stored only as its SHA-256",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_profiles(args: argparse.Namespace) -> int:
    if args.dir and not Path(args.dir).is_dir():
        raise DistributorError(f"profile directory {args.dir} does not exist")
    profiles = list_profiles(Path(args.dir)) if args.dir else list_profiles()
    if not profiles:
        raise DistributorError(f"no firmware profiles (*.toml) in {args.dir}")
    if args.json:
        print(json.dumps([p.to_dict() for p in profiles], indent=2))
        return EXIT_OK
    rows = [
        (
            p.name,
            p.vendor,
            p.delivery,
            p.export_format,
            ",".join(p.supported_types),
            f"{p.max_entries:,}",
            f"{p.max_bytes:,}",
            p.model,  # last: the longest column
        )
        for p in profiles
    ]
    head = ("NAME", "VENDOR", "DELIVERY", "FORMAT", "TYPES", "MAX ENTRIES", "MAX BYTES", "MODEL")
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return EXIT_OK


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stockade-distributor", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    k = sub.add_parser("keygen", help="create root and online signing keys and a keyring")
    k.add_argument("--dir", required=True, help="directory for the key files (must not hold keys)")
    add_keygen_options(k)
    k.set_defaults(func=cmd_keygen)
    register_keys(sub)

    b = sub.add_parser("build", help="build a signed list for a profile from feeds or the store")
    _build_inputs(b)
    b.add_argument("--out", required=True, help="output directory for published lists")
    b.add_argument("--json", action="store_true", help="print the build report as JSON")
    b.add_argument("--quiet", action="store_true", help="no per-feed lines")
    schedule_cli.add_now_option(b)
    schedule_cli.add_fleet_options(b)
    b.set_defaults(func=cmd_build)
    schedule_cli.register(sub)

    e = sub.add_parser(
        "explain", help="why an indicator is in or out of a tenant's list for a profile"
    )
    e.add_argument("indicator", help="a domain, host, URL, IP or CIDR")
    _build_inputs(e)
    e.add_argument("--json", action="store_true", help="print the explanation as JSON")
    e.set_defaults(func=cmd_explain, quiet=True)

    i = sub.add_parser("ingest", help="fetch, parse and store every feed of a config")
    i.add_argument("--config", required=True, help="feeds TOML file")
    i.add_argument(
        "--state", default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})"
    )
    i.add_argument(
        "--store", help="store URL, e.g. postgresql+psycopg://... (default: sqlite in --state)"
    )
    i.add_argument("--cache", help="feed cache directory (default: STATE/cache)")
    i.add_argument("--feed", action="append", help="only this feed (repeatable)")
    i.add_argument(
        "--grace-days",
        type=_positive_float,
        default=7.0,
        help="keep dropped entries this long (default 7)",
    )
    i.add_argument("--concurrency", type=int, default=4, help="feeds fetched at once (default 4)")
    i.add_argument("--json", action="store_true", help="print the per-feed outcomes as JSON")
    i.set_defaults(func=cmd_ingest)

    s = sub.add_parser("serve", help="serve published lists to appliances over HTTP")
    s.add_argument("--lists", required=True, help="output directory of build")
    s.add_argument("--tokens", help="appliance token file (or --fleet)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8750)
    s.add_argument(
        "--telemetry-store",
        help="store URL (or SQLite path) for sensor telemetry (POST /v1/telemetry); "
        "without it the intake answers 503 (with --fleet: the fleet's store)",
    )
    s.add_argument(
        "--profiles-dir",
        help="firmware profiles the exports (GET /v1/export/...) are rendered with "
        "(default: the shipped firmware-profiles/)",
    )
    add_serve_options(s)
    s.set_defaults(func=cmd_serve)
    register_fleet_commands(sub)

    t = sub.add_parser("token", help="manage appliance tokens")
    tsub = t.add_subparsers(dest="token_command", required=True)
    ta = tsub.add_parser("add", help="register an appliance and print its token once")
    ta.add_argument("--tokens", required=True, help="appliance token file")
    ta.add_argument("--tenant", required=True)
    ta.add_argument("--profile", required=True, action="append", help="repeatable")
    ta.add_argument("--name", required=True, help="appliance name")
    ta.set_defaults(func=cmd_token_add)

    pr = sub.add_parser("profiles", help="list firmware profiles")
    pr.add_argument("--dir", help="profile directory (default: the shipped firmware-profiles/)")
    pr.add_argument("--json", action="store_true", help="every field and citation, as JSON")
    pr.set_defaults(func=cmd_profiles)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        rc: int = args.func(args)
    except DistributorError as e:
        print(f"stockade-distributor: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as e:  # a file or port we could not use: say which, no traceback
        print(f"stockade-distributor: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_ERROR
    with contextlib.suppress(BrokenPipeError):
        sys.stdout.flush()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
