"""The condensing tables of the feed config: strict, with paths against the config file."""

from __future__ import annotations

from pathlib import Path

import pytest

from distributor.condense.settings import CondenseSettings
from distributor.config import from_toml_text
from distributor.errors import ConfigError

FEED = '[[feed]]\nname = "a"\nformat = "domains"\nsource = "a.txt"\n'


def test_absent_tables_give_the_defaults() -> None:
    assert from_toml_text(FEED).condense == CondenseSettings()


def test_all_tables(tmp_path: Path) -> None:
    text = (
        FEED
        + """
[reference]
top_sites = "ref/top.csv"
warninglists = "/srv/warninglists"
top_n = 5000
dga_samples = "ref/dga.csv"

[score]
corroboration = 0.5
recency_half_life_days = 7

[categorize]
many_hosts = 4
dga_threshold = 0.8

[tenants.acme]
allow = ["allow/acme.txt", "allow/common.txt"]
"""
    )
    c = from_toml_text(text, base_dir=tmp_path).condense
    assert c.reference.top_sites == tmp_path / "ref/top.csv"
    assert c.reference.warninglists == Path("/srv/warninglists")
    assert c.reference.top_n == 5000 and c.reference.org_ranges is None
    assert c.score.corroboration == 0.5 and c.score.recency_half_life_days == 7
    assert c.categorize.many_hosts == 4 and c.categorize.dga_threshold == 0.8
    assert c.allow_files("acme") == (tmp_path / "allow/acme.txt", tmp_path / "allow/common.txt")
    assert c.allow_files("other") == ()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[reference]\ntop_site = "x"\n', r"\[reference\].*top_site.*unknown key"),
        ("[reference]\ntop_n = -1\n", "top_n.*expected an integer"),
        ("[reference]\ntop_sites = 3\n", "top_sites.*non-empty path"),
        ("[score]\nrecency = -2\n", r"\[score\].*recency: must be a number >= 0"),
        ("[score]\nfreshness = 1\n", "unknown key 'freshness'"),
        ("[categorize]\nmany_hosts = 1\n", "many_hosts.*2..1000000"),
        ("[categorize]\ndga_threshold = 1.5\n", "dga_threshold.*between 0 and 1"),
        ('[tenants."bad name"]\nallow = []\n', "invalid tenant name"),
        ('[tenants.acme]\nallow = "x.txt"\n', "allow.*list of paths"),
        ('[tenants.acme]\ndeny = ["x"]\n', "deny.*unknown key"),
        ("[condense]\nx = 1\n", "unknown top-level key"),
    ],
)
def test_mistakes_are_named(extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_toml_text(FEED + extra, origin="feeds.toml")
