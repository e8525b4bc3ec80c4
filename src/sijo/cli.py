"""The `sijo` command.

sijo serve [--host] [--port] [--model PATH] [--mmproj PATH] [--threads N] [--config FILE]
sijo keys create --name NAME [--workspace NAME] [--admin] [--rpm N] [--itpm N] [--otpm N]
sijo keys list | sijo keys revoke ID_OR_NAME
sijo usage [--days N]
sijo search add PATH_OR_URL... [--workspace NAME] | sijo search list [--workspace NAME]
sijo search remove ID_OR_PATH...   (web_search's local index; every subcommand takes --config FILE)
"""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import sqlite3
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
    from sijo.tools.web_search.local_index import LocalIndex


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
    _search_parser(commands)
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


def _search_parser(commands: Any) -> None:
    search = commands.add_parser("search", help="the local index the web_search tool searches")
    search.add_argument("--config", type=Path, help="TOML settings file (see README)")
    actions = search.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="index files, folders (recursively) and http(s) pages")
    add.add_argument("sources", nargs="+", metavar="PATH_OR_URL", help=".txt .md .html .htm .pdf, or a URL")
    add.add_argument("--workspace", help="visible to this workspace only (default: shared by all)")
    listing = actions.add_parser("list", help="the indexed documents")
    listing.add_argument("--workspace", help="only those this workspace sees (its own and shared)")
    remove = actions.add_parser("remove", help="drop documents from the index")
    remove.add_argument("keys", nargs="+", metavar="ID_OR_PATH", help="a document id, URL, file or folder")
    for action in (add, listing, remove):
        # Also accepted after the action; SUPPRESS keeps one given before it.
        action.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


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


def server_options(header_timeout: float) -> dict[str, Any]:
    """How `sijo serve` runs uvicorn, beside its address: uvloop's event loop and httptools' HTTP
    parser (C, as `uvicorn[standard]` installs them) where they are installed, else asyncio's and
    h11 (pure Python), either protocol bounding how long a request's head may take
    (`api/timeouts.py`); no WebSocket protocol, as Sijo serves none."""
    from sijo.api.timeouts import http_protocol

    loop = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    return {"loop": loop, "http": http_protocol(header_timeout), "ws": "none"}


def serve(args: argparse.Namespace) -> int:
    import uvicorn

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
    options = server_options(settings.header_timeout)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level, **options)
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


def search(args: argparse.Namespace) -> int:
    from sijo.tools.web_search.local_index import LocalIndex, index_path

    settings = _settings(args)
    index = LocalIndex(index_path(settings.server_tools.search, settings.data_dir))
    workspace = getattr(args, "workspace", None)
    if workspace not in (None, "default"):  # requests carry the workspace's id, not its name
        workspace = _open_keys(settings).workspace_id(workspace)
        if workspace is None:
            print(
                f"sijo: no workspace is named {args.workspace!r} (keys create --workspace makes one)",
                file=sys.stderr,
            )
            return 1
    try:
        if args.action == "add":
            return _search_add(index, args.sources, workspace, settings)
        if args.action == "list":
            return _search_list(index, workspace, _open_keys(settings).workspace_name)
        return _search_remove(index, args.keys)
    except sqlite3.Error as exc:
        print(f"sijo: the search index {index.path} failed: {exc}", file=sys.stderr)
        return 1


def _search_add(index: LocalIndex, sources: list[str], workspace: str | None, settings: Settings) -> int:
    from sijo.media.fetch import FetchPolicy
    from sijo.tools.web_search.indexing import add_sources

    policy = FetchPolicy.from_config(settings.media)
    failed = 0
    for added in add_sources(index, sources, workspace=workspace, policy=policy):
        if added.error is not None:
            failed += 1
            print(f"sijo: {added.error}", file=sys.stderr)
            continue
        verb = "added  " if added.created else "updated"
        print(f"{verb}  {added.id}  {added.url}  ({added.title}, {added.size:,} characters)")
    if settings.server_tools.search.backend != "local":
        print(
            f"note: web_search uses the {settings.server_tools.search.backend} backend, not this index",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _search_list(index: LocalIndex, workspace: str | None, name_of: Callable[[str], str | None]) -> int:
    documents = index.documents(workspace)
    if not documents:
        print(f"no documents in {index.path} (add some with `sijo search add PATH_OR_URL`)", file=sys.stderr)
    for document in documents:
        scope = "shared" if document.workspace is None else name_of(document.workspace) or document.workspace
        print(f"{document.id:>4}  {scope:<10}  {document.size:>9,}  {document.url}  {document.title}")
    return 0


def _search_remove(index: LocalIndex, keys: list[str]) -> int:
    from sijo.tools.web_search.indexing import matching

    failed = 0
    for key in keys:
        found = matching(index, key)
        if not found:
            failed += 1
            print(
                f"sijo: no document in the index is {key!r} (give an id, URL, file or folder)",
                file=sys.stderr,
            )
            continue
        index.remove([document.id for document in found])
        for document in found:
            print(f"removed  {document.id}  {document.url}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"serve": serve, "keys": keys, "usage": usage, "search": search}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
