"""bench/quality_bench.py on a tiny union this test writes: the invariants no tuning can fake.

Nothing here is timed (docs/CONVENTIONS.md): the timing code runs once on a tiny union only
to show it works.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "quality_bench", REPO / "bench" / "quality_bench.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["quality_bench"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


qb = _load()

TOP_SITES = ["popular.com", "bigsearch.com", "sharedfiles.com", "news-site.org"] + [
    f"site{i}.com" for i in range(40)
]

CONFIG = """\
[defaults]
confidence = 70
category = "malware"

[[feed]]
name = "vendor-a-domains"
vendor = "A"
format = "domains"
source = "a-domains.txt"

[[feed]]
name = "vendor-a-hosts"
vendor = "A"
format = "domains"
source = "a-hosts.txt"
options = { match = "exact" }

[[feed]]
name = "vendor-b-urls"
vendor = "B"
format = "urls"
source = "b-urls.txt"
category = "phishing"

[[feed]]
name = "vendor-c-ips"
vendor = "C"
format = "ipcidr"
source = "c-ips.txt"
category = "c2"

[[feed]]
name = "vendor-d-mixed"
vendor = "D"
format = "domains"
source = "d-mixed.txt"
category = "botnet"

[[feed]]
name = "missing-feed"
format = "domains"
source = "not-there.txt"
"""

FILES = {
    # popular.com is a top site a feed lists whole: the union blocks benign top-10k events
    "a-domains.txt": "evil-one.com\nevil-two.net\nbad-cdn.org\npopular.com\nx7kq2.top\n",
    "a-hosts.txt": "a.bad-cdn.org\nb.bad-cdn.org\nlogin.evil-three.info\nvictim.duckdns.org\n",
    "b-urls.txt": (
        "http://sharedfiles.com/d/abc123\n"
        "http://sharedfiles.com/d/def456\n"
        "http://sharedfiles.com/d/ghi789\n"
        "http://smallbakery.org/wp-content/x.exe\n"
        "http://craftshop.net/img/a.js\n"
        "http://localgarage.de/files/b.doc\n"
        "http://tinyblog.info/x/y.php\n"
        "http://45.9.20.1/bins/m.arm\n"
        "https://phish.evil-one.com/login.php?id=1\n"
        "http://tenant1.vercel.app/secure\n"
    ),
    "c-ips.txt": (
        "45.9.20.1\n45.9.20.2\n45.9.20.3\n81.2.69.0/24\n91.240.118.0/23\n2a02:1234::/32\n"
    ),
    "d-mixed.txt": "evil-one.com\n45.9.20.2\nbotnet-c2.biz\n",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("quality")
    feeds = root / "feeds"
    feeds.mkdir()
    for name, text in FILES.items():
        (feeds / name).write_text(text)
    (root / "feeds.toml").write_text(CONFIG)
    top = root / "top.csv"
    top.write_text("Domain\n" + "\n".join(TOP_SITES) + "\n")
    lists = root / "reference" / "misp-warninglists" / "lists"
    for name, kind, values in (
        ("dynamic-dns", "hostname", [".duckdns.org"]),
        ("url-shortener", "hostname", ["vercel.app"]),
        ("cloudflare", "cidr", ["104.16.0.0/13", "2606:4700::/32"]),
    ):
        (lists / name).mkdir(parents=True)
        (lists / name / "list.json").write_text(json.dumps({"type": kind, "list": values}))
    union = qb.load_union(feeds, CONFIG)
    ref = qb.load_reference(top, root / "reference")
    return {"root": root, "feeds": feeds, "top": top, "union": union, "ref": ref}


def _run(world: dict[str, Any], **kw: Any) -> Any:
    args: dict[str, Any] = {"n_malicious": 3000, "n_benign": 3000, "seed": 7, "active_share": 0.5}
    args.update(kw)
    return qb.run_quality(world["union"], world["ref"], {}, **args)


def test_union_is_read_from_the_feeds(world: dict[str, Any]) -> None:
    u = world["union"]
    assert any("not-there.txt" in s for s in u.skipped)
    types = {t.value for t, _ in u.block}
    assert types == {"domain", "host", "url", "ip", "cidr"}
    # one value listed by two vendors is one entry with both
    m = u.block[(qb.IndicatorType.DOMAIN, "evil-one.com")]
    assert m.vendors == {"A", "D"}
    assert world["ref"].service_of("victim.duckdns.org") == "duckdns.org"


def test_union_blocks_all_its_own_malicious_events(world: dict[str, Any]) -> None:
    result = _run(world)
    for rho, union_out in result.union.items():
        assert union_out.malicious == 3000
        assert union_out.malicious_blocked == union_out.malicious, rho
        assert union_out.entries == len(world["union"].block)


def test_every_kind_of_malicious_event_is_generated(world: dict[str, Any]) -> None:
    result = _run(world, n_malicious=20_000, active_share=1.0)
    kinds = {k[0] for t in result.traces.values() for k in t.malicious}
    assert kinds == {"dns", "http", "tcp"}
    names = {k[1] for t in result.traces.values() for k in t.malicious if k[0] == "dns"}
    # new subdomains under a DOMAIN entry, which only a suffix block catches
    assert any(n.endswith(".x7kq2.top") for n in names)


def test_baselines_at_full_budget_equal_the_union(world: dict[str, Any]) -> None:
    result = _run(world, budgets=(1.0,))
    for rho, rows in result.rows.items():
        union_out = result.union[rho]
        for name in qb.SELECTORS:
            if name == "stockade":
                continue
            r = rows[(1.0, name)]
            assert r.entries == union_out.entries, name
            assert r.malicious_blocked == union_out.malicious_blocked, name
            assert r.benign_blocked == union_out.benign_blocked, name
            assert r.benign_top_blocked == union_out.benign_top_blocked, name


def test_a_subset_of_the_union_never_blocks_more(world: dict[str, Any]) -> None:
    result = _run(world, budgets=(0.2, 0.5))
    for rho, rows in result.rows.items():
        union_out = result.union[rho]
        for (_, name), r in rows.items():
            if name == "stockade":
                continue  # may hold entries broader than the union's own
            assert r.malicious_blocked <= union_out.malicious_blocked, name
            assert r.benign_blocked <= union_out.benign_blocked, name
            assert 0.0 <= qb.protection(result, rho, (_, name)) <= 1.0


def test_benign_events_on_the_top_list_are_counted(world: dict[str, Any]) -> None:
    result = _run(world)
    for rho, trace in result.traces.items():
        assert sum(trace.benign.values()) == 3000
        assert set(trace.benign_by_stream) == {
            "top sites",
            "shared services",
            "compromised sites",
            "cdn/cloud addresses",
        }
        # popular.com is listed whole: every benign event under it is blocked, and top-10k
        under = [
            k
            for k in trace.benign
            if k[0] != "tcp" and (k[1] == "popular.com" or k[1].endswith(".popular.com"))
        ]
        assert under, "the Zipf trace visits the top-ranked site"
        assert all(k in trace.benign_top for k in under)
        union_out = result.union[rho]
        assert union_out.benign_top_blocked >= sum(trace.benign[k] for k in under)
        assert union_out.benign_blocked >= union_out.benign_top_blocked
        # nothing off the top list is counted as top-10k
        assert all(k[0] != "tcp" and world["ref"].is_top(k[1]) for k in trace.benign_top)


def test_same_seed_same_numbers(world: dict[str, Any]) -> None:
    a = _run(world, budgets=(0.1, 0.3))
    b = _run(world, budgets=(0.1, 0.3))
    assert a.union == b.union
    assert a.rows == b.rows
    assert {r: t.malicious for r, t in a.traces.items()} == {
        r: t.malicious for r, t in b.traces.items()
    }
    c = _run(world, budgets=(0.1, 0.3), seed=8)
    assert {r: t.malicious for r, t in c.traces.items()} != {
        r: t.malicious for r, t in a.traces.items()
    }


def test_rho_only_changes_the_malicious_trace(world: dict[str, Any]) -> None:
    result = _run(world, rhos=(0.0, 0.9))
    t0, t9 = result.traces[0.0], result.traces[0.9]
    assert t0.benign == t9.benign
    assert result.truths[0.0].campaign == result.truths[0.9].campaign


def test_main_quick_prints_tables_and_goals(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = world["root"]
    argv = [
        "--quick",
        "--skip-timing",
        "--feeds",
        str(world["feeds"]),
        "--config",
        str(root / "feeds.toml"),
        "--top-sites",
        str(world["top"]),
        "--reference",
        str(root / "reference"),
        "--malicious",
        "2000",
        "--benign",
        "2000",
    ]
    assert qb.main(argv) == 0
    out = capsys.readouterr().out
    assert "stockade selector: distributor." in out
    assert "rho = 0.00 (signals useless)" in out and "rho = 0.50" in out
    for name in qb.SELECTORS:
        assert name in out
    assert "Goals at rho = 0.50:" in out
    assert out.count("PASS") + out.count("FAIL") == 1 + 3 + 3
    assert qb.main(argv) == 0
    assert capsys.readouterr().out == out  # deterministic, to the character


def test_synthetic_union_and_condense_timing_run() -> None:
    block, allow = qb.synthetic_union(3000, seed=1)
    assert len(block) == 3000 and not allow
    again, _ = qb.synthetic_union(3000, seed=1)
    assert list(again) == list(block)
    assert {t.value for t, _ in block} == {"domain", "host", "url", "ip", "cidr"}
    qb.Index(qb.union_entries(qb.FeedUnion(block, {}, {}, [])))  # every value indexes
    result = qb.time_condense_here(3000, 200, 1, seed=1)
    assert result["n"] == 3000 and result["runs"] == 1
    assert 0 < result["kept"] <= 200


def test_stockade_hook_switches_to_condense_when_it_lands(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    class Result:
        def __init__(self, entries: list[Any]) -> None:
            self.entries = entries

    def condense(block: Any, allow: Any, cap: Any, *, reference_paths: Any, extra: int = 1) -> Any:
        seen.update(block=block, cap=cap, reference_paths=reference_paths)
        return Result(qb.union_entries(world["union"])[: cap.max_entries])

    monkeypatch.setattr(qb, "_condense_function", lambda: condense)
    assert qb.stockade_backend() == "distributor.condense.pipeline.condense"
    u = world["union"]
    entries = qb.select_stockade(u.block, u.allow, 5, {"top_sites": world["top"]})
    assert len(entries) == 5 and seen["cap"].max_entries == 5
    assert seen["reference_paths"] == {"top_sites": world["top"]}

    def wants_more(block: Any, settings: Any) -> Any:
        raise AssertionError("not called")

    monkeypatch.setattr(qb, "_condense_function", lambda: wants_more)
    with pytest.raises(SystemExit, match="settings"):
        qb.select_stockade(u.block, u.allow, 5, {})


def test_stockade_selection_leaves_the_union_alone(world: dict[str, Any]) -> None:
    u = world["union"]
    before = {k: (m.priority, m.sources, m.category) for k, m in u.block.items()}
    ctx = qb.SelectContext(u, qb.union_entries(u), {}, 1)
    qb.SELECTORS["stockade"](ctx, 4)
    assert {k: (m.priority, m.sources, m.category) for k, m in u.block.items()} == before
