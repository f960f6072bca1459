"""``stockade-distributor keys ...`` and ``keygen --root/--online``: key operations.

``register(subparsers)`` adds ``keys``; ``add_keygen_options`` and ``keygen_mode`` extend
the existing ``keygen`` (plain ``keygen --dir D`` is unchanged).

Commands that need a root private key take ``--root-dir`` (the offline directory) explicitly
and read nothing else from it implicitly; ``keys list`` and everything online read only the
online directory (ADR 0003 section 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import keys as keyfiles
from .errors import DistributorError

EXIT_OK = 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from e
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_keygen_options(k: argparse.ArgumentParser) -> None:
    """``keygen --root`` / ``--online``; plain ``keygen --dir D`` stays the all-in-one demo."""
    mode = k.add_mutually_exclusive_group()
    mode.add_argument(
        "--root", action="store_true", help="offline root keys and root v1 (keep DIR offline)"
    )
    mode.add_argument(
        "--online", action="store_true", help="an online signing key only (no keyring yet)"
    )
    k.add_argument("--keys", type=_positive_int, help="with --root: number of root keys (1)")
    k.add_argument("--threshold", type=_positive_int, help="with --root: keys needed to sign (1)")


def keygen_mode(args: argparse.Namespace) -> int | None:
    """Run ``keygen --root``/``--online``; None for the plain ``keygen --dir`` of old."""
    if not (getattr(args, "root", False) or getattr(args, "online", False)):
        if args.keys is not None or args.threshold is not None:
            raise DistributorError("--keys and --threshold go with keygen --root")
        return None
    d = Path(args.dir)
    if args.online:
        if args.keys is not None or args.threshold is not None:
            raise DistributorError("--keys and --threshold go with keygen --root")
        paths = keyfiles.keygen_online(d)
        print(f"online signing key: {paths[keyfiles.SIGNING_KEY]}")
        print("next: keys sign-keyring --root-dir OFFLINE --dir " + str(d))
        return EXIT_OK
    n = args.keys or 1
    paths = keyfiles.keygen_root(d, n=n, threshold=args.threshold or 1)
    for name, path in paths.items():
        if name.endswith(".key"):
            print(f"root key (keep OFFLINE): {path}")
    print(f"root v1, {args.threshold or 1} of {n} (pin it on sensors): {paths[keyfiles.ROOT_FILE]}")
    if keyfiles.ROOT_PUB in paths:
        print(f"root public key (sensors may pin it instead): {paths[keyfiles.ROOT_PUB]}")
    return EXIT_OK


def _print_keyring(kr: Any, what: str) -> None:
    print(f"{what}: keyring version {kr.version}, expires {kr.expires.isoformat()}")
    for e in kr.keys:
        print(f"  key {e.keyid[:16]}  tenants {','.join(e.tenants)}")
    for kid in kr.revoked:
        print(f"  revoked {kid[:16]}")


def cmd_sign_keyring(args: argparse.Namespace) -> int:
    kr = keyfiles.sign_keyring_dir(Path(args.root_dir), Path(args.dir))
    _print_keyring(kr, f"signed {Path(args.dir) / keyfiles.KEYRING}")
    return EXIT_OK


def cmd_rotate(args: argparse.Namespace) -> int:
    old, new, kr = keyfiles.rotate_online(
        Path(args.root_dir), Path(args.dir), tenant=args.tenant, revoke_old=args.revoke_old
    )
    who = f"tenant {args.tenant}" if args.tenant else "online"
    print(f"{who} key rotated: {old[:16] if old else '(none)'} -> {new[:16]}")
    _print_keyring(kr, "signed")
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    kr = keyfiles.revoke_keys(Path(args.root_dir), Path(args.dir), tuple(args.keyid))
    _print_keyring(kr, "signed")
    return EXIT_OK


def cmd_rotate_root(args: argparse.Namespace) -> int:
    root_dir = Path(args.root_dir)
    role = keyfiles.rotate_root(root_dir, n=args.keys, threshold=args.threshold)
    print(
        f"root v{role.version}: {role.threshold} of {len(role.keys)} new keys; "
        f"old keys moved to {root_dir / keyfiles.RETIRED_DIR}/ (destroy them)"
    )
    if args.publish:
        for path in keyfiles.publish_roots(root_dir, Path(args.publish)):
            print(f"published {path}")
    print("next: keys sign-keyring --root-dir " + str(root_dir) + " --dir ONLINE")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    doc = keyfiles.describe(Path(args.dir))
    if args.json:
        print(json.dumps(doc, indent=2))
        return EXIT_OK
    root = doc["root"]
    if isinstance(root, dict):
        print(
            f"root v{root['version']}: {root['threshold']} of {len(root['keys'])} keys, "
            f"expires {root['expires']}"
        )
    kr = doc["keyring"]
    if not isinstance(kr, dict):
        print(f"{doc['directory']}: no keyring (run keys sign-keyring)")
    else:
        print(f"keyring v{kr['version']}, expires {kr['expires']}")
        print(f"{'KEY ID':<18}{'TENANTS':<24}FILE")
        for k in kr["keys"]:
            print(f"{k['keyid'][:16]:<18}{','.join(k['tenants']):<24}{k['file'] or '-'}")
        for kid in kr["revoked"]:
            print(f"{kid[:16]:<18}{'(revoked)':<24}-")
    unlisted = doc["unlisted_key_files"]
    for path in unlisted if isinstance(unlisted, list) else []:
        print(f"warning: {path} is not in the keyring (run keys sign-keyring)")
    return EXIT_OK


def register(sub: Any) -> None:
    """Add ``keys ...`` to the ``stockade-distributor`` subcommands."""
    k = sub.add_parser("keys", help="sign keyrings, rotate and revoke keys, rotate the root")
    ks = k.add_subparsers(dest="keys_command", required=True)

    def root_dir(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root-dir", required=True, help="OFFLINE root directory (root keys)")

    s = ks.add_parser("sign-keyring", help="keyring version+1 of the online keys (needs root)")
    root_dir(s)
    s.add_argument("--dir", required=True, help="online key directory")
    s.set_defaults(func=cmd_sign_keyring)

    r = ks.add_parser("rotate", help="new online (or tenant) key and a keyring for it")
    root_dir(r)
    r.add_argument("--dir", required=True, help="online key directory")
    r.add_argument("--tenant", help="rotate (or create) this tenant's own key")
    r.add_argument("--revoke-old", action="store_true", help="revoke the replaced key")
    r.set_defaults(func=cmd_rotate)

    v = ks.add_parser("revoke", help="revoke online keys by id (full or 8+ digit prefix)")
    root_dir(v)
    v.add_argument("--dir", required=True, help="online key directory")
    v.add_argument("keyid", nargs="+")
    v.set_defaults(func=cmd_revoke)

    t = ks.add_parser("rotate-root", help="root v+1 with new keys, signed by old and new")
    root_dir(t)
    t.add_argument("--keys", type=_positive_int, help="number of new root keys (as now)")
    t.add_argument("--threshold", type=_positive_int, help="keys needed to sign (as now)")
    t.add_argument("--publish", metavar="OUT", help="copy the roots to OUT/roots/")
    t.set_defaults(func=cmd_rotate_root)

    li = ks.add_parser("list", help="the keyring, key files and root of an online directory")
    li.add_argument("--dir", required=True, help="online key directory")
    li.add_argument("--json", action="store_true")
    li.set_defaults(func=cmd_list)
