"""No CPU feature can crash the engine: llama.cpp's AMX kernels (which crash on AMX CPUs, llama.cpp
#20824) are never taken, whatever build of llama-cpp-python is installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import llama_cpp
import pytest

from sijo.engines.llama_cpp import cpu

# A prompt long enough for llama.cpp's batched matrix multiplication (where the AMX kernels ran and
# crashed; a few tokens take another path), on every core (the crash was in worker threads).
GENERATE = textwrap.dedent(
    """
    import asyncio, os
    from sijo.config import EngineConfig
    from sijo.engines.base import GenerationRequest, Sampling
    from sijo.engines.llama_cpp import LlamaCppEngine

    async def main() -> None:
        engine = LlamaCppEngine.load(EngineConfig(threads=max(2, os.cpu_count() or 1), context_window=1024, slots=2))
        try:
            prompt = await engine.tokenize("Hello there, " * 60, special=False)
            assert len(prompt) > 100, len(prompt)
            chunks = [c async for c in engine.generate(GenerationRequest(tuple(prompt), 4, Sampling(temperature=0)))]
            assert chunks[-1].finish is not None
        finally:
            await engine.aclose()
        print("generated", sum(c.tokens for c in chunks), "tokens; AMX kernels:", cpu.has_amx_kernels())

    from sijo.engines.llama_cpp import cpu
    asyncio.run(main())
    """
)


def test_a_generation_in_a_fresh_process_exits_cleanly() -> None:
    """On an AMX CPU this died with SIGSEGV (exit -11) on its first prompt; elsewhere it always passed."""
    result = subprocess.run(
        [sys.executable, "-c", GENERATE], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr[-3000:]}"
    assert "generated 4 tokens" in result.stdout


def test_the_installed_build_reports_its_features() -> None:
    features = cpu.build_features()
    assert features, llama_cpp.llama_print_system_info()
    assert all(value for value in features.values())


@pytest.mark.parametrize(("amx", "safe"), [("1", False), ("0", True), (None, True)])
def test_extra_buffer_types_are_refused_only_to_a_build_with_amx_kernels(
    monkeypatch: pytest.MonkeyPatch, amx: str | None, safe: bool
) -> None:
    listed = "CPU : SSE3 = 1 | AVX2 = 1 | " + (f"AMX_INT8 = {amx} | " if amx else "") + "REPACK = 1 | "
    monkeypatch.setattr(cpu.llama_cpp, "llama_print_system_info", lambda: listed.encode())
    assert cpu.has_amx_kernels() is (amx == "1")
    assert cpu.extra_buffer_types_safe() is safe
