"""Prometheus metrics: what an operator graphs and alerts on for a fleet of sensors.

Text exposition format 0.0.4, served on ``GET /metrics`` by a small aiohttp app bound to a
configured address (loopback by default: metrics say which names were seen blocked, so they
are not for the whole network). Nothing is computed on the packet path: ``Metrics`` reads the
decoder's counters, the alert counts and the list holder when scraped.

Metric names (all ``stockade_sensor_``):

``packets_total``, ``events_total{kind}``, ``alerts_total{matched_on,category,action}``,
``decode_drops_total{class,reason}`` (``class`` is malformed/skipped/partial/flows/error;
the reasons are the fixed counter names of ``sensor.counters``, never packet data),
``kernel_drops_total``, ``capture_received_total``, ``capture_reopens_total``,
``list_version``, ``list_entries``, ``list_created_timestamp_seconds``, ``list_age_seconds``,
``list_expires_timestamp_seconds``, ``list_stale`` (0/1), ``list_loaded`` (0/1),
``update_last_timestamp_seconds``, ``update_last_result{result}`` (1 for the last result, 0 for
the others), ``update_results_total{result}``,
``sink_messages_total{sink,outcome,reason}`` (outcome sent, dropped or error), and with
enforcement on ``enforce_total{what}`` (added, removed, expired, refused.<reason> ...) and
``enforce_held{kind}`` (static, dynamic, quarantine).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

from .counters import CATEGORIES

__all__ = [
    "CONTENT_TYPE",
    "ListInfo",
    "Metrics",
    "escape_label",
    "render",
    "start_metrics_server",
]

log = logging.getLogger("stockade.sensor.metrics")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
PREFIX: Final = "stockade_sensor_"
UPDATE_RESULTS: Final = ("updated", "not_modified", "rejected", "failed")
_DROP_CLASSES: Final = tuple(c for c in CATEGORIES if c not in ("packets", "events"))


def escape_label(value: str) -> str:
    """A label value as the exposition format wants it: backslash, quote, newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


@dataclass(frozen=True, slots=True)
class Sample:
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(slots=True)
class Family:
    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append(Sample(tuple(sorted(labels.items())), value))


def render(families: Iterable[Family]) -> str:
    """The exposition text: HELP and TYPE once per family, then its samples, sorted."""
    lines: list[str] = []
    for fam in families:
        name = PREFIX + fam.name
        lines.append(f"# HELP {name} {fam.help.replace(chr(92), chr(92) * 2)}")
        lines.append(f"# TYPE {name} {fam.kind}")
        for s in sorted(fam.samples, key=lambda s: s.labels):
            if s.labels:
                inner = ",".join(f'{k}="{escape_label(v)}"' for k, v in s.labels)
                lines.append(f"{name}{{{inner}}} {_number(s.value)}")
            else:
                lines.append(f"{name} {_number(s.value)}")
    return "\n".join(lines) + "\n"


#: (sink name, messages sent, dropped by reason, errors by reason)
SinkCounts = tuple[str, int, Mapping[str, int], Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class ListInfo:
    """What the scrape says about the list in force (None fields: no list loaded)."""

    version: int | None = None
    entries: int | None = None
    created: float | None = None  # POSIX seconds
    expires: float | None = None
    stale: bool = False


class Metrics:
    """Counts fed by the run loop (alerts, update results, sink errors) plus readers for the
    state it already keeps (decoder counters, capture stats, the list in force)."""

    def __init__(
        self,
        *,
        decoder_counters: Callable[[], Mapping[str, int]],
        list_info: Callable[[], ListInfo],
        capture_stats: Callable[[], Mapping[str, int]] | None = None,
        sink_stats: Callable[[], Iterable[SinkCounts]] | None = None,
        enforce_stats: Callable[[], Mapping[str, int]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._decoder_counters = decoder_counters
        self._list_info = list_info
        self._capture_stats = capture_stats
        self._sink_stats = sink_stats
        self._enforce_stats = enforce_stats
        self._clock = clock
        self.alerts: Counter[tuple[str, str, str]] = Counter()
        self.update_results: Counter[str] = Counter()
        self.last_update: tuple[str, float] | None = None

    # fed by the run loop

    def alert(self, matched_on: str, category: str, action: str) -> None:
        self.alerts[(matched_on, category, action)] += 1

    def update_result(self, result: str) -> None:
        self.update_results[result] += 1
        self.last_update = (result, self._clock())

    # scraped

    def families(self) -> list[Family]:
        counters = dict(self._decoder_counters())
        packets = Family("packets_total", "counter", "Frames given to the decoder.")
        packets.add(counters.get("packets", 0))
        events = Family("events_total", "counter", "Decoded events by kind.")
        drops = Family(
            "decode_drops_total",
            "counter",
            "Packets, messages or streams skipped or cut, by class and reason.",
        )
        for name, value in sorted(counters.items()):
            head, _, rest = name.partition(".")
            if head == "events" and rest:
                events.add(value, kind=rest)
            elif head in _DROP_CLASSES:
                drops.add(value, **{"class": head, "reason": rest or head})
        alerts = Family("alerts_total", "counter", "Alerts by what matched, category, action.")
        for (matched_on, category, action), n in sorted(self.alerts.items()):
            alerts.add(n, matched_on=matched_on, category=category, action=action)
        out = [packets, events, drops, alerts]

        capture = dict(self._capture_stats()) if self._capture_stats is not None else {}
        for key, name, text in (
            ("kernel_drops", "kernel_drops_total", "Frames the kernel dropped (socket full)."),
            ("received", "capture_received_total", "Frames that passed the kernel filter."),
            ("reopens", "capture_reopens_total", "Times the capture socket was reopened."),
        ):
            fam = Family(name, "counter", text)
            fam.add(capture.get(key, 0))
            out.append(fam)

        info = self._list_info()
        now = self._clock()
        loaded = Family("list_loaded", "gauge", "1 when a verified list is in force.")
        loaded.add(1 if info.version is not None else 0)
        out.append(loaded)
        if info.version is not None:
            gauges: tuple[tuple[str, float | None, str], ...] = (
                ("list_version", info.version, "Version of the list in force."),
                ("list_entries", info.entries, "Entries of the list in force."),
                ("list_created_timestamp_seconds", info.created, "When the list was built."),
                ("list_expires_timestamp_seconds", info.expires, "When the list expires."),
                (
                    "list_age_seconds",
                    None if info.created is None else max(0.0, now - info.created),
                    "Seconds since the list in force was built.",
                ),
                (
                    "list_stale",
                    1 if info.stale else 0,
                    "1 when the list in force is stale (expired, or older than stale_after_hours).",
                ),
            )
            for name, reading, text in gauges:
                if reading is not None:
                    fam = Family(name, "gauge", text)
                    fam.add(reading)
                    out.append(fam)

        results = Family("update_results_total", "counter", "List update attempts by result.")
        last = Family("update_last_result", "gauge", "1 for the result of the last update.")
        for result in sorted({*UPDATE_RESULTS, *self.update_results}):
            results.add(self.update_results.get(result, 0), result=result)
            if self.last_update is not None:
                last.add(1 if self.last_update[0] == result else 0, result=result)
        out.append(results)
        if self.last_update is not None:
            out.append(last)
            when = Family("update_last_timestamp_seconds", "gauge", "When the last update ran.")
            when.add(self.last_update[1])
            out.append(when)

        sinks = Family(
            "sink_messages_total", "counter", "Alert messages by sink: sent, dropped, error."
        )
        for name, sent, dropped, errors in self._sink_stats() if self._sink_stats else ():
            sinks.add(sent, sink=name, outcome="sent", reason="")
            for outcome, table in (("dropped", dropped), ("error", errors)):
                for reason, n in table.items():
                    sinks.add(n, sink=name, outcome=outcome, reason=reason)
        out.append(sinks)
        if self._enforce_stats is not None:
            changes = Family("enforce_total", "counter", "Enforcement changes by what happened.")
            held = Family("enforce_held", "gauge", "Addresses and prefixes enforced, by kind.")
            for name, n in sorted(self._enforce_stats().items()):
                what = name.removeprefix("enforce.")
                if what.startswith("held."):
                    held.add(n, kind=what.removeprefix("held."))
                else:
                    changes.add(n, what=what)
            out += [changes, held]
        return out

    def render(self) -> str:
        return render(self.families())


async def start_metrics_server(metrics: Metrics, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``host:port`` (port 0: any free port); stop with
    ``await runner.cleanup()``. A scrape that fails is answered 500 and logged, never
    raised into the sensor."""

    async def handle(_request: web.Request) -> web.Response:
        try:
            body = metrics.render()
        except Exception:  # a scrape must never take the sensor down
            log.exception("metrics scrape failed")
            return web.Response(status=500, text="metrics unavailable\n")
        return web.Response(body=body.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner listens on (after ``port=0``)."""
    for site in runner.sites:
        server = getattr(site, "_server", None)
        for sock in getattr(server, "sockets", None) or ():
            return int(sock.getsockname()[1])
    raise RuntimeError("metrics server is not listening")
