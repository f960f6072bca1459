"""What the fleet learns of a sensor from its polls: a real ``Updater`` against the real
``ListServer`` backed by a fleet (SQLite): the version it holds, its health, and why its last
update failed, recorded per appliance and cleared by the next good update."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from distributor import publish
from distributor.fleet import Fleet
from distributor.server import ListServer, start
from sensor.updater import MAX_STATUS_HEADER_CHARS, Updater
from tests.blocklist.golden import PROFILE, TENANT
from tests.sensor.test_updater import bundle, new_holder, tampered


async def test_polls_tell_the_fleet_version_health_and_the_last_error(tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    publish.publish(lists, TENANT, PROFILE, 1, bundle(1), b"{}")
    fleet = Fleet.open(f"sqlite:///{tmp_path / 'fleet.db'}")
    fleet.add_tenant(TENANT)
    _, token = fleet.register_appliance(TENANT, "gw-1", PROFILE)
    server = ListServer(lists, fleet=fleet)
    runner = await start(server, "127.0.0.1", 0)
    holder = new_holder(tmp_path / "state")
    updater = Updater(holder, f"http://127.0.0.1:{runner.addresses[0][1]}", token, TENANT, PROFILE)
    try:
        async with aiohttp.ClientSession() as http:
            assert (await updater.fetch_once(http)).status == "updated"
            await server.flush_polls()
            first = fleet.show_appliance(TENANT, "gw-1")
            # the first poll said it held nothing yet
            assert first.version_held is None and first.health == "no-list"
            publish.publish(lists, TENANT, PROFILE, 2, tampered(bundle(2)), b"{}")
            refused = await updater.fetch_once(http)
            assert refused.status == "rejected"
            assert updater.last_error is not None
            assert len(updater.last_error) <= MAX_STATUS_HEADER_CHARS
            assert (await updater.fetch_once(http)).status == "rejected"
            await server.flush_polls()
            after = fleet.show_appliance(TENANT, "gw-1")
            assert after.version_held == 1 and after.health == "ok"
            assert after.last_error is not None and "BadSignature" in after.last_error
            publish.publish(lists, TENANT, PROFILE, 3, bundle(3), b"{}")
            assert (await updater.fetch_once(http)).status == "updated"
            assert updater.last_error is None
            assert (await updater.fetch_once(http)).status == "not_modified"
            await server.flush_polls()
            last = fleet.show_appliance(TENANT, "gw-1")
            assert last.version_held == 3 and last.last_error is None  # cleared
    finally:
        await runner.cleanup()
        fleet.close()
