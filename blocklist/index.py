"""The lookup structure a sensor matches traffic against.

Layout, chosen so it can later be mapped straight from disk and kept under 16 bytes/entry:

* names: two sorted ``array('Q')`` of 64-bit BLAKE2b fingerprints (suffix entries, exact
  hosts) with a parallel ``array('I')`` of entry positions. A lookup walks the label
  suffixes of a name (``a.b.example.com``, ``b.example.com``, ``example.com``) and
  bisects; a fingerprint hit is confirmed against the entry's value, so a collision can
  never raise an alert. Suffix matching is per label: ``example.com`` covers
  ``a.example.com`` but never ``badexample.com``.
* addresses: per (family, prefix length) a sorted array of network numbers; a lookup tries
  the prefix lengths present from longest to shortest (longest-prefix match). Single
  addresses are /32 and /128 prefixes.
* URLs: per host, path prefixes sorted longest first.

The most specific match wins, so an ALLOW entry for ``ok.example.com`` carves an exception
out of a DOMAIN entry ``example.com``.
"""

from __future__ import annotations

import ipaddress
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from hashlib import blake2b

from .artifact import Entry, EntryType
from .names import split_url

_V6_MASK = (1 << 128) - 1


def fingerprint(name: str) -> int:
    """Stable 64-bit fingerprint of a lowercase name (stable across processes and hosts)."""
    # surrogatepass: a name decoded with surrogateescape from junk bytes must not crash a
    # lookup; every valid string encodes exactly as before.
    data = name.encode("utf-8", "surrogatepass")
    return int.from_bytes(blake2b(data, digest_size=8).digest(), "little")


class _FingerprintSet:
    """Sorted fingerprints with parallel entry positions; duplicates allowed (collisions)."""

    __slots__ = ("_fps", "_pos")

    def __init__(self, items: Iterable[tuple[int, int]]) -> None:
        pairs = sorted(items)
        self._fps = array("Q", (fp for fp, _ in pairs))
        self._pos = array("I", (p for _, p in pairs))

    def __len__(self) -> int:
        return len(self._fps)

    def positions(self, fp: int) -> Iterable[int]:
        fps = self._fps
        i = bisect_left(fps, fp)
        n = len(fps)
        while i < n and fps[i] == fp:
            yield self._pos[i]
            i += 1

    @property
    def nbytes(self) -> int:
        return self._fps.itemsize * len(self._fps) + self._pos.itemsize * len(self._pos)


@dataclass(frozen=True, slots=True)
class Match:
    """An entry that matched, and the indicator in the traffic it matched on."""

    entry: Entry
    matched: str


class Index:
    """Immutable index over a list's entries; build once, share between threads."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = tuple(entries)
        #: Entries whose value cannot be indexed for their type (an IP that does not parse,
        #: a URL that is not normalized), by type label. They are skipped, never fatal: one
        #: bad value in a signed list must not stop the sensor from enforcing the rest.
        self.skipped: Counter[str] = Counter()
        suffix: list[tuple[int, int]] = []
        exact: list[tuple[int, int]] = []
        nets: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
        urls: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for pos, e in enumerate(self.entries):
            if e.type is EntryType.DOMAIN:
                suffix.append((fingerprint(e.value), pos))
            elif e.type is EntryType.HOST:
                exact.append((fingerprint(e.value), pos))
            elif e.type in (EntryType.IP, EntryType.CIDR):
                try:
                    net = ipaddress.ip_network(e.value, strict=False)
                except ValueError:
                    self.skipped[e.type.label] += 1
                    continue
                nets[(net.version, net.prefixlen)].append((int(net.network_address), pos))
            elif e.type is EntryType.URL:
                try:
                    _, host, _, path = split_url(e.value)
                except ValueError:  # InvalidIndicator is a ValueError
                    self.skipped[e.type.label] += 1
                    continue
                urls[host].append((path, pos))
        self._suffix = _FingerprintSet(suffix)
        self._exact = _FingerprintSet(exact)
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
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        """Bytes held by the lookup arrays (not the entries themselves)."""
        total = self._suffix.nbytes + self._exact.nbytes
        for levels in self._nets.values():
            for _, nums, pos in levels:
                total += nums.itemsize * len(nums) + pos.itemsize * len(pos)
        return total

    # -- names ---------------------------------------------------------------------------

    def lookup_name(self, name: str) -> Entry | None:
        """Most specific entry for a host name (exact host first, then longest suffix)."""
        name = name.lower().rstrip(".")
        if not name:
            return None
        entries = self.entries
        if len(self._exact):
            for pos in self._exact.positions(fingerprint(name)):
                if entries[pos].value == name:
                    return entries[pos]
        if len(self._suffix):
            cand = name
            while True:
                for pos in self._suffix.positions(fingerprint(cand)):
                    if entries[pos].value == cand:
                        return entries[pos]
                dot = cand.find(".")
                if dot < 0:
                    return None
                cand = cand[dot + 1 :]
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
        entries = self.entries
        for plen, nums, pos in self._nets[ip.version]:
            net = (number >> (bits - plen)) << (bits - plen) if plen else 0
            key = net if ip.version == 4 else net >> 64
            i = bisect_left(nums, key)
            while i < len(nums) and nums[i] == key:
                e = entries[pos[i]]
                if (
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
        for prefix, pos in cands:
            if path.startswith(prefix):
                return self.entries[pos]
        return None

    @property
    def has_urls(self) -> bool:
        return bool(self._urls)
