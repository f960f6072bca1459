"""TAXII 2.1 pulls against a real server: medallion (memory backend) on loopback."""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from werkzeug.serving import make_server

from distributor.config import FeedConfig
from distributor.errors import FetchFailed
from distributor.feeds import FORMATS, parse_feed
from distributor.taxii import (
    TaxiiError,
    collection_url,
    fetch_collection,
    load_state,
    merge_objects,
    pull_collection,
    save_state,
    show_url,
)

medallion = pytest.importorskip("medallion")

USER, PASSWORD = "reader", "s3cret-Pa55"
TOKEN = "tok-0123456789abcdef"
COLLECTION = "91a7b528-80eb-42ed-a74d-c6fbd5a26116"
PAGE = 10  # the server's max_page_size
DAY1 = "2024-01-01T00:00:00.000000Z"


def indicator(n: int, pattern: str | None = None, **fields: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{n:012d}",
        "created": "2024-01-01T00:00:00.000Z",
        "modified": "2024-01-01T00:00:00.000Z",
        "pattern": pattern or f"[domain-name:value = 'd{n}.example.com']",
        "pattern_type": "stix",
        "valid_from": "2024-01-01T00:00:00Z",
    }
    obj.update(fields)
    return obj


@dataclass
class Server:
    """A medallion server on 127.0.0.1 whose collection holds what ``load`` last put."""

    base: str
    data_dir: Path
    seen_auth: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.base}/api1/collections/{COLLECTION}/"

    def load(self, added: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Serve these (date_added, object) pairs: every object with its manifest entry."""
        objects, manifest = [], []
        for date_added, obj in added:
            objects.append(obj)
            manifest.append(
                {
                    "id": obj["id"],
                    "date_added": date_added,
                    "version": obj.get("modified", obj.get("created")),
                    "media_type": "application/stix+json;version=2.1",
                }
            )
        data = {
            "/discovery": {
                "title": "test",
                "default": f"{self.base}/api1/",
                "api_roots": [f"{self.base}/api1/"],
            },
            "api1": {
                "information": {
                    "title": "api1",
                    "versions": ["application/taxii+json;version=2.1"],
                    "max_content_length": 10_000_000,
                },
                "status": [],
                "collections": [
                    {
                        "id": COLLECTION,
                        "title": "indicators",
                        "can_read": True,
                        "can_write": False,
                        "media_types": ["application/stix+json;version=2.1"],
                        "objects": objects,
                        "manifest": manifest,
                    }
                ],
            },
        }
        path = self.data_dir / "data.json"
        path.write_text(json.dumps(data))
        backend = {
            "module": "medallion.backends.memory_backend",
            "module_class": "MemoryBackend",
            "filename": str(path),
        }
        medallion.set_config(medallion.application_instance, "backend", {"backend": backend})


_registered = False


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    global _registered
    app = medallion.application_instance
    medallion.set_config(app, "users", {"users": {USER: PASSWORD}})
    medallion.set_config(app, "taxii", {"taxii": {"max_page_size": PAGE}})
    if not _registered and "objects" not in app.blueprints:
        medallion.register_blueprints(app)  # routes once per process: the app is global
    _registered = True
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    seen: list[str] = []

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        # medallion knows only HTTP Basic: a bearer token of ours becomes its user
        auth = environ.get("HTTP_AUTHORIZATION", "")
        seen.append(auth.split(" ")[0])
        if auth == f"Bearer {TOKEN}":
            basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
            environ["HTTP_AUTHORIZATION"] = f"Basic {basic}"
        return app(environ, start_response)

    httpd = make_server("127.0.0.1", 0, wsgi, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield Server(
            f"http://127.0.0.1:{httpd.server_port}",
            tmp_path_factory.mktemp("taxii"),
            seen,
        )
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


def ids(objects: list[dict[str, Any]]) -> list[int]:
    return sorted(int(o["id"][-12:]) for o in objects)


def taxii_feed(url: str, **options: Any) -> FeedConfig:
    return FeedConfig(
        name="taxii-test",
        format="taxii",
        source=url,
        confidence=60,
        category="c2",
        options=MappingProxyType(FORMATS["taxii"].resolve_options(options)),
    )


ENV = {"TAXII_USER": USER, "TAXII_PASSWORD": PASSWORD, "TAXII_TOKEN": TOKEN}


# --- pull_collection --------------------------------------------------------------------


def test_full_pull_then_incremental(server: Server) -> None:
    server.load([(f"2024-01-0{1 + n % 3}T00:00:00.000000Z", indicator(n)) for n in range(5)])
    objects, mark = pull_collection(server.url, user=USER, password=PASSWORD)
    assert ids(objects) == [0, 1, 2, 3, 4]
    assert mark == "2024-01-03T00:00:00.000000Z"

    later = [("2024-02-01T00:00:00.000000Z", indicator(n)) for n in (5, 6)]
    server.load(
        [(f"2024-01-0{1 + n % 3}T00:00:00.000000Z", indicator(n)) for n in range(5)] + later
    )
    objects, mark2 = pull_collection(server.url, user=USER, password=PASSWORD, added_after=mark)
    assert ids(objects) == [5, 6]
    assert mark2 == "2024-02-01T00:00:00.000000Z"
    objects, mark3 = pull_collection(server.url, user=USER, password=PASSWORD, added_after=mark2)
    assert objects == [] and mark3 == mark2  # nothing new: the watermark stays


def test_paging_over_more_objects_than_a_page(server: Server) -> None:
    n = 3 * PAGE + 5
    server.load(
        (f"2024-03-01T00:{m // 60:02d}:{m % 60:02d}.000000Z", indicator(m)) for m in range(n)
    )
    for page_size in (PAGE, 7, 1000):  # the server's size, a smaller one, a larger one
        objects, mark = pull_collection(
            server.url, user=USER, password=PASSWORD, page_size=page_size
        )
        assert ids(objects) == list(range(n))
        assert mark == f"2024-03-01T00:00:{n - 1:02d}.000000Z"
    objects, _ = pull_collection(
        server.url,
        user=USER,
        password=PASSWORD,
        page_size=4,
        added_after=f"2024-03-01T00:00:{n - 10:02d}.000000Z",
    )
    assert ids(objects) == list(range(n - 9, n))


def test_wrong_credentials_name_the_url_never_the_password(server: Server) -> None:
    server.load([(DAY1, indicator(1))])
    wrong = "not-" + PASSWORD
    with pytest.raises(TaxiiError) as info:
        pull_collection(server.url, user=USER, password=wrong)
    message = str(info.value)
    assert server.url in message and "401" in message and "credentials" in message
    assert wrong not in message and PASSWORD not in message
    assert wrong not in repr(info.value.__cause__)
    with pytest.raises(TaxiiError, match="401"):
        pull_collection(server.url)  # none at all
    with pytest.raises(TaxiiError, match="401"):
        pull_collection(server.url, token="forged")


def test_bearer_token(server: Server) -> None:
    server.load([(DAY1, indicator(1)), (DAY1, indicator(2))])
    server.seen_auth.clear()
    objects, _ = pull_collection(server.url, token=TOKEN)
    assert ids(objects) == [1, 2]
    assert set(server.seen_auth) == {"Bearer"}


def test_server_errors_are_clear(server: Server) -> None:
    server.load([(DAY1, indicator(1))])
    missing = server.url.replace(COLLECTION, "00000000-0000-4000-8000-000000000000")
    with pytest.raises(TaxiiError, match=r"404.*no such collection"):
        pull_collection(missing, user=USER, password=PASSWORD)
    with pytest.raises(TaxiiError, match=r"cannot connect|timed out") as info:
        pull_collection("http://127.0.0.1:9/api1/collections/x/", timeout_seconds=2)
    assert "http://127.0.0.1:9/api1/collections/x/" in str(info.value)
    with pytest.raises(TaxiiError, match="more than 100 bytes"):
        pull_collection(server.url, user=USER, password=PASSWORD, max_bytes=100)
    with pytest.raises(TaxiiError, match="credentials in the collection URL"):
        pull_collection(server.url.replace("http://", f"http://{USER}:{PASSWORD}@"))
    with pytest.raises(TaxiiError, match="not an http"):
        pull_collection("ftp://example.com/x/")


def test_state_file(server: Server, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert load_state(state, server.url) is None
    server.load([(DAY1, indicator(1)), ("2024-01-05T00:00:00.000000Z", indicator(2))])
    objects, mark = pull_collection(server.url, user=USER, password=PASSWORD, state_path=state)
    assert ids(objects) == [1, 2]
    save_state(state, server.url, mark)
    assert load_state(state, server.url) == "2024-01-05T00:00:00.000000Z"
    assert load_state(state, server.url + "other/") is None  # another collection: start over
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary left
    objects, _ = pull_collection(server.url, user=USER, password=PASSWORD, state_path=state)
    assert objects == []
    for junk in (b"{", b"[]", b'{"version": 1, "source": 3}', b"x" * 100_000):
        state.write_bytes(junk)
        assert load_state(state, server.url) is None


def test_urls_for_messages() -> None:
    assert collection_url("https://h.example/api/collections/c1") == (
        "https://h.example/api/collections/c1/"
    )
    assert show_url("https://u:p@h.example:8443/a/?key=x") == "https://h.example:8443/a/?..."


# --- the taxii format -------------------------------------------------------------------


def test_taxii_feed_fetch_merge_and_parse(server: Server, tmp_path: Path) -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    first = [
        (DAY1, indicator(1)),
        (DAY1, indicator(2, valid_until="2099-12-31T00:00:00Z")),
        (DAY1, indicator(3)),
        (
            DAY1,
            {
                "type": "identity",
                "id": "identity--1",
                "name": "x",
                "created": "2024-01-01T00:00:00Z",
                "modified": "2024-01-01T00:00:00Z",
            },
        ),
    ]
    server.load(first)
    feed = taxii_feed(server.url, user_env="TAXII_USER", password_env="TAXII_PASSWORD")
    copy = tmp_path / "body.json"
    got = fetch_collection(feed, copy, env=ENV, now=now)
    assert (got.incremental, got.objects_received, got.indicators_kept) == (False, 4, 3)
    assert got.dropped == {"not an indicator": 1}
    inds, report = parse_feed(feed, copy)
    assert sorted(i.value for i in inds) == ["d1.example.com", "d2.example.com", "d3.example.com"]
    assert report.format == "taxii"
    assert {i.category for i in inds} == {"c2"}

    # later: 1 is revoked, 3 gets a new pattern, 4 is new, 2 expired meanwhile
    revoked = indicator(1, modified="2024-02-01T00:00:00.000Z", revoked=True)
    moved = indicator(3, "[ipv4-addr:value = '203.0.114.3']", modified="2024-02-01T00:00:00.000Z")
    server.load(
        [
            *first,
            ("2024-02-01T00:00:00.000000Z", revoked),
            ("2024-02-01T00:00:00.000000Z", moved),
            ("2024-02-02T00:00:00.000000Z", indicator(4)),
        ]
    )
    later = datetime(2100, 1, 1, tzinfo=UTC)
    got = fetch_collection(feed, tmp_path / "new.json", previous=copy, env=ENV, now=later)
    assert got.incremental and got.added_after == DAY1
    assert got.objects_received == 3
    assert got.watermark == "2024-02-02T00:00:00.000000Z"
    assert got.dropped == {"superseded version": 2, "expired": 1}
    inds, report = parse_feed(feed, got.path)
    assert sorted(i.value for i in inds) == ["203.0.114.3", "d4.example.com"]
    assert report.rejected == {"revoked": 1}

    # nothing new: the same bytes (a cache sees an unchanged copy)
    again = fetch_collection(feed, tmp_path / "again.json", previous=got.path, env=ENV, now=later)
    assert again.objects_received == 0 and again.watermark == got.watermark
    assert again.sha256 == got.sha256

    # a non-incremental feed pulls everything, every time
    full = taxii_feed(server.url, token_env="TAXII_TOKEN", incremental=False)
    got = fetch_collection(
        full, tmp_path / "new.json", previous=tmp_path / "new.json", env=ENV, now=later
    )
    assert not got.incremental and got.objects_received == 5  # the latest versions only


def test_taxii_feed_errors_name_the_feed(server: Server, tmp_path: Path) -> None:
    server.load([(DAY1, indicator(1))])
    feed = taxii_feed(server.url, token_env="TAXII_TOKEN")
    with pytest.raises(FetchFailed, match=r"taxii-test.*TAXII_TOKEN.*not set"):
        fetch_collection(feed, tmp_path / "b.json", env={})
    with pytest.raises(FetchFailed, match=r"taxii-test.*401") as info:
        fetch_collection(feed, tmp_path / "b.json", env={"TAXII_TOKEN": "forged-token"})
    assert "forged-token" not in str(info.value)
    assert not (tmp_path / "b.json").exists()  # a failed pull leaves nothing behind
    # a previous copy that is not one of ours (or is torn) means a full pull
    (tmp_path / "b.json").write_text("{torn")
    got = fetch_collection(feed, tmp_path / "b.json", env=ENV)
    assert not got.incremental and got.objects_received == 1


def test_merge_objects_keeps_the_latest_live_version() -> None:
    now = datetime(2024, 6, 1, tzinfo=UTC)
    old = indicator(1)
    new = indicator(1, modified="2024-03-01T00:00:00Z")
    gone = indicator(2, valid_until=(now - timedelta(days=1)).isoformat())
    kept, dropped = merge_objects([old, "junk", {"id": 3}], [new, gone], now=now)
    assert kept == [new]
    assert dropped == {"superseded version": 1, "expired": 1, "not a STIX object": 2}


# --- a hostile server -------------------------------------------------------------------

TAXII_JSON = "application/taxii+json;version=2.1"


@pytest.fixture
def hostile() -> Iterator[tuple[str, dict[str, Any], list[dict[str, str]]]]:
    """A server whose objects endpoint answers whatever ``behaviour["objects"]`` says, and a
    second origin that records the headers it is sent (for redirects)."""
    behaviour: dict[str, Any] = {}
    seen_elsewhere: list[dict[str, str]] = []

    def elsewhere(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        seen_elsewhere.append({k: v for k, v in environ.items() if k.startswith("HTTP_")})
        start_response("200 OK", [("Content-Type", TAXII_JSON)])
        return [b'{"objects": []}']

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not environ["PATH_INFO"].endswith("/objects/"):
            info = {"id": "c1", "title": "c", "can_read": True, "can_write": False}
            start_response("200 OK", [("Content-Type", TAXII_JSON)])
            return [json.dumps(info).encode()]
        status, headers, body = behaviour["objects"]
        start_response(status, headers)
        return [body]

    servers = [make_server("127.0.0.1", 0, w, threaded=True) for w in (app, elsewhere)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    behaviour["elsewhere"] = f"http://127.0.0.1:{servers[1].server_port}"
    try:
        yield (
            f"http://127.0.0.1:{servers[0].server_port}/api/collections/c1/",
            behaviour,
            seen_elsewhere,
        )
    finally:
        for s in servers:
            s.shutdown()


def test_hostile_servers_are_errors_not_hangs(
    hostile: tuple[str, dict[str, Any], list[dict[str, str]]],
) -> None:
    url, behaviour, seen_elsewhere = hostile
    taxii = [("Content-Type", TAXII_JSON)]
    cases = [
        (("200 OK", taxii, b'{"more": true, "next": "x", "objects": []}'), "more but sent no"),
        (("200 OK", taxii, b"[" * 40_000 + b"]" * 40_000), "nested too deeply"),
        (("200 OK", taxii, b"<html>"), "InvalidJSONError"),
        (("200 OK", [("Content-Type", "text/html")], b"<html>"), "Content-Type"),
        (("200 OK", taxii, b'{"objects": {"a": 1}}'), "not an array"),
        (("200 OK", taxii, b"[1, 2]"), "envelope"),
        (("500 Internal Server Error", taxii, b"{}"), "HTTP 500"),
        (("200 OK", taxii, b'{"objects": [' + b"1," * 400_000 + b"1]}"), "more than 100000 bytes"),
    ]
    for answer, message in cases:
        behaviour["objects"] = answer
        with pytest.raises(TaxiiError, match=message) as info:
            pull_collection(url, token=TOKEN, max_bytes=100_000)
        assert url in str(info.value) and TOKEN not in str(info.value)

    # a redirect to another origin carries no credential, whatever header holds it
    behaviour["objects"] = ("302 Found", [("Location", behaviour["elsewhere"] + "/o/")], b"")
    for credentials in (
        {"token": TOKEN},
        {"user": USER, "password": PASSWORD},
    ):
        objects, _ = pull_collection(url, **credentials)
        assert objects == []
    from distributor.taxii import Credentials

    objects, _ = pull_collection(url, credentials=Credentials(token=TOKEN, header="X-Api-Key"))
    assert len(seen_elsewhere) == 3
    for headers in seen_elsewhere:
        assert "HTTP_AUTHORIZATION" not in headers and "HTTP_X_API_KEY" not in headers
