"""Push to real aiohttp receivers on 127.0.0.1: delivery, retries with backoff, timeouts,
refusals, deltas, and secrets that stay out of logs."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from distributor import publish
from distributor.push import (
    CONTENT_TYPE_BUNDLE,
    CONTENT_TYPE_DELTA,
    PushError,
    PushTarget,
    RetryPolicy,
    backoff_seconds,
    delta_path,
    derive_push_secret,
    load_push_key,
    new_push_key,
    push_version,
)

TENANT = "acme"
PROFILE = "utm-small"
#: Short, so the stalled receiver costs little; a guard, never an assertion about speed.
POLICY = RetryPolicy(attempts=3, timeout_seconds=0.5, backoff_base_seconds=0.01)
SECRET_KEY = bytes(range(32))


@dataclass
class Receiver:
    """An appliance intake: answers ``statuses`` in turn (then 204); ``stall``: never answers."""

    statuses: list[int] = field(default_factory=list)
    stall: bool = False
    seen: list[tuple[str, str, bytes]] = field(default_factory=list)  # auth, type, body
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append(
            (request.headers.get("Authorization", ""), request.headers["Content-Type"], body)
        )
        if self.stall:
            await asyncio.Event().wait()
        status = self.statuses.pop(0) if self.statuses else 204
        return web.Response(status=status, text=None if status == 204 else f"status {status}")


Make = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def receiver() -> AsyncIterator[Make]:
    runners: list[web.AppRunner] = []

    async def make(statuses: list[int] | None = None, stall: bool = False) -> Receiver:
        r = Receiver(statuses=list(statuses or []), stall=stall)
        app = web.Application()
        app.router.add_post("/v1/push", r.handle)
        runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        r.url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1/push?appliance=1"
        runners.append(runner)
        return r

    yield make
    for runner in runners:
        await runner.cleanup()


def target(r: Receiver, name: str, held: int | None = None) -> PushTarget:
    return PushTarget(
        TENANT, PROFILE, name, r.url, derive_push_secret(SECRET_KEY, TENANT, name), held
    )


@pytest.fixture
def out(tmp_path: Path) -> Path:
    d = publish.list_dir(tmp_path / "out", TENANT, PROFILE)
    d.mkdir(parents=True)
    (d / publish.bundle_name(1)).write_bytes(b"full bundle v1" * 100)
    (d / publish.bundle_name(2)).write_bytes(b"full bundle v2" * 100)
    delta = delta_path(tmp_path / "out", TENANT, PROFILE, 1, 2)
    delta.parent.mkdir()
    delta.write_bytes(b"delta v1 -> v2")
    return tmp_path / "out"


FULL_V2 = b"full bundle v2" * 100


async def test_a_push_delivers_the_bundle_with_the_appliance_secret(
    out: Path, receiver: Make
) -> None:
    r = await receiver()
    [result] = await push_version(out, TENANT, PROFILE, 2, [target(r, "fw-1")], policy=POLICY)
    assert (result.status, result.attempts, result.version) == ("delivered", 1, 2)
    secret = derive_push_secret(SECRET_KEY, TENANT, "fw-1")
    assert r.seen == [(f"Bearer {secret}", CONTENT_TYPE_BUNDLE, FULL_V2)]


async def test_a_receiver_failing_twice_gets_it_on_the_third_attempt(
    out: Path, receiver: Make
) -> None:
    r = await receiver(statuses=[503, 500])
    [result] = await push_version(out, TENANT, PROFILE, 2, [target(r, "fw-1")], policy=POLICY)
    assert (result.status, result.attempts) == ("delivered", 3)
    assert len(r.seen) == 3
    assert len(result.delays_seconds) == 2
    assert result.delays_seconds[1] >= result.delays_seconds[0] > 0


async def test_a_receiver_that_never_answers_is_given_up_and_the_others_get_it(
    out: Path, receiver: Make
) -> None:
    dead = await receiver(stall=True)
    good = [await receiver() for _ in range(3)]
    targets = [target(dead, "dead"), *(target(r, f"fw-{i}") for i, r in enumerate(good))]
    results = await push_version(out, TENANT, PROFILE, 2, targets, policy=POLICY, concurrency=2)
    assert [r.target for r in results] == ["dead", "fw-0", "fw-1", "fw-2"]
    assert results[0].status == "gave_up"
    assert results[0].attempts == POLICY.attempts
    assert "no answer within 0.5 seconds" in results[0].reason
    assert len(dead.seen) == POLICY.attempts
    assert [r.status for r in results[1:]] == ["delivered"] * 3
    assert all(r.seen == [(r.seen[0][0], CONTENT_TYPE_BUNDLE, FULL_V2)] for r in good)


async def test_a_refusal_is_final_and_not_retried(out: Path, receiver: Make) -> None:
    refused = await receiver(statuses=[409])
    unauthorized = await receiver(statuses=[401])
    results = await push_version(
        out, TENANT, PROFILE, 2, [target(refused, "a"), target(unauthorized, "b")], policy=POLICY
    )
    assert [(r.status, r.attempts) for r in results] == [("failed", 1), ("failed", 1)]
    assert results[0].reason == "HTTP 409: status 409"
    assert results[1].reason.startswith("HTTP 401")


async def test_a_network_error_is_retried_then_given_up(out: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = PushTarget(TENANT, PROFILE, "gone", f"http://127.0.0.1:{port}/v1/push", "x")
    [result] = await push_version(out, TENANT, PROFILE, 2, [t], policy=POLICY)
    assert (result.status, result.attempts) == ("gave_up", 3)
    assert "ClientConnectorError" in result.reason or "Connect" in result.reason


async def test_the_delta_goes_to_a_target_that_holds_its_base(out: Path, receiver: Make) -> None:
    r = await receiver()
    old = await receiver()
    unknown = await receiver()
    results = await push_version(
        out,
        TENANT,
        PROFILE,
        2,
        [target(r, "a", held=1), target(old, "b", held=0), target(unknown, "c")],
        policy=POLICY,
    )
    assert [(x.status, x.delta_from) for x in results] == [
        ("delivered", 1),
        ("delivered", None),
        ("delivered", None),
    ]
    assert [(t, b) for _, t, b in r.seen] == [(CONTENT_TYPE_DELTA, b"delta v1 -> v2")]
    assert [(t, b) for _, t, b in old.seen] == [(CONTENT_TYPE_BUNDLE, FULL_V2)]
    assert [(t, b) for _, t, b in unknown.seen] == [(CONTENT_TYPE_BUNDLE, FULL_V2)]


async def test_a_refused_delta_is_followed_by_the_full_bundle(out: Path, receiver: Make) -> None:
    r = await receiver(statuses=[409])  # it holds another base than reported
    [result] = await push_version(out, TENANT, PROFILE, 2, [target(r, "a", held=1)], policy=POLICY)
    assert (result.status, result.delta_from, result.attempts) == ("delivered", None, 1)
    assert [t for _, t, _ in r.seen] == [CONTENT_TYPE_DELTA, CONTENT_TYPE_BUNDLE]


async def test_other_tenants_targets_are_not_pushed(out: Path, receiver: Make) -> None:
    r = await receiver()
    other = PushTarget("globex", PROFILE, "x", r.url, "s")
    assert await push_version(out, TENANT, PROFILE, 2, [other], policy=POLICY) == []
    assert r.seen == []


async def test_an_unpublished_version_is_an_error(out: Path, receiver: Make) -> None:
    r = await receiver()
    with pytest.raises(PushError, match="cannot read published bundle"):
        await push_version(out, TENANT, PROFILE, 9, [target(r, "a")], policy=POLICY)


async def test_secrets_stay_out_of_logs_and_reprs(
    out: Path, receiver: Make, caplog: pytest.LogCaptureFixture
) -> None:
    r = await receiver(statuses=[503, 401])
    t = target(r, "fw-1")
    caplog.set_level(logging.DEBUG)
    [result] = await push_version(out, TENANT, PROFILE, 2, [t], policy=POLICY)
    assert result.status == "failed"
    assert t.secret not in caplog.text
    assert t.secret not in repr(t) and t.secret not in repr(result)
    assert "?appliance" not in caplog.text  # the URL is logged without its query
    assert "fw-1" in caplog.text


def test_backoff_grows_until_its_cap_whatever_the_jitter() -> None:
    policy = RetryPolicy(attempts=10, backoff_base_seconds=1.0, backoff_max_seconds=30.0)
    rng = random.Random(7)
    for _ in range(200):
        delays = [backoff_seconds(n, policy, rng.random) for n in range(10)]
        # 1 * 2**4 = 16 is the last uncapped step: until there, never shorter than before
        assert all(b >= a for a, b in itertools.pairwise(delays[:5]))
        assert all(15.0 <= d <= 30.0 for d in delays[5:])
    assert [backoff_seconds(n, policy, lambda: 0.0) for n in range(6)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        15.0,
    ]


def test_push_secrets_are_per_tenant_and_appliance(tmp_path: Path) -> None:
    key_file = tmp_path / "push.key"
    new_push_key(key_file)
    assert os.stat(key_file).st_mode & 0o777 == 0o600
    with pytest.raises(PushError, match="exists already"):
        new_push_key(key_file)
    key = load_push_key(key_file)
    a = derive_push_secret(key, "acme", "fw-1")
    assert a == derive_push_secret(key, "acme", "fw-1")
    assert (
        len({a, derive_push_secret(key, "acme", "fw-2"), derive_push_secret(key, "x", "fw-1")}) == 3
    )
    assert derive_push_secret(SECRET_KEY, "acme", "fw-1") != a
    key_file.write_bytes(b"short")
    with pytest.raises(PushError, match="expected 32 bytes"):
        load_push_key(key_file)


async def test_a_bad_push_url_fails_that_target_only(out: Path, receiver: Make) -> None:
    good = await receiver()
    bad = [
        PushTarget(TENANT, PROFILE, "creds", "http://user:pw@127.0.0.1/v1/push", "s"),
        PushTarget(TENANT, PROFILE, "file", "file:///etc/passwd", "s"),
        PushTarget(TENANT, PROFILE, "junk", "http://[::1/v1/push", "s"),
    ]
    results = await push_version(out, TENANT, PROFILE, 2, [*bad, target(good, "ok")], policy=POLICY)
    assert [(r.target, r.status, r.attempts) for r in results] == [
        ("creds", "failed", 0),
        ("file", "failed", 0),
        ("junk", "failed", 0),
        ("ok", "delivered", 1),
    ]
    assert "credentials" in results[0].reason and "pw" not in results[0].url
    assert "http(s)" in results[1].reason
    assert "not a URL" in results[2].reason
