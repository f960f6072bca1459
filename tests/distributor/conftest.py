"""Helpers for the feed tests (build a validated FeedConfig, write a feed file) and the store
backends: ``store_url`` runs a test on SQLite and on a throwaway PostgreSQL (``tests.pg``)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from distributor.config import FeedConfig
from distributor.feeds import FORMATS
from tests.pg import Cluster, postgres_cluster, postgres_url

__all__ = ["postgres_cluster", "postgres_url"]  # fixtures, re-exported for pytest

#: The store's backends; every store test runs on each.
BACKENDS = ("sqlite", "postgresql")

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


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty store: a SQLite file in ``tmp_path``, or a database of its own on the
    session's PostgreSQL cluster (started on first use).
    """
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def new_store_url(
    store_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[], str]:
    """Another new, empty store on the backend of ``store_url``, at each call."""
    names = itertools.count(1)

    def make() -> str:
        if store_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / f'other{next(names)}.db'}"
        cluster: Cluster = request.getfixturevalue("postgres_cluster")
        return cluster.url(schema=cluster.create_schema())

    return make
