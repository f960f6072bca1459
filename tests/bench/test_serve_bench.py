"""bench/serve_bench.py in a tiny run: both servers answer every poll right (304 for the
current version, the whole new bundle for the 1% that hold the previous one), no errors.

Nothing here is timed (docs/CONVENTIONS.md): rates are only checked to be there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_tiny_run_reports_both_servers_and_no_errors() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "serve_bench.py"),
            "--appliances=300",
            "--tenants=3",
            "--entries=50",
            "--seconds=0.5",
            "--runs=1",
            "--clients=1",
            "--connections=4",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert set(figures["tools"]) == {"distributor", "fleet", "nginx"}, proc.stderr
    for kind, tool in figures["tools"].items():
        (run,) = tool["runs"]
        assert run["errors"] == 0, (kind, run["statuses"])
        assert run["statuses"].get("304", 0) > 0, (kind, run["statuses"])
        assert run["requests"] == sum(run["statuses"].values())
        assert tool["median"]["rps"] > 0 and tool["median"]["p99_ms"] > 0
    assert proc.stderr.count("zero errors: 0") == 2
