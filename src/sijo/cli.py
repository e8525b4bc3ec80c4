"""The `sijo` command: `sijo serve [--host] [--port] [--model PATH] [--threads N] [--config FILE]`."""

from __future__ import annotations

import argparse
import ipaddress
import sys
import tomllib
from pathlib import Path

from pydantic import ValidationError

from sijo.config import Settings, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sijo", description="A self-hosted Claude API.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the Claude API over local models")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; others need API keys)")
    serve.add_argument("--port", type=int, help="port to listen on (default 8000)")
    serve.add_argument("--model", type=Path, help="GGUF file for the default engine")
    serve.add_argument("--threads", type=int, help="CPU threads for the default engine")
    serve.add_argument("--config", type=Path, help="TOML settings file (see README)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return parser


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(settings: Settings) -> str | None:
    """Why the server must not start, or None: without keys Sijo serves loopback only."""
    if settings.api_keys or is_loopback(settings.host):
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

    from sijo.app import create_app

    try:
        settings = load_settings(
            args.config, host=args.host, port=args.port, model_path=args.model, threads=args.threads
        )
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        print(f"sijo: invalid configuration: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    refusal = check_bind(settings) or _missing_model(settings)
    if refusal:
        print(f"sijo: {refusal}", file=sys.stderr)  # noqa: T201
        return 2
    app = create_app(settings)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
