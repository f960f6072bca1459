"""``explain``: why one indicator is in or out of a list, from a build run that watched it.

The build is deterministic, so re-running it with the indicator's keys watched gives exactly
the published decision; the record says in or out, as which entry, the score components,
the category decision and its reasons, and which allow-list or which budget removed it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from blocklist.artifact import Action, Entry
from blocklist.index import Index
from blocklist.names import split_url

from ..indicators import IndicatorType

if TYPE_CHECKING:
    from ..build import BuildResult, Key


def _in_list(result: BuildResult) -> dict[tuple[str, str], Action]:
    return {(e.type.name.lower(), e.value): e.action for e in result.blocklist.entries}


def explain_result(result: BuildResult, keys: Sequence[Key]) -> dict[str, Any]:
    """A JSON-able explanation for every key the indicator may be in the union as."""
    condensed = result.condensed
    drops = result.selection.drops
    listed = _in_list(result)
    findings: list[dict[str, Any]] = []
    for key in keys:
        typ, value = key
        doc: dict[str, Any] = {"type": typ.value, "value": value}
        route = condensed.routes.get(key) if condensed is not None else key
        condense_fate = drops.fates.get(key)
        if route is None and condense_fate is None:
            doc["in_union"] = False
            findings.append(doc)
            continue
        doc["in_union"] = True
        if condensed is not None and typ in (
            IndicatorType.DOMAIN,
            IndicatorType.HOST,
            IndicatorType.URL,
        ):
            host = split_url(value)[1] if typ is IndicatorType.URL else value
            for reg, d in condensed.decisions.items():
                if host == reg or host.endswith("." + reg):
                    doc["category"] = {
                        "registrable": reg,
                        "kind": d.kind,
                        "block_unit": d.unit,
                        "reasons": list(d.reasons),
                    }
        if route is None:
            doc["status"] = "out"
            doc["removed_by"] = condense_fate
            findings.append(doc)
            continue
        rtype, rvalue = route
        doc["as_entry"] = {"type": rtype.value, "value": rvalue}
        if condense_fate is not None and route != key:
            doc["condensed"] = condense_fate
        if condensed is not None and route in condensed.scores:
            doc["score"] = condensed.scores[route].to_json()
        action = listed.get((rtype.name.lower(), rvalue))
        if action is Action.BLOCK:
            doc["status"] = "in"
        else:
            doc["status"] = "out"
            doc["removed_by"] = drops.fates.get(route, "not selected")
        findings.append(doc)
    found = [f for f in findings if f.get("in_union")]
    status = "in" if any(f.get("status") == "in" for f in found) else "out"
    if not found:
        status = "not in any feed"
    allowed = [
        {"type": k[0].value, "value": k[1], "sources": sorted(condensed.allow[k].sources)}
        for k in keys
        if condensed is not None and k in condensed.allow
    ]
    return {
        "tenant": result.report["tenant"],
        "profile": result.report["profile"],
        "status": status,
        "findings": found or findings,
        "allow_listed_as": allowed,
        "sensor_match": _sensor_match(result, keys),
    }


def _sensor_match(result: BuildResult, keys: Sequence[Key]) -> dict[str, Any] | None:
    """What the published list does when a sensor sees this indicator (an entry above it may
    match even when the indicator itself is not in any feed)."""
    index = Index(result.blocklist.entries)
    typ, value = keys[0]
    hit: Entry | None
    if typ is IndicatorType.URL:
        _, host, _, path = split_url(value)
        hit = index.lookup_url(host, path) or index.lookup_name(host)
    elif typ is IndicatorType.IP:
        hit = index.lookup_ip(value)
    elif typ is IndicatorType.CIDR:
        hit = index.lookup_ip(value.split("/")[0])
    else:
        hit = index.lookup_name(value)
    if hit is None:
        return None
    return {"entry": {"type": hit.type.name.lower(), "value": hit.value}, "action": hit.action.name}


def render_explanation(doc: dict[str, Any]) -> str:
    lines = [f"{doc['tenant']}/{doc['profile']}: {doc['status'].upper()}"]
    match = doc.get("sensor_match")
    if match:
        e = match["entry"]
        lines.append(f"  a sensor seeing it: {match['action']} by entry {e['type']} {e['value']}")
    else:
        lines.append("  a sensor seeing it: no entry of the list matches")
    for a in doc.get("allow_listed_as", []):
        lines.append(f"  allow-listed as {a['type']} {a['value']} by {', '.join(a['sources'])}")
    for f in doc["findings"]:
        head = f"  {f['type']} {f['value']}"
        if not f.get("in_union"):
            lines.append(f"{head}: not listed by any feed")
            continue
        entry = f.get("as_entry")
        where = f" as {entry['type']} {entry['value']}" if entry else ""
        lines.append(f"{head}: {f['status']}{where}")
        if "condensed" in f:
            lines.append(f"    condensed: {f['condensed']}")
        if "removed_by" in f:
            lines.append(f"    removed by: {f['removed_by']}")
        cat = f.get("category")
        if cat:
            lines.append(
                f"    category: {cat['kind']}, block {cat['block_unit']} "
                f"(registrable {cat['registrable']})"
            )
            lines.extend(f"      - {r}" for r in cat["reasons"])
        score = f.get("score")
        if score:
            parts = ", ".join(f"{k} {v}" for k, v in score.items() if k != "priority")
            lines.append(f"    priority {score['priority']}: {parts}")
    return "\n".join(lines)
