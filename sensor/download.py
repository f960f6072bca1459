"""Bounded downloads: what every HTTP reader of the sensor (list updater, pointer updater,
root chain) does with an answer's body, and how it words a failure.

The limit holds while the body is read, not after: an endless answer is cut off at
``max_bytes + 1`` bytes whatever its Content-Length says (TUF's endless-data attack).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp

from blocklist.errors import TooLarge

CHUNK_BYTES = 64 * 1024
#: Error texts can quote what a hostile server sent (a whole bogus status line); keep the
#: result, and so the log line, short.
MAX_REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class Download:
    """One GET: its status, the body read (empty unless 200), its ETag and content type."""

    status: int
    body: bytes
    etag: str | None
    content_type: str = ""


async def download(
    session: aiohttp.ClientSession,
    url: str,
    *,
    max_bytes: int,
    timeout: aiohttp.ClientTimeout,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> Download:
    """GET ``url``, reading at most ``max_bytes`` of a 200's body (``TooLarge`` past that)."""
    async with session.get(
        url, headers=dict(headers or {}), params=dict(params or {}), timeout=timeout
    ) as resp:
        if resp.status != 200:
            return Download(resp.status, b"", resp.headers.get("ETag"))
        declared = resp.content_length
        if declared is not None and declared > max_bytes:
            raise TooLarge(f"{url}: server announces {declared} bytes, limit is {max_bytes}")
        body = bytearray()
        async for chunk in resp.content.iter_chunked(CHUNK_BYTES):
            body += chunk
            if len(body) > max_bytes:
                raise TooLarge(
                    f"{url}: download passed {max_bytes} bytes; stopped reading (endless data)"
                )
        return Download(200, bytes(body), resp.headers.get("ETag"), resp.content_type)


def describe(e: BaseException) -> str:
    """An error as one short line: its class and its text, whitespace folded, bounded."""
    text = " ".join(str(e).split())
    if len(text) > MAX_REASON_CHARS:
        text = text[:MAX_REASON_CHARS] + "..."
    return f"{type(e).__name__}: {text}"
