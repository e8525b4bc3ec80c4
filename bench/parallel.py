"""Parallel-streams and prompt-cache benchmark: Sijo vs. ``llama-server --parallel 8``.

Both servers run the same GGUF with the same thread count and get identical
streaming ``POST /v1/messages`` requests (Anthropic Messages API,
``temperature: 0``). The servers run one at a time, never both at once: for
every case each server is started fresh, measured, and stopped (Sijo first,
then llama-server), so a case never sees another case's cached prompts.

Cases (``--cases``, comma-separated; default all three):

``streams``
    N concurrent streaming requests (default 8, ``max_tokens`` 128) with
    distinct short prompts. Aggregate output tokens/s = sum of
    ``usage.output_tokens`` (from ``message_delta``) / wall time from the first
    send to the last finish. One unmeasured warm-up round, then ``--rounds``
    (default 3) rounds; the median is reported. Ratio Sijo / peer, target >= 1.0.

``ttft``
    A ~7,000-token system prompt (``cache_control: ephemeral``) with a short
    user question, ``max_tokens`` 8. Cold TTFT = the first request on the fresh
    server; warm TTFT = median of the next 3 requests, each with another
    question. TTFT = request sent -> first ``content_block_delta``. For Sijo the
    ``message_start`` usage must show ``cache_creation_input_tokens > 0`` (cold)
    and ``cache_read_input_tokens`` equal to it (warm). Targets: Sijo warm TTFT
    <= llama-server's (ratio peer / Sijo >= 1.0) and Sijo cold / warm >= 50.

``tenants``
    12 distinct ~1,500-token system prompts (``cache_control`` as above), more
    than llama-server's 8 slots. A warm-up pass sends each once, then 2 measured
    passes go round-robin over them, one request at a time (short varied
    questions, ``max_tokens`` 8). Ratio of mean TTFT peer / Sijo, target >= 3.

After each case Sijo's ``GET /sijo/status`` gives its engine counters, from
which the mean Python overhead per engine step,
``(step_seconds - decode_seconds) / steps``, and its share of the step time are
printed. The prompts are sized with ``POST /v1/messages/count_tokens`` on the
first server started for the case (both servers use the model's own tokenizer).

Usage (from the repository root)::

    bash bench/build_llama_server.sh          # once; builds the peer server
    .venv/bin/python bench/parallel.py [--cases streams,ttft,tenants] [--quick]
                                       [--only-sijo | --only-peer] [--threads N]

``--quick`` shrinks every case for a smoke test (4 streams of 32 tokens, a
2k-token big prompt, 3 tenants of 1.2k tokens). Only the standard library and
httpx are used; every server started is killed on exit, including on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from single_stream import (
    ANTHROPIC_HEADERS,
    BUSY_THRESHOLD,
    PEER,
    SIJO,
    RunningServer,
    ServerSpec,
    add_server_args,
    cpu_snapshot,
    default_model_path,
    free_ports,
    iter_sse,
    other_cpu_fraction,
    peer_spec,
    raise_on_sigterm,
    sijo_spec,
    start_server,
    stop_server,
    tail,
    wait_for_idle,
    wait_ready,
)

MODEL_ID = "claude-sonnet-4-6"
CASES = ("streams", "ttft", "tenants")
STATUS_HEADERS = {"anthropic-version": "2023-06-01"}


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """How big each case is; ``--quick`` picks the small set."""

    streams: int
    stream_max_tokens: int
    rounds: int
    big_tokens: int
    warm_requests: int
    tenants: int
    tenant_tokens: int
    tenant_passes: int
    cached_max_tokens: int = 8


FULL = Sizes(
    streams=8, stream_max_tokens=128, rounds=3, big_tokens=7000, warm_requests=3,
    tenants=12, tenant_tokens=1500, tenant_passes=2,
)  # fmt: skip
QUICK = Sizes(
    streams=4, stream_max_tokens=32, rounds=3, big_tokens=2000, warm_requests=3,
    tenants=3, tenant_tokens=1200, tenant_passes=2,
)  # fmt: skip


# --------------------------------------------------------------------------- prompts

STORY_TOPICS = (
    "a lighthouse keeper who finds a hidden map",
    "a robot learning to bake bread",
    "two rival chess clubs in a small mountain town",
    "a cartographer charting an island that moves",
    "a detective who can only work at night",
    "a violin that plays by itself",
    "the last day of a traveling circus",
    "a gardener who grows clocks instead of flowers",
    "an astronaut stranded on a frozen moon",
    "a librarian guarding a book nobody may read",
    "a fishing village that wakes up inside a cloud",
    "a courier crossing a desert on a bicycle",
    "a child who befriends a thunderstorm",
    "an old ferry that refuses to retire",
    "a painter whose portraits start to talk",
    "a beekeeper negotiating with a queen bee",
)
STORY_STYLES = ("story", "fairy tale", "adventure", "diary", "legend", "fable")
QUESTIONS = (
    "In one sentence, what is the text above mostly about?",
    "Name one person or group mentioned above.",
    "Which place is mentioned first?",
    "Give a short title for the text above.",
    "What is the mood of the text above, in two words?",
    "Name one object mentioned above.",
    "Is the text above a story or a report? Answer briefly.",
    "What time of day is mentioned above?",
)
SUBJECTS = (
    "The old lighthouse keeper", "A young botanist", "The city council", "Our night-shift nurse",
    "The small bakery on Elm Street", "A retired railway engineer", "The migrating geese",
    "The village choir", "A stubborn mountain goat", "The harbor master", "Professor Lindqvist",
    "The new apprentice", "A traveling salesman", "The museum's night guard", "Grandmother Okafor",
    "The school's chess team", "A curious fox", "The regional newspaper", "The ferry captain",
    "Our neighbor's twin daughters",
)  # fmt: skip
VERBS = (
    "carefully examined", "quietly rearranged", "argued loudly about", "photographed",
    "repaired", "wrote a letter about", "completely forgot", "celebrated", "measured",
    "painted a picture of", "hid", "borrowed", "sold", "questioned everyone about",
    "searched the attic for", "sang a song about",
)  # fmt: skip
OBJECTS = (
    "the broken weather vane", "a stack of unpaid invoices", "the northern hiking trail",
    "an antique brass telescope", "the leaking greenhouse roof", "a basket of green apples",
    "the town's only traffic light", "a mysterious wooden crate", "the winter festival budget",
    "a faded photograph of the pier", "the new bicycle lane", "seventeen jars of honey",
    "the flooded cellar", "a map of the old silver mines", "the cracked church bell",
    "a crate of blue paint",
)  # fmt: skip
CLAUSES = (
    "before the first snow arrived", "while the harbor was still asleep",
    "because nobody else had volunteered", "during the long budget meeting",
    "after the storm knocked out the power", "just as the evening train pulled in",
    "although the mayor strongly disagreed", "on a surprisingly warm Tuesday in March",
    "without telling anyone at the bakery", "while the children were at school",
    "until the church clock struck midnight", "to everyone's great amusement",
)  # fmt: skip
COMPANIES = (
    "Northwind Ferries", "Bluebell Bakery", "Quarry Hill Mining", "Aurora Telescopes",
    "Maple & Pine Legal", "Harborlight Insurance", "Copperleaf Gardens", "Vantage Railways",
    "Silverfin Aquariums", "Driftwood Publishing", "Emberline Heating", "Tidewater Clinics",
    "Foxglove Pharmacy", "Granite Peak Outfitters", "Lumen Solar", "Orchard Lane Schools",
)  # fmt: skip


def sentences(seed: int) -> Iterator[str]:
    """An endless, deterministic stream of varied English sentences."""
    rng = random.Random(seed)
    day = 0
    while True:
        day += rng.randint(1, 3)
        sentence = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(CLAUSES)}."
        if rng.random() < 0.3:
            sentence = f"On day {day}, {sentence[0].lower()}{sentence[1:]}"
        yield sentence


def text_of(header: str, seed: int, count: int) -> str:
    stream = sentences(seed)
    return header + " ".join(next(stream) for _ in range(count))


def fit_text(make: Callable[[int], str], count_tokens: Callable[[str], int], target: int) -> tuple[str, int]:
    """``make(n)`` (n sentences) with n chosen so ``count_tokens`` lands within 2% of ``target``."""
    n = max(1, target // 22)  # these sentences are ~20 tokens each; start a bit short
    tried: dict[int, tuple[str, int]] = {}
    while n not in tried and len(tried) < 8:
        text = make(n)
        tokens = count_tokens(text)
        tried[n] = (text, tokens)
        if abs(tokens - target) <= target * 0.02:
            break
        n = max(1, round(n * target / max(tokens, 1)))
    return min(tried.values(), key=lambda item: abs(item[1] - target))


def story_payload(prompt: str, max_tokens: int) -> dict[str, Any]:
    return {
        "model": MODEL_ID,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "messages": [{"role": "user", "content": prompt}],
    }


def cached_payload(system: str, question: str, max_tokens: int) -> dict[str, Any]:
    """A request whose system prompt carries a ``cache_control`` breakpoint."""
    return {
        "model": MODEL_ID,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": question}],
    }


def count_input_tokens(client: httpx.Client, server: RunningServer, system: str, question: str) -> int:
    """Input tokens of ``cached_payload(system, question)`` via ``/v1/messages/count_tokens``."""
    body = cached_payload(system, question, 1)
    for key in ("max_tokens", "temperature", "stream"):
        del body[key]
    response = client.post(
        server.spec.base_url + "/v1/messages/count_tokens", json=body, headers=ANTHROPIC_HEADERS
    )
    too_long = re.search(r"prompt is too long: (\d+) tokens", response.text)
    if response.status_code == 400 and too_long:  # still a count, for sizing
        return int(too_long.group(1))
    if response.status_code != 200:
        raise RuntimeError(
            f"count_tokens on {server.spec.name}: HTTP {response.status_code}: {response.text}"
        )
    return int(response.json()["input_tokens"])


@dataclass
class Prompts:
    """Prompts built (and sized) once per run, so both servers get identical text."""

    big: str | None = None
    big_tokens: int = 0
    tenants: list[str] = field(default_factory=list)
    tenant_tokens: list[int] = field(default_factory=list)


def ensure_big(prompts: Prompts, client: httpx.Client, server: RunningServer, sizes: Sizes) -> str:
    if prompts.big is None:
        header = "Field notes from the town archive. "
        prompts.big, prompts.big_tokens = fit_text(
            lambda n: text_of(header, 7, n),
            lambda text: count_input_tokens(client, server, text, QUESTIONS[0]),
            sizes.big_tokens,
        )
        print(f"  big system prompt: {len(prompts.big)} chars, {prompts.big_tokens} input tokens")
    return prompts.big


def ensure_tenants(prompts: Prompts, client: httpx.Client, server: RunningServer, sizes: Sizes) -> list[str]:
    if not prompts.tenants:
        for t in range(sizes.tenants):
            company = COMPANIES[t % len(COMPANIES)]
            header = f"Tenant {t + 1}: you are the assistant of {company}. Their records say: "
            text, tokens = fit_text(
                functools.partial(text_of, header, 1000 + t),
                lambda text: count_input_tokens(client, server, text, QUESTIONS[0]),
                sizes.tenant_tokens,
            )
            prompts.tenants.append(text)
            prompts.tenant_tokens.append(tokens)
        print(
            f"  {sizes.tenants} tenant system prompts: input tokens "
            f"{min(prompts.tenant_tokens)}..{max(prompts.tenant_tokens)}"
        )
    return prompts.tenants


# --------------------------------------------------------------------------- streaming


@dataclass(frozen=True)
class StreamResult:
    """Timing and usage of one streaming request (times from ``time.perf_counter``)."""

    sent: float
    first_delta: float | None
    finished: float
    output_tokens: int
    stop_reason: str | None
    start_usage: dict[str, Any]
    text: str = field(repr=False)
    other_cpu: float | None = None  # share of machine CPU used by other processes meanwhile

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_delta is None else self.first_delta - self.sent

    def usage_int(self, key: str) -> int | None:
        value = self.start_usage.get(key)
        return int(value) if isinstance(value, int) else None


def stream_request(client: httpx.Client, base_url: str, payload: dict[str, Any]) -> StreamResult:
    """Send one streaming ``/v1/messages`` request and time its SSE events."""
    first_delta: float | None = None
    parts: list[str] = []
    output_tokens = 0
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
            if event == "error":
                raise RuntimeError(f"error event from {base_url}: {data}")
            if event == "message_start":
                start_usage = dict(data.get("message", {}).get("usage", {}) or {})
            elif event == "content_block_delta":
                if first_delta is None:
                    first_delta = time.perf_counter()
                delta = data.get("delta", {})
                if delta.get("type") == "text_delta":
                    parts.append(str(delta.get("text", "")))
            elif event == "message_delta":
                output_tokens = int(data.get("usage", {}).get("output_tokens", 0))
                stop_reason = data.get("delta", {}).get("stop_reason")
            elif event == "message_stop":
                break
    return StreamResult(
        sent=sent,
        first_delta=first_delta,
        finished=time.perf_counter(),
        output_tokens=output_tokens,
        stop_reason=stop_reason,
        start_usage=start_usage,
        text="".join(parts),
    )


def measured_request(
    client: httpx.Client, server: RunningServer, payload: dict[str, Any], args: argparse.Namespace
) -> StreamResult:
    """One request after waiting (boundedly) for other CPU load to go away."""
    pgids = {server.process.pid}
    wait_for_idle(pgids, args.idle_wait)
    before = cpu_snapshot(pgids)
    res = stream_request(client, server.spec.base_url, payload)
    return dataclasses.replace(res, other_cpu=other_cpu_fraction(before, cpu_snapshot(pgids)))


def busy_tag(other_cpu: float | None) -> str:
    if other_cpu is not None and other_cpu > BUSY_THRESHOLD:
        return f"  [other processes used {other_cpu:.0%} of the CPU]"
    return ""


def usage_tag(res: StreamResult) -> str:
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    shown = [
        f"{key.removesuffix('_input_tokens')}={res.start_usage[key]}"
        for key in keys
        if key in res.start_usage
    ]
    return "usage(" + ", ".join(shown) + ")" if shown else "usage(n/a)"


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


# --------------------------------------------------------------------------- cases


@dataclass
class StreamsResult:
    rates: list[float] = field(default_factory=list)  # aggregate output tok/s per round
    texts: dict[str, str] = field(default_factory=dict)  # prompt -> output text
    disturbed: int = 0

    def median_rate(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None


@dataclass
class TtftResult:
    cold: StreamResult | None = None
    warm: list[StreamResult] = field(default_factory=list)
    disturbed: int = 0

    def cold_s(self) -> float | None:
        return None if self.cold is None else self.cold.ttft_s

    def warm_s(self) -> float | None:
        values = [r.ttft_s for r in self.warm if r.ttft_s is not None]
        return statistics.median(values) if values else None


@dataclass
class TenantsResult:
    measured: list[StreamResult] = field(default_factory=list)
    disturbed: int = 0

    def mean_s(self) -> float | None:
        values = [r.ttft_s for r in self.measured if r.ttft_s is not None]
        return statistics.fmean(values) if values else None


def run_round(
    client: httpx.Client, server: RunningServer, prompts: Sequence[str], max_tokens: int
) -> tuple[float, int, list[StreamResult]]:
    """Send all prompts at once; return (wall seconds, total output tokens, results)."""
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        futures = [
            pool.submit(stream_request, client, server.spec.base_url, story_payload(p, max_tokens))
            for p in prompts
        ]
        results = [f.result() for f in futures]
    wall = max(r.finished for r in results) - min(r.sent for r in results)
    return wall, sum(r.output_tokens for r in results), results


def case_streams(
    client: httpx.Client, server: RunningServer, sizes: Sizes, args: argparse.Namespace
) -> StreamsResult:
    result = StreamsResult()

    def prompts_for(round_index: int) -> list[str]:
        style = STORY_STYLES[round_index % len(STORY_STYLES)]
        return [
            f"Write a long, detailed {style} about {STORY_TOPICS[(i + round_index) % len(STORY_TOPICS)]}."
            for i in range(sizes.streams)
        ]

    wall, tokens, _ = run_round(client, server, prompts_for(-1), min(16, sizes.stream_max_tokens))
    print(f"  warm-up  {sizes.streams} streams: {tokens} tokens in {wall:.2f}s")
    pgids = {server.process.pid}
    for r in range(sizes.rounds):
        prompts = prompts_for(r)
        for attempt in range(1 + args.retries):
            wait_for_idle(pgids, args.idle_wait)
            before = cpu_snapshot(pgids)
            wall, tokens, results = run_round(client, server, prompts, sizes.stream_max_tokens)
            other = other_cpu_fraction(before, cpu_snapshot(pgids))
            ttfts = [res.ttft_s for res in results if res.ttft_s is not None]
            label = f"round {r + 1}" if attempt == 0 else f"retry {attempt}"
            print(
                f"  {label:<8} {sizes.streams} streams: {tokens} output tokens in {wall:.2f}s = "
                f"{tokens / wall:.1f} tok/s aggregate; per stream {[res.output_tokens for res in results]}; "
                f"median TTFT {ms(statistics.median(ttfts) if ttfts else None)}{busy_tag(other)}"
            )
            if not busy_tag(other):
                break
        result.disturbed += bool(busy_tag(other))
        result.rates.append(tokens / wall)
        result.texts.update({p: res.text for p, res in zip(prompts, results, strict=True)})
    return result


def case_ttft(
    client: httpx.Client, server: RunningServer, sizes: Sizes, args: argparse.Namespace, prompts: Prompts
) -> TtftResult:
    big = ensure_big(prompts, client, server, sizes)
    result = TtftResult()
    for i in range(1 + sizes.warm_requests):
        question = QUESTIONS[i % len(QUESTIONS)]
        res = measured_request(client, server, cached_payload(big, question, sizes.cached_max_tokens), args)
        result.disturbed += bool(busy_tag(res.other_cpu))
        label = "cold" if i == 0 else f"warm {i}"
        if i == 0:
            result.cold = res
        else:
            result.warm.append(res)
        print(
            f"  {label:<7} TTFT {ms(res.ttft_s):>11}  out {res.output_tokens} tok  "
            f"{usage_tag(res)}{busy_tag(res.other_cpu)}"
        )
    return result


def case_tenants(
    client: httpx.Client, server: RunningServer, sizes: Sizes, args: argparse.Namespace, prompts: Prompts
) -> TenantsResult:
    systems = ensure_tenants(prompts, client, server, sizes)
    result = TenantsResult()
    started = time.perf_counter()
    for t, system in enumerate(systems):
        payload = cached_payload(system, QUESTIONS[0], sizes.cached_max_tokens)
        before = cpu_snapshot({server.process.pid})
        res = stream_request(client, server.spec.base_url, payload)
        if args.verbose:
            other = other_cpu_fraction(before, cpu_snapshot({server.process.pid}))
            print(
                f"    warm-up tenant {t + 1:>2} TTFT {ms(res.ttft_s):>11}  {usage_tag(res)}{busy_tag(other)}"
            )
    print(f"  warm-up pass over {len(systems)} tenants: {time.perf_counter() - started:.1f}s")
    for p in range(sizes.tenant_passes):
        ttfts: list[float] = []
        hits = 0
        for t, system in enumerate(systems):
            question = QUESTIONS[(1 + p * len(systems) + t) % len(QUESTIONS)]
            payload = cached_payload(system, question, sizes.cached_max_tokens)
            res = measured_request(client, server, payload, args)
            result.measured.append(res)
            result.disturbed += bool(busy_tag(res.other_cpu))
            if res.ttft_s is not None:
                ttfts.append(res.ttft_s)
            hits += (res.usage_int("cache_read_input_tokens") or 0) > 0
            if args.verbose:
                print(
                    f"    tenant {t + 1:>2} TTFT {ms(res.ttft_s):>11}  "
                    f"{usage_tag(res)}{busy_tag(res.other_cpu)}"
                )
        mean = statistics.fmean(ttfts) if ttfts else None
        print(
            f"  pass {p + 1}: mean TTFT {ms(mean)} (min {ms(min(ttfts, default=None))}, "
            f"max {ms(max(ttfts, default=None))}); cache_read > 0 in {hits}/{len(systems)} requests"
        )
    return result


# --------------------------------------------------------------------------- Sijo status


@dataclass(frozen=True)
class EngineCounters:
    steps: int
    step_seconds: float
    decode_seconds: float
    prompt_tokens: int
    reused_tokens: int
    generated_tokens: int

    def describe(self) -> str:
        text = (
            f"steps {self.steps}, step_seconds {self.step_seconds:.2f}, "
            f"decode_seconds {self.decode_seconds:.2f}"
        )
        if self.steps and self.step_seconds > 0:
            overhead = self.step_seconds - self.decode_seconds
            text += (
                f" -> Python overhead {overhead / self.steps * 1000:.3f} ms/step "
                f"({overhead / self.step_seconds:.1%} of step time)"
            )
        return (
            text + f"; prompt_tokens {self.prompt_tokens}, reused_tokens {self.reused_tokens}, "
            f"generated_tokens {self.generated_tokens}"
        )


def sijo_counters(client: httpx.Client, server: RunningServer) -> EngineCounters:
    """Sum of the engine counters in ``GET /sijo/status`` (cumulative since the server started)."""
    response = client.get(server.spec.base_url + "/sijo/status", headers=STATUS_HEADERS)
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
    )


# --------------------------------------------------------------------------- reporting


@dataclass
class Row:
    case: str
    metric: str
    sijo: str
    peer: str
    ratio_label: str
    ratio: float | None
    target: float | None

    def verdict(self) -> str:
        if self.ratio is None or self.target is None:
            return ""
        return "PASS" if self.ratio >= self.target else "FAIL"


def div(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def num(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report_streams(results: dict[str, StreamsResult], sizes: Sizes) -> list[Row]:
    sijo, peer = results.get(SIJO), results.get(PEER)
    s_rate = sijo.median_rate() if sijo else None
    p_rate = peer.median_rate() if peer else None
    ratio = div(s_rate, p_rate)
    print(
        f"\n[streams] median aggregate output tok/s over {sizes.rounds} rounds of {sizes.streams} streams: "
        f"{SIJO} {num(s_rate, '.1f')}, {PEER} {num(p_rate, '.1f')}; "
        f"ratio Sijo/peer (higher is better) {num(ratio, '.3f')}"
    )
    if sijo and peer:
        common = sijo.texts.keys() & peer.texts.keys()
        same = sum(sijo.texts[p] == peer.texts[p] for p in common)
        print(f"[streams] identical output text for {same}/{len(common)} prompts across servers")
    return [
        Row("streams", f"aggregate tok/s ({sizes.streams} streams)", num(s_rate, ".1f"), num(p_rate, ".1f"),
            "Sijo/peer", ratio, 1.0),
    ]  # fmt: skip


def report_ttft(results: dict[str, TtftResult]) -> list[Row]:
    rows: list[Row] = []
    print()
    for name, res in results.items():
        print(
            f"[ttft] {name}: cold {ms(res.cold_s())}, warm (median of {len(res.warm)}) {ms(res.warm_s())}, "
            f"cold/warm {num(div(res.cold_s(), res.warm_s()), '.1f')}"
        )
    sijo, peer = results.get(SIJO), results.get(PEER)
    if sijo is not None and sijo.cold is not None:
        created = sijo.cold.usage_int("cache_creation_input_tokens")
        reads = [r.usage_int("cache_read_input_tokens") for r in sijo.warm]
        ok = bool(created) and all(read == created for read in reads)
        print(
            f"[ttft] {SIJO} usage: cold cache_creation_input_tokens={created}, "
            f"warm cache_read_input_tokens={reads} -> {'OK' if ok else 'MISMATCH'}"
        )
    s_warm = sijo.warm_s() if sijo else None
    p_warm = peer.warm_s() if peer else None
    warm_ratio = div(p_warm, s_warm)
    print(f"[ttft] warm TTFT ratio peer/Sijo (higher is better): {num(warm_ratio, '.3f')}")

    def cold_warm(res: TtftResult | None) -> float | None:
        return None if res is None else div(res.cold_s(), res.warm_s())

    s_cold = sijo.cold_s() if sijo else None
    p_cold = peer.cold_s() if peer else None
    rows.append(Row("ttft", "warm TTFT (ms)", num(to_ms(s_warm), ".1f"), num(to_ms(p_warm), ".1f"),
                    "peer/Sijo", warm_ratio, 1.0))  # fmt: skip
    rows.append(Row("ttft", "cold TTFT (ms)", num(to_ms(s_cold), ".1f"), num(to_ms(p_cold), ".1f"),
                    "peer/Sijo", div(p_cold, s_cold), None))  # fmt: skip
    rows.append(Row("ttft", "cold/warm", num(cold_warm(sijo), ".1f"), num(cold_warm(peer), ".1f"),
                    "Sijo cold/warm", cold_warm(sijo), 50.0))  # fmt: skip
    return rows


def report_tenants(results: dict[str, TenantsResult], sizes: Sizes) -> list[Row]:
    sijo, peer = results.get(SIJO), results.get(PEER)
    s_mean = sijo.mean_s() if sijo else None
    p_mean = peer.mean_s() if peer else None
    ratio = div(p_mean, s_mean)
    print(
        f"\n[tenants] mean TTFT over {sizes.tenant_passes} passes x {sizes.tenants} tenants: "
        f"{SIJO} {ms(s_mean)}, {PEER} {ms(p_mean)}; ratio peer/Sijo (higher is better) {num(ratio, '.2f')}"
    )
    return [
        Row("tenants", f"mean TTFT ({sizes.tenants} tenants) (ms)", num(to_ms(s_mean), ".1f"),
            num(to_ms(p_mean), ".1f"), "peer/Sijo", ratio, 3.0),
    ]  # fmt: skip


def print_summary(rows: Sequence[Row], overhead: dict[str, EngineCounters], failures: Sequence[str]) -> None:
    print("\nSummary")
    header = f"{'case':<9}{'metric':<32}{SIJO:>10}{PEER:>14}  {'ratio':<16}{'value':>8}{'target':>9}  verdict"
    print(header)
    print("-" * len(header))
    for row in rows:
        target = "" if row.target is None else f">= {row.target:g}"
        print(
            f"{row.case:<9}{row.metric:<32}{row.sijo:>10}{row.peer:>14}  {row.ratio_label:<16}"
            f"{num(row.ratio, '8.3f'):>8}{target:>9}  {row.verdict()}"
        )
    for case, counters in overhead.items():
        print(f"{SIJO} engine after {case}: {counters.describe()}")
    for failure in failures:
        print(f"FAILED: {failure}")


# --------------------------------------------------------------------------- driver


@contextlib.contextmanager
def serving(spec: ServerSpec, log_dir: Path, startup_timeout: float) -> Iterator[RunningServer]:
    """A freshly started server, stopped (SIGTERM, then SIGKILL) when the block exits."""
    log_dir.mkdir(parents=True, exist_ok=True)
    print(f"starting {spec.name} on port {spec.port}: {' '.join(spec.argv)}")
    server = start_server(spec, log_dir)
    try:
        wait_ready(server, startup_timeout)
        yield server
    finally:
        stop_server(server)


def run_case(
    client: httpx.Client,
    case: str,
    name: str,
    sizes: Sizes,
    args: argparse.Namespace,
    prompts: Prompts,
    log_dir: Path,
    overhead: dict[str, EngineCounters],
) -> StreamsResult | TtftResult | TenantsResult:
    """Start a fresh server, run one case on it, read Sijo's engine counters, stop the server."""
    with serving(make_spec(name, args), log_dir, args.startup_timeout) as server:
        result: StreamsResult | TtftResult | TenantsResult
        if case == "streams":
            result = case_streams(client, server, sizes, args)
        elif case == "ttft":
            result = case_ttft(client, server, sizes, args, prompts)
        else:
            result = case_tenants(client, server, sizes, args, prompts)
        if name == SIJO:
            overhead[case] = sijo_counters(client, server)
            print(f"  {SIJO} /sijo/status: {overhead[case].describe()}")
        return result


def make_spec(name: str, args: argparse.Namespace) -> ServerSpec:
    (port,) = free_ports(1)
    if name == SIJO:
        return sijo_spec(args, port)
    spec = peer_spec(args, port)  # same thread flags as single_stream.py, -c args.ctx --jinja
    return dataclasses.replace(spec, argv=[*spec.argv, "--parallel", str(args.parallel)])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Parallel streams and prompt-cache benchmark: Sijo vs. llama-server --parallel 8."
    )
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both servers (default 2)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--ctx", type=int, default=65536, help="llama-server -c (default 65536)")
    parser.add_argument("--parallel", type=int, default=8, help="llama-server --parallel (default 8)")
    add_server_args(parser)
    parser.add_argument("--request-timeout", type=float, default=600.0)
    parser.add_argument(
        "--idle-wait", type=float, default=30.0,
        help="max seconds to wait before each measurement for other CPU load to go away",
    )  # fmt: skip
    parser.add_argument(
        "--retries", type=int, default=2,
        help="times to repeat a streams round during which other processes used the CPU",
    )  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="print every tenant request")
    parser.add_argument("--keep-logs", action="store_true", help="keep server logs")
    args = parser.parse_args(argv)
    if args.model is None:
        args.model = default_model_path()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(cases) - set(CASES))
    if unknown or not cases:
        parser.error(f"--cases: unknown {unknown}; choose from {', '.join(CASES)}")
    args.case_list = [c for c in CASES if c in cases]
    if args.threads < 1 or args.parallel < 1 or args.retries < 0:
        parser.error("--threads and --parallel must be >= 1, --retries >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.model.is_file():
        raise SystemExit(f"error: model not found: {args.model}")
    skipped = {SIJO} if args.only_peer else {PEER} if args.only_sijo else set()
    names = [n for n in (SIJO, PEER) if n not in skipped]
    for name in names:
        binary = args.sijo_bin if name == SIJO else args.llama_server
        if not Path(binary).exists():
            hint = " (run: bash bench/build_llama_server.sh)" if name == PEER else ""
            raise SystemExit(f"error: {name} binary not found: {binary}{hint}")
    sizes = QUICK if args.quick else FULL
    raise_on_sigterm()
    log_root = Path(tempfile.mkdtemp(prefix="sijo-bench-parallel-"))
    prompts = Prompts()
    rows: list[Row] = []
    overhead: dict[str, EngineCounters] = {}
    failures: list[str] = []
    timeout = httpx.Timeout(args.request_timeout, connect=10.0)
    limits = httpx.Limits(max_connections=max(16, 2 * sizes.streams))
    print(
        f"model={args.model.name} threads={args.threads} cases={','.join(args.case_list)} "
        f"{'QUICK ' if args.quick else ''}sizes={sizes}"
    )
    completed = False
    try:
        with httpx.Client(timeout=timeout, limits=limits) as client:
            for case in args.case_list:
                results: dict[str, Any] = {}
                for name in names:
                    print(f"\n=== case {case}: {name}")
                    log = log_root / case / f"{name}.log"
                    try:
                        results[name] = run_case(
                            client, case, name, sizes, args, prompts, log.parent, overhead
                        )
                    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
                        failures.append(f"{case} on {name}: {exc}")
                        print(f"  FAILED: {exc}\n  log {log}:\n{tail(log)}")
                disturbed = sum(getattr(r, "disturbed", 0) for r in results.values())
                if disturbed:
                    print(f"\nwarning: {disturbed} measurement(s) of case {case} ran while other processes "
                          "used the CPU; rerun on a quiet machine")  # fmt: skip
                if case == "streams":
                    rows += report_streams(results, sizes)
                elif case == "ttft":
                    rows += report_ttft(results)
                else:
                    rows += report_tenants(results, sizes)
        print_summary(rows, overhead, failures)
        completed = True
    finally:
        if args.keep_logs or failures or not completed:
            print(f"server logs kept in {log_root}", file=sys.stderr)
        else:
            shutil.rmtree(log_root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # servers were already stopped by serving()'s finally
        print("interrupted", file=sys.stderr)
        sys.exit(130)
