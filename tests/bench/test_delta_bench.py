"""bench/delta_bench.py in its quick mode: the output's shape and that the delta rebuilt the
target exactly. Nothing here is timed (docs/CONVENTIONS.md); the ratio is only checked to be a
saving, the goal itself is judged by the bench's full run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("delta_bench", REPO / "bench" / "delta_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["delta_bench"] = module
    spec.loader.exec_module(module)
    return module


db = _load()


def test_quick_json_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert db.main(["--quick", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["entries"] == db.QUICK_ENTRIES and out["runs"] == 3
    assert out["exact"] is True
    # 1% removed and as many added, 0.5% of the rest with another priority
    churn = round(db.QUICK_ENTRIES * db.CHURN)
    changed = round(db.QUICK_ENTRIES * db.PRIORITY_SHARE)  # a few redraw the same priority
    assert churn < out["churn"]["added_or_changed"] <= churn + changed
    assert out["churn"]["removed_or_changed"] == out["churn"]["added_or_changed"]
    assert 0 < out["delta_bundle_bytes"] < out["full_bundle_bytes"]
    assert out["ratio"] == out["delta_bundle_bytes"] / out["full_bundle_bytes"]
    for key in ("make_seconds", "apply_seconds_median", "accept_delta_seconds_median"):
        assert out[key] > 0


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert db.main(["--entries", "300", "--runs", "1"]) == 0
    text = capsys.readouterr().out
    assert "full bundle:" in text and "delta bundle:" in text and "% of the full bundle" in text
    assert "rebuilt list identical to the target: yes" in text


def test_refuses_silly_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert db.main(["--entries", "10"]) == 2
