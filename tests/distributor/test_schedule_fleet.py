"""``build --now --fleet URL --push-key F`` through the real CLI: the fleet decides what is
built (every list an appliance fetches) and who gets it pushed (appliances with a push URL,
each with the secret derived for it); outcomes land in each appliance's last error."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from blocklist.artifact import BlockList, MiB
from blocklist.signing import Bundle, PublicKey
from blocklist.trust import TrustedListState, TrustPolicy
from distributor import keys as keyfiles
from distributor import publish
from distributor.fleet import Fleet
from distributor.push import derive_push_secret, load_push_key
from sensor.metrics import bound_port
from sensor.push_intake import PATH, PushIntake, start_push_intake
from sensor.updater import ListHolder


async def _cli(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "distributor.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=300)
    return proc.returncode or 0, out.decode()


def build_now(tmp_path: Path, store: str, *extra: str) -> list[str]:
    """``build --now`` of acme's linux-sensor list from the feeds in ``tmp_path``."""
    return [
        "build",
        "--now",
        "--config",
        str(tmp_path / "feeds.toml"),
        "--store",
        store,
        "--state",
        str(tmp_path / "state"),
        "--keys",
        str(tmp_path / "keys"),
        "--tenant",
        "acme",
        "--profile",
        "linux-sensor",
        "--out",
        str(tmp_path / "out"),
        *extra,
    ]


async def test_build_now_with_a_fleet_pushes_to_its_appliances_and_records_failures(
    tmp_path: Path,
) -> None:
    keyfiles.keygen(tmp_path / "keys")
    (tmp_path / "feeds.toml").write_text(
        '[[feed]]\nname = "local"\nformat = "domains"\nsource = "local.txt"\n'
    )
    (tmp_path / "local.txt").write_text("evil-one.example\n")
    store = f"sqlite:///{tmp_path / 'store.db'}"
    code, out = await _cli("push-key", "--file", str(tmp_path / "push.key"))
    assert code == 0, out
    assert oct((tmp_path / "push.key").stat().st_mode & 0o777) == "0o600"
    code, secret = await _cli(
        "push-key", "--file", str(tmp_path / "push.key"), "--secret-for", "acme/fw-1"
    )
    assert code == 0, secret
    secret = secret.strip()
    assert secret == derive_push_secret(load_push_key(tmp_path / "push.key"), "acme", "fw-1")

    root = PublicKey.from_pem((tmp_path / "keys" / keyfiles.ROOT_PUB).read_bytes())
    policy = TrustPolicy(tenant="acme", profile="linux-sensor", max_bundle_bytes=64 * MiB)
    holder = ListHolder(TrustedListState([root], policy), tmp_path / "sensor" / "list.stockade")
    runner = await start_push_intake(PushIntake(holder, secret), "127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{bound_port(runner)}{PATH}"
        with Fleet.open(store) as fleet:
            fleet.add_tenant("acme")
            fleet.register_appliance("acme", "fw-1", "linux-sensor", push_url=url)
            # fw-2's intake expects another secret (its own): the push is refused with 401
            fleet.register_appliance("acme", "fw-2", "linux-sensor", push_url=url)
        args = build_now(
            tmp_path, store, "--fleet", store, "--push-key", str(tmp_path / "push.key")
        )
        code, out = await _cli(*args)
        assert "list acme/linux-sensor: built, published version 1" in out, out
        assert "push v1 to fw-1" in out and "delivered" in out, out
        assert holder.version == 1
        with Fleet.open(store) as fleet:
            assert fleet.show_appliance("acme", "fw-1").last_error is None
            error = fleet.show_appliance("acme", "fw-2").last_error
        assert error is not None and "push v1" in error and "401" in error, error
        assert secret not in out
        assert code == 0, out
    finally:
        await runner.cleanup()


async def test_push_key_without_fleet_is_a_clear_error(tmp_path: Path) -> None:
    code, out = await _cli(
        "build",
        "--now",
        "--config",
        str(tmp_path / "none.toml"),
        "--tenant",
        "acme",
        "--profile",
        "linux-sensor",
        "--keys",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
        "--push-key",
        str(tmp_path / "push.key"),
    )
    assert code != 0
    assert "--push-key needs --fleet" in out, out


def _published_names(out: Path) -> set[str]:
    path = publish.current(out, "acme", "linux-sensor")
    assert path is not None
    bundle = Bundle.from_bytes(path.read_bytes())
    assert bundle.detached is not None
    return {e.value for e in BlockList.from_bytes(bytes(bundle.detached)).entries}


async def test_scheduled_builds_apply_the_tenants_allow_and_deny_and_rebuild_when_they_change(
    tmp_path: Path,
) -> None:
    keyfiles.keygen(tmp_path / "keys")
    (tmp_path / "feeds.toml").write_text(
        '[[feed]]\nname = "local"\nformat = "domains"\nsource = "local.txt"\n'
    )
    (tmp_path / "local.txt").write_text("evil-one.example\nevil-two.example\n")
    store = f"sqlite:///{tmp_path / 'store.db'}"
    with Fleet.open(store) as fleet:
        fleet.add_tenant("acme", allow=["evil-two.example"], deny=["tenant-own.example"])
        fleet.register_appliance("acme", "fw-1", "linux-sensor")
    args = build_now(tmp_path, store)
    code, out = await _cli(*args)
    assert code == 0, out
    assert "published version 1" in out, out
    assert _published_names(tmp_path / "out") == {"evil-one.example", "tenant-own.example"}
    code, out = await _cli(*args)
    assert "unchanged inputs, still version 1" in out, out
    with Fleet.open(store) as fleet:  # the tenant's settings are inputs of its list
        fleet.set_tenant("acme", deny=["tenant-own.example", "another.example"])
    code, out = await _cli(*args)
    assert "published version 2" in out, out
    assert "another.example" in _published_names(tmp_path / "out")


async def test_a_failed_push_is_made_good_on_the_next_pass_without_a_new_version(
    tmp_path: Path,
) -> None:
    """The intake is down for the first push (as if the distributor had died mid-backoff):
    the next pass, with nothing new to build, pushes the version the appliance lacks, and
    the one after pushes nothing."""
    keyfiles.keygen(tmp_path / "keys")
    (tmp_path / "feeds.toml").write_text(
        '[[feed]]\nname = "local"\nformat = "domains"\nsource = "local.txt"\n'
    )
    (tmp_path / "local.txt").write_text("evil-one.example\n")
    store = f"sqlite:///{tmp_path / 'store.db'}"
    assert (await _cli("push-key", "--file", str(tmp_path / "push.key")))[0] == 0
    secret = derive_push_secret(load_push_key(tmp_path / "push.key"), "acme", "fw-1")
    root = PublicKey.from_pem((tmp_path / "keys" / keyfiles.ROOT_PUB).read_bytes())
    policy = TrustPolicy(tenant="acme", profile="linux-sensor", max_bundle_bytes=64 * MiB)
    holder = ListHolder(TrustedListState([root], policy), tmp_path / "sensor" / "list.stockade")
    intake = PushIntake(holder, secret)
    runner = await start_push_intake(intake, "127.0.0.1", 0)
    port = bound_port(runner)
    await runner.cleanup()  # down for the first pass; the same port comes back below
    with Fleet.open(store) as fleet:
        fleet.add_tenant("acme")
        fleet.register_appliance(
            "acme", "fw-1", "linux-sensor", push_url=f"http://127.0.0.1:{port}{PATH}"
        )
    args = build_now(tmp_path, store, "--fleet", store, "--push-key", str(tmp_path / "push.key"))
    code, out = await _cli(*args)
    assert code == 0, out  # a failed push never fails the build
    assert "published version 1" in out and "push v1 to fw-1" in out, out
    with Fleet.open(store) as fleet:
        assert fleet.show_appliance("acme", "fw-1").last_error is not None
    runner = await start_push_intake(intake, "127.0.0.1", port)
    try:
        code, out = await _cli(*args)
        assert "unchanged inputs, still version 1" in out, out
        assert "push v1 to fw-1" in out and "delivered" in out, out
        assert holder.version == 1
        with Fleet.open(store) as fleet:
            fw = fleet.show_appliance("acme", "fw-1")
        assert fw.last_error is None and fw.version_held == 1
        code, out = await _cli(*args)
        assert code == 0 and "push v1" not in out, out  # it holds v1: nothing to make good
    finally:
        await runner.cleanup()
