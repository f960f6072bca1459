"""Reference copy of ``distributor/feeds/rpz.py`` (commit c778dc7, before its fast paths): an
oracle of ``test_feeds_differential``. Verbatim but for the imports, pointed at
``tests.blocklist.reference_names`` and the reference ``base`` and ``ipcidr``. Do not fix
or speed it up; see ``__init__``. The module's own docstring follows.

DNS Response Policy Zones (format ``rpz``): the zone files BIND, Unbound, Knot and PowerDNS load.

A master file (RFC 1035 section 5) whose owner names are policy triggers and whose records
are policy actions. Read here: ``$ORIGIN`` and ``$TTL`` (``$INCLUDE`` and ``$GENERATE`` are
refused with a counted reason: this parser opens no other file), ``;`` comments, parentheses
spanning lines, an omitted owner (a line starting with blank space repeats the previous
owner), ``@``, optional TTL and class in either order, relative and absolute (trailing dot)
names.

Triggers, named relative to the zone apex:

- ``evil.com`` (QNAME, exact) -> HOST evil.com. ``*.evil.com`` (QNAME wildcard: every name
  below, not the name itself). When both appear with the same kind of action they are one
  DOMAIN entry (the name and everything below it, which is what the pair says); a lone
  wildcard is a DOMAIN entry too, so it also covers the apex, as the ``domains`` format
  reads ``*.example.com`` and as every list converter does.
- ``32.4.3.2.1.rpz-ip`` (response IP: prefix length, then the address reversed; IPv6 words
  reversed with ``zz`` for the ``::`` run) -> IP (``/32``, ``/128``) or CIDR.
- ``rpz-nsdname``, ``rpz-nsip``, ``rpz-client-ip`` triggers say nothing about the name or
  address a sensor sees; they are skipped, counted under their own reason.

Actions: ``CNAME .`` (NXDOMAIN), ``CNAME *.`` (NODATA), ``CNAME rpz-drop.`` and local data
(A, AAAA, TXT, a CNAME to a walled garden ...) are block entries; ``CNAME rpz-passthru.`` (and
its old spelling, a CNAME to the trigger name itself) is an allow entry; ``CNAME
rpz-tcp-only.`` is not a verdict and is skipped. The action is kept as a tag (``rpz:nxdomain``,
``rpz:nodata``, ``rpz:drop``, ``rpz:local-data``, ``rpz:passthru``).

The apex is the owner of the SOA record (``@`` is the current ``$ORIGIN``). When the file does
not say it (the common published form: no ``$ORIGIN``, ``@ SOA``, relative names), names are
taken as the triggers they spell; option ``zone`` names the apex for files whose absolute
names carry it (``evil.com.rpz.example.``). An absolute name outside a known apex is refused.
SOA and NS records at the apex, directives and continuation lines count as comments.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from blocklist.errors import InvalidIndicator
from distributor.indicators import Indicator, IndicatorType
from tests.blocklist.reference_names import normalize_domain

from . import ipcidr
from .base import Collector, FeedFormat, OptionSpec, ParseReport, clean_lines, option_str

if TYPE_CHECKING:
    from distributor.config import FeedConfig

OPTIONS: dict[str, OptionSpec] = {
    "zone": OptionSpec(
        "str", help="the zone apex, when the file's absolute names carry it and it has no $ORIGIN"
    ),
}

#: A parenthesized record may span this many lines; more is a missing ')', not a record.
MAX_GROUP_LINES = 64
CLASSES = frozenset({"IN", "CH", "HS", "CS", "ANY"})
_TTL_RE = re.compile(r"[0-9]+|(?:[0-9]+[smhdwSMHDW])+")
_DIGITS_RE = re.compile(r"[0-9]{1,5}")
_TYPE_RE = re.compile(r"[A-Z][A-Z0-9-]{0,15}")
_SKIPPED_TRIGGERS = {
    "rpz-nsdname": "rpz-nsdname trigger",
    "rpz-nsip": "rpz-nsip trigger",
    "rpz-client-ip": "rpz-client-ip trigger",
}
_ACTIONS = {
    ".": ("rpz:nxdomain", False),
    "*.": ("rpz:nodata", False),
    "rpz-drop.": ("rpz:drop", False),
    "rpz-passthru.": ("rpz:passthru", True),
}


@dataclass(slots=True)
class _Trigger:
    """What the records of one QNAME trigger said: lines of the exact name and the wildcard."""

    exact_line: int = 0
    wild_line: int = 0
    tags: dict[str, None] = field(default_factory=dict)

    @property
    def first_line(self) -> int:
        return min(n for n in (self.exact_line, self.wild_line) if n)


class _Zone:
    """Master-file state: origin, apex, last owner."""

    def __init__(self, zone: str | None) -> None:
        self.apex: str | None = _absolute(zone) if zone else None
        self.apex_from_soa = False
        self.origin: str | None = self.apex
        self.owner: str | None = None

    def absolute(self, name: str) -> str | None:
        """The name made absolute (lower-case, trailing dot); None when the origin is unknown."""
        name = name.lower()
        if name == "@":
            return self.origin
        if name.endswith("."):
            return name
        if self.origin is None:
            return None
        return f"{name}{self.origin}" if self.origin == "." else f"{name}.{self.origin}"

    def set_origin(self, origin: str) -> None:
        self.origin = origin
        if self.apex is None:
            self.apex = origin  # provisional: the SOA owner, when it comes, decides

    def set_soa(self, owner: str) -> None:
        if self.apex_from_soa:
            return
        full = self.absolute(owner)
        if full is not None:
            self.apex, self.apex_from_soa = full, True
            if self.origin is None:
                self.origin = full

    def trigger(self, name: str) -> str | None:
        """The trigger a (raw) owner name spells, without the apex; '' for the apex itself.

        None for an absolute name outside the apex.
        """
        if name == "@" and self.origin is None:
            return ""
        full = self.absolute(name)
        if full is None:  # relative, origin unknown: the name is the trigger
            return name.lower()
        if self.apex is None or self.apex == ".":
            return full[:-1]
        if full == self.apex:
            return ""
        if full.endswith("." + self.apex):
            return full[: -len(self.apex) - 1]
        return None


def _absolute(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def _records(
    lines: Iterable[str], report: ParseReport
) -> Iterator[tuple[int, str, bool, list[str]]]:
    """``(line_no, text, owner_omitted, tokens)`` of each record or directive.

    Parenthesized groups are joined; their continuation lines count as comments.
    """
    indented = False

    def mark(raw: Iterable[str]) -> Iterator[str]:
        nonlocal indented
        for line in raw:
            indented = line[:1] in (" ", "\t")
            yield line

    group: list[str] = []
    group_start = 0
    group_indented = False
    depth = 0
    for line_no, line in clean_lines(
        mark(lines), report, comment_prefixes=(";",), inline_comments=";", inline_needs_space=False
    ):
        if not group:
            group_start, group_indented = line_no, indented
        else:
            report.comments += 1  # a continuation line: its record is counted once
        group.append(line)
        depth += line.count("(") - line.count(")")
        if depth > 0 and len(group) < MAX_GROUP_LINES:
            continue
        text = " ".join(group)
        group = []
        if depth != 0:
            depth = 0
            report.reject("unbalanced parentheses", group_start, text)
            continue
        tokens = text.replace("(", " ").replace(")", " ").split()
        if not tokens:
            report.reject("empty record", group_start, text)
            continue
        yield group_start, text, group_indented, tokens
    if group:
        report.reject("unbalanced parentheses", group_start, " ".join(group))


def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "rpz")
    zone = _Zone(option_str(feed, OPTIONS, "zone"))
    # (name, allow) -> lines; QNAME triggers are emitted after the whole file is read so that a
    # name and its wildcard, wherever they are, become one DOMAIN entry.
    triggers: dict[tuple[str, bool], _Trigger] = {}
    for line_no, text, omitted, tokens in _records(lines, out.report):
        if tokens[0].startswith("$"):
            _directive(out, zone, line_no, text, tokens)
            continue
        if omitted:
            if zone.owner is None:
                out.reject("no owner name", line_no, text)
                continue
            owner = zone.owner
        else:
            owner, tokens = tokens[0], tokens[1:]
            zone.owner = owner
        rtype, rdata = _type_and_rdata(tokens)
        if rtype is None:
            out.reject("no record type", line_no, text)
            continue
        if rtype == "SOA":
            zone.set_soa(owner)
            out.report.comments += 1
            continue
        trigger = zone.trigger(owner)
        if trigger is None:
            out.reject("name outside the zone", line_no, text)
            continue
        if trigger == "":
            if rtype == "NS":
                out.report.comments += 1
            else:
                out.reject("record at the zone apex", line_no, text)
            continue
        action = _action(zone, trigger, rtype, rdata)
        if isinstance(action, str):
            out.reject(action, line_no, text)
            continue
        tag, allow = action
        _trigger(out, triggers, feed.internal, line_no, text, trigger, tag, allow)
    _emit(out, triggers)
    return out.result()


def _directive(out: Collector, zone: _Zone, line_no: int, text: str, tokens: list[str]) -> None:
    name = tokens[0].upper()
    if name == "$ORIGIN" and len(tokens) >= 2:
        origin = zone.absolute(tokens[1])
        if origin is None:
            out.reject("bad $ORIGIN", line_no, text)
            return
        zone.set_origin(origin)
        out.report.comments += 1
    elif name == "$TTL" and len(tokens) >= 2:
        out.report.comments += 1
    elif name in ("$INCLUDE", "$GENERATE"):
        out.reject(f"{name} not supported", line_no, text)
    else:
        out.reject("bad directive", line_no, text)


def _type_and_rdata(tokens: list[str]) -> tuple[str | None, list[str]]:
    """Skip an optional TTL and class (either order); the record type and its data."""
    i = 0
    while i < len(tokens) and i < 2:
        upper = tokens[i].upper()
        if upper in CLASSES or _TTL_RE.fullmatch(tokens[i]):
            i += 1
            continue
        break
    if i >= len(tokens):
        return None, []
    rtype = tokens[i].upper()
    if not _TYPE_RE.fullmatch(rtype):
        return None, []
    return rtype, tokens[i + 1 :]


def _action(zone: _Zone, trigger: str, rtype: str, rdata: list[str]) -> tuple[str, bool] | str:
    """(tag, allow) of a policy record, or the reason it is not a verdict."""
    if rtype == "NS":
        return "delegation in a policy zone"
    if rtype != "CNAME":
        return "rpz:local-data", False
    if not rdata:
        return "no CNAME target"
    target = rdata[0].lower()
    if not target.endswith(".") and zone.origin is None:
        target += "."  # no origin to be relative to: read it as written
    if target == "rpz-tcp-only.":
        return "rpz-tcp-only action"
    special = _ACTIONS.get(target)
    if special is not None:
        return special
    if target == trigger + ".":
        return "rpz:passthru", True  # the pre-2012 PASSTHRU spelling: CNAME to the name itself
    return "rpz:local-data", False  # a CNAME to a walled garden


def _trigger(
    out: Collector,
    triggers: dict[tuple[str, bool], _Trigger],
    internal: bool,
    line_no: int,
    text: str,
    trigger: str,
    tag: str,
    allow: bool,
) -> None:
    labels = trigger.split(".")
    last = labels[-1]
    if last in _SKIPPED_TRIGGERS:
        out.reject(_SKIPPED_TRIGGERS[last], line_no, text)
        return
    if last == "rpz-ip":
        try:
            kind, value = ipcidr.to_indicator(_rpz_ip(trigger, labels[:-1]), internal)
        except InvalidIndicator as e:
            out.reject(e.reason, line_no, text)
            return
        out.add(kind, value, line_no, allow=allow, tags=(tag,))
        return
    wildcard = labels[0] == "*"
    name = ".".join(labels[1:]) if wildcard else trigger
    if "*" in name:
        out.reject("misplaced wildcard", line_no, text)
        return
    try:
        value = normalize_domain(name)
    except InvalidIndicator as e:
        out.reject(e.reason, line_no, text)
        return
    entry = triggers.setdefault((value, allow), _Trigger())
    if wildcard:
        if entry.wild_line:
            out.report.duplicates += 1
            return
        entry.wild_line = line_no
    else:
        if entry.exact_line:
            out.report.duplicates += 1  # another record (A and AAAA ...) of the same trigger
            return
        entry.exact_line = line_no
    entry.tags.setdefault(tag, None)


def _rpz_ip(trigger: str, labels: list[str]) -> str:
    """``prefix.reversed-address`` -> ``address/prefix``; raises ``InvalidIndicator``."""
    if len(labels) < 2 or not _DIGITS_RE.fullmatch(labels[0]):
        raise InvalidIndicator(trigger, "bad rpz-ip trigger")
    prefix, words = labels[0], labels[1:][::-1]
    zz = words.count("zz")
    if zz == 0 and len(words) == 4:
        if not all(_DIGITS_RE.fullmatch(w) for w in words):
            raise InvalidIndicator(trigger, "bad rpz-ip trigger")
        return ".".join(words) + "/" + prefix
    if zz > 1 or (zz == 0 and len(words) != 8) or (zz == 1 and len(words) > 7):
        raise InvalidIndicator(trigger, "bad rpz-ip trigger")
    address = ":".join("" if w == "zz" else w for w in words)
    if address.startswith(":"):
        address = ":" + address
    if address.endswith(":"):
        address += ":"
    return f"{address}/{prefix}"


def _emit(out: Collector, triggers: dict[tuple[str, bool], _Trigger]) -> None:
    for (name, allow), entry in sorted(triggers.items(), key=lambda kv: kv[1].first_line):
        kind = IndicatorType.DOMAIN if entry.wild_line else IndicatorType.HOST
        out.add(kind, name, entry.first_line, allow=allow, tags=tuple(entry.tags))


FORMAT = FeedFormat(
    "rpz",
    parse,
    OPTIONS,
    description="DNS RPZ zone file: QNAME (and wildcard) and rpz-ip triggers; passthru is allow",
)
