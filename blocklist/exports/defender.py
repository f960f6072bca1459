"""Microsoft Defender for Endpoint custom indicators, as the portal's CSV import takes them
(Settings > Endpoints > Indicators > Import; "Manage indicators", Microsoft Learn,
defender-endpoint/indicator-manage, 2024-10-28).

Columns (the sample CSV's order): IndicatorType, IndicatorValue, ExpirationTime, Action,
Severity, Title, Description, RecommendedActions, RbacGroups, Category, MitreTechniques,
GenerateAlert. The docs page only links the sample file; this header, in this order, is the
one independent public import tools write for the portal (checked against several). Limits from the same documents: 500 indicators per imported file (so the
export is split into ``indicators-001.csv``, ``indicators-002.csv`` ... of at most 500 rows
each, every file within ``max_bytes``), 15,000 active indicators per tenant (the export never
holds more, whatever the profile says), no CIDR notation ("Only single IP addresses are
supported"): CIDRs are skipped as ``unsupported_type.cidr``.

Types: DOMAIN and HOST -> ``DomainName`` (Defender has one domain type, so a DOMAIN and a
HOST of the same name are one indicator: the second is a ``duplicate_value``), URL ->
``Url`` (http and https only), IP -> ``IpAddress`` (v4 and v6). Actions: BLOCK -> ``Block``,
ALLOW -> ``Allowed``, and ALERT -> ``Audit``: Defender has a log-only action, so ALERT
entries are exported (unlike the DNS formats). ``BlockAndRemediate`` is not used (network
indicators refuse it). Category is left empty (the portal takes only its own category names).

Fields are never quoted: a value holding a comma, a quote, white space or a control or
non-ASCII character is skipped (``invalid_value.<type>``), and the free text of Title and
Description (from the entry's category and sources) is reduced to ``[A-Za-z0-9 ._:-]`` and
always starts with "Stockade", so no cell can start a spreadsheet formula. Rows end in CRLF
(RFC 4180). Option ``expiration_time``: an ISO time ``YYYY-MM-DDTHH:MM:SS[.f]Z`` written on
every row (default: empty, no expiry); a time that does not exist is refused.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from ..artifact import Action, Entry, EntryType
from .base import Budget, Export, ExportFile, ExportLimits
from .dnsnames import BoundedFile, check_options, common_skip, entry_name

COLUMNS = (
    "IndicatorType",
    "IndicatorValue",
    "ExpirationTime",
    "Action",
    "Severity",
    "Title",
    "Description",
    "RecommendedActions",
    "RbacGroups",
    "Category",
    "MitreTechniques",
    "GenerateAlert",
)
HEAD = (",".join(COLUMNS) + "\r\n").encode("ascii")
MAX_ROWS_PER_FILE = 500
MAX_TENANT_INDICATORS = 15_000
MAX_TEXT_CHARS = 200
TYPE_NAMES = {
    EntryType.DOMAIN: "DomainName",
    EntryType.HOST: "DomainName",
    EntryType.URL: "Url",
    EntryType.IP: "IpAddress",
}
#: Action -> (Action, Severity, GenerateAlert)
ACTIONS = {
    Action.BLOCK: ("Block", "High", "True"),
    Action.ALERT: ("Audit", "Informational", "True"),
    Action.ALLOW: ("Allowed", "", "False"),
}
_URL = re.compile(r"https?://[!#-+\--~]+")  # printable ASCII without space, '"' and ','
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z")
_UNSAFE_TEXT = re.compile(r"[^A-Za-z0-9 ._:-]")


def _valid_time(text: str) -> bool:
    if _TIME.fullmatch(text) is None:
        return False
    try:
        datetime.fromisoformat(text.removesuffix("Z") + "+00:00")
    except ValueError:
        return False
    return True


def _text(raw: str) -> str:
    return _UNSAFE_TEXT.sub("_", raw)[:MAX_TEXT_CHARS]


def _value(entry: Entry) -> str | None:
    """The indicator value as Defender takes it, or None."""
    if entry.type in (EntryType.DOMAIN, EntryType.HOST):
        name, problem = entry_name(entry)
        return None if problem is not None else name
    if entry.type is EntryType.URL:
        return entry.value if _URL.fullmatch(entry.value) else None
    try:
        ip = ipaddress.ip_address(entry.value)
    except ValueError:
        return None
    return entry.value if str(ip) == entry.value else None


class DefenderExporter:
    name = "defender-csv"
    types = frozenset({EntryType.DOMAIN, EntryType.HOST, EntryType.URL, EntryType.IP})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        opts = check_options(options, {"expiration_time": ""}, self.name)
        expires = opts["expiration_time"]
        if expires and not _valid_time(expires):
            raise ValueError(
                "defender-csv export: option 'expiration_time' must look like "
                f"2026-12-31T00:00:00Z, got {expires!r}"
            )
        cap = MAX_TENANT_INDICATORS
        if limits.max_entries is None or limits.max_entries > cap:
            limits = replace(limits, max_entries=cap)
        budget = Budget(limits)
        skipped: Counter[str] = Counter()
        files: list[BoundedFile] = []
        seen: set[tuple[str, str]] = set()
        for entry in entries:
            reason = common_skip(entry, self.types, alert=True)
            value = _value(entry) if reason is None else None
            if value is None:
                skipped[reason or f"invalid_value.{entry.type.label}"] += 1
                continue
            kind = TYPE_NAMES[entry.type]
            if (kind, value) in seen:
                skipped["duplicate_value"] += 1
                continue
            reason = budget.fits(entry.type)
            if reason is not None:
                skipped[reason] += 1
                continue
            action, severity, alert = ACTIONS[entry.action]
            title = _text(f"Stockade {entry.category}")
            about = _text(
                f"Stockade blocklist {entry.type.label} {entry.category}"
                + (f" sources: {' '.join(entry.sources)}" if entry.sources else "")
            )
            row = ",".join(
                (kind, value, expires, action, severity, title, about, "", "", "", "", alert)
            )
            chunk = (row + "\r\n").encode("ascii")
            current = files[-1] if files else None
            if current is None or current.entries >= MAX_ROWS_PER_FILE or not current.add(chunk):
                # a new file, unless the row is over the limit even alone
                fresh = self._new_file(len(files) + 1, limits)
                if not fresh.add(chunk):
                    skipped["over_max_bytes"] += 1
                    continue
                files.append(fresh)
            budget.take(entry.type)
            seen.add((kind, value))
        if not files:  # an import file with its header row and nothing to import
            files.append(self._new_file(1, limits))
        return Export(
            self.name,
            tuple(
                ExportFile(
                    f"indicators-{i:03d}.csv", "text/csv; charset=us-ascii", f.data, f.entries
                )
                for i, f in enumerate(files, 1)
            ),
            skipped,
        )

    @staticmethod
    def _new_file(number: int, limits: ExportLimits) -> BoundedFile:
        return BoundedFile(HEAD, limits.max_bytes, f"defender-csv export indicators-{number:03d}")


EXPORTER = DefenderExporter()
