"""Plain lists: one domain (format ``domains``) or one URL (format ``urls``) per line.

``domains`` reads the urlhaus-filter ``domains`` and ``wildcard`` lists and their many peers:
``#``, ``!`` and ``;`` comment lines, inline `` # comments``, an IP literal accepted as an IP
(those lists mix them), and ``*.example.com`` taken as a suffix entry for example.com (the
wildcard form means "every name below"; the apex is included, as every consumer of these
lists does). Option ``match``: ``suffix`` (default: DOMAIN, the name and its subdomains) or
``exact`` (HOST, only the name itself). A ``*.`` entry is always a suffix entry.

``urls`` reads one absolute URL per line (OpenPhish and the like); a line without a scheme
is refused as 'not a URL' rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from blocklist.errors import InvalidIndicator
from distributor.indicators import Indicator, IndicatorType
from tests.blocklist.reference_names import normalize_url

from .base import Collector, FeedFormat, OptionSpec, ParseReport, clean_lines, host_or_ip, option

if TYPE_CHECKING:
    from distributor.config import FeedConfig

DOMAIN_OPTIONS = {
    "match": OptionSpec(
        "str",
        "suffix",
        ("suffix", "exact"),
        "suffix: block the name and its subdomains (DOMAIN); exact: only the name (HOST)",
    ),
}


def parse_domains(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "domains")
    suffix = option(feed, DOMAIN_OPTIONS, "match") == "suffix"
    internal = feed.internal
    for line_no, line in clean_lines(lines, out.report, comment_prefixes=("#", "!", ";")):
        if " " in line or "\t" in line:
            out.reject("more than one field", line_no, line)
            continue
        token, wildcard = line, False
        if token.startswith("*."):
            token, wildcard = token[2:], True
        try:
            kind, value = host_or_ip(token, suffix=suffix or wildcard, internal=internal)
        except InvalidIndicator as e:
            out.reject(e.reason, line_no, line)
            continue
        out.add(kind, value, line_no)
    return out.result()


def parse_urls(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "urls")
    internal = feed.internal
    for line_no, line in clean_lines(lines, out.report, comment_prefixes=("#", "!")):
        if " " in line or "\t" in line:
            out.reject("more than one field", line_no, line)
            continue
        if "://" not in line:
            out.reject("not a URL", line_no, line)
            continue
        try:
            value = normalize_url(line, allow_internal=internal)
        except InvalidIndicator as e:
            out.reject(e.reason, line_no, line)
            continue
        out.add(IndicatorType.URL, value, line_no)
    return out.result()


DOMAINS = FeedFormat(
    "domains",
    parse_domains,
    DOMAIN_OPTIONS,
    description="one domain, host name or IP per line; '*.example.com' wildcards",
)
URLS = FeedFormat("urls", parse_urls, {}, description="one absolute URL per line")
