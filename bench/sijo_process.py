"""`sijo serve` for a benchmark: started on a port with a data directory of its own (so the
benchmark never touches the user's database or keys), ready when it answers, stopped on exit.

`launch`, `wait_ready` and `stop` work for any server process (`harness.py` runs llama-server with
them too): each runs in a process group of its own, which `stop` ends, SIGTERM then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
SIJO_BIN = REPO_ROOT / ".venv" / "bin" / "sijo"
LOOPBACK = "127.0.0.1"
HEADERS = {"anthropic-version": "2023-06-01"}


def launch(
    argv: Sequence[str], log: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session (its pid is its process group); stdout and stderr go to `log`
    (default: stdout discarded, stderr to ours)."""
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(log.open("wb")) if log is not None else subprocess.DEVNULL
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log is not None else sys.stderr,
            env=None if env is None else dict(env),
            start_new_session=True,
        )


def tail(path: Path | None, lines: int = 20) -> str:
    if path is None:
        return "(no log)"
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_ready(
    process: subprocess.Popen[bytes],
    url: str,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = 120.0,
    log: Path | None = None,
    name: str = "server",
) -> None:
    """Poll `url` until it answers 200; RuntimeError (with the log's tail) if the process exits or
    the time runs out."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode}; log {log}:\n{tail(log)}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url, headers=dict(headers or {})).status_code == 200:
                    return
            time.sleep(0.25)
    raise RuntimeError(f"{name} not ready after {timeout_s:.0f}s; log {log}:\n{tail(log)}")


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def sijo_env(data: str | Path) -> dict[str, str]:
    """Our environment without any SIJO_ setting, serving the data directory `data`."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SIJO_")} | {"SIJO_DATA_DIR": str(data)}


def sijo_command(
    port: int, *, binary: Path = SIJO_BIN, args: Sequence[str] = (), config_path: Path | None = None
) -> list[str]:
    """The `sijo serve` command line that `sijo_started` runs."""
    command = [str(binary), "serve", "--port", str(port), "--log-level", "warning", *args]
    return command + (["--config", str(config_path)] if config_path is not None else [])


@contextlib.contextmanager
def sijo_started(
    port: int,
    data: str | Path | None = None,
    config: str | None = None,
    *,
    binary: Path = SIJO_BIN,
    args: Sequence[str] = (),
    log: Path | None = None,
    timeout_s: float = 120.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """A running `sijo serve` on `port`, as its process; stopped when the block exits.

    `data`: the data directory to serve (default: a new temporary one, removed after); `config`: a
    TOML text to serve with (written there as sijo.toml); `args`: more `sijo serve` options; `log`:
    where its output goes (default: stderr, at log level warning)."""
    made = data is None
    data = data or tempfile.mkdtemp(prefix="sijo-bench-")
    Path(data).mkdir(parents=True, exist_ok=True)
    config_path = None
    if config is not None:
        config_path = Path(data) / "sijo.toml"
        config_path.write_text(config)
    command = sijo_command(port, binary=binary, args=args, config_path=config_path)
    process = launch(command, log, sijo_env(data))
    try:
        wait_ready(process, f"http://{LOOPBACK}:{port}/v1/models", HEADERS, timeout_s, log, "Sijo")
        yield process
    finally:
        stop(process, grace_s=30.0)
        if made:
            shutil.rmtree(data, ignore_errors=True)


@contextlib.contextmanager
def sijo_server(port: int, data: str | None = None, config: str | None = None) -> Iterator[str]:
    """`sijo_started`, yielding the server's URL."""
    with sijo_started(port, data, config):
        yield f"http://{LOOPBACK}:{port}"
