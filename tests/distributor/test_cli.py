"""``stockade-distributor`` in-process: keygen, build, profiles, token add, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from blocklist.signing import PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import publish
from distributor.cli import main
from distributor.keys import KEYRING, ROOT_KEY, ROOT_PUB, SIGNING_KEY, SIGNING_PUB
from distributor.profiles import DEFAULT_PROFILE_DIR, load_profile, profile_names
from distributor.tokens import TokenStore, hash_token

FEEDS_TOML = """\
[defaults]
confidence = 60

[[feed]]
name = "dom"
vendor = "vendor-1"
format = "domains"
source = "dom.txt"
category = "malware"

[[feed]]
name = "phish"
vendor = "vendor-2"
format = "urls"
source = "urls.txt"
category = "phishing"

[[feed]]
name = "drop"
vendor = "Spamhaus"
format = "ipcidr"
source = "drop.txt"
category = "botnet"

[[feed]]
name = "hostsfile"
vendor = "vendor-3"
format = "hosts"
source = "hosts.txt"
category = "ads"

[[feed]]
name = "adb"
vendor = "vendor-4"
format = "adblock"
source = "adb.txt"
category = "ads"

[[feed]]
name = "off"
format = "domains"
source = "never-read.txt"
enabled = false
"""

FEED_FILES = {
    "dom.txt": "evil-domain.com\n*.badness.net\n# comment\nnot a domain\n8.8.4.4\n",
    "urls.txt": "http://phish.evil-domain.com/login\nhttps://phishy-site.org/a/b?c=1\nnotaurl\n",
    "drop.txt": "; Spamhaus DROP\n185.220.101.0/24 ; SBL1\n45.9.148.0/24\n45.9.148.10\n",
    "hosts.txt": "0.0.0.0 ads.tracker-co.com ads2.tracker-co.com\n127.0.0.1 localhost\n",
    "adb.txt": "! title\n||tracker-co.com^\n@@||ok.tracker-co.com^\n||x.com^$third-party\n",
}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "feeds.toml").write_text(FEEDS_TOML)
    for name, text in FEED_FILES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.fixture
def keys(work: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["keygen", "--dir", str(work / "keys")]) == 0
    capsys.readouterr()
    return work / "keys"


def build_args(work: Path, keys: Path, profile: str = "linux-sensor", *extra: str) -> list[str]:
    return [
        "build",
        "--config",
        str(work / "feeds.toml"),
        "--profile",
        profile,
        "--tenant",
        "acme",
        "--keys",
        str(keys),
        "--out",
        str(work / "out"),
        *extra,
    ]


def failed(capsys: pytest.CaptureFixture[str], rc: int) -> str:
    """The error output of a run that must have failed cleanly."""
    out, err = capsys.readouterr()
    assert rc == 1
    assert "Traceback" not in out + err
    assert err.startswith("stockade-distributor: error: ")
    return err


# --- keygen -------------------------------------------------------------------------------


def test_keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "keys"
    assert main(["keygen", "--dir", str(d)]) == 0
    out = capsys.readouterr().out
    assert {p.name for p in d.iterdir()} == {ROOT_KEY, ROOT_PUB, SIGNING_KEY, SIGNING_PUB, KEYRING}
    assert "OFFLINE" in out and str(d / ROOT_KEY) in out and str(d / ROOT_PUB) in out

    err = failed(capsys, main(["keygen", "--dir", str(d)]))
    assert "refusing to overwrite" in err


# --- build --------------------------------------------------------------------------------


def test_build_text_report(work: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(build_args(work, keys)) == 0
    out, _ = capsys.readouterr()
    bundle = work / "out" / "acme" / "linux-sensor" / "v00000001.stockade"
    assert f"built {bundle}" in out
    for feed in ["dom (domains)", "phish (urls)", "drop (ipcidr)", "hostsfile (hosts)", "adb"]:
        assert feed in out
    assert "never-read" not in out and "off (" not in out  # disabled feed
    assert "version 1" in out and "1 allow exceptions" in out
    # the three names under tracker-co.com make it a dedicated domain: one entry covers them
    assert "merged 3: collapsed into its dedicated domain" in out
    assert "merged 1: aggregated into a covering CIDR (e.g. ip 45.9.148.10 (45.9.148.0/24))" in out
    assert "registrable domains dedicated -> registrable: 3" in out
    assert "estimated protection kept 100.0%" in out

    root = PublicKey.from_pem((keys / ROOT_PUB).read_bytes())
    state = TrustedListState([root], TrustPolicy(tenant="acme", profile="linux-sensor"))
    lst = state.update(bundle.read_bytes()).blocklist
    values = {e.value for e in lst.entries}
    assert {"evil-domain.com", "badness.net", "tracker-co.com", "185.220.101.0/24"} <= values
    assert "ok.tracker-co.com" in values  # the @@ exception under a kept domain


@pytest.mark.parametrize("profile", sorted(profile_names()))
def test_build_json_report_for_every_shipped_profile(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str], profile: str
) -> None:
    for version in (1, 2):
        assert main(build_args(work, keys, profile, "--json")) == 0
        out, err = capsys.readouterr()
        report = json.loads(out)  # stdout is only the report; feed lines go to stderr
        assert "dom (domains)" in err
        assert report["version"] == version
        assert report["profile"] == profile
        assert [f["feed"] for f in report["feeds"]] == ["dom", "phish", "drop", "hostsfile", "adb"]
        assert report["union_block_entries"] == 11
        # what the profile's device takes of the full set {cidr 2, domain 3, ip 1, url 1}
        supported = {t.value for t in load_profile(profile).supported_types}
        full = {"cidr": 2, "domain": 3, "ip": 1, "url": 1}
        assert report["kept"] == {k: v for k, v in full.items() if k in supported}
    assert publish.published_versions(work / "out", "acme", profile) == [1, 2]


def test_build_quiet_and_profile_by_path(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from distributor.profiles import DEFAULT_PROFILE_DIR

    path = DEFAULT_PROFILE_DIR / "fortigate-threat-feed.toml"
    assert main(build_args(work, keys, str(path), "--quiet", "--valid-hours", "2.5")) == 0
    out = capsys.readouterr().out
    assert "dom (domains)" not in out
    assert "profile fortigate-threat-feed" in out


def test_one_broken_feed_does_not_stop_the_build(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "urls.txt").unlink()
    assert main(build_args(work, keys, "linux-sensor", "--json")) == 0
    report = json.loads(capsys.readouterr().out)
    broken = [f for f in report["feeds"] if f["feed"] == "phish"]
    assert len(broken) == 1 and "not found" in broken[0]["error"]
    assert "url" not in report["kept"]


# --- explain ------------------------------------------------------------------------------


def explain(work: Path, keys: Path, indicator: str, *extra: str) -> list[str]:
    args = ["explain", indicator, "--config", str(work / "feeds.toml"), "--profile"]
    return [*args, "linux-sensor", "--tenant", "acme", "--keys", str(keys), *extra]


def test_explain_follows_an_indicator_into_its_entry(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(explain(work, keys, "ads.tracker-co.com")) == 0
    out = capsys.readouterr().out
    assert out.startswith("acme/linux-sensor: IN\n")
    assert "BLOCK by entry domain tracker-co.com" in out
    assert "host ads.tracker-co.com: in as domain tracker-co.com" in out
    assert "category: dedicated, block registrable (registrable tracker-co.com)" in out
    assert "- 3 listed hosts" in out and "priority " in out and "corroboration 0.75" in out
    assert not (work / "out").exists()  # explain never publishes


def test_explain_json_for_an_address_an_allow_entry_and_an_unknown_name(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(explain(work, keys, "45.9.148.10", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    finding, covering = doc["findings"]  # the address itself, and the listed /24 around it
    assert (finding["type"], covering["type"], covering["value"]) == ("ip", "cidr", "45.9.148.0/24")
    assert covering["status"] == "in"
    assert finding["as_entry"] == {"type": "cidr", "value": "45.9.148.0/24"}
    assert finding["condensed"].startswith("aggregated into a covering CIDR")
    assert 1 <= finding["score"]["priority"] <= 255

    assert main(explain(work, keys, "ok.tracker-co.com", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["allow_listed_as"] == [
        {"type": "domain", "value": "ok.tracker-co.com", "sources": ["adb"]}
    ]
    assert doc["sensor_match"]["action"] == "ALLOW"

    assert main(explain(work, keys, "phish.evil-domain.com", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "in"  # through the parent domain a feed lists
    assert [(f["type"], f["value"]) for f in doc["findings"]] == [("domain", "evil-domain.com")]
    assert doc["sensor_match"]["entry"] == {"type": "domain", "value": "evil-domain.com"}

    assert main(explain(work, keys, "nothing-listed.example.org", "--json")) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "not in any feed" and doc["sensor_match"] is None


def test_explain_names_the_budget_that_pushed_an_entry_out(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    small = tmp_path / "tiny.toml"
    text = (DEFAULT_PROFILE_DIR / "linux-sensor.toml").read_text()
    small.write_text(
        text.replace('name = "linux-sensor"', 'name = "tiny"').replace(
            "max_entries = 1000000", "max_entries = 2"
        )
    )
    args = explain(work, keys, "8.8.4.4", "--json")
    args[args.index("linux-sensor")] = str(small)
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "out"
    assert doc["findings"][0]["removed_by"] == "over total entry capacity"


def test_explain_refuses_what_is_not_an_indicator(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = failed(capsys, main(explain(work, keys, "not a name!")))
    assert "cannot read 'not a name!' as an indicator" in err


# --- profiles, tokens ---------------------------------------------------------------------


def test_profiles_table_lists_the_shipped_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "VENDOR", "DELIVERY"]
    names = [line.split()[0] for line in lines[1:]]
    assert names == sorted(profile_names()) and len(names) >= 12
    row = next(line for line in lines if line.startswith("paloalto-edl"))
    assert "150,000" in row and "Palo Alto Networks" in row


def test_profiles_bad_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = failed(capsys, main(["profiles", "--dir", str(tmp_path / "nope")]))
    assert str(tmp_path / "nope") in err
    err = failed(capsys, main(["profiles", "--dir", str(tmp_path)]))
    assert "no firmware profiles" in err


def test_token_add_prints_the_token_on_stdout_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "etc" / "tokens.toml"
    args = ["token", "add", "--tokens", str(path), "--tenant", "acme", "--name", "gw-1"]
    assert main([*args, "--profile", "linux-sensor", "--profile", "paloalto-edl"]) == 0
    out, err = capsys.readouterr()
    assert out.count("\n") == 1
    token = out.strip()
    assert token.startswith("stk_")
    assert token not in err and "shown once" in err
    assert token not in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    appliance = TokenStore.load(path).authenticate(token)
    assert appliance is not None
    assert appliance.profiles == ("linux-sensor", "paloalto-edl")
    assert appliance.token_sha256 == hash_token(token)

    err = failed(capsys, main([*args, "--profile", "linux-sensor"]))
    assert "already exists" in err
    err = failed(capsys, main([*args[:-1], "bad name", "--profile", "linux-sensor"]))
    assert "invalid name" in err
    assert len(TokenStore.load(path).appliances) == 1


def test_token_add_to_a_broken_token_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text("[[appliance]]\nname = 'x'\n")
    err = failed(
        capsys,
        main(
            [
                "token",
                "add",
                "--tokens",
                str(path),
                "--tenant",
                "a",
                "--name",
                "b",
                "--profile",
                "p",
            ]
        ),
    )
    assert str(path) in err and "missing key" in err
    assert path.read_text() == "[[appliance]]\nname = 'x'\n"


# --- errors: exit 1, the problem named, no traceback --------------------------------------


def test_missing_config(work: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "feeds.toml").unlink()
    err = failed(capsys, main(build_args(work, keys)))
    assert str(work / "feeds.toml") in err and "not found" in err


def test_bad_config_names_the_key(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work / "feeds.toml").write_text(FEEDS_TOML.replace("confidence = 60", "confidnce = 60"))
    err = failed(capsys, main(build_args(work, keys)))
    assert "confidnce" in err and str(work / "feeds.toml") in err


def test_unknown_profile(work: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = failed(capsys, main(build_args(work, keys, "no-such-firmware")))
    assert "no profile 'no-such-firmware'" in err and "linux-sensor" in err


@pytest.mark.parametrize("damage", ["missing", "garbage", "empty-dir"])
def test_bad_key_dir(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    if damage == "missing":
        keydir = work / "no-keys"
    elif damage == "garbage":
        keydir = keys
        (keys / SIGNING_KEY).write_text("garbage")
    else:
        keydir = work / "empty"
        keydir.mkdir()
    err = failed(capsys, main(build_args(work, keydir)))
    assert str(keydir) in err
    assert not (work / "out").exists()


def test_unwritable_output(work: Path, keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (work / "out").write_text("a file, not a directory")
    err = failed(capsys, main(build_args(work, keys)))
    assert "cannot publish" in err


@pytest.mark.parametrize("tenant", ["../evil", "a b", ""])
def test_bad_tenant(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str], tenant: str
) -> None:
    args = build_args(work, keys)
    args[args.index("acme")] = tenant
    err = failed(capsys, main(args))
    assert "invalid tenant" in err


@pytest.mark.parametrize("hours", ["0", "-1", "nan", "inf", "1e30", "soon"])
def test_bad_lifetime_is_a_usage_error(
    work: Path, keys: Path, capsys: pytest.CaptureFixture[str], hours: str
) -> None:
    with pytest.raises(SystemExit) as info:
        main(build_args(work, keys, "linux-sensor", "--valid-hours", hours))
    assert info.value.code == 2
    assert "--valid-hours" in capsys.readouterr().err
