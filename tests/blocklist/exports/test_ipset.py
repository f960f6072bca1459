"""The ipset export: restored with ``ipset restore`` inside a network namespace the test
creates (ipset sets are per network namespace), then listed with ``ipset list``."""

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
from blocklist.exports.ipset import EXPORTER, FILE_NAME
from tests.blocklist.exports import cases

D, U, IP, CIDR = EntryType.DOMAIN, EntryType.URL, EntryType.IP, EntryType.CIDR


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace")
    for tool in ("ip", "ipset"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    ns = f"stk-ips-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        yield ns
    finally:
        subprocess.run(["ip", "netns", "exec", ns, "ipset", "destroy"], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def ipset(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, "ipset", *args], capture_output=True, text=True, timeout=60
    )


def restore(ns: str, tmp_path: Path, entries: list[Entry], **options: str) -> None:
    path = tmp_path / "list.ipset"
    path.write_bytes(EXPORTER.render(entries, ExportLimits(), options).file(FILE_NAME).data)
    done = ipset(ns, "restore", "-f", str(path))
    assert done.returncode == 0, done.stderr


def members(ns: str, name: str) -> set[str]:
    done = ipset(ns, "list", name)
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split("Members:\n", 1)[1].split())


def sets(ns: str) -> set[str]:
    return set(ipset(ns, "list", "-n").stdout.split())


def mixed() -> list[Entry]:
    return [
        Entry(IP, "203.0.113.7"),
        Entry(CIDR, "198.51.100.0/24"),
        Entry(IP, "2001:db8::7"),
        Entry(CIDR, "2001:db8:1::/48"),
        Entry(CIDR, "203.0.113.18/32"),
        Entry(IP, "203.0.113.18"),  # the same as the /32 above
        Entry(D, "evil.example.com"),
        Entry(U, "http://evil.example.com/x"),
        Entry(IP, "192.0.2.1", Action.ALLOW),
        Entry(IP, "192.0.2.2", Action.ALERT),
    ]


def test_registered() -> None:
    assert exporter("ipset") is EXPORTER


def test_text() -> None:
    out = EXPORTER.render(mixed(), ExportLimits(max_entries=1000))
    assert out.file(FILE_NAME).data.decode() == (
        "create stockade4 hash:net family inet maxelem 1000 -exist\n"
        "create stockade6 hash:net family inet6 maxelem 1000 -exist\n"
        "create stockade4-new hash:net family inet maxelem 1000 -exist\n"
        "create stockade6-new hash:net family inet6 maxelem 1000 -exist\n"
        "flush stockade4-new\n"
        "flush stockade6-new\n"
        "add stockade4-new 203.0.113.7 -exist\n"
        "add stockade4-new 198.51.100.0/24 -exist\n"
        "add stockade4-new 203.0.113.18 -exist\n"
        "add stockade6-new 2001:db8::7 -exist\n"
        "add stockade6-new 2001:db8:1::/48 -exist\n"
        "swap stockade4-new stockade4\n"
        "swap stockade6-new stockade6\n"
        "destroy stockade4-new\n"
        "destroy stockade6-new\n"
    )
    assert dict(out.skipped) == {
        "duplicate_value": 1,
        "unsupported_type.domain": 1,
        "unsupported_type.url": 1,
        "allow_not_expressible": 1,
        "alert_not_enforceable": 1,
    }


@pytest.mark.netns
def test_restore_lists_and_replaces(netns: str, tmp_path: Path) -> None:
    restore(netns, tmp_path, mixed())
    assert members(netns, "stockade4") == {"203.0.113.7", "198.51.100.0/24", "203.0.113.18"}
    assert members(netns, "stockade6") == {"2001:db8::7", "2001:db8:1::/48"}
    assert sets(netns) == {"stockade4", "stockade6"}  # the -new sets are gone
    # -exist-safe: the same file again succeeds and changes nothing
    restore(netns, tmp_path, mixed())
    assert members(netns, "stockade4") == {"203.0.113.7", "198.51.100.0/24", "203.0.113.18"}
    # a new list replaces the old one, an empty list empties the sets
    restore(netns, tmp_path, [Entry(IP, "203.0.113.99")])
    assert members(netns, "stockade4") == {"203.0.113.99"}
    assert members(netns, "stockade6") == set()
    restore(netns, tmp_path, [])
    assert members(netns, "stockade4") == set()


@pytest.mark.netns
def test_restore_after_interrupted_run(netns: str, tmp_path: Path) -> None:
    """A run that stopped before ``swap`` leaves a -new set: the next run reuses it."""
    data = EXPORTER.render(mixed(), ExportLimits()).file(FILE_NAME).data.decode()
    half = tmp_path / "half.ipset"
    half.write_text(data.split("swap ", 1)[0])
    assert ipset(netns, "restore", "-f", str(half)).returncode == 0
    assert "stockade4-new" in sets(netns)
    restore(netns, tmp_path, [Entry(CIDR, "10.0.0.0/8")], maxelem="65536")
    assert members(netns, "stockade4") == {"10.0.0.0/8"}
    assert sets(netns) == {"stockade4", "stockade6"}


@pytest.mark.netns
def test_maxelem_from_limits(netns: str, tmp_path: Path) -> None:
    entries = [Entry(IP, f"203.0.113.{i}") for i in range(1, 6)]
    out = EXPORTER.render(entries, ExportLimits(), {"maxelem": "3"})
    assert dict(out.skipped) == {"over_set_capacity": 2}
    path = tmp_path / "small.ipset"
    path.write_bytes(out.file(FILE_NAME).data)
    done = ipset(netns, "restore", "-f", str(path))
    assert done.returncode == 0, done.stderr
    listing = ipset(netns, "list", "stockade4").stdout
    assert "maxelem 3" in listing
    assert members(netns, "stockade4") == {"203.0.113.1", "203.0.113.2", "203.0.113.3"}
    # without the option, max_entries sizes the sets
    head = EXPORTER.render([], ExportLimits(max_entries=200)).file(FILE_NAME).data
    assert b"maxelem 200 " in head


def test_maxelem_is_per_set() -> None:
    entries = [Entry(IP, "203.0.113.1"), Entry(IP, "2001:db8::1"), Entry(IP, "203.0.113.2")]
    out = EXPORTER.render(entries, ExportLimits(), {"maxelem": "1"})
    assert out.entries == 2 and dict(out.skipped) == {"over_set_capacity": 1}


def test_hostile_values_never_written() -> None:
    hostile = [
        Entry(IP, "203.0.113.1\ndestroy"),
        Entry(IP, "203.0.113.1 -exist"),
        Entry(IP, "2001:DB8::1"),
        Entry(CIDR, "198.51.100.1/24"),
        Entry(CIDR, "203.0.113.6"),
        Entry(CIDR, "::/0"),
    ]
    out = EXPORTER.render([*hostile, Entry(IP, "203.0.113.2")], ExportLimits())
    assert out.entries == 1
    assert dict(out.skipped) == {"invalid_value.ip": 3, "invalid_value.cidr": 3}
    assert out.file(FILE_NAME).data.count(b"\nadd ") == 1


def test_byte_boundary() -> None:
    entries = [Entry(IP, f"203.0.113.{i}") for i in range(1, 40)]
    entries.insert(5, Entry(CIDR, "2001:db8::/32"))
    cases.check_byte_boundary(EXPORTER, entries, 19)


def test_entry_boundary() -> None:
    cases.check_entry_boundary(EXPORTER, [Entry(IP, f"203.0.113.{i}") for i in range(9)], 5)


def test_deterministic() -> None:
    cases.check_deterministic(EXPORTER, mixed())


@pytest.mark.parametrize(
    "options",
    [
        {"set_prefix": "x y"},
        {"set_prefix": "a" * 27},
        {"set_prefix": "-x"},
        {"maxelem": "0"},
        {"maxelem": "ten"},
        {"hashsize": "1024"},
    ],
)
def test_bad_options(options: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        EXPORTER.render(mixed(), ExportLimits(), options)
