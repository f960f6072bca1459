"""How the capture and decode counters are named, and a summary fit for a status line.

Every counter is ``<category>.<what>`` (``packets`` alone counts frames given to ``decode``):

``capture.*``
    reading files: ``frames``, ``truncated`` (the file ended mid-record), ``bad_block``
    (a pcapng block dpkt could not decode, skipped), ``unknown_interface``.
``events.<kind>``
    events emitted: ``events.dns_query``, ``events.dns_answer``, ``events.http_request``,
    ``events.tls_sni``, ``events.tcp_connect``.
``malformed.<proto>.<reason>``
    a packet, message or stream that breaks its wire format and was skipped, e.g.
    ``malformed.ipv4.short_header``, ``malformed.dns.pointer_loop``,
    ``malformed.dns.forward_pointer``, ``malformed.http.invalid_request_line``,
    ``malformed.tls.not_handshake``. The reasons are fixed strings in the code, never
    packet data, so the set of names stays small.
``skipped.<reason>``
    fine, but nothing for us: ``skipped.not_ip``, ``skipped.linktype``, ``skipped.ip_proto``,
    ``skipped.udp.port``, ``skipped.tcp.no_app``, ``skipped.tcp.retransmission``,
    ``skipped.ipv4.fragment``, ``skipped.ipv6.fragment``, ``skipped.dns.no_question``,
    ``skipped.dns.opcode``, ``skipped.tls.not_client_hello``, ``skipped.tls.no_sni``,
    ``skipped.http.chunked_body``, ``skipped.http.h2_prior_knowledge``,
    ``skipped.tunnel_depth``.
``partial.<reason>``
    decoded from an incomplete unit: ``partial.ipv4.first_fragment``,
    ``partial.ipv6.first_fragment``, ``partial.ipv4.cut_by_snaplen``,
    ``partial.ipv6.cut_by_snaplen``, ``partial.udp.cut``, ``partial.dns.message_over_bound``,
    ``partial.http.head_over_bound``, ``partial.tls.client_hello_over_bound``.
    QUIC and IPv6 fragments: ``skipped.quic.version`` (not QUIC v1), ``skipped.quic.no_initial``,
    ``skipped.quic.no_crypto``, ``skipped.quic.retransmission``,
    ``partial.quic.client_hello_over_bound``, ``malformed.quic.<reason>`` (a fixed reason of
    ``sensor/quic.py``, e.g. ``decrypt_failed``); ``skipped.ipv6.fragment_cut``,
    ``skipped.ipv6.fragments_expired``, ``malformed.ipv6.fragment_overlap`` and the other
    ``malformed.ipv6.fragment_*`` reasons of ``sensor/ipfrag.py``.
``flows.*``
    TCP state given up: ``flows.evicted`` (LRU, over ``max_flows``), ``flows.evicted.memory``
    (over ``max_buffered_bytes``), ``flows.gap`` (a hole wider than the reassembly bound),
    ``flows.evicted.fragments`` and ``flows.evicted.quic`` (their tables' bounds).
``error.internal``
    a decoder bug caught by the last-resort guard; should stay 0 (tests assert it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Final

__all__ = ["CATEGORIES", "totals"]

CATEGORIES: Final = (
    "packets",
    "events",
    "malformed",
    "skipped",
    "partial",
    "flows",
    "error",
)


def totals(counters: Mapping[str, int]) -> dict[str, int]:
    """Sum per category (``{"packets": 10, "malformed": 2, ...}``), every category present.

    ``capture.*`` counters are not summed (frames and truncations do not add up): read them
    by name.
    """
    out: Counter[str] = Counter({category: 0 for category in CATEGORIES})
    for name, value in counters.items():
        category = name.split(".", 1)[0]
        if category in out:
            out[category] += value
    return dict(out)
