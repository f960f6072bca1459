"""`make demo` end to end: distributor builds and serves, sensor pulls, verifies and alerts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "demo-out"
    env = {**os.environ, "STOCKADE_DEMO_OUT": str(out)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "demo" / "run_demo.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "REJECTED (BadSignature)" in text
    assert "REJECTED (WrongTenant)" in text
    alerts = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    seen = {(a["event"]["kind"], a["alert"]["indicator"]) for a in alerts}
    for expected in [
        ("dns_query", "drivres-update.info"),
        ("dns_query", "cdn.asiaworldremit.com"),
        ("tls_sni", "cdn.asiaworldremit.com"),
        ("http_request", "xktzjm.topcentc.top"),
        ("dns_answer", "45.142.214.48"),
        ("dns_query", "login.micros0ft-support.com"),
    ]:
        assert expected in seen, f"no alert for {expected}; got {sorted(seen)}"
    # The beacon by address (a ClientHello without SNI to the C2 address) shows no name at
    # all: its connection attempt alerts on the destination address, once.
    [beacon] = [
        a
        for a in alerts
        if a["event"]["kind"] == "tcp_connect" and a["event"]["dst"] == "45.142.214.48"
    ]
    assert beacon["alert"]["matched_on"] == "dst_address"
    assert beacon["alert"]["indicator"] == "45.142.214.48"
    assert beacon["event"]["dport"] == 443
    indicators = {a["alert"]["indicator"] for a in alerts}
    # The allow exception in the demo's AdBlock feed holds, and benign traffic never alerts.
    assert "status.micros0ft-support.com" not in indicators
    assert not any("wikipedia" in i or "debian" in i or "github" in i for i in indicators)
    # Every alert names the list version it was matched under and says why.
    assert {a["list_version"] for a in alerts} == {1}
    assert all(a["alert"]["reason"] for a in alerts)
    # The sensor kept the verified list on disk for the next start.
    assert (out / "sensor-state" / "list.stockade").exists()
    # The token was never printed or logged.
    token = (out / "appliance.token").read_text().strip()
    assert token not in text and token not in proc.stderr
    assert token not in (out / "distributor.log").read_text()
