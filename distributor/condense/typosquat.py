"""Look-alikes of popular domains: a listed name that imitates one is dedicated to abuse.

A feed that lists ``paypa1.com`` for one phishing URL is describing a domain that exists only
to deceive, so the categorizer may block the whole registrable domain. This module answers "is
this registrable domain a typo or look-alike of a popular one?" from a table built once per
build: the dnstwist-style permutations of each popular domain's label, mapped to the domain
they imitate and the technique (``TECHNIQUES``, most specific first; the first technique and
the best-ranked target to produce a permutation keep it, so the index is deterministic).

Permutations that are popular themselves are left out (``paypal.co`` is not a squat of
``paypal.com``). Internationalized look-alikes are not enumerated (every letter has dozens of
confusables): ``lookup`` decodes an ``xn--`` name, maps each confusable character to the ASCII
letter it imitates (``_CONFUSABLES``, plus diacritics stripped by NFKD) and looks the result up.

Targets whose label is shorter than ``min_label_chars`` are skipped: every two-letter change of
``qq.com`` or ``x.com`` is some unrelated real site. The number of permutations kept per target
is capped (``max_per_target``) so one long label cannot dominate memory.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from blocklist.errors import InvalidIndicator
from blocklist.names import public_suffix, registrable_domain, to_unicode

from .reference import icann_suffix

__all__ = [
    "COMMON_TLDS",
    "TECHNIQUES",
    "Squat",
    "TyposquatIndex",
    "TyposquatStats",
    "skeleton",
]

#: Techniques in priority order: when two produce the same name, the earlier one is reported.
TECHNIQUES: Final = (
    "homoglyph",
    "transposition",
    "omission",
    "repetition",
    "replacement",
    "insertion",
    "vowel-swap",
    "hyphenation",
    "bitsquatting",
    "addition",
    "subdomain",
    "tld-swap",
)

#: TLDs a squatter swaps in: the largest generic ones and the cheap ones phishing favours.
COMMON_TLDS: Final = (
    "com",
    "net",
    "org",
    "info",
    "biz",
    "co",
    "io",
    "me",
    "cc",
    "tv",
    "app",
    "dev",
    "xyz",
    "top",
    "online",
    "site",
    "shop",
    "store",
    "live",
    "club",
    "icu",
    "vip",
    "ru",
    "cn",
    "de",
    "co.uk",
)

DEFAULT_MAX_TARGETS: Final = 10_000
DEFAULT_MAX_PER_TARGET: Final = 600
DEFAULT_MIN_LABEL_CHARS: Final = 4

_LABEL_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
_VOWELS: Final = "aeiou"
_ADDITION_CHARS: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
_valid_label: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?").fullmatch


def _qwerty_neighbours() -> Mapping[str, str]:
    """Keys next to each key on a US QWERTY keyboard, from the rows' geometry (each row is
    shifted right by a fraction of a key; keys closer than one key width are neighbours)."""
    rows = (("1234567890", 0.0), ("qwertyuiop", 0.5), ("asdfghjkl", 0.75), ("zxcvbnm", 1.25))
    keys = [(ch, r, c + offset) for r, (row, offset) in enumerate(rows) for c, ch in enumerate(row)]
    out: dict[str, str] = {}
    for ch, row, x in keys:
        near = [
            other
            for other, orow, ox in keys
            if other != ch
            and ((orow == row and abs(ox - x) == 1) or (abs(orow - row) == 1 and abs(ox - x) < 1))
        ]
        out[ch] = "".join(sorted(near))
    return MappingProxyType(out)


_NEIGHBOURS: Final = _qwerty_neighbours()

#: ASCII look-alikes (our own short list): each pair is (what is written, what imitates it).
_HOMOGLYPHS: Final = (
    ("o", "0"),
    ("0", "o"),
    ("l", "1"),
    ("l", "i"),
    ("i", "1"),
    ("i", "l"),
    ("1", "l"),
    ("1", "i"),
    ("m", "rn"),
    ("rn", "m"),
    ("m", "nn"),
    ("w", "vv"),
    ("vv", "w"),
    ("d", "cl"),
    ("cl", "d"),
    ("g", "q"),
    ("q", "g"),
    ("u", "v"),
    ("v", "u"),
    ("s", "5"),
    ("c", "e"),
    ("e", "c"),
)

#: Non-Latin letters that render like an ASCII letter in common fonts (Cyrillic, Greek,
#: Armenian and a few Latin extensions without a decomposition). Latin letters with
#: diacritics are handled by NFKD in ``skeleton``.
_CONFUSABLES: Final[Mapping[str, str]] = MappingProxyType(
    {
        # Cyrillic
        "\u0430": "a",
        "\u0432": "b",
        "\u0441": "c",
        "\u0501": "d",
        "\u0435": "e",
        "\u0451": "e",
        "\u04bb": "h",
        "\u0456": "i",
        "\u0457": "i",
        "\u0458": "j",
        "\u043a": "k",
        "\u04cf": "l",
        "\u043c": "m",
        "\u043d": "h",
        "\u043e": "o",
        "\u0440": "p",
        "\u051b": "q",
        "\u0455": "s",
        "\u0442": "t",
        "\u0443": "y",
        "\u0445": "x",
        "\u051d": "w",
        "\u0461": "w",
        "\u04af": "y",
        "\u0491": "r",
        # Greek
        "\u03b1": "a",
        "\u03b2": "b",
        "\u03b5": "e",
        "\u03b7": "n",
        "\u03b9": "i",
        "\u03ba": "k",
        "\u03bd": "v",
        "\u03bf": "o",
        "\u03c1": "p",
        "\u03c4": "t",
        "\u03c5": "u",
        "\u03c7": "x",
        "\u03c9": "w",
        # Armenian
        "\u0561": "w",
        "\u0563": "q",
        "\u0566": "q",
        "\u0570": "h",
        "\u0575": "j",
        "\u0578": "n",
        "\u057d": "u",
        "\u0581": "g",
        "\u0585": "o",
        # Latin letters without a decomposition, and IPA
        "\u0131": "i",
        "\u0142": "l",
        "\u00f8": "o",
        "\u0111": "d",
        "\u0127": "h",
        "\u0261": "g",
        "\u0251": "a",
        "\u0269": "i",
        "\u026a": "i",
        "\u0280": "r",
        "\u028f": "y",
        "\u1d0f": "o",
        "\u1d1c": "u",
        "\u00df": "b",
    }
)


@dataclass(frozen=True, slots=True)
class Squat:
    """``target`` is the popular domain imitated, ``technique`` one of ``TECHNIQUES``."""

    target: str
    technique: str

    def reason(self) -> str:
        return f"typosquat of {self.target} ({self.technique})"


@dataclass(frozen=True, slots=True)
class TyposquatStats:
    targets: int  # popular domains whose permutations are indexed
    entries: int  # permutations in the index
    capped_targets: int  # targets that produced more than max_per_target new names
    skipped_targets: Mapping[str, int]  # reason -> count
    build_seconds: float


def skeleton(name: str) -> str | None:
    """The ASCII name an internationalized ``name`` imitates, or None (nothing to imitate:
    already ASCII, or a character with no ASCII look-alike, such as a CJK ideograph)."""
    text = to_unicode(name)
    if text.isascii():
        return None
    out: list[str] = []
    for ch in text:
        if ch.isascii():
            out.append(ch)
            continue
        mapped = _CONFUSABLES.get(ch)
        if mapped is None:
            base = "".join(
                c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
            )
            mapped = _CONFUSABLES.get(base, base)
            if not (mapped.isascii() and mapped.isalnum()):
                return None
        out.append(mapped.lower())
    return "".join(out)


def _split(target: str) -> tuple[str, str] | None:
    """(label, suffix) of a registrable domain; a platform suffix that is popular itself
    (``github.io``) splits at its ICANN suffix."""
    try:
        suffix = public_suffix(target)
    except InvalidIndicator:
        return None
    if suffix == target:
        icann = icann_suffix(target)
        if icann is None or icann == target:
            return None
        suffix = icann
    label = target[: -len(suffix) - 1]
    return (label, suffix) if label else None


def _homoglyph(label: str) -> Iterator[str]:
    for written, imitation in _HOMOGLYPHS:
        start = label.find(written)
        count = 0
        while start >= 0:
            count += 1
            yield label[:start] + imitation + label[start + len(written) :]
            start = label.find(written, start + 1)
        if count > 1:
            yield label.replace(written, imitation)


def _transposition(label: str) -> Iterator[str]:
    for i in range(len(label) - 1):
        if label[i] != label[i + 1]:
            yield label[:i] + label[i + 1] + label[i] + label[i + 2 :]


def _omission(label: str) -> Iterator[str]:
    for i in range(len(label)):
        yield label[:i] + label[i + 1 :]


def _repetition(label: str) -> Iterator[str]:
    for i, ch in enumerate(label):
        if ch.isalnum():
            yield label[: i + 1] + ch + label[i + 1 :]


def _replacement(label: str) -> Iterator[str]:
    for i, ch in enumerate(label):
        for near in _NEIGHBOURS.get(ch, ""):
            yield label[:i] + near + label[i + 1 :]


def _insertion(label: str) -> Iterator[str]:
    for i, ch in enumerate(label):
        for near in _NEIGHBOURS.get(ch, ""):
            yield label[:i] + near + label[i:]
            yield label[: i + 1] + near + label[i + 1 :]


def _vowel_swap(label: str) -> Iterator[str]:
    for i, ch in enumerate(label):
        if ch in _VOWELS:
            for other in _VOWELS:
                if other != ch:
                    yield label[:i] + other + label[i + 1 :]


def _hyphenation(label: str) -> Iterator[str]:
    for i in range(1, len(label)):
        yield label[:i] + "-" + label[i:]


def _bitsquatting(label: str) -> Iterator[str]:
    for i, ch in enumerate(label):
        code = ord(ch)
        for bit in range(8):
            flipped = chr(code ^ (1 << bit))
            if flipped in _LABEL_CHARS:
                yield label[:i] + flipped + label[i + 1 :]


def _addition(label: str) -> Iterator[str]:
    for ch in _ADDITION_CHARS:
        yield label + ch


_LABEL_TECHNIQUES: Final = (
    ("homoglyph", _homoglyph),
    ("transposition", _transposition),
    ("omission", _omission),
    ("repetition", _repetition),
    ("replacement", _replacement),
    ("insertion", _insertion),
    ("vowel-swap", _vowel_swap),
    ("hyphenation", _hyphenation),
    ("bitsquatting", _bitsquatting),
    ("addition", _addition),
)


def _permutations(
    label: str, suffix: str, tlds: Sequence[str], min_label_chars: int
) -> Iterator[tuple[str, str]]:
    """(registrable name, technique) for one target, in priority order; may repeat names."""
    for technique, generate in _LABEL_TECHNIQUES:
        for variant in generate(label):
            if variant != label and _valid_label(variant) and variant[2:4] != "--":
                yield f"{variant}.{suffix}", technique
    # a dot inside the label: the squatter registers the part after it ("pa.ypal.com"); only
    # cuts that keep most of the label, or every short word would be a "squat"
    keep = max(min_label_chars, len(label) - 2)
    for i in range(1, len(label)):
        rest = label[i:]
        if len(rest) >= keep and label[i - 1] != "-" and _valid_label(rest):
            yield f"{rest}.{suffix}", "subdomain"
    for tld in tlds:
        if tld != suffix:
            yield f"{label}.{tld}", "tld-swap"


class TyposquatIndex:
    """Permutations of popular registrable domains -> ``Squat``; built once, then read-only.

    ``popular`` is in rank order (best first): the first ``max_targets`` are targets, and all
    of it, with ``also_popular``, is excluded from the permutations.
    """

    __slots__ = ("_index", "_popular", "stats")

    def __init__(
        self,
        popular: Sequence[str],
        *,
        max_targets: int = DEFAULT_MAX_TARGETS,
        max_per_target: int = DEFAULT_MAX_PER_TARGET,
        min_label_chars: int = DEFAULT_MIN_LABEL_CHARS,
        tlds: Sequence[str] = COMMON_TLDS,
        also_popular: Collection[str] = (),
    ) -> None:
        started = time.perf_counter()
        self._popular: frozenset[str] = frozenset(popular) | frozenset(also_popular)
        index: dict[str, Squat] = {}
        skipped: Counter[str] = Counter()
        capped = 0
        targets = 0
        seen: set[str] = set()
        for target in popular:
            if targets >= max_targets:
                break
            if target in seen:
                continue
            seen.add(target)
            split = _split(target)
            if split is None or (registrable_domain(target) not in (target, None)):
                skipped["not a registrable domain"] += 1
                continue
            label, suffix = split
            if "." in label:
                skipped["label with a dot"] += 1
                continue
            if "xn--" in label or not label.isascii():
                skipped["internationalized label"] += 1
                continue
            if len(label) < min_label_chars:
                skipped[f"label shorter than {min_label_chars}"] += 1
                continue
            targets += 1
            squats = {t: Squat(target, t) for t in TECHNIQUES}
            added = 0
            for name, technique in _permutations(label, suffix, tlds, min_label_chars):
                if name in index or name in self._popular:
                    continue
                if added >= max_per_target:
                    capped += 1
                    break
                index[name] = squats[technique]
                added += 1
        self._index = index
        self.stats = TyposquatStats(
            targets=targets,
            entries=len(index),
            capped_targets=capped,
            skipped_targets=MappingProxyType(dict(sorted(skipped.items()))),
            build_seconds=time.perf_counter() - started,
        )

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, registrable: str) -> Squat | None:
        """The popular domain ``registrable`` imitates, or None (also for popular names)."""
        if registrable in self._popular:
            return None
        hit = self._index.get(registrable)
        if hit is not None or "xn--" not in registrable:
            return hit
        plain = skeleton(registrable)
        if plain is None or plain in (registrable,):
            return None
        if plain in self._popular:
            return Squat(plain, "homoglyph")
        near = self._index.get(plain)
        return None if near is None else Squat(near.target, "homoglyph")
