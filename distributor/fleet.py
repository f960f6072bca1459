"""Fleet state: tenants (allow/deny lists, feed subscriptions) and the appliances they own.

The tables live in the store's database (``store.schema``, alembic migration 0003), so a
fleet is on SQLite or PostgreSQL exactly as the store is. An appliance's token is made here,
returned once to the caller, and only its SHA-256 is kept (``tokens.hash_token``): a copy of
the database lets nobody fetch a list. A revoked appliance keeps its row (its history) but
never authenticates again.

Writers rely on unique keys and row locks only (the store's ``rows_only`` transactions), so
an ingest holding the store's write lock never blocks an admin operation or a poll record.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import (
    BigInteger,
    Connection,
    Row,
    Select,
    Text,
    bindparam,
    case,
    delete,
    func,
    insert,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from . import publish
from .config import FEED_NAME_RE
from .errors import DistributorError
from .store import Store, StoreError
from .store.schema import appliances, tenants
from .tokens import NAME_RE, hash_token, new_token

__all__ = [
    "ApplianceRecord",
    "ApplianceStatus",
    "BadInput",
    "DuplicateName",
    "Fleet",
    "FleetError",
    "Poll",
    "Tenant",
    "TenantInUse",
    "UnknownAppliance",
    "UnknownTenant",
]

NAME_HELP = "names are 1-64 of letters, digits, '.', '_', '-' (starting with a letter or digit)"
#: An allow or deny entry is one indicator (domain, address, CIDR, URL) as written in a feed.
MAX_ENTRY_CHARS = 2048
MAX_LIST_ENTRIES = 100_000
MAX_PUSH_URL_CHARS = 2048
#: What a sensor reports about itself is kept short: a status line or a small JSON object.
MAX_HEALTH_CHARS = 1024
#: Tokens are ASCII and short; anything else is refused before it is hashed.
MAX_TOKEN_CHARS = 256
#: An appliance not heard from for longer than this is stale (``Fleet.status``).
DEFAULT_STALE_AFTER = timedelta(hours=24)
_ENTRY_RE = re.compile(r"[!-~]+")  # printable ASCII, no space: one indicator per entry
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")


class FleetError(DistributorError):
    """A fleet operation that cannot be done as asked (the caller's input, not the store)."""


class BadInput(FleetError, ValueError):
    """A name, list entry or URL that the fleet does not accept."""


class UnknownTenant(FleetError, LookupError):
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"no tenant {tenant!r}")


class UnknownAppliance(FleetError, LookupError):
    def __init__(self, tenant: str, name: str) -> None:
        self.tenant, self.name = tenant, name
        super().__init__(f"no appliance {name!r} in tenant {tenant!r}")


class DuplicateName(FleetError):
    """A tenant, or an appliance of one tenant, with that name exists already."""


class TenantInUse(FleetError):
    """A tenant that still has appliances cannot be removed without ``force``."""


# --- values ---------------------------------------------------------------------------


def _dt(seconds: int | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def _ts(when: datetime) -> int:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp())


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    allow: tuple[str, ...]
    deny: tuple[str, ...]
    subscriptions: tuple[str, ...]
    created: datetime
    appliances: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "allow": list(self.allow),
            "deny": list(self.deny),
            "subscriptions": list(self.subscriptions),
            "created": self.created.isoformat(),
            "appliances": self.appliances,
        }


@dataclass(frozen=True, slots=True)
class ApplianceRecord:
    """An appliance as the fleet knows it; never holds its token or the token's hash."""

    id: int
    tenant: str
    name: str
    profile: str
    created: datetime
    revoked_at: datetime | None = None
    push_url: str | None = None
    last_seen: datetime | None = None
    version_held: int | None = None
    health: str | None = None
    last_error: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def profiles(self) -> tuple[str, ...]:
        return (self.profile,)

    def may_fetch(self, tenant: str, profile: str) -> bool:
        """Same contract as ``tokens.Appliance.may_fetch``, so the server takes either."""
        return not self.revoked and tenant == self.tenant and profile == self.profile

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "name": self.name,
            "profile": self.profile,
            "created": self.created.isoformat(),
            "revoked_at": _iso(self.revoked_at),
            "push_url": self.push_url,
            "last_seen": _iso(self.last_seen),
            "version_held": self.version_held,
            "health": self.health,
            "last_error": self.last_error,
        }


@dataclass(frozen=True, slots=True)
class ApplianceStatus:
    """An appliance and whether it is stale: why, in ``reasons`` (empty when it is not)."""

    appliance: ApplianceRecord
    newest_version: int | None
    reasons: tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        return bool(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.appliance.to_dict(),
            "newest_version": self.newest_version,
            "stale": self.stale,
            "stale_reasons": list(self.reasons),
        }


@dataclass(frozen=True, slots=True)
class Poll:
    """What one list request said about its appliance (``None``: not said, keep the old)."""

    appliance_id: int
    when: datetime
    version_held: int | None = None
    health: str | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class PublishedList:
    tenant: str
    profile: str
    versions: tuple[int, ...]
    newest: int
    published: datetime | None = field(default=None)

    def to_dict(self, now: datetime) -> dict[str, Any]:
        age = None if self.published is None else int((now - self.published).total_seconds())
        return {
            "tenant": self.tenant,
            "profile": self.profile,
            "versions": list(self.versions),
            "newest": self.newest,
            "published": _iso(self.published),
            "age_seconds": age,
        }


# --- validation -----------------------------------------------------------------------


def _seq(values: Iterable[str]) -> object:
    """A list of what was given; a lone string stays a string, for the checks to refuse."""
    return values if isinstance(values, str) else list(values)


def check_name(label: str, value: object) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value):
        shown = repr(value)[:80]
        raise BadInput(f"invalid {label} {shown}: {NAME_HELP}")
    return value


def check_entries(label: str, values: object) -> tuple[str, ...]:
    """Allow or deny entries: one indicator each, printable ASCII, duplicates dropped."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise BadInput(f"{label}: expected a list of entries")
    if len(values) > MAX_LIST_ENTRIES:
        raise BadInput(f"{label}: {len(values)} entries, at most {MAX_LIST_ENTRIES}")
    out: dict[str, None] = {}
    for i, v in enumerate(values):
        if not isinstance(v, str) or not v.strip():
            raise BadInput(f"{label}[{i}]: expected a non-empty string, got {repr(v)[:80]}")
        v = v.strip()
        if len(v) > MAX_ENTRY_CHARS or not _ENTRY_RE.fullmatch(v):
            raise BadInput(
                f"{label}[{i}] {v[:80]!r}: an entry is one indicator of at most "
                f"{MAX_ENTRY_CHARS} printable ASCII characters without spaces"
            )
        out[v] = None
    return tuple(out)


def check_subscriptions(values: object) -> tuple[str, ...]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise BadInput("subscriptions: expected a list of feed names")
    out: dict[str, None] = {}
    for i, v in enumerate(values):
        if not isinstance(v, str) or not FEED_NAME_RE.fullmatch(v):
            raise BadInput(
                f"subscriptions[{i}] {repr(v)[:80]}: feed names are 1-64 of lowercase "
                "letters, digits, '.', '_', '-'"
            )
        out[v] = None
    return tuple(out)


def check_push_url(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_PUSH_URL_CHARS:
        raise BadInput(f"push URL: expected a URL of at most {MAX_PUSH_URL_CHARS} characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as e:
        raise BadInput(f"push URL {value[:80]!r}: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or _CONTROL_RE.search(value):
        raise BadInput(f"push URL {value[:80]!r}: expected http(s)://HOST[:PORT]/PATH")
    if parts.username or parts.password:
        raise BadInput("push URL: credentials in the URL are not allowed")
    return value


def clean_text(value: str | None, limit: int = MAX_HEALTH_CHARS) -> str | None:
    """A sensor's free text, kept printable and short (PostgreSQL text cannot hold NUL)."""
    if value is None:
        return None
    # a header of raw bytes arrives with surrogate escapes, which no database encodes
    text = value.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL_RE.sub(" ", text)[:limit]


def token_ok(token: str) -> bool:
    """Worth hashing: a header of raw bytes (surrogate escapes) must not reach encode()."""
    return bool(token) and len(token) <= MAX_TOKEN_CHARS and token.isascii()


# --- the fleet ------------------------------------------------------------------------


class Fleet:
    """Tenants and appliances in the store's database (SQLite or PostgreSQL)."""

    def __init__(self, store: Store, *, owns_store: bool = False) -> None:
        self.store = store
        self._owns_store = owns_store

    @classmethod
    def open(cls, url: str) -> Fleet:
        """Open (and create or upgrade) the store at ``url`` and use its fleet tables."""
        return cls(Store.open(url), owns_store=True)

    @property
    def url(self) -> str:
        return self.store.url

    def close(self) -> None:
        if self._owns_store:
            self.store.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # The fleet's tables are part of the store: it uses the store's transactions (one
    # snapshot per read; writers on row locks, see the module docstring).
    def _read(self) -> AbstractContextManager[Connection]:
        return self.store._transaction()

    def _write(self) -> AbstractContextManager[Connection]:
        return self.store._transaction(write=True, rows_only=True)

    # --- tenants --------------------------------------------------------------------

    @staticmethod
    def _tenant_id(conn: Connection, name: str) -> int:
        tid = conn.execute(select(tenants.c.id).where(tenants.c.name == name)).scalar()
        if tid is None:
            raise UnknownTenant(name)
        return int(tid)

    def add_tenant(
        self,
        name: str,
        *,
        allow: Iterable[str] = (),
        deny: Iterable[str] = (),
        subscriptions: Iterable[str] = (),
        now: datetime | None = None,
    ) -> Tenant:
        check_name("tenant name", name)
        values = {
            "name": name,
            "allow_list": json.dumps(check_entries("allow", _seq(allow))),
            "deny_list": json.dumps(check_entries("deny", _seq(deny))),
            "subscriptions": json.dumps(check_subscriptions(_seq(subscriptions))),
            "created": _ts(now or datetime.now(UTC)),
        }
        with self._unique(f"tenant {name!r} exists already"), self._write() as conn:
            if conn.execute(select(tenants.c.id).where(tenants.c.name == name)).first():
                raise DuplicateName(f"tenant {name!r} exists already")
            conn.execute(insert(tenants).values(**values))
        return self.show_tenant(name)

    def list_tenants(self) -> list[Tenant]:
        with self._read() as conn:
            return [self._tenant(r) for r in conn.execute(self._tenant_query())]

    def show_tenant(self, name: str) -> Tenant:
        with self._read() as conn:
            row = conn.execute(self._tenant_query().where(tenants.c.name == name)).first()
        if row is None:
            raise UnknownTenant(name)
        return self._tenant(row)

    def set_tenant(
        self,
        name: str,
        *,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] | None = None,
        subscriptions: Iterable[str] | None = None,
    ) -> Tenant:
        """Replace whichever of the lists are given; the others stay as they are."""
        values: dict[str, str] = {}
        if allow is not None:
            values["allow_list"] = json.dumps(check_entries("allow", _seq(allow)))
        if deny is not None:
            values["deny_list"] = json.dumps(check_entries("deny", _seq(deny)))
        if subscriptions is not None:
            values["subscriptions"] = json.dumps(check_subscriptions(_seq(subscriptions)))
        with self._write() as conn:
            tid = self._tenant_id(conn, name)
            if values:
                conn.execute(update(tenants).where(tenants.c.id == tid).values(**values))
        return self.show_tenant(name)

    def remove_tenant(self, name: str, *, force: bool = False) -> int:
        """Remove a tenant; with ``force`` its appliances too (their number is returned)."""
        with self._write() as conn:
            tid = self._tenant_id(conn, name)
            n = int(
                conn.execute(
                    select(func.count())
                    .select_from(appliances)
                    .where(appliances.c.tenant_id == tid)
                ).scalar_one()
            )
            if n and not force:
                raise TenantInUse(
                    f"tenant {name!r} has {n} appliance(s): revoke and remove them, or force"
                )
            conn.execute(delete(appliances).where(appliances.c.tenant_id == tid))
            conn.execute(delete(tenants).where(tenants.c.id == tid))
        return n

    @staticmethod
    def _tenant_query() -> Select[Any]:
        count = (
            select(func.count())
            .select_from(appliances)
            .where(appliances.c.tenant_id == tenants.c.id)
            .scalar_subquery()
        )
        return select(tenants, count.label("n_appliances")).order_by(tenants.c.name)

    @staticmethod
    def _tenant(row: Row[Any]) -> Tenant:
        m = row._mapping
        created = _dt(m["created"])
        assert created is not None
        return Tenant(
            name=m["name"],
            allow=tuple(json.loads(m["allow_list"])),
            deny=tuple(json.loads(m["deny_list"])),
            subscriptions=tuple(json.loads(m["subscriptions"])),
            created=created,
            appliances=int(m["n_appliances"]),
        )

    # --- appliances -----------------------------------------------------------------

    def register_appliance(
        self,
        tenant: str,
        name: str,
        profile: str,
        *,
        push_url: str | None = None,
        now: datetime | None = None,
    ) -> tuple[ApplianceRecord, str]:
        """Register an appliance; returns its token, the only time it is ever seen."""
        check_name("tenant name", tenant)
        check_name("appliance name", name)
        check_name("profile", profile)
        push = check_push_url(push_url)
        token = new_token()
        dup = f"appliance {name!r} exists already in tenant {tenant!r}"
        with self._unique(dup), self._write() as conn:
            tid = self._tenant_id(conn, tenant)
            taken = conn.execute(
                select(appliances.c.id).where(
                    appliances.c.tenant_id == tid, appliances.c.name == name
                )
            ).first()
            if taken:
                raise DuplicateName(dup)
            conn.execute(
                insert(appliances).values(
                    tenant_id=tid,
                    name=name,
                    profile=profile,
                    token_sha256=hash_token(token),
                    created=_ts(now or datetime.now(UTC)),
                    push_url=push,
                )
            )
        return self.show_appliance(tenant, name), token

    def list_appliances(self, tenant: str | None = None) -> list[ApplianceRecord]:
        q = self._appliance_query()
        with self._read() as conn:
            if tenant is not None:
                q = q.where(appliances.c.tenant_id == self._tenant_id(conn, tenant))
            return [self._appliance(r) for r in conn.execute(q)]

    def show_appliance(self, tenant: str, name: str) -> ApplianceRecord:
        with self._read() as conn:
            tid = self._tenant_id(conn, tenant)
            row = conn.execute(
                self._appliance_query().where(
                    appliances.c.tenant_id == tid, appliances.c.name == name
                )
            ).first()
        if row is None:
            raise UnknownAppliance(tenant, name)
        return self._appliance(row)

    def revoke_appliance(self, tenant: str, name: str, *, now: datetime | None = None) -> None:
        """Its token stops working at once; revoking twice keeps the first time."""
        with self._write() as conn:
            aid = self._appliance_id(conn, tenant, name)
            conn.execute(
                update(appliances)
                .where(appliances.c.id == aid, appliances.c.revoked_at.is_(None))
                .values(revoked_at=_ts(now or datetime.now(UTC)))
            )

    def rotate_token(self, tenant: str, name: str) -> str:
        """A new token for an appliance (the old one stops working); returned once."""
        token = new_token()
        with self._write() as conn:
            aid = self._appliance_id(conn, tenant, name)
            revoked = conn.execute(
                select(appliances.c.revoked_at).where(appliances.c.id == aid)
            ).scalar()
            if revoked is not None:
                raise FleetError(
                    f"appliance {name!r} of tenant {tenant!r} is revoked: register it again"
                )
            conn.execute(
                update(appliances)
                .where(appliances.c.id == aid)
                .values(token_sha256=hash_token(token))
            )
        return token

    def set_push_url(self, tenant: str, name: str, push_url: str | None) -> ApplianceRecord:
        push = check_push_url(push_url)
        with self._write() as conn:
            aid = self._appliance_id(conn, tenant, name)
            conn.execute(update(appliances).where(appliances.c.id == aid).values(push_url=push))
        return self.show_appliance(tenant, name)

    def record_push(
        self, tenant: str, name: str, error: str | None, *, delivered_version: int | None = None
    ) -> None:
        """What the last push to an appliance came to: ``error`` None clears the last error;
        ``delivered_version``: the version its intake accepted (or already held), which it
        holds now (never moved backwards). A push is not a poll: last seen stays."""
        c = appliances.c
        with self._write() as conn:
            aid = self._appliance_id(conn, tenant, name)
            conn.execute(
                update(appliances)
                .where(c.id == aid)
                .values(last_error=None if error is None else clean_text(error))
            )
            if delivered_version is not None:
                conn.execute(
                    update(appliances)
                    .where(
                        c.id == aid,
                        or_(c.version_held.is_(None), c.version_held < delivered_version),
                    )
                    .values(version_held=delivered_version)
                )

    def push_targets(self, tenant: str, profile: str) -> list[ApplianceRecord]:
        """Appliances of a tenant and profile that take pushes (not revoked)."""
        q = self._appliance_query().where(
            tenants.c.name == tenant,
            appliances.c.profile == profile,
            appliances.c.push_url.is_not(None),
            appliances.c.revoked_at.is_(None),
        )
        with self._read() as conn:
            return [self._appliance(r) for r in conn.execute(q)]

    def list_targets(self) -> list[tuple[str, str]]:
        """(tenant, profile) of every list some active appliance fetches: what to build."""
        q = (
            select(tenants.c.name, appliances.c.profile)
            .join(tenants, tenants.c.id == appliances.c.tenant_id)
            .where(appliances.c.revoked_at.is_(None))
            .distinct()
            .order_by(tenants.c.name, appliances.c.profile)
        )
        with self._read() as conn:
            return [(str(t), str(p)) for t, p in conn.execute(q)]

    def authenticate(self, token: str) -> ApplianceRecord | None:
        """The appliance holding ``token``, or None (unknown, malformed or revoked)."""
        if not token_ok(token):
            return None
        q = self._appliance_query().where(appliances.c.token_sha256 == hash_token(token))
        with self._read() as conn:
            row = conn.execute(q).first()
        if row is None:
            return None
        found = self._appliance(row)
        return None if found.revoked else found

    def record_poll(
        self,
        appliance: ApplianceRecord,
        version_held: int | None,
        health: str | None,
        *,
        last_error: str | None = None,
        now: datetime | None = None,
    ) -> None:
        self.record_polls(
            [Poll(appliance.id, now or datetime.now(UTC), version_held, health, last_error)]
        )

    def record_polls(self, polls: Iterable[Poll]) -> None:
        """Last seen (and what was said) for many polls in one statement; a poll never moves
        last seen backwards. What a poll did not say (None) stays as it was; an empty error
        clears the last error (the sensor's last update went well)."""
        rows = [
            {
                "aid": p.appliance_id,
                "seen": _ts(p.when),
                "version": p.version_held,
                "health": clean_text(p.health),
                "error": clean_text(p.last_error),
            }
            for p in sorted(polls, key=lambda p: (p.appliance_id, p.when))
        ]
        if not rows:
            return
        c = appliances.c
        seen = bindparam("seen", type_=BigInteger)
        error = bindparam("error", type_=Text)
        stmt = (
            update(appliances)
            .where(c.id == bindparam("aid"), or_(c.last_seen.is_(None), c.last_seen <= seen))
            .values(
                last_seen=seen,
                version_held=func.coalesce(bindparam("version", type_=BigInteger), c.version_held),
                health=func.coalesce(bindparam("health", type_=Text), c.health),
                last_error=case(
                    (error.is_(None), c.last_error), (error == "", null()), else_=error
                ),
            )
        )
        # one executemany: a flush of 10,000 polls is one statement, not 10,000
        with self._write() as conn:
            conn.execute(stmt, rows)

    def active_by_token(self) -> dict[str, ApplianceRecord]:
        """Every appliance that may authenticate, by its token's SHA-256: what ``serve``
        keeps in memory so that a poll costs no query."""
        q = self._appliance_query().add_columns(appliances.c.token_sha256)
        q = q.where(appliances.c.revoked_at.is_(None))
        with self._read() as conn:
            return {str(r.token_sha256): self._appliance(r) for r in conn.execute(q)}

    def status(
        self,
        lists_dir: Path | None,
        *,
        tenant: str | None = None,
        stale_after: timedelta = DEFAULT_STALE_AFTER,
        now: datetime | None = None,
    ) -> list[ApplianceStatus]:
        """Each appliance (of ``tenant``, or all) with the newest version published for its
        tenant and profile (none known without ``lists_dir``), stale when it holds an older
        one or was not seen for longer than ``stale_after``. Revoked ones are never stale."""
        now = now or datetime.now(UTC)
        newest: dict[tuple[str, str], int | None] = {}
        out: list[ApplianceStatus] = []
        for a in self.list_appliances(tenant):
            key = (a.tenant, a.profile)
            if key not in newest:
                versions = publish.published_versions(lists_dir, *key) if lists_dir else []
                newest[key] = versions[-1] if versions else None
            have, want = a.version_held, newest[key]
            reasons: list[str] = []
            if not a.revoked:
                if want is not None and (have is None or have < want):
                    held = "nothing" if have is None else f"v{have}"
                    reasons.append(f"holds {held}, v{want} is published")
                if a.last_seen is None:
                    reasons.append("never seen")
                elif now - a.last_seen > stale_after:
                    reasons.append(f"not seen since {a.last_seen.isoformat()}")
            out.append(ApplianceStatus(a, want, tuple(reasons)))
        return out

    # --- helpers --------------------------------------------------------------------

    def _appliance_id(self, conn: Connection, tenant: str, name: str) -> int:
        tid = self._tenant_id(conn, tenant)
        aid = conn.execute(
            select(appliances.c.id).where(appliances.c.tenant_id == tid, appliances.c.name == name)
        ).scalar()
        if aid is None:
            raise UnknownAppliance(tenant, name)
        return int(aid)

    @staticmethod
    def _appliance_query() -> Select[Any]:
        c = appliances.c
        return (
            select(
                c.id,
                tenants.c.name.label("tenant"),
                c.name,
                c.profile,
                c.created,
                c.revoked_at,
                c.push_url,
                c.last_seen,
                c.version_held,
                c.health,
                c.last_error,
            )
            .join(tenants, tenants.c.id == c.tenant_id)
            .order_by(tenants.c.name, c.name)
        )

    @staticmethod
    def _appliance(row: Row[Any]) -> ApplianceRecord:
        m = row._mapping
        created = _dt(m["created"])
        assert created is not None
        return ApplianceRecord(
            id=int(m["id"]),
            tenant=m["tenant"],
            name=m["name"],
            profile=m["profile"],
            created=created,
            revoked_at=_dt(m["revoked_at"]),
            push_url=m["push_url"],
            last_seen=_dt(m["last_seen"]),
            version_held=m["version_held"],
            health=m["health"],
            last_error=m["last_error"],
        )

    @staticmethod
    def _unique(message: str) -> _UniqueGuard:
        return _UniqueGuard(message)


class _UniqueGuard:
    """Turns a unique-key violation (another writer won the race) into ``DuplicateName``."""

    def __init__(self, message: str) -> None:
        self.message = message

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, StoreError) and isinstance(exc.__cause__, IntegrityError):
            raise DuplicateName(self.message) from exc


def published_lists(lists_dir: Path, tenant: str | None = None) -> list[PublishedList]:
    """Every tenant/profile with published versions under ``lists_dir`` (``build --out``)."""
    out: list[PublishedList] = []
    for t_dir in _subdirs(lists_dir):
        if tenant is not None and t_dir.name != tenant:
            continue
        for p_dir in _subdirs(t_dir):
            versions = publish.published_versions(lists_dir, t_dir.name, p_dir.name)
            if not versions:
                continue
            newest = versions[-1]
            published = None
            try:
                st = (p_dir / publish.bundle_name(newest)).stat()
                published = datetime.fromtimestamp(st.st_mtime, UTC)
            except OSError:
                pass
            out.append(PublishedList(t_dir.name, p_dir.name, tuple(versions), newest, published))
    return out


def _subdirs(d: Path) -> Iterator[Path]:
    try:
        entries = sorted(d.iterdir())
    except OSError:
        return
    for e in entries:
        if NAME_RE.fullmatch(e.name) and e.is_dir() and not e.is_symlink():
            yield e
