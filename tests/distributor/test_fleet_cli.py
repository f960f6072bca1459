"""``stockade-distributor tenants|appliances|lists|admin-token`` and ``serve --fleet``: the
commands as an operator runs them (in-process ``main`` for the many small cases, real
subprocesses for the token shown once and for a served fleet)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from blocklist.signing import PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import publish
from distributor.cli import main
from distributor.fleet import Fleet
from distributor.indicators import Indicator, IndicatorType
from distributor.keys import ROOT_PUB
from distributor.store import Store
from distributor.store.schema import appliances
from distributor.tokens import hash_token

HANG_GUARD_SECONDS = 60.0
CLI = [sys.executable, "-m", "distributor.cli"]
REPO = Path(__file__).resolve().parents[2]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_SECONDS,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_tenants_commands(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    s = ("--store", store_url)
    rc, out, _ = run(capsys, "tenants", "add", "acme", "--allow", "ok.example", *s)
    assert (rc, out) == (0, "added tenant acme\n")
    rc, out, _ = run(capsys, "tenants", "add", "globex", "--subscribe", "abuse-ch", *s)
    assert rc == 0

    rc, out, _ = run(capsys, "tenants", "list", *s)
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == [
        "NAME",
        "APPLIANCES",
        "ALLOW",
        "DENY",
        "SUBSCRIPTIONS",
        "CREATED",
    ]
    # aligned: every column starts where its heading does
    col = lines[0].index("SUBSCRIPTIONS")
    assert lines[1][col:].startswith("-") and lines[2][col:].startswith("abuse-ch")
    assert [ln.split()[0] for ln in lines[1:]] == ["acme", "globex"]

    rc, out, _ = run(capsys, "tenants", "set", "acme", "--deny", "bad.example", "--json", *s)
    doc = json.loads(out)
    assert rc == 0 and doc["deny"] == ["bad.example"] and doc["allow"] == ["ok.example"]
    rc, out, _ = run(capsys, "tenants", "set", "acme", "--clear", "allow", *s)
    assert rc == 0 and "0 allow, 1 deny" in out
    rc, out, _ = run(capsys, "tenants", "show", "acme", *s)
    assert rc == 0 and "bad.example" in out and "allow          0 entries" in out
    rc, out, _ = run(capsys, "tenants", "list", "--json", *s)
    assert [t["name"] for t in json.loads(out)] == ["acme", "globex"]

    rc, out, _ = run(capsys, "tenants", "remove", "globex", *s)
    assert (rc, out) == (0, "removed tenant globex\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tenants", "add", "no way"], "invalid tenant name 'no way'"),
        (["tenants", "add", "acme"], "tenant 'acme' exists already"),
        (["tenants", "show", "nope"], "no tenant 'nope'"),
        (["tenants", "set", "acme"], "nothing to set"),
        (["tenants", "set", "acme", "--allow", "a b"], "allow[0] 'a b'"),
        (["tenants", "set", "acme", "--clear", "deny", "--deny", "x.test"], "--clear deny"),
        (["tenants", "set", "acme", "--subscribe", "UPPER"], "subscriptions[0]"),
        (["tenants", "remove", "acme"], "tenant 'acme' has 1 appliance"),
        (["appliances", "add", "--tenant", "nope", "--name", "a", "--profile", "p"], "no tenant"),
        (
            ["appliances", "add", "--tenant", "acme", "--name", "gw-1", "--profile", "p"],
            "appliance 'gw-1' exists already in tenant 'acme'",
        ),
        (
            [
                *("appliances", "add", "--tenant", "acme", "--name", "x", "--profile", "p"),
                *("--push-url", "ftp://x/"),
            ],
            "push URL",
        ),
        (["appliances", "show", "--tenant", "acme", "--name", "nope"], "no appliance 'nope'"),
        (["appliances", "revoke", "--tenant", "acme", "--name", "nope"], "no appliance"),
        (["appliances", "rotate-token", "--tenant", "x", "--name", "y"], "no tenant 'x'"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    s = ("--store", f"sqlite:///{tmp_path / 'fleet.db'}")
    assert run(capsys, "tenants", "add", "acme", *s)[0] == 0
    assert (
        run(
            capsys, "appliances", "add", "--tenant", "acme", "--name", "gw-1", "--profile", "p", *s
        )[0]
        == 0
    )
    rc, out, err = run(capsys, *argv, *s)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("stockade-distributor: error: ")
    assert message in err


def test_entry_files_with_broken_bytes_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = ("--store", f"sqlite:///{tmp_path / 'fleet.db'}")
    good = tmp_path / "allow.txt"
    good.write_bytes(b"# tenant allow list\nok.example  # our site\n\n10.0.0.0/8\n")
    rc, out, _ = run(capsys, "tenants", "add", "acme", "--allow-file", str(good), "--json", *s)
    assert rc == 0 and json.loads(out)["allow"] == ["ok.example", "10.0.0.0/8"]
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"ok.example\n\xff\xfe\x00bad\n")
    rc, _, err = run(capsys, "tenants", "set", "acme", "--deny-file", str(broken), *s)
    assert rc == 2 and "broken.txt" in err and err.count("\n") == 1
    spaced = tmp_path / "spaced.txt"
    spaced.write_bytes(b"two words.example\n")
    rc, _, err = run(capsys, "tenants", "set", "acme", "--deny-file", str(spaced), *s)
    assert rc == 2 and "deny[0]" in err
    rc, _, err = run(capsys, "tenants", "set", "acme", "--deny-file", str(tmp_path / "no"), *s)
    assert rc == 2 and "cannot read entries" in err
    assert Fleet.open(s[1]).show_tenant("acme").deny == ()


def token_hashes(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(select(appliances.c.token_sha256))]
    finally:
        engine.dispose()


def test_token_is_printed_once_and_stored_hashed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    s = ("--store", url)
    assert cli("tenants", "add", "acme", *s, cwd=tmp_path).returncode == 0
    added = cli(
        "appliances",
        "add",
        "--tenant",
        "acme",
        "--name",
        "gw-1",
        "--profile",
        "linux-sensor",
        *s,
        cwd=tmp_path,
    )
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert token.startswith("stk_") and added.stdout == token + "\n"
    assert "shown once" in added.stderr and token not in added.stderr
    assert token_hashes(url) == [hash_token(token)]

    outputs: list[str] = []
    for argv in (
        ["appliances", "list"],
        ["appliances", "list", "--json"],
        ["appliances", "show", "--tenant", "acme", "--name", "gw-1"],
        ["appliances", "show", "--tenant", "acme", "--name", "gw-1", "--json"],
        ["tenants", "show", "acme", "--json"],
        ["appliances", "revoke", "--tenant", "acme", "--name", "gw-1", "--json"],
    ):
        done = cli(*argv, *s, cwd=tmp_path)
        assert done.returncode == 0, (argv, done.stderr)
        outputs += [done.stdout, done.stderr]
    for text in outputs:
        assert token not in text and hash_token(token) not in text
    shown = json.loads(outputs[6])  # show --json, before the revoke
    assert shown["name"] == "gw-1" and shown["revoked_at"] is None
    assert json.loads(outputs[10])["revoked_at"] is not None
    with Fleet.open(url) as fleet:
        assert fleet.authenticate(token) is None  # revoked


def test_rotate_token_prints_a_new_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    s = ("--store", url)
    run(capsys, "tenants", "add", "acme", *s)
    old = run(capsys, "appliances", "add", "--tenant", "acme", "--name", "a", "--profile", "p", *s)[
        1
    ].strip()
    rc, out, err = run(capsys, "appliances", "rotate-token", "--tenant", "acme", "--name", "a", *s)
    new = out.strip()
    assert rc == 0 and new.startswith("stk_") and new != old and "shown once" in err
    with Fleet.open(url) as fleet:
        assert fleet.authenticate(old) is None
        got = fleet.authenticate(new)
        assert got is not None and got.name == "a"


def test_appliances_list_shows_staleness(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    s = ("--store", url)
    lists = tmp_path / "lists"
    publish.publish(lists, "acme", "linux-sensor", 1, b"v1", b"{}")
    publish.publish(lists, "acme", "linux-sensor", 2, b"v2", b"{}")
    run(capsys, "tenants", "add", "acme", *s)
    for name in ("current", "behind"):
        run(
            capsys,
            "appliances",
            "add",
            "--tenant",
            "acme",
            "--name",
            name,
            "--profile",
            "linux-sensor",
            *s,
        )
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with Fleet.open(url) as fleet:
        fleet.record_poll(fleet.show_appliance("acme", "current"), 2, "ok", now=hour_ago)
        fleet.record_poll(fleet.show_appliance("acme", "behind"), 1, "ok", now=hour_ago)
    rc, out, _ = run(capsys, "appliances", "list", "--lists", str(lists), "--json", *s)
    got = {a["name"]: a for a in json.loads(out)}
    assert not got["current"]["stale"] and got["current"]["newest_version"] == 2
    assert got["behind"]["stale_reasons"] == ["holds v1, v2 is published"]
    rc, out, _ = run(capsys, "appliances", "list", "--lists", str(lists), *s)
    rows = {ln.split()[1]: ln.split() for ln in out.splitlines()[1:]}
    assert rows["behind"][7] == "STALE" and rows["current"][7] == "ok"
    assert rows["current"][4] == "1h"  # seen an hour ago
    # not seen for longer than asked: stale too
    rc, out, _ = run(
        capsys, "appliances", "list", "--lists", str(lists), "--stale-hours", "0.5", "--json", *s
    )
    assert rc == 0
    got = {a["name"]: a for a in json.loads(out)}
    assert got["current"]["stale"] and got["current"]["stale_reasons"][0].startswith("not seen")
    with pytest.raises(SystemExit) as exit_:
        main(["appliances", "list", "--stale-hours", "-1", *s])
    assert exit_.value.code == 2


def test_lists_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lists = tmp_path / "lists"
    publish.publish(lists, "acme", "linux-sensor", 1, b"v1", b"{}")
    publish.publish(lists, "acme", "linux-sensor", 2, b"v2", b"{}")
    publish.publish(lists, "globex", "paloalto-edl", 5, b"v5", b"{}")
    rc, out, _ = run(capsys, "lists", "--lists", str(lists))
    lines = out.splitlines()
    assert rc == 0 and lines[0].split() == [
        "TENANT",
        "PROFILE",
        "NEWEST",
        "VERSIONS",
        "PUBLISHED",
        "AGE",
    ]
    assert [ln.split()[:4] for ln in lines[1:]] == [
        ["acme", "linux-sensor", "2", "2"],
        ["globex", "paloalto-edl", "5", "1"],
    ]
    rc, out, _ = run(capsys, "lists", "--lists", str(lists), "--tenant", "globex", "--json")
    doc = json.loads(out)
    assert [(d["tenant"], d["newest"], d["versions"]) for d in doc] == [("globex", 5, [5])]
    rc, _, err = run(capsys, "lists", "--lists", str(tmp_path / "none"))
    assert rc == 2 and "not a directory" in err


def test_admin_token_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "admin.sha256"
    rc, out, err = run(capsys, "admin-token", "--file", str(path))
    token = out.strip()
    assert rc == 0 and token.startswith("stkadm_") and token not in err
    assert path.read_text() == hash_token(token) + "\n"
    assert path.stat().st_mode & 0o777 == 0o600
    rc, _, err = run(capsys, "admin-token", "--file", str(path))
    assert rc == 2 and "--force" in err
    assert path.read_text() == hash_token(token) + "\n"  # not replaced
    rc, out, _ = run(capsys, "admin-token", "--file", str(path), "--force")
    assert rc == 0 and path.read_text() == hash_token(out.strip()) + "\n"


# --- serve --fleet ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _request(url: str, token: str, method: str = "GET", body: Any = None) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, method=method, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_serve_with_a_fleet_and_the_admin_api(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fleet.db'}"
    lists = tmp_path / "lists"
    publish.publish(lists, "acme", "linux-sensor", 4, b"acme-v4", b"{}")
    admin_file = tmp_path / "admin.sha256"
    admin = cli("admin-token", "--file", str(admin_file), cwd=tmp_path).stdout.strip()
    port = _free_port()
    proc = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--lists",
            str(lists),
            "--fleet",
            url,
            "--admin-token-file",
            str(admin_file),
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                urllib.request.urlopen(base + "/v1/health", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.05)
        st, _ = _request(base + "/v1/admin/tenants", admin, "POST", {"name": "acme"})
        assert st == 201
        st, body = _request(
            base + "/v1/admin/tenants/acme/appliances",
            admin,
            "POST",
            {"name": "gw-1", "profile": "linux-sensor"},
        )
        token = json.loads(body)["token"]
        assert (st, _request(base + "/v1/lists/acme/linux-sensor?have=4", token)) == (
            201,
            (200, b"acme-v4"),
        )
        assert _request(base + "/v1/admin/tenants", token)[0] == 403
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=HANG_GUARD_SECONDS)
    assert proc.returncode == 0, err
    for secret in (token, admin):
        assert secret not in out and secret not in err
    # the poll was written when the server stopped; the CLI sees it
    shown = cli(
        "appliances",
        "show",
        "--tenant",
        "acme",
        "--name",
        "gw-1",
        "--lists",
        str(lists),
        "--json",
        "--store",
        url,
        cwd=tmp_path,
    )
    doc = json.loads(shown.stdout)
    assert doc["version_held"] == 4 and doc["last_seen"] is not None and not doc["stale"]


def test_serve_needs_tokens_or_a_fleet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(capsys, "serve", "--lists", str(tmp_path))
    assert rc == 1 and "give --tokens FILE or --fleet URL" in err
    (tmp_path / "t.toml").write_text("")
    rc, _, err = run(
        capsys,
        "serve",
        "--lists",
        str(tmp_path),
        "--tokens",
        str(tmp_path / "t.toml"),
        "--admin-token-file",
        str(tmp_path / "a"),
    )
    assert rc == 1 and "needs --fleet" in err
    rc, _, err = run(
        capsys, "serve", "--lists", str(tmp_path), "--tokens", str(tmp_path / "t.toml"),
        "--fleet", f"sqlite:///{tmp_path / 'f.db'}",
    )  # fmt: skip
    assert rc == 1 and "not both" in err
    bad = tmp_path / "admin.sha256"
    bad.write_bytes(b"stkadm_the-token-itself\n")
    rc, _, err = run(
        capsys,
        "serve",
        "--lists",
        str(tmp_path),
        "--fleet",
        f"sqlite:///{tmp_path / 'f.db'}",
        "--admin-token-file",
        str(bad),
    )
    assert rc == 1 and "admin.sha256" in err and "not the token itself" in err


# --- build --tenant T from a fleet ---------------------------------------------------------


def test_build_takes_a_fleet_tenants_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    now = datetime.now(UTC)
    with Store.open(url) as store:
        for feed, values in (
            ("f1", ["bad-one.com", "bad-two.net", "ours-site.com"]),
            ("f2", ["other-feed.com"]),
        ):
            items = [Indicator(IndicatorType.DOMAIN, v, feed, 1, "malware", 90) for v in values]
            store.ingest(
                feed, feed, items, content_sha256=feed * 32, now=now, grace=timedelta(days=1)
            )
    with Fleet.open(url) as fleet:
        fleet.add_tenant(
            "acme", allow=["ours-site.com"], deny=["deny-me.org"], subscriptions=["f1"]
        )
    assert main(["keygen", "--dir", str(tmp_path / "keys")]) == 0
    capsys.readouterr()
    root = PublicKey.from_pem((tmp_path / "keys" / ROOT_PUB).read_bytes())

    def build(tenant: str) -> set[tuple[str, str]]:
        argv = ["build", "--from-store", "--store", url, "--state", str(tmp_path / "state")]
        argv += ["--profile", "linux-sensor", "--tenant", tenant]
        argv += ["--keys", str(tmp_path / "keys"), "--out", str(tmp_path / "out"), "--quiet"]
        assert main(argv) == 0, capsys.readouterr()
        capsys.readouterr()
        bundle = tmp_path / "out" / tenant / "linux-sensor" / "v00000001.stockade"
        trust = TrustedListState([root], TrustPolicy(tenant=tenant, profile="linux-sensor"))
        entries = trust.update(bundle.read_bytes()).blocklist.entries
        return {(e.value, e.action.name.lower()) for e in entries}

    # acme: only f1, without its allowed name, with its deny entry
    got = build("acme")
    assert {v for v, action in got if action == "block"} == {
        "bad-one.com",
        "bad-two.net",
        "deny-me.org",
    }
    # a tenant the fleet does not know: built as before, from every feed
    assert build("globex") == {
        (v, "block") for v in ("bad-one.com", "bad-two.net", "ours-site.com", "other-feed.com")
    }
