"""Address lists (format ``ipcidr``): one IP, CIDR or range per line, IPv4 and IPv6.

Reads Spamhaus DROP/EDROP/DROPv6 (``1.2.3.0/24 ; SBL123``, ``;`` header), FireHOL
``.netset``/``.ipset`` (``#`` header) and plain IP lists. ``#`` and ``;`` start a comment
anywhere on a line (neither can occur in an address). A range ``a.b.c.d-e.f.g.h`` becomes
the minimal set of CIDRs; ranges over 2**24 addresses are refused, since no threat feed means
to block a /8 through a range. A /32 or /128 is an IP indicator, anything wider a CIDR.
Non-global space and too-broad prefixes are refused by ``blocklist.names`` unless the feed
is ``internal``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING

from blocklist.errors import InvalidIndicator
from blocklist.names import normalize_cidr, normalize_ip

from ..indicators import Indicator, IndicatorType
from .base import Collector, FeedFormat, ParseReport, clean_lines, pauses_gc

if TYPE_CHECKING:
    from ..config import FeedConfig

MAX_RANGE_ADDRESSES = 1 << 24


def to_indicator(text: str, internal: bool) -> tuple[IndicatorType, str]:
    """An address or prefix as IP (single address) or CIDR; raises ``InvalidIndicator``."""
    if "/" not in text:
        return IndicatorType.IP, normalize_ip(text, allow_internal=internal)
    value = normalize_cidr(text, allow_internal=internal)
    address, _, prefix = value.rpartition("/")
    if prefix == ("128" if ":" in address else "32"):
        return IndicatorType.IP, address
    return IndicatorType.CIDR, value


def range_to_indicators(
    first_text: str, last_text: str, internal: bool
) -> list[tuple[IndicatorType, str]]:
    """The CIDRs covering an inclusive address range; raises ``InvalidIndicator``."""
    text = f"{first_text}-{last_text}"
    try:
        first = ipaddress.ip_address(first_text)
        last = ipaddress.ip_address(last_text)
    except ValueError as e:
        raise InvalidIndicator(text, "not an address range") from e
    if first.version != last.version:
        raise InvalidIndicator(text, "range mixes IPv4 and IPv6")
    if int(last) < int(first):
        raise InvalidIndicator(text, "range end before start")
    if int(last) - int(first) + 1 > MAX_RANGE_ADDRESSES:
        raise InvalidIndicator(text, "range too large")
    nets = ipaddress.summarize_address_range(first, last)
    return [to_indicator(str(net), internal) for net in nets]


@pauses_gc
def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "ipcidr")
    add = out.add
    internal = feed.internal
    for line_no, line in clean_lines(
        lines,
        out.report,
        comment_prefixes=("#", ";"),
        inline_comments="#;",
        inline_needs_space=False,
    ):
        fields = line.split()
        if len(fields) == 1:
            token = fields[0]
        elif len(fields) == 3 and fields[1] == "-":
            token = f"{fields[0]}-{fields[2]}"
        else:
            out.reject("more than one field", line_no, line)
            continue
        try:
            if "-" in token:
                first, _, last = token.partition("-")
                found = range_to_indicators(first, last, internal)
            else:
                kind, value = to_indicator(token, internal)
                add(kind, value, line_no)
                continue
        except InvalidIndicator as e:
            out.reject(e.reason, line_no, line)
            continue
        for kind, value in found:
            add(kind, value, line_no)
    return out.result()


FORMAT = FeedFormat(
    "ipcidr", parse, {}, description="one IP, CIDR or a-b range per line; '#' and ';' comments"
)
