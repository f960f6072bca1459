"""What a fleet tenant changes in its own list's build: its feed subscriptions, its deny
entries (block entries of confidence 100) and its allow entries (added to its allow files).

Shared by ``build --tenant T --store URL`` (``distributor.fleet_cli``) and the scheduler, so
a tenant's list is the same whether it was built by hand or on schedule.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from types import MappingProxyType

from blocklist.fileio import write_atomic

from .condense.allowlist import AllowReport, parse_allow_lines
from .condense.settings import CondenseSettings
from .fleet import Tenant
from .indicators import Indicator

log = logging.getLogger("stockade.distributor.fleet")

Parsed = list[tuple[list[Indicator], str]]


def apply_tenant(
    tenant: Tenant, parsed: Parsed, settings: CondenseSettings, state: Path
) -> tuple[Parsed, CondenseSettings]:
    """``parsed`` and ``settings`` for ``tenant``'s list. Allow entries are written to
    ``STATE/fleet/<tenant>.allow`` (condensing reads allow lists from files)."""
    name = tenant.name
    if tenant.subscriptions:
        wanted = set(tenant.subscriptions)
        filtered: Parsed = []
        for inds, vendor in parsed:
            keep = [i for i in inds if i.source in wanted]  # an indicator's source: its feed
            if keep:
                filtered.append((keep, vendor))
        parsed = filtered
    if tenant.deny:
        report = AllowReport()
        entries = parse_allow_lines(tenant.deny, f"fleet:{name}:deny", report)
        for reason, n in report.rejected.items():
            log.warning("tenant %s: %d deny entries refused: %s", name, n, reason)
        deny = [dataclasses.replace(i, allow=False, confidence=100) for i in entries]
        parsed = [*parsed, (deny, f"tenant {name}")]
    if tenant.allow:
        path = state / "fleet" / f"{name}.allow"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, ("\n".join(tenant.allow) + "\n").encode())
        files = (*settings.allow_files(name), path)
        settings = dataclasses.replace(
            settings, tenants=MappingProxyType({**settings.tenants, name: files})
        )
    log.info(
        "tenant %s from the fleet: %d allow, %d deny entries, feeds %s",
        name,
        len(tenant.allow),
        len(tenant.deny),
        ", ".join(tenant.subscriptions) or "all",
    )
    return parsed, settings
