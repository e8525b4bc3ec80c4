"""The embedded engine: llama.cpp in-process through llama-cpp-python's low-level API."""

from sijo.engines.llama_cpp.engine import LlamaCppEngine

__all__ = ["LlamaCppEngine"]
