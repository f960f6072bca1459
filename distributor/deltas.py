"""Delta bundles written at publish time, from each of the last K versions to the new one.

Layout (ADR 0003 s. 3)::

    OUT/{tenant}/{profile}/deltas/v00000006-v00000007.delta   delta bundle 6 -> 7

A delta bundle carries the new version's own keyring and digest envelopes, so a sensor
verifies the list it rebuilds exactly as it verifies the full bundle. One is written only
when it is smaller than the full bundle: otherwise the full bundle is the better answer.
A base that cannot be read or is not a format 2 list is skipped (and logged), and so is a
target that is not a bundle 2: a delta only saves bytes, it never decides whether a version
is published.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from blocklist.delta import MEDIA_TYPE as DELTA_MEDIA_TYPE
from blocklist.delta import Caps, DeltaBundle, make_delta
from blocklist.errors import BlocklistError
from blocklist.fileio import write_atomic
from blocklist.signing import Bundle

from .profiles import FirmwareProfile
from .publish import PublishError, bundle_name, list_dir, published_versions

log = logging.getLogger("stockade.distributor.deltas")

DELTAS_DIR = "deltas"
DEFAULT_KEEP = 5
MEDIA_TYPE = DELTA_MEDIA_TYPE
_BUNDLE_RE = re.compile(r"v([0-9]{8,})\.stockade")


def delta_name(base: int, target: int) -> str:
    return f"v{base:08d}-v{target:08d}.delta"


def delta_path(directory: Path, base: int, target: int) -> Path:
    """Where the delta bundle ``base -> target`` of the list directory ``directory`` lies."""
    return directory / DELTAS_DIR / delta_name(base, target)


def version_of(bundle_path: Path) -> int | None:
    """The version a published bundle's file name says, or None for another name."""
    m = _BUNDLE_RE.fullmatch(bundle_path.name)
    return int(m.group(1)) if m else None


def caps_of(profile: FirmwareProfile) -> Caps:
    """A firmware profile's limits as ``Delta.changes`` takes them."""
    per_type = {t.entry_type: profile.capacity_for(t) for t in profile.supported_types}
    pools = tuple(
        (frozenset(t.entry_type for t in pool.types), pool.max_entries) for pool in profile.pools
    )
    return Caps(per_type, profile.max_entries, pools)


def make_delta_bundle(base_bundle: bytes, target_bundle: bytes) -> bytes:
    """The delta bundle from one published bundle to another (the target a bundle 2)."""
    target = Bundle.from_bytes(target_bundle)
    if target.detached is None:
        raise PublishError("the target is a bundle 1 (signed list, no digest): no deltas")
    base = Bundle.from_bytes(base_bundle)
    base_list = base.detached if base.detached is not None else base.blocklist.payload
    delta = make_delta(base_list, target.detached)
    return DeltaBundle(
        target.keyring.to_bytes(), target.blocklist.to_bytes(), delta.to_bytes()
    ).to_bytes()


def publish_deltas(
    out: Path, tenant: str, profile: str, version: int, bundle: bytes, keep: int = DEFAULT_KEEP
) -> list[Path]:
    """Write the delta bundles from the last ``keep`` published versions before ``version``
    to ``bundle`` (that version's full bundle); the paths written, oldest base first."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    d = list_dir(out, tenant, profile)
    bases = [v for v in published_versions(out, tenant, profile) if v < version]
    bases = bases[len(bases) - keep :] if keep else []
    try:
        if bases and Bundle.from_bytes(bundle).detached is None:
            log.info("%s/%s v%d is a bundle 1: no deltas", tenant, profile, version)
            return []
    except (BlocklistError, ValueError) as e:
        log.warning("no deltas to %s/%s v%d, not a bundle: %s", tenant, profile, version, e)
        return []
    written: list[Path] = []
    for base in bases:
        src = d / bundle_name(base)
        try:
            data = make_delta_bundle(src.read_bytes(), bundle)
        except (BlocklistError, OSError, ValueError) as e:
            log.warning("no delta %s -> v%d for %s/%s: %s", src.name, version, tenant, profile, e)
            continue
        if len(data) >= len(bundle):
            log.info(
                "delta v%d -> v%d for %s/%s is %d bytes, not smaller than the full %d: skipped",
                base,
                version,
                tenant,
                profile,
                len(data),
                len(bundle),
            )
            continue
        path = delta_path(d, base, version)
        try:
            write_atomic(path, data)
        except OSError as e:
            raise PublishError(f"cannot write {path}: {e.strerror or e}") from e
        written.append(path)
    return written
