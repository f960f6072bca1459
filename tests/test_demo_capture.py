"""demo/make_capture.py: a deterministic demo pcap whose MANIFEST matches what is in it."""

from __future__ import annotations

import importlib.util
import ipaddress
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from sensor.pcapfile import iter_capture

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "demo" / "make_capture.py"
TSHARK = shutil.which("tshark") or "/usr/bin/tshark"
MANIFEST_ROW = re.compile(r"^\s+\d+\s+(dns|http|tls|ip)\s+(\S+)\s", re.MULTILINE)


@pytest.fixture(scope="module")
def tool() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("stockade_demo_make_capture", TOOL)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def pcap(tool: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "workstation.pcap"
    assert tool.main([str(out)]) == 0
    return out


def manifest(tool: ModuleType) -> list[tuple[str, str]]:
    doc = tool.__doc__ or ""
    section = doc.split("MANIFEST", 1)[1].split("Expected NOT to alert", 1)[0]
    return MANIFEST_ROW.findall(section)


def tshark_fields(pcap: Path, *fields: str, display_filter: str = "") -> list[list[str]]:
    if not Path(TSHARK).exists():
        pytest.skip("tshark is not installed")
    args = [TSHARK, "-r", str(pcap), "-T", "fields"]
    for name in fields:
        args += ["-e", name]
    if display_filter:
        args += ["-Y", display_filter]
    done = subprocess.run(args, capture_output=True, text=True, check=True)
    return [line.split("\t") for line in done.stdout.splitlines()]


def test_reads_back_with_the_expected_packets(tool: ModuleType, pcap: Path) -> None:
    frames = list(iter_capture(pcap))
    assert len(frames) == len(tool.build())
    assert 60 <= len(frames) <= 150
    assert {f.linktype for f in frames} == {1}
    assert frames[0].ts == pytest.approx(tool.START.timestamp(), abs=0.01)
    assert [f.ts for f in frames] == sorted(f.ts for f in frames)
    assert frames[-1].ts - frames[0].ts < 600


def test_same_seed_same_bytes(tool: ModuleType, pcap: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.pcap"
    other = tmp_path / "other.pcap"
    assert tool.main([str(again), "--seed", str(tool.DEFAULT_SEED)]) == 0
    assert tool.main([str(other), "--seed", "7"]) == 0
    assert again.read_bytes() == pcap.read_bytes()
    assert other.read_bytes() != pcap.read_bytes()
    assert len(list(iter_capture(other))) == len(list(iter_capture(pcap)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.pcap", "other.pcap"]


def test_command_line(tmp_path: Path, pcap: Path) -> None:
    out = tmp_path / "cli.pcap"
    done = subprocess.run(
        [sys.executable, str(TOOL), str(out)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "wrote" in done.stderr
    assert out.read_bytes() == pcap.read_bytes()


def test_manifest_lists_the_malicious_contacts(tool: ModuleType) -> None:
    rows = manifest(tool)
    assert [kind for kind, _ in rows] == ["dns", "dns", "http", "http", "tls", "ip", "dns"]
    names = {value for kind, value in rows if kind != "ip"}
    assert names == set(tool.MALICIOUS_NAMES)
    (address,) = (value for kind, value in rows if kind == "ip")
    assert address == tool.C2_ADDRESS
    assert ipaddress.ip_address(address).is_global
    for extra in tool.MALICIOUS_ADDRESSES:
        assert extra in (tool.__doc__ or "")


def test_tshark_sees_every_malicious_name(tool: ModuleType, pcap: Path) -> None:
    rows = tshark_fields(pcap, "dns.qry.name", "http.host", "tls.handshake.extensions_server_name")
    seen: dict[str, set[str]] = {"dns": set(), "http": set(), "tls": set()}
    for row in rows:
        for kind, column in zip(("dns", "http", "tls"), row, strict=False):
            seen[kind].update(v for v in column.split(",") if v)
    for kind, name in manifest(tool):
        if kind != "ip":
            assert name in seen[kind], f"{kind} contact with {name} not in the capture"
    assert "cdn.asiaworldremit.com" in seen["dns"]
    assert seen["tls"] >= {"www.wikipedia.org", "github.com", "update.microsoft.com"}
    assert {"deb.debian.org", "detectportal.firefox.com"} <= seen["http"]
    assert set(tool.ALLOWED_NAMES) <= seen["dns"]


def test_tshark_sees_the_address_contacts_vlan_and_malformed(tool: ModuleType, pcap: Path) -> None:
    c2 = tool.C2_ADDRESS
    syn = tshark_fields(pcap, "tcp.dstport", display_filter=f"ip.dst == {c2} && tcp.flags == 0x002")
    assert syn == [["443"]]
    hello = tshark_fields(
        pcap,
        "tls.handshake.extensions_server_name",
        display_filter=f"ip.dst == {c2} && tls.handshake.type == 1",
    )
    assert hello == [[""]]  # a ClientHello without SNI
    answers = tshark_fields(pcap, "dns.qry.name", display_filter=f"dns.a == {c2}")
    assert answers == [["updates.example-cdn.net"]]
    assert tshark_fields(pcap, "dns.aaaa", display_filter="dns.aaaa == 2a0b:f4c0:1::48")
    tagged = tshark_fields(pcap, "vlan.id", display_filter="tls.handshake.extensions_server_name")
    assert ["20"] in tagged
    assert len(tshark_fields(pcap, "dns.id", display_filter="ipv6 && dns")) >= 2
    malformed = tshark_fields(pcap, "dns.qry.name", display_filter="_ws.malformed")
    assert malformed == [["www.debian.org"]]
    versions = tshark_fields(
        pcap, "tls.handshake.extensions.supported_version", display_filter="tls.handshake.type == 1"
    )
    assert any("0x0304" in row[0] for row in versions)  # TLS 1.3 offered
    assert any(row[0] == "" for row in versions)  # and TLS 1.2-only clients
