"""The embedded engine with a projector (real model, the test projector of `tests/projector.py`):
images are decoded between the text batches, batched with other requests without changing what
each computes, reused from kept prefixes without being encoded again, and requests that leave while
an image is in flight leak no KV cells."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sijo.config import EngineConfig
from sijo.engines.base import Bitmap, GenerationRequest, ImageSpan, KeepPoint, Sampling, placeholders
from sijo.engines.llama_cpp import LlamaCppEngine
from tests.projector import write_projector

GREEDY = Sampling(temperature=0.0)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppEngine]:
    projector = write_projector(tmp_path_factory.mktemp("projector") / "mmproj.gguf")
    config = EngineConfig(threads=2, slots=4, context_window=2048, kv_size=8192, mmproj=projector)
    loaded = LlamaCppEngine.load(config)
    yield loaded
    asyncio.run(loaded.aclose())


def bitmap(color: tuple[int, int, int], width: int = 40, height: int = 30) -> Bitmap:
    rgb = bytes(color) * (width * height)
    return Bitmap(width, height, rgb, hashlib.sha256(f"{width}x{height}:".encode() + rgb).hexdigest())


async def prompt(
    engine: LlamaCppEngine, picture: Bitmap, question: str = "Describe this."
) -> tuple[tuple[int, ...], ImageSpan]:
    before, count, after = (await engine.image_tokens(picture)).pieces  # the test projector's layout
    assert isinstance(before, tuple) and isinstance(count, int) and isinstance(after, tuple)
    tokens = await engine.tokenize("<|im_start|>user\n", special=True)
    tokens += before
    span = ImageSpan(len(tokens), count, picture)
    tokens += placeholders(picture.digest, count) + after
    tokens += await engine.tokenize(f"\n{question}<|im_end|>\n<|im_start|>assistant\n", special=True)
    return tuple(tokens), span


async def logits(engine: LlamaCppEngine, request: GenerationRequest) -> np.ndarray:
    job = engine.job(request)
    job.logits = []
    async for _ in engine.run(job):
        pass
    return np.stack(job.logits)


async def settled(engine: LlamaCppEngine) -> None:
    for _ in range(500):
        stats = engine.stats()
        if stats["running"] == 0 and stats["waiting"] == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the engine did not become idle")


async def test_an_image_is_its_positions_and_changes_the_logits(engine: LlamaCppEngine) -> None:
    red, blue = bitmap((255, 0, 0)), bitmap((0, 0, 255))
    (red_tokens, red_span), (blue_tokens, blue_span) = await prompt(engine, red), await prompt(engine, blue)
    assert red_span.count > 0 and len(red_tokens) == len(blue_tokens)
    red_logits = await logits(engine, GenerationRequest(red_tokens, 3, GREEDY, images=(red_span,)))
    blue_logits = await logits(engine, GenerationRequest(blue_tokens, 3, GREEDY, images=(blue_span,)))
    assert np.max(np.abs(red_logits[0] - blue_logits[0])) > 2.0
    engine.scheduler.store.clear()
    again = await logits(engine, GenerationRequest(red_tokens, 3, GREEDY, images=(red_span,)))
    np.testing.assert_allclose(again, red_logits, rtol=1e-4, atol=1e-4)


async def test_batched_image_requests_compute_what_each_computes_alone(engine: LlamaCppEngine) -> None:
    pictures = [bitmap((i * 60, 255 - i * 60, 90)) for i in range(4)]
    prompts = [await prompt(engine, p, f"Question {i}?") for i, p in enumerate(pictures)]
    alone = []
    for tokens, span in prompts:
        engine.scheduler.store.clear()
        alone.append(await logits(engine, GenerationRequest(tokens, 2, GREEDY, images=(span,))))
    engine.scheduler.store.clear()
    together = await asyncio.gather(
        *(logits(engine, GenerationRequest(tokens, 2, GREEDY, images=(span,))) for tokens, span in prompts)
    )
    for one, batched in zip(alone, together, strict=True):
        assert np.max(np.abs(batched[0] - one[0])) < 1.0  # noise of kernels that are not batch-invariant
        top2 = np.sort(one[0])[-2:]
        if top2[1] - top2[0] > 0.5:
            assert int(np.argmax(batched[0])) == int(np.argmax(one[0]))


async def test_a_kept_image_prefix_is_reused_without_encoding_again(engine: LlamaCppEngine) -> None:
    picture = bitmap((12, 34, 56))
    tokens, span = await prompt(engine, picture)
    keep = (KeepPoint(span.start + span.count, 300.0),)
    first = await logits(engine, GenerationRequest(tokens, 1, GREEDY, namespace="w", keep=keep, images=(span,)))
    encoded = engine.stats()["images_encoded"]
    job = engine.job(GenerationRequest(tokens, 1, GREEDY, namespace="w", images=(span,)))
    job.logits = []
    async for _ in engine.run(job):
        pass
    assert job.reused >= span.start + span.count  # the image's cells came from the kept prefix
    assert engine.stats()["images_encoded"] == encoded
    # the same logits up to the noise of kernels that are not batch-invariant (a different image is
    # tens of units away: the first test)
    assert np.max(np.abs(job.logits[0] - first[0])) < 1.0
    other = bitmap((56, 34, 12))
    other_tokens, other_span = await prompt(engine, other)
    job = engine.job(GenerationRequest(other_tokens, 1, GREEDY, namespace="w", images=(other_span,)))
    async for _ in engine.run(job):
        pass
    assert job.reused <= other_span.start  # another picture shares the text before it, never its cells


async def test_leaving_with_an_image_in_flight_leaks_no_cells(engine: LlamaCppEngine) -> None:
    async def leave_early(picture: Bitmap, chunks: int) -> None:
        tokens, span = await prompt(engine, picture)
        generation = engine.generate(GenerationRequest(tokens, 50, GREEDY, images=(span,)))
        seen = 0
        async for _ in generation:
            seen += 1
            if seen >= chunks:
                break
        await generation.aclose()

    async def cancel_soon(picture: Bitmap) -> None:
        task = asyncio.ensure_future(leave_early(picture, 5))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    pictures = [bitmap((i, 2 * i, 3 * i)) for i in range(1, 7)]
    await asyncio.gather(
        *(leave_early(p, 1 + i % 3) for i, p in enumerate(pictures[:3])),
        *(cancel_soon(p) for p in pictures[3:]),
    )
    await settled(engine)
    streams = engine.scheduler.streams
    assert engine.positions_held() == {s.seq: s.length for s in streams.all if s.length}
    streams.clear_idle()
    assert engine.positions_held() == {}


def test_a_missing_projector_file_is_a_clear_error(tmp_path: Path) -> None:
    from sijo.engines.llama_cpp.model_file import ModelFileError

    with pytest.raises(ModelFileError, match="mmproj file not found"):
        LlamaCppEngine.load(EngineConfig(threads=1, context_window=256, mmproj=tmp_path / "none.gguf"))
