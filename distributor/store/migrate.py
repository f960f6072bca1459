"""Run the store's alembic migrations from the installed package (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine

from .errors import StoreError

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"


def config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    return cfg


def head() -> str:
    rev = ScriptDirectory.from_config(config()).get_current_head()
    if rev is None:  # pragma: no cover - the package ships its migrations
        raise StoreError(f"no migrations found in {SCRIPT_LOCATION}")
    return rev


def current(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, *, write_options: dict[str, Any]) -> None:
    """Bring the schema to head; a no-op (one read) when it is already there.

    The upgrade runs in one write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL: the
    store's advisory lock), so two processes opening a new store at once serialize instead
    of both creating tables.
    """
    target = head()
    if current(engine) == target:
        return
    cfg = config()
    with engine.connect() as conn:
        conn.execution_options(**write_options)
        with conn.begin():
            rev = MigrationContext.configure(conn).get_current_revision()
            if rev == target:
                return
            known = {s.revision for s in ScriptDirectory.from_config(cfg).walk_revisions()}
            if rev is not None and rev not in known:
                raise StoreError(
                    f"database schema is at revision {rev!r}, unknown to this version "
                    f"(head {target!r}): is it from a newer Stockade?"
                )
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as e:
                raise StoreError(f"migration failed: {e}") from e
