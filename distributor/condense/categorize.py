"""How to block what the feeds list under one registrable domain: whole, by host, or by URL.

The Decisions section of docs/adr/0002-condense.md, as code:

* A popular registrable domain (top-N) or a known service is never blocked whole: kind
  ``abused-service``, unit ``host`` (the listed hosts one by one), or ``url`` when every listed
  host is itself the shared service (``bit.ly``, ``drive.google.com``): then only URLs on it
  can be blocked. ``DomainDecision.url_only_hosts`` names those hosts.
* A dedicated registrable domain is blocked once as a DOMAIN entry (kind ``dedicated``, unit
  ``registrable``): it is DGA-generated, a typosquat of a popular domain, has ``many_hosts``
  listed hosts, or is a name never seen popular that a feed lists as a domain or host.
* URL indicators on an unpopular host stay URLs (kind ``unknown``, unit ``url``) unless one of
  those strong signals makes the registrable dedicated: a compromised small site must not lose
  its whole domain for one bad path.

A tenant of a free-subdomain platform (``evil.github.io``, a registrable domain of its own
through the Public Suffix List) is judged like any other unpopular name: the platform is the
service, the tenant's site is its own. Reasons are short stable strings, fit for counting and
for ``explain``. Everything here is deterministic: same inputs, same decision and reasons.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Final, Literal, Protocol, TypeAlias

from blocklist.errors import InvalidIndicator
from blocklist.names import public_suffix

from .reference import ReferenceData, ServiceHit
from .typosquat import TyposquatIndex

__all__ = [
    "DEFAULT_DGA_THRESHOLD",
    "CategorizeConfig",
    "Categorizer",
    "DgaScorer",
    "DomainDecision",
    "Kind",
    "Unit",
]

Kind: TypeAlias = Literal["abused-service", "dedicated", "unknown"]
Unit: TypeAlias = Literal["registrable", "host", "url"]

DEFAULT_DGA_THRESHOLD: Final = 0.9
"""Used when neither the config nor the model (a ``threshold`` attribute) gives one."""

_NAME_TYPES: Final = frozenset({"domain", "host"})


class DgaScorer(Protocol):
    """What the categorizer needs of ``dga.DgaModel``."""

    def score(self, label: str) -> float: ...


@dataclass(frozen=True, slots=True)
class CategorizeConfig:
    """``dga_threshold``: probability at or above which a label counts as generated (None: the
    model's own ``threshold`` attribute, else ``DEFAULT_DGA_THRESHOLD``). ``many_hosts``: this
    many distinct listed hosts make an unpopular domain dedicated. ``dga_min_label_chars``:
    shorter labels are not scored (too little text for a character model to judge).
    ``no_dga_kinds``: tenants of these service kinds get machine-assigned names
    (``d1a2b3c4.cloudfront.net``) that look random by design, so DGA says nothing about them.
    """

    dga_threshold: float | None = None
    many_hosts: int = 3
    dga_min_label_chars: int = 6
    #: A site listed by URL only is usually a compromised one; a character model's ~2% false
    #: positives on real names would block whole small sites, so alone it needs this score.
    url_only_dga_threshold: float = 0.95
    no_dga_kinds: frozenset[str] = frozenset({"cdn", "cloud", "cloud-storage"})


@dataclass(frozen=True, slots=True)
class DomainDecision:
    """How the indicators under ``registrable`` may be blocked.

    ``unit``: ``registrable`` (one DOMAIN entry covers every name below it), ``host`` (listed
    domain/host names one by one, except ``url_only_hosts``), ``url`` (URL indicators only; a
    listed domain or host under it is not blocked). ``url_only_hosts``: the listed hosts that
    are shared service hosts, sorted; only URLs on them may be blocked.
    """

    registrable: str
    kind: Kind
    unit: Unit
    reasons: tuple[str, ...]
    url_only_hosts: tuple[str, ...] = ()


def _fold_www(host: str) -> str:
    return host[4:] if host.startswith("www.") else host


class Categorizer:
    def __init__(
        self,
        reference: ReferenceData,
        dga: DgaScorer | None = None,
        typosquat: TyposquatIndex | None = None,
        config: CategorizeConfig | None = None,
    ) -> None:
        self.reference = reference
        self.dga = dga
        self.typosquat = typosquat
        self.config = config or CategorizeConfig()
        threshold = self.config.dga_threshold
        if threshold is None:
            model_threshold = getattr(dga, "threshold", None)
            threshold = (
                float(model_threshold)
                if isinstance(model_threshold, int | float)
                and not isinstance(model_threshold, bool)
                else DEFAULT_DGA_THRESHOLD
            )
        self.dga_threshold: float = threshold

    @property
    def notes(self) -> tuple[str, ...]:
        """Signals that are absent, for the build report (decisions then rest on the others)."""
        out: list[str] = []
        if self.dga is None:
            out.append("no DGA model: no DGA signal")
        if self.typosquat is None:
            out.append("no typosquat index: no typosquat signal")
        if not self.reference.has_popularity:
            out.append("no top lists loaded: every name counts as never seen popular")
        return tuple(out)

    # per host

    def shared_host_reason(self, host: str) -> str | None:
        """Why this exact host is a shared service host (only a URL on it can be blocked), or
        None when the host itself may be blocked."""
        return self.reference.shared_host(host)

    def host_unit(self, host: str) -> Unit:
        """``url`` for a shared service host (``bit.ly``, ``drive.google.com``), else ``host``."""
        return "url" if self.reference.shared_host(host) is not None else "host"

    # per registrable domain

    def decide(
        self,
        registrable: str,
        listed_hosts: Collection[str] = (),
        listed_types: Collection[str] = (),
        url_hosts: Collection[str] = (),
        *,
        every_reason: bool = True,
    ) -> DomainDecision:
        """Decide for one registrable domain.

        ``listed_hosts``: every name listed under it as a DOMAIN or HOST indicator (the
        registrable itself included when listed); ``listed_types``: the indicator types seen
        under it (``domain``, ``host``, ``url``); ``url_hosts``: the hosts of its URL
        indicators. Names that are not ``registrable`` or below it are ignored.

        ``every_reason=False`` gives the same kind and unit, but a domain no reference table
        knows that a feed lists as a domain or host skips the signals that would only add
        reasons (DGA score, typosquat, host count): a build decides millions of those, and
        ``explain`` asks again with every reason.
        """
        reasons: list[str] = []
        names = self._under(registrable, listed_hosts, reasons)
        urls = self._under(registrable, url_hosts, reasons)
        types = frozenset(listed_types)
        if names:
            types |= {"host"} if types.isdisjoint(_NAME_TYPES) else frozenset()
        if urls:
            types |= {"url"}
        if not every_reason and not self.reference.touches(registrable):
            listed_as = sorted(types & _NAME_TYPES)
            if listed_as:
                reasons.append(self._never_popular)
                reasons.extend(f"listed as {t}" for t in listed_as)
                return DomainDecision(registrable, "dedicated", "registrable", tuple(reasons))
            return self._unpopular(registrable, None, names, urls, types, reasons)
        every_host = sorted(names | urls)
        shared: dict[str, str] = {}
        services: dict[str, ServiceHit | None] = {}
        for h in every_host:
            why, services[h] = self.reference.shared_host_and_service(h, registrable)
            if why is not None:
                shared[h] = why
        url_only = tuple(sorted(shared))

        service = self.reference.service(registrable)
        popularity = self.reference.popularity(registrable)
        evidence: list[str] = []
        if popularity is not None:
            evidence.append(popularity.reason())
        if service is not None and not service.tenant:
            evidence.append(service.reason())
        else:
            found = self._host_service(every_host, services)
            if found is not None:
                evidence.append(f"host {found[0]}: {found[1].reason()}")
        if evidence or shared:
            # never whole: the listed hosts one by one, or only URLs on the shared ones
            reasons.extend(evidence)
            reasons.extend(f"{h}: {why}" for h, why in shared.items())
            if any(h not in shared for h in names):
                unit: Unit = "host"
            else:
                unit = "url"
                reasons.append(
                    "listed names are shared hosts: URLs only" if names else "only URLs listed"
                )
            return DomainDecision(registrable, "abused-service", unit, tuple(reasons), url_only)

        if service is not None:  # a tenant of a platform: judged as a site of its own
            reasons.append(service.reason())
        return self._unpopular(registrable, service, names, urls, types, reasons)

    @property
    def _never_popular(self) -> str:
        return (
            "never seen popular" if self.reference.has_popularity else "no popularity data loaded"
        )

    def _unpopular(
        self,
        registrable: str,
        service: ServiceHit | None,
        names: set[str],
        urls: set[str],
        types: frozenset[str],
        reasons: list[str],
    ) -> DomainDecision:
        """Dedicated when a strong signal says so or a feed lists it as a name, else URLs."""
        strong = self._strong_signals(registrable, service, names | urls, url_only=not names)
        listed_as = sorted(types & _NAME_TYPES)
        if strong or listed_as:
            reasons.extend(strong)
            reasons.append(self._never_popular)
            reasons.extend(f"listed as {t}" for t in listed_as)
            return DomainDecision(registrable, "dedicated", "registrable", tuple(reasons))
        reasons.append("only URLs on an unpopular host" if urls else "nothing listed")
        return DomainDecision(registrable, "unknown", "url", tuple(reasons))

    def _under(self, registrable: str, hosts: Iterable[str], reasons: list[str]) -> set[str]:
        tail = "." + registrable
        out: set[str] = set()
        foreign = 0
        for host in hosts:
            if host == registrable or host.endswith(tail):
                out.add(host)
            else:
                foreign += 1
        if foreign:
            reasons.append(f"{foreign} names not under {registrable} ignored")
        return out

    def _host_service(
        self, hosts: Iterable[str], known: dict[str, ServiceHit | None]
    ) -> tuple[str, ServiceHit] | None:
        """The first listed host that is a known service's own host (``api.ipify.org`` under
        an otherwise unknown ``ipify.org``): that registrable is a service too."""
        for host in hosts:
            hit = known[host] if host in known else self.reference.service(host)
            if hit is not None and not hit.tenant:
                return host, hit
        return None

    def _strong_signals(
        self, registrable: str, service: ServiceHit | None, hosts: set[str], *, url_only: bool
    ) -> list[str]:
        out: list[str] = []
        score = self._dga_score(registrable, service)
        threshold = (
            max(self.dga_threshold, self.config.url_only_dga_threshold)
            if url_only
            else self.dga_threshold
        )
        if score is not None and score >= threshold:
            out.append(f"dga score {score:.2f}")
        if self.typosquat is not None:
            squat = self.typosquat.lookup(registrable)
            if squat is not None:
                out.append(squat.reason())
        distinct = {_fold_www(h) for h in hosts}
        if len(distinct) >= self.config.many_hosts:
            out.append(f"{len(distinct)} listed hosts")
        return out

    def _dga_score(self, registrable: str, service: ServiceHit | None) -> float | None:
        if self.dga is None:
            return None
        if service is not None and service.kind in self.config.no_dga_kinds:
            return None
        try:
            suffix = public_suffix(registrable)
        except InvalidIndicator:
            return None
        label = registrable[: -len(suffix) - 1]
        if not label or "." in label or len(label) < self.config.dga_min_label_chars:
            return None
        return float(self.dga.score(label))
