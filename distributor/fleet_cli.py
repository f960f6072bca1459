"""``stockade-distributor tenants|appliances|lists|admin-token``: the fleet from a shell.

Tables for people (aligned columns), ``--json`` for scripts. Bad input (a name, an unknown
tenant, a duplicate) exits 2 with one line saying what was wrong; a store that cannot be
used exits 1. ``appliances add`` and ``appliances rotate-token`` print the token on stdout,
once: it is stored only as its SHA-256 and no command shows it again.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .admin import write_admin_token
from .cliargs import DEFAULT_STATE, hours, store_url
from .condense.settings import CondenseSettings
from .errors import ConfigError
from .fleet import (
    DEFAULT_STALE_AFTER,
    ApplianceStatus,
    Fleet,
    FleetError,
    Tenant,
    UnknownTenant,
    published_lists,
)
from .indicators import Indicator
from .tenant_inputs import apply_tenant

EXIT_OK = 0
EXIT_USAGE = 2
PROG = "stockade-distributor"

log = logging.getLogger("stockade.distributor.fleet")

Command = Callable[[argparse.Namespace], int]


def _bad_input_exits_2(fn: Command) -> Command:
    """The caller's mistake: one line and exit 2 (store failures reach ``main``: exit 1)."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (FleetError, ConfigError) as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _open(args: argparse.Namespace) -> Fleet:
    return Fleet.open(store_url(args))


def _table(head: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in r] for r in [head, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for r in cells:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _json(doc: Any) -> None:
    print(json.dumps(doc, indent=2))


def _when(when: datetime | None) -> str:
    return "-" if when is None else when.strftime("%Y-%m-%d %H:%M:%SZ")


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _entries(given: list[str] | None, files: list[str] | None) -> list[str] | None:
    """Entries from the command line and from files (one a line, ``#`` comments)."""
    if given is None and files is None:
        return None
    out = list(given or [])
    for name in files or []:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read entries: {e}", file=name) from e
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                out.append(line)
    return out


# --- tenants --------------------------------------------------------------------------


def _tenant_lines(t: Tenant) -> None:
    print(f"tenant         {t.name}")
    print(f"created        {_when(t.created)}")
    print(f"appliances     {t.appliances}")
    print(f"subscriptions  {', '.join(t.subscriptions) or '-'}")
    for label, entries in (("allow", t.allow), ("deny", t.deny)):
        print(f"{label:<14} {len(entries)} entries")
        for e in entries:
            print(f"  {e}")


@_bad_input_exits_2
def cmd_tenants_add(args: argparse.Namespace) -> int:
    with _open(args) as fleet:
        t = fleet.add_tenant(
            args.name,
            allow=_entries(args.allow, args.allow_file) or [],
            deny=_entries(args.deny, args.deny_file) or [],
            subscriptions=args.subscribe or [],
        )
    if args.json:
        _json(t.to_dict())
    else:
        print(f"added tenant {t.name}")
    return EXIT_OK


@_bad_input_exits_2
def cmd_tenants_list(args: argparse.Namespace) -> int:
    with _open(args) as fleet:
        got = fleet.list_tenants()
    if args.json:
        _json([t.to_dict() for t in got])
        return EXIT_OK
    rows = [
        (
            t.name,
            t.appliances,
            len(t.allow),
            len(t.deny),
            ",".join(t.subscriptions) or "-",
            _when(t.created),
        )
        for t in got
    ]
    _table(("NAME", "APPLIANCES", "ALLOW", "DENY", "SUBSCRIPTIONS", "CREATED"), rows)
    return EXIT_OK


@_bad_input_exits_2
def cmd_tenants_show(args: argparse.Namespace) -> int:
    with _open(args) as fleet:
        t = fleet.show_tenant(args.name)
    if args.json:
        _json(t.to_dict())
    else:
        _tenant_lines(t)
    return EXIT_OK


@_bad_input_exits_2
def cmd_tenants_set(args: argparse.Namespace) -> int:
    clear = set(args.clear or [])
    allow = _entries(args.allow, args.allow_file)
    deny = _entries(args.deny, args.deny_file)
    subs = args.subscribe
    for what, given in (("allow", allow), ("deny", deny), ("subscriptions", subs)):
        if what in clear and given:
            raise ConfigError(f"--clear {what} and new {what} entries at once: give one")
    if allow is None and deny is None and subs is None and not clear:
        raise ConfigError("nothing to set: give --allow, --deny, --subscribe or --clear")
    with _open(args) as fleet:
        t = fleet.set_tenant(
            args.name,
            allow=[] if "allow" in clear else allow,
            deny=[] if "deny" in clear else deny,
            subscriptions=[] if "subscriptions" in clear else subs,
        )
    if args.json:
        _json(t.to_dict())
    else:
        print(
            f"tenant {t.name}: {len(t.allow)} allow, {len(t.deny)} deny, "
            f"subscriptions {', '.join(t.subscriptions) or '-'}"
        )
    return EXIT_OK


@_bad_input_exits_2
def cmd_tenants_remove(args: argparse.Namespace) -> int:
    with _open(args) as fleet:
        n = fleet.remove_tenant(args.name, force=args.force)
    if args.json:
        _json({"removed": args.name, "appliances_removed": n})
    else:
        print(f"removed tenant {args.name}" + (f" and {n} appliance(s)" if n else ""))
    return EXIT_OK


# --- appliances -----------------------------------------------------------------------


def _stale_after(text: str) -> timedelta:
    return timedelta(hours=hours(text))


def _status_rows(got: Sequence[ApplianceStatus]) -> list[tuple[object, ...]]:
    now = datetime.now(UTC)
    return [
        (
            s.appliance.tenant,
            s.appliance.name,
            s.appliance.profile,
            "revoked" if s.appliance.revoked else "active",
            _age(
                None
                if s.appliance.last_seen is None
                else (now - s.appliance.last_seen).total_seconds()
            ),
            "-" if s.appliance.version_held is None else s.appliance.version_held,
            "-" if s.newest_version is None else s.newest_version,
            "STALE" if s.stale else "ok",
            (s.appliance.health or "-")[:40],
        )
        for s in got
    ]


_STATUS_HEAD = ("TENANT", "NAME", "PROFILE", "STATE", "SEEN", "HELD", "NEWEST", "STATUS", "HEALTH")


def _status(args: argparse.Namespace, fleet: Fleet, tenant: str | None) -> list[ApplianceStatus]:
    return fleet.status(
        Path(args.lists) if args.lists else None, tenant=tenant, stale_after=args.stale_hours
    )


@_bad_input_exits_2
def cmd_appliances_add(args: argparse.Namespace) -> int:
    with _open(args) as fleet:
        record, token = fleet.register_appliance(
            args.tenant, args.name, args.profile, push_url=args.push_url
        )
    if args.json:
        _json({**record.to_dict(), "token": token})
    else:
        print(token)
    print(
        f"appliance {record.name} of tenant {record.tenant} may fetch {record.profile}; "
        "the token is shown once and stored only as its SHA-256",
        file=sys.stderr,
    )
    return EXIT_OK


@_bad_input_exits_2
def cmd_appliances_list(args: argparse.Namespace) -> int:
    with _open(args) as fleet:
        got = _status(args, fleet, args.tenant)
    if args.json:
        _json([s.to_dict() for s in got])
    else:
        _table(_STATUS_HEAD, _status_rows(got))
    return EXIT_OK


@_bad_input_exits_2
def cmd_appliances_show(args: argparse.Namespace) -> int:
    with _open(args) as fleet:
        fleet.show_appliance(args.tenant, args.name)  # UnknownAppliance when it is not there
        got = [s for s in _status(args, fleet, args.tenant) if s.appliance.name == args.name]
    s = got[0]
    if args.json:
        _json(s.to_dict())
        return EXIT_OK
    a = s.appliance
    for label, value in (
        ("appliance", f"{a.tenant}/{a.name}"),
        ("profile", a.profile),
        ("created", _when(a.created)),
        ("revoked", _when(a.revoked_at)),
        ("push url", a.push_url or "-"),
        ("last seen", _when(a.last_seen)),
        ("version held", "-" if a.version_held is None else a.version_held),
        ("newest", "-" if s.newest_version is None else s.newest_version),
        ("status", "STALE: " + "; ".join(s.reasons) if s.stale else "ok"),
        ("health", a.health or "-"),
        ("last error", a.last_error or "-"),
    ):
        print(f"{label:<13} {value}")
    return EXIT_OK


@_bad_input_exits_2
def cmd_appliances_revoke(args: argparse.Namespace) -> int:
    with _open(args) as fleet:
        fleet.revoke_appliance(args.tenant, args.name)
        a = fleet.show_appliance(args.tenant, args.name)
    if args.json:
        _json(a.to_dict())
    else:
        print(f"revoked appliance {a.name} of tenant {a.tenant} ({_when(a.revoked_at)})")
    return EXIT_OK


@_bad_input_exits_2
def cmd_appliances_rotate(args: argparse.Namespace) -> int:
    with _open(args) as fleet:
        token = fleet.rotate_token(args.tenant, args.name)
    if args.json:
        _json({"tenant": args.tenant, "name": args.name, "token": token})
    else:
        print(token)
    print(
        f"new token for appliance {args.name} of tenant {args.tenant}; the old one no longer "
        "works (a running server notices within seconds); shown once",
        file=sys.stderr,
    )
    return EXIT_OK


# --- lists and the admin token ------------------------------------------------------------


@_bad_input_exits_2
def cmd_lists(args: argparse.Namespace) -> int:
    lists = Path(args.lists)
    if not lists.is_dir():
        raise ConfigError("not a directory (give the output directory of build)", file=lists)
    got = published_lists(lists, args.tenant)
    now = datetime.now(UTC)
    if args.json:
        _json([p.to_dict(now) for p in got])
        return EXIT_OK
    rows = [
        (
            p.tenant,
            p.profile,
            p.newest,
            len(p.versions),
            _when(p.published),
            _age(None if p.published is None else (now - p.published).total_seconds()),
        )
        for p in got
    ]
    _table(("TENANT", "PROFILE", "NEWEST", "VERSIONS", "PUBLISHED", "AGE"), rows)
    return EXIT_OK


@_bad_input_exits_2
def cmd_admin_token(args: argparse.Namespace) -> int:
    path = Path(args.file)
    token = write_admin_token(path, force=args.force)
    print(token)
    print(
        f"admin token written to {path} as its SHA-256 (give it to serve --admin-token-file); "
        "the token is shown once",
        file=sys.stderr,
    )
    return EXIT_OK


# --- the parser -----------------------------------------------------------------------


def _store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state", default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})"
    )
    p.add_argument(
        "--store", help="store URL, e.g. postgresql+psycopg://... (default: sqlite in --state)"
    )
    p.add_argument("--json", action="store_true", help="JSON output")


def _list_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow", action="append", metavar="ENTRY", help="allow entry (repeatable)")
    p.add_argument("--allow-file", action="append", metavar="FILE", help="one entry a line")
    p.add_argument("--deny", action="append", metavar="ENTRY", help="deny entry (repeatable)")
    p.add_argument("--deny-file", action="append", metavar="FILE", help="one entry a line")
    p.add_argument("--subscribe", action="append", metavar="FEED", help="feed name (repeatable)")


def _appliance_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tenant", required=True)
    p.add_argument("--name", required=True, help="appliance name")
    _store_options(p)


def _status_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lists", help="output directory of build (to tell stale versions)")
    p.add_argument(
        "--stale-hours",
        type=_stale_after,
        default=DEFAULT_STALE_AFTER,
        help=f"stale when not seen for longer (default {DEFAULT_STALE_AFTER.total_seconds() / 3600:g})",
    )


def register(sub: Any) -> None:
    """Add the fleet's commands to ``stockade-distributor``'s subparsers."""
    register_fleet_commands(sub)


def register_fleet_commands(sub: Any) -> None:
    """``register`` under a name that says what it registers, for ``cli``'s imports."""
    t = sub.add_parser("tenants", help="manage tenants (allow/deny lists, feed subscriptions)")
    ts = t.add_subparsers(dest="tenants_command", required=True)
    p = ts.add_parser("add", help="add a tenant")
    p.add_argument("name")
    _list_options(p)
    _store_options(p)
    p.set_defaults(func=cmd_tenants_add)
    p = ts.add_parser("list", help="list tenants")
    _store_options(p)
    p.set_defaults(func=cmd_tenants_list)
    p = ts.add_parser("show", help="show a tenant and its lists")
    p.add_argument("name")
    _store_options(p)
    p.set_defaults(func=cmd_tenants_show)
    p = ts.add_parser("set", help="replace a tenant's allow, deny or subscription lists")
    p.add_argument("name")
    _list_options(p)
    p.add_argument(
        "--clear",
        action="append",
        choices=("allow", "deny", "subscriptions"),
        help="empty that list (repeatable)",
    )
    _store_options(p)
    p.set_defaults(func=cmd_tenants_set)
    p = ts.add_parser("remove", help="remove a tenant")
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="with its appliances")
    _store_options(p)
    p.set_defaults(func=cmd_tenants_remove)

    a = sub.add_parser("appliances", help="register appliances, show their status")
    asub = a.add_subparsers(dest="appliances_command", required=True)
    p = asub.add_parser("add", help="register an appliance and print its token once")
    _appliance_options(p)
    p.add_argument("--profile", required=True, help="firmware profile it fetches")
    p.add_argument("--push-url", help="where publishes are pushed (http(s)://...)")
    p.set_defaults(func=cmd_appliances_add)
    p = asub.add_parser("list", help="appliances with last seen, version held, stale or not")
    p.add_argument("--tenant")
    _status_options(p)
    _store_options(p)
    p.set_defaults(func=cmd_appliances_list)
    p = asub.add_parser("show", help="one appliance's status")
    _appliance_options(p)
    _status_options(p)
    p.set_defaults(func=cmd_appliances_show)
    p = asub.add_parser("revoke", help="revoke an appliance's token")
    _appliance_options(p)
    p.set_defaults(func=cmd_appliances_revoke)
    p = asub.add_parser("rotate-token", help="give an appliance a new token (printed once)")
    _appliance_options(p)
    p.set_defaults(func=cmd_appliances_rotate)

    p = sub.add_parser("lists", help="published versions per tenant and profile")
    p.add_argument("--lists", required=True, help="output directory of build")
    p.add_argument("--tenant")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=cmd_lists)

    p = sub.add_parser("admin-token", help="make the admin API's token (printed once)")
    p.add_argument("--file", required=True, help="where its SHA-256 is written")
    p.add_argument("--force", action="store_true", help="replace an existing admin token")
    p.set_defaults(func=cmd_admin_token)


# --- serve --------------------------------------------------------------------------------


def add_serve_options(p: argparse.ArgumentParser) -> None:
    """``serve --fleet URL [--admin-token-file F] [--stale-hours H]``."""
    p.add_argument(
        "--fleet",
        metavar="URL",
        help="store URL (or SQLite path) holding tenants and appliances: appliances "
        "authenticate there and their polls are recorded (instead of --tokens)",
    )
    p.add_argument(
        "--admin-token-file",
        help="file with the admin token's SHA-256 (see admin-token); mounts /v1/admin/ "
        "(needs --fleet)",
    )
    p.add_argument(
        "--stale-hours",
        type=_stale_after,
        default=DEFAULT_STALE_AFTER,
        help="appliances not seen for longer are stale in the admin API (default "
        f"{DEFAULT_STALE_AFTER.total_seconds() / 3600:g})",
    )


def serve_fleet(args: argparse.Namespace) -> tuple[Fleet | None, dict[str, Any]]:
    """The fleet ``serve`` uses (None without --fleet) and ``ListServer``'s fleet keywords."""
    if not args.tokens and not args.fleet:
        raise ConfigError("serve needs appliance tokens: give --tokens FILE or --fleet URL")
    if args.tokens and args.fleet:
        raise ConfigError("give --tokens FILE or --fleet URL, not both")
    if args.admin_token_file and not args.fleet:
        raise ConfigError("--admin-token-file needs --fleet (the admin API manages the fleet)")
    if not args.fleet:
        return None, {}
    from .admin import load_admin_token_hash

    admin = load_admin_token_hash(Path(args.admin_token_file)) if args.admin_token_file else None
    fleet = Fleet.open(str(args.fleet))
    return fleet, {"fleet": fleet, "admin_token_sha256": admin, "stale_after": args.stale_hours}


# --- build --tenant T with a fleet --------------------------------------------------------

Parsed = list[tuple[list[Indicator], str]]


def tenant_build_inputs(
    args: argparse.Namespace, parsed: Parsed, settings: CondenseSettings
) -> tuple[Parsed, CondenseSettings]:
    """``build``/``explain`` of a tenant the fleet knows (``--from-store`` or ``--store``):
    only its subscribed feeds (all when it has none), its deny entries added as block
    entries of confidence 100, its allow entries added to its allow files. A tenant the
    fleet does not know is built exactly as before."""
    if not (getattr(args, "from_store", False) or getattr(args, "store", None)):
        return parsed, settings
    tenant_name = str(args.tenant)
    with Fleet.open(store_url(args)) as fleet:
        try:
            tenant = fleet.show_tenant(tenant_name)
        except UnknownTenant:
            return parsed, settings
    return apply_tenant(tenant, parsed, settings, Path(args.state))
