"""systemd's readiness protocol (``sd_notify``) without libsystemd: one datagram a message.

systemd passes ``$NOTIFY_SOCKET`` to a ``Type=notify`` service: a path to an ``AF_UNIX``
datagram socket, or an abstract name written with a leading ``@`` (a NUL byte on the wire).
The service sends newline-separated ``KEY=VALUE`` assignments: ``READY=1`` once it serves,
``WATCHDOG=1`` at least every ``$WATCHDOG_USEC`` microseconds (half of it is the usual
period), ``STOPPING=1`` when it begins to stop, ``STATUS=...`` free text for ``systemctl
status``. Without ``$NOTIFY_SOCKET`` (a shell, a test, a container without systemd) every
call is a no-op, so the sensor never depends on systemd being there.

A send that fails is logged once and counted; it never raises: a broken notify socket must not
stop the capture (systemd then restarts the unit on its own watchdog or start timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("stockade.sensor.sdnotify")

#: The kernel's ``sun_path`` is 108 bytes; systemd's own names are far shorter.
MAX_SOCKET_PATH_BYTES = 108
#: systemd reads one datagram of at most this much (NOTIFY_BUFFER_MAX is 4 KiB in systemd 252).
MAX_MESSAGE_BYTES = 4096


class Notifier:
    """Sends state changes to ``$NOTIFY_SOCKET``; a no-op when it is not set."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_seconds = _watchdog_seconds(env)
        self.sent = 0
        self.failed = 0
        self._sock: socket.socket | None = None

    def __repr__(self) -> str:
        return f"Notifier(address={self.address!r}, watchdog_seconds={self.watchdog_seconds})"

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **state: str) -> bool:
        """Send ``KEY=VALUE`` lines (``notify(READY="1", STATUS="capturing")``); True if sent."""
        if self.address is None:
            return False
        message = "\n".join(f"{k}={v}" for k, v in state.items()).encode()
        if len(message) > MAX_MESSAGE_BYTES:
            raise ValueError(f"sd_notify message of {len(message)} bytes over {MAX_MESSAGE_BYTES}")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as e:
            self.failed += 1
            if self.failed == 1:
                log.warning(
                    "sd_notify to %r failed: %s (further failures counted)", self.address, e
                )
            return False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify(READY="1", **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG="1")

    def stopping(self, status: str | None = None) -> bool:
        return self.notify(STOPPING="1", **({"STATUS": status} if status else {}))

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


async def keep_alive(notifier: Notifier, stop: asyncio.Event) -> None:
    """Send ``WATCHDOG=1`` at half of ``$WATCHDOG_USEC`` until ``stop``.

    It runs on the sensor's event loop, which also handles every frame: a loop stuck in a frame
    stops the pings and systemd restarts the unit, which is what the watchdog is for.
    """
    if notifier.watchdog_seconds is None or not notifier.enabled:
        return
    period_seconds = notifier.watchdog_seconds / 2
    while not stop.is_set():
        notifier.watchdog()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=period_seconds)


def _address(value: str) -> str | bytes | None:
    """The socket address for ``sendto``: a path, or abstract bytes starting with NUL."""
    if not value:
        return None
    if value.startswith("@"):
        name = b"\0" + value[1:].encode()
        if len(name) > MAX_SOCKET_PATH_BYTES:
            log.warning("NOTIFY_SOCKET abstract name too long (%d bytes): ignored", len(name))
            return None
        return name
    if not value.startswith("/"):
        log.warning("NOTIFY_SOCKET %r is neither a path nor @abstract: ignored", value)
        return None
    if len(value.encode()) >= MAX_SOCKET_PATH_BYTES:
        log.warning("NOTIFY_SOCKET path too long (%d bytes): ignored", len(value.encode()))
        return None
    return value


def _watchdog_seconds(env: Mapping[str, str]) -> float | None:
    """``$WATCHDOG_USEC`` in seconds, if it is meant for this process (``sd_watchdog_enabled``)."""
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # set for another process (our parent, e.g. a wrapper script)
    return int(usec) / 1_000_000
