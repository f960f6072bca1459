"""Pull STIX objects from a TAXII 2.1 collection, incrementally, bounded, never leaking secrets.

Two levels:

* ``pull_collection(url, ...)`` pages through a collection's objects with taxii2-client
  (``Collection.get_objects`` under ``as_pages``), optionally ``added_after`` a watermark, and
  returns the objects and the new watermark: the latest ``X-TAXII-Date-Added-Last`` the server
  sent (TAXII 2.1 section 3.4.3), else the old one. ``state_path`` reads the watermark from a
  small JSON state file; ``save_state`` writes it (atomically) once the caller has stored
  the objects: saving it earlier would lose them if the caller died in between.
* ``fetch_collection(feed, dest, previous=...)`` is the fetch of format ``taxii``: it pulls
  what was added since ``previous`` (the last good copy it wrote), merges it into that copy
  (latest version of each indicator wins, expired ones are dropped) and writes ``dest``: a
  STIX bundle that format ``taxii`` (the ``stix2`` parser) reads like any other file. The
  watermark travels inside that bundle (``x_stockade_taxii``), so it is committed exactly when
  the copy is (the feed cache's promote) and a quarantined copy takes its watermark with it.

Limits: every request has ``timeout_seconds`` (connect, each read, and the whole body), the
bytes of all pages together are at most ``max_bytes`` (counted after decompression, before
decoding), at most ``MAX_PAGES`` pages and ``MAX_OBJECTS`` objects; a server that says "more"
and sends nothing is an error, not a loop. Credentials: HTTP Basic, an ``Authorization``
token (``Bearer`` or ``Token``) or a token in a named header, from environment variables;
they are never logged, never follow a redirect to another origin, and every error message
names the collection URL (without user info or query) with any secret blanked out.

Errors are ``TaxiiError`` (a ``DistributorError``); ``fetch_collection`` raises
``FetchFailed`` naming the feed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests import PreparedRequest, Response
from requests.adapters import HTTPAdapter
from taxii2client.common import _HTTPConnection
from taxii2client.exceptions import TAXIIServiceException
from taxii2client.v21 import Collection, as_pages

from blocklist.fileio import write_atomic

from .errors import DistributorError, FetchFailed
from .feeds import stix
from .feeds.base import MAX_FEED_BYTES, KiB, option, parse_time

if TYPE_CHECKING:
    from .config import FeedConfig

log = logging.getLogger("stockade.distributor.taxii")

DEFAULT_TIMEOUT_SECONDS = 60.0
DEFAULT_PAGE_SIZE = 1000
MAX_PAGES = 100_000
MAX_OBJECTS = 5_000_000
MAX_STATE_BYTES = 64 * KiB
MAX_REASON_CHARS = 300
CHUNK_BYTES = 64 * KiB
STATE_VERSION = 1
#: The bundle property holding the source and watermark of a copy written here.
BUNDLE_STATE_KEY = "x_stockade_taxii"
DATE_ADDED_LAST = "X-TAXII-Date-Added-Last"


class TaxiiError(DistributorError):
    """A collection that could not be pulled; the message is safe to log (no secret)."""


# --- urls and credentials ---------------------------------------------------------------


def collection_url(url: str) -> str:
    """The collection URL as taxii2-client needs it (ending in ``/``); user info refused."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TaxiiError(f"not an http(s) collection URL: {show_url(url)}")
    if parts.username is not None or parts.password is not None:
        # never repeat the URL: it holds a password
        raise TaxiiError("credentials in the collection URL are not allowed: use *_env options")
    path = parts.path if parts.path.endswith("/") else parts.path + "/"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def show_url(url: str) -> str:
    """A URL for messages: no user info, query or fragment (they may hold keys)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unreadable URL>"
    if ":" in host:
        host = f"[{host}]"
    shown = urlunsplit((parts.scheme, host + port, parts.path, "", ""))
    return shown + ("?..." if parts.query else "")


@dataclass(frozen=True, slots=True)
class Credentials:
    """What to authenticate with; ``repr`` shows no secret."""

    user: str | None = None
    password: str | None = None
    token: str | None = None
    scheme: str = "Bearer"  # of the Authorization header carrying the token
    header: str | None = None  # the token goes in this header, as is, instead

    def __repr__(self) -> str:
        kind = "basic" if self.user else "token" if self.token else "none"
        return f"Credentials({kind})"

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.password, self.token) if s)


def feed_credentials(feed: FeedConfig, env: Mapping[str, str] | None = None) -> Credentials:
    """Credentials of a ``taxii`` feed: options ``user_env``/``password_env`` or ``token_env``
    (``token_scheme``), else the feed's ``[feed.fetch] auth``. Raises ``TaxiiError`` naming
    the environment variable that is missing, never its value."""
    env = os.environ if env is None else env

    def read(key: str) -> str | None:
        name = option(feed, stix.TAXII_OPTIONS, key)
        if not isinstance(name, str):
            return None
        value = env.get(name)
        if not value:
            raise TaxiiError(f"environment variable {name} (options.{key}) is not set or empty")
        return value

    user, password, token = read("user_env"), read("password_env"), read("token_env")
    scheme = option(feed, stix.TAXII_OPTIONS, "token_scheme")
    scheme = scheme if isinstance(scheme, str) else "Bearer"
    fetch = getattr(feed, "fetch", None)
    auth = getattr(fetch, "auth", None)
    if auth is not None:
        if user or token:
            raise TaxiiError("credentials given twice: in options and in [feed.fetch] auth")
        secret = env.get(auth.env)
        if not secret:
            raise TaxiiError(f"environment variable {auth.env} (for auth) is not set or empty")
        if auth.kind == "basic":
            return Credentials(user=auth.user, password=secret)
        if auth.kind == "header":
            return Credentials(token=secret, header=auth.header)
        return Credentials(token=secret)
    return Credentials(user=user, password=password, token=token, scheme=scheme)


# --- transport --------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class _Refused(Exception):
    """What the server sent cannot be used; the text is the reason (no URL, no secret)."""


class _TooSlow(Exception):
    pass


class _Budget:
    """What all the responses of one pull may still hold, and what they said."""

    def __init__(self, max_bytes: int) -> None:
        self.remaining = max_bytes
        self.max_bytes = max_bytes
        self.added_last: list[str] = []
        self.requests = 0

    def take(self, n: int) -> None:
        self.remaining -= n
        if self.remaining < 0:
            raise _TooLarge


class _BoundedAdapter(HTTPAdapter):
    """Every response read whole here, within the byte budget and the time limit, so that
    taxii2-client (which sets neither) can neither hang nor fill the memory."""

    def __init__(
        self,
        timeout_seconds: float,
        budget: _Budget,
        *,
        origin: tuple[str, str, int | None],
        secret_headers: tuple[str, ...],
    ) -> None:
        super().__init__(max_retries=0)
        self.timeout_seconds = timeout_seconds
        self.budget = budget
        self.origin = origin
        self.secret_headers = secret_headers

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> Response:
        if _origin(request.url or "") != self.origin:
            # a redirect elsewhere: requests drops only Authorization, drop every credential
            for header in self.secret_headers:
                request.headers.pop(header, None)
        deadline = time.monotonic() + self.timeout_seconds
        self.budget.requests += 1
        response = super().send(
            request,
            stream=True,
            timeout=self.timeout_seconds,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )
        try:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.budget.remaining:
                raise _TooLarge
            chunks: list[bytes] = []
            for chunk in response.iter_content(CHUNK_BYTES):
                self.budget.take(len(chunk))
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _TooSlow
        finally:
            response.close()
        # the body is read: hand it over as requests would after a non-streamed read
        response._content = b"".join(chunks)
        response._content_consumed = True
        if response.ok:
            last = response.headers.get(DATE_ADDED_LAST)
            if last:
                self.budget.added_last.append(last)
        return response


class _TokenAuth(requests.auth.AuthBase):
    def __init__(self, header: str, value: str) -> None:
        self.header = header
        self.value = value

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers[self.header] = self.value
        return request

    def __repr__(self) -> str:
        return "_TokenAuth(***)"


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default


def _connection(
    url: str,
    credentials: Credentials,
    *,
    timeout_seconds: float,
    budget: _Budget,
    verify_tls: bool,
) -> Any:
    conn = _HTTPConnection(verify=verify_tls, version="2.1")
    session = conn.session
    secret_headers = (
        ("Authorization", credentials.header) if credentials.header else ("Authorization",)
    )
    adapter = _BoundedAdapter(
        timeout_seconds, budget, origin=_origin(url), secret_headers=secret_headers
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.max_redirects = 5
    if credentials.user is not None and credentials.password is not None:
        session.auth = requests.auth.HTTPBasicAuth(credentials.user, credentials.password)
    elif credentials.token is not None:
        if credentials.header:
            session.auth = _TokenAuth(credentials.header, credentials.token)
        else:
            value = f"{credentials.scheme} {credentials.token}"
            session.auth = _TokenAuth("Authorization", value)
    return conn


# --- pulling ----------------------------------------------------------------------------


def pull_collection(
    url: str,
    *,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    auth_scheme: str = "Bearer",
    credentials: Credentials | None = None,
    added_after: str | None = None,
    state_path: Path | None = None,
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    page_size: int = DEFAULT_PAGE_SIZE,
    max_bytes: int = MAX_FEED_BYTES,
    verify_tls: bool = True,
) -> tuple[list[Any], str | None]:
    """All objects of a collection (latest versions), or those added after ``added_after``.

    Returns ``(objects, watermark)``: pass the watermark as ``added_after`` next time (or
    ``save_state`` it once the objects are stored). With ``state_path`` and no
    ``added_after``, the watermark comes from the state file (when it is for this URL).
    Raises ``TaxiiError`` with the URL (no user info, no secret) and what went wrong.
    """
    if credentials is None:
        credentials = Credentials(user=user, password=password, token=token, scheme=auth_scheme)
    url = collection_url(url)
    shown = show_url(url)
    if added_after is None and state_path is not None:
        added_after = load_state(state_path, url)
    budget = _Budget(max_bytes)
    objects: list[Any] = []
    pages = 0
    try:
        conn = _connection(
            url,
            credentials,
            timeout_seconds=timeout_seconds,
            budget=budget,
            verify_tls=verify_tls,
        )
        with Collection(url, conn=conn) as collection:
            filters = {"added_after": added_after} if added_after else {}
            for envelope in as_pages(collection.get_objects, per_request=page_size, **filters):
                pages += 1
                page = _page_objects(envelope)
                if not page and envelope.get("more") is True:
                    raise _Refused("the server says more but sent no objects")
                objects.extend(page)
                if len(objects) > MAX_OBJECTS:
                    raise _Refused(f"more than {MAX_OBJECTS} objects")
                if pages >= MAX_PAGES:
                    raise _Refused(f"more than {MAX_PAGES} pages")
    except Exception as e:  # a third-party client on a hostile server: never crash
        reason = _scrub(_reason(e, budget), credentials.secrets)
        raise TaxiiError(f"TAXII pull from {shown} failed: {reason}") from e
    watermark = _latest(budget.added_last) or added_after
    log.info(
        "TAXII %s: %d objects in %d pages (%d requests), added_after %s -> %s",
        shown,
        len(objects),
        pages,
        budget.requests,
        added_after or "-",
        watermark or "-",
    )
    return objects, watermark


def _page_objects(envelope: object) -> list[Any]:
    if not isinstance(envelope, dict):
        raise _Refused("the server sent something that is not a TAXII envelope")
    page = envelope.get("objects", [])
    if not isinstance(page, list):
        raise _Refused("the server sent an envelope whose 'objects' is not an array")
    return page


def _reason(e: BaseException, budget: _Budget) -> str:
    if isinstance(e, _Refused):
        return str(e)
    if isinstance(e, _TooLarge):
        return f"the responses hold more than {budget.max_bytes} bytes"
    if isinstance(e, _TooSlow):
        return "a response took longer than the timeout"
    if isinstance(e, requests.exceptions.HTTPError) and e.response is not None:
        status = e.response.status_code
        text = f"HTTP {status} {e.response.reason or ''}".strip()
        if status in (401, 403):
            return f"{text}: the server refused the credentials (or has none for this user)"
        if status == 404:
            return f"{text}: no such collection (check the URL: .../collections/<id>/)"
        if status == 406:
            return f"{text}: the server does not speak TAXII 2.1"
        return text
    if isinstance(e, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(e, requests.exceptions.ConnectionError):
        return f"cannot connect ({type(e).__name__})"
    if isinstance(e, RecursionError):
        return "the server sent JSON nested too deeply"
    if isinstance(e, KeyError):
        return f"the server's response lacks {e}"
    if isinstance(e, TAXIIServiceException):
        return _clip(f"{type(e).__name__}: {e}")
    # str(), never repr(): a requests exception's repr can hold the request and its headers
    return _clip(f"{type(e).__name__}: {e}")


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _latest(stamps: Sequence[str]) -> str | None:
    """The latest of the server's timestamps, as the server wrote it (it parses its own)."""
    best: tuple[datetime, str] | None = None
    for stamp in stamps:
        try:
            ts = parse_time(stamp)
        except ValueError:
            log.warning("TAXII: ignoring an unreadable %s header", DATE_ADDED_LAST)
            continue
        if ts is not None and (best is None or ts > best[0]):
            best = (ts, stamp.strip())
    return best[1] if best else None


# --- state ------------------------------------------------------------------------------


def load_state(path: Path, url: str) -> str | None:
    """The watermark saved for this collection URL; None when absent, unreadable or for
    another URL (a full pull then, which is always safe)."""
    try:
        data = path.read_bytes()[: MAX_STATE_BYTES + 1]
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("TAXII state %s unreadable, pulling in full: %s", path, e.strerror or e)
        return None
    try:
        if len(data) > MAX_STATE_BYTES:
            raise ValueError("too large")
        state = json.loads(data)
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError("not a state file of this version")
        if state.get("source") != collection_url(url):
            return None
        added_after = state.get("added_after")
        if added_after is not None and not isinstance(added_after, str):
            raise ValueError("added_after is not a string")
        if added_after is not None:
            parse_time(added_after)
        return added_after
    except (ValueError, RecursionError, TaxiiError) as e:
        log.warning("TAXII state %s is corrupt, pulling in full: %s", path, e)
        return None


def save_state(path: Path, url: str, added_after: str | None) -> None:
    """Write the watermark for this collection URL (temp file, fsync, rename, dir fsync)."""
    state = {
        "version": STATE_VERSION,
        "source": collection_url(url),
        "added_after": added_after,
        "saved": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    write_atomic(path, json.dumps(state, indent=1).encode() + b"\n")


# --- the fetch of format "taxii" --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaxiiFetch:
    """What one ``fetch_collection`` did; ``path`` is the bundle written."""

    path: Path
    incremental: bool
    added_after: str | None
    watermark: str | None
    objects_received: int
    indicators_kept: int
    dropped: Mapping[str, int]
    size_bytes: int
    sha256: str


def fetch_collection(
    feed: FeedConfig,
    dest: Path,
    *,
    previous: Path | None = None,
    env: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> TaxiiFetch:
    """Pull ``feed.source`` and write ``dest``: the previous copy plus what was added since.

    ``previous`` is the last good copy this function wrote (default: ``dest`` itself). With
    option ``incremental`` (default) and a readable previous copy for the same URL, only
    objects added after its watermark are pulled and merged in; else everything is pulled.
    Raises ``FetchFailed`` (the pull failed: keep the last good copy) naming the feed.
    """
    now = now or datetime.now(UTC)
    previous = dest if previous is None else previous
    fetch_config = getattr(feed, "fetch", None)
    timeout_seconds = float(getattr(fetch_config, "timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
    max_bytes = int(getattr(fetch_config, "max_bytes", MAX_FEED_BYTES))
    page_size = option(feed, stix.TAXII_OPTIONS, "page_size")
    incremental = option(feed, stix.TAXII_OPTIONS, "incremental") is not False
    verify_tls = option(feed, stix.TAXII_OPTIONS, "verify_tls") is not False
    try:
        url = collection_url(feed.source)
        credentials = feed_credentials(feed, env)
        base: list[Any] = []
        added_after: str | None = None
        if incremental:
            base, added_after = _read_copy(previous, url, feed.name)
        objects, watermark = pull_collection(
            url,
            credentials=credentials,
            added_after=added_after,
            timeout_seconds=timeout_seconds,
            page_size=page_size if isinstance(page_size, int) else DEFAULT_PAGE_SIZE,
            max_bytes=max_bytes,
            verify_tls=verify_tls,
        )
    except TaxiiError as e:
        raise FetchFailed(feed.name, str(e)) from e
    merged, dropped = merge_objects(base, objects, now=now)
    bundle = {
        "type": "bundle",
        # the same content gives the same bytes: a pull that adds nothing is "not modified"
        "id": f"bundle--{uuid.uuid5(uuid.NAMESPACE_URL, url)}",
        BUNDLE_STATE_KEY: {"source": url, "added_after": watermark},
        "objects": merged,
    }
    try:
        data = json.dumps(bundle, separators=(",", ":")).encode()
    except (ValueError, RecursionError) as e:  # cycles cannot come from JSON; depth can
        raise FetchFailed(feed.name, f"cannot write the merged bundle: {e}") from e
    try:
        write_atomic(dest, data)
    except OSError as e:
        raise FetchFailed(feed.name, f"cannot write {dest}: {e.strerror or e}") from e
    return TaxiiFetch(
        path=dest,
        incremental=bool(base) or added_after is not None,
        added_after=added_after,
        watermark=watermark,
        objects_received=len(objects),
        indicators_kept=len(merged),
        dropped=dropped,
        size_bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _read_copy(path: Path, url: str, feed_name: str) -> tuple[list[Any], str | None]:
    """The objects and watermark of a copy written by ``fetch_collection`` for ``url``;
    nothing (a full pull) when there is none or it cannot be used."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return [], None
    except OSError as e:
        log.warning("feed %s: cannot read %s, pulling in full: %s", feed_name, path, e)
        return [], None
    try:
        doc = json.loads(text) if len(text) <= MAX_FEED_BYTES else None
    except (ValueError, RecursionError):
        doc = None
    state = doc.get(BUNDLE_STATE_KEY) if isinstance(doc, dict) else None
    objects = doc.get("objects") if isinstance(doc, dict) else None
    if (
        not isinstance(state, dict)
        or state.get("source") != url
        or not isinstance(objects, list)
        or not isinstance(state.get("added_after"), str | None)
    ):
        log.warning("feed %s: %s is not a TAXII copy of %s, pulling in full", feed_name, path, url)
        return [], None
    return objects, state.get("added_after")


def merge_objects(
    base: Sequence[Any], new: Sequence[Any], *, now: datetime
) -> tuple[list[Any], dict[str, int]]:
    """The latest version of every indicator in ``base`` + ``new``, less the expired ones.

    Other objects (identities, relationships, ...) are dropped: nothing of them is blocked.
    A revoked latest version is kept (until it expires), so that the parser counts it and no
    older version can come back. Counts of what was dropped, by reason.
    """
    dropped: dict[str, int] = {}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    indicators: list[Any] = []
    for obj in (*base, *new):
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            drop("not a STIX object")
        elif obj.get("type") != "indicator":
            drop("not an indicator")
        else:
            indicators.append(obj)
    latest = stix.latest_versions(indicators)
    kept: list[Any] = []
    for index, obj in enumerate(indicators):
        if latest.get(obj["id"]) != index:
            drop("superseded version")
            continue
        try:
            valid_until = parse_time(obj["valid_until"]) if "valid_until" in obj else None
        except (ValueError, TypeError, AttributeError):
            valid_until = None  # the parser warns about it
        if valid_until is not None and valid_until <= now:
            drop("expired")
            continue
        kept.append(obj)
    return kept, dropped


__all__ = [
    "Credentials",
    "TaxiiError",
    "TaxiiFetch",
    "collection_url",
    "feed_credentials",
    "fetch_collection",
    "load_state",
    "merge_objects",
    "pull_collection",
    "save_state",
    "show_url",
]
