"""Native exports served to appliances: ``GET /v1/export/{tenant}/{profile}[?file=NAME]``.

The server authenticates and finds the published bundle; this module renders it with the
firmware profile's ``export_format``, limits and options (``blocklist.exports``) and keeps
the result per (bundle SHA-256, profile): a poll that finds the same bundle costs a dict
lookup, not a render. A new published version has a new SHA-256, so it is rendered afresh;
an edited profile file (new limits) is noticed by its stamp and rendered afresh too.

Answers: 200 with the file's content type and a strong ETag (SHA-256 of the file's bytes),
304 on ``If-None-Match``; 400 naming the files when an export has several and ``?file=`` is
missing; 404 for a profile with no native export (``stockade``: the signed list is at
``/v1/lists/...``), no profile file, or a ``?file=`` the export does not have.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from blocklist.artifact import BlockList
from blocklist.exports import Export, exporter
from blocklist.signing import PAYLOAD_LIST, Bundle

from .errors import ConfigError, DistributorError
from .profiles import DEFAULT_PROFILE_DIR, FirmwareProfile, load_profile

log = logging.getLogger("stockade.distributor.exportserve")

#: Rendered exports kept (each is every file of one bundle for one profile).
MAX_CACHED_EXPORTS = 32
#: A profile whose appliances verify the signed list itself: no native export.
NATIVE_FORMAT = "stockade"


@dataclass(frozen=True, slots=True)
class _File:
    content_type: str
    data: bytes
    etag: str


@dataclass(frozen=True, slots=True)
class _Rendered:
    files: dict[str, _File]
    version: int


def entries_of(bundle: bytes) -> BlockList:
    """The list inside a published bundle (ours, so not verified again: it was signed here)."""
    parsed = Bundle.from_bytes(bundle)
    if parsed.detached is not None:
        return BlockList.from_bytes(bytes(parsed.detached))
    if parsed.blocklist.payload_type != PAYLOAD_LIST:
        raise ValueError(f"bundle 1 carries {parsed.blocklist.payload_type!r}, not a list")
    return BlockList.from_bytes(parsed.blocklist.payload)


def render(profile: FirmwareProfile, blocklist: BlockList) -> Export:
    """The profile's native export of ``blocklist`` (pure: the sensor renders the same way)."""
    options = dict(profile.export_options)
    if profile.export_format == "rpz":
        # a new list is a new zone serial, so secondaries and resolvers take the new zone
        options.setdefault("serial", str(blocklist.header.version))
    return exporter(profile.export_format).render(
        blocklist.entries, profile.export_limits(), options
    )


class ExportService:
    """Renders and caches exports; the server hands it an authorized, published bundle."""

    def __init__(
        self, profiles_dir: Path = DEFAULT_PROFILE_DIR, *, max_cached: int = MAX_CACHED_EXPORTS
    ) -> None:
        self.profiles_dir = profiles_dir
        self.max_cached = max_cached
        self._profiles: dict[str, tuple[tuple[int, int, int], FirmwareProfile]] = {}
        self._cache: dict[tuple[str, str, tuple[int, int, int]], _Rendered] = {}
        self._rendering: dict[tuple[str, str, tuple[int, int, int]], asyncio.Task[_Rendered]] = {}
        #: renders done (a test sees a poll cost none)
        self.renders = 0

    def _profile(self, name: str) -> tuple[tuple[int, int, int], FirmwareProfile]:
        """The profile and the stamp of its file; re-read only when the file changed."""
        path = self.profiles_dir / f"{name}.toml"
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = (0, 0, 0)
        known = self._profiles.get(name)
        if known is not None and known[0] == stamp:
            return known
        profile = load_profile(name, self.profiles_dir)  # ProfileError: invalid or missing
        if len(self._profiles) >= self.max_cached:
            self._profiles.pop(next(iter(self._profiles)))
        self._profiles[name] = (stamp, profile)
        return stamp, profile

    def _render(self, profile: FirmwareProfile, bundle: bytes) -> _Rendered:
        blocklist = entries_of(bundle)
        export = render(profile, blocklist)
        files = {
            f.name: _File(f.content_type, f.data, '"' + hashlib.sha256(f.data).hexdigest() + '"')
            for f in export.files
        }
        skipped = ", ".join(f"{n} {r}" for r, n in sorted(export.skipped.items())) or "none"
        log.info(
            "rendered %s export of %s/%s v%d: %d entries in %d files, skipped: %s",
            export.format,
            blocklist.header.tenant,
            profile.name,
            blocklist.header.version,
            export.entries,
            len(files),
            skipped,
        )
        return _Rendered(files, blocklist.header.version)

    async def rendered(self, bundle: bytes, bundle_sha256: str, profile_name: str) -> _Rendered:
        """The export of this bundle for this profile, rendered once (concurrent polls of a
        new version wait for the one render)."""
        stamp, profile = self._profile(profile_name)
        if profile.export_format == NATIVE_FORMAT:
            raise _NoExport(profile_name)
        key = (bundle_sha256, profile_name, stamp)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        task = self._rendering.get(key)
        if task is None:
            task = asyncio.create_task(self._render_and_keep(key, profile, bundle))
            self._rendering[key] = task
        # shielded: a client that hangs up does not cancel the render others wait for
        return await asyncio.shield(task)

    async def _render_and_keep(
        self, key: tuple[str, str, tuple[int, int, int]], profile: FirmwareProfile, bundle: bytes
    ) -> _Rendered:
        try:
            result = await asyncio.to_thread(self._render, profile, bundle)
        finally:
            del self._rendering[key]
        self.renders += 1
        if len(self._cache) >= self.max_cached:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = result
        return result

    async def respond(
        self,
        request: web.Request,
        bundle: bytes,
        bundle_etag: str,
        profile_name: str,
        counters: Counter[str],
    ) -> web.Response:
        """The answer to an authorized export request for a published bundle."""
        try:
            rendered = await self.rendered(bundle, bundle_etag.strip('"'), profile_name)
        except _NoExport:
            counters["exports.no_export"] += 1
            raise web.HTTPNotFound(
                text=f"profile {profile_name} has no native export: its appliances verify "
                "the signed list (GET /v1/lists/...)\n"
            ) from None
        except ConfigError as e:  # no such profile file, or a broken one: the operator's
            counters["exports.no_profile"] += 1
            log.error("export of profile %r: %s", profile_name, e)
            raise web.HTTPNotFound(text=f"no firmware profile {profile_name!r}\n") from None
        names = sorted(rendered.files)
        wanted = request.query.get("file")
        if wanted is None:
            if len(names) != 1:
                counters["exports.file_required"] += 1
                raise web.HTTPBadRequest(
                    text=f"this export has {len(names)} files: ask for one with ?file=NAME "
                    f"({', '.join(names) or 'none'})\n"
                )
            wanted = names[0]
        found = rendered.files.get(wanted)
        if found is None:
            counters["exports.no_file"] += 1
            shown = wanted[:64].encode("ascii", "backslashreplace").decode()
            raise web.HTTPNotFound(
                text=f"no file {shown!r} in this export (files: {', '.join(names) or 'none'})\n"
            )
        headers = {
            "ETag": found.etag,
            "Cache-Control": "no-cache",
            "X-Stockade-Version": str(rendered.version),
        }
        etags = {
            t.strip().removeprefix("W/")
            for t in request.headers.get("If-None-Match", "").split(",")
        }
        if found.etag in etags or "*" in etags:
            counters["exports.304"] += 1
            return web.Response(status=304, headers=headers)
        counters["exports.200"] += 1
        headers["Content-Type"] = found.content_type
        return web.Response(body=found.data, headers=headers)


class _NoExport(DistributorError):
    """The profile's appliances take the signed list, not a native export."""
