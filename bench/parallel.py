"""Parallel-streams, prompt-cache and quantization benchmark: Sijo vs. ``llama-server --parallel 8``.

Both servers run the same GGUF with the same thread count and get identical streaming
``POST /v1/messages`` requests (Anthropic Messages API, ``temperature: 0``). The servers run one at
a time, never both at once: for every case each server is started fresh (``harness.serving``),
measured, and stopped (Sijo first, then llama-server), so a case never sees another case's cached
prompts. The peer is ``llama-server -m MODEL -c 65536 --parallel 8 --jinja -t THREADS`` with its
default host-RAM prompt cache (``--no-repack`` too where Sijo loads weights without llama.cpp's
extra buffer types, so that both use the same kernels); Sijo runs with its defaults.

Cases (``--cases``, comma-separated; default all), each printing its ratio and target:

``single``
    One stream at a time: a warm-up, then 5 requests of a long story, ``max_tokens`` 256. Median
    decode tok/s, ratio Sijo / peer, target >= 1.0.

``streams``
    8 concurrent streaming requests (``max_tokens`` 128) with distinct short prompts. Aggregate
    output tokens/s = sum of ``usage.output_tokens`` (from ``message_delta``) / wall time from the
    first send to the last finish. One unmeasured warm-up round, then 3 rounds; the median is
    reported. Ratio Sijo / peer, target >= 1.1.

``streams16``
    The same with 16 concurrent streams, more than either server's 8 slots (same server settings).
    Ratio Sijo / peer, no target.

``ttft``
    A ~7,000-token system prompt (``cache_control: ephemeral``) with a short user question,
    ``max_tokens`` 8. Cold TTFT = the first request on the fresh server; warm TTFT = median of the
    next 3 requests, each with another question. For Sijo the ``message_start`` usage must show
    ``cache_creation_input_tokens > 0`` (cold) and ``cache_read_input_tokens`` equal to it (warm).
    Targets: warm TTFT ratio peer / Sijo >= 1.0 and Sijo cold / warm >= 100.

``tenants``
    12 distinct ~1,500-token system prompts (``cache_control`` as above), more than llama-server's
    8 slots. A warm-up pass sends each once, then 2 measured passes go round-robin over them, one
    request at a time (short varied questions, ``max_tokens`` 8). Ratio of mean TTFT peer / Sijo,
    target >= 1.5. Also the prompt tokens each server decoded per request: Sijo's from its engine
    counters (with the time spent copying kept prefixes), llama-server's from the ``prompt eval
    time`` line it logs as each request ends.

``q4_0``
    ``single`` and ``streams`` on a Q4_0 model made from ``--model`` with llama.cpp's
    ``llama_model_quantize`` (cached in ``$SIJO_BENCH_CACHE`` or ~/.cache/sijo-bench, never in the
    repository): Q4_0 is a type llama.cpp repacks on x86. Same targets as those cases.

After each case Sijo's ``GET /sijo/status`` gives its engine counters, from which the mean Python
overhead per engine step, ``(step_seconds - decode_seconds) / steps``, and its share of the step
time are printed. The prompts are sized with ``POST /v1/messages/count_tokens`` on the first server
started for the case (both servers use the model's own tokenizer). A summary table of all ratios
ends the output.

Usage (from the repository root)::

    bash bench/build_llama_server.sh          # once; builds the peer server
    .venv/bin/python bench/parallel.py [--cases single,streams,streams16,ttft,tenants,q4_0] [--quick]
                                       [--only-sijo | --only-peer] [--threads N]

``--quick`` shrinks every case for a smoke test (2 single runs of 64 tokens, 4 and 8 streams of 32
tokens, a 2k-token big prompt, 3 tenants of 1.2k tokens). Every server started is killed on exit,
including on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
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
from harness import (
    ANTHROPIC_HEADERS,
    PEER,
    SIJO,
    SINGLE_TARGET,
    STORY_PROMPT,
    EngineCounters,
    Kernels,
    Server,
    StreamResult,
    add_measure_args,
    add_server_args,
    against,
    busy_tag,
    default_model_path,
    fmt,
    is_busy,
    measured_stream,
    median_decode_tps,
    median_ttft_s,
    message_payload,
    ms,
    print_kernels,
    q4_0_model,
    quietly,
    raise_on_sigterm,
    ratio,
    selected_names,
    serving,
    short_output_warning,
    sijo_counters,
    single_stream_runs,
    stream_message,
    target_text,
    to_ms,
    verdict,
)
from sijo_process import tail

CASES = ("single", "streams", "streams16", "ttft", "tenants", "q4_0")
TARGETS = {"single": SINGLE_TARGET, "streams": 1.1, "warm": 1.0, "cold/warm": 100.0, "tenants": 1.5}


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """How big each case is; ``--quick`` picks the small set."""

    single_runs: int
    single_max_tokens: int
    streams: int
    streams16: int
    stream_max_tokens: int
    rounds: int
    big_tokens: int
    warm_requests: int
    tenants: int
    tenant_tokens: int
    tenant_passes: int
    cached_max_tokens: int = 8


FULL = Sizes(
    single_runs=5, single_max_tokens=256, streams=8, streams16=16, stream_max_tokens=128, rounds=3,
    big_tokens=7000, warm_requests=3, tenants=12, tenant_tokens=1500, tenant_passes=2,
)  # fmt: skip
QUICK = Sizes(
    single_runs=2, single_max_tokens=64, streams=4, streams16=8, stream_max_tokens=32, rounds=2,
    big_tokens=2000, warm_requests=3, tenants=3, tenant_tokens=1200, tenant_passes=2,
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


def cached_payload(system: str, question: str, max_tokens: int) -> dict[str, Any]:
    """A request whose system prompt carries a ``cache_control`` breakpoint."""
    return message_payload(question, max_tokens, system=system)


def count_input_tokens(client: httpx.Client, server: Server, system: str, question: str) -> int:
    """Input tokens of ``cached_payload(system, question)`` via ``/v1/messages/count_tokens``."""
    body = cached_payload(system, question, 1)
    for key in ("max_tokens", "temperature", "stream"):
        del body[key]
    response = client.post(
        server.base_url + "/v1/messages/count_tokens", json=body, headers=ANTHROPIC_HEADERS
    )
    too_long = re.search(r"prompt is too long: (\d+) tokens", response.text)
    if response.status_code == 400 and too_long:  # still a count, for sizing
        return int(too_long.group(1))
    if response.status_code != 200:
        raise RuntimeError(f"count_tokens on {server.name}: HTTP {response.status_code}: {response.text}")
    return int(response.json()["input_tokens"])


@dataclass
class Prompts:
    """Prompts built (and sized) once per run, so both servers get identical text."""

    big: str | None = None
    big_tokens: int = 0
    tenants: list[str] = field(default_factory=list)
    tenant_tokens: list[int] = field(default_factory=list)


def ensure_big(prompts: Prompts, client: httpx.Client, server: Server, sizes: Sizes) -> str:
    if prompts.big is None:
        header = "Field notes from the town archive. "
        prompts.big, prompts.big_tokens = fit_text(
            lambda n: text_of(header, 7, n),
            lambda text: count_input_tokens(client, server, text, QUESTIONS[0]),
            sizes.big_tokens,
        )
        print(f"  big system prompt: {len(prompts.big)} chars, {prompts.big_tokens} input tokens")
    return prompts.big


def ensure_tenants(prompts: Prompts, client: httpx.Client, server: Server, sizes: Sizes) -> list[str]:
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


def usage_tag(res: StreamResult) -> str:
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    shown = [
        f"{key.removesuffix('_input_tokens')}={res.start_usage[key]}"
        for key in keys
        if key in res.start_usage
    ]
    return "usage(" + ", ".join(shown) + ")" if shown else "usage(n/a)"


# --------------------------------------------------------------------------- cases


@dataclass
class SingleResult:
    runs: list[StreamResult] = field(default_factory=list)

    @property
    def disturbed(self) -> int:
        return sum(is_busy(r.other_cpu) for r in self.runs)


@dataclass
class StreamsResult:
    streams: int
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
        return median_ttft_s(self.warm)


@dataclass
class Prefill:
    """What a server did for one request before its first token: prompt tokens it decoded (the rest
    came from its cache), and the milliseconds it spent on them (llama-server's `prompt eval time`)
    or copying kept prefixes into the KV cache (Sijo's `prefix_copy_seconds`)."""

    tokens: int
    prefill_ms: float | None = None
    copy_ms: float | None = None


@dataclass
class TenantsResult:
    measured: list[StreamResult] = field(default_factory=list)
    prefills: list[Prefill] = field(default_factory=list)
    disturbed: int = 0

    def mean_s(self) -> float | None:
        values = [r.ttft_s for r in self.measured if r.ttft_s is not None]
        return statistics.fmean(values) if values else None


@dataclass
class Q4Result:
    single: SingleResult
    streams: StreamsResult

    @property
    def disturbed(self) -> int:
        return self.single.disturbed + self.streams.disturbed


CaseResult = SingleResult | StreamsResult | TtftResult | TenantsResult | Q4Result


def case_single(client: httpx.Client, server: Server, sizes: Sizes, args: argparse.Namespace) -> SingleResult:
    """A warm-up, then ``single_runs`` requests one at a time, the same long story each time."""
    payload = message_payload(STORY_PROMPT, sizes.single_max_tokens)
    runs = single_stream_runs(client, [server], lambda _run: payload, sizes.single_runs, args)
    return SingleResult(runs[server.name])


def run_round(
    client: httpx.Client, server: Server, prompts: Sequence[str], max_tokens: int
) -> tuple[float, int, list[StreamResult]]:
    """Send all prompts at once; return (wall seconds, total output tokens, results)."""
    with ThreadPoolExecutor(max_workers=len(prompts)) as pool:
        futures = [
            pool.submit(stream_message, client, server.base_url, message_payload(p, max_tokens))
            for p in prompts
        ]
        results = [f.result() for f in futures]
    wall = max(r.finished for r in results) - min(r.sent for r in results)
    return wall, sum(r.output_tokens for r in results), results


def show_round(
    streams: int, index: int, done: tuple[float, int, list[StreamResult]], other: float | None, attempt: int
) -> None:
    wall, tokens, results = done
    label = f"round {index + 1}" if attempt == 0 else f"retry {attempt}"
    print(
        f"  {label:<8} {streams} streams: {tokens} output tokens in {wall:.2f}s = "
        f"{tokens / wall:.1f} tok/s aggregate; per stream {[res.output_tokens for res in results]}; "
        f"median TTFT {ms(median_ttft_s(results))}{busy_tag(other)}"
    )


def case_streams(
    client: httpx.Client, server: Server, streams: int, sizes: Sizes, args: argparse.Namespace
) -> StreamsResult:
    """``streams`` concurrent requests: a warm-up round, then ``rounds`` measured ones."""
    result = StreamsResult(streams)

    def prompts_for(round_index: int) -> list[str]:
        style = STORY_STYLES[round_index % len(STORY_STYLES)]
        return [
            f"Write a long, detailed {style} about {STORY_TOPICS[(i + round_index) % len(STORY_TOPICS)]}."
            for i in range(streams)
        ]

    wall, tokens, _ = run_round(client, server, prompts_for(-1), min(16, sizes.stream_max_tokens))
    print(f"  warm-up  {streams} streams: {tokens} tokens in {wall:.2f}s")
    for r in range(sizes.rounds):
        prompts = prompts_for(r)
        (wall, tokens, results), other = quietly(
            {server.pgid}, args.idle_wait,
            functools.partial(run_round, client, server, prompts, sizes.stream_max_tokens),
            args.retries, functools.partial(show_round, streams, r),
        )  # fmt: skip
        result.disturbed += is_busy(other)
        result.rates.append(tokens / wall)
        result.texts.update({p: res.text for p, res in zip(prompts, results, strict=True)})
    return result


def case_ttft(
    client: httpx.Client, server: Server, sizes: Sizes, args: argparse.Namespace, prompts: Prompts
) -> TtftResult:
    big = ensure_big(prompts, client, server, sizes)
    result = TtftResult()
    for i in range(1 + sizes.warm_requests):  # no retries: a second cold request would be warm
        question = QUESTIONS[i % len(QUESTIONS)]
        payload = cached_payload(big, question, sizes.cached_max_tokens)
        res = measured_stream(client, server, payload, {server.pgid}, args)
        result.disturbed += is_busy(res.other_cpu)
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
    client: httpx.Client, server: Server, sizes: Sizes, args: argparse.Namespace, prompts: Prompts
) -> TenantsResult:
    systems = ensure_tenants(prompts, client, server, sizes)
    result = TenantsResult()
    started = time.perf_counter()
    for t, system in enumerate(systems):
        res = stream_message(
            client, server.base_url, cached_payload(system, QUESTIONS[0], sizes.cached_max_tokens)
        )
        if args.verbose:
            print(f"    warm-up tenant {t + 1:>2} TTFT {ms(res.ttft_s):>11}  {usage_tag(res)}")
    print(f"  warm-up pass over {len(systems)} tenants: {time.perf_counter() - started:.1f}s")
    for p in range(sizes.tenant_passes):
        ttfts: list[float] = []
        hits = 0
        for t, system in enumerate(systems):
            question = QUESTIONS[(1 + p * len(systems) + t) % len(QUESTIONS)]
            payload = cached_payload(system, question, sizes.cached_max_tokens)
            watch = PrefillWatch(client, server)
            res = measured_stream(client, server, payload, {server.pgid}, args)
            result.measured.append(res)
            prefill = watch.read()
            if prefill is not None:
                result.prefills.append(prefill)
            result.disturbed += is_busy(res.other_cpu)
            if res.ttft_s is not None:
                ttfts.append(res.ttft_s)
            hits += (res.usage_int("cache_read_input_tokens") or 0) > 0
            if args.verbose:
                tag = f"{usage_tag(res)}{busy_tag(res.other_cpu)}"
                print(f"    tenant {t + 1:>2} TTFT {ms(res.ttft_s):>11}  {tag}  {describe_prefill(prefill)}")
        mean = statistics.fmean(ttfts) if ttfts else None
        print(
            f"  pass {p + 1}: mean TTFT {ms(mean)} (min {ms(min(ttfts, default=None))}, "
            f"max {ms(max(ttfts, default=None))}); cache_read > 0 in {hits}/{len(systems)} requests"
        )
    return result


_PROMPT_EVAL = re.compile(r"prompt eval time =\s*([\d.]+) ms /\s*(\d+) tokens")


class PrefillWatch:
    """The prompt tokens a server decodes for the next request: Sijo's engine counters before and
    after, or the `prompt eval time` line llama-server logs at the end of each request."""

    def __init__(self, client: httpx.Client, server: Server) -> None:
        self._client, self._server = client, server
        if server.name == SIJO:
            self._before: EngineCounters | None = sijo_counters(client, server.base_url)
            self._offset = 0
        else:
            self._before = None
            self._offset = server.log_path.stat().st_size

    def read(self) -> Prefill | None:
        if self._before is not None:
            after = sijo_counters(self._client, self._server.base_url)
            copy_s = after.prefix_copy_seconds - self._before.prefix_copy_seconds
            return Prefill(after.prompt_tokens - self._before.prompt_tokens, copy_ms=copy_s * 1000)
        deadline = time.monotonic() + 2.0  # the line is written as the request ends, by a log thread
        while not (found := self._logged()) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not found:
            return None
        prefill_ms, tokens = found[-1]
        return Prefill(int(tokens), prefill_ms=float(prefill_ms))

    def _logged(self) -> list[tuple[str, str]]:
        with self._server.log_path.open("rb") as log:
            log.seek(self._offset)
            return _PROMPT_EVAL.findall(log.read().decode(errors="replace"))


def describe_prefill(prefill: Prefill | None) -> str:
    if prefill is None:
        return ""
    text = f"prefilled {prefill.tokens} tokens"
    if prefill.prefill_ms is not None:
        text += f" in {prefill.prefill_ms:.1f} ms"
    if prefill.copy_ms is not None:
        text += f", prefix copy {prefill.copy_ms:.1f} ms"
    return text


def case_q4_0(client: httpx.Client, server: Server, sizes: Sizes, args: argparse.Namespace) -> Q4Result:
    single = case_single(client, server, sizes, args)
    print(f"  {sizes.streams} streams:")
    return Q4Result(single, case_streams(client, server, sizes.streams, sizes, args))


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


def report_single(case: str, results: dict[str, SingleResult], sizes: Sizes) -> list[Row]:
    sijo, peer = results.get(SIJO), results.get(PEER)
    s_rate = median_decode_tps(sijo.runs) if sijo else None
    p_rate = median_decode_tps(peer.runs) if peer else None
    s_ttft = median_ttft_s(sijo.runs) if sijo else None
    p_ttft = median_ttft_s(peer.runs) if peer else None
    value = ratio(s_rate, p_rate)
    target = TARGETS["single"]
    print(
        f"\n[{case}] single stream, median of {sizes.single_runs} runs of {sizes.single_max_tokens} tokens: "
        f"decode {SIJO} {fmt(s_rate, '.1f')} tok/s, {PEER} {fmt(p_rate, '.1f')} tok/s; "
        f"ratio Sijo/peer {fmt(value, '.3f')} {against(value, target)}"
    )
    print(f"[{case}] median TTFT {SIJO} {ms(s_ttft)}, {PEER} {ms(p_ttft)}")
    for name, res in results.items():
        warning = short_output_warning(name, res.runs)
        if warning:
            print(f"[{case}] {warning}")
    if sijo and peer:
        same = {r.text for r in sijo.runs} == {r.text for r in peer.runs}
        print(f"[{case}] identical output text across servers: {'yes' if same else 'no'}")
    return [
        Row(
            case,
            "single-stream decode tok/s",
            fmt(s_rate, ".1f"),
            fmt(p_rate, ".1f"),
            "Sijo/peer",
            value,
            target,
        ),
    ]


def report_streams(
    case: str, results: dict[str, StreamsResult], sizes: Sizes, target: float | None
) -> list[Row]:
    sijo, peer = results.get(SIJO), results.get(PEER)
    streams = next(iter(results.values())).streams if results else 0
    s_rate = sijo.median_rate() if sijo else None
    p_rate = peer.median_rate() if peer else None
    value = ratio(s_rate, p_rate)
    wanted = "" if target is None else f" {against(value, target)}"
    print(
        f"\n[{case}] median aggregate output tok/s over {sizes.rounds} rounds of {streams} streams: "
        f"{SIJO} {fmt(s_rate, '.1f')}, {PEER} {fmt(p_rate, '.1f')}; "
        f"ratio Sijo/peer {fmt(value, '.3f')}{wanted}"
    )
    if sijo and peer:
        common = sijo.texts.keys() & peer.texts.keys()
        same = sum(sijo.texts[p] == peer.texts[p] for p in common)
        print(f"[{case}] identical output text for {same}/{len(common)} prompts across servers")
    return [
        Row(case, f"aggregate tok/s ({streams} streams)", fmt(s_rate, ".1f"), fmt(p_rate, ".1f"),
            "Sijo/peer", value, target),
    ]  # fmt: skip


def report_ttft(results: dict[str, TtftResult]) -> list[Row]:
    print()
    for name, res in results.items():
        print(
            f"[ttft] {name}: cold {ms(res.cold_s())}, warm (median of {len(res.warm)}) {ms(res.warm_s())}, "
            f"cold/warm {fmt(ratio(res.cold_s(), res.warm_s()), '.1f')}"
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
    warm_ratio = ratio(p_warm, s_warm)

    def cold_warm(res: TtftResult | None) -> float | None:
        return None if res is None else ratio(res.cold_s(), res.warm_s())

    print(
        f"[ttft] warm TTFT ratio peer/Sijo {fmt(warm_ratio, '.3f')} {against(warm_ratio, TARGETS['warm'])}"
        f"; {SIJO} cold/warm {fmt(cold_warm(sijo), '.1f')} "
        f"{against(cold_warm(sijo), TARGETS['cold/warm'])}"
    )
    s_cold = sijo.cold_s() if sijo else None
    p_cold = peer.cold_s() if peer else None
    return [
        Row("ttft", "warm TTFT (ms)", fmt(to_ms(s_warm), ".1f"), fmt(to_ms(p_warm), ".1f"),
            "peer/Sijo", warm_ratio, TARGETS["warm"]),
        Row("ttft", "cold TTFT (ms)", fmt(to_ms(s_cold), ".1f"), fmt(to_ms(p_cold), ".1f"),
            "peer/Sijo", ratio(p_cold, s_cold), None),
        Row("ttft", "cold/warm", fmt(cold_warm(sijo), ".1f"), fmt(cold_warm(peer), ".1f"),
            "Sijo cold/warm", cold_warm(sijo), TARGETS["cold/warm"]),
    ]  # fmt: skip


def report_tenants(results: dict[str, TenantsResult], sizes: Sizes) -> list[Row]:
    sijo, peer = results.get(SIJO), results.get(PEER)
    s_mean = sijo.mean_s() if sijo else None
    p_mean = peer.mean_s() if peer else None
    value = ratio(p_mean, s_mean)
    target = TARGETS["tenants"]
    print(
        f"\n[tenants] mean TTFT over {sizes.tenant_passes} passes x {sizes.tenants} tenants: "
        f"{SIJO} {ms(s_mean)}, {PEER} {ms(p_mean)}; ratio peer/Sijo {fmt(value, '.2f')} "
        f"{against(value, target)}"
    )
    for name, res in ((SIJO, sijo), (PEER, peer)):
        if res is not None and res.prefills:
            print(f"  {name}: per request, {mean_prefill(res.prefills)}")
    return [
        Row("tenants", f"mean TTFT ({sizes.tenants} tenants) (ms)", fmt(to_ms(s_mean), ".1f"),
            fmt(to_ms(p_mean), ".1f"), "peer/Sijo", value, target),
    ]  # fmt: skip


def mean_prefill(prefills: Sequence[Prefill]) -> str:
    text = f"mean prompt tokens decoded {statistics.fmean(p.tokens for p in prefills):.1f}"
    timed = [p.prefill_ms for p in prefills if p.prefill_ms is not None]
    if timed:
        text += f" in {statistics.fmean(timed):.1f} ms"
    copies = [p.copy_ms for p in prefills if p.copy_ms is not None]
    if copies:
        text += f", prefix copy {statistics.fmean(copies):.1f} ms"
    return text


def report(case: str, results: dict[str, Any], sizes: Sizes) -> list[Row]:
    if case == "single":
        return report_single(case, results, sizes)
    if case == "streams":
        return report_streams(case, results, sizes, TARGETS["streams"])
    if case == "streams16":
        return report_streams(case, results, sizes, None)
    if case == "ttft":
        return report_ttft(results)
    if case == "tenants":
        return report_tenants(results, sizes)
    singles = {name: res.single for name, res in results.items()}
    streams = {name: res.streams for name, res in results.items()}
    return report_single(case, singles, sizes) + report_streams(case, streams, sizes, TARGETS["streams"])


def print_summary(rows: Sequence[Row], overhead: dict[str, EngineCounters], failures: Sequence[str]) -> None:
    print("\nSummary")
    header = (
        f"{'case':<10}{'metric':<34}{SIJO:>10}{PEER:>14}  {'ratio':<16}{'value':>8}{'target':>9}  verdict"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        target = target_text(row.target)
        print(
            f"{row.case:<10}{row.metric:<34}{row.sijo:>10}{row.peer:>14}  {row.ratio_label:<16}"
            f"{fmt(row.ratio, '8.3f'):>8}{target:>9}  {verdict(row.ratio, row.target)}"
        )
    for case, counters in overhead.items():
        print(f"{SIJO} engine after {case}: {counters.describe()}")
    for failure in failures:
        print(f"FAILED: {failure}")


# --------------------------------------------------------------------------- driver


def run_case(
    client: httpx.Client,
    case: str,
    name: str,
    sizes: Sizes,
    args: argparse.Namespace,
    prompts: Prompts,
    log_dir: Path,
    kernels: Kernels,
    overhead: dict[str, EngineCounters],
) -> CaseResult:
    """Start a fresh server, run one case on it, read Sijo's engine counters, stop the server."""
    model = args.q4_0_model if case == "q4_0" else args.model
    with serving(name, args, log_dir, kernels, model=model) as server:
        cases: dict[str, Callable[[], CaseResult]] = {
            "single": lambda: case_single(client, server, sizes, args),
            "streams": lambda: case_streams(client, server, sizes.streams, sizes, args),
            "streams16": lambda: case_streams(client, server, sizes.streams16, sizes, args),
            "ttft": lambda: case_ttft(client, server, sizes, args, prompts),
            "tenants": lambda: case_tenants(client, server, sizes, args, prompts),
            "q4_0": lambda: case_q4_0(client, server, sizes, args),
        }
        result = cases[case]()
        if name == SIJO:
            overhead[case] = sijo_counters(client, server.base_url)
            print(f"  {SIJO} /sijo/status: {overhead[case].describe()}")
        return result


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Parallel streams, prompt-cache and Q4_0 benchmark: Sijo vs. llama-server --parallel 8."
    )
    parser.add_argument("--model", type=Path, default=None, help="GGUF (default: SmolLM2-135M)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for both servers (default 2)")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma list of {', '.join(CASES)}")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    parser.add_argument("--ctx", type=int, default=65536, help="llama-server -c (default 65536)")
    parser.add_argument("--parallel", type=int, default=8, help="llama-server --parallel (default 8)")
    add_server_args(parser)
    add_measure_args(
        parser, request_timeout=600.0, retries=2,
        retries_help="times to repeat a single-stream run or a streams round during which other "
        "processes used the CPU",
    )  # fmt: skip
    parser.add_argument("--verbose", action="store_true", help="print every tenant request")
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
    names = selected_names(args)
    sizes = QUICK if args.quick else FULL
    raise_on_sigterm()
    args.q4_0_model = q4_0_model(args.model) if "q4_0" in args.case_list else None
    log_root = Path(tempfile.mkdtemp(prefix="sijo-bench-parallel-"))
    prompts = Prompts()
    rows: list[Row] = []
    overhead: dict[str, EngineCounters] = {}
    failures: list[str] = []
    timeout = httpx.Timeout(args.request_timeout, connect=10.0)
    limits = httpx.Limits(max_connections=max(16, 2 * sizes.streams16))
    print(
        f"model={args.model.name} threads={args.threads} cases={','.join(args.case_list)} "
        f"{'QUICK ' if args.quick else ''}sizes={sizes}"
    )
    if args.q4_0_model is not None:
        print(f"q4_0 model: {args.q4_0_model}")
    models = [args.model] if set(args.case_list) - {"q4_0"} else []
    models += [args.q4_0_model] if args.q4_0_model else []
    kernels = print_kernels(args, names, models, log_root)
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
                            client, case, name, sizes, args, prompts, log.parent, kernels, overhead
                        )
                    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:
                        failures.append(f"{case} on {name}: {exc}")
                        print(f"  FAILED: {exc}\n  log {log}:\n{tail(log)}")
                disturbed = sum(r.disturbed for r in results.values())
                if disturbed:
                    print(f"\nwarning: {disturbed} measurement(s) of case {case} ran while other processes "
                          "used the CPU; rerun on a quiet machine")  # fmt: skip
                if results:
                    rows += report(case, results, sizes)
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
    except (RuntimeError, TimeoutError, httpx.HTTPError) as exc:  # servers already stopped
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
