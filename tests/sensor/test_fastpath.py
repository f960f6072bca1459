"""The decoder's fast path against its full path: identical events and counters.

``Decoder(fast_path=False)`` is the full decoder alone; ``Decoder()`` reads the common packets
in ``sensor.fastpath``. Without a prefilter (or with ``materialize``) both must give the very
same events and counters on every real capture of ``../shared/data/pcaps``, on the bench's
kind of traffic and on hand-built corner cases. With a prefilter (the matcher of a list), the
fast path returns only events that might match, but counts all of them, and the alerts the
matcher raises on what it returns are exactly the alerts of the full path.

Mutated packets are in ``test_fuzz.py``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR, DNSRROPT
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Packet

from blocklist.artifact import Action, Entry, EntryType
from blocklist.index import Index
from sensor.decode import Decoder
from sensor.events import Event
from sensor.match import Alert, Matcher
from sensor.pcapfile import DLT_EN10MB, Frame, iter_capture
from tests.conftest import SHARED_DATA

PCAPS = SHARED_DATA / "pcaps"
REAL_CAPTURES = (
    sorted(str(p) for p in PCAPS.rglob("*") if p.suffix in (".pcap", ".pcapng"))
    if PCAPS.is_dir()
    else []
)

EVIL = Entry(EntryType.DOMAIN, "evil-1.com", Action.BLOCK, 200, "malware", ("feed-a",))
C2 = Entry(EntryType.HOST, "c2.bad-2.net", Action.BLOCK, 220, "c2", ("feed-b",))
CNAME_TARGET = Entry(EntryType.DOMAIN, "cdn-9.evil.org", Action.ALERT, 150, "malware", ())
BAD_IP = Entry(EntryType.IP, "203.0.113.66", Action.BLOCK, 100, "c2", ("feed-b",))
BAD_NET6 = Entry(EntryType.CIDR, "2001:db8:bad::/48", Action.ALERT, 50, "scanner", ())
OK_UNDER_EVIL = Entry(EntryType.DOMAIN, "ok.evil-1.com", Action.ALLOW, 250, "allowlist", ())
ENTRIES = (EVIL, C2, CNAME_TARGET, BAD_IP, BAD_NET6, OK_UNDER_EVIL)


def _run(
    frames: Iterable[Frame], decoder: Decoder, matcher: Matcher | None = None
) -> tuple[list[Event], list[Alert], Counter[str]]:
    events: list[Event] = []
    alerts: list[Alert] = []
    for frame in frames:
        got = decoder.decode(frame)
        events += got
        if matcher is not None:
            for event in got:
                alerts += matcher.match(event)
    tail = decoder.flush()
    events += tail
    if matcher is not None:
        for event in tail:
            alerts += matcher.match(event)
    assert decoder.counters["error.internal"] == 0, decoder.counters
    return events, alerts, decoder.counters


def assert_same(frames: Sequence[Frame], matcher: Matcher | None = None) -> list[Event]:
    """The fast path gives the full path's events and counters; with ``matcher`` as the
    prefilter it gives a subset of the events, the same counters and the same alerts."""
    slow_events, slow_alerts, slow_counters = _run(frames, Decoder(fast_path=False), matcher)
    fast_events, fast_alerts, fast_counters = _run(frames, Decoder(), matcher)
    assert fast_events == slow_events
    assert fast_counters == slow_counters
    if matcher is not None:
        assert fast_alerts == slow_alerts
        filtered = Decoder()
        filtered.prefilter = matcher
        some_events, some_alerts, some_counters = _run(frames, filtered, matcher)
        assert some_counters == slow_counters
        assert some_alerts == slow_alerts
        assert all(e in slow_events for e in some_events)
        materialized = Decoder()
        materialized.prefilter = matcher
        materialized.materialize = True
        assert _run(frames, materialized, matcher)[0] == slow_events
    return slow_events


def _frames(path: str) -> list[Frame]:
    return list(iter_capture(path, Counter()))


def _listing(events: Sequence[Event]) -> Matcher:
    """A list holding some of the names and addresses these events carry, so that the
    prefilter both rules things out and in."""
    entries = list(ENTRIES)
    names = sorted({e.name for e in events if e.name and ":" not in e.name})
    for name in names[::3]:
        entries.append(Entry(EntryType.HOST, name, Action.BLOCK, 100, "malware", ()))
    for name in names[1::7]:
        parent = name.split(".", 1)[-1]
        entries.append(Entry(EntryType.DOMAIN, parent, Action.ALERT, 90, "malware", ()))
    addresses = sorted({e.dst for e in events})
    for address in addresses[::5]:
        entries.append(Entry(EntryType.IP, address, Action.BLOCK, 100, "c2", ()))
    unique = {(e.type, e.value): e for e in entries}
    return Matcher(Index(tuple(unique.values())), 3)


# --- real captures ----------------------------------------------------------------------


@pytest.mark.shared
@pytest.mark.parametrize(
    "path", REAL_CAPTURES, ids=[str(Path(p).relative_to(PCAPS)) for p in REAL_CAPTURES]
)
def test_fast_path_decodes_every_real_capture_like_the_full_path(
    shared_data: Path, path: str
) -> None:
    frames = _frames(path)
    events = assert_same(frames)
    assert_same(frames, _listing(events))


# --- built packets ------------------------------------------------------------------------

MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def frame(pkt: Packet, ts: float = 1.0) -> Frame:
    return Frame(ts, DLT_EN10MB, bytes(pkt))


def eth(*layers: Packet) -> Packet:
    pkt: Packet = Ether(**MAC)
    for layer in layers:
        pkt = pkt / layer
    return pkt


def v4(sport: int = 40000, dport: int = 53, src: str = "10.0.0.1") -> Packet:
    return IP(src=src, dst="192.0.2.53") / UDP(sport=sport, dport=dport)


def v6(sport: int = 40000, dport: int = 53) -> Packet:
    return IPv6(src="2001:db8::1", dst="2001:db8::53") / UDP(sport=sport, dport=dport)


def response(name: str, answers: list[Packet], **kw: object) -> Packet:
    return DNS(id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=answers or None, **kw)


def corner_cases() -> list[Frame]:
    cname = DNSRR(rrname="www.evil-1.com", type="CNAME", rdata="cdn-9.evil.org")
    a = DNSRR(rrname="cdn-9.evil.org", type="A", rdata="203.0.113.66")
    a2 = DNSRR(rrname="www.fine-3.com", type="A", rdata="203.0.113.7")
    aaaa = DNSRR(rrname="www.fine-3.com", type="AAAA", rdata="2001:db8:bad::1")
    compressed = response("www.evil-1.com", [cname, a]).compress()
    packets: list[Packet] = [
        eth(v4() / DNS(id=1, rd=1, qd=DNSQR(qname="www.fine-3.com"))),
        eth(v4() / DNS(id=1, rd=1, qd=DNSQR(qname="WwW.EvIl-1.CoM"))),  # 0x20 case
        eth(v4() / DNS(id=1, rd=1, qd=DNSQR(qname="ok.evil-1.com"))),  # an allow entry
        eth(v4() / DNS(id=1, rd=1, qd=DNSQR(qname="c2.bad-2.net", qtype="AAAA"))),
        eth(v6(dport=5353) / DNS(id=1, rd=1, qd=DNSQR(qname="x.c2.bad-2.net"))),
        eth(Dot1Q(vlan=5), v4() / DNS(id=2, qd=DNSQR(qname="tagged.fine-3.com"))),
        eth(Dot1AD(vlan=5), Dot1Q(vlan=6), v6() / DNS(id=2, qd=DNSQR(qname="qinq.evil-1.com"))),
        eth(Dot1AD(vlan=5), Dot1AD(vlan=6), v4() / DNS(qd=DNSQR(qname="stacked.fine-3.com"))),
        eth(v4(53, 40000) / response("www.fine-3.com", [a2, aaaa])),
        eth(v4(53, 40000) / response("www.fine-3.com", [a2])),
        eth(v4(53, 40000) / compressed),
        eth(v6(53, 40000) / response("www.evil-1.com", [cname, a])),  # uncompressed
        eth(v4(53, 40000) / response("nx.fine-3.com", [], rcode=3)),
        eth(v4(53, 40000) / response("opt.fine-3.com", [a2], ar=DNSRROPT(rclass=1232))),
        eth(v4() / DNS(id=1, qd=DNSQR(qname="we.ird\\.name"))),  # a dot inside a label
        eth(v4() / DNS(id=1, qd=DNSQR(qname=b"bin\x01ary.fine-3.com"))),  # escaped byte
        eth(v4() / DNS(id=1, qd=DNSQR(qname="."))),  # the root
        eth(v4() / DNS(id=1, opcode=4, qd=DNSQR(qname="notify.fine-3.com"))),
        eth(v4() / DNS(id=1, qd=[DNSQR(qname="a.fine-3.com"), DNSQR(qname="c2.bad-2.net")])),
        eth(v4() / DNS(id=1, qdcount=0)),
        eth(v4(40000, 123) / (b"\x1b" + bytes(47))),  # NTP: not ours
        eth(v4(40000, 443) / (b"\xc3" + bytes(1250))),  # a QUIC-looking datagram
        eth(IP(src="10.0.0.1", dst="203.0.113.66") / TCP(sport=40001, dport=443, flags="S")),
        eth(IP(src="10.0.0.1", dst="203.0.113.9") / TCP(sport=40002, dport=443, flags="S")),
        eth(IP(src="10.0.0.1", dst="203.0.113.9") / TCP(sport=40002, dport=443, flags="A")),
        eth(IP(src="10.0.0.1", dst="203.0.113.9") / TCP(sport=40003, dport=443, flags="PA") / b"x"),
        eth(IPv6(src="2001:db8::1", dst="2001:db8:bad::9") / TCP(sport=1, dport=80, flags="S")),
        eth(IP(src="10.0.0.1", dst="192.0.2.1", proto=1) / (b"\x08\x00" + bytes(30))),
        eth(IP(src="10.0.0.1", dst="192.0.2.1", flags="MF") / UDP(dport=53) / (b"x" * 20)),
        eth(IP(src="10.0.0.1", dst="192.0.2.1", len=500) / UDP(dport=53) / (b"x" * 20)),
    ]
    frames = [frame(p, ts=1.0 + i) for i, p in enumerate(packets)]
    # Damage the fast path must leave to the full decoder: cut inside the answers.
    whole = bytes(eth(v4(53, 40000) / compressed))
    frames.append(Frame(50.0, DLT_EN10MB, whole[:-3]))
    return frames


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(Index(ENTRIES), 1)


def test_corner_cases_decode_alike(matcher: Matcher) -> None:
    frames = corner_cases()
    events = assert_same(frames, matcher)
    names = {e.name for e in events}
    assert {"www.evil-1.com", "www.fine-3.com", "c2.bad-2.net", "qinq.evil-1.com"} <= names


def test_the_prefilter_leaves_out_only_events_that_cannot_match(matcher: Matcher) -> None:
    decoder = Decoder()
    decoder.prefilter = matcher
    events, alerts, counters = _run(corner_cases(), decoder, matcher)
    assert counters["events.dns_query"] >= 8
    assert {e.name for e in events} >= {"www.evil-1.com", "c2.bad-2.net"}
    assert "www.fine-3.com" not in {e.name for e in events if e.kind == "dns_query"}
    assert all(matcher.might_match(e) for e in events)
    on = {(a.matched_on, a.indicator) for a in alerts}
    assert ("cname", "cdn-9.evil.org") in on
    assert ("answer_address", "203.0.113.66") in on
    assert ("answer_address", "2001:db8:bad::1") in on
    assert ("dst_address", "203.0.113.66") in on


def test_the_common_packets_take_the_fast_path(matcher: Matcher) -> None:
    decoder = Decoder()
    decoder.prefilter = matcher
    fast = decoder._fast
    assert fast is not None
    query = corner_cases()[0]
    assert fast.frame(query.data, query.ts) == []  # counted, nothing built
    assert decoder.counters["events.dns_query"] == 1
    ack = corner_cases()[24]
    assert fast.frame(ack.data, ack.ts) == []
    damaged = corner_cases()[-1]
    assert fast.frame(damaged.data, damaged.ts) is None  # the full decoder's business


def test_a_new_list_empties_what_the_old_one_ruled_out() -> None:
    name = "later-4.com"
    query = frame(eth(v4() / DNS(id=1, qd=DNSQR(qname=name))))
    decoder = Decoder()
    decoder.prefilter = Matcher(Index(ENTRIES), 1)
    assert decoder.decode(query) == []
    assert decoder.decode(query) == []  # from the cache
    listed = Entry(EntryType.DOMAIN, name, Action.BLOCK, 100, "malware", ())
    decoder.prefilter = Matcher(Index((*ENTRIES, listed)), 2)
    [event] = decoder.decode(query)
    assert event.name == name
    assert decoder.counters["events.dns_query"] == 3


def test_no_name_cache_gives_the_same_results(matcher: Matcher) -> None:
    frames = corner_cases() * 2
    cached = Decoder()
    cached.prefilter = matcher
    uncached = Decoder()
    uncached.prefilter = matcher
    assert uncached._fast is not None
    uncached._fast.name_cache_entries = 0
    assert _run(frames, cached, matcher)[1:] == _run(frames, uncached, matcher)[1:]


def test_bench_traffic_decodes_alike(tmp_path: Path) -> None:
    """A small capture from the sensor bench's generator: its mix of DNS, HTTP, TLS, filler
    and malformed units, replayed with fresh client ports."""
    from tests.bench.test_sensor_bench import sb

    pool = sb.build_pool(120, 5)
    path = tmp_path / "bench.pcap"
    sb.write_capture(path, pool, 1500, 5)
    frames = _frames(str(path))
    events = assert_same(frames)
    domains, hosts = sb.listed_names(5)
    entries = [Entry(EntryType.DOMAIN, d, Action.BLOCK, 200, "malware", ()) for d in domains]
    entries += [Entry(EntryType.HOST, h, Action.BLOCK, 200, "c2", ()) for h in hosts]
    assert_same(frames, Matcher(Index(entries), 1))
    assert len(events) > 500


def test_a_list_holder_gives_attached_decoders_the_list_in_force() -> None:
    from types import SimpleNamespace
    from typing import Any, cast

    from sensor.updater import ListHolder

    holder = ListHolder(cast(Any, None))
    decoder = Decoder()
    holder.attach(decoder)
    assert decoder.prefilter is None  # no list yet: every event is built
    holder._swap(cast(Any, SimpleNamespace(compact=Index(ENTRIES).list)), b"list")
    assert decoder.prefilter is holder.matcher is not None
    query = frame(eth(v4() / DNS(id=1, qd=DNSQR(qname="www.fine-3.com"))))
    assert decoder.decode(query) == []
    assert decoder.counters["events.dns_query"] == 1
