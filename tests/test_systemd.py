"""The shipped units are valid for systemd itself (static checks: PID 1 here is not systemd)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UNITS = sorted((REPO / "systemd").glob("*.service")) + sorted((REPO / "systemd").glob("*.timer"))
VENV_BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="no systemd-analyze"
)


def _localized(unit: Path, tmp: Path) -> Path:
    """Copy a unit, pointing ExecStart at this checkout's console scripts."""
    text = unit.read_text().replace("/usr/local/bin/", f"{VENV_BIN}/")
    out = tmp / unit.name
    out.write_text(text)
    return out


def test_every_unit_is_shipped() -> None:
    names = {u.name for u in UNITS}
    assert {"stockade-sensor.service", "stockade-distributor.service"} <= names


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies_cleanly(unit: Path, tmp_path: Path) -> None:
    local = _localized(unit, tmp_path)
    others = [_localized(u, tmp_path) for u in UNITS if u != unit]
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(local), *map(str, others)],
        capture_output=True,
        text=True,
        check=False,
    )
    # verify exits 0 on invalid values and only warns on stderr: both must be clean.
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_verify_catches_a_bad_value(tmp_path: Path) -> None:
    """The check above can fail: a broken directive does reach stderr."""
    bad = tmp_path / "broken.service"
    bad.write_text("[Service]\nExecStart=/bin/true\nRestrictNamespaces=bogus\n")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "bogus" in proc.stderr


@pytest.mark.parametrize("unit", [u for u in UNITS if u.suffix == ".service"], ids=lambda u: u.name)
def test_execstart_commands_parse(unit: Path) -> None:
    """The command line in ExecStart is one the CLI accepts (argparse would exit 2)."""
    line = next(ln for ln in unit.read_text().splitlines() if ln.startswith("ExecStart="))
    argv = line.removeprefix("ExecStart=").split()
    prog = Path(argv[0]).name
    proc = subprocess.run(
        [str(VENV_BIN / prog), *argv[1:2], "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    for flag in (a for a in argv[2:] if a.startswith("--")):
        assert flag in proc.stdout, f"{prog} {argv[1]} has no option {flag}"
