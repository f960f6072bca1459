"""pcap/pcapng reading: formats, interfaces, timestamps, and damage."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

import dpkt
import pytest

from sensor.errors import CaptureError, SensorError
from sensor.pcapfile import (
    DLT_EN10MB,
    DLT_LINUX_SLL,
    DLT_RAW,
    CaptureReader,
    Frame,
    iter_capture,
)

PACKETS = [b"\x00" * 60, b"\x01" * 14, b"\x02" * 1514]


def write_pcap(path: Path, packets: list[bytes], *, linktype: int = DLT_EN10MB, **kw: bool) -> None:
    with path.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=linktype, **kw)
        for i, pkt in enumerate(packets):
            writer.writepkt(pkt, ts=1_700_000_000 + i + 0.25)


def _block(btype: int, body: bytes) -> bytes:
    body += b"\x00" * (-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", btype, length) + body + struct.pack("<I", length)


def _shb() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(linktype: int, tsresol: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)
    return _block(1, struct.pack("<HHI", linktype, 0, 65535) + opts)


def _epb(iface: int, ticks: int, data: bytes) -> bytes:
    head = struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
    return _block(6, head + data)


def test_pcap_frames_and_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    write_pcap(path, PACKETS)
    frames = list(iter_capture(path))
    assert [f.data for f in frames] == PACKETS
    assert [f.linktype for f in frames] == [DLT_EN10MB] * 3
    assert frames[0].ts == pytest.approx(1_700_000_000.25)


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("big_endian", [False, True])
def test_pcap_variants(tmp_path: Path, nano: bool, big_endian: bool) -> None:
    path = tmp_path / "b.pcap"
    # dpkt's Writer writes host order; build the big-endian one by hand.
    if big_endian:
        magic = 0xA1B23C4D if nano else 0xA1B2C3D4
        out = struct.pack(">IHHiIII", magic, 2, 4, 0, 0, 65535, DLT_RAW)
        for i, pkt in enumerate(PACKETS):
            frac = 500_000_000 if nano else 500_000
            out += struct.pack(">IIII", 100 + i, frac, len(pkt), len(pkt)) + pkt
        path.write_bytes(out)
        expected_lt = DLT_RAW
    else:
        write_pcap(path, PACKETS, nano=nano)
        expected_lt = DLT_EN10MB
    frames = list(iter_capture(path))
    assert [f.data for f in frames] == PACKETS
    assert {f.linktype for f in frames} == {expected_lt}
    if big_endian:
        assert frames[1].ts == pytest.approx(101.5)
    else:
        assert frames[0].ts == pytest.approx(1_700_000_000.25, abs=1e-6)


def test_pcapng_interfaces_with_different_link_types(tmp_path: Path) -> None:
    path = tmp_path / "multi.pcapng"
    path.write_bytes(
        _shb()
        + _idb(DLT_EN10MB)
        + _idb(DLT_LINUX_SLL, tsresol=9)  # nanoseconds
        + _epb(0, 1_500_000, b"eth-frame")
        + _epb(1, 2_000_000_000, b"sll-frame")
        + _epb(7, 0, b"no such interface")
        + _block(4, b"\x00\x00\x00\x00")  # name resolution block: ignored
    )
    counters: Counter[str] = Counter()
    frames = list(iter_capture(path, counters))
    assert frames == [
        Frame(1.5, DLT_EN10MB, b"eth-frame"),
        Frame(2.0, DLT_LINUX_SLL, b"sll-frame"),
    ]
    assert counters["capture.unknown_interface"] == 1
    assert counters["capture.frames"] == 2
    assert counters["capture.truncated"] == 0


def test_pcapng_second_section_resets_interfaces(tmp_path: Path) -> None:
    path = tmp_path / "two-sections.pcapng"
    path.write_bytes(
        _shb() + _idb(DLT_EN10MB) + _epb(0, 1, b"a") + _shb() + _idb(DLT_RAW) + _epb(0, 2, b"b")
    )
    assert [(f.linktype, f.data) for f in iter_capture(path)] == [
        (DLT_EN10MB, b"a"),
        (DLT_RAW, b"b"),
    ]


def test_pcapng_written_by_dpkt(tmp_path: Path) -> None:
    path = tmp_path / "dpkt.pcapng"
    with path.open("wb") as f:
        writer = dpkt.pcapng.Writer(f, linktype=DLT_RAW)
        for pkt in PACKETS:
            writer.writepkt(pkt, ts=5.5)
    frames = list(iter_capture(path))
    assert [f.data for f in frames] == PACKETS
    assert frames[0] == Frame(5.5, DLT_RAW, PACKETS[0])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "file is 0 bytes long"),
        (b"hello world, this is not a capture file at all", "unknown magic"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "bad pcap header"),
        (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00", "bad pcapng header"),
    ],
)
def test_not_a_capture(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=reason) as info:
        iter_capture(path)  # raised on the call, not at the first frame
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, SensorError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot open"):
        iter_capture(tmp_path / "nope.pcap")


def test_header_only_capture_is_empty_not_truncated(tmp_path: Path) -> None:
    path = tmp_path / "empty.pcap"
    write_pcap(path, [])
    reader = CaptureReader(path)
    assert list(reader) == []
    assert not reader.truncated


@pytest.mark.parametrize(
    ("cut", "whole"), [(1, 1), (8, 1), (15, 1), (16, 1), (17, 1), (29, 1), (31, 2), (75, 2)]
)
def test_truncated_pcap_yields_complete_frames(tmp_path: Path, cut: int, whole: int) -> None:
    path = tmp_path / "t.pcap"
    write_pcap(path, PACKETS)
    data = path.read_bytes()
    second_record = 24 + 16 + len(PACKETS[0])
    path.write_bytes(data[: second_record + cut])
    counters: Counter[str] = Counter()
    reader = CaptureReader(path, counters)
    frames = list(reader)
    assert [f.data for f in frames] == PACKETS[:whole]
    assert reader.truncated
    assert "cut short" in reader.stop_reason
    assert counters["capture.truncated"] == 1


def test_truncated_pcapng_yields_complete_frames(tmp_path: Path) -> None:
    path = tmp_path / "t.pcapng"
    whole = _shb() + _idb(DLT_EN10MB) + _epb(0, 1, b"first") + _epb(0, 2, b"second")
    for cut in range(len(whole) - len(_epb(0, 2, b"second")) + 1, len(whole)):
        path.write_bytes(whole[:cut])
        reader = CaptureReader(path)
        assert [f.data for f in reader] == [b"first"], cut
        assert reader.truncated, cut


def test_implausible_record_length_stops(tmp_path: Path) -> None:
    path = tmp_path / "huge.pcap"
    write_pcap(path, PACKETS[:1])
    path.write_bytes(path.read_bytes() + struct.pack("<IIII", 1, 0, 0x7FFFFFFF, 0x7FFFFFFF))
    reader = CaptureReader(path)
    assert len(list(reader)) == 1
    assert reader.truncated and "not plausible" in reader.stop_reason


def test_corrupt_pcapng_block_length_stops(tmp_path: Path) -> None:
    path = tmp_path / "bad-block.pcapng"
    path.write_bytes(_shb() + _idb(DLT_EN10MB) + _epb(0, 1, b"ok") + struct.pack("<II", 6, 7))
    reader = CaptureReader(path)
    assert [f.data for f in reader] == [b"ok"]
    assert reader.truncated


def test_reader_as_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "c.pcap"
    write_pcap(path, PACKETS)
    with CaptureReader(path) as reader:
        assert reader.format == "pcap"
        first = next(iter(reader))
    assert first.data == PACKETS[0]


@pytest.mark.shared
def test_real_capture_headers(shared_data: Path) -> None:
    pcaps = shared_data / "pcaps"
    null = pcaps / "suricata-verify/tests/dns/dns-incomplete/input.pcap"
    assert {f.linktype for f in iter_capture(null)} == {0}
    raw = pcaps / "suricata-verify/tests/dns/dns-corrupt-additionals/input.pcap"
    assert {f.linktype for f in iter_capture(raw)} == {DLT_RAW}
    ng = pcaps / "chrissanders-packets/dns_tcp.pcapng"
    frames = list(iter_capture(ng))
    assert len(frames) == 14
    assert all(f.linktype == DLT_EN10MB for f in frames)
    assert frames[1].ts > frames[0].ts > 1e9
