"""What the DNS exports share: the names a resolver config can carry, and a size-bounded file.

Lists hold names already normalized (``blocklist.names``: lowercase, IDN as A-labels), but an
export must not trust that: one hostile value (a 64-byte label, a quote, a newline) would make
``named``, ``unbound`` or ``dnsmasq`` refuse the whole file, and with it every other entry.
So each name is checked again here against what every one of those consumers accepts: ASCII
labels of ``[a-z0-9_-]`` (underscore: ``_dmarc``-style names are real and all three take
them), 1..63 octets each, at most 253 octets in all (255 on the wire). Skip reasons are
short, stable strings, counted by the exporter.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from ..artifact import Action, Entry, EntryType
from .base import Budget, ExportLimits, merge_options

MAX_LABEL_OCTETS: Final = 63
MAX_NAME_OCTETS: Final = 253
_LABEL = re.compile(r"[a-z0-9_-]+")


def name_problem(name: str, max_octets: int = MAX_NAME_OCTETS) -> str | None:
    """Why ``name`` cannot go into a resolver config (a skip reason), or None when it can.

    ``max_octets`` is lower where the name is written under a suffix (an RPZ origin).
    """
    if not name.isascii():
        return "invalid_name.not_ascii"
    labels = name.split(".")
    for label in labels:
        if not label:
            return "invalid_name.empty_label"
        if len(label) > MAX_LABEL_OCTETS:
            return "invalid_name.label_too_long"
        if _LABEL.fullmatch(label) is None:
            return "invalid_name.character"
    if len(name) > max_octets:
        return "invalid_name.too_long"
    return None


def entry_name(entry: Entry, max_octets: int = MAX_NAME_OCTETS) -> tuple[str, str | None]:
    """The entry's name in the spelling the configs use (lowercase) and its problem, if any."""
    name = entry.value.lower()
    return name, name_problem(name, max_octets)


def common_skip(entry: Entry, types: frozenset[EntryType], alert: bool = False) -> str | None:
    """The reason an entry is left out before its value is looked at: a type the format
    cannot express, or an ALERT where the format has no log-only action (``alert``)."""
    if entry.type not in types:
        return f"unsupported_type.{entry.type.label}"
    if entry.action is Action.ALERT and not alert:
        return "alert_not_enforceable"
    return None


def fresh_name(
    entry: Entry, types: frozenset[EntryType], taken: set[str]
) -> tuple[str, str | None]:
    """``(name, None)`` when the format takes the entry and no earlier entry claimed its
    name; else ``("", reason)``: the common start of each DNS format's plan."""
    reason = common_skip(entry, types)
    if reason is not None:
        return "", reason
    name, problem = entry_name(entry)
    if problem is not None:
        return "", problem
    if name in taken:
        return "", "duplicate_name"
    return name, None


def check_options(
    given: Mapping[str, str] | None, known: Mapping[str, str], fmt: str
) -> dict[str, str]:
    """The options with defaults filled in (``base.merge_options``)."""
    return merge_options(fmt, given, known)


class BoundedFile:
    """A file's bytes under ``max_bytes``: the framing first, then whole entries while they fit.

    Once one entry does not fit, the file is full: later entries are not tried, so what a
    file holds is always a prefix of the entries in priority order.
    """

    def __init__(self, head: bytes, max_bytes: int | None, where: str) -> None:
        if max_bytes is not None and len(head) > max_bytes:
            raise ValueError(
                f"{where}: max_bytes {max_bytes} is less than the file's framing "
                f"({len(head)} bytes)"
            )
        self.max_bytes = max_bytes
        self.parts = [head]
        self.size = len(head)
        self.entries = 0
        self.full = False

    def add(self, chunk: bytes) -> bool:
        """Append one entry's lines if they fit; False (and full from then on) if not."""
        if self.full:
            return False
        if self.max_bytes is not None and self.size + len(chunk) > self.max_bytes:
            self.full = True
            return False
        self.parts.append(chunk)
        self.size += len(chunk)
        self.entries += 1
        return True

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


def claim(names: set[str], name: str) -> Callable[[], None]:
    """What writing an entry claims: its name, so that no later entry gives it a policy."""
    return lambda: names.add(name)


def nearest_domain(name: str, domains: Mapping[str, Action]) -> Action | None:
    """The action of the closest DOMAIN entry strictly above ``name``, if any."""
    rest = name
    while "." in rest:
        rest = rest.split(".", 1)[1]
        found = domains.get(rest)
        if found is not None:
            return found
    return None


def domain_actions(entries: Sequence[Entry]) -> dict[str, Action]:
    """Each DOMAIN name's action (the first entry's, in priority order)."""
    out: dict[str, Action] = {}
    for e in entries:
        if e.type is EntryType.DOMAIN and e.action is not Action.ALERT:
            out.setdefault(e.value.lower(), e.action)
    return out


#: What a format makes of one entry: a skip reason, or its lines and what writing them claims.
Plan = str | tuple[bytes, Callable[[], None]]


def fill(
    entries: Sequence[Entry],
    limits: ExportLimits,
    head: bytes,
    where: str,
    plan: Callable[[Entry], Plan],
) -> tuple[BoundedFile, Counter[str]]:
    """One file: each entry planned, then counted through the budget, then fitted in bytes.

    ``plan``'s second part runs only for entries actually written (a name it claims is only
    taken by an entry that made it into the file).
    """
    budget = Budget(limits)
    out = BoundedFile(head, limits.max_bytes, where)
    skipped: Counter[str] = Counter()
    for entry in entries:
        planned = plan(entry)
        if isinstance(planned, str):
            skipped[planned] += 1
            continue
        chunk, commit = planned
        reason = budget.fits(entry.type)
        if reason is not None:
            skipped[reason] += 1
        elif not out.add(chunk):
            skipped["over_max_bytes"] += 1
        else:
            budget.take(entry.type)
            commit()
    return out, skipped
