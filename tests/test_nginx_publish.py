"""A real nginx serving a publish directory to a sensor in static mode (ADR 0003 section 4).

The distributor publishes with ``build_and_publish``; nginx (Debian package, started by
``tests.nginx``) serves OUT as plain files; the sensor's ``PointerUpdater`` pulls v1, gets
a 304 for the unchanged pointer, then v2 through the new pointer and its object.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from blocklist.pointer import Pointer, PointerFile
from blocklist.signing import PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import publish
from distributor.build import BuildResult, Capacity, build_and_publish
from distributor.indicators import Indicator, IndicatorType
from distributor.keys import ROOT_PUB, OnlineKeys, keygen
from sensor.cli import EXIT_OK
from sensor.cli import main as sensor_main
from sensor.pointer_updater import PointerUpdater
from sensor.updater import ListHolder, UpdateResult
from tests.nginx import Nginx, serve

NOW = datetime.now(UTC).replace(microsecond=0)
CAP = Capacity(frozenset(t.value for t in IndicatorType), {}, 1_000_000, 64 * 1024 * 1024, {})
POINTER_URI = f"/acme/p/{publish.POINTER}"


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def nginx(out: Path) -> Iterator[Nginx]:
    with serve(out) as server:
        yield server


def build(out: Path, keys: OnlineKeys, *hosts: str) -> BuildResult:
    inds = [Indicator(IndicatorType.HOST, h, "feed", 1, "malware", 50, False, None) for h in hosts]
    return build_and_publish(
        parsed=[(inds, "vendor")],
        feed_reports=[],
        cap=CAP,
        tenant="acme",
        profile="p",
        keys=keys,
        out=out,
        valid_for=timedelta(days=7),
        now=NOW,
    )


def lists_log(nginx: Nginx) -> list[tuple[int, str, str]]:
    """The access log without the root checks (a 404 for the next root on every poll)."""
    log = nginx.access_log()
    roots = [entry for entry in log if entry[1].startswith("/roots/")]
    assert roots and all(entry[:2] == (404, "/roots/1.root.stockade") for entry in roots)
    return [entry for entry in log if not entry[1].startswith("/roots/")]


def pointer_of(out: Path) -> Pointer:
    pf = PointerFile.from_bytes((out / "acme" / "p" / publish.POINTER).read_bytes())
    return Pointer.from_bytes(pf.pointer.payload)


async def test_sensor_follows_nginx_served_pointer_v1_304_v2(
    nginx: Nginx, out: Path, tmp_path: Path
) -> None:
    keygen(tmp_path / "keys", now=NOW - timedelta(days=1))
    keys = OnlineKeys.load(tmp_path / "keys", now=NOW)
    r1 = build(out, keys, "a.example")
    root = PublicKey.from_pem((tmp_path / "keys" / ROOT_PUB).read_bytes())
    state = TrustedListState([root], TrustPolicy(tenant="acme", profile="p"))
    (tmp_path / "state").mkdir()
    holder = ListHolder(state, tmp_path / "state" / "list.stockade")
    updater = PointerUpdater(holder, f"{nginx.base_url}{POINTER_URI}", timeout_seconds=10)
    async with aiohttp.ClientSession() as session:
        assert await updater.fetch_once(session) == UpdateResult("updated", version=1)
        assert r1.path is not None and holder.holds(r1.path.read_bytes())
        v1_object = f"/{pointer_of(out).full.path}"
        assert await updater.fetch_once(session) == UpdateResult("not_modified", version=1)
        log = lists_log(nginx)
        assert [(s, u) for s, u, _ in log] == [
            (200, POINTER_URI),
            (200, v1_object),
            (304, POINTER_URI),
        ]
        assert log[2][2] != "-"  # the 304 answered the saved ETag
        # v2, published within the same second and the same pointer size: nginx's ETag
        # (mtime seconds, size) must still change, or the sensor would never see it
        r2 = build(out, keys, "b.example")
        p2 = pointer_of(out)
        # the delta from v1 when the distributor wrote one (smaller than the list), else v2
        deltas = [d.ref.path for d in p2.deltas if d.base_version == 1]
        v2_object = f"/{deltas[0] if deltas else p2.full.path}"
        assert await updater.fetch_once(session) == UpdateResult("updated", version=2)
        assert r2.path is not None and holder.holds(r2.path.read_bytes())
        assert holder.store is not None and holder.store.read_bytes() == r2.path.read_bytes()
        assert await updater.fetch_once(session) == UpdateResult("not_modified", version=2)
    log = lists_log(nginx)
    assert [(s, u) for s, u, _ in log[3:]] == [
        (200, POINTER_URI),
        (200, v2_object),
        (304, POINTER_URI),
    ]
    assert holder.version == 2 and holder.counters["update.updated"] == 2


def test_sensor_run_in_static_mode_pulls_through_nginx_and_alerts(
    nginx: Nginx, out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``stockade-sensor run`` with ``[distributor] pointer_url``: no token, no distributor."""
    keygen(tmp_path / "keys", now=NOW - timedelta(days=1))
    keys = OnlineKeys.load(tmp_path / "keys", now=NOW)
    evil = Indicator(IndicatorType.DOMAIN, "evil.com", "feed", 1, "malware", 90, False, None)
    result = build_and_publish(
        parsed=[([evil], "vendor")],
        feed_reports=[],
        cap=CAP,
        tenant="acme",
        profile="p",
        keys=keys,
        out=out,
        valid_for=timedelta(days=7),
        now=NOW,
    )
    assert result.path is not None
    pcap = tmp_path / "lookups.pcap"
    wrpcap(
        str(pcap),
        [
            Ether()
            / IP(src="10.0.0.1", dst="192.0.2.53")
            / UDP(sport=40000 + i, dport=53)
            / DNS(id=i, rd=1, qd=DNSQR(qname=name))
            for i, name in enumerate(["www.evil.com", "benign.example"])
        ],
    )
    state_dir = tmp_path / "state"
    alerts = tmp_path / "alerts.jsonl"
    config = tmp_path / "sensor.toml"
    config.write_text(
        f"""
tenant = "acme"
profile = "p"
trust = "{tmp_path / "keys" / ROOT_PUB}"
state_dir = "{state_dir}"
alerts = "{alerts}"

[distributor]
pointer_url = "{nginx.base_url}{POINTER_URI}"
timeout_seconds = 10
"""
    )
    state_dir.mkdir()
    assert sensor_main(["run", "--config", str(config), "--pcap", str(pcap)]) == EXIT_OK
    err = capsys.readouterr().err
    summary = json.loads(err.split("summary: ", 1)[1].splitlines()[0])
    assert summary["list_version"] == 1 and summary["alerts"] == 1
    assert (state_dir / "list.stockade").read_bytes() == result.path.read_bytes()
    lines = alerts.read_text().splitlines()
    assert len(lines) == 1 and "evil.com" in lines[0]
    assert (200, POINTER_URI) in [(s, u) for s, u, _ in nginx.access_log()]
