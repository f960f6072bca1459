"""The lookup structure a sensor matches traffic against, over a list held compactly.

Layout (about 13 bytes per name entry besides the row bytes, loaded in a few tenths of a
second for a million names; see ``blocklist.fingerprint`` and ``blocklist.compact``):

* names: the signed format 2 tables: sorted 64-bit fingerprints of DOMAIN and of HOST
  entries with each entry's row offset, and a bloom filter. A lookup fingerprints every label
  suffix of a name in one pass (``a.b.example.com``: ``com``, ``example.com`` ...), tests the
  bloom bit, bisects only on a bloom hit, and confirms a fingerprint hit against the entry's
  row, so a collision can never raise an alert. Suffix matching is per label:
  ``example.com`` covers ``a.example.com`` but never ``badexample.com``.
* addresses: per (family, prefix length) a sorted array of network numbers with row offsets;
  a lookup tries the prefix lengths present from longest to shortest (longest-prefix match).
  Single addresses are /32 and /128 prefixes.
* URLs: per host, path prefixes sorted longest first.

The most specific match wins, so an ALLOW entry for ``ok.example.com`` carves an exception
out of a DOMAIN entry ``example.com``. Entries are decoded from their rows when they match
(a few thousand recent ones are kept decoded).
"""

from __future__ import annotations

import ipaddress
import zlib
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .artifact import BlockList, Entry, EntryType
from .compact import CompactList, Table
from .errors import MalformedArtifact
from .fingerprint import name_fingerprint
from .names import split_url

_V6_MASK = (1 << 128) - 1
_DECODED_CACHE_ENTRIES = 4096

#: The stable 64-bit fingerprint of a lowercase name (``blocklist.fingerprint``).
fingerprint = name_fingerprint


@dataclass(frozen=True, slots=True)
class Match:
    """An entry that matched, and the indicator in the traffic it matched on."""

    entry: Entry
    matched: str


def _in_memory(entries: Sequence[Entry]) -> CompactList:
    """A compact list for entries given in memory (tests, ``explain``): same code path."""
    epoch = datetime(2000, 1, 1, tzinfo=UTC)
    bl = BlockList.create(
        tenant="index",
        profile="index",
        version=1,
        created=epoch,
        expires=epoch + timedelta(days=1),
        key_id="index",
        entries=entries,
    )
    return CompactList.from_blocklist(bl)


class Index:
    """Immutable index over a list; build once, share between threads."""

    def __init__(self, source: CompactList | Sequence[Entry]) -> None:
        self.list = source if isinstance(source, CompactList) else _in_memory(tuple(source))
        lst = self.list
        #: Entries whose value cannot be indexed for their type (an IP that does not parse,
        #: a URL that is not normalized), by type label. They are skipped, never fatal: one
        #: bad value in a signed list must not stop the sensor from enforcing the rest.
        self.skipped: Counter[str] = Counter()
        #: rows that did not decode when a lookup needed them (counted, never matched)
        self.bad_rows = 0
        self._decoded: dict[int, Entry] = {}
        self._bloom = lst.bloom
        self._bloom_mask = lst.bloom_bits - 1
        nets: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        urls: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for at in lst.other_at:
            try:
                e = lst.entry_at(at)
            except MalformedArtifact:
                self.skipped["malformed row"] += 1
                continue
            if e.type in (EntryType.IP, EntryType.CIDR):
                try:
                    net = ipaddress.ip_network(e.value, strict=False)
                except ValueError:
                    self.skipped[e.type.label] += 1
                    continue
                nets[(net.version, net.prefixlen)].append((int(net.network_address), at))
            elif e.type is EntryType.URL:
                try:
                    _, host, _, path = split_url(e.value)
                except ValueError:  # InvalidIndicator is a ValueError
                    self.skipped[e.type.label] += 1
                    continue
                urls[host].append((path, at))
            else:  # a name row listed among the others: the tables say otherwise
                self.skipped["misfiled row"] += 1
        self._nets: dict[int, list[tuple[int, array[int], array[int]]]] = {4: [], 6: []}
        for (version, plen), items in sorted(nets.items(), key=lambda kv: -kv[0][1]):
            items.sort()
            code = "L" if version == 4 else "Q"
            if version == 4:
                numbers = array(code, (n for n, _ in items))
            else:
                # 128-bit numbers do not fit an array: store the high 64 bits and confirm.
                numbers = array(code, (n >> 64 for n, _ in items))
            self._nets[version].append((plen, numbers, array("I", (p for _, p in items))))
        self._urls = {h: sorted(v, key=lambda pv: -len(pv[0])) for h, v in urls.items()}

    def __len__(self) -> int:
        return len(self.list)

    @property
    def nbytes(self) -> int:
        """Bytes held by the lookup structures (bloom filter and arrays; not the rows)."""
        lst = self.list
        total = len(lst.bloom) if len(lst) else 0
        for table in (lst.domain_fp, lst.domain_at, lst.host_fp, lst.host_at):
            total += table.itemsize * len(table)
        for levels in self._nets.values():
            for _, nums, pos in levels:
                total += nums.itemsize * len(nums) + pos.itemsize * len(pos)
        return total

    def _entry(self, at: int) -> Entry | None:
        e = self._decoded.get(at)
        if e is None:
            try:
                e = self.list.entry_at(at)
            except MalformedArtifact:
                self.bad_rows += 1
                return None
            if len(self._decoded) >= _DECODED_CACHE_ENTRIES:
                self._decoded.clear()
            self._decoded[at] = e
        return e

    def _find(
        self, fps: Table, offsets: Table, fp: int, value: str, kind: EntryType
    ) -> Entry | None:
        i = bisect_left(fps, fp)
        n = len(fps)
        while i < n and fps[i] == fp:
            e = self._entry(offsets[i])
            if e is not None and e.value == value and e.type is kind:
                return e
            i += 1
        return None

    # -- names ---------------------------------------------------------------------------

    def lookup_name(self, name: str) -> Entry | None:
        """Most specific entry for a host name (exact host first, then longest suffix).

        One pass over the reversed name extends two running checksums label by label
        (``blocklist.fingerprint``); each suffix costs a bloom-bit test, and only a bloom hit
        bisects and reads a row.
        """
        name = name.lower().rstrip(".")
        if not name:
            return None
        lst = self.list
        raw = name.encode("utf-8", "surrogatepass")
        rev = raw[::-1]
        size = len(rev)
        bloom = self._bloom
        mask = self._bloom_mask
        crc32 = zlib.crc32
        adler32 = zlib.adler32
        crc = 0
        adler = 1
        prev = 0
        hits: list[tuple[int, int]] = []  # (fingerprint, bytes of the suffix), bloom hits
        while True:
            dot = rev.find(b".", prev + 1)
            end = size if dot < 0 else dot
            chunk = rev[prev:end]
            crc = crc32(chunk, crc)
            adler = adler32(chunk, adler)
            h = crc & mask
            if bloom[h >> 3] >> (h & 7) & 1:
                hits.append(((crc << 32) | adler, end))
            if dot < 0:
                break
            prev = dot
        if not hits:
            return None
        if hits[-1][1] == size and len(lst.host_fp):
            found = self._find(lst.host_fp, lst.host_at, hits[-1][0], name, EntryType.HOST)
            if found is not None:
                return found
        if len(lst.domain_fp):
            for fp, length in reversed(hits):  # longest suffix first
                suffix = (
                    name
                    if length == size
                    else raw[size - length :].decode("utf-8", "surrogatepass")
                )
                found = self._find(lst.domain_fp, lst.domain_at, fp, suffix, EntryType.DOMAIN)
                if found is not None:
                    return found
        return None

    # -- addresses -----------------------------------------------------------------------

    def lookup_ip(self, address: str) -> Entry | None:
        """Longest-prefix entry covering ``address`` (v4 or v6 text); None for junk."""
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return None
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        number = int(ip)
        bits = 32 if ip.version == 4 else 128
        for plen, nums, pos in self._nets[ip.version]:
            net = (number >> (bits - plen)) << (bits - plen) if plen else 0
            key = net if ip.version == 4 else net >> 64
            i = bisect_left(nums, key)
            while i < len(nums) and nums[i] == key:
                e = self._entry(pos[i])
                if e is not None and (
                    ip.version == 4
                    or int(ipaddress.ip_network(e.value, strict=False).network_address) == net
                ):
                    return e
                i += 1
        return None

    # -- URLs ----------------------------------------------------------------------------

    def lookup_url(self, host: str, path: str) -> Entry | None:
        """Longest URL entry on ``host`` whose path is a prefix of ``path``."""
        cands = self._urls.get(host.lower().rstrip("."))
        if not cands:
            return None
        for prefix, at in cands:
            if path.startswith(prefix):
                return self._entry(at)
        return None

    @property
    def has_urls(self) -> bool:
        return bool(self._urls)
