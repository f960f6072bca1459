"""``stockade-sensor``: events, run, verify, enforce.

These spellings are a contract that scripts, systemd units and docs rely on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import signal
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import aiohttp

from blocklist.errors import BlocklistError, ListRejected, MalformedArtifact
from blocklist.trust import TrustPolicy

from .config import (
    ConfigError,
    DistributorConfig,
    Limits,
    SensorConfig,
    load_config,
    parse_listen,
)
from .decode import Decoder
from .doctor import add_doctor_parser
from .enforce import Enforcer, make_backend
from .errors import SensorError
from .events import Event
from .install import BackgroundInstaller
from .install import add_parser as add_install_parser
from .metrics import ListInfo, Metrics, start_metrics_server
from .pcapfile import Frame, iter_capture
from .pointer_updater import PointerUpdater
from .push_intake import PATH as PUSH_PATH
from .push_intake import PushIntake, load_push_token, start_push_intake
from .rootchain import load_saved_root, load_trust, root_path_for
from .sdnotify import Notifier, keep_alive
from .sinks import SinkSet, build_sinks
from .telemetry import Telemetry
from .updater import ListHolder, Updater

log = logging.getLogger("stockade.sensor")

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2
EXIT_MALFORMED = 3
STATE_LIST = "list.stockade"


def _json_default(o: object) -> Any:
    return str(o)


def _write_json(out: IO[str], obj: dict[str, Any]) -> None:
    out.write(json.dumps(obj, separators=(",", ":"), default=_json_default) + "\n")


# --- events -----------------------------------------------------------------------------


def cmd_events(args: argparse.Namespace) -> int:
    decoder = Decoder()
    counters: Counter[str] = decoder.counters
    out = sys.stdout
    for frame in iter_capture(args.pcap, counters):
        for event in decoder.decode(frame):
            _write_json(out, event.to_dict())
    _print_counters(counters, sys.stderr)
    return EXIT_OK


def _print_counters(counters: Counter[str], out: IO[str]) -> None:
    interesting = {k: v for k, v in sorted(counters.items()) if v}
    out.write("counters: " + json.dumps(interesting, sort_keys=True) + "\n")


# --- verify -----------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    policy = TrustPolicy(
        tenant=args.tenant,
        profile=args.profile,
        max_bundle_bytes=args.max_bytes,
        max_version_jump=args.max_version_jump,
    )
    state = load_trust(args.trust, policy)  # root.pub or a signed root.stockade
    if args.state_dir:
        saved = Path(args.state_dir) / STATE_LIST
        if saved.exists():
            try:
                state.restore(saved.read_bytes())
            except BlocklistError as e:
                print(
                    f"warning: saved list {saved} unusable ({e}); checking without it",
                    file=sys.stderr,
                )
    try:
        data = Path(args.list).read_bytes()
    except OSError as e:
        print(f"REJECTED (unreadable): {args.list}: {e.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.held_version:
            state.floor_version = args.held_version
        verified = state.check(data)
        verified.blocklist  # noqa: B018 - verify decodes and checks every row, as a sensor may later
    except MalformedArtifact as e:
        print(f"REJECTED ({type(e).__name__}): {e}", file=sys.stderr)
        return EXIT_MALFORMED
    except ListRejected as e:
        print(f"REJECTED ({type(e).__name__}): {e}", file=sys.stderr)
        return EXIT_REJECTED
    h = verified.header
    counts = ", ".join(f"{n} {t}" for t, n in sorted(h.counts.items())) or "no entries"
    print(
        f"OK: tenant {h.tenant}, profile {h.profile}, version {h.version}, {counts}; "
        f"created {h.created.isoformat()}, expires {h.expires.isoformat()}; "
        f"signed by {', '.join(k[:16] for k in verified.signed_by)} "
        f"(keyring v{verified.keyring.version}); {verified.size} bytes"
    )
    return EXIT_OK


# --- run --------------------------------------------------------------------------------


def _install_reopen(sinks: SinkSet) -> Callable[[], None]:
    """SIGHUP (logrotate's postrotate) reopens alert files. The handler only sets a flag; the
    next alert reopens from the main loop. Returns a function restoring the old handler."""

    def on_hup(signum: int, frame: FrameType | None) -> None:
        sinks.request_reopen()

    previous = signal.signal(signal.SIGHUP, on_hup)

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore


def _merge(cfg: SensorConfig, args: argparse.Namespace) -> SensorConfig:
    dist = cfg.distributor
    if args.distributor:
        dist = replace(dist, url=args.distributor)
    if args.token_file:
        dist = replace(dist, token_file=args.token_file)
    if args.interval:
        dist = replace(dist, interval_seconds=args.interval)
    limits = cfg.limits
    if args.max_bytes:
        limits = replace(limits, max_list_bytes=args.max_bytes)
    return replace(
        cfg,
        tenant=args.tenant or cfg.tenant,
        profile=args.profile or cfg.profile,
        trust=args.trust or cfg.trust,
        state_dir=args.state_dir or cfg.state_dir,
        interface=args.interface or cfg.interface,
        metrics=args.metrics or cfg.metrics,
        alerts=args.alerts or cfg.alerts,
        distributor=dist,
        limits=limits,
    )


def _token(args: argparse.Namespace, dist: DistributorConfig) -> str | None:
    if args.token:
        return str(args.token)
    if dist.token_file:
        try:
            return Path(dist.token_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read token file {dist.token_file}: {e.strerror}") from e
    return None


def _process(
    frames: Iterable[Frame],
    decoder: Decoder,
    holder: ListHolder,
    sink: SinkSet,
    stats: Counter[str],
    enforcer: Enforcer | None = None,
    telemetry: Telemetry | None = None,
) -> None:
    # ``_handle`` with the loop in the decoder, which yields only frames that completed events
    # (with a prefilter, events that might match; without one, as telemetry needs, all of them)
    for events in decoder.decode_frames(frames):
        _match(events, holder, sink, stats, None, enforcer, telemetry)


def _handle(
    frame: Frame,
    decoder: Decoder,
    holder: ListHolder,
    sink: SinkSet,
    stats: Counter[str],
    metrics: Metrics | None = None,
    enforcer: Enforcer | None = None,
    telemetry: Telemetry | None = None,
) -> None:
    _match(decoder.decode(frame), holder, sink, stats, metrics, enforcer, telemetry)


def _match(
    events: list[Event],
    holder: ListHolder,
    sink: SinkSet,
    stats: Counter[str],
    metrics: Metrics | None = None,
    enforcer: Enforcer | None = None,
    telemetry: Telemetry | None = None,
) -> None:
    if telemetry is not None:
        for event in events:
            telemetry.observe_event(event)  # passive DNS: every answer, matched or not
    matcher = holder.matcher  # one read: a swap mid-frame cannot mix two lists
    if matcher is None:
        return
    for event in events:
        for alert in matcher.match(event):
            stats[f"alerts.{alert.matched_on}"] += 1
            if metrics is not None:
                metrics.alert(alert.matched_on, alert.entry.category, alert.entry.action.label)
            sink.emit(alert)
            if enforcer is not None:
                enforcer.on_alert(alert)
            if telemetry is not None:
                telemetry.observe_alert(alert)


def _list_info(holder: ListHolder) -> ListInfo:
    verified = holder.state.current
    if verified is None or holder.matcher is None:
        return ListInfo()
    h = verified.header
    return ListInfo(
        version=h.version,
        entries=sum(h.counts.values()),
        created=h.created.timestamp(),
        expires=h.expires.timestamp(),
        stale=holder.state.is_stale(),
    )


def cmd_run(args: argparse.Namespace) -> int:
    cfg = load_config(Path(args.config)) if args.config else SensorConfig()
    cfg = _merge(cfg, args)
    load_trust(cfg.trust)  # a bad root is reported before anything else
    if (cfg.distributor.url or cfg.distributor.pointer_url) and not (cfg.tenant and cfg.profile):
        raise ConfigError("--tenant and --profile are required with --distributor")
    pulls = cfg.distributor.url or cfg.distributor.pointer_url
    if not args.list and not pulls and not cfg.state_dir:
        raise ConfigError(
            "give --list FILE, or --distributor URL with a token, or a --state-dir holding a list"
        )
    if not args.pcap and not cfg.interface:
        raise ConfigError("give --pcap FILE to replay a capture or --interface IF to sniff live")
    policy = cfg.trust_policy()
    state = load_trust(cfg.trust, policy)
    store = Path(cfg.state_dir) / STATE_LIST if cfg.state_dir else None
    holder = ListHolder(state, store)
    installer = BackgroundInstaller(cfg.install) if cfg.install is not None else None
    if installer is not None:  # [install]: each list put in force goes into the resolver too
        holder.on_swap.append(installer.submit)
    if store is not None:  # the newest root an earlier run fetched, before the saved list
        load_saved_root(state, root_path_for(store), holder.counters)
    holder.load_saved()
    if args.list:
        try:
            data = Path(args.list).read_bytes()
            if holder.holds(data):  # the saved list itself: accepting it again is a "rollback"
                log.info("list %s is the saved list already in force", args.list)
            else:
                v = holder.accept(data)
                log.info(
                    "loaded list %s version %d (%d entries)",
                    args.list,
                    v.header.version,
                    len(v.compact),
                )
        except (BlocklistError, OSError) as e:
            log.error("list %s refused: %s: %s", args.list, type(e).__name__, e)
    token = _token(args, cfg.distributor)
    updater: Updater | PointerUpdater | None = None
    if cfg.distributor.pointer_url:  # static mode: a publish directory behind nginx or a CDN
        updater = PointerUpdater(
            holder,
            cfg.distributor.pointer_url,
            timeout_seconds=cfg.distributor.timeout_seconds,
            token=token,
        )
    elif cfg.distributor.url:
        if not token:
            raise ConfigError(
                "a distributor needs a token (--token, --token-file or distributor.token_file)"
            )
        assert cfg.tenant and cfg.profile
        updater = Updater(
            holder,
            cfg.distributor.url,
            token,
            cfg.tenant,
            cfg.profile,
            timeout_seconds=cfg.distributor.timeout_seconds,
            root_path=root_path_for(store) if store is not None else None,
            follow_roots=True,
        )
    telemetry = None
    if cfg.telemetry is not None and cfg.telemetry.enabled:
        if not (cfg.distributor.url and token and cfg.state_dir):
            raise ConfigError(
                "[telemetry] needs a distributor URL, a token and a state directory "
                "(it spools batches there while the distributor is unreachable)"
            )
        try:
            telemetry = Telemetry(cfg.telemetry, Path(cfg.state_dir), cfg.distributor.url, token)
        except OSError as e:
            raise ConfigError(f"telemetry state in {cfg.state_dir}: {e.strerror or e}") from e
    push_token = load_push_token(cfg.push.token_file) if cfg.push.listen else None
    sink = build_sinks(cfg.alerts, cfg.alert_sinks)
    restore = _install_reopen(sink)
    decoder = Decoder()
    if telemetry is not None and telemetry.config.passive_dns:
        # passive DNS records every answer: the decoder must build them all
        log.info("telemetry passive_dns is on: every event is built (no prefilter)")
    else:
        holder.attach(decoder)  # the list in force is the decoder's prefilter (sensor.fastpath)
    stats: Counter[str] = Counter()
    enforcer = None
    if cfg.enforce.enabled:
        enforcer = Enforcer(cfg.enforce, background=True)  # the capture never waits for it
        if enforcer.start():
            enforcer.sync(holder.matcher)
    try:
        if args.pcap:
            return asyncio.run(
                _run_pcap(args.pcap, updater, decoder, holder, sink, stats, enforcer, telemetry)
            )
        assert cfg.interface
        return asyncio.run(
            _run_live(cfg, updater, decoder, holder, sink, stats, enforcer, telemetry, push_token)
        )
    finally:
        if installer is not None:
            installer.close()
        if enforcer is not None:
            enforcer.close()  # on every way out: SIGTERM, an error, the end of a capture
            log.info("enforce: %s", json.dumps(enforcer.snapshot(), sort_keys=True))
        restore()
        sink.close()
        for name, value in sink.counters().items():
            if ".sent" not in name:
                log.warning("%s: %d", name, value)


async def _run_pcap(
    pcap: str,
    updater: Updater | PointerUpdater | None,
    decoder: Decoder,
    holder: ListHolder,
    sink: SinkSet,
    stats: Counter[str],
    enforcer: Enforcer | None = None,
    telemetry: Telemetry | None = None,
) -> int:
    if updater is not None:
        async with aiohttp.ClientSession() as session:
            result = await updater.fetch_once(session)
        level = logging.INFO if result.status in ("updated", "not_modified") else logging.WARNING
        log.log(level, "list update from distributor: %s %s", result.status, result.reason)
    if holder.matcher is None:
        log.error("no valid list to enforce: decoding only, no alerts")
    elif holder.state.is_stale():
        log.warning("STALE: the list in force has expired; still enforcing it")
    if enforcer is not None:
        enforcer.sync(holder.matcher)  # the list the distributor just sent
    notifier = Notifier()  # Type=notify: a replay is "ready" once its list is in force
    notifier.ready(f"replaying {pcap}, list version {holder.version}")
    _process(
        iter_capture(pcap, decoder.counters), decoder, holder, sink, stats, enforcer, telemetry
    )
    # what the end of the capture completes
    _match(decoder.flush(), holder, sink, stats, None, enforcer, telemetry)
    sink.close()  # drain network queues (bounded) so the summary says what was delivered
    if enforcer is not None:
        enforcer.drain()  # the summary counts every change the replay asked for
    if telemetry is not None:  # spool what the replay saw, then send what the spool holds
        telemetry.flush()
        async with aiohttp.ClientSession() as session:
            await telemetry.send_pending(session)
    summary = {
        "list_version": holder.version,
        "alerts": sink.count,
        **{k: v for k, v in sorted(stats.items())},
        **sink.counters(),
        **{k: v for k, v in sorted(decoder.counters.items()) if v},
        **{k: v for k, v in sorted(holder.counters.items()) if v},
        **(enforcer.snapshot() if enforcer is not None else {}),
        **({k: v for k, v in telemetry.counters.items() if v} if telemetry is not None else {}),
    }
    print("summary: " + json.dumps(summary, sort_keys=True), file=sys.stderr)
    notifier.stopping()
    notifier.close()
    return EXIT_OK


async def _run_live(
    cfg: SensorConfig,
    updater: Updater | PointerUpdater | None,
    decoder: Decoder,
    holder: ListHolder,
    sink: SinkSet,
    stats: Counter[str],
    enforcer: Enforcer | None = None,
    telemetry: Telemetry | None = None,
    push_token: str | None = None,
) -> int:
    from .live import LiveCapture  # only live mode needs AF_PACKET and libpcap

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # On the loop, not in a raw handler: reopen now, even if no alert comes for hours.
    loop.add_signal_handler(signal.SIGHUP, sink.reopen)
    tasks: list[asyncio.Task[None]] = []
    if updater is not None:
        tasks.append(asyncio.create_task(updater.run(cfg.distributor.interval_seconds, stop)))
    if enforcer is not None:
        tasks.append(
            asyncio.create_task(
                _enforce_ticks(enforcer, holder, cfg.enforce.sweep_interval_seconds, stop)
            )
        )
    if telemetry is not None:  # flushes, spools and sends until stop; spools what is left
        tasks.append(asyncio.create_task(telemetry.run(stop)))
    assert cfg.interface
    with LiveCapture(cfg.interface, reopen=True) as cap:
        log.info("capturing on %s", cfg.interface)
        metrics_runner = None
        metrics: Metrics | None = None
        if cfg.metrics:
            metrics = Metrics(
                decoder_counters=lambda: decoder.counters,
                list_info=lambda: _list_info(holder),
                capture_stats=lambda: dataclasses.asdict(cap.stats),
                sink_stats=lambda: [(k.name, *k.stats.snapshot()) for k in sink.sinks],
                enforce_stats=enforcer.snapshot if enforcer is not None else None,
            )
            if updater is not None:
                updater.on_result = metrics.update_result
            host, port = parse_listen(cfg.metrics)
            metrics_runner = await start_metrics_server(metrics, host, port)
            log.info("metrics on http://%s:%d/metrics", host, port)
        push_runner = None
        if cfg.push.listen and push_token:
            host, port = parse_listen(cfg.push.listen)
            push_runner = await start_push_intake(PushIntake(holder, push_token), host, port)
            log.info("push intake on http://%s:%d%s", host, port, PUSH_PATH)
        # systemd (Type=notify): ready once the list is loaded and the capture is open
        notifier = Notifier()
        notifier.ready(f"capturing on {cfg.interface}, list version {holder.version}")
        tasks.append(asyncio.create_task(keep_alive(notifier, stop)))
        frames = cap.frames()
        while not stop.is_set():
            nxt = asyncio.ensure_future(anext(frames))
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            if nxt not in done:
                nxt.cancel()
                break
            try:
                frame = nxt.result()
            except StopAsyncIteration:
                break
            _handle(frame, decoder, holder, sink, stats, metrics, enforcer, telemetry)
        notifier.stopping("stopping")
        _match(decoder.flush(), holder, sink, stats, metrics, enforcer, telemetry)
        stats_line = cap.stats
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        if push_runner is not None:
            await push_runner.cleanup()
    stop.set()
    for t in tasks:
        await t
    loop.remove_signal_handler(signal.SIGHUP)  # that leaves SIG_DFL (exit): flag handler again
    _install_reopen(sink)
    log.info("stopped: %s alerts; capture %s; sinks %s", sink.count, stats_line, sink.counters())
    notifier.close()
    return EXIT_OK


async def _enforce_ticks(
    enforcer: Enforcer, holder: ListHolder, interval_seconds: float, stop: asyncio.Event
) -> None:
    """Pick up list swaps the updater made and remove expired routes, until ``stop``."""
    while not stop.is_set():
        enforcer.tick(holder.matcher)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_seconds)


# --- enforce ----------------------------------------------------------------------------


def cmd_enforce(args: argparse.Namespace) -> int:
    """List or flush what Stockade installed: both backends, whichever one is configured, so
    a backend switched between runs leaves nothing behind."""
    cfg = load_config(Path(args.config)) if args.config else SensorConfig()
    enf = cfg.enforce
    if args.flush and args.on_stop and enf.keep_on_stop:
        print("enforce.keep_on_stop is true: leaving everything installed")
        return EXIT_OK
    backends = [
        make_backend(enf),
        make_backend(replace(enf, backend="route" if enf.backend == "nftables" else "nftables")),
    ]
    failed = 0
    for i, backend in enumerate(backends):
        configured = i == 0
        try:
            if args.flush:
                n = backend.flush()
                print(f"flushed {n} {backend.name} elements")
            else:
                for line in backend.listing():
                    print(line)
        except SensorError as e:
            if configured:
                print(f"stockade-sensor: enforce ({backend.name}): {e}", file=sys.stderr)
                failed += 1
            else:  # e.g. nft not installed on a route-only box: nothing of ours can be there
                log.debug("enforce (%s, not configured): %s", backend.name, e)
        finally:
            backend.close()
    return EXIT_REJECTED if failed else EXIT_OK


# --- entry point ------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    """A limit from the command line: 0 or less would refuse every list (or crash later)."""
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from e
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stockade-sensor", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("events", help="decode a capture and print one JSON event per line")
    e.add_argument("--pcap", required=True, help="pcap or pcapng file")
    e.set_defaults(func=cmd_events)

    r = sub.add_parser("run", help="match traffic against a signed list and write alerts")
    r.add_argument("--config", help="sensor TOML config (flags override it)")
    r.add_argument("--list", help="a signed list file to enforce")
    r.add_argument("--distributor", help="distributor base URL to pull lists from")
    r.add_argument("--token", help="appliance token (prefer --token-file: argv is visible to ps)")
    r.add_argument("--token-file", help="file holding the appliance token")
    r.add_argument("--trust", help="pinned root public key (PEM)")
    r.add_argument("--tenant")
    r.add_argument("--profile")
    r.add_argument("--state-dir", help="where the last good list is kept")
    r.add_argument("--pcap", help="replay this capture, then exit")
    r.add_argument("--interface", help="sniff this interface live")
    r.add_argument(
        "--alerts",
        help="alert output file (JSON lines), '-' for stdout; reopened on SIGHUP. "
        "Syslog and CEF sinks are [[alert_sinks]] in --config",
    )
    r.add_argument(
        "--interval", type=_positive_seconds, help="seconds between list updates (live mode)"
    )
    r.add_argument("--max-bytes", type=_positive_int, help="largest list accepted")
    r.add_argument(
        "--metrics",
        metavar="HOST:PORT",
        help="serve Prometheus metrics on GET /metrics there (live mode), e.g. 127.0.0.1:9750",
    )
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("verify", help="check a signed list as this sensor would")
    v.add_argument("list", help="signed list file")
    v.add_argument("--trust", required=True, help="pinned root public key (PEM)")
    v.add_argument("--tenant")
    v.add_argument("--profile")
    v.add_argument("--state-dir", help="compare against the list held in this state dir")
    v.add_argument("--held-version", type=_positive_int, help="refuse versions not newer than this")
    v.add_argument("--max-bytes", type=_positive_int, default=Limits().max_list_bytes)
    v.add_argument("--max-version-jump", type=_positive_int)
    v.set_defaults(func=cmd_verify)

    n = sub.add_parser(
        "enforce", help="list or remove the routes / nftables sets Stockade installed"
    )
    n.add_argument("--config", help="sensor TOML config (its [enforce] table)")
    what = n.add_mutually_exclusive_group(required=True)
    what.add_argument("--flush", action="store_true", help="remove everything Stockade installed")
    what.add_argument("--list", action="store_true", help="show everything Stockade installed")
    n.add_argument(
        "--on-stop",
        action="store_true",
        help="as systemd's ExecStopPost: with --flush, do nothing when enforce.keep_on_stop is true",
    )
    n.set_defaults(func=cmd_enforce)

    add_doctor_parser(sub)
    add_install_parser(sub)  # install-into
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        rc: int = args.func(args)
    except ConfigError as e:
        print(f"stockade-sensor: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SensorError as e:
        print(f"stockade-sensor: error: {e}", file=sys.stderr)
        return EXIT_REJECTED
    except KeyboardInterrupt:
        return EXIT_REJECTED
    return rc


def _now() -> datetime:
    return datetime.now(UTC)


if __name__ == "__main__":
    raise SystemExit(main())
