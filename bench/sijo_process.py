"""`sijo serve` for a benchmark: started on a port with a data directory of its own (so the
benchmark never touches the user's database or keys), ready when it answers, stopped on exit."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
HEADERS = {"anthropic-version": "2023-06-01"}


@contextlib.contextmanager
def sijo_server(port: int, data: str | None = None, config: str | None = None) -> Iterator[str]:
    """`data`: the data directory to serve (default: a new temporary one); `config`: a TOML text
    to serve with (written there as sijo.toml)."""
    data = data or tempfile.mkdtemp(prefix="sijo-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIJO_")} | {"SIJO_DATA_DIR": data}
    command = [
        str(REPO_ROOT / ".venv" / "bin" / "sijo"),
        "serve",
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    if config is not None:
        path = Path(data) / "sijo.toml"
        path.write_text(config)
        command += ["--config", str(path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=sys.stderr, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/models", headers=HEADERS).status_code == 200:
                    break
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
