"""The sensor's push intake on 127.0.0.1: what it holds after good, hostile and broken pushes;
then the distributor's push client end to end, and a push killed with SIGKILL mid-body."""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from blocklist.artifact import Action, BlockList, Entry, EntryType, KiB, MiB
from blocklist.signing import Bundle, PublicKey, sign_keyring
from blocklist.trust import TrustedListState, TrustPolicy
from sensor.config import ConfigError, load_config
from sensor.metrics import bound_port
from sensor.push_intake import (
    CONTENT_TYPE_BUNDLE,
    CONTENT_TYPE_DELTA,
    PATH,
    PushIntake,
    load_push_token,
    start_push_intake,
)
from sensor.updater import ListHolder
from tests.blocklist.golden import NOW, ONLINE, PROFILE, ROOT, TENANT, make_keyring, make_list

TOKEN = "c0ffee" * 10
MAX_BYTES = 256 * KiB
#: A guard against hangs only, never an assertion about speed.
HANG_GUARD_SECONDS = 60.0
REPO = Path(__file__).resolve().parents[2]


def bundle(version: int, **kw: object) -> bytes:
    """A bundle 2 as the distributor writes it, signed with the golden keys."""
    keyring = sign_keyring(make_keyring(1), (ROOT,))
    return Bundle.signed(keyring, make_list(version, **kw).to_bytes(), (ONLINE,)).to_bytes()  # type: ignore[arg-type]


def new_holder(state_dir: Path, max_bytes: int = MAX_BYTES) -> ListHolder:
    policy = TrustPolicy(tenant=TENANT, profile=PROFILE, max_bundle_bytes=max_bytes)
    return ListHolder(
        TrustedListState([ROOT.public], policy, clock=lambda: NOW), state_dir / "list.stockade"
    )


@dataclass
class Intake:
    holder: ListHolder
    url: str
    post: Callable[..., Awaitable[tuple[int, str]]]


@pytest.fixture
async def intake(tmp_path: Path) -> AsyncIterator[Intake]:
    holder = new_holder(tmp_path)
    runner = await start_push_intake(PushIntake(holder, TOKEN), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{bound_port(runner)}{PATH}"

    async def post(
        body: object, *, token: str | None = TOKEN, content_type: str = CONTENT_TYPE_BUNDLE
    ) -> tuple[int, str]:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with (
            aiohttp.ClientSession() as s,
            s.post(url, data=body, headers=headers) as r,
        ):
            return r.status, await r.text()

    yield Intake(holder, url, post)
    await runner.cleanup()


def saved(intake: Intake) -> bytes:
    assert intake.holder.store is not None
    return intake.holder.store.read_bytes()


async def test_a_good_bundle_is_verified_saved_and_held(intake: Intake) -> None:
    v1, v2 = bundle(1), bundle(2)
    assert await intake.post(v1) == (204, "")
    assert intake.holder.version == 1 and saved(intake) == v1
    assert intake.holder.matcher is not None and intake.holder.matcher.list_version == 1
    assert await intake.post(v1) == (204, "")  # a retried push of the list in force
    assert await intake.post(v2) == (204, "")
    assert intake.holder.version == 2 and saved(intake) == v2
    assert intake.holder.counters["push.accepted"] == 2
    assert intake.holder.counters["push.already_held"] == 1


@pytest.mark.parametrize(
    ("make", "refusal"),
    [
        (lambda: bundle(1), "Rollback"),  # older than the held version 2
        (lambda: bundle(3, tenant="globex"), "WrongTenant"),
        (lambda: bundle(3, profile="other-box"), "WrongProfile"),
        (lambda: bundle(3)[:-1] + bytes([bundle(3)[-1] ^ 1]), "BadSignature"),  # tampered
        (lambda: bundle(3, expires=NOW - timedelta(hours=1)), "Expired"),
    ],
    ids=["rollback", "other-tenant", "other-profile", "tampered", "expired"],
)
async def test_a_refused_bundle_is_409_and_the_sensor_keeps_its_list(
    intake: Intake, make: Callable[[], bytes], refusal: str
) -> None:
    v2 = bundle(2)
    assert (await intake.post(v2))[0] == 204
    status, text = await intake.post(make())
    assert status == 409
    assert text.startswith(refusal)
    assert intake.holder.version == 2 and saved(intake) == v2
    assert intake.holder.counters[f"push.rejected.{refusal}"] == 1


async def test_without_the_secret_it_is_401_and_nothing_is_read(intake: Intake) -> None:
    for token in (None, "wrong", TOKEN + "x", ""):
        status, _ = await intake.post(bundle(1), token=token)
        assert status == 401
    assert intake.holder.version == 0
    assert intake.holder.store is not None and not intake.holder.store.exists()
    assert intake.holder.counters["push.unauthorized"] == 4


async def test_an_oversize_body_is_413_announced_or_not(intake: Intake) -> None:
    assert (await intake.post(bundle(1)))[0] == 204
    status, text = await intake.post(bytes(MAX_BYTES + 1))
    assert (status, text.strip()) == (413, f"{MAX_BYTES + 1} bytes announced, limit is {MAX_BYTES}")

    sent = 0

    async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse
        nonlocal sent
        while sent < 64 * MiB:
            sent += 64 * KiB
            yield bytes(64 * KiB)

    with contextlib.suppress(aiohttp.ClientError):
        status, text = await intake.post(endless())
        assert status == 413 and "stopped reading" in text
    assert sent < 64 * MiB  # it stopped reading long before the end
    assert intake.holder.version == 1
    assert intake.holder.counters["push.too_large"] >= 1


async def test_bytes_that_are_not_a_bundle_are_400(intake: Intake) -> None:
    for junk in (b"", b"\x00" * 100, b"not msgpack at all", bundle(1)[:50]):
        status, _ = await intake.post(junk)
        assert status == 400
    status, text = await intake.post(bundle(1), content_type="text/html")
    assert status == 400 and "content type" in text
    assert intake.holder.version == 0


async def test_a_delta_from_the_held_list_is_applied_and_verified(intake: Intake) -> None:
    from distributor.deltas import make_delta_bundle

    v1, v2, v3 = bundle(1), bundle(2), bundle(3, entries=())
    assert (await intake.post(v1))[0] == 204
    # another base (v2 -> v3 while v1 is held): refused, the list stays
    status, text = await intake.post(make_delta_bundle(v2, v3), content_type=CONTENT_TYPE_DELTA)
    assert status == 409 and text.startswith("WrongBase")
    assert intake.holder.version == 1 and saved(intake) == v1
    # a delta rebuilding a list of another tenant is refused by the same rules as a full one
    other = bundle(2, tenant="globex")
    status, text = await intake.post(make_delta_bundle(v1, other), content_type=CONTENT_TYPE_DELTA)
    assert status == 409 and text.startswith("WrongTenant")
    status, _ = await intake.post(make_delta_bundle(v1, v2), content_type=CONTENT_TYPE_DELTA)
    assert status == 204
    assert intake.holder.version == 2 and saved(intake) == v2  # saved as the full bundle


# --- config -----------------------------------------------------------------------------


def test_the_push_table_is_validated(tmp_path: Path) -> None:
    token = tmp_path / "push-token"
    token.write_text(TOKEN + "\n")
    cfg = tmp_path / "sensor.toml"
    cfg.write_text(f'[push]\nlisten = "127.0.0.1:8760"\ntoken_file = "{token}"\n')
    push = load_config(cfg).push
    assert (push.listen, push.token_file) == ("127.0.0.1:8760", str(token))
    assert load_push_token(push.token_file) == TOKEN
    for text, error in [
        ('[push]\nlisten = "127.0.0.1:8760"\n', "needs push.token_file"),
        ('[push]\nlisten = "nowhere"\ntoken_file = "t"\n', "push.listen: expected HOST:PORT"),
        ('[push]\nlisen = "127.0.0.1:1"\n', "unknown key push.'lisen'"),
        ("[push]\nlisten = 8760\n", "must be str"),
        ('push = "x"\n', "[push] must be a table"),
    ]:
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace(".", r"\.")):
            load_config(cfg)
    token.write_text("two words\n")
    with pytest.raises(ConfigError, match="expected one printable token") as e:
        load_push_token(str(token))
    assert "two words" not in str(e.value)
    with pytest.raises(ConfigError, match="cannot read push token file"):
        load_push_token(str(tmp_path / "missing"))


# --- end to end: the distributor's scheduler and push client -> this intake -------------


async def test_end_to_end_a_published_list_is_pushed_and_held(tmp_path: Path) -> None:
    from distributor import keys as keyfiles
    from distributor.push import PushResult, PushTarget, RetryPolicy, derive_push_secret
    from distributor.scheduler import ListTarget, Pipeline, PipelineSettings

    keyfiles.keygen(tmp_path / "keys")
    (tmp_path / "feeds.toml").write_text(
        '[[feed]]\nname = "local"\nformat = "domains"\nsource = "local.txt"\n'
    )
    (tmp_path / "local.txt").write_text("evil-one.example\n")
    push_key = bytes(32)
    secret = derive_push_secret(push_key, "acme", "fw-1")
    root = PublicKey.from_pem((tmp_path / "keys" / keyfiles.ROOT_PUB).read_bytes())
    policy = TrustPolicy(tenant="acme", profile="linux-sensor", max_bundle_bytes=64 * MiB)
    holder = ListHolder(TrustedListState([root], policy), tmp_path / "sensor" / "list.stockade")
    runner = await start_push_intake(PushIntake(holder, secret), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{bound_port(runner)}{PATH}"

    def targets(tenant: str, profile: str) -> list[PushTarget]:
        return [PushTarget(tenant, profile, "fw-1", url, secret, holder.version or None)]

    settings = PipelineSettings(
        config=tmp_path / "feeds.toml",
        store_url=f"sqlite:///{tmp_path / 'store.db'}",
        out=tmp_path / "out",
        keys=tmp_path / "keys",
        state=tmp_path / "state",
        lists=(ListTarget("acme", "linux-sensor"),),
        push_policy=RetryPolicy(attempts=2, timeout_seconds=30, backoff_base_seconds=0.01),
    )
    recorded: list[PushResult] = []
    pipeline = Pipeline(settings, push_targets=targets, on_push=recorded.extend)
    try:
        first = await pipeline.run_once()
        assert [(p.target, p.status, p.version) for p in first.pushes] == [("fw-1", "delivered", 1)]
        assert holder.version == 1
        assert holder.matcher is not None and holder.matcher.list_version == 1
        (tmp_path / "local.txt").write_text("evil-one.example\nevil-two.example\n")
        second = await pipeline.run_once()
        # it reported holding v1 and the publish wrote the v1 -> v2 delta: the delta went
        assert [(p.status, p.version, p.delta_from) for p in second.pushes] == [("delivered", 2, 1)]
        assert holder.version == 2
        names = {e.value for e in holder.state.current.blocklist.entries}  # type: ignore[union-attr]
        assert names == {"evil-one.example", "evil-two.example"}
        assert (await pipeline.run_once()).pushes == []  # nothing new: nothing pushed
        assert [(r.tenant, r.profile, r.target, r.version) for r in recorded] == [
            ("acme", "linux-sensor", "fw-1", 1),
            ("acme", "linux-sensor", "fw-1", 2),
        ]
    finally:
        pipeline.close()
        await runner.cleanup()


# --- crash safety: the pushing process is killed mid-body --------------------------------


def big_bundle(version: int) -> bytes:
    entries = [
        Entry(EntryType.DOMAIN, f"bad-{version}-{i}.example", Action.BLOCK, 100, "malware")
        for i in range(5000)
    ]
    keyring = sign_keyring(make_keyring(1), (ROOT,))
    return Bundle.signed(
        keyring, make_list(version, entries=entries).to_bytes(), (ONLINE,)
    ).to_bytes()


PUSHER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from distributor.push import PushTarget, RetryPolicy, push_version
    out, url, token = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    target = PushTarget("acme", "utm-small", "fw-1", url, token)
    policy = RetryPolicy(attempts=1, timeout_seconds=3600)
    print(asyncio.run(push_version(out, "acme", "utm-small", 2, [target], policy=policy)))
    """
)


async def test_a_push_killed_mid_body_leaves_the_sensor_whole_and_the_next_push_delivers(
    tmp_path: Path,
) -> None:
    from distributor import publish
    from distributor.push import PushTarget, RetryPolicy, push_version

    v1, v2 = big_bundle(1), big_bundle(2)
    assert len(v2) > 64 * KiB
    out = tmp_path / "out"
    d = publish.list_dir(out, TENANT, PROFILE)
    d.mkdir(parents=True)
    (d / publish.bundle_name(2)).write_bytes(v2)

    holder = new_holder(tmp_path / "sensor", max_bytes=4 * MiB)
    holder.accept(v1)
    runner = await start_push_intake(PushIntake(holder, TOKEN), "127.0.0.1", 0)
    intake_port = bound_port(runner)

    # a link that passes the request head and part of the body, then stalls
    passed_half = asyncio.Event()
    proxy_done = asyncio.Event()
    forward_bytes = 32 * KiB

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", intake_port)
        sent = 0
        try:
            while data := await reader.read(16 * KiB):
                if sent < forward_bytes:
                    part = data[: forward_bytes - sent]
                    up_writer.write(part)
                    await up_writer.drain()
                    sent += len(part)
                    if sent >= forward_bytes:
                        passed_half.set()
            # the pusher is gone (EOF): so is the link
        finally:
            up_writer.close()
            writer.close()
            with contextlib.suppress(ConnectionError):
                await up_reader.read()
            proxy_done.set()

    proxy = await asyncio.start_server(relay, "127.0.0.1", 0)
    proxy_url = f"http://127.0.0.1:{proxy.sockets[0].getsockname()[1]}{PATH}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    pusher = subprocess.Popen(
        [sys.executable, "-c", PUSHER, str(out), proxy_url, TOKEN],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        await asyncio.wait_for(passed_half.wait(), HANG_GUARD_SECONDS)
        assert pusher.poll() is None  # still mid-push
        os.kill(pusher.pid, signal.SIGKILL)
        await asyncio.wait_for(proxy_done.wait(), HANG_GUARD_SECONDS)
    finally:
        if pusher.poll() is None:
            pusher.kill()
        pusher.wait()
    assert pusher.returncode == -signal.SIGKILL

    # the sensor holds its complete list, in memory and on disk
    assert holder.version == 1
    assert holder.store is not None and holder.store.read_bytes() == v1
    restarted = new_holder(tmp_path / "sensor", max_bytes=4 * MiB)
    assert restarted.load_saved() is not None and restarted.version == 1

    # the next push delivers
    target = PushTarget(TENANT, PROFILE, "fw-1", f"http://127.0.0.1:{intake_port}{PATH}", TOKEN)
    [result] = await push_version(out, TENANT, PROFILE, 2, [target], policy=RetryPolicy(attempts=1))
    assert result.status == "delivered", result.reason
    assert holder.version == 2 and holder.store.read_bytes() == v2
    proxy.close()
    await proxy.wait_closed()
    await runner.cleanup()


def test_the_intake_does_not_import_the_distributor() -> None:
    code = "import sys, sensor.push_intake; print(any(m.startswith('distributor') for m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --- the real sensor: `stockade-sensor run` with [push], in a network namespace ------------


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    ns = f"stk-push-{secrets.token_hex(3)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.netns
def test_the_sensor_run_command_serves_the_intake_from_its_config(
    netns: str, tmp_path: Path
) -> None:
    from distributor import keys as keyfiles
    from distributor import publish
    from distributor.build import sign_list
    from distributor.keys import OnlineKeys

    keyfiles.keygen(tmp_path / "keys")
    keys = OnlineKeys.load(tmp_path / "keys")
    now = datetime.now(UTC).replace(microsecond=0)
    bl = BlockList.create(
        tenant="acme",
        profile="linux-sensor",
        version=1,
        created=now,
        expires=now + timedelta(days=1),
        key_id=keys.signing.keyid,
        entries=[Entry(EntryType.DOMAIN, "evil.example", Action.BLOCK, 100, "malware")],
    )
    data = sign_list(bl, keys)
    d = publish.list_dir(tmp_path / "out", "acme", "linux-sensor")
    d.mkdir(parents=True)
    (d / publish.bundle_name(1)).write_bytes(data)
    (tmp_path / "push-token").write_text(TOKEN + "\n")
    port = 8760
    (tmp_path / "sensor.toml").write_text(
        textwrap.dedent(
            f"""
            tenant = "acme"
            profile = "linux-sensor"
            trust = "{tmp_path / "keys" / keyfiles.ROOT_PUB}"
            state_dir = "{tmp_path / "state"}"
            interface = "lo"
            alerts = "{tmp_path / "alerts.jsonl"}"

            [push]
            listen = "127.0.0.1:{port}"
            token_file = "{tmp_path / "push-token"}"
            """
        )
    )
    (tmp_path / "state").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sensor = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns,
            str(Path(sys.executable).parent / "stockade-sensor"),
            "run",
            "--config",
            str(tmp_path / "sensor.toml"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sensor.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        stderr = sensor.stderr

        def pump() -> None:
            for line in stderr:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        seen: list[str] = []
        while not any("push intake on" in x for x in seen):
            try:
                seen.append(lines.get(timeout=HANG_GUARD_SECONDS))
            except queue.Empty:
                pytest.fail("the sensor never started its push intake: " + "".join(seen))
        pusher = textwrap.dedent(
            """
            import asyncio, sys
            from pathlib import Path
            from distributor.push import PushTarget, RetryPolicy, push_version
            t = PushTarget("acme", "linux-sensor", "fw-1", sys.argv[2], sys.argv[3])
            r = asyncio.run(push_version(Path(sys.argv[1]), "acme", "linux-sensor", 1, [t],
                                         policy=RetryPolicy(attempts=1)))
            print(r[0].status, r[0].reason)
            """
        )
        push_args = [str(tmp_path / "out"), f"http://127.0.0.1:{port}{PATH}", TOKEN]
        pushed = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", pusher, *push_args],
            env=env,
            capture_output=True,
            text=True,
            timeout=HANG_GUARD_SECONDS,
        )
        assert pushed.stdout.strip() == "delivered", pushed.stdout + pushed.stderr
        assert (tmp_path / "state" / "list.stockade").read_bytes() == data
        sensor.send_signal(signal.SIGTERM)
        sensor.wait(timeout=HANG_GUARD_SECONDS)
    finally:
        if sensor.poll() is None:
            sensor.kill()
            sensor.wait()
    assert sensor.returncode == 0
