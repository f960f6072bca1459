"""``stockade-sensor verify`` on lists made by the real distributor code (keygen, build, sign).

Every refusal has its own message naming the rule, and malformed input its own exit code, so
a script can tell "not ours" from "ours but refused".
"""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from blocklist.artifact import Action, BlockList, Entry, EntryType
from distributor.build import Capacity, build_and_publish, sign_list
from distributor.indicators import Indicator, IndicatorType
from distributor.keys import ROOT_PUB, OnlineKeys, keygen
from sensor.cli import EXIT_MALFORMED, EXIT_OK, EXIT_REJECTED, EXIT_USAGE, STATE_LIST, main

TENANT = "acme"
PROFILE = "utm-small"
ENTRIES = (
    Entry(EntryType.DOMAIN, "evil.com", Action.BLOCK, 200, "malware", ("feed-a",)),
    Entry(EntryType.DOMAIN, "bad.example", Action.BLOCK, 150, "phishing", ("feed-a",)),
    Entry(EntryType.IP, "192.0.2.66", Action.BLOCK, 100, "c2", ("feed-b",)),
)


@dataclass
class Keys:
    dir: Path
    online: OnlineKeys

    @property
    def root_pub(self) -> Path:
        return self.dir / ROOT_PUB


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    d = tmp_path_factory.mktemp("keys")
    keygen(d)
    return Keys(d, OnlineKeys.load(d))


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """A second, unrelated key directory (another distributor's keys)."""
    d = tmp_path_factory.mktemp("other-keys")
    keygen(d)
    return Keys(d, OnlineKeys.load(d))


def signed(
    keys: OnlineKeys,
    *,
    version: int = 1,
    tenant: str = TENANT,
    profile: str = PROFILE,
    created: datetime | None = None,
    valid_for: timedelta = timedelta(days=7),
) -> bytes:
    created = created or datetime.now(UTC) - timedelta(hours=1)
    blocklist = BlockList.create(
        tenant=tenant,
        profile=profile,
        version=version,
        created=created,
        expires=created + valid_for,
        key_id=keys.signing.keyid,
        entries=ENTRIES,
    )
    return sign_list(blocklist, keys)


def tampered(data: bytes) -> bytes:
    """Change one character of an entry inside the signed payload; the framing stays valid."""
    assert data.count(b"evil.com") == 1
    return data.replace(b"evil.com", b"evil.con")


def verify(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    rc = main(["verify", *(str(a) for a in argv)])
    out, err = capsys.readouterr()
    return rc, out, err


# --- the valid list ---------------------------------------------------------------------


def test_a_list_built_and_published_by_the_distributor_verifies(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    indicators = [
        Indicator(IndicatorType.DOMAIN, "evil.com", "feed-a", 1, "malware", 90),
        Indicator(IndicatorType.DOMAIN, "phish.example", "feed-a", 2, "phishing", 80),
        Indicator(IndicatorType.IP, "192.0.2.66", "feed-b", 1, "c2", 70),
    ]
    cap = Capacity(
        supported=frozenset({"domain", "host", "url", "ip", "cidr"}),
        per_type={},
        max_entries=1000,
        max_bytes=1024 * 1024,
    )
    result = build_and_publish(
        parsed=[(indicators, "vendor")],
        feed_reports=[],
        cap=cap,
        tenant=TENANT,
        profile=PROFILE,
        keys=keys.online,
        out=tmp_path / "out",
        valid_for=timedelta(days=7),
    )
    rc, out, err = verify(
        capsys,
        result.path,
        "--trust",
        keys.root_pub,
        "--tenant",
        TENANT,
        "--profile",
        PROFILE,
    )
    assert (rc, err) == (EXIT_OK, "")
    assert out.startswith(f"OK: tenant {TENANT}, profile {PROFILE}, version 1, 2 domain, 1 ip;")
    assert keys.online.signing.keyid[:16] in out
    assert f"{result.bundle_bytes} bytes" in out


def test_without_tenant_and_profile_verify_inspects_any_list(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "list.stockade"
    path.write_bytes(signed(keys.online, version=3, tenant="globex", profile="edge"))
    rc, out, _ = verify(capsys, path, "--trust", keys.root_pub)
    assert rc == EXIT_OK
    assert out.startswith("OK: tenant globex, profile edge, version 3, 2 domain, 1 ip;")


# --- every refusal, each with its own message -------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    data: Callable[[Keys, Keys], bytes]
    extra: tuple[str, ...]
    rc: int
    says: str


CASES = [
    Case(
        "tampered",
        lambda k, _o: tampered(signed(k.online)),
        (),
        EXIT_REJECTED,
        "REJECTED (BadSignature)",
    ),
    Case(
        "rolled back",
        lambda k, _o: signed(k.online, version=4),
        ("--held-version", "5"),
        EXIT_REJECTED,
        "REJECTED (Rollback)",
    ),
    Case(
        "expired",
        lambda k, _o: signed(k.online, created=datetime(2020, 1, 1, tzinfo=UTC)),
        (),
        EXIT_REJECTED,
        "REJECTED (Expired)",
    ),
    Case(
        "wrong tenant",
        lambda k, _o: signed(k.online, tenant="globex"),
        (),
        EXIT_REJECTED,
        "REJECTED (WrongTenant)",
    ),
    Case(
        "wrong profile",
        lambda k, _o: signed(k.online, profile="utm-large"),
        (),
        EXIT_REJECTED,
        "REJECTED (WrongProfile)",
    ),
    Case(
        "oversize",
        lambda k, _o: signed(k.online),
        ("--max-bytes", "512"),
        EXIT_REJECTED,
        "REJECTED (TooLarge)",
    ),
    Case(
        # our keyring, but the list signed by another distributor's online key
        "unknown key",
        lambda k, o: signed(OnlineKeys(o.online.signing, k.online.keyring)),
        (),
        EXIT_REJECTED,
        "REJECTED (UnknownKey)",
    ),
    Case(
        "garbage",
        lambda _k, _o: b"<html>502 Bad Gateway</html>\n",
        (),
        EXIT_MALFORMED,
        "REJECTED (MalformedArtifact)",
    ),
]


def _run_case(
    case: Case, keys: Keys, other: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    path = tmp_path / f"{case.name.replace(' ', '-')}.stockade"
    path.write_bytes(case.data(keys, other))
    base = ("--trust", str(keys.root_pub), "--tenant", TENANT, "--profile", PROFILE)
    return verify(capsys, path, *base, *case.extra)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_refusal_names_its_rule(
    case: Case, keys: Keys, other_keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = _run_case(case, keys, other_keys, tmp_path, capsys)
    assert rc == case.rc, err
    assert out == ""
    assert err.startswith(case.says), err


def test_refusal_messages_are_all_distinct(
    keys: Keys, other_keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    messages = set()
    for case in CASES:
        _, _, err = _run_case(case, keys, other_keys, tmp_path, capsys)
        messages.add(err.split(":", 1)[0])  # "REJECTED (Kind)", without file-specific details
    rc, _, err = verify(capsys, tmp_path / "x", "--trust", tmp_path / "absent.pub")
    assert rc == EXIT_USAGE
    messages.add(err.replace(str(tmp_path), "<tmp>").strip())
    assert len(messages) == len(CASES) + 1, messages


def test_malformed_has_its_own_exit_code() -> None:
    assert len({EXIT_OK, EXIT_REJECTED, EXIT_USAGE, EXIT_MALFORMED}) == 4


def test_rollback_against_the_list_held_in_a_state_dir(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / STATE_LIST).write_bytes(signed(keys.online, version=9))
    candidate = tmp_path / "v8.stockade"
    candidate.write_bytes(signed(keys.online, version=8))
    base = ("--trust", keys.root_pub, "--tenant", TENANT, "--profile", PROFILE)
    rc, out, err = verify(capsys, candidate, *base, "--state-dir", state_dir)
    assert rc == EXIT_REJECTED
    assert err.startswith("REJECTED (Rollback)")
    assert "held version 9" in err
    newer = tmp_path / "v10.stockade"
    newer.write_bytes(signed(keys.online, version=10))
    rc, out, err = verify(capsys, newer, *base, "--state-dir", state_dir)
    assert rc == EXIT_OK, err
    assert "version 10" in out


def test_an_unusable_state_dir_list_is_a_warning_not_a_failure(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / STATE_LIST).write_bytes(b"torn")
    candidate = tmp_path / "v1.stockade"
    candidate.write_bytes(signed(keys.online))
    rc, out, err = verify(capsys, candidate, "--trust", keys.root_pub, "--state-dir", state_dir)
    assert rc == EXIT_OK
    assert out.startswith("OK:")
    assert "warning: saved list" in err


# --- operator errors --------------------------------------------------------------------


def test_missing_trust_file_is_a_clear_usage_error(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "list.stockade"
    path.write_bytes(signed(keys.online))
    absent = tmp_path / "nowhere" / "root.pub"
    rc, _, err = verify(capsys, path, "--trust", absent)
    assert rc == EXIT_USAGE
    assert (
        err == f"stockade-sensor: error: cannot read root key {absent}: No such file or directory\n"
    )


def test_a_trust_file_that_is_not_a_key_is_a_clear_usage_error(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "list.stockade"
    path.write_bytes(signed(keys.online))
    rc, _, err = verify(capsys, path, "--trust", path)
    assert rc == EXIT_USAGE
    assert err.startswith(f"stockade-sensor: error: root key {path}: ")


def test_missing_list_file_is_a_usage_error(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = verify(capsys, tmp_path / "absent.stockade", "--trust", keys.root_pub)
    assert rc == EXIT_USAGE
    assert "absent.stockade" in err
    assert "No such file" in err


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--max-bytes", "0"),
        ("--max-bytes", "-5"),
        ("--max-bytes", "64MiB"),
        ("--max-version-jump", "0"),
        ("--held-version", "-1"),
    ],
)
def test_impossible_limits_are_usage_errors_not_tracebacks(
    keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    path = tmp_path / "list.stockade"
    path.write_bytes(signed(keys.online))
    with pytest.raises(SystemExit) as info:
        main(["verify", str(path), "--trust", str(keys.root_pub), flag, value])
    assert info.value.code == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err
    assert "Traceback" not in err


# --- the installed command --------------------------------------------------------------


def test_the_installed_command(keys: Keys, tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "stockade-sensor"
    if not exe.exists():
        pytest.skip(f"{exe} not installed (pip install -e .)")
    good = tmp_path / "good.stockade"
    good.write_bytes(signed(keys.online, version=2))
    bad = tmp_path / "bad.stockade"
    bad.write_bytes(tampered(signed(keys.online, version=2)))
    base = ["--trust", str(keys.root_pub), "--tenant", TENANT, "--profile", PROFILE]

    ok = subprocess.run(
        [str(exe), "verify", str(good), *base], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == EXIT_OK, ok.stderr
    assert ok.stdout.startswith(f"OK: tenant {TENANT}, profile {PROFILE}, version 2, ")

    refused = subprocess.run(
        [str(exe), "verify", str(bad), *base], capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == EXIT_REJECTED
    assert refused.stdout == ""
    assert refused.stderr.startswith("REJECTED (BadSignature)")


# --- run: the list given on the command line --------------------------------------------


def test_run_given_the_saved_list_again_does_not_report_a_rollback(
    keys: Keys,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A unit file with both ``--state-dir`` and ``--list``: on restart the saved list and the
    given one are the same bytes, which is not a rollback."""
    data = signed(keys.online, version=2)
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    (state_dir / STATE_LIST).write_bytes(data)
    given = tmp_path / "v2.stockade"
    given.write_bytes(data)
    pcap = tmp_path / "empty.pcap"
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    argv = ["run", "--trust", str(keys.root_pub), "--tenant", TENANT, "--profile", PROFILE]
    argv += ["--state-dir", str(state_dir), "--list", str(given), "--pcap", str(pcap)]
    with caplog.at_level(logging.INFO, logger="stockade.sensor"):
        rc = main(argv)
    err = capsys.readouterr().err
    assert rc == EXIT_OK, err
    assert '"list_version": 2' in err
    assert "already in force" in caplog.text
    assert "refused" not in caplog.text
    assert "Rollback" not in caplog.text
