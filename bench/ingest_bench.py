"""Feed parsing speed: parse + normalize, in indicators/s on one core, against a naive baseline.

    .venv/bin/python bench/ingest_bench.py                    # 1M indicators, median of 3 runs
    .venv/bin/python bench/ingest_bench.py --n 10000000 --baseline-runs 1   # the issue's size
    .venv/bin/python bench/ingest_bench.py --code /tmp/old    # same data, another checkout

N indicator lines are generated (seeded: the same N gives the same files) over 8 feeds of
mixed formats: domains, hosts, adblock, ipcidr, urlhaus_csv, urls, and zeek_intel and rpz
when this checkout has them (else a second domains and ipcidr feed). Values look like real
feeds: random registrable names under real TLDs and private suffixes, subdomains, URLs with
paths, queries and ports, global IPv4/IPv6 addresses and prefixes, a little upper case,
IDN and punycode, and ~1% junk lines of the kinds feeds really carry.

Measured per feed, on one CPU (the process is pinned): ``parse_file`` (read, decode, split,
parse, normalize, dedup, build ``Indicator`` objects), median of ``--runs`` runs with the
normalizer caches cleared before each. Rates use the process's CPU time (wall time is shown
too): on a shared machine other processes stretch wall time, not the work done.

The BASELINE, measured in the same process on the same files, is what a naive
implementation does per value: ``ipaddress`` objects, ``idna.encode`` (UTS #46),
``publicsuffixlist`` and ``urllib.parse``, with the same line handling and ``Indicator``
objects; the ratio column is fast/baseline. Indicators/s counts accepted indicators. Peak
RSS is the whole process (generation included). Then, if ``distributor.store`` is there,
one full ingest (parse + ``Store.open(url).ingest``) into a fresh SQLite store.

Speed numbers belong here, never in a timed unit test (docs/CONVENTIONS.md).
"""

from __future__ import annotations

import argparse
import csv
import gc
import hashlib
import ipaddress
import os
import random
import resource
import statistics
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FEEDS = 8
SEED = 20260501
JUNK_RATE = 0.01

# --- value generation --------------------------------------------------------------------

# (suffix, weight): mostly the TLDs threat feeds are full of, some multi-label and private
# (PSL) suffixes so the suffix check sees its wildcard, exception and private rules.
SUFFIXES: tuple[tuple[str, int], ...] = (
    ("com", 300),
    ("net", 60),
    ("org", 40),
    ("ru", 40),
    ("info", 25),
    ("xyz", 25),
    ("top", 25),
    ("cn", 20),
    ("online", 15),
    ("site", 15),
    ("shop", 12),
    ("io", 12),
    ("de", 12),
    ("br", 6),
    ("in", 6),
    ("us", 6),
    ("me", 6),
    ("cc", 6),
    ("pw", 5),
    ("biz", 5),
    ("club", 5),
    ("app", 5),
    ("dev", 5),
    ("tk", 5),
    ("su", 4),
    ("vip", 4),
    ("icu", 4),
    ("live", 4),
    ("co.uk", 8),
    ("com.br", 8),
    ("com.cn", 4),
    ("co.in", 3),
    ("com.tr", 3),
    ("net.ua", 2),
    ("github.io", 4),
    ("duckdns.org", 4),
    ("ddns.net", 3),
    ("workers.dev", 3),
    ("pages.dev", 3),
    ("web.app", 3),
    ("blogspot.com", 3),
    ("000webhostapp.com", 3),
    ("ngrok.io", 2),
    ("ck", 1),  # wildcard rule *.ck
    ("kobe.jp", 1),  # wildcard with an exception (city.kobe.jp)
)
SUBDOMAINS = ("www", "mail", "cdn", "api", "login", "secure", "update", "m", "static", "files")
SYLLABLES = [
    "ka",
    "ma",
    "ra",
    "to",
    "ne",
    "vi",
    "lo",
    "pa",
    "sec",
    "ur",
    "log",
    "in",
    "pay",
    "acc",
    "ount",
    "ver",
    "ify",
    "web",
    "mail",
    "box",
    "ser",
    "vice",
    "bank",
    "app",
    "cloud",
    "data",
    "net",
    "link",
    "host",
    "soft",
    "down",
    "load",
    "free",
    "win",
    "sys",
    "tem",
    "up",
    "date",
    "micro",
    "off",
    "ice",
    "sup",
    "port",
    "auth",
    "sign",
    "drop",
    "file",
    "share",
    "doc",
    "view",
]
ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
IDN_LABELS = ("bücher", "пример", "例子", "münchen", "παράδειγμα", "köln-shop")
PATH_PARTS = (
    "bins", "mozi.m", "x86", "arm7", "wp-content", "plugins", "uploads", "admin", "login.php",
    "index.html", "i", "dl", "files", "invoice.zip", "update.exe", "a.sh", "jquery.js",
)  # fmt: skip
# /8s that hold no special-purpose block, and a few that do (checked address by address).
GLOBAL_V4_FIRST = [o for o in range(1, 224) if o not in (10, 100, 127, 169, 172, 192, 198, 203)]
MIXED_V4_FIRST = (100, 169, 172, 192, 198, 203)
V6_PREFIXES = (0x2001_0470, 0x2400_CB00, 0x2600_1F18, 0x2A00_1450, 0x2A06_98C0, 0x2C0F_F248)


class Values:
    """Seeded generators of realistic feed values."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        names, weights = zip(*SUFFIXES, strict=True)
        self.suffixes = names
        self.cum = list(_cumulative(weights))

    def label(self) -> str:
        rng = self.rng
        style = rng.random()
        if style < 0.45:  # word-like: secure-login-verify, paypalaccount
            n = rng.randint(2, 4)
            sep = "-" if rng.random() < 0.3 else ""
            text = sep.join(rng.choice(SYLLABLES) for _ in range(n))
            return text + (str(rng.randint(1, 999)) if rng.random() < 0.25 else "")
        if style < 0.85:  # DGA-like
            return "".join(rng.choice(ALNUM) for _ in range(rng.randint(8, 20)))
        return f"{rng.getrandbits(40):010x}"  # hex

    def registrable(self) -> str:
        suffix = self.rng.choices(self.suffixes, cum_weights=self.cum)[0]
        return f"{self.label()}.{suffix}"

    def domain(self) -> str:
        rng = self.rng
        name = self.registrable()
        r = rng.random()
        if r < 0.25:
            name = f"{rng.choice(SUBDOMAINS)}.{name}"
        elif r < 0.35:
            name = f"{self.label()}.{rng.choice(SUBDOMAINS)}.{name}"
        r = rng.random()
        if r < 0.003:
            name = f"{rng.choice(IDN_LABELS)}.{name.rpartition('.')[2]}"
        elif r < 0.006:
            name = "xn--bcher-kva." + name
        elif r < 0.016:
            name = name.upper() if rng.random() < 0.5 else name.capitalize()
        elif r < 0.018:
            name += "."
        return name

    def ipv4(self) -> str:
        rng = self.rng
        first = rng.choice(MIXED_V4_FIRST) if rng.random() < 0.03 else rng.choice(GLOBAL_V4_FIRST)
        rest = rng.getrandbits(24)
        return f"{first}.{rest >> 16}.{(rest >> 8) & 255}.{rest & 255}"

    def ipv6(self) -> str:
        high = self.rng.choice(V6_PREFIXES) << 96
        return ipaddress.IPv6Address(high | self.rng.getrandbits(64)).compressed

    def ip(self) -> str:
        return self.ipv6() if self.rng.random() < 0.05 else self.ipv4()

    def cidr(self) -> str:
        rng = self.rng
        if rng.random() < 0.05:
            prefix = rng.choice((32, 36, 40, 48))
            net = ipaddress.IPv6Network((self.ipv6(), prefix), strict=False)
            return net.compressed
        prefix = rng.choice((16, 18, 19, 20, 21, 22, 22, 23, 24, 24, 24))
        address = self.ipv4()
        if rng.random() < 0.9:  # most lists write the network; some leave host bits set
            address = str(ipaddress.IPv4Network((address, prefix), strict=False).network_address)
        return f"{address}/{prefix}"

    def url(self, *, scheme: bool = True) -> str:
        rng = self.rng
        if rng.random() < 0.15:
            host = self.ipv4()
            if rng.random() < 0.4:
                host += f":{rng.choice((8080, 8088, 4444, 81, 3000, 443))}"
        else:
            host = self.domain().rstrip(".")
        segments = [rng.choice(PATH_PARTS) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.5:
            segments.append(f"{rng.getrandbits(32):08x}")
        path = "/" + "/".join(segments)
        if rng.random() < 0.2:
            path += f"?id={rng.randint(1, 99999)}&ref={rng.choice(SYLLABLES)}"
        if rng.random() < 0.03:
            path += "/%7Euser%20files/a%2fb"
        prefix = ("https://" if rng.random() < 0.2 else "http://") if scheme else ""
        return prefix + host + path

    def pick(self, items: tuple[str, ...]) -> str:
        return self.rng.choice(items)


def _cumulative(weights: Iterable[int]) -> Iterator[int]:
    total = 0
    for w in weights:
        total += w
        yield total


JUNK_NAMES = (
    "com", "co.uk", "localhost", "a..b.com", "exa_mple!.com", "-", "x" * 70 + ".com",
    "1.2.3", "999.1.2.3", "10.1.2.3", "192.168.0.1", "<html>", "http://", "evil.0x1f",
)  # fmt: skip
JUNK_ADDRESSES = (
    "10.0.0.0/8", "1.2.3.4/99", "abc", "300.1.1.1", "192.168.1.0/24", "127.0.0.1",
    "1.2.3.4/33", "fe80::1%eth0", "2001:db8::/32", "8.8.8.0/4",
)  # fmt: skip
JUNK_URLS = (
    "hxxp://evil.com/x", "http://", "javascript:alert(1)", "http://192.168.0.1/x",
    "http://a..com/", "http://ex ample.com/", "ftp://[::1]/x", "http://example.com:99999/",
)  # fmt: skip


# --- feed writers ------------------------------------------------------------------------
# Each writes one feed of `count` indicator lines (plus headers and comments) and returns the
# number of lines written.

Writer = Callable[[Values, int, Any], int]


def _junk(v: Values) -> bool:
    return v.rng.random() < JUNK_RATE


def write_domains(v: Values, count: int, f: Any) -> int:
    f.write("# Title: generated domain list\n# Updated: 2026-05-01\n\n")
    for _ in range(count):
        r = v.rng.random()
        if _junk(v):
            f.write(v.pick(JUNK_NAMES) + "\n")
        elif r < 0.03:
            f.write(v.ipv4() + "\n")
        elif r < 0.08:
            f.write(f"*.{v.domain()}\n")
        else:
            f.write(v.domain() + "\n")
    return count + 3


def write_hosts(v: Values, count: int, f: Any) -> int:
    f.write("# generated hosts file\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n\n")
    for _ in range(count):
        if _junk(v):
            f.write(f"0.0.0.0 {v.pick(JUNK_NAMES)}\n")
        else:
            sink = "127.0.0.1" if v.rng.random() < 0.05 else "0.0.0.0"
            f.write(f"{sink} {v.domain()}\n")
    return count + 4


def write_adblock(v: Values, count: int, f: Any) -> int:
    f.write("[Adblock Plus 2.0]\n! Title: generated filter\n! Expires: 1 day\n")
    for _ in range(count):
        r = v.rng.random()
        if _junk(v):
            f.write(v.pick(("##.ad-banner", "/ads[0-9]+/", "||ads.com^$third-party")) + "\n")
        elif r < 0.02:
            f.write(f"@@||{v.domain()}^\n")
        elif r < 0.05:
            f.write(f"||{v.domain()}^$important\n")
        elif r < 0.08:
            f.write(v.domain() + "\n")
        else:
            f.write(f"||{v.domain()}^\n")
    return count + 3


def write_ipcidr(v: Values, count: int, f: Any) -> int:
    f.write("; generated address list\n; Last-Modified: 2026-05-01\n")
    for _ in range(count):
        r = v.rng.random()
        if _junk(v):
            f.write(v.pick(JUNK_ADDRESSES) + "\n")
        elif r < 0.15:
            f.write(f"{v.cidr()} ; SBL{v.rng.randint(100000, 699999)}\n")
        elif r < 0.16:
            base = v.ipv4().rpartition(".")[0]
            f.write(f"{base}.0-{base}.255\n")
        else:
            f.write(v.ip() + "\n")
    return count + 2


URLHAUS_HEADER = (
    "################################################################\n"
    "# abuse.ch URLhaus Database Dump (CSV)                         #\n"
    "################################################################\n"
    "#\n"
    "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter\n"
)


def write_urlhaus_csv(v: Values, count: int, f: Any) -> int:
    f.write(URLHAUS_HEADER)
    out = csv.writer(f, quoting=csv.QUOTE_ALL, lineterminator="\n")
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    tags = ("elf,mozi", "exe,AgentTesla", "32-bit,elf,mips", "None", "zip,Formbook")
    for i in range(count):
        rng = v.rng
        url = v.pick(JUNK_URLS) if _junk(v) else v.url()
        added = t0 - timedelta(seconds=rng.randrange(90 * 86400))
        status = "online" if rng.random() < 0.3 else "offline"
        last = "" if status == "online" else str(added + timedelta(hours=rng.randrange(200)))
        ident = 3_000_000 + i
        out.writerow(
            [
                ident,
                added.strftime("%Y-%m-%d %H:%M:%S"),
                url,
                status,
                last[:19],
                "malware_download",
                rng.choice(tags),
                f"https://urlhaus.abuse.ch/url/{ident}/",
                "generated",
            ]
        )
    return count + 5


def write_urls(v: Values, count: int, f: Any) -> int:
    f.write("# generated URL list\n")
    for _ in range(count):
        f.write((v.pick(JUNK_URLS) if _junk(v) else v.url()) + "\n")
    return count + 1


def write_zeek_intel(v: Values, count: int, f: Any) -> int:
    f.write("#fields\tindicator\tindicator_type\tmeta.source\tmeta.do_notice\tmeta.desc\n")
    for _ in range(count):
        r = v.rng.random()
        if _junk(v):
            value, kind = v.pick(JUNK_NAMES), "Intel::DOMAIN"
        elif r < 0.5:
            value, kind = v.domain(), "Intel::DOMAIN"
        elif r < 0.85:
            value, kind = v.ip(), "Intel::ADDR"
        else:
            value, kind = v.url(scheme=False), "Intel::URL"
        f.write(f"{value}\t{kind}\tgenerated\tF\tMalware\n")
    return count + 1


def write_rpz(v: Values, count: int, f: Any) -> int:
    f.write(
        "$TTL 300\n@ IN SOA localhost. root.localhost. (1 3600 600 86400 300)\n"
        "  IN NS localhost.\n; generated policy zone\n"
    )
    lines = 4
    for _ in range(count):
        r = v.rng.random()
        if _junk(v):
            f.write(f"{v.pick(JUNK_NAMES)} CNAME .\n")
        elif r < 0.05:
            a, b, c, d = v.ipv4().split(".")
            f.write(f"32.{d}.{c}.{b}.{a}.rpz-ip CNAME .\n")
        elif r < 0.10:
            name = v.domain().rstrip(".")
            f.write(f"{name} CNAME .\n*.{name} CNAME .\n")
            lines += 1
        else:
            f.write(f"{v.domain().rstrip('.')} CNAME .\n")
    return count + lines


@dataclass(frozen=True)
class FeedSpec:
    name: str
    format: str
    writer: Writer


def feed_specs(formats: Iterable[str]) -> list[FeedSpec]:
    have = set(formats)
    specs = [
        FeedSpec("domains", "domains", write_domains),
        FeedSpec("hosts", "hosts", write_hosts),
        FeedSpec("adblock", "adblock", write_adblock),
        FeedSpec("ipcidr", "ipcidr", write_ipcidr),
        FeedSpec("urlhaus", "urlhaus_csv", write_urlhaus_csv),
        FeedSpec("urls", "urls", write_urls),
    ]
    specs.append(
        FeedSpec("zeek", "zeek_intel", write_zeek_intel)
        if "zeek_intel" in have
        else FeedSpec("domains-2", "domains", write_domains)
    )
    specs.append(
        FeedSpec("rpz", "rpz", write_rpz)
        if "rpz" in have
        else FeedSpec("ipcidr-2", "ipcidr", write_ipcidr)
    )
    return specs


def generate(specs: list[FeedSpec], n: int, workdir: Path) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for k, spec in enumerate(specs):
        path = workdir / f"{k}-{spec.name}.txt"
        values = Values(SEED + 1000 * k + n)
        with path.open("w", encoding="utf-8", newline="\n") as f:
            spec.writer(values, n // len(specs), f)
        paths[spec.name] = path
    return paths


# --- the naive baseline ------------------------------------------------------------------
# What a straightforward implementation does per value: library objects and calls, no fast
# paths, no caches. Same line handling as the parsers (comments, fields), same Indicators.


class Naive:
    def __init__(self, indicator: Any, kinds: Any) -> None:
        import idna
        from publicsuffixlist import PublicSuffixList

        self.idna = idna
        self.psl = PublicSuffixList()
        self.indicator = indicator
        self.kinds = kinds

    def domain(self, token: str) -> str:
        name = self.idna.encode(token.strip().rstrip("."), uts46=True).decode("ascii")
        if self.psl.is_public(name):
            raise ValueError("public suffix")
        return name

    @staticmethod
    def ip(token: str) -> str:
        address = ipaddress.ip_address(token)
        if not address.is_global:
            raise ValueError("non-global")
        return address.compressed

    @staticmethod
    def cidr(token: str) -> str:
        network = ipaddress.ip_network(token, strict=False)
        if not network.is_global:
            raise ValueError("non-global")
        return network.compressed

    def url(self, token: str) -> str:
        parts = urllib.parse.urlsplit(token if "://" in token else "http://" + token)
        if parts.scheme not in ("http", "https", "ftp") or not parts.hostname:
            raise ValueError("not a URL")
        host = parts.hostname
        try:
            host = self.ip(host.strip("[]"))
        except ValueError:
            host = self.idna.encode(host, uts46=True).decode("ascii")
        port = f":{parts.port}" if parts.port else ""
        safe = "/:@!$&'()*+,;=~"
        path = urllib.parse.quote(urllib.parse.unquote(parts.path or "/"), safe=safe)
        query = urllib.parse.quote(urllib.parse.unquote(parts.query), safe=safe + "?")
        return f"{parts.scheme}://{host}{port}{path}{'?' + query if query else ''}"

    def host_or_ip(self, token: str) -> tuple[str, str]:
        try:
            return "ip", self.ip(token)
        except ValueError:
            return "host", self.domain(token)

    def tokens(self, fmt: str, line: str) -> list[tuple[str, str]]:
        """(kind, raw value) pairs of one data line, as the format reads it."""
        if fmt == "domains":
            return [("host", line.removeprefix("*."))]
        if fmt == "hosts":
            address, *names = line.split()
            return [("host", n) for n in names] if address in ("0.0.0.0", "127.0.0.1") else []
        if fmt == "adblock":
            if line.startswith("[") or "##" in line or line.startswith("/"):
                return []
            body = line.removeprefix("@@").removeprefix("||").split("$")[0].rstrip("^")
            return [("host", body)]
        if fmt == "ipcidr":
            token = line.split(";")[0].split("#")[0].strip()
            if "-" in token:
                first, last = (ipaddress.ip_address(t) for t in token.split("-"))
                nets = ipaddress.summarize_address_range(first, last)
                return [("cidr", str(net)) for net in nets]
            return [("cidr" if "/" in token else "ip", token)]
        if fmt == "urlhaus_csv":
            row = next(csv.reader([line]))
            return [("url", row[2])]
        if fmt == "urls":
            return [("url", line)]
        if fmt == "zeek_intel":
            value, kind = line.split("\t")[:2]
            return [("url" if kind == "Intel::URL" else "host", value)]
        if fmt == "rpz":
            owner = line.split()[0]
            if owner.endswith(".rpz-ip"):
                return [("ip", ".".join(reversed(owner.split(".")[1:5])))]
            return [("host", owner.removeprefix("*."))]
        raise ValueError(fmt)

    def parse(self, fmt: str, path: Path, source: str) -> list[Any]:
        kinds = self.kinds
        out: list[Any] = []
        seen: set[tuple[str, str]] = set()
        comments = ("#", "!", ";", "$", "@ ", " ")
        text = path.read_bytes().decode("utf-8", errors="replace")
        for line_no, raw in enumerate(text.split("\n"), 1):
            line = raw.strip()
            if not line or raw.startswith(comments):
                continue
            try:
                found = self.tokens(fmt, line)
            except (ValueError, StopIteration, IndexError):
                continue
            for kind, token in found:
                try:
                    if kind == "host":
                        kind, value = self.host_or_ip(token)
                    elif kind == "url":
                        value = self.url(token)
                    elif kind == "ip":
                        value = self.ip(token)
                    else:
                        value = self.cidr(token)
                except (ValueError, UnicodeError, self.idna.IDNAError):
                    continue
                if (kind, value) in seen:
                    continue
                seen.add((kind, value))
                out.append(self.indicator(kinds[kind], value, source, line_no))
        return out


# --- measuring ---------------------------------------------------------------------------


def pin_to_one_cpu(cpu: int | None) -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    chosen = cpu if cpu is not None else allowed[-1]
    os.sched_setaffinity(0, {chosen})
    return chosen


def clear_caches(names_module: Any) -> None:
    """Empty every lru_cache of blocklist.names, so each run starts cold."""
    for attr in vars(names_module).values():
        clear = getattr(attr, "cache_clear", None)
        if callable(clear):
            clear()


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Timing:
    cpu_seconds: list[float]
    wall_seconds: list[float]
    indicators: int
    lines: int

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_seconds)

    @property
    def wall(self) -> float:
        return statistics.median(self.wall_seconds)

    @property
    def rate(self) -> float:
        return self.indicators / self.cpu if self.cpu else 0.0


def measure(
    specs: list[FeedSpec],
    paths: dict[str, Path],
    runs: int,
    run_one: Callable[[FeedSpec, Path], tuple[int, int]],
    before_run: Callable[[], None],
) -> dict[str, Timing]:
    """Per feed: CPU seconds of this process (the one-core figure, immune to other processes
    on a shared machine) and wall seconds, one of each per run."""
    timings: dict[str, Timing] = {}
    for r in range(runs):
        before_run()
        for spec in specs:
            gc.collect()
            wall, cpu = time.perf_counter(), time.process_time()
            accepted, lines = run_one(spec, paths[spec.name])
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            timing = timings.setdefault(spec.name, Timing([], [], accepted, lines))
            timing.cpu_seconds.append(cpu)
            timing.wall_seconds.append(wall)
        cpu_total = sum(t.cpu_seconds[-1] for t in timings.values())
        wall_total = sum(t.wall_seconds[-1] for t in timings.values())
        print(f"  run {r + 1}/{runs}: {cpu_total:.2f} s CPU, {wall_total:.2f} s wall", flush=True)
    return timings


# --- the store hook ----------------------------------------------------------------------


def store_ingest(
    specs: list[FeedSpec], paths: dict[str, Path], make_feed: Callable[[FeedSpec, Path], Any]
) -> str:
    """STORE HOOK: parse + ``Store.open(url).ingest(...)`` of every feed into a fresh SQLite
    store, timed; one line of figures, or why it could not run."""
    try:
        from distributor.feeds import parse_file
        from distributor.store import Store
    except ImportError as e:
        return f"store: not available ({e})"
    now = datetime(2026, 5, 1, tzinfo=UTC)
    total = 0
    parse_s = ingest_s = 0.0
    try:
        with tempfile.TemporaryDirectory() as d:
            store = Store.open(str(Path(d) / "store.db"))
            try:
                for spec in specs:
                    path = paths[spec.name]
                    t = time.perf_counter()
                    indicators, _ = parse_file(path, make_feed(spec, path))
                    t2 = time.perf_counter()
                    store.ingest(
                        spec.name,
                        "bench",
                        indicators,
                        content_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                        now=now,
                        grace=timedelta(days=2),
                    )
                    parse_s += t2 - t
                    ingest_s += time.perf_counter() - t2
                    total += len(indicators)
            finally:
                store.close()
    except Exception as e:  # noqa: BLE001 - a bench reports what broke and goes on
        return f"store: failed ({type(e).__name__}: {e})"
    full = parse_s + ingest_s
    return (
        f"store (sqlite, 1 run): {total:,} indicators; parse {parse_s:.2f} s + ingest "
        f"{ingest_s:.2f} s = {full:.2f} s -> {total / full:,.0f} indicators/s full ingest"
    )


# --- main --------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000, help="indicator lines over all feeds")
    ap.add_argument("--runs", type=int, default=3, help="timed runs (median reported)")
    ap.add_argument("--baseline-runs", type=int, default=None, help="default: --runs; 0: skip")
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    ap.add_argument("--dir", type=Path, default=None, help="where the generated feeds go")
    ap.add_argument("--code", type=Path, default=REPO, help="checkout whose code is measured")
    ap.add_argument("--no-store", action="store_true", help="skip the store ingest figures")
    args = ap.parse_args()
    baseline_runs = args.runs if args.baseline_runs is None else args.baseline_runs

    sys.path.insert(0, str(args.code.resolve()))
    from blocklist import names
    from distributor.config import FeedConfig
    from distributor.feeds import FORMATS, parse_file
    from distributor.indicators import Indicator, IndicatorType

    cpu = pin_to_one_cpu(args.cpu)
    specs = feed_specs(FORMATS)

    def make_feed(spec: FeedSpec, path: Path) -> Any:
        options = FORMATS[spec.format].resolve_options({})
        return FeedConfig(
            name=spec.name,
            format=spec.format,
            source=str(path),
            category="malware",
            confidence=70,
            options=MappingProxyType(options),
        )

    def run_fast(spec: FeedSpec, path: Path) -> tuple[int, int]:
        indicators, report = parse_file(path, make_feed(spec, path))
        return len(indicators), report.lines_read

    kinds = {
        "host": IndicatorType.HOST,
        "ip": IndicatorType.IP,
        "cidr": IndicatorType.CIDR,
        "url": IndicatorType.URL,
    }
    naive = Naive(Indicator, kinds)

    def run_naive(spec: FeedSpec, path: Path) -> tuple[int, int]:
        return len(naive.parse(spec.format, path, spec.name)), 0

    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        t = time.perf_counter()
        paths = generate(specs, args.n, Path(d))
        size = sum(p.stat().st_size for p in paths.values())
        print(
            f"generated {args.n:,} indicator lines in {len(specs)} feeds "
            f"({size / 2**20:.0f} MiB) in {time.perf_counter() - t:.1f} s; code: {args.code}; "
            f"pinned to CPU {cpu}; Python {sys.version.split()[0]}"
        )
        names.normalize_domain("warm-up.example.com")  # load the PSL outside the timings

        print(f"fast path (this checkout), {args.runs} runs:")
        fast = measure(specs, paths, args.runs, run_fast, lambda: clear_caches(names))
        base: dict[str, Timing] = {}
        if baseline_runs:
            print(f"baseline (naive: ipaddress + idna + publicsuffixlist), {baseline_runs} runs:")
            base = measure(specs, paths, baseline_runs, run_naive, lambda: None)
        rss = peak_rss_mib()
        store_line = None if args.no_store else store_ingest(specs, paths, make_feed)

    print()
    print(f"{'feed':10} {'format':12} {'lines':>9} {'indicators':>10} {'CPU s':>7} "
          f"{'wall s':>7} {'ind/s':>9} {'base ind/s':>10} {'ratio':>6}")  # fmt: skip
    for spec in specs:
        f = fast[spec.name]
        b = base.get(spec.name)
        print(
            f"{spec.name:10} {spec.format:12} {f.lines:9,} {f.indicators:10,} {f.cpu:7.3f} "
            f"{f.wall:7.3f} {f.rate:9,.0f} "
            + (f"{b.rate:10,.0f} {f.rate / b.rate:5.1f}x" if b and b.rate else f"{'-':>10}")
        )
    total_ind = sum(t.indicators for t in fast.values())
    total_cpu = sum(t.cpu for t in fast.values())
    total_wall = sum(t.wall for t in fast.values())
    line = f"{'TOTAL':23} {sum(t.lines for t in fast.values()):9,} {total_ind:10,} "
    line += f"{total_cpu:7.3f} {total_wall:7.3f} {total_ind / total_cpu:9,.0f} "
    if base:
        base_rate = sum(t.indicators for t in base.values()) / sum(t.cpu for t in base.values())
        line += f"{base_rate:10,.0f} {total_ind / total_cpu / base_rate:5.1f}x"
    print(line)
    print("ind/s: accepted indicators per CPU second (median of runs), one core")
    print(f"peak RSS {rss:,.0f} MiB")
    if store_line is not None:
        print(store_line)


if __name__ == "__main__":
    main()
