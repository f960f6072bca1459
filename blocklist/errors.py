"""One exception tree for the contract, split by whose fault it is.

``InvalidIndicator`` is a bad value (a feed's or a packet's fault), ``MalformedArtifact`` is
bytes that are not a list of ours, ``ListRejected`` is a well-formed list that trust refuses.
Every message says what was wrong and where.
"""

from __future__ import annotations


class BlocklistError(Exception):
    """Root of every error raised by the ``blocklist`` package."""


# --- values -----------------------------------------------------------------------------


class InvalidIndicator(BlocklistError, ValueError):
    """A domain, URL, IP or CIDR that cannot be normalized or must not be a block entry."""

    def __init__(self, value: str, reason: str) -> None:
        self.value = value
        self.reason = reason
        super().__init__(f"{reason}: {value[:200]!r}")


# --- artifacts --------------------------------------------------------------------------


class MalformedArtifact(BlocklistError, ValueError):
    """Bytes that do not decode to a valid list, keyring or envelope."""


class UnsupportedFormat(MalformedArtifact):
    """A format version or payload type this code does not know."""


class ArtifactTooLarge(MalformedArtifact):
    """Input larger than the limit given to the decoder."""


# --- trust ------------------------------------------------------------------------------


class ListRejected(BlocklistError):
    """A list (or keyring) that verification refuses; the last good state stays in force."""


class MissingSignature(ListRejected):
    """No signature at all, or none by a key that may sign this payload."""


class BadSignature(ListRejected):
    """A signature that does not verify over the exact signed bytes."""


class UnknownKey(ListRejected):
    """Signed only by keys the trusted keyring does not list."""


class RevokedKey(ListRejected):
    """Signed by a key the trusted keyring has revoked."""


class Rollback(ListRejected):
    """A version not newer than the one already held."""


class FastForward(ListRejected):
    """A version jump larger than the configured bound (a forged far-future version)."""


class Expired(ListRejected):
    """Past its expiry: the holder keeps its last good list and raises a stale alarm."""


class RootExpired(Expired):
    """The newest root held has expired: no keyring is accepted until a newer root arrives."""


class WrongTenant(ListRejected):
    """Made for another tenant (mix-and-match)."""


class WrongProfile(ListRejected):
    """Made for another firmware profile (mix-and-match)."""


class TooLarge(ListRejected):
    """Larger than the holder's configured limit (endless data)."""


class WrongBase(ListRejected):
    """A delta made from another list than the one held (mix-and-match): ask for the full list."""


class DeltaMismatch(ListRejected):
    """A delta whose rebuilt list is not the target it names (tampered or corrupt)."""
