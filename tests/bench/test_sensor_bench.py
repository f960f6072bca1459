"""bench/sensor_bench.py in a tiny run: the output's shape, and that the sensor found exactly
the events and alerts the capture was built to hold.

Nothing here is timed (docs/CONVENTIONS.md): speeds are only checked to be there.
"""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sensor.decode import decode_capture

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "sensor_bench", REPO / "bench" / "sensor_bench.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sensor_bench"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


sb = _load()


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    cache = tmp_path_factory.mktemp("bench-cache")
    out = tmp_path_factory.mktemp("bench-out") / "out.json"
    argv = [
        "--quick",
        "--packets",
        "5000",
        "--entries",
        "10000",
        "--pool",
        "800",
        "--runs",
        "1",
        "--cache",
        str(cache),
        "--json",
    ]
    stdout = sys.stdout
    with open(out, "w") as f:
        sys.stdout = f
        try:
            rc = sb.main(argv)
        finally:
            sys.stdout = stdout
    result: dict[str, Any] = json.loads(out.read_text())
    result["rc"] = rc
    result["cache"] = cache
    return result


def test_the_sensor_finds_every_planted_alert_and_event(quick: dict[str, Any]) -> None:
    cap, stockade = quick["capture"], quick["tools"]["stockade"]
    assert "error" not in stockade, stockade.get("error")
    assert cap["expected_alerts"] > 0  # names from the list are in the capture
    assert stockade["packets"] == cap["packets"] >= 5000
    assert stockade["alerts"] == cap["expected_alerts"]
    assert stockade["events"] == cap["expected_events"]
    assert quick["check"]["ok"] is True
    assert quick["rc"] == 0


def test_output_structure(quick: dict[str, Any]) -> None:
    assert set(quick["tools"]) == {"stockade", "dpkt", "tshark", "raw"}
    assert set(quick["capture"]["packets_by_kind"]) == set(sb.UNIT_WEIGHTS)
    assert sum(quick["capture"]["packets_by_kind"].values()) == quick["capture"]["packets"]
    stockade = quick["tools"]["stockade"]
    for key in ("packets_per_cpu_second", "events_per_cpu_second", "cpu_seconds", "peak_rss_mib"):
        assert stockade[key] > 0, key
    run = stockade["runs"][0]
    assert run["rss_start_kib"] > 0 and run["peak_rss_kib"] >= run["rss_loaded_kib"]
    for name in ("dpkt", "raw"):
        tool = quick["tools"][name]
        assert "error" not in tool, tool.get("error")
        assert tool["packets"] == quick["capture"]["packets"]
        assert 0 < tool["qnames"] <= quick["capture"]["expected_events"]
    tshark = quick["tools"]["tshark"]
    assert "error" in tshark or tshark["packets"] == quick["capture"]["packets"]
    lst = quick["list"]
    assert lst["entries"] == 10_000 and lst["bundle_bytes"] > 0
    assert lst["load_seconds_median"] > 0
    mem = lst["memory"]
    assert mem["entries"] == 10_000
    assert mem["index_lookup_bytes"] > 0 and mem["index_object_bytes"] > 0
    # the name tables are views into the bundle bytes (excluded from "retained"), so only the
    # objects built at load count there: the address tables, the trust state
    assert mem["list_retained_bytes"] > 0
    assert [g["goal"].split()[0] for g in quick["goals"]] == [
        "decode+match",
        ">=",
        ">=",
        "peak",
        "index",
        "load",
    ]
    for goal in quick["goals"]:
        assert goal["pass"] in (True, False, None)


def test_the_capture_is_cached(quick: dict[str, Any]) -> None:
    cache = quick["cache"]
    again = sb.ensure_capture(cache, 5000, 800, sb.SEED, lambda _text: None)
    assert again.cached
    assert again.packets == quick["capture"]["packets"]
    assert len(list(Path(cache).glob("*.pcap"))) == 1


def test_replayed_connections_are_new_flows(tmp_path: Path) -> None:
    """One HTTP connection replayed three times: three requests, not retransmissions."""
    builder = sb._PoolBuilder(11)
    unit = builder.unit("http")
    assert len(unit.frames) == 8
    pcap = tmp_path / "three.pcap"
    totals = sb.write_capture(pcap, [unit], 3 * len(unit.frames), 11)
    events, counters = decode_capture(pcap)
    assert totals["expected_events"] == len(events) == 6  # a connect and a request, 3 times
    assert [e.kind for e in events].count("http_request") == 3
    assert len({e.sport for e in events}) == 3
    assert counters["skipped.tcp.retransmission"] == 0


def test_rewritten_ports_keep_tcp_checksums_valid(tmp_path: Path) -> None:
    from scapy.layers.inet import TCP
    from scapy.layers.l2 import Ether

    unit = sb._PoolBuilder(12).unit("tls")
    pcap = tmp_path / "tls.pcap"
    sb.write_capture(pcap, [unit], len(unit.frames), 12)
    data = pcap.read_bytes()
    off, checked = 24, 0
    while off < len(data):
        caplen = struct.unpack_from("<I", data, off + 8)[0]
        frame = Ether(data[off + 16 : off + 16 + caplen])
        off += 16 + caplen
        tcp = frame[TCP]
        sent = tcp.chksum
        del tcp.chksum
        assert Ether(bytes(frame))[TCP].chksum == sent
        assert sb.CLIENT_PORTS[0] in (tcp.sport, tcp.dport)  # the first rewritten port
        checked += 1
    assert checked == 8


def test_malformed_units_say_what_the_sensor_makes_of_them(tmp_path: Path) -> None:
    """Each damaged unit alone: as many events as the unit expects, and no crash."""
    builder = sb._PoolBuilder(13)
    for i in range(40):
        unit = builder.unit("malformed")
        pcap = tmp_path / f"bad{i}.pcap"
        sb.write_capture(pcap, [unit], 1, 13)
        events, counters = decode_capture(pcap)
        assert len(events) == unit.events, (i, counters)
        assert counters["error.internal"] == 0
