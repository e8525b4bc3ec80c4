"""Shared fixtures: an in-process app over the fake engine, and one real `sijo serve` per session."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from sijo.app import create_app
from sijo.config import Settings
from sijo.engines.fake import FakeEngine

HEADERS = {"anthropic-version": "2023-06-01"}


@pytest.fixture(autouse=True)
def _no_sijo_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Settings read SIJO_* from the environment; tests build their own. State (the signing secret)
    goes to a directory of the test session's, never the user's."""
    for name in [n for n in os.environ if n.startswith("SIJO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path_factory.getbasetemp() / "data"))


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
async def client(engine: FakeEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, engines={"default": engine})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sijo.localhost", headers=HEADERS
        ) as c:
            yield c


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base_url: str
    api_key: str
    process: subprocess.Popen[bytes]
    log: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ANTHROPIC_BASE_URL": self.base_url,
            "ANTHROPIC_API_KEY": self.api_key,
        }


def start_server(tmp: Path, env: dict[str, str], *args: str) -> Server:
    """`sijo serve` on a free loopback port; its state (database, secrets) under `tmp` unless `env`
    names a data directory, never the user's."""
    env = {"SIJO_DATA_DIR": str(tmp / "data"), **env}
    port = free_port()
    log = tmp / f"sijo-{port}.log"
    command = [
        sys.executable,
        "-m",
        "sijo",
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
        *args,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base_url = f"http://127.0.0.1:{port}"
    key = env.get("SIJO_API_KEYS", "unused-key").split(",")[0]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sijo serve exited early:\n{log.read_text()}")
        try:
            httpx.get(f"{base_url}/v1/models", headers={**HEADERS, "x-api-key": key}, timeout=1)
            return Server(base_url, key, process, log)
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"sijo serve did not start:\n{log.read_text()}")


def start_configured(tmp: Path, config: str, env: dict[str, str] | None = None) -> Server:
    """`sijo serve` with `config` as its TOML file, in an environment without SIJO_*/ANTHROPIC_*
    variables (plus `env`)."""
    path = tmp / "sijo.toml"
    path.write_text(config)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SIJO_", "ANTHROPIC_"))}
    return start_server(tmp, {**clean, **(env or {})}, "--config", str(path))


TS = Path(__file__).parent / "e2e" / "ts"
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def run_node(script: str, server: Server, package: str, timeout: float = 180) -> Any:
    """Run `tests/e2e/ts/<script>` against `server` (ANTHROPIC_BASE_URL/KEY set, as a user would)
    and return the one JSON object it prints; `package` is what `make test` must have installed."""
    assert (TS / "node_modules" / package).is_dir(), "run `make test` to install it"
    result = subprocess.run(
        ["node", script],
        cwd=TS,
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def wait_until_ended(client: anthropic.Anthropic, batch_id: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = client.messages.batches.retrieve(batch_id)
        if batch.processing_status == "ended":
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} did not end in {timeout} s")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


def start_keyless(tmp: Path) -> Server:
    """`sijo serve` as `make serve` starts it: no key (loopback only), none of the SIJO_*/ANTHROPIC_*
    variables of the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIJO_", "ANTHROPIC_"))}
    return start_server(tmp, env)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server (embedded model, no keys: loopback only) shared by the e2e tests."""
    running = start_keyless(tmp_path_factory.mktemp("server"))
    yield running
    stop_server(running)
