"""The admin API: tenants, appliances and published lists, JSON in and out.

Mounted by ``ListServer`` under ``/v1/admin/`` when it has a fleet and an admin token.
Every request carries ``Authorization: Bearer <admin token>``; the server keeps only the
token's SHA-256 (``--admin-token-file``, written by ``stockade-distributor admin-token``)
and compares hashes in constant time. No token or a wrong one: 401. An appliance's token:
403, whatever the path asks for, so an appliance learns nothing about other tenants here.

``GET    /v1/admin/tenants``                                      all tenants
``POST   /v1/admin/tenants``                                      ``{"name", "allow"?, "deny"?, "subscriptions"?}`` -> 201
``GET    /v1/admin/tenants/{tenant}``
``PATCH  /v1/admin/tenants/{tenant}``                             replaces the lists given
``DELETE /v1/admin/tenants/{tenant}[?force=true]``                force: with its appliances
``GET    /v1/admin/appliances[?tenant=T]``                        with status (stale or not)
``POST   /v1/admin/tenants/{tenant}/appliances``                  ``{"name", "profile", "push_url"?}`` -> 201 with the token, once
``GET    /v1/admin/tenants/{tenant}/appliances/{name}``
``POST   /v1/admin/tenants/{tenant}/appliances/{name}/revoke``
``POST   /v1/admin/tenants/{tenant}/appliances/{name}/rotate-token``  -> the new token, once
``GET    /v1/admin/lists[?tenant=T]``                             published versions, newest, age

Errors are ``{"error": "..."}``: 400 bad input, 404 unknown tenant or appliance, 409 a
duplicate name or a tenant still in use, 503 when the store cannot answer now.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from .errors import ConfigError, DistributorError
from .fleet import (
    DEFAULT_STALE_AFTER,
    BadInput,
    DuplicateName,
    Fleet,
    FleetError,
    TenantInUse,
    UnknownAppliance,
    UnknownTenant,
    published_lists,
    token_ok,
)
from .store import StoreError
from .tokens import hash_token

log = logging.getLogger("stockade.distributor.admin")

PREFIX = "/v1/admin"
#: Greppable, and never mistaken for an appliance token (``stk_``).
ADMIN_TOKEN_PREFIX = "stkadm_"  # noqa: S105 - a prefix, not a secret
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_TENANT_KEYS = {"name", "allow", "deny", "subscriptions"}
_APPLIANCE_KEYS = {"name", "profile", "push_url"}


def new_admin_token() -> str:
    import secrets

    return ADMIN_TOKEN_PREFIX + secrets.token_urlsafe(32)


def load_admin_token_hash(path: Path) -> str:
    """The admin token's SHA-256 from its file (one line of 64 lowercase hex digits)."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read admin token file: {e}", file=path) from e
    if not _HASH_RE.fullmatch(text):
        raise ConfigError(
            "expected the admin token's SHA-256 (64 hex digits) written by "
            "`stockade-distributor admin-token`, not the token itself",
            file=path,
        )
    return text


def write_admin_token(path: Path, *, force: bool = False) -> str:
    """Make an admin token, write its hash to ``path`` (mode 0600) and return the token."""
    if path.exists() and not force:
        raise ConfigError("exists already: give --force to replace the admin token", file=path)
    token = new_admin_token()
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(hash_token(token) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as e:
        raise ConfigError(f"cannot write admin token file: {e.strerror or e}", file=path) from e
    return token


def _error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    return cls(text=json.dumps({"error": message}) + "\n", content_type="application/json")


class AdminApi:
    """Routes for ``ListServer``; ``is_appliance_token`` tells a 403 from a 401, and
    ``changed`` is called after every write (the server drops its cached token lookups)."""

    def __init__(
        self,
        fleet: Fleet,
        lists_dir: Path,
        admin_token_sha256: str,
        *,
        is_appliance_token: Callable[[str], bool],
        changed: Callable[[], None],
        stale_after: timedelta = DEFAULT_STALE_AFTER,
    ) -> None:
        if not _HASH_RE.fullmatch(admin_token_sha256):
            raise ConfigError("the admin token hash must be 64 lowercase hex digits")
        self.fleet = fleet
        self.lists_dir = lists_dir
        self._admin_sha256 = admin_token_sha256.encode()
        self._is_appliance_token = is_appliance_token
        self._changed = changed
        self.stale_after = stale_after

    def __repr__(self) -> str:  # the hash stays out of reprs and logs too
        return f"AdminApi(fleet={self.fleet.url!r}, lists_dir={str(self.lists_dir)!r})"

    def routes(self) -> list[web.RouteDef]:
        t = f"{PREFIX}/tenants/{{tenant}}"
        a = f"{t}/appliances/{{name}}"
        return [
            web.get(f"{PREFIX}/tenants", self.list_tenants),
            web.post(f"{PREFIX}/tenants", self.add_tenant),
            web.get(t, self.show_tenant),
            web.patch(t, self.set_tenant),
            web.delete(t, self.remove_tenant),
            web.get(f"{PREFIX}/appliances", self.list_appliances),
            web.post(f"{t}/appliances", self.add_appliance),
            web.get(a, self.show_appliance),
            web.post(f"{a}/revoke", self.revoke_appliance),
            web.post(f"{a}/rotate-token", self.rotate_token),
            web.get(f"{PREFIX}/lists", self.lists),
        ]

    # --- authentication -------------------------------------------------------------

    async def _authorize(self, request: web.Request) -> None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise web.HTTPUnauthorized(
                text="admin token required\n",
                headers={"WWW-Authenticate": 'Bearer realm="stockade-admin"'},
            )
        if token_ok(token) and hmac.compare_digest(hash_token(token).encode(), self._admin_sha256):
            return
        if token_ok(token) and await asyncio.to_thread(self._is_appliance_token, token):
            log.warning(
                "admin API refused an appliance token on %s %s", request.method, request.path
            )
            raise web.HTTPForbidden(text="appliance tokens may not use the admin API\n")
        raise web.HTTPUnauthorized(
            text="invalid admin token\n",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a fleet operation off the event loop; its errors become JSON answers."""
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except BadInput as e:
            raise _error(web.HTTPBadRequest, str(e)) from None
        except (UnknownTenant, UnknownAppliance) as e:
            raise _error(web.HTTPNotFound, str(e)) from None
        except (DuplicateName, TenantInUse) as e:
            raise _error(web.HTTPConflict, str(e)) from None
        except FleetError as e:
            raise _error(web.HTTPConflict, str(e)) from None
        except StoreError as e:
            log.error("admin API: store unavailable: %s", e)
            raise _error(web.HTTPServiceUnavailable, "store unavailable, retry later") from None
        except DistributorError as e:
            raise _error(web.HTTPBadRequest, str(e)) from None

    @staticmethod
    async def _body(request: web.Request, allowed: set[str]) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise _error(web.HTTPBadRequest, f"body is not JSON: {e}") from None
        if not isinstance(body, dict):
            raise _error(web.HTTPBadRequest, "body must be a JSON object")
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise _error(
                web.HTTPBadRequest,
                f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})",
            )
        return body

    # --- tenants --------------------------------------------------------------------

    async def list_tenants(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        got = await self._call(self.fleet.list_tenants)
        return web.json_response({"tenants": [t.to_dict() for t in got]})

    async def add_tenant(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        body = await self._body(request, _TENANT_KEYS)
        if "name" not in body:
            raise _error(web.HTTPBadRequest, "missing key 'name'")
        tenant = await self._call(
            self.fleet.add_tenant,
            body["name"],
            allow=body.get("allow", []),
            deny=body.get("deny", []),
            subscriptions=body.get("subscriptions", []),
        )
        log.info("admin: added tenant %s", tenant.name)
        return web.json_response(tenant.to_dict(), status=201)

    async def show_tenant(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        tenant = await self._call(self.fleet.show_tenant, request.match_info["tenant"])
        return web.json_response(tenant.to_dict())

    async def set_tenant(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        body = await self._body(request, _TENANT_KEYS - {"name"})
        tenant = await self._call(
            self.fleet.set_tenant,
            request.match_info["tenant"],
            allow=body.get("allow"),
            deny=body.get("deny"),
            subscriptions=body.get("subscriptions"),
        )
        log.info("admin: changed tenant %s (%s)", tenant.name, ", ".join(sorted(body)) or "nothing")
        return web.json_response(tenant.to_dict())

    async def remove_tenant(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        name = request.match_info["tenant"]
        force = request.query.get("force", "").lower() in ("1", "true", "yes")
        removed = await self._call(self.fleet.remove_tenant, name, force=force)
        self._changed()
        log.info("admin: removed tenant %s and %d appliance(s)", name, removed)
        return web.json_response({"removed": name, "appliances_removed": removed})

    # --- appliances -----------------------------------------------------------------

    async def list_appliances(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        got = await self._call(
            self.fleet.status,
            self.lists_dir,
            tenant=request.query.get("tenant"),
            stale_after=self.stale_after,
        )
        return web.json_response({"appliances": [s.to_dict() for s in got]})

    async def add_appliance(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        body = await self._body(request, _APPLIANCE_KEYS)
        for key in ("name", "profile"):
            if key not in body:
                raise _error(web.HTTPBadRequest, f"missing key {key!r}")
        record, token = await self._call(
            self.fleet.register_appliance,
            request.match_info["tenant"],
            body["name"],
            body["profile"],
            push_url=body.get("push_url"),
        )
        self._changed()
        log.info("admin: registered appliance %s/%s", record.tenant, record.name)
        return web.json_response({**record.to_dict(), "token": token}, status=201)

    async def show_appliance(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        tenant, name = request.match_info["tenant"], request.match_info["name"]
        got = await self._call(
            self.fleet.status, self.lists_dir, tenant=tenant, stale_after=self.stale_after
        )
        for s in got:
            if s.appliance.name == name:
                return web.json_response(s.to_dict())
        raise _error(web.HTTPNotFound, str(UnknownAppliance(tenant, name)))

    async def revoke_appliance(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        tenant, name = request.match_info["tenant"], request.match_info["name"]
        await self._call(self.fleet.revoke_appliance, tenant, name)
        self._changed()
        log.info("admin: revoked appliance %s/%s", tenant, name)
        record = await self._call(self.fleet.show_appliance, tenant, name)
        return web.json_response(record.to_dict())

    async def rotate_token(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        tenant, name = request.match_info["tenant"], request.match_info["name"]
        token = await self._call(self.fleet.rotate_token, tenant, name)
        self._changed()
        log.info("admin: new token for appliance %s/%s", tenant, name)
        return web.json_response({"tenant": tenant, "name": name, "token": token})

    # --- lists ----------------------------------------------------------------------

    async def lists(self, request: web.Request) -> web.Response:
        await self._authorize(request)
        got = await self._call(published_lists, self.lists_dir, request.query.get("tenant"))
        now = datetime.now(UTC)
        return web.json_response({"lists": [p.to_dict(now) for p in got]})
