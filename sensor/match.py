"""Match decoded events against the held list's index and say why each alert fired."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from blocklist.artifact import Action, Entry
from blocklist.index import Index

from .events import DnsAnswer, DnsQuery, Event, HttpRequest, TcpConnect, TlsClientHello


@dataclass(frozen=True, slots=True)
class Alert:
    """An event, the entry it matched, on what, and under which list version."""

    event: Event
    entry: Entry
    matched_on: str  # dns_query_name | cname | answer_address | http_host | url | sni | dst_address
    indicator: str  # the value seen in traffic that matched
    list_version: int

    @property
    def reason(self) -> str:
        e = self.entry
        label = e.type.label
        if label == "domain":
            how = f"{self.indicator} is {e.value} or under it"
        elif label == "host":
            how = f"{self.indicator} is exactly {e.value}"
        elif label == "url":
            how = f"{self.indicator} starts with {e.value}"
        elif label == "ip":
            how = f"{self.indicator} is {e.value}"
        elif label == "cidr":
            how = f"{self.indicator} is inside {e.value}"
        else:
            raise KeyError(label)
        sources = ", ".join(e.sources) or "no source"
        return f"{self.matched_on}: {how} ({e.category}, priority {e.priority}, from {sources})"

    def to_dict(self) -> dict[str, Any]:
        ev = self.event.to_dict()
        return {
            "ts": ev.get("ts"),
            "alert": {
                "action": self.entry.action.label,
                "matched_on": self.matched_on,
                "indicator": self.indicator,
                "entry": self.entry.to_dict(),
                "reason": self.reason,
            },
            "list_version": self.list_version,
            "event": ev,
        }


def _candidates(event: Event, index: Index) -> Iterator[tuple[str, str, Entry | None]]:
    """(matched_on, indicator, entry-or-None) for every indicator an event carries."""
    if isinstance(event, DnsQuery):
        yield "dns_query_name", event.name, index.lookup_name(event.name)
    elif isinstance(event, DnsAnswer):
        yield "dns_query_name", event.name, index.lookup_name(event.name)
        for cname in event.cnames:
            yield "cname", cname, index.lookup_name(cname)
        for addr in event.addresses:
            yield "answer_address", addr, index.lookup_ip(addr)
    elif isinstance(event, HttpRequest):
        if index.has_urls:
            yield "url", event.url, index.lookup_url(event.name, event.path)
        yield "http_host", event.name, index.lookup_name(event.name)
        yield "dst_address", event.dst, index.lookup_ip(event.dst)
    elif isinstance(event, TcpConnect):
        yield "dst_address", event.dst, index.lookup_ip(event.dst)
    elif isinstance(event, TlsClientHello):
        if event.name:
            yield "sni", event.name, index.lookup_name(event.name)
        yield "dst_address", event.dst, index.lookup_ip(event.dst)


class Matcher:
    """Stateless apart from the index it holds; swap the whole matcher to change lists.

    It is also the decoder's ``sensor.fastpath.Prefilter``: ``might_match*`` say, without
    decoding a row, whether ``match`` could return an alert (a no is certain).
    """

    def __init__(self, index: Index, list_version: int) -> None:
        self.index = index
        self.list_version = list_version
        self.might_match_name = index.might_match_name
        self.might_match_address = index.might_match_address

    def might_match(self, event: Event) -> bool:
        """False when ``match(event)`` is certainly empty: every indicator ``_candidates``
        would look up is ruled out by the index's pre-filters."""
        index = self.index
        name = index.might_match_text_name
        address = index.might_match_text_address
        if isinstance(event, DnsQuery):
            return name(event.name)
        if isinstance(event, DnsAnswer):
            return (
                name(event.name)
                or any(name(cname) for cname in event.cnames)
                or any(address(addr) for addr in event.addresses)
            )
        if isinstance(event, HttpRequest):
            return (
                (index.has_urls and index.might_match_url_host(event.name))
                or name(event.name)
                or address(event.dst)
            )
        if isinstance(event, TlsClientHello):
            return bool(event.name and name(event.name)) or address(event.dst)
        return address(event.dst)  # TcpConnect

    def match(self, event: Event) -> list[Alert]:
        alerts: list[Alert] = []
        seen: set[tuple[int, str]] = set()
        for matched_on, indicator, entry in _candidates(event, self.index):
            if entry is None:
                continue
            if entry.action is Action.ALLOW:
                # The index already returned the most specific entry: an allow exception wins.
                continue
            key = (id(entry), matched_on)
            if key in seen:
                continue
            seen.add(key)
            alerts.append(Alert(event, entry, matched_on, indicator, self.list_version))
        return alerts
