"""The nftables export: checked with ``nft -c -f`` and loaded for real, each inside a network
namespace the test creates (so the host's ruleset is never touched)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from blocklist.artifact import Action, Entry, EntryType
from blocklist.exports import ExportLimits, exporter
from blocklist.exports.nftables import EXPORTER, FILE_NAME
from tests.blocklist.exports import cases

D, H, U, IP, CIDR = EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP, EntryType.CIDR


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    ns = f"stk-nft-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def nft(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "nft", *args], capture_output=True, text=True, timeout=60
    )


def write(tmp_path: Path, entries: list[Entry], name: str = "list.nft", **options: str) -> Path:
    data = EXPORTER.render(entries, ExportLimits(), options).file(FILE_NAME).data
    path = tmp_path / name
    path.write_bytes(data)
    return path


def elements(ns: str, family: str, table: str, set_name: str) -> set[str]:
    done = nft(ns, "list", "set", family, table, set_name)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    if "elements = {" not in text:
        return set()
    body = text.split("elements = {", 1)[1].split("}", 1)[0]
    return {e.strip() for e in body.replace("\n", " ").split(",") if e.strip()}


def mixed() -> list[Entry]:
    return [
        Entry(IP, "203.0.113.7"),
        Entry(CIDR, "198.51.100.0/24"),
        Entry(IP, "198.51.100.9"),  # inside the prefix above: auto-merge takes it
        Entry(IP, "2001:db8::7"),
        Entry(CIDR, "2001:db8:1::/48"),
        Entry(CIDR, "203.0.113.18/32"),
        Entry(D, "evil.example.com"),
        Entry(U, "http://evil.example.com/x"),
        Entry(IP, "192.0.2.1", Action.ALLOW),
        Entry(IP, "192.0.2.2", Action.ALERT),
    ]


def test_registered() -> None:
    assert exporter("nftables") is EXPORTER


def test_text() -> None:
    out = EXPORTER.render(mixed(), ExportLimits())
    assert out.file(FILE_NAME).data.decode() == (
        "add table inet stockade\n"
        "add set inet stockade block_v4 { type ipv4_addr; flags interval; auto-merge; }\n"
        "add set inet stockade block_v6 { type ipv6_addr; flags interval; auto-merge; }\n"
        "flush set inet stockade block_v4\n"
        "flush set inet stockade block_v6\n"
        "add element inet stockade block_v4 {\n"
        "\t203.0.113.7,\n\t198.51.100.0/24,\n\t198.51.100.9,\n\t203.0.113.18,\n"
        "}\n"
        "add element inet stockade block_v6 {\n"
        "\t2001:db8::7,\n\t2001:db8:1::/48,\n"
        "}\n"
    )
    assert dict(out.skipped) == {
        "unsupported_type.domain": 1,
        "unsupported_type.url": 1,
        "allow_not_expressible": 1,
        "alert_not_enforceable": 1,
    }
    assert out.entries == 6


@pytest.mark.netns
def test_nft_check_accepts(netns: str, tmp_path: Path) -> None:
    variants: list[dict[str, str]] = [{"table": "edge", "family": "ip", "set_prefix": "bad"}]
    variants += [{"family": family} for family in ("ip6", "bridge", "netdev")]
    for options in ({}, *variants):
        path = write(tmp_path, mixed(), **options)
        done = nft(netns, "-c", "-f", str(path))
        assert done.returncode == 0, done.stderr
    # and the checker is not a rubber stamp: a stray line fails it
    broken = tmp_path / "broken.nft"
    broken.write_bytes(path.read_bytes().replace(b"\t203.0.113.7,", b"\t203.0.113.7 x,"))
    assert nft(netns, "-c", "-f", str(broken)).returncode != 0


@pytest.mark.netns
def test_loads_and_replaces_atomically(netns: str, tmp_path: Path) -> None:
    first = write(tmp_path, mixed(), "first.nft")
    done = nft(netns, "-f", str(first))
    assert done.returncode == 0, done.stderr
    assert elements(netns, "inet", "stockade", "block_v4") == {
        "203.0.113.7",
        "198.51.100.0/24",
        "203.0.113.18",
    }
    assert elements(netns, "inet", "stockade", "block_v6") == {"2001:db8::7", "2001:db8:1::/48"}
    # the user's rules live in the same table and refer to the sets: a reload keeps them
    rule = "add chain inet stockade out { type filter hook output priority 0; }\n"
    rule += "add rule inet stockade out ip daddr @block_v4 drop\n"
    (tmp_path / "rule.nft").write_text(rule)
    assert nft(netns, "-f", str(tmp_path / "rule.nft")).returncode == 0
    # the same file again is fine, and a new list replaces the old one entirely
    assert nft(netns, "-f", str(first)).returncode == 0
    second = write(tmp_path, [Entry(IP, "203.0.113.99")], "second.nft")
    done = nft(netns, "-f", str(second))
    assert done.returncode == 0, done.stderr
    assert elements(netns, "inet", "stockade", "block_v4") == {"203.0.113.99"}
    assert elements(netns, "inet", "stockade", "block_v6") == set()
    listed = nft(netns, "list", "chain", "inet", "stockade", "out")
    assert "@block_v4 drop" in listed.stdout
    # an empty list empties the sets
    assert nft(netns, "-f", str(write(tmp_path, [], "empty.nft"))).returncode == 0
    assert elements(netns, "inet", "stockade", "block_v4") == set()


@pytest.mark.netns
def test_failed_load_keeps_old_sets(netns: str, tmp_path: Path) -> None:
    """nft -f is one transaction: a file that fails half-way changes nothing."""
    assert nft(netns, "-f", str(write(tmp_path, mixed(), "ok.nft"))).returncode == 0
    bad = tmp_path / "bad.nft"
    text = write(tmp_path, [Entry(IP, "203.0.113.50")], "next.nft").read_text()
    bad.write_text(text + "add element inet stockade nosuchset { 203.0.113.51 }\n")
    assert nft(netns, "-f", str(bad)).returncode != 0
    assert "203.0.113.7" in elements(netns, "inet", "stockade", "block_v4")


def test_hostile_values_never_written() -> None:
    hostile = [
        Entry(IP, "203.0.113.1\nflush ruleset"),
        Entry(IP, "203.0.113.1; flush ruleset"),
        Entry(IP, "203.0.113.1 }"),
        Entry(IP, "2001:DB8::1"),
        Entry(IP, "::ffff:203.0.113.5"),
        Entry(CIDR, "198.51.100.1/24"),
        Entry(CIDR, "198.51.100.0/24 "),
        Entry(CIDR, "203.0.113.6"),
        Entry(CIDR, "0.0.0.0/0"),
        Entry(IP, "203.0.113.300"),
    ]
    out = EXPORTER.render([*hostile, Entry(IP, "203.0.113.2")], ExportLimits())
    assert out.entries == 1
    assert dict(out.skipped) == {"invalid_value.ip": 6, "invalid_value.cidr": 4}
    data = out.file(FILE_NAME).data
    assert b"ruleset" not in data and b";" not in data.split(b"\n", 5)[-1]


def test_byte_boundary() -> None:
    cases.check_byte_boundary(EXPORTER, [Entry(IP, f"203.0.113.{i}") for i in range(1, 40)], 23)
    # the first entry of a family also brings its "add element" block
    entries = [Entry(IP, "203.0.113.1"), Entry(IP, "2001:db8::1"), Entry(IP, "203.0.113.2")]
    cases.check_byte_boundary(EXPORTER, entries, 2)


def test_frame_larger_than_limit() -> None:
    with pytest.raises(ValueError, match=r"below the \d+-byte framing"):
        EXPORTER.render([], ExportLimits(max_bytes=100))


def test_entry_boundary() -> None:
    cases.check_entry_boundary(EXPORTER, [Entry(IP, f"203.0.113.{i}") for i in range(9)], 5)
    cases.check_entry_boundary(EXPORTER, [Entry(CIDR, f"10.{i}.0.0/16") for i in range(9)], 3)


def test_pool() -> None:
    entries = [Entry(IP, "203.0.113.1"), Entry(CIDR, "10.0.0.0/8"), Entry(IP, "203.0.113.2")]
    out = EXPORTER.render(entries, ExportLimits(pools=((frozenset({IP, CIDR}), 2),)))
    assert out.entries == 2 and dict(out.skipped) == {"over_pool": 1}


def test_deterministic() -> None:
    cases.check_deterministic(EXPORTER, mixed())


@pytest.mark.parametrize(
    "options",
    [
        {"table": "x; flush ruleset"},
        {"table": ""},
        {"set_prefix": "a b"},
        {"family": "arp"},
        {"chain": "input"},
    ],
)
def test_bad_options(options: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        EXPORTER.render(mixed(), ExportLimits(), options)
