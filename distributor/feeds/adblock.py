"""AdBlock / AdGuard filter lists (format ``adblock``), the network-rule subset a DNS or IP
blocker can enforce.

Accepted:

- ``||example.com^`` -> DOMAIN (the name and its subdomains, as AdGuard Home applies it);
  ``||1.2.3.4^`` -> IP. A trailing ``^`` or ``|`` is optional.
- ``@@||example.com^`` -> the same with ``allow=True`` (an exception: evidence against
  blocking, never published as a block entry).
- ``example.com`` (AdGuard Home "domains-only" syntax) -> HOST, exactly that name; a bare
  IP -> IP; a hosts-file line ``0.0.0.0 example.com`` as the ``hosts`` format reads it.
- Rules whose options only widen or keep the rule's reach: ``$important``, ``$all``,
  ``$document`` / ``$doc``. Any other option (``$third-party``, ``$script``, ``$domain=``,
  ``$badfilter``, ``$dnstype``, ``$client``, ``$denyallow`` ...) narrows the rule to some
  requests or clients, or cancels another rule; blocking the whole name would overblock, so
  such rules are refused as 'rule with options'.

Refused with their own reasons: 'cosmetic rule' (``##``, ``#@#``, ``#?#``, ``#$#`` ...,
``$$``), 'path rule' (``||a.com/path``: option ``path_rules = "url"`` turns them into URL
indicators instead), 'regex rule', 'wildcard rule', 'address rule' (``|http://...``).
``!`` comments and ``[Adblock Plus 2.0]`` headers are comments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from blocklist.errors import InvalidIndicator
from blocklist.names import normalize_url

from ..indicators import Indicator, IndicatorType
from .base import (
    Collector,
    FeedFormat,
    OptionSpec,
    ParseReport,
    clean_lines,
    host_or_ip,
    option,
    pauses_gc,
)
from .hosts import add_hosts_line

if TYPE_CHECKING:
    from ..config import FeedConfig

OPTIONS = {
    "path_rules": OptionSpec(
        "str",
        "reject",
        ("reject", "url"),
        "reject: refuse '||host/path^' rules; url: read them as http://host/path URLs",
    ),
}

#: Options that do not narrow a rule: the whole name may be blocked.
ACCEPTED_MODIFIERS = frozenset({"important", "all", "document", "doc"})
#: Every marker holds a '#' or a '$': a line with neither is not looked at further.
COSMETIC_MARKERS = ("##", "#@#", "#?#", "#@?#", "#$#", "#@$#", "#%#", "#@%#", "$$", "$@$")
_OPTIONS_RE = re.compile(r"~?[a-z0-9_-]+(=[^,]*)?(,~?[a-z0-9_-]+(=[^,]*)?)*", re.IGNORECASE)


def split_options(rule: str) -> tuple[str, list[str] | None]:
    """``pattern$opt1,opt2`` -> (pattern, [opt1, opt2]); (rule, None) when it has none."""
    idx = rule.rfind("$")
    if idx < 0:
        return rule, None
    text = rule[idx + 1 :]
    if not _OPTIONS_RE.fullmatch(text):
        return rule, None
    return rule[:idx], [o.partition("=")[0].lower() for o in text.split(",")]


@pauses_gc
def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "adblock")
    path_urls = option(feed, OPTIONS, "path_rules") == "url"
    internal = feed.internal
    for line_no, line in clean_lines(
        lines, out.report, comment_prefixes=("!",), inline_comments=""
    ):
        if line.startswith("[") and line.endswith("]"):
            out.report.comments += 1  # [Adblock Plus 2.0], [AdGuard]
            continue
        if ("#" in line or "$" in line) and any(marker in line for marker in COSMETIC_MARKERS):
            out.reject("cosmetic rule", line_no, line)
            continue
        if line.startswith("#"):
            out.report.comments += 1  # hosts-style comment, accepted by AdGuard Home
            continue
        allow = line.startswith("@@")
        rule = line[2:] if allow else line
        if rule.startswith("/") and len(rule) > 1:
            out.reject("regex rule", line_no, line)
            continue
        pattern, modifiers = split_options(rule)
        if modifiers is not None and not all(m in ACCEPTED_MODIFIERS for m in modifiers):
            out.reject("rule with options", line_no, line)
            continue
        anchored = pattern.startswith("||")
        if anchored:
            body = pattern[2:]
        elif pattern.startswith("|"):
            out.reject("address rule", line_no, line)
            continue
        else:
            body = pattern
        body = body.rstrip("|").rstrip("^")
        if not body:
            out.reject("empty rule", line_no, line)
            continue
        if not anchored and not allow and modifiers is None and (" " in body or "\t" in body):
            add_hosts_line(out, line_no, body, suffix=False, internal=internal)
            continue
        if "*" in body:
            out.reject("wildcard rule", line_no, line)
            continue
        if "/" in body or "?" in body:
            if not path_urls:
                out.reject("path rule", line_no, line)
                continue
            try:
                value = normalize_url(body, allow_internal=internal)
            except InvalidIndicator as e:
                out.reject(e.reason, line_no, line)
                continue
            out.add(IndicatorType.URL, value, line_no, allow=allow)
            continue
        if "^" in body or "|" in body:
            out.reject("unsupported rule", line_no, line)
            continue
        try:
            kind, value = host_or_ip(body, suffix=anchored, internal=internal)
        except InvalidIndicator as e:
            out.reject(e.reason, line_no, line)
            continue
        out.add(kind, value, line_no, allow=allow)
    return out.result()


FORMAT = FeedFormat(
    "adblock",
    parse,
    OPTIONS,
    description="AdBlock/AdGuard network rules: ||domain^, @@ exceptions, domains-only lines",
)
