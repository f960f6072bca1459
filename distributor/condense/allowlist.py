"""A tenant's own allow-list: names, URLs, addresses and prefixes it must never see blocked.

One value per line, ``#`` comments; a name allows itself and every name below it (an operator
who writes ``example.com`` means the whole site), a URL allows that URL, an address or prefix
allows every address in it. A bad line is counted under a reason and skipped, like a feed's;
a file that cannot be read is an error naming it, because a silently missing allow-list would
block what the tenant said must never be blocked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from blocklist.errors import InvalidIndicator
from blocklist.names import classify, normalize_cidr, normalize_domain, normalize_ip, normalize_url

from ..errors import ConfigError
from ..indicators import Indicator, IndicatorType

MAX_LINE_CHARS = 4096


@dataclass
class AllowReport:
    read: int = 0
    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def reject(self, reason: str, where: str) -> None:
        self.rejected[reason] += 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < 3:
            ex.append(where)


def parse_allow_lines(lines: Iterable[str], source: str, report: AllowReport) -> list[Indicator]:
    out: list[Indicator] = []
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        report.read += 1
        where = f"{source}:{number}"
        if len(line) > MAX_LINE_CHARS:
            report.reject("line too long", where)
            continue
        kind = classify(line)
        try:
            if kind == "url":
                value, typ = normalize_url(line, allow_internal=True), IndicatorType.URL
            elif kind == "cidr":
                value, typ = normalize_cidr(line, allow_internal=True), IndicatorType.CIDR
            elif kind == "ip":
                value, typ = normalize_ip(line, allow_internal=True), IndicatorType.IP
            else:
                value = normalize_domain(line.removeprefix("*."), allow_public_suffix=False)
                typ = IndicatorType.DOMAIN
        except InvalidIndicator as e:
            report.reject(e.reason, where)
            continue
        out.append(Indicator(typ, value, source, number, allow=True, confidence=100))
        report.accepted += 1
    return out


def load_allow_files(tenant: str, paths: Iterable[Path]) -> tuple[list[Indicator], AllowReport]:
    """Every allow entry of ``tenant``'s files; source names say which tenant list it is."""
    report = AllowReport()
    out: list[Indicator] = []
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise ConfigError(
                f"tenant {tenant}: cannot read allow-list: {e.strerror or e}", file=path
            ) from e
        out += parse_allow_lines(text.splitlines(), f"tenant:{tenant}:{path.name}", report)
    return out, report
