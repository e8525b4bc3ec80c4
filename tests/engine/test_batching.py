"""The embedded engine itself (real model, in-process): continuous batching computes what each
sequence computes alone, cancelled requests leak no KV cells, kept prefixes are really reused (in
place, or copied from host RAM into another slot's stream, for concurrent requests too), and the
admission queue is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from sijo.config import EngineConfig
from sijo.engines.base import GenerationRequest, KeepPoint, Sampling
from sijo.engines.llama_cpp import LlamaCppEngine
from sijo.engines.llama_cpp.scheduler import Job
from sijo.errors import OverloadedError

GREEDY = Sampling(temperature=0.0)
QUESTIONS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "List three prime numbers.",
    "Explain what a noun is, briefly, in one sentence for a child who is learning English.",
]


def chat(question: str, system: str = "") -> str:
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return f"{head}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    loaded = LlamaCppEngine.load(EngineConfig(threads=2, slots=8, context_window=4096, kv_size=16384))
    yield loaded
    asyncio.run(loaded.aclose())


async def tokens(engine: LlamaCppEngine, text: str) -> tuple[int, ...]:
    return tuple(await engine.tokenize(text, special=True))


async def forced_logits(
    engine: LlamaCppEngine, prompt: tuple[int, ...], forced: tuple[int, ...]
) -> np.ndarray:
    job = engine.job(GenerationRequest(prompt, len(forced), GREEDY))
    job.forced, job.logits = forced, []
    async for _ in engine.run(job):
        pass
    return np.stack(job.logits)


async def greedy(engine: LlamaCppEngine, prompt: tuple[int, ...], n: int) -> tuple[int, ...]:
    job = engine.job(GenerationRequest(prompt, n, GREEDY))
    job.logits = []
    async for _ in engine.run(job):
        pass
    return tuple(int(np.argmax(row)) for row in job.logits)


async def settled(engine: LlamaCppEngine) -> dict[str, int | float]:
    for _ in range(200):
        stats = engine.stats()
        if stats["running"] == 0 and stats["waiting"] == 0:
            return stats
        await asyncio.sleep(0.01)
    raise AssertionError("the engine did not become idle")


async def test_batched_logits_match_each_sequence_alone(engine: LlamaCppEngine) -> None:
    prompts = [await tokens(engine, chat(q)) for q in QUESTIONS]
    continuations = [await greedy(engine, p, 12) for p in prompts]
    alone = [await forced_logits(engine, p, c) for p, c in zip(prompts, continuations, strict=True)]
    batched = await asyncio.gather(
        *(forced_logits(engine, p, c) for p, c in zip(prompts, continuations, strict=True))
    )
    for solo, together in zip(alone, batched, strict=True):
        assert solo.shape == together.shape
        # floating-point noise of kernels that are not batch-invariant: up to 1.04 measured on an
        # AVX2-only AMD EPYC, far below what sets two sequences apart (checked below)
        assert np.max(np.abs(solo - together)) < 2.0
        # greedy choices agree except where the top two are a near-tie
        top2 = np.sort(solo, axis=1)[:, -2:]
        decided = (top2[:, 1] - top2[:, 0]) > 0.5
        assert np.array_equal(solo.argmax(1)[decided], together.argmax(1)[decided])
    # the check can fail: two different sequences' logits are far apart
    assert np.max(np.abs(alone[0][0] - alone[1][0])) > 5.0


async def test_cancelled_requests_free_their_slots_and_cells(engine: LlamaCppEngine) -> None:
    long_prompt = await tokens(engine, chat("Tell me a long story. " * 60))
    short_prompts = [await tokens(engine, chat(q)) for q in QUESTIONS]

    async def leave_after(prompt: tuple[int, ...], chunks: int) -> None:
        generation = engine.generate(GenerationRequest(prompt, 200, Sampling(temperature=0.7)))
        seen = 0
        async for _ in generation:
            seen += 1
            if seen >= chunks:
                break
        await generation.aclose()

    async def leave_during_prefill(prompt: tuple[int, ...]) -> None:
        task = asyncio.ensure_future(leave_after(prompt, 1))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    for _ in range(3):
        await asyncio.gather(
            *(leave_after(p, i + 1) for i, p in enumerate(short_prompts * 2)),
            leave_during_prefill(long_prompt),
            leave_during_prefill(long_prompt),
        )
    await settled(engine)
    streams = engine.scheduler.streams
    # llama.cpp agrees: only finished requests' leftovers hold cells, exactly the positions recorded
    assert engine.positions_held() == {s.seq: s.length for s in streams.all if s.length}
    # a full batch still runs to the end
    results = await asyncio.gather(*(greedy(engine, p, 8) for p in short_prompts * 2))
    assert all(len(r) >= 1 for r in results)
    await settled(engine)
    held = engine.positions_held()
    assert len(held) == 8 and held == {s.seq: s.length for s in streams.all}
    streams.clear_idle()
    assert engine.positions_held() == {}


async def test_a_kept_prefix_is_reused_without_recomputing(engine: LlamaCppEngine) -> None:
    system = "You answer questions about the following document. " + "Facts about ships and seas. " * 80
    first = await tokens(engine, chat("Who sails?", system))
    head = len(await tokens(engine, f"<|im_start|>system\n{system}"))
    keep = (KeepPoint(head, 300.0),)
    before = engine.stats()
    async for _ in engine.generate(GenerationRequest(first, 4, GREEDY, namespace="a", keep=keep)):
        pass
    second = await tokens(engine, chat("What is a keel?", system))
    middle = engine.stats()
    job = engine.job(GenerationRequest(second, 4, GREEDY, namespace="a", keep=keep))
    async for _ in engine.run(job):
        pass
    after = engine.stats()
    assert middle["prompt_tokens"] - before["prompt_tokens"] == len(first)
    assert job.reused >= head
    assert after["prompt_tokens"] - middle["prompt_tokens"] == len(second) - job.reused
    # another namespace never shares those cells
    other = engine.job(GenerationRequest(second, 4, GREEDY, namespace="b"))
    async for _ in engine.run(other):
        pass
    assert other.reused == 0


async def test_concurrent_requests_each_copy_a_kept_prefix(engine: LlamaCppEngine) -> None:
    system = "You answer questions about the following document. " + "Facts about bread and ovens. " * 80
    head = len(await tokens(engine, f"<|im_start|>system\n{system}"))
    keep = (KeepPoint(head, 300.0),)
    first = await tokens(engine, chat("Who bakes?", system))
    async for _ in engine.generate(GenerationRequest(first, 2, GREEDY, namespace="c", keep=keep)):
        pass
    store = engine.scheduler.store
    restored = store.restored
    prompts = [await tokens(engine, chat(q, system)) for q in QUESTIONS]
    jobs = [engine.job(GenerationRequest(p, 4, GREEDY, namespace="c", keep=keep)) for p in prompts]
    before = engine.stats()["prompt_tokens"]

    async def run(job: Job) -> None:
        async for _ in engine.run(job):
            pass

    await asyncio.gather(*(run(job) for job in jobs))
    assert all(job.reused >= head for job in jobs)
    # at most one continues in place, in the first request's stream; the others copy from host RAM
    assert store.restored - restored >= len(jobs) - 1
    assert engine.stats()["prompt_tokens"] - before == sum(
        len(p) - j.reused for p, j in zip(prompts, jobs, strict=True)
    )


async def test_kept_prefixes_come_back_from_host_ram() -> None:
    # leftover_ttl = 0: a finished request leaves nothing in its stream, so every hit is a copy
    engine = LlamaCppEngine.load(
        EngineConfig(threads=2, slots=2, context_window=2048, kv_size=4096, leftover_ttl=0, host_cache_mb=60)
    )
    try:
        topics = (
            "Ships sail across stormy seas. ",
            "Bakers knead bread in ovens. ",
            "Planets orbit distant stars. ",
        )
        systems = [f"Tenant {i}. " + topic * 160 for i, topic in enumerate(topics)]
        prompts = [await tokens(engine, chat("Summarise.", s)) for s in systems]
        heads = [len(await tokens(engine, f"<|im_start|>system\n{s}")) for s in systems]
        cold = []
        for prompt, head in zip(prompts, heads, strict=True):
            cold.append(await greedy_keep(engine, prompt, head))
        store = engine.scheduler.store
        assert engine.positions_held() == {}
        # ~23 KB a cell: 60 MB holds two of the three prefixes; the one that expires soonest went
        assert store.saved == 3 and len(store.entries) == 2
        assert 0 < store.host_bytes() <= 60 * 1024 * 1024
        assert {tuple(e.tokens) for e in store.entries} == {
            tuple(p[:h]) for p, h in zip(prompts[1:], heads[1:], strict=True)
        }
        assert store.restored == 0  # tenants share a few template tokens: not worth a copy
        before = engine.stats()["prompt_tokens"]
        warm = await greedy_keep(engine, prompts[1], heads[1])
        assert store.restored == 1
        assert engine.stats()["prompt_tokens"] - before == len(prompts[1]) - heads[1]
        # The copied cells give the first step's logits the cold prompt gave, up to the noise of
        # decoding the rest of the prompt in other batches (so greedy text may part at a near-tie:
        # it did on an AVX2-only AMD EPYC); another tenant's logits are far away.
        assert np.max(np.abs(warm - cold[1])) < 2.0
        assert all(np.max(np.abs(warm - other)) > 4.0 for i, other in enumerate(cold) if i != 1)
        # the evicted one is recomputed (and kept again)
        before = engine.stats()["prompt_tokens"]
        await greedy_keep(engine, prompts[0], heads[0])
        assert engine.stats()["prompt_tokens"] - before == len(prompts[0])
        assert store.saved == 4
    finally:
        await engine.aclose()


async def greedy_keep(engine: LlamaCppEngine, prompt: tuple[int, ...], head: int) -> np.ndarray:
    """The first step's logits of `prompt`, keeping its first `head` tokens."""
    job = engine.job(GenerationRequest(prompt, 6, GREEDY, keep=(KeepPoint(head, 300.0),)))
    job.logits = []
    async for _ in engine.run(job):
        pass
    return job.logits[0]


async def test_the_admission_queue_is_bounded() -> None:
    engine = LlamaCppEngine.load(
        EngineConfig(threads=2, slots=1, max_queue=1, context_window=512, kv_size=1024)
    )
    try:
        prompt = await tokens(engine, chat("Count to one hundred."))
        running = engine.generate(GenerationRequest(prompt, 400, GREEDY))
        await running.__anext__()
        queued = asyncio.ensure_future(greedy(engine, prompt, 2))
        await asyncio.sleep(0.05)
        with pytest.raises(OverloadedError) as refused:
            engine.admit()
        assert refused.value.headers["retry-after"] == "1"
        await running.aclose()  # the slot frees, the queued request runs
        assert len(await queued) == 2
        engine.admit().release()
    finally:
        await engine.aclose()


async def test_interactive_requests_are_admitted_before_waiting_background_ones() -> None:
    engine = LlamaCppEngine.load(
        EngineConfig(threads=2, slots=1, max_queue=4, context_window=512, kv_size=1024)
    )
    try:
        prompt = await tokens(engine, chat("Count to one hundred."))
        running = engine.generate(GenerationRequest(prompt, 400, GREEDY))
        await running.__anext__()
        order: list[str] = []

        async def run(name: str, background: bool) -> None:
            async for _ in engine.generate(GenerationRequest(prompt, 3, GREEDY, background=background)):
                order.append(name)

        batch = asyncio.ensure_future(run("batch", background=True))
        await asyncio.sleep(0.05)  # the batch request waits first…
        interactive = asyncio.ensure_future(run("interactive", background=False))
        await asyncio.sleep(0.05)
        await running.aclose()  # …but the freed slot goes to the interactive one
        await asyncio.gather(batch, interactive)
        assert order[0] == "interactive" and order.index("batch") > order.index("interactive")
        assert order == sorted(order, key=lambda name: name == "batch")  # all of it before the batch
    finally:
        await engine.aclose()
