"""``stockade-sensor run`` writes every alert to each configured sink: a JSON lines file, syslog
over UDP and CEF over TCP, received here on loopback listeners."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from blocklist.artifact import Action, BlockList, Entry, EntryType
from distributor.build import sign_list
from distributor.keys import ROOT_PUB, OnlineKeys, keygen
from sensor.cli import EXIT_OK, EXIT_USAGE, main
from sensor.sinks import SD_ID
from tests.sensor.test_sinks import WAIT_SECONDS, Rfc5424, TcpCollector, parse_cef

TENANT = "acme"
PROFILE = "utm-small"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(root key, signed list, capture with one blocked and one benign lookup)."""
    d = tmp_path_factory.mktemp("run")
    keygen(d)
    keys = OnlineKeys.load(d)
    created = datetime.now(UTC) - timedelta(hours=1)
    blocklist = BlockList.create(
        tenant=TENANT,
        profile=PROFILE,
        version=5,
        created=created,
        expires=created + timedelta(days=7),
        key_id=keys.signing.keyid,
        entries=(Entry(EntryType.DOMAIN, "evil.com", Action.BLOCK, 200, "malware", ("feed-a",)),),
    )
    listfile = d / "list.stockade"
    listfile.write_bytes(sign_list(blocklist, keys))
    pcap = d / "lookups.pcap"
    packets = [
        Ether()
        / IP(src="10.0.0.1", dst="192.0.2.53")
        / UDP(sport=40000 + i, dport=53)
        / DNS(id=i, rd=1, qd=DNSQR(qname=name))
        for i, name in enumerate(["www.evil.com", "benign.example"])
    ]
    wrpcap(str(pcap), packets)
    return d / ROOT_PUB, listfile, pcap


def _argv(setup: tuple[Path, Path, Path], *more: str) -> list[str]:
    root, listfile, pcap = setup
    return [
        "run",
        "--trust",
        str(root),
        "--tenant",
        TENANT,
        "--profile",
        PROFILE,
        "--list",
        str(listfile),
        "--pcap",
        str(pcap),
        *more,
    ]


def test_run_delivers_each_alert_to_every_sink(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(WAIT_SECONDS)
    collector = TcpCollector()
    config = tmp_path / "sensor.toml"
    config.write_text(
        f"""
[[alert_sinks]]
kind = "syslog"
name = "syslog_udp"
host = "127.0.0.1"
port = {udp.getsockname()[1]}
facility = "local4"
hostname = "gw-1"

[[alert_sinks]]
kind = "cef"
name = "cef_tcp"
transport = "tcp"
host = "127.0.0.1"
port = {collector.port}

[[alert_sinks]]
kind = "cef"
path = "{tmp_path / "alerts.cef"}"
"""
    )
    jsonl = tmp_path / "alerts.jsonl"
    try:
        rc = main(_argv(setup, "--config", str(config), "--alerts", str(jsonl)))
        syslog = Rfc5424(udp.recvfrom(65536)[0])
        cef = Rfc5424(collector.get())
    finally:
        udp.close()
        collector.close()
    err = capsys.readouterr().err
    assert rc == EXIT_OK, err
    assert syslog.hostname == "gw-1"
    assert syslog.sd[SD_ID]["indicator"] == "www.evil.com"
    assert syslog.sd[SD_ID]["list_version"] == "5"
    _, ext = parse_cef(cef.msg)
    assert (ext["cs3"], ext["dhost"], ext["cat"]) == ("www.evil.com", "www.evil.com", "malware")
    (line,) = (tmp_path / "alerts.cef").read_text().splitlines()
    assert parse_cef(line)[1]["cs3"] == "www.evil.com"
    (record,) = [json.loads(x) for x in jsonl.read_text().splitlines()]
    assert record["alert"]["indicator"] == "www.evil.com"
    summary = json.loads(err.split("summary: ", 1)[1].splitlines()[0])
    assert summary["alerts"] == 1
    for name in ("alerts", "syslog_udp", "cef_tcp", "cef2"):
        assert summary[f"sinks.{name}.sent"] == 1, summary


def test_run_without_sinks_still_writes_json_lines_to_stdout(
    setup: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_argv(setup)) == EXIT_OK
    (line,) = capsys.readouterr().out.splitlines()
    assert json.loads(line)["alert"]["indicator"] == "www.evil.com"


def test_run_with_a_bad_sink_config_is_a_usage_error(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "sensor.toml"
    config.write_text('[[alert_sinks]]\nkind = "syslog"\nhost = "x"\ntransport = "smoke"\n')
    assert main(_argv(setup, "--config", str(config))) == EXIT_USAGE
    assert "transport 'smoke' is unknown" in capsys.readouterr().err


def test_run_with_an_unwritable_alerts_file_is_a_usage_error(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "no-such-dir" / "alerts.jsonl"
    assert main(_argv(setup, "--alerts", str(target))) == EXIT_USAGE
    assert "cannot open alert file" in capsys.readouterr().err


def test_run_matches_what_the_end_of_the_capture_completes(
    setup: tuple[Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DNS answer whose later IPv6 fragments never came is decoded from its first fragment
    when the capture ends (``Decoder.flush``), and that event is matched too."""
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6

    from tests.sensor.builders import a_record, dns_response

    answer = (
        Ether()
        / IPv6(src="2001:db8::53", dst="2001:db8::1")
        / IPv6ExtHdrFragment(id=77)
        / UDP(sport=53, dport=40000)
        / dns_response("www.evil.com", [a_record("www.evil.com", "192.0.2.9")] * 120)
    )
    first = fragment6(answer[IPv6], 1280)[0]
    pcap = tmp_path / "first-fragment-only.pcap"
    wrpcap(str(pcap), [Ether() / first])
    alerts = tmp_path / "alerts.jsonl"
    root, listfile, _ = setup
    assert main(_argv((root, listfile, pcap), "--alerts", str(alerts))) == EXIT_OK
    records = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert [(r["event"]["kind"], r["alert"]["indicator"]) for r in records] == [
        ("dns_answer", "www.evil.com")
    ]
    err = capsys.readouterr().err
    summary = json.loads(err.split("summary: ", 1)[1].splitlines()[0])
    assert summary["partial.ipv6.first_fragment"] == 1
