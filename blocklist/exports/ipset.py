"""ipset: an ``ipset restore`` file that fills fresh sets and swaps them in.

Followed: ipset(8) (ipset 7.17: ``create SETNAME hash:net family inet|inet6 maxelem N``,
``add``, ``flush``, ``swap FROM TO``, ``destroy``, ``restore``, and ``-exist``: "ignore
errors when exactly the same set is to be created or already added entry is added or
missing entry is deleted"). The ipset man page's own advice for replacing a set's content
atomically is to fill a new set and ``swap`` it with the live one::

    create stockade4 hash:net family inet maxelem 65536 -exist
    create stockade6 hash:net family inet6 maxelem 65536 -exist
    create stockade4-new hash:net family inet maxelem 65536 -exist
    create stockade6-new hash:net family inet6 maxelem 65536 -exist
    flush stockade4-new
    flush stockade6-new
    add stockade4-new 192.0.2.1 -exist
    add stockade6-new 2001:db8::/32 -exist
    swap stockade4-new stockade4
    swap stockade6-new stockade6
    destroy stockade4-new
    destroy stockade6-new

Every command is safe to run again (a restore that stopped half-way leaves a ``-new`` set,
which the next run flushes and reuses), and the live sets change only at ``swap``, so
iptables rules such as ``-m set --match-set stockade4 dst -j DROP`` never see a half-filled
set. An ipset set holds one address family, hence two sets. ``hash:net`` stores single
addresses as /32 or /128, so one set per family holds both IP and CIDR entries (a
``hash:ip`` set would expand a CIDR into every address in it).

``maxelem`` is fixed when a set is created: it is the ``maxelem`` option, else the limits'
``max_entries``, else ipset's default 65,536, and a set never gets more elements than that
(``over_set_capacity``). Changing it later needs the old sets destroyed once (``create
-exist`` refuses a set of the same name with other parameters, and the restore then fails
before anything live has changed).

Options: ``set_prefix`` (default ``stockade``; sets ``<prefix>4`` and ``<prefix>6``),
``maxelem``. Names and URLs are skipped (``unsupported_type.*``), ALLOW entries too
(``allow_not_expressible``: a set cannot hold an exception), and ALERT entries
(``alert_not_enforceable``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ..artifact import Entry, EntryType
from .base import Export, ExportLimits
from .plain import (
    FileSpec,
    Line,
    Rendered,
    address_text,
    block_only,
    parse_options,
    render_files,
)

FILE_NAME = "stockade.ipset"
DEFAULT_MAXELEM = 65_536  # ipset(8): "the default maxelem value is 65536"
#: IPSET_MAXNAMELEN is 32 with the NUL: 31 characters, and "6-new" takes 5 of them
_PREFIX = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,25}")
_MAXELEM_CAP = 2**32 - 1


class IpsetExporter:
    name = "ipset"
    types = frozenset({EntryType.IP, EntryType.CIDR})

    def render(
        self,
        entries: Sequence[Entry],
        limits: ExportLimits,
        options: Mapping[str, str] | None = None,
    ) -> Export:
        opts = parse_options(self.name, options, {"set_prefix": "stockade", "maxelem": ""})
        prefix = opts["set_prefix"]
        if not _PREFIX.fullmatch(prefix):
            raise ValueError(f"export 'ipset': set_prefix must match {_PREFIX.pattern}")
        maxelem = _maxelem(opts["maxelem"], limits)
        live = {4: f"{prefix}4", 6: f"{prefix}6"}
        new = {v: f"{name}-new" for v, name in live.items()}
        family = {4: "inet", 6: "inet6"}
        head = [
            f"create {name} hash:net family {family[v]} maxelem {maxelem} -exist"
            for names in (live, new)
            for v, name in names.items()
        ]
        head += [f"flush {new[v]}" for v in (4, 6)]
        tail = [f"swap {new[v]} {live[v]}" for v in (4, 6)]
        tail += [f"destroy {new[v]}" for v in (4, 6)]
        spec = FileSpec(
            FILE_NAME,
            head="".join(line + "\n" for line in head).encode(),
            tail="".join(line + "\n" for line in tail).encode(),
            sections={"4": (b"", b""), "6": (b"", b"")},
            section_limits={"4": maxelem, "6": maxelem},
        )
        return render_files(self.name, entries, limits, [spec], lambda e: _render(e, new))


def _maxelem(text: str, limits: ExportLimits) -> int:
    if not text:
        n = limits.max_entries if limits.max_entries is not None else DEFAULT_MAXELEM
        return max(1, min(n, _MAXELEM_CAP))
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= _MAXELEM_CAP:
        raise ValueError(f"export 'ipset': maxelem must be an integer 1..{_MAXELEM_CAP}")
    return int(text)


def _render(entry: Entry, sets: Mapping[int, str]) -> Rendered:
    if entry.type not in (EntryType.IP, EntryType.CIDR):
        return f"unsupported_type.{entry.type.label}"
    reason = block_only(entry)
    if reason is not None:
        return reason
    # hash:net stores a full-length prefix as the address itself (``prefix_text``)
    listed = address_text(entry)
    if isinstance(listed, str):
        return listed
    text, version = listed
    line = f"add {sets[version]} {text} -exist"
    return (Line(FILE_NAME, line, key=text, section=str(version)),)


EXPORTER = IpsetExporter()
