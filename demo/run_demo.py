"""`make demo`: the whole Stockade loop on this machine, explained in plain words.

1. generate a capture of an office workstation (scapy) that, among benign traffic, contacts
   a few publicly reported malicious domains over DNS, HTTP and TLS;
2. distributor: make keys, ingest the demo feeds (five formats), build and sign a list for the
   ``linux-sensor`` profile, register an appliance token, serve on loopback;
3. sensor: pull the list with the token, verify it against the pinned root key, replay the
   capture, write alerts;
4. show that a tampered copy of the list is refused;
5. say what happened.

Everything is written under ``demo/out`` (removed at the start of each run).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from distributor.condense.pipeline import MERGED_REASONS

HERE = Path(__file__).resolve().parent
OUT = Path(os.environ.get("STOCKADE_DEMO_OUT", HERE / "out"))
BIN = Path(sys.executable).parent
TENANT = "demo"
PROFILE = "linux-sensor"


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def run(
    *args: str | Path, capture: bool = False, check: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = [str(a) for a in args]
    shown = " ".join(
        Path(c).name if c.startswith(str(BIN)) else c.replace(str(HERE.parent) + "/", "")
        for c in cmd
    )
    print(f"$ {shown}", flush=True)
    proc = subprocess.run(cmd, text=True, capture_output=capture, check=False)
    if check and proc.returncode != 0:
        if capture:
            sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"demo: command failed with exit code {proc.returncode}: {shown}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_healthy(url: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/v1/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"demo: distributor did not come up at {url}")


def main() -> int:
    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    pcap = OUT / "workstation.pcap"
    keys = OUT / "keys"
    lists = OUT / "lists"
    tokens = OUT / "tokens.toml"
    token_file = OUT / "appliance.token"
    state = OUT / "sensor-state"
    alerts = OUT / "alerts.jsonl"

    step("1. Generate the demo capture (scapy): a workstation session with a few bad contacts")
    run(sys.executable, HERE / "make_capture.py", pcap)

    step("2. Distributor: keys, feeds -> signed list for profile linux-sensor")
    run(BIN / "stockade-distributor", "keygen", "--dir", keys)
    # build and explain take the same inputs: the same inputs give the same list
    inputs = ("--config", HERE / "feeds" / "feeds.toml", "--profile", PROFILE)
    inputs += ("--tenant", TENANT, "--keys", keys)
    build = run(BIN / "stockade-distributor", "build", *inputs, "--out", lists, capture=True)
    print(build.stdout, end="")
    print("Why is a host of the exploit-kit campaign blocked? (stockade-distributor explain)")
    why = run(BIN / "stockade-distributor", "explain", "xktzjm.topcentc.top", *inputs, capture=True)
    print(why.stdout, end="")
    proc = run(
        BIN / "stockade-distributor",
        "token",
        "add",
        "--tokens",
        tokens,
        "--tenant",
        TENANT,
        "--profile",
        PROFILE,
        "--name",
        "office-gateway-1",
        capture=True,
    )
    token_file.write_text(proc.stdout.strip() + "\n")
    token_file.chmod(0o600)
    print("(appliance token written to demo/out/appliance.token; never printed in logs)")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    step(f"3. Serve the list on loopback ({url}) and let a sensor pull, verify and replay")
    server = subprocess.Popen(
        [
            str(BIN / "stockade-distributor"),
            "serve",
            "--lists",
            str(lists),
            "--tokens",
            str(tokens),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(OUT / "distributor.log", "w"),  # noqa: SIM115
    )
    try:
        wait_healthy(url)
        sensor = run(
            BIN / "stockade-sensor",
            "run",
            "--distributor",
            url,
            "--token-file",
            token_file,
            "--trust",
            keys / "root.pub",
            "--tenant",
            TENANT,
            "--profile",
            PROFILE,
            "--state-dir",
            state,
            "--pcap",
            pcap,
            "--alerts",
            alerts,
            capture=True,
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    summary_line = next(
        (ln for ln in sensor.stderr.splitlines() if ln.startswith("summary: ")), "summary: {}"
    )
    summary = json.loads(summary_line.removeprefix("summary: "))
    for ln in sensor.stderr.splitlines():
        if "list update" in ln or "refused" in ln or "STALE" in ln:
            print("  sensor: " + ln.split(": ", 1)[-1])

    step("4. A tampered copy of the list is refused")
    published = sorted((lists / TENANT / PROFILE).glob("v*.stockade"))[-1]
    tampered = OUT / "tampered.stockade"
    data = bytearray(published.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    run(
        BIN / "stockade-sensor",
        "verify",
        published,
        "--trust",
        keys / "root.pub",
        "--tenant",
        TENANT,
        "--profile",
        PROFILE,
    )
    bad = run(
        BIN / "stockade-sensor",
        "verify",
        tampered,
        "--trust",
        keys / "root.pub",
        "--tenant",
        TENANT,
        "--profile",
        PROFILE,
        capture=True,
        check=False,
    )
    print(bad.stderr.strip() or bad.stdout.strip(), f"(exit code {bad.returncode})")
    other = run(
        BIN / "stockade-sensor",
        "verify",
        published,
        "--trust",
        keys / "root.pub",
        "--tenant",
        "another-customer",
        "--profile",
        PROFILE,
        capture=True,
        check=False,
    )
    print(other.stderr.strip(), f"(exit code {other.returncode})")

    step("5. What happened")
    report = json.loads(published.with_suffix(".json").read_text())
    feeds = report["feeds"]
    print(f"Feeds read: {len(feeds)}")
    for f in feeds:
        if "error" in f:
            print(f"  - {f['feed']}: FAILED: {f['error']}")
            continue
        rejected = f.get("rejected", {})
        why = "; ".join(f"{n} {r}" for r, n in rejected.items()) if rejected else "none rejected"
        print(f"  - {f['feed']}: {f['lines_read']} lines, {f['accepted']} accepted ({why})")
    kept = ", ".join(f"{n} {t}" for t, n in sorted(report["kept"].items()))
    print(
        f"List: version {report['version']} for tenant {TENANT}, profile {PROFILE}; union of "
        f"{report['union_block_entries']} entries -> kept {kept} and {report['allow_exceptions']} allow "
        f"exception(s); {report['bundle_bytes']} bytes, signed, expires {report['expires']}"
    )
    for reason, n in report["dropped"].items():
        verb = "merged" if reason in MERGED_REASONS else "left out"
        print(
            f"  {verb} {n}: {reason} (e.g. {'; '.join(report['dropped_examples'].get(reason, []))})"
        )
    packets = summary.get("packets", 0)
    events = {k.removeprefix("events."): v for k, v in summary.items() if k.startswith("events.")}
    malformed = {k: v for k, v in summary.items() if k.startswith("malformed.")}
    print(
        f"Sensor: list version {summary.get('list_version')} verified and enforced; "
        f"{packets} packets read; events: {events or 'none'}"
    )
    if malformed:
        print(f"  malformed packets counted and skipped: {malformed}")
    lines = alerts.read_text().splitlines() if alerts.exists() else []
    print(f"Alerts: {len(lines)} (full JSON lines in demo/out/alerts.jsonl)")
    for line in lines:
        a = json.loads(line)
        ev = a["event"]
        print(f"  - {ev['kind']:<12} {ev['src']} -> {ev['dst']}: {a['alert']['reason']}")
    if not lines:
        print("  (no alerts: something is wrong; see demo/out/distributor.log)")
        return 1
    print("\nDone. Re-run with `make demo`; run the suite with `make test`.")
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    raise SystemExit(main())
