"""``python -m services.<name> keys create|list|revoke``: the API keys of one service.

    keys create --name NAME --scope SCOPE [--scope SCOPE...] [--expires-in-days N]
    keys list
    keys revoke KEY_ID_OR_SHOWN

Keys live in the service's own schema: a key made for registration opens registration's
API only. ``create`` prints the key once, in its JSON result; only its hash is kept.
Results are JSON on stdout; errors go to stderr. Exit codes: 0 done, 1 nothing to
revoke, 2 bad usage or no database.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import uvloop

from shared import security_store
from shared.api_keys import Scope, parse_scopes
from shared.cli_args import positive_int
from shared.errors import StartupError
from shared.logs import configure_logging
from shared.service import ServiceSpec, migrate
from shared.settings import ServiceSettings

EXIT_NOTHING, EXIT_USAGE = 1, 2


def _parser(service: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m services.{service} keys",
        description=f"Make, list and revoke the API keys of the {service} service.",
    )
    commands = parser.add_subparsers(dest="action", required=True)
    create = commands.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--name", required=True, help="who holds it, e.g. 'kelurahan-clerks'")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        help=f"one of {', '.join(s.value for s in Scope)}; repeat, or separate by commas",
    )
    create.add_argument(
        "--expires-in-days", type=positive_int, default=None, help="default: never expires"
    )
    commands.add_parser("list", help="every key (never the key itself)")
    revoke = commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key", help="the key id, or the shown part (psk_ and 8 characters)")
    return parser


async def _run(spec: ServiceSpec, settings: ServiceSettings, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    await migrate(spec, settings)
    # The schema's owner makes and revokes keys; the service's own role may only read them.
    owner = settings.migration_database_url or settings.database_url
    try:
        conn = await asyncpg.connect(
            owner.get_secret_value(),
            timeout=settings.startup_timeout_s,
            server_settings={"search_path": f"{spec.name},public", "timezone": "UTC"},
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
        raise StartupError(f"cannot connect to PostgreSQL to manage keys: {error}") from None
    try:
        return await _act(conn, args, now)
    finally:
        await conn.close()


async def _act(conn: asyncpg.Connection, args: argparse.Namespace, now: datetime) -> int:
    if args.action == "create":
        expires = now + timedelta(days=args.expires_in_days) if args.expires_in_days else None
        stored, key = await security_store.create_key(conn, args.name, args.scopes, expires)
        print(json.dumps({**stored.as_dict(now), "key": key}, indent=2))
        print("Keep the key now: it is not shown again.", file=sys.stderr)
        return 0
    if args.action == "list":
        keys = await security_store.list_keys(conn)
        print(json.dumps([k.as_dict(now) for k in keys], indent=2))
        return 0
    revoked = await security_store.revoke_keys(conn, args.key)
    print(json.dumps([k.as_dict(now) for k in revoked], indent=2))
    if not revoked:
        print(f"no key {args.key[:12]!r}...", file=sys.stderr)
        return EXIT_NOTHING
    return 0


def main(spec: ServiceSpec, settings_class: type[ServiceSettings], argv: Sequence[str]) -> None:
    parser = _parser(spec.name)
    args = parser.parse_args(argv)
    if args.action == "create":
        name = args.name.strip()
        if not 1 <= len(name) <= 100:
            parser.error("--name: 1 to 100 characters")
        args.name = name
        try:
            args.scopes = parse_scopes(args.scope)
        except ValueError as error:
            parser.error(f"--scope: {error}")
    try:
        settings = settings_class.load()
        configure_logging(spec.name, "WARNING")
        sys.exit(uvloop.run(_run(spec, settings, args)))
    except StartupError as error:
        print(f"perisai-{spec.name} keys: {error}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
