"""The `sijo` command.

sijo serve [--host] [--port] [--model PATH] [--mmproj PATH] [--threads N] [--config FILE]
sijo keys create --name NAME [--workspace NAME] [--admin] [--rpm N] [--itpm N] [--otpm N]
sijo keys list | sijo keys revoke ID_OR_NAME
sijo usage [--days N]
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from sijo.config import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sijo.store.keys import KeyKind, KeyStore


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sijo", description="A self-hosted Claude API.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Claude API over local models")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; others need API keys)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--model", type=Path, help="GGUF file for the default engine")
    serve.add_argument(
        "--mmproj", type=Path, help="multimodal projector GGUF for the default model (images, PDF pages)"
    )
    serve.add_argument("--threads", type=int, help="CPU threads for the default engine")
    serve.add_argument("--config", type=Path, help="TOML settings file (see README)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    _keys_parser(commands)
    usage = commands.add_parser("usage", help="what the recorded traffic would cost on the Claude API")
    usage.add_argument("--days", type=float, default=30.0, help="how far back (default 30 days)")
    usage.add_argument("--config", type=Path, help="TOML settings file (see README)")
    return parser


def _keys_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys and admin keys")
    keys.add_argument("--config", type=Path, help="TOML settings file (see README)")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument("--workspace", help="workspace name (created if new); default: the default workspace")
    create.add_argument("--admin", action="store_true", help="an admin key, for the Admin API only")
    create.add_argument("--rpm", type=int, help="requests per minute (default: rate_limits)")
    create.add_argument("--itpm", type=int, help="input tokens per minute")
    create.add_argument("--otpm", type=int, help="output tokens per minute")
    actions.add_parser("list", help="every key, newest first (never the secret)")
    revoke = actions.add_parser("revoke", help="deactivate a key: its next request gets 401")
    revoke.add_argument("key", help="the key's id (apikey_...) or its name")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings, stored_keys: Callable[[], bool] = lambda: False) -> str | None:
    """Why the server must not start, or None: without keys Sijo serves loopback only.
    `stored_keys` tells whether `sijo keys create` made any (asked only when it matters)."""
    if settings.api_keys or is_loopback(settings.host) or stored_keys():
        return None
    return (
        f"refusing to listen on {settings.host} without API keys: anyone who can reach it could use "
        "it. Set SIJO_API_KEYS (or api_keys in the config file), or bind 127.0.0.1."
    )


def _missing_model(settings: Settings) -> str | None:
    from sijo.engines.llama_cpp.model_file import ModelFileError, resolve_model_path

    try:
        for engine in settings.engines.values():
            resolve_model_path(engine.path)
    except ModelFileError as exc:
        return str(exc)
    return None


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from sijo.api.timeouts import HeaderTimeoutProtocol
    from sijo.app import create_app

    try:
        settings = load_settings(
            args.config,
            host=args.host,
            port=args.port,
            model_path=args.model,
            mmproj=args.mmproj,
            threads=args.threads,
        )
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        print(f"sijo: invalid configuration: {exc}", file=sys.stderr)
        return 2
    refusal = check_bind(settings, lambda: _open_keys(settings).any("api")) or _missing_model(settings)
    if refusal:
        print(f"sijo: {refusal}", file=sys.stderr)
        return 2
    app = create_app(settings)
    # uvicorn bounds no request's headers: this protocol does (and pins h11; see api/timeouts.py).
    protocol = HeaderTimeoutProtocol.with_timeout(settings.header_timeout)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, http=protocol)
    return 0


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise SystemExit(f"sijo: invalid configuration: {exc}") from None


def _database(settings: Settings) -> Engine:
    from sijo.store.db import connect, migrate

    engine = connect(settings.database)
    migrate(engine)
    return engine


def _open_keys(settings: Settings) -> KeyStore:
    from sijo.store.keys import KeyStore

    return KeyStore(_database(settings))


def keys(args: argparse.Namespace) -> int:
    from sijo.store.keys import KeyLimits

    store = _open_keys(_settings(args))
    if args.action == "create":
        limits = KeyLimits(args.rpm, args.itpm, args.otpm)
        kind: KeyKind = "admin" if args.admin else "api"
        key, secret = store.create(args.name, kind=kind, workspace=args.workspace, limits=limits)
        print(
            f"{key.id}  {key.name}  ({kind} key{', workspace ' + args.workspace if args.workspace else ''})"
        )
        print(secret)
        print("This is the only time the key is shown; keep it somewhere safe.", file=sys.stderr)
        return 0
    if args.action == "list":
        for key in store.list():
            workspace = store.workspace_name(key.workspace_id) if key.workspace_id else "default"
            print(f"{key.id}  {key.kind:5}  {key.status:8}  {key.hint}  {workspace}  {key.name}")
        return 0
    found = store.find(args.key)
    if found is None:
        print(f"sijo: no key {args.key!r} (give its id, or a name only one key has)", file=sys.stderr)
        return 1
    store.update(found.id, status="inactive")
    print(f"revoked {found.id} ({found.name})")
    return 0


def usage(args: argparse.Namespace) -> int:
    from sijo.reports import format_summary, usage_summary
    from sijo.store.ledger import UsageLedger

    settings = _settings(args)
    end = datetime.now(UTC)
    records = UsageLedger(_database(settings)).records(end - timedelta(days=args.days), end)
    print(f"Usage over the last {args.days:g} days, priced at the Claude API's rates:")
    print(format_summary(usage_summary(records, settings.prices)))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"serve": serve, "keys": keys, "usage": usage}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
