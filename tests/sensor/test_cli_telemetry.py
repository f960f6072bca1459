"""``stockade-sensor run`` with ``[telemetry]``: a replay's sightings and passive DNS reach a
real ``stockade-distributor serve --telemetry-store`` on loopback and are stored once."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from blocklist.artifact import Action, BlockList, Entry, EntryType
from distributor.build import sign_list
from distributor.keys import ROOT_PUB, OnlineKeys, keygen
from distributor.publish import publish
from distributor.store import Store
from distributor.tokens import TokenStore
from sensor.cli import EXIT_OK, main
from sensor.telemetry import SPOOL_DIR, SPOOL_SUFFIX, TELEMETRY_DIR

TENANT = "acme"
PROFILE = "linux-sensor"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _capture(path: Path) -> None:
    client, resolver = "10.0.0.23", "192.0.2.53"
    query = DNS(id=1, rd=1, qd=DNSQR(qname="www.evil.com"))
    answer = DNS(
        id=2,
        qr=1,
        rd=1,
        ra=1,
        qd=DNSQR(qname="benign.example"),
        an=DNSRR(rrname="benign.example", type="A", ttl=300, rdata="192.0.2.7"),
    )
    wrpcap(
        str(path),
        [
            Ether() / IP(src=client, dst=resolver) / UDP(sport=40001, dport=53) / query,
            Ether() / IP(src=resolver, dst=client) / UDP(sport=53, dport=40002) / answer,
        ],
    )


def test_a_replays_sightings_and_passive_dns_are_stored_once(tmp_path: Path) -> None:
    keygen(tmp_path / "keys")
    keys = OnlineKeys.load(tmp_path / "keys")
    now = datetime.now(UTC).replace(microsecond=0)
    bl = BlockList.create(
        tenant=TENANT,
        profile=PROFILE,
        version=1,
        created=now,
        expires=now + timedelta(hours=1),
        key_id=keys.signing.keyid,
        entries=[Entry(EntryType.DOMAIN, "evil.com", Action.BLOCK, 200, "c2", ("feed",))],
    )
    publish(tmp_path / "lists", TENANT, PROFILE, 1, sign_list(bl, keys), b"{}")
    tokens = TokenStore([])
    token = tokens.add("gw-1", TENANT, [PROFILE])
    (tmp_path / "tokens.toml").write_text(tokens.to_toml())
    (tmp_path / "token").write_text(token)
    pcap = tmp_path / "replay.pcap"
    _capture(pcap)
    db = tmp_path / "telemetry.db"
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "distributor.cli", "serve", "--lists", str(tmp_path / "lists"),
         "--tokens", str(tmp_path / "tokens.toml"), "--host", "127.0.0.1", "--port", str(port),
         "--telemetry-store", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    config = tmp_path / "sensor.toml"
    config.write_text(
        f'tenant = "{TENANT}"\nprofile = "{PROFILE}"\n'
        f'trust = "{tmp_path / "keys" / ROOT_PUB}"\nstate_dir = "{tmp_path / "state"}"\n'
        f'alerts = "{tmp_path / "alerts.jsonl"}"\n'
        f'[distributor]\nurl = "http://127.0.0.1:{port}"\ntoken_file = "{tmp_path / "token"}"\n'
        '[telemetry]\nenabled = true\ninternal_host = "hash"\n'
    )
    try:
        assert server.stdout is not None
        assert b"serving" in server.stdout.readline()
        for _ in range(2):  # the second replay's batch is new; nothing is stored twice
            assert main(["run", "--config", str(config), "--pcap", str(pcap)]) == EXIT_OK
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert token.encode() not in err
    with Store.open(str(db)) as store:
        [sighting] = store.sightings(TENANT)
        assert (sighting.entry_value, sighting.matched_on, sighting.count) == (
            "evil.com",
            "dns_query_name",
            2,
        )
        assert sighting.host.startswith("hmac:")  # the internal host, hashed
        [pdns] = store.passive_dns(TENANT, name="benign.example")
        assert (pdns.rrtype, pdns.rdata, pdns.ttl, pdns.count) == ("A", "192.0.2.7", 300, 2)
        assert store.telemetry_stats(TENANT).batches == 2
    spool = tmp_path / "state" / TELEMETRY_DIR / SPOOL_DIR
    assert spool.is_dir() and not list(spool.glob(f"*{SPOOL_SUFFIX}"))  # sent, then removed
