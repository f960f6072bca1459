"""Native exports of a list: one module per format (see ``base``), found by name.

The registry maps a profile's ``export_format`` to the module that renders it; modules are
imported on first use, so a box that installs into Unbound never imports the FortiGate one.
"""

from __future__ import annotations

import importlib

from .base import Budget, Export, Exporter, ExportFile, ExportLimits

__all__ = ["FORMATS", "Budget", "Export", "ExportFile", "ExportLimits", "Exporter", "exporter"]

#: export_format -> module (each module defines ``EXPORTER``, an ``Exporter``)
FORMATS: dict[str, str] = {
    # resolvers and hosts files (DNS)
    "rpz": "blocklist.exports.rpz",
    "unbound": "blocklist.exports.unbound",
    "dnsmasq": "blocklist.exports.dnsmasq",
    "hosts": "blocklist.exports.hosts",
    # Linux and BSD firewalls
    "nftables": "blocklist.exports.nftables",
    "ipset": "blocklist.exports.ipset",
    "pf-table": "blocklist.exports.pf",
    # appliances pulling plain lists
    "paloalto-edl": "blocklist.exports.plain",
    "fortigate-threat-feed": "blocklist.exports.plain",
    "sonicwall": "blocklist.exports.plain",
    "sophos": "blocklist.exports.plain",
    "mikrotik": "blocklist.exports.mikrotik",
    "checkpoint-csv": "blocklist.exports.checkpoint",
    "defender-csv": "blocklist.exports.defender",
    # IDS
    "suricata-dataset": "blocklist.exports.suricata",
    "zeek-intel": "blocklist.exports.zeek",
}


def exporter(name: str) -> Exporter:
    """The exporter of ``name``; ``KeyError`` names the formats there are."""
    module = FORMATS.get(name)
    if module is None:
        raise KeyError(f"no export format {name!r}; known: {', '.join(sorted(FORMATS))}")
    mod = importlib.import_module(module)
    found: Exporter = mod.EXPORTERS[name] if hasattr(mod, "EXPORTERS") else mod.EXPORTER
    return found
