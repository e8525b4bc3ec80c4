"""Real upstream engine processes for tests: llama.cpp's `llama-server`, built from the same sources as
Sijo's engine by `bench/build_llama_server.sh` into a cache outside the repository."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.projector import smollm2_path

# Read once, at import: tests run with SIJO_* variables removed (tests/conftest.py).
NAMED = os.environ.get("SIJO_LLAMA_SERVER")
CACHE = Path(os.environ.get("SIJO_BENCH_CACHE", Path.home() / ".cache" / "sijo-bench"))
REQUIRED = bool(os.environ.get("SIJO_REQUIRE_UPSTREAM"))


def llama_server_binary() -> Path | None:
    """`SIJO_LLAMA_SERVER`, else the build script's cache; None if neither holds a binary."""
    named, cache = NAMED, CACHE
    for path in (Path(named) if named else None, cache / "llama-server"):
        if path is not None and path.exists() and os.access(path, os.X_OK):
            return path
    return None


def need_llama_server() -> Path:
    """The binary, or a skip saying how to get one (a failure where CI says one must be there)."""
    binary = llama_server_binary()
    if binary is not None:
        return binary
    reason = "no llama-server: run `bash bench/build_llama_server.sh` (or set SIJO_LLAMA_SERVER)"
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


@dataclass
class LlamaServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    dialect: str = "llama-server"
    config: str = ""  # what Sijo's engine config needs beyond the URL: llama-server tells the rest

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def busy_slots(self) -> int:
        slots = httpx.get(f"{self.url}/slots", timeout=5).json()
        return sum(1 for slot in slots if slot.get("is_processing"))


def start_llama_server(tmp: Path, *, parallel: int = 2, context: int = 8192) -> LlamaServer:
    """`llama-server` on the embedded model, on a free loopback port, once it answers `/health`."""
    binary = need_llama_server()
    port = free_port()
    log = tmp / f"llama-server-{port}.log"
    command = [
        str(binary), "-m", str(smollm2_path()), "--host", "127.0.0.1", "--port", str(port),
        "-c", str(context * parallel), "--parallel", str(parallel), "-t", "2", "--slots",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama-server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return LlamaServer(url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"llama-server did not start:\n{log.read_text()}")


VLLM_URL = os.environ.get("SIJO_TEST_VLLM_URL")
VLLM_HOWTO = (
    "no vLLM: set SIJO_TEST_VLLM_URL to a vLLM server of SmolLM2-135M-Instruct with llguidance, e.g. "
    "`vllm serve HuggingFaceTB/SmolLM2-135M-Instruct --max-model-len 8192 "
    "--structured-outputs-config.backend guidance`"
)


@dataclass
class VllmServer:
    """A vLLM server someone started (it is not built here): Sijo sends it Lark grammars as they are."""

    url: str
    chat_template: Path
    dialect: str = "vllm"

    @property
    def config(self) -> str:
        return f'chat_template = "{self.chat_template}"\n'

    def busy_slots(self) -> int:
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        running = [line for line in text.splitlines() if line.startswith("vllm:num_requests_running")]
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in running)


def need_vllm(tmp: Path) -> VllmServer:
    """The vLLM server named by SIJO_TEST_VLLM_URL (skipped, saying how to start one, if unset), with
    the model's chat template taken from the embedded GGUF: vLLM does not serve its template."""
    if VLLM_URL is None:
        pytest.skip(VLLM_HOWTO)
    import llama_cpp

    model = llama_cpp.Llama(str(smollm2_path()), vocab_only=True, verbose=False)
    template = tmp / "smollm2.jinja"
    template.write_text(model.metadata["tokenizer.chat_template"])
    return VllmServer(VLLM_URL.rstrip("/"), template)
