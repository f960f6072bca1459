"""Argument types the distributor's commands share (``argparse`` ``type=`` callables)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

MAX_HOURS = 24 * 366


def hours(text: str) -> float:
    """A number of hours, more than 0 and at most a (leap) year."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}") from None
    if not math.isfinite(value) or not 0 < value <= MAX_HOURS:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_HOURS}")
    return value


DEFAULT_STATE = "stockade-state"
STORE_FILE = "stockade.db"


def store_url(args: argparse.Namespace) -> str:
    """``--store URL``, or the SQLite file in ``--state`` (created if missing): the one rule
    every command that opens the store follows."""
    if args.store:
        return str(args.store)
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(state / STORE_FILE).resolve()}"
