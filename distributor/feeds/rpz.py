"""DNS Response Policy Zones (format ``rpz``): the zone files BIND, Unbound, Knot and PowerDNS load.

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
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from blocklist.errors import InvalidIndicator
from blocklist.names import normalize_domain

from ..indicators import Indicator, IndicatorType
from . import ipcidr
from .base import (
    MAX_LINE_CHARS,
    Collector,
    FeedFormat,
    OptionSpec,
    ParseReport,
    clean_line,
    option_str,
    pauses_gc,
)

if TYPE_CHECKING:
    from ..config import FeedConfig

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


#: What the records of one QNAME trigger said, by (name, allow): ``[exact_line, wild_line,
#: tags]``, the lines (0: none yet) of the exact name and of its wildcard, and the actions'
#: tags in the order first seen. A list rather than an object: one per trigger, and a zone
#: is mostly triggers.
_Trigger = list[Any]
_EXACT, _WILD, _TAGS = 0, 1, 2
#: The one-line record nearly every published zone is made of, ``name CNAME <action>``,
#: answered without the generic record reader when the owner is a plain name (ASCII name
#: characters, an optional ``*.``): no comment, parenthesis or directive can be in the line.
_PLAIN_OWNER_RE = re.compile(r"(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*\.?")
#: Actions whose target needs no origin, case folding or comparison with the trigger.
_PLAIN_ACTIONS = {
    ".": ("rpz:nxdomain", False),
    "*.": ("rpz:nodata", False),
    "rpz-drop.": ("rpz:drop", False),
    "rpz-passthru.": ("rpz:passthru", True),
}
_INDENT = (" ", "\t")


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


@pauses_gc
def parse(lines: Iterable[str], feed: FeedConfig) -> tuple[list[Indicator], ParseReport]:
    out = Collector(feed, "rpz")
    report = out.report
    zone = _Zone(option_str(feed, OPTIONS, "zone"))
    internal = feed.internal
    # (name, allow) -> _Trigger; QNAME triggers are emitted after the whole file is read so
    # that a name and its wildcard, wherever they are, become one DOMAIN entry.
    triggers: dict[tuple[str, bool], _Trigger] = {}
    plain_owner = _PLAIN_OWNER_RE.fullmatch
    plain_actions = _PLAIN_ACTIONS
    indent = _INDENT
    max_chars = MAX_LINE_CHARS
    # A parenthesized record being joined: its lines, first line, and whether it is indented
    # (then the owner is omitted: the previous record's).
    group: list[str] = []
    group_start = depth = line_no = 0
    group_indented = False
    for line_no, raw in enumerate(lines, 1):
        if not group:
            tokens = raw.split()
            if (
                len(tokens) == 3
                and tokens[1] == "CNAME"
                and tokens[2] in plain_actions
                and raw[:1] not in indent
                and len(raw) <= max_chars
                and plain_owner(tokens[0]) is not None
            ):
                # What the generic path below makes of this line, without its steps: the
                # line is its own record (nothing to strip, cut or join), the type is CNAME,
                # the action a fixed one.
                owner = tokens[0]
                zone.owner = owner
                if zone.origin is None and owner[-1] != ".":
                    trigger = owner  # relative, no origin: the name as written
                else:
                    found = zone.trigger(owner)
                    if not found:  # outside the zone, or the apex: the generic path says so
                        _record(out, zone, triggers, internal, line_no, raw.strip(), tokens)
                        continue
                    trigger = found
                tag, allow = plain_actions[tokens[2]]
                if "*" in trigger or "rpz-" in trigger:  # a wildcard, an IP or other trigger
                    _trigger(out, triggers, internal, line_no, raw.strip(), trigger, tag, allow)
                    continue
                # ... and ``_trigger`` for an exact name
                try:
                    value = normalize_domain(trigger)
                except InvalidIndicator as e:
                    out.reject(e.reason, line_no, raw.strip())
                    continue
                key = (value, allow)
                entry = triggers.get(key)
                if entry is None:
                    triggers[key] = [line_no, 0, (tag,)]
                else:
                    _seen_again(out, entry, _EXACT, line_no, tag)
                continue
        line = clean_line(
            raw,
            line_no,
            report,
            comment_prefixes=(";",),
            inline_comments=";",
            inline_needs_space=False,
        )
        if line is None:
            continue
        if not group:
            group_start, group_indented = line_no, raw[:1] in indent
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
        if group_indented and not tokens[0].startswith("$"):
            if zone.owner is None:
                out.reject("no owner name", group_start, text)
                continue
            tokens.insert(0, zone.owner)
        _record(out, zone, triggers, internal, group_start, text, tokens)
    if group:
        report.reject("unbalanced parentheses", group_start, " ".join(group))
    report.lines_read += line_no
    _emit(out, triggers)
    return out.result()


def _record(
    out: Collector,
    zone: _Zone,
    triggers: dict[tuple[str, bool], _Trigger],
    internal: bool,
    line_no: int,
    text: str,
    tokens: list[str],
) -> None:
    """One record or directive; ``tokens`` start with the owner (supplied when omitted)."""
    if tokens[0].startswith("$"):
        _directive(out, zone, line_no, text, tokens)
        return
    owner = zone.owner = tokens[0]
    rtype, rdata = _type_and_rdata(tokens[1:])
    if rtype is None:
        out.reject("no record type", line_no, text)
        return
    if rtype == "SOA":
        zone.set_soa(owner)
        out.report.comments += 1
        return
    trigger = zone.trigger(owner)
    if trigger is None:
        out.reject("name outside the zone", line_no, text)
        return
    if trigger == "":
        if rtype == "NS":
            out.report.comments += 1
        else:
            out.reject("record at the zone apex", line_no, text)
        return
    action = _action(zone, trigger, rtype, rdata)
    if isinstance(action, str):
        out.reject(action, line_no, text)
        return
    tag, allow = action
    _trigger(out, triggers, internal, line_no, text, trigger, tag, allow)


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
    if "rpz-" in trigger:  # (every special trigger's last label has it)
        last = trigger.rpartition(".")[2]
        if last in _SKIPPED_TRIGGERS:
            out.reject(_SKIPPED_TRIGGERS[last], line_no, text)
            return
        if last == "rpz-ip":
            try:
                kind, value = ipcidr.to_indicator(
                    _rpz_ip(trigger, trigger.split(".")[:-1]), internal
                )
            except InvalidIndicator as e:
                out.reject(e.reason, line_no, text)
                return
            out.add(kind, value, line_no, allow=allow, tags=(tag,))
            return
    # labels[0] == "*" of the labels split at the dots: the name itself or "*.name"
    wildcard = trigger == "*" or trigger.startswith("*.")
    name = trigger[2:] if wildcard else trigger
    if "*" in name:
        out.reject("misplaced wildcard", line_no, text)
        return
    try:
        value = normalize_domain(name)
    except InvalidIndicator as e:
        out.reject(e.reason, line_no, text)
        return
    key = (value, allow)
    entry = triggers.get(key)
    if entry is None:
        triggers[key] = [0, line_no, (tag,)] if wildcard else [line_no, 0, (tag,)]
    else:
        _seen_again(out, entry, _WILD if wildcard else _EXACT, line_no, tag)


def _seen_again(out: Collector, entry: _Trigger, slot: int, line_no: int, tag: str) -> None:
    """A trigger met before: its exact name (``slot`` _EXACT) or wildcard (_WILD) again."""
    if entry[slot]:
        out.report.duplicates += 1  # another record (A and AAAA ...) of the same trigger
        return
    entry[slot] = line_no
    tags: tuple[str, ...] = entry[_TAGS]
    if tag not in tags:
        entry[_TAGS] = (*tags, tag)


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
    """The QNAME entries, in the order of their first lines.

    That is the dict's own order: an entry is made at its first record, records come in line
    order, and a later record of the same entry only fills in the other line.
    """
    add = out.add
    domain, host = IndicatorType.DOMAIN, IndicatorType.HOST
    for (name, allow), (exact_line, wild_line, tags) in triggers.items():
        first_line = (
            min(exact_line, wild_line) if exact_line and wild_line else exact_line or wild_line
        )
        add(domain if wild_line else host, name, first_line, allow=allow, tags=tags)


FORMAT = FeedFormat(
    "rpz",
    parse,
    OPTIONS,
    description="DNS RPZ zone file: QNAME (and wildcard) and rpz-ip triggers; passthru is allow",
)
