"""Helpers for the feed tests: build a validated FeedConfig, write a feed file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from distributor.config import FeedConfig
from distributor.feeds import FORMATS

MakeFeed = Callable[..., FeedConfig]


def make_feed(
    fmt: str, *, internal: bool = False, name: str = "test-feed", **options: Any
) -> FeedConfig:
    """A feed of format ``fmt`` whose options went through the format's own validation."""
    resolved = FORMATS[fmt].resolve_options(options)
    return FeedConfig(
        name=name,
        format=fmt,
        source="unused",
        confidence=70,
        category="malware",
        internal=internal,
        options=MappingProxyType(resolved),
    )


@pytest.fixture
def feed() -> MakeFeed:
    return make_feed


@pytest.fixture
def write(tmp_path: Path) -> Callable[[bytes | str], Path]:
    def _write(content: bytes | str, name: str = "feed.txt") -> Path:
        path = tmp_path / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    return _write
