"""Trust as a state machine with no I/O: what a sensor accepts, and in which order it checks.

``TrustedListState.update(bundle_bytes)`` applies these rules, each refusal with its own
exception, and changes nothing unless every rule passes (the last good list stays):

 1. Size: the bundle is no larger than ``policy.max_bundle_bytes``            -> TooLarge
 2. Shape: bundle, envelopes and keyring decode strictly                   -> MalformedArtifact
 3. Keyring: signed by a threshold of the NEWEST root's keys    -> Missing/Bad/UnknownKey
    (a keyring signed only by an older root is refused once a new root is held)
 3b. Root: the newest root held is not expired (a pinned root.pub never expires) -> RootExpired
 4. Keyring: version not lower than the one held (equal only if identical)        -> Rollback
 5. Keyring: not expired                                                          -> Expired
 6. List: signed by a keyring key allowed for the policy's tenant,
    none of them revoked                                  -> RevokedKey/UnknownKey/BadSignature
 7. List: payload decodes strictly (parsed only after it verified)         -> MalformedArtifact
 8. List: header key id is a key that signed it                                -> BadSignature
 9. List: made for this tenant and profile                          -> WrongTenant/WrongProfile
10. List: not expired                                                             -> Expired
11. List: version newer than the one held                                        -> Rollback
12. List: version jump within ``policy.max_version_jump``                     -> FastForward

The root itself is either pinned keys (``root.pub``: one key, threshold 1, version 0 for the
chain) or a signed ``RootRole``. ``update_root(envelope_bytes)`` follows a root rotation by
TUF's rules (``blocklist.root.verify_successor``: version exactly held + 1, signed by a
threshold of the held root's keys AND of its own); an expired intermediate root may be walked
past, only the newest must be unexpired (rule 3b).

``is_stale()`` raises the stale alarm when the held list, its keyring or the newest root has
expired, or when the list is older than ``policy.stale_after_seconds`` (a ceiling that fires
before expiry: a distributor that keeps serving an old, unexpired list is a freeze too).

Expiry rules use an injected clock so tests can travel in time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .artifact import BlockList, Header, MiB
from .compact import CompactList
from .errors import (
    BadSignature,
    Expired,
    FastForward,
    ListRejected,
    MissingSignature,
    Rollback,
    RootExpired,
    TooLarge,
    UnknownKey,
    WrongProfile,
    WrongTenant,
)
from .root import RootRole, verify_self_signed, verify_successor
from .signing import (
    PAYLOAD_KEYRING,
    PAYLOAD_LIST,
    PAYLOAD_LIST_DIGEST,
    Bundle,
    Envelope,
    Keyring,
    ListDigest,
    PublicKey,
    now_utc,
)


@dataclass(frozen=True, slots=True)
class TrustPolicy:
    """What this holder accepts. ``None`` for tenant/profile means 'any' (inspection only)."""

    tenant: str | None = None
    profile: str | None = None
    max_bundle_bytes: int = 64 * MiB
    max_version_jump: int | None = None
    #: stale alarm once the held list was created longer ago than this (None: only expiry)
    stale_after_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_bundle_bytes < 1:
            raise ValueError("max_bundle_bytes must be positive")
        if self.max_version_jump is not None and self.max_version_jump < 1:
            raise ValueError("max_version_jump must be >= 1")
        if self.stale_after_seconds is not None and not (
            math.isfinite(self.stale_after_seconds) and self.stale_after_seconds > 0
        ):
            raise ValueError("stale_after_seconds must be positive and finite")


@dataclass(frozen=True, slots=True)
class Verified:
    """A list that passed every rule, with the keyring that vouched for it.

    ``compact`` holds it compactly (rows decoded when read: what a sensor enforces);
    ``blocklist`` decodes and checks every row once, for tools and tests, and raises
    ``MalformedArtifact`` if any row is bad.
    """

    compact: CompactList
    keyring: Keyring
    signed_by: tuple[str, ...]
    size: int
    _full: list[BlockList] = field(default_factory=list, compare=False, repr=False)

    @property
    def header(self) -> Header:
        return self.compact.header

    @property
    def blocklist(self) -> BlockList:
        if not self._full:
            self._full.append(self.compact.to_blocklist())
        return self._full[0]


@dataclass(frozen=True, slots=True)
class _Anchor:
    """One root the state trusts (or trusted): its keys, threshold and chain version."""

    keys: dict[str, PublicKey]
    threshold: int
    version: int
    role: RootRole | None  # None: pinned keys (root.pub), which never expire


class TrustedListState:
    """The sensor's trusted state: the newest root, the held keyring and list versions."""

    def __init__(
        self,
        root_keys: Sequence[PublicKey] = (),
        policy: TrustPolicy | None = None,
        *,
        root_threshold: int = 1,
        clock: Callable[[], datetime] = now_utc,
        root: RootRole | None = None,
    ) -> None:
        if root is not None:
            if root_keys:
                raise ValueError("give root keys or a root role, not both")
            anchor = _Anchor(root.by_id, root.threshold, root.version, root)
        else:
            if not root_keys:
                raise ValueError("no root keys: an empty trust set must never verify anything")
            # Count distinct keys: the same key pinned twice must not make 2-of-2 look possible.
            keys = {k.keyid: k for k in root_keys}
            if not 1 <= root_threshold <= len(keys):
                raise ValueError(
                    f"root threshold {root_threshold} impossible with {len(keys)} distinct keys"
                )
            anchor = _Anchor(keys, root_threshold, 0, None)
        #: every root accepted in this process, oldest first; the last one is in force
        self._anchors: list[_Anchor] = [anchor]
        self.policy = policy or TrustPolicy()
        self.clock = clock
        self.keyring: Keyring | None = None
        self._keyring_bytes: bytes | None = None
        self.current: Verified | None = None
        #: A version known to be held elsewhere (e.g. ``verify --held-version``): rule 11 and
        #: 12 compare against the larger of this and the held list's version.
        self.floor_version = 0

    @classmethod
    def from_root(
        cls,
        root: RootRole,
        policy: TrustPolicy | None = None,
        *,
        clock: Callable[[], datetime] = now_utc,
    ) -> TrustedListState:
        return cls(policy=policy, clock=clock, root=root)

    @classmethod
    def from_root_file(
        cls,
        data: bytes,
        policy: TrustPolicy | None = None,
        *,
        clock: Callable[[], datetime] = now_utc,
    ) -> TrustedListState:
        """Pin a signed root file the operator installed, checked against its own keys."""
        return cls.from_root(verify_self_signed(data), policy, clock=clock)

    @property
    def root(self) -> dict[str, PublicKey]:
        """The newest root's keys: what a keyring must be signed by."""
        return self._anchors[-1].keys

    @property
    def root_threshold(self) -> int:
        return self._anchors[-1].threshold

    @property
    def root_version(self) -> int:
        """The newest root's version; 0 for a pinned ``root.pub`` (root v1 must be signed by it)."""
        return self._anchors[-1].version

    @property
    def root_role(self) -> RootRole | None:
        return self._anchors[-1].role

    def root_expired(self) -> bool:
        role = self.root_role
        return role is not None and role.is_expired(self.clock())

    def update_root(self, data: bytes) -> RootRole:
        """Accept root ``root_version + 1`` (``blocklist.root`` rules); nothing changes if refused.

        The new root may already be expired: the next one may be on its way, and only the
        newest root must be unexpired for a keyring to be accepted (rule 3b).
        """
        held = self._anchors[-1]
        role = verify_successor(held.keys, held.threshold, held.version, data)
        self._anchors.append(_Anchor(role.by_id, role.threshold, role.version, role))
        return role

    def adopt_root(self, data: bytes) -> RootRole:
        """Trust a root this sensor saved itself after ``update_root`` (a restart).

        Checked against its own keys, and never older than the root in force. Lists whose
        keyring an older root signed are still restored (``restore``) when that root is known.
        """
        role = verify_self_signed(data)
        if role.version < self.root_version:
            raise Rollback(
                f"saved root version {role.version} is older than the pinned {self.root_version}"
            )
        if role.version > self.root_version:
            self._anchors.append(_Anchor(role.by_id, role.threshold, role.version, role))
        elif role != self.root_role:
            raise Rollback(f"saved root version {role.version} differs from the pinned one")
        return role

    @property
    def held_version(self) -> int:
        held = self.current.header.version if self.current else 0
        return max(held, self.floor_version)

    def check(self, data: bytes) -> Verified:
        """Run every rule on ``data`` without changing the held state."""
        return self._verify(data)

    def update(self, data: bytes) -> Verified:
        """Verify ``data`` and, only if every rule passes, make it the held list."""
        return self.commit(self._verify(data))

    def commit(self, verified: Verified) -> Verified:
        """Make a list that ``check`` passed the held one, once the caller has saved it.

        Check, save, then commit: a list that could not be saved is never held, so the
        state, the list enforced and the copy on disk cannot disagree. Rule 11 is checked
        again in case another list was committed in between.
        """
        held = self.held_version
        version = verified.header.version
        if held and version <= held:
            raise Rollback(f"list version {version} is not newer than the held version {held}")
        self.keyring = verified.keyring
        self._keyring_bytes = verified.keyring.to_bytes()
        self.current = verified
        return verified

    def keyring_signers(
        self, envelope: Envelope, *, allow_expired: bool = False, any_known_root: bool = False
    ) -> tuple[Keyring, dict[str, PublicKey]]:
        """Rules 3 to 6 for a keyring envelope (a bundle's, a delta bundle's or a pointer's):
        the keyring, and the keys that may sign for the policy's tenant (any tenant's when
        the policy names none)."""
        pol = self.policy
        now = self.clock()
        # 3. keyring signed by the newest root. Restoring the sensor's own saved list (and
        # only then) accepts an older root it walked past: that list was accepted under it.
        anchors = self._anchors[::-1] if any_known_root else self._anchors[-1:]
        first_error: ListRejected | None = None
        for anchor in anchors:
            try:
                kr_payload, _ = envelope.verified_payload(
                    PAYLOAD_KEYRING, anchor.keys, threshold=anchor.threshold, what="keyring"
                )
                break
            except ListRejected as e:
                first_error = first_error or e
        else:
            assert first_error is not None
            raise first_error
        # 3b. the newest root is not expired
        role = self.root_role
        if role is not None and role.is_expired(now) and not allow_expired:
            raise RootExpired(
                f"root version {role.version} expired at {role.expires.isoformat()}; "
                "no keyring is accepted until a newer root is fetched"
            )
        keyring = Keyring.from_bytes(kr_payload)
        # 4. keyring rollback
        if self.keyring is not None:
            if keyring.version < self.keyring.version:
                raise Rollback(
                    f"keyring version {keyring.version} is older than the held {self.keyring.version}"
                )
            # Compare content, not the signed bytes: another encoder's bytes of the same
            # keyring must not be taken for a different keyring of the same version.
            if (
                keyring.version == self.keyring.version
                and keyring.to_bytes() != self._keyring_bytes
            ):
                raise Rollback(
                    f"keyring version {keyring.version} differs from the held keyring of the same version"
                )
        # 5. keyring expiry
        if keyring.expires <= now and not allow_expired:
            raise Expired(
                f"keyring version {keyring.version} expired at {keyring.expires.isoformat()}"
            )
        # 6. list signature by an allowed online key
        tenant_hint = pol.tenant
        trusted = (
            keyring.trusted_for(tenant_hint)
            if tenant_hint is not None
            else {k.keyid: k.key for k in keyring.keys if k.keyid not in keyring.revoked}
        )
        if not trusted:
            raise UnknownKey(
                f"keyring version {keyring.version} lists no key allowed to sign for {tenant_hint!r}"
            )
        return keyring, trusted

    def _verify(
        self, data: bytes, *, allow_expired: bool = False, any_known_root: bool = False
    ) -> Verified:
        pol = self.policy
        now = self.clock()
        # 1. size before any parsing
        if len(data) > pol.max_bundle_bytes:
            raise TooLarge(
                f"list is {len(data)} bytes, this sensor's limit is {pol.max_bundle_bytes}"
            )
        # 2. shape
        bundle = Bundle.from_bytes(data)
        keyring, trusted = self.keyring_signers(
            bundle.keyring, allow_expired=allow_expired, any_known_root=any_known_root
        )
        tenant_hint = pol.tenant
        payload: bytes | memoryview
        if bundle.detached is None:  # bundle 1: the list itself is signed
            payload, signed_by = bundle.blocklist.verified_payload(
                PAYLOAD_LIST,
                trusted,
                threshold=keyring.threshold,
                revoked=keyring.revoked,
                what="list",
            )
        else:  # bundle 2: its digest is signed; the list must be exactly what it names
            signed, signed_by = bundle.blocklist.verified_payload(
                PAYLOAD_LIST_DIGEST,
                trusted,
                threshold=keyring.threshold,
                revoked=keyring.revoked,
                what="list",
            )
            if not ListDigest.from_bytes(signed).matches(bundle.detached):
                raise BadSignature(
                    "list: its bytes do not match the signed digest (tampered or corrupt)"
                )
            payload = bundle.detached
        # 7. parse only what verified
        held_list = CompactList.from_bytes(payload, max_bytes=pol.max_bundle_bytes)
        h = held_list.header
        # 8. the header names a key that signed it
        if h.key_id not in signed_by:
            raise BadSignature(f"list header names key {h.key_id[:16]}, which did not sign it")
        if tenant_hint is None:
            entry = keyring.entry(h.key_id)
            if entry is None or not entry.may_sign_for(h.tenant):
                raise MissingSignature(
                    f"key {h.key_id[:16]} may not sign lists of tenant {h.tenant!r}"
                )
        # 9. mix-and-match
        if pol.tenant is not None and h.tenant != pol.tenant:
            raise WrongTenant(
                f"list is for tenant {h.tenant!r}, this sensor is tenant {pol.tenant!r}"
            )
        if pol.profile is not None and h.profile != pol.profile:
            raise WrongProfile(
                f"list is for profile {h.profile!r}, this sensor is profile {pol.profile!r}"
            )
        # 10. freeze
        if h.expires <= now and not allow_expired:
            raise Expired(
                f"list version {h.version} expired at {h.expires.isoformat()}; keeping the last good list"
            )
        # 11. rollback
        held = self.held_version
        if held and h.version <= held:
            raise Rollback(f"list version {h.version} is not newer than the held version {held}")
        # 12. fast-forward
        if pol.max_version_jump is not None and held and h.version - held > pol.max_version_jump:
            raise FastForward(
                f"list version {h.version} jumps {h.version - held} past the held {held} "
                f"(limit {pol.max_version_jump})"
            )
        return Verified(held_list, keyring, signed_by, len(data))

    def restore(self, data: bytes) -> Verified:
        """Re-load the list this sensor saved to disk itself, e.g. after a restart.

        Every rule runs again except expiry: an expired saved list is still enforced
        (freeze beats nothing) and the caller raises the stale alarm (``is_stale``). Its
        keyring may be signed by any root the state knows, not only the newest: the list was
        accepted under it before a newer root arrived (ADR 0003, "Deviation").
        """
        verified = self._verify(data, allow_expired=True, any_known_root=True)
        self.keyring = verified.keyring
        self._keyring_bytes = verified.keyring.to_bytes()
        self.current = verified
        return verified

    def is_stale(self) -> bool:
        """True when the held list, its keyring or the newest root has expired, or the list
        is older than ``policy.stale_after_seconds``: raise the stale alarm."""
        if self.current is None:
            return True
        now = self.clock()
        if self.current.header.expires <= now or self.current.keyring.expires <= now:
            return True
        if self.root_expired():
            return True
        ceiling = self.policy.stale_after_seconds
        return ceiling is not None and now - self.current.header.created > timedelta(
            seconds=ceiling
        )
