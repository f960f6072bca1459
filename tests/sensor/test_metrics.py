"""Prometheus metrics: a real decoder and matcher feed them, a strict reading of the text
exposition format checks every line, and a scrape over loopback gets the same text."""

from __future__ import annotations

import re

import aiohttp
import pytest
from scapy.layers.inet import IP, UDP

from blocklist.artifact import Action, Entry, EntryType
from blocklist.index import Index
from sensor.decode import Decoder
from sensor.match import Matcher
from sensor.metrics import (
    CONTENT_TYPE,
    ListInfo,
    Metrics,
    bound_port,
    escape_label,
    start_metrics_server,
)

from .builders import CLIENT, SERVER, dns_query, eth, udp_dns

NOW = 1_800_000_000.0
EVIL = Entry(EntryType.DOMAIN, "evil.com", Action.BLOCK, 200, 'mal"ware\nx', ("feed-a",))

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_SAMPLE = re.compile(
    rf"^(?P<name>{_NAME})(?:\{{(?P<labels>{_NAME}={_VALUE}(?:,{_NAME}={_VALUE})*)\}})? "
    r"(?P<value>-?[0-9.e+-]+|NaN|[+-]Inf)$"
)


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample by family and labels; fails on any line the format does not allow."""
    assert text.endswith("\n")
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            assert name not in typed, f"TYPE twice for {name}"
            typed.add(name)
            families[name] = {}
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name = m["name"]
        assert name in typed, f"sample before its TYPE: {line!r}"
        labels = tuple((k, v) for k, v in re.findall(rf"({_NAME})=({_VALUE})", m["labels"] or ""))
        assert labels not in families[name], f"duplicate sample {line!r}"
        families[name][labels] = float(m["value"])
    return families


def label(k: str, v: str) -> tuple[str, str]:
    return (k, '"' + escape_label(v) + '"')


@pytest.fixture
def fed() -> tuple[Metrics, Decoder]:
    decoder = Decoder()
    matcher = Matcher(Index([EVIL]), 9)
    metrics = Metrics(
        decoder_counters=lambda: decoder.counters,
        list_info=lambda: ListInfo(version=9, entries=1, created=NOW - 90, expires=NOW + 10),
        capture_stats=lambda: {"kernel_drops": 3, "received": 40, "reopens": 1},
        sink_stats=lambda: [("siem", 5, {"queue_full": 2}, {"connection refused": 1})],
        enforce_stats=lambda: {
            "enforce.added": 4,
            "enforce.refused.loopback": 1,
            "enforce.held.static": 3,
        },
        clock=lambda: NOW,
    )
    frames = [
        eth(udp_dns(dns_query("www.evil.com"))),
        eth(udp_dns(dns_query("benign.org"))),
        eth(IP(src=CLIENT, dst=SERVER) / UDP(sport=4000, dport=53) / b"\x00\x01"),  # short DNS
    ]
    for frame in frames:
        for event in decoder.decode(frame):
            for alert in matcher.match(event):
                metrics.alert(alert.matched_on, alert.entry.category, alert.entry.action.label)
    metrics.update_result("failed")
    metrics.update_result("updated")
    return metrics, decoder


def test_every_line_is_valid_exposition_and_counts_are_the_decoders(
    fed: tuple[Metrics, Decoder],
) -> None:
    metrics, decoder = fed
    got = parse(metrics.render())
    assert got["stockade_sensor_packets_total"][()] == 3
    assert got["stockade_sensor_events_total"][(label("kind", "dns_query"),)] == 2
    drops = {
        (dict(k)["class"].strip('"'), dict(k)["reason"].strip('"')): v
        for k, v in got["stockade_sensor_decode_drops_total"].items()
    }
    expected = {
        tuple(name.split(".", 1)): n
        for name, n in decoder.counters.items()
        if name.split(".")[0] in ("malformed", "skipped", "partial", "flows", "error")
    }
    assert drops == expected
    assert any(cls == "malformed" for cls, _ in drops)  # the short DNS message
    hostile = (
        label("action", "block"),
        label("category", 'mal"ware\nx'),
        label("matched_on", "dns_query_name"),
    )
    assert got["stockade_sensor_alerts_total"] == {hostile: 1}
    assert got["stockade_sensor_kernel_drops_total"][()] == 3
    assert got["stockade_sensor_list_version"][()] == 9
    assert got["stockade_sensor_list_age_seconds"][()] == 90
    assert got["stockade_sensor_list_stale"][()] == 0
    last = got["stockade_sensor_update_last_result"]
    assert last[(label("result", "updated"),)] == 1
    assert last[(label("result", "failed"),)] == 0
    assert got["stockade_sensor_update_results_total"][(label("result", "failed"),)] == 1
    assert got["stockade_sensor_update_last_timestamp_seconds"][()] == NOW
    assert got["stockade_sensor_enforce_total"] == {
        (label("what", "added"),): 4,
        (label("what", "refused.loopback"),): 1,
    }
    assert got["stockade_sensor_enforce_held"] == {(label("kind", "static"),): 3}
    sinks = got["stockade_sensor_sink_messages_total"]
    assert sinks == {
        (label("outcome", "sent"), label("reason", ""), label("sink", "siem")): 5,
        (label("outcome", "dropped"), label("reason", "queue_full"), label("sink", "siem")): 2,
        (
            label("outcome", "error"),
            label("reason", "connection refused"),
            label("sink", "siem"),
        ): 1,
    }


def test_no_list_loaded_says_so_without_list_gauges() -> None:
    metrics = Metrics(decoder_counters=dict, list_info=ListInfo)
    got = parse(metrics.render())
    assert got["stockade_sensor_list_loaded"][()] == 0
    assert "stockade_sensor_list_version" not in got
    assert "stockade_sensor_update_last_result" not in got  # no update ran yet


def test_escaping() -> None:
    assert escape_label('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


async def test_scrape_over_loopback(fed: tuple[Metrics, Decoder]) -> None:
    metrics, _ = fed
    runner = await start_metrics_server(metrics, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{bound_port(runner)}/metrics"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"] == CONTENT_TYPE
                body = await resp.text()
            async with session.get(url.replace("/metrics", "/other")) as resp:
                assert resp.status == 404
        assert parse(body) == parse(metrics.render())
    finally:
        await runner.cleanup()


async def test_a_failing_scrape_is_a_500_and_the_server_keeps_serving() -> None:
    calls = {"n": 0}

    def flaky() -> ListInfo:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("holder mid-swap")
        return ListInfo(version=1, entries=0, created=NOW, expires=NOW + 1)

    metrics = Metrics(decoder_counters=dict, list_info=flaky, clock=lambda: NOW)
    runner = await start_metrics_server(metrics, "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{bound_port(runner)}/metrics"
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 500
            async with session.get(url) as resp:
                assert resp.status == 200
                assert parse(await resp.text())["stockade_sensor_list_version"][()] == 1
    finally:
        await runner.cleanup()
