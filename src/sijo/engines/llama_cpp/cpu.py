"""Which of llama.cpp's CPU code paths the engine may take: none that can crash the machine it runs on.

llama.cpp's AMX kernels (Intel Xeon Sapphire Rapids and later, most current x86 cloud servers) crash
on the first decode (`ggml_backend_amx_mul_mat`, at `ldtilecfg`; llama.cpp issue #20824, fix pending
in PR #26954). `scripts/install-llama-cpp.sh` therefore compiles llama.cpp without them, keeping the
weight-repacking kernels that speed up Q4_0/IQ4_NL/Q4_K weights. A build that has AMX kernels anyway
(llama-cpp-python installed some other way) loads weights without llama.cpp's extra buffer types:
that turns off AMX, and with it, alas, repacking — slower, never a crash.
"""

from __future__ import annotations

import logging

import llama_cpp

logger = logging.getLogger("sijo.engine")


def build_features() -> dict[str, str]:
    """The features the loaded llama.cpp was compiled with, as its system info lists them
    (`CPU : SSE3 = 1 | AVX2 = 1 | ... | AMX_INT8 = 1 | ...`)."""
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    features: dict[str, str] = {}
    for backend in info.split("\n"):
        _, _, listed = backend.rpartition(" : ")
        for item in listed.split("|"):
            name, sep, value = item.partition("=")
            if sep:
                features[name.strip()] = value.strip()
    return features


def has_amx_kernels() -> bool:
    return build_features().get("AMX_INT8") == "1"


def extra_buffer_types_safe() -> bool:
    """Whether llama.cpp may place weights in its extra buffer types (repacked, or AMX if compiled in)."""
    if not has_amx_kernels():
        return True
    logger.warning(
        "this llama-cpp-python was compiled with llama.cpp's AMX kernels, which crash on AMX CPUs: "
        "weight repacking is off (slower). Reinstall it with scripts/install-llama-cpp.sh to get it back."
    )
    return False
