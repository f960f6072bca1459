"""Hosts files (format ``hosts``): ``0.0.0.0 a.example b.example  # comment``.

Only lines that point names at a sink address (unspecified or loopback: ``0.0.0.0``,
``127.0.0.1``, ``::``, ``::1``) are block entries; a line mapping a name to a real address
pins that name, it does not block it, and is refused as 'not a blocking address'. The
boilerplate names every hosts file carries (localhost, broadcasthost, ip6-*) are counted
under 'local name'. Option ``match`` defaults to ``exact`` (HOST): a hosts file only ever
blocks the exact names it lists.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from blocklist.errors import InvalidIndicator
from distributor.indicators import Indicator

from .base import Collector, FeedFormat, OptionSpec, ParseReport, clean_lines, host_or_ip, option

if TYPE_CHECKING:
    from distributor.config import FeedConfig

OPTIONS = {
    "match": OptionSpec(
        "str",
        "exact",
        ("suffix", "exact"),
        "exact: block only the listed name (HOST); suffix: also its subdomains (DOMAIN)",
    ),
}

LOCAL_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "localhost4",
        "localhost4.localdomain4",
        "localhost6",
        "localhost6.localdomain6",
        "local",
        "localdomain",
        "broadcasthost",
        "0.0.0.0",
    }
)


def is_sink_address(text: str) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return address.is_unspecified or address.is_loopback


def is_local_name(name: str) -> bool:
    lowered = name.lower().rstrip(".")
    return lowered in LOCAL_NAMES or lowered.startswith("ip6-")


def add_hosts_line(
    out: Collector, line_no: int, line: str, *, suffix: bool, internal: bool
) -> None:
    """Parse one hosts-file line into ``out``; shared with the AdBlock parser."""
    fields = line.split()
    address, names = fields[0], fields[1:]
    if not is_sink_address(address):
        try:
            ipaddress.ip_address(address)
        except ValueError:
            out.reject("missing address", line_no, line)
            return
        out.reject("not a blocking address", line_no, line)
        return
    if not names:
        out.reject("address without names", line_no, line)
        return
    for name in names:
        if is_local_name(name):
            out.reject("local name", line_no, line)
            continue
        try:
            kind, value = host_or_ip(name, suffix=suffix, internal=internal)
        except InvalidIndicator as e:
            out.reject(e.reason, line_no, line)
            continue
        out.add(kind, value, line_no)


def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "hosts")
    suffix = option(feed, OPTIONS, "match") == "suffix"
    for line_no, line in clean_lines(lines, out.report):
        add_hosts_line(out, line_no, line, suffix=suffix, internal=feed.internal)
    return out.result()


FORMAT = FeedFormat(
    "hosts", parse, OPTIONS, description="hosts file: '0.0.0.0 name [name...]' lines"
)
