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

Pre-filters (``might_match_name``, ``might_match_address``, ``might_match_url_host``) answer
"could a lookup find anything?" without decoding a row or building a text name, so the
sensor's fast path can count a packet that cannot matter instead of building its event. They
may say yes wrongly (a fingerprint collision, a covered address bucket), never no wrongly:
every lookup that returns an entry has a pre-filter that says yes. Addresses get a bitmap over
their leading bits (~16 bits per address entry; a CIDR shorter than the bucket sets its whole
range) so an address no entry covers costs one bit test instead of a bisection per prefix
length.
"""

from __future__ import annotations

import ipaddress
import socket
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
_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"
#: Address bitmaps: about this many bits per address entry, within these bucket widths.
_ADDRESS_BITS_PER_ENTRY = 16
_MIN_BUCKET_BITS = 12
_MAX_BUCKET_BITS = 24

#: The stable 64-bit fingerprint of a lowercase name (``blocklist.fingerprint``).
fingerprint = name_fingerprint


@dataclass(frozen=True, slots=True)
class Match:
    """An entry that matched, and the indicator in the traffic it matched on."""

    entry: Entry
    matched: str


def _at_boundary(prefix: str, path: str) -> bool:
    """``path`` (which starts with ``prefix``) continues it at a separator, not mid-word."""
    if len(path) == len(prefix) or prefix[-1:] in ("/", "?", "&", "#", ""):
        return True
    after = path[len(prefix)]
    return after in "&#" if "?" in prefix else after in "/?#;"


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
        self._buckets = {4: _AddressBitmap(4, nets), 6: _AddressBitmap(6, nets)}
        self._v4_bits, self._v4_shift = self._buckets[4].bits, self._buckets[4].shift
        self._v6_bits, self._v6_shift = self._buckets[6].bits, self._buckets[6].shift

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
        for bitmap in self._buckets.values():
            if bitmap.width:  # a family without entries holds one zero byte, not counted
                total += len(bitmap.bits)
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
        text = address.strip("[]")
        try:
            raw = socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
        except (OSError, ValueError):
            pass  # zone indices and other spellings: ipaddress decides
        else:
            if not self.might_match_address(raw):
                return None  # the usual answer, without building an ipaddress object
        try:
            ip = ipaddress.ip_address(text)
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
        """Longest URL entry on ``host`` whose path is a prefix of ``path`` at a boundary:
        ``/login`` covers ``/login``, ``/login/x``, ``/login?a=1``, never ``/loginx``; a
        query ``?id=5`` covers ``?id=5&x=1``, never ``?id=50``."""
        cands = self._urls.get(host.lower().rstrip("."))
        if not cands:
            return None
        for prefix, at in cands:
            if path.startswith(prefix) and _at_boundary(prefix, path):
                return self._entry(at)
        return None

    @property
    def has_urls(self) -> bool:
        return bool(self._urls)

    # -- pre-filters -----------------------------------------------------------------------

    def might_match_name(self, raw: bytes) -> bool:
        """False when ``lookup_name`` of this name cannot find an entry.

        ``raw``: the name as ``lookup_name`` encodes it (lowercase, UTF-8, no trailing dot).
        The same pass as ``lookup_name`` (bloom bit per label suffix), but a bloom hit is
        settled by the fingerprint tables alone, without reading a row: a yes may still be a
        fingerprint collision, a no is certain.
        """
        if not raw:
            return False
        rev = raw[::-1]
        size = len(rev)
        bloom = self._bloom
        mask = self._bloom_mask
        crc32 = zlib.crc32
        crc = 0
        prev = 0
        while True:
            dot = rev.find(b".", prev + 1)
            end = size if dot < 0 else dot
            crc = crc32(rev[prev:end], crc)
            h = crc & mask
            if bloom[h >> 3] >> (h & 7) & 1 and self._fingerprint_listed(
                (crc << 32) | zlib.adler32(rev[:end]), end == size
            ):
                return True
            if dot < 0:
                return False
            prev = dot

    def might_match_text_name(self, name: str) -> bool:
        """``might_match_name`` for a name as ``lookup_name`` takes it (any case, final dot)."""
        return self.might_match_name(name.lower().rstrip(".").encode("utf-8", "surrogatepass"))

    def _fingerprint_listed(self, fp: int, whole: bool) -> bool:
        lst = self.list
        tables = (lst.domain_fp, lst.host_fp) if whole else (lst.domain_fp,)
        for fps in tables:
            i = bisect_left(fps, fp)
            if i < len(fps) and fps[i] == fp:
                return True
        return False

    def might_match_address(self, raw: bytes) -> bool:
        """False when ``lookup_ip`` of this address (4 or 16 packed bytes) cannot find an
        entry: one bitmap bit, then on a hit the prefix tables (the high 64 bits for v6)."""
        if len(raw) == 4:
            number = int.from_bytes(raw, "big")
            bucket = number >> self._v4_shift
            return bool(self._v4_bits[bucket >> 3] >> (bucket & 7) & 1) and self._levels_hit(
                4, number
            )
        if len(raw) != 16:
            return False
        if raw[:12] == _V4_MAPPED_PREFIX:
            return self.might_match_address(raw[12:])
        number = int.from_bytes(raw, "big")
        bucket = number >> self._v6_shift
        return bool(self._v6_bits[bucket >> 3] >> (bucket & 7) & 1) and self._levels_hit(6, number)

    def might_match_text_address(self, address: str) -> bool:
        """``might_match_address`` for an address as ``lookup_ip`` takes it (text)."""
        text = address.strip("[]")
        try:
            raw = socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
        except (OSError, ValueError):
            # Not canonical enough for inet_pton (a zone index, odd spellings): let the lookup
            # itself decide.
            return self.lookup_ip(address) is not None
        return self.might_match_address(raw)

    def _levels_hit(self, version: int, number: int) -> bool:
        bits = 32 if version == 4 else 128
        for plen, nums, _ in self._nets[version]:
            net = (number >> (bits - plen)) << (bits - plen) if plen else 0
            key = net if version == 4 else net >> 64
            i = bisect_left(nums, key)
            if i < len(nums) and nums[i] == key:
                return True
        return False

    def might_match_url_host(self, host: str) -> bool:
        """False when ``lookup_url`` on this host cannot find an entry."""
        return bool(self._urls) and host.lower().rstrip(".") in self._urls


class _AddressBitmap:
    """One bit per bucket of addresses (their leading ``width`` bits) that some entry covers.

    The width grows with the number of entries (about 16 bits per entry, 2^12 to 2^24 bits)
    so the bitmap stays a small part of the index; an address in an unset bucket cannot
    match any entry of that family.
    """

    __slots__ = ("bits", "shift", "width")

    def __init__(self, version: int, nets: dict[tuple[int, int], list[tuple[int, int]]]) -> None:
        total = 32 if version == 4 else 128
        levels = [(plen, items) for (v, plen), items in nets.items() if v == version]
        count = sum(len(items) for _, items in levels)
        want = max(1, count * _ADDRESS_BITS_PER_ENTRY - 1).bit_length()
        self.width = min(max(_MIN_BUCKET_BITS, want), _MAX_BUCKET_BITS) if count else 0
        self.shift = total - self.width
        bits = bytearray(max(1, (1 << self.width) // 8))  # no entries: one zero byte
        for plen, items in levels:
            for number, _ in items:
                first = number >> self.shift
                if plen >= self.width:
                    bits[first >> 3] |= 1 << (first & 7)
                    continue
                span = 1 << (self.width - plen)  # the CIDR covers this many buckets
                first &= ~(span - 1)
                if span >= 8:
                    bits[first >> 3 : (first + span) >> 3] = b"\xff" * (span >> 3)
                else:
                    for bucket in range(first, first + span):
                        bits[bucket >> 3] |= 1 << (bucket & 7)
        self.bits = bytes(bits)
