"""The store's own error: the database could not be opened, migrated or written."""

from __future__ import annotations

from ..errors import DistributorError


class StoreError(DistributorError):
    """A store that cannot be used as asked: not a database, newer schema, I/O failure.

    The message names the database (URL without password) and what went wrong.
    """
