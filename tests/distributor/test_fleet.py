"""Fleet state on both backends: tenants, appliances, hashed tokens, revocation, rotation,
poll records and staleness.

Every test taking ``fleet`` runs twice: on a SQLite file and on a schema of its own on the
throwaway PostgreSQL cluster (``store_url`` in ``tests/distributor/conftest.py``), as the
store's own tests do.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from distributor import publish
from distributor.errors import DistributorError
from distributor.fleet import (
    BadInput,
    DuplicateName,
    Fleet,
    FleetError,
    Poll,
    TenantInUse,
    UnknownAppliance,
    UnknownTenant,
    published_lists,
)
from distributor.store.schema import appliances
from distributor.tokens import TOKEN_PREFIX, hash_token

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def fleet(store_url: str) -> Iterator[Fleet]:
    f = Fleet.open(store_url)
    yield f
    f.close()


def token_hashes(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(select(appliances.c.token_sha256))]
    finally:
        engine.dispose()


def test_tenant_crud(fleet: Fleet) -> None:
    t = fleet.add_tenant(
        "acme", allow=["good.example", " good.example "], subscriptions=["abuse-ch"], now=T0
    )
    assert (t.name, t.allow, t.deny, t.subscriptions, t.created) == (
        "acme",
        ("good.example",),  # stripped, duplicates dropped
        (),
        ("abuse-ch",),
        T0,
    )
    fleet.add_tenant("globex", now=T0)
    assert [x.name for x in fleet.list_tenants()] == ["acme", "globex"]

    changed = fleet.set_tenant("acme", deny=["bad.example", "10.0.0.0/8"])
    assert changed.deny == ("bad.example", "10.0.0.0/8")
    assert changed.allow == ("good.example",)  # not given: kept
    assert fleet.set_tenant("acme", allow=[]).allow == ()
    assert fleet.show_tenant("acme").deny == ("bad.example", "10.0.0.0/8")

    assert fleet.remove_tenant("globex") == 0
    with pytest.raises(UnknownTenant, match="no tenant 'globex'"):
        fleet.show_tenant("globex")
    assert [x.name for x in fleet.list_tenants()] == ["acme"]


def test_bad_input_is_refused_with_clear_errors(fleet: Fleet) -> None:
    fleet.add_tenant("acme")
    with pytest.raises(DuplicateName, match="tenant 'acme' exists already"):
        fleet.add_tenant("acme")
    for bad in ("", "-x", "a b", "x" * 65, "../etc", "acme\x00"):
        with pytest.raises(BadInput, match=r"invalid tenant name.*names are 1-64"):
            fleet.add_tenant(bad)
    with pytest.raises(BadInput, match=r"allow\[1\]"):
        fleet.set_tenant("acme", allow=["ok.example", "two words"])
    with pytest.raises(BadInput, match=r"deny\[0\]"):
        fleet.set_tenant("acme", deny=["caf\u00e9.example"])
    with pytest.raises(BadInput, match="expected a list"):
        fleet.set_tenant("acme", deny="bad.example")
    with pytest.raises(BadInput, match=r"subscriptions\[0\]"):
        fleet.set_tenant("acme", subscriptions=["Upper"])
    with pytest.raises(UnknownTenant):
        fleet.set_tenant("nope", allow=[])
    with pytest.raises(UnknownTenant, match="no tenant 'nope'"):
        fleet.register_appliance("nope", "gw-1", "linux-sensor")
    with pytest.raises(BadInput, match="invalid appliance name"):
        fleet.register_appliance("acme", "gw 1", "linux-sensor")
    with pytest.raises(BadInput, match="invalid profile"):
        fleet.register_appliance("acme", "gw-1", "")
    for url in ("ftp://x/", "http://", "http://u:p@host/", "http://h:99999/", "http://h/\n"):
        with pytest.raises(BadInput, match="push URL"):
            fleet.register_appliance("acme", "gw-1", "linux-sensor", push_url=url)
    # nothing half-registered by the refusals
    assert fleet.list_appliances() == []
    # every refusal is a DistributorError
    assert issubclass(FleetError, DistributorError)


def test_register_stores_only_the_hash(fleet: Fleet, store_url: str) -> None:
    fleet.add_tenant("acme")
    a, token = fleet.register_appliance(
        "acme", "gw-1", "linux-sensor", push_url="https://gw-1.acme.example:8443/push", now=T0
    )
    assert token.startswith(TOKEN_PREFIX) and len(token) > 40
    assert (a.tenant, a.name, a.profile, a.created, a.revoked) == (
        "acme",
        "gw-1",
        "linux-sensor",
        T0,
        False,
    )
    assert a.push_url == "https://gw-1.acme.example:8443/push"
    assert token_hashes(store_url) == [hash_token(token)]
    # the record never carries the token or its hash
    assert token not in repr(a) and hash_token(token) not in repr(a)
    assert token not in str(a.to_dict()) and hash_token(token) not in str(a.to_dict())
    assert fleet.authenticate(token) == a
    assert a.may_fetch("acme", "linux-sensor")
    assert not a.may_fetch("acme", "paloalto-edl") and not a.may_fetch("globex", "linux-sensor")

    with pytest.raises(DuplicateName, match="appliance 'gw-1' exists already in tenant 'acme'"):
        fleet.register_appliance("acme", "gw-1", "linux-sensor")
    # the same name in another tenant is another appliance
    fleet.add_tenant("globex")
    b, token_b = fleet.register_appliance("globex", "gw-1", "linux-sensor")
    assert token_b != token and fleet.authenticate(token_b) == b
    assert [x.tenant for x in fleet.list_appliances()] == ["acme", "globex"]
    assert fleet.list_appliances("globex") == [b]


@pytest.mark.parametrize(
    "token",
    ["", "stk_nope", "x" * 257, "stk_caf\u00e9", "stk_\udcff", "Bearer stk_x"],
)
def test_unknown_or_malformed_tokens_do_not_authenticate(fleet: Fleet, token: str) -> None:
    fleet.add_tenant("acme")
    fleet.register_appliance("acme", "gw-1", "linux-sensor")
    assert fleet.authenticate(token) is None


def test_revoke_and_rotate(fleet: Fleet, store_url: str) -> None:
    fleet.add_tenant("acme")
    _, old = fleet.register_appliance("acme", "gw-1", "linux-sensor")
    _, other = fleet.register_appliance("acme", "gw-2", "linux-sensor")

    new = fleet.rotate_token("acme", "gw-1")
    assert new != old
    assert fleet.authenticate(old) is None
    got = fleet.authenticate(new)
    assert got is not None and got.name == "gw-1"
    assert sorted(token_hashes(store_url)) == sorted([hash_token(new), hash_token(other)])

    fleet.revoke_appliance("acme", "gw-1", now=T0)
    assert fleet.authenticate(new) is None
    assert fleet.authenticate(other) is not None  # only that appliance
    shown = fleet.show_appliance("acme", "gw-1")
    assert shown.revoked_at == T0 and not shown.may_fetch("acme", "linux-sensor")
    fleet.revoke_appliance("acme", "gw-1", now=T0 + HOUR)  # again: the first time stays
    assert fleet.show_appliance("acme", "gw-1").revoked_at == T0
    with pytest.raises(FleetError, match="revoked"):
        fleet.rotate_token("acme", "gw-1")
    with pytest.raises(UnknownAppliance, match="no appliance 'gw-9' in tenant 'acme'"):
        fleet.revoke_appliance("acme", "gw-9")
    with pytest.raises(UnknownAppliance):
        fleet.rotate_token("acme", "gw-9")


def test_remove_tenant_with_appliances_needs_force(fleet: Fleet) -> None:
    fleet.add_tenant("acme")
    _, token = fleet.register_appliance("acme", "gw-1", "linux-sensor")
    with pytest.raises(TenantInUse, match="tenant 'acme' has 1 appliance"):
        fleet.remove_tenant("acme")
    assert fleet.authenticate(token) is not None
    assert fleet.remove_tenant("acme", force=True) == 1
    assert fleet.authenticate(token) is None
    assert fleet.list_appliances() == []


def test_record_poll_and_status(fleet: Fleet, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    publish.publish(lists, "acme", "linux-sensor", 1, b"v1", b"{}")
    publish.publish(lists, "acme", "linux-sensor", 2, b"v2", b"{}")
    fleet.add_tenant("acme")
    a, _ = fleet.register_appliance("acme", "gw-1", "linux-sensor")
    b, _ = fleet.register_appliance("acme", "gw-2", "linux-sensor")
    c, _ = fleet.register_appliance("acme", "fw-1", "paloalto-edl")  # nothing published

    fleet.record_poll(a, 2, '{"ok": true}', now=T0)
    fleet.record_poll(b, 1, "degraded\x00\n", now=T0)
    # an older poll arriving late never moves last seen back
    fleet.record_polls([Poll(a.id, T0 - HOUR, 1, "old")])

    st = {s.appliance.name: s for s in fleet.status(lists, now=T0 + HOUR)}
    assert st["gw-1"].appliance.version_held == 2 and st["gw-1"].appliance.health == '{"ok": true}'
    assert st["gw-1"].appliance.last_seen == T0
    assert not st["gw-1"].stale and st["gw-1"].newest_version == 2
    assert st["gw-2"].stale and st["gw-2"].reasons == ("holds v1, v2 is published",)
    assert st["gw-2"].appliance.health == "degraded  "  # control characters blanked
    assert st["fw-1"].stale and st["fw-1"].reasons == ("never seen",)
    assert st["fw-1"].newest_version is None

    # not seen for longer than the configured period
    late = {
        s.appliance.name: s
        for s in fleet.status(lists, stale_after=timedelta(minutes=30), now=T0 + HOUR)
    }
    assert late["gw-1"].reasons == (f"not seen since {T0.isoformat()}",)
    # a poll without a version keeps the version held
    fleet.record_poll(a, None, None, now=T0 + HOUR)
    assert fleet.show_appliance("acme", "gw-1").version_held == 2
    # revoked appliances are shown, never stale
    fleet.revoke_appliance("acme", "gw-2")
    assert not {s.appliance.name: s for s in fleet.status(lists, now=T0)}["gw-2"].stale
    assert [s.appliance.name for s in fleet.status(lists, tenant="acme")] == [
        "fw-1",
        "gw-1",
        "gw-2",
    ]
    assert c.profile == "paloalto-edl"


def test_push_targets(fleet: Fleet) -> None:
    fleet.add_tenant("acme")
    fleet.register_appliance("acme", "a", "linux-sensor", push_url="http://10.0.0.1:9000/push")
    fleet.register_appliance("acme", "b", "linux-sensor")
    fleet.register_appliance("acme", "c", "linux-sensor", push_url="http://10.0.0.3:9000/push")
    fleet.register_appliance("acme", "d", "other", push_url="http://10.0.0.4:9000/push")
    fleet.revoke_appliance("acme", "c")
    assert [a.name for a in fleet.push_targets("acme", "linux-sensor")] == ["a"]
    fleet.set_push_url("acme", "b", "https://b.example/push")
    assert [a.name for a in fleet.push_targets("acme", "linux-sensor")] == ["a", "b"]
    # the lists some active appliance fetches (c is revoked; d is the only "other")
    fleet.add_tenant("globex")
    fleet.register_appliance("globex", "x", "revoked-only")
    fleet.revoke_appliance("globex", "x")
    assert fleet.list_targets() == [("acme", "linux-sensor"), ("acme", "other")]


def test_concurrent_registrations_of_one_name_give_one_appliance(fleet: Fleet) -> None:
    """Both writers pass the existence check; the unique key decides, the loser is told."""
    fleet.add_tenant("acme")
    start = threading.Barrier(4)

    def register(_: int) -> str:
        start.wait(30)
        try:
            fleet.register_appliance("acme", "gw-1", "linux-sensor")
        except DuplicateName:
            return "duplicate"
        return "ok"

    with ThreadPoolExecutor(4) as pool:
        outcomes = sorted(pool.map(register, range(4), timeout=60))
    assert outcomes == ["duplicate"] * 3 + ["ok"]
    assert len(fleet.list_appliances()) == 1


def test_published_lists(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    publish.publish(lists, "acme", "linux-sensor", 1, b"v1", b"{}")
    publish.publish(lists, "acme", "linux-sensor", 2, b"v2", b"{}")
    publish.publish(lists, "globex", "paloalto-edl", 7, b"v7", b"{}")
    (lists / "objects").mkdir(exist_ok=True)
    (lists / "objects" / ("0" * 64 + ".stockade")).write_bytes(b"x")
    (lists / "acme" / "empty-profile").mkdir()
    got = [(p.tenant, p.profile, p.versions, p.newest) for p in published_lists(lists)]
    assert got == [("acme", "linux-sensor", (1, 2), 2), ("globex", "paloalto-edl", (7,), 7)]
    assert [p.tenant for p in published_lists(lists, "globex")] == ["globex"]
    assert published_lists(tmp_path / "missing") == []
