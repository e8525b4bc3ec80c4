"""Projector: a multimodal projector (`mmproj` GGUF) read by llama.cpp's `libmtmd`.

It does three things for the engine, through the low-level bindings (`llama_cpp.mtmd_cpp`), never
llama-cpp-python's chat handlers (they clear the KV cache on every call):

- `tokens(bitmap)`: what an image costs in a prompt — the projector's image positions and the text
  tokens it wraps them in — without encoding it (count_tokens needs the exact figure);
- `encode(bitmap)`: the image's embeddings, kept by pixel digest in a bounded cache, so an image
  sent again (and not cached in the KV cache) skips the vision encoder;
- `decode(...)`: write an image's embeddings into a sequence of the shared llama.cpp context, at
  given positions; the scheduler calls it between its batches, on its own thread.

One lock serialises every call into the mtmd context: it is not safe to share between threads.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt
from llama_cpp import mtmd_cpp
from llama_cpp._logger import llama_log_callback

from sijo.engines.base import Bitmap, ImageInputUnsupportedError, ImageSpan, ImageTokens
from sijo.engines.llama_cpp.model_file import ModelFileError

_EMBEDDING_CACHE_BYTES = 256 * 1024 * 1024  # encoded images kept for reuse, most recent first
_CHUNKS_KEPT = 16  # tokenized images (libmtmd chunks, preprocessed pixels) kept for their encode


class ProjectorError(RuntimeError):
    """libmtmd failed to tokenize, encode or decode an image (an engine fault)."""


@dataclass(frozen=True, slots=True)
class _Tokenized:
    cost: ImageTokens
    chunks: tuple[Any, ...]  # owned mtmd_input_chunks, one per image part, freed when dropped


class Projector:
    def __init__(self, mctx: Any, n_embd: int, batch_size: int) -> None:
        self._mctx = mctx
        self._n_embd = n_embd
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._chunks: OrderedDict[str, _Tokenized] = OrderedDict()
        self._embeddings: OrderedDict[tuple[str, int], npt.NDArray[np.float32]] = OrderedDict()
        self._embedding_bytes = 0
        self.encoded = 0  # images run through the vision encoder (for tests and operators)
        self.encode_seconds = 0.0

    @classmethod
    def load(cls, path: Path, model: Any, threads: int, batch_size: int) -> Projector:
        """Load `path` for the text model `model` (a llama_model pointer), whose context decodes
        `batch_size` positions at most in one micro-batch."""
        if not path.is_file():
            raise ModelFileError(f"mmproj file not found: {path}")
        # libmtmd logs every image at INFO to stderr: route it through llama.cpp's quiet logger.
        mtmd_cpp.mtmd_log_set(llama_log_callback, ctypes.c_void_p(0))
        mtmd_cpp.mtmd_helper_log_set(llama_log_callback, ctypes.c_void_p(0))
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = threads
        params.print_timings = False
        mctx = mtmd_cpp.mtmd_init_from_file(str(path).encode(), model, params)
        if not mctx:
            raise ModelFileError(f"libmtmd could not load the projector {path} for this model")
        if not mtmd_cpp.mtmd_support_vision(mctx):
            mtmd_cpp.mtmd_free(mctx)
            raise ModelFileError(f"the projector {path} reads no images (audio only)")
        if mtmd_cpp.mtmd_decode_use_mrope(mctx):
            mtmd_cpp.mtmd_free(mctx)
            raise ModelFileError(
                f"the projector {path} uses M-RoPE positions (the Qwen2-VL family), which Sijo's "
                "engine does not place yet; use a SmolVLM, Gemma 3 or other non-M-RoPE build"
            )
        return cls(mctx, llama_cpp.llama_model_n_embd(model), batch_size)

    def close(self) -> None:
        with self._lock:
            for item in self._chunks.values():
                _free(item)
            self._chunks.clear()
            self._embeddings.clear()
            mtmd_cpp.mtmd_free(self._mctx)

    # --- tokens --------------------------------------------------------------------------------

    def tokens(self, bitmap: Bitmap) -> ImageTokens:
        with self._lock:
            return self._tokenized(bitmap).cost

    def _tokenized(self, bitmap: Bitmap) -> _Tokenized:
        found = self._chunks.get(bitmap.digest)
        if found is not None:
            self._chunks.move_to_end(bitmap.digest)
            return found
        made = self._tokenize(bitmap)
        self._chunks[bitmap.digest] = made
        while len(self._chunks) > _CHUNKS_KEPT:
            _, old = self._chunks.popitem(last=False)
            _free(old)
        return made

    def _tokenize(self, bitmap: Bitmap) -> _Tokenized:
        pixels = (ctypes.c_uint8 * len(bitmap.rgb)).from_buffer_copy(bitmap.rgb)
        handle = mtmd_cpp.mtmd_bitmap_init(bitmap.width, bitmap.height, pixels)
        if not handle:
            raise ImageInputUnsupportedError("the projector could not take the image's pixels")
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        try:
            mtmd_cpp.mtmd_bitmap_set_id(handle, bitmap.digest.encode())
            marker = mtmd_cpp.mtmd_default_marker()
            text = mtmd_cpp.mtmd_input_text(marker, len(marker), False, True)
            bitmaps = (mtmd_cpp.mtmd_bitmap_p_ctypes * 1)(handle)
            status = mtmd_cpp.mtmd_tokenize(self._mctx, chunks, ctypes.byref(text), bitmaps, 1)
            if status != 0:
                raise ImageInputUnsupportedError(f"the projector could not read the image (status {status})")
            return self._split(chunks)
        finally:
            mtmd_cpp.mtmd_input_chunks_free(chunks)
            mtmd_cpp.mtmd_bitmap_free(handle)

    def _split(self, chunks: Any) -> _Tokenized:
        """The chunks of one image, in order: text (wrapping or separating its parts) and parts."""
        pieces: list[tuple[int, ...] | int] = []
        parts: list[Any] = []
        try:
            for i in range(mtmd_cpp.mtmd_input_chunks_size(chunks)):
                chunk = mtmd_cpp.mtmd_input_chunks_get(chunks, i)
                kind = mtmd_cpp.mtmd_input_chunk_get_type(chunk)
                if kind == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    pieces.append(_text_tokens(chunk))
                elif kind == mtmd_cpp.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    pieces.append(self._positions(chunk))
                    parts.append(mtmd_cpp.mtmd_input_chunk_copy(chunk))
                else:
                    raise ProjectorError("libmtmd made a chunk that is neither text nor image")
        except BaseException:
            for part in parts:
                mtmd_cpp.mtmd_input_chunk_free(part)
            raise
        if not parts:
            raise ProjectorError("libmtmd made no image chunk")
        return _Tokenized(ImageTokens(tuple(pieces)), tuple(parts))

    def _positions(self, chunk: Any) -> int:
        count = int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk))
        if mtmd_cpp.mtmd_input_chunk_get_n_pos(chunk) != count:
            raise ProjectorError("the projector's image positions differ from its tokens")
        # An image read with non-causal attention must fit one micro-batch: llama.cpp aborts the
        # process otherwise.
        if count > self._batch_size and mtmd_cpp.mtmd_decode_use_non_causal(self._mctx, chunk):
            raise ImageInputUnsupportedError(
                f"an image takes {count} positions, more than the engine's batch_size "
                f"({self._batch_size}); the operator must raise batch_size to read it"
            )
        return count

    # --- encode and decode (the scheduler thread) ---------------------------------------------

    def encode(self, bitmap: Bitmap, part: int) -> npt.NDArray[np.float32]:
        """Part `part` of the image's embeddings (count x n_embd floats), from the cache or the
        vision encoder."""
        key = (bitmap.digest, part)
        with self._lock:
            cached = self._embeddings.get(key)
            if cached is not None:
                self._embeddings.move_to_end(key)
                return cached
            chunk = self._tokenized(bitmap).chunks[part]
            started = time.perf_counter()
            status = mtmd_cpp.mtmd_encode_chunk(self._mctx, chunk)
            if status != 0:
                raise ProjectorError(f"libmtmd could not encode the image (status {status})")
            size = int(mtmd_cpp.mtmd_input_chunk_get_n_tokens(chunk)) * self._n_embd
            output = mtmd_cpp.mtmd_get_output_embd(self._mctx)  # overwritten by the next encode
            embeddings = np.ctypeslib.as_array(output, shape=(size,)).copy()
            self.encode_seconds += time.perf_counter() - started
            self.encoded += 1
            self._remember(key, embeddings)
            return embeddings

    def _remember(self, key: tuple[str, int], embeddings: npt.NDArray[np.float32]) -> None:
        self._embeddings[key] = embeddings
        self._embedding_bytes += embeddings.nbytes
        while self._embedding_bytes > _EMBEDDING_CACHE_BYTES and len(self._embeddings) > 1:
            _, old = self._embeddings.popitem(last=False)
            self._embedding_bytes -= old.nbytes

    def decode(self, ctx: Any, span: ImageSpan, seq: int, batch_size: int) -> int:
        """Decode the embeddings of `span` into sequence `seq` at its positions; returns the
        positions it took. Non-causal attention inside the image (Gemma 3) is libmtmd's to switch."""
        embeddings = self.encode(span.bitmap, span.part)
        with self._lock:
            chunk = self._tokenized(span.bitmap).chunks[span.part]
            new_position = llama_cpp.llama_pos(0)
            pointer = embeddings.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            status = mtmd_cpp.mtmd_helper_decode_image_chunk(
                self._mctx,
                ctx,
                chunk,
                pointer,
                span.start,
                seq,
                batch_size,
                ctypes.byref(new_position),
                mtmd_cpp.mtmd_helper_post_decode_callback(),  # a NULL callback
                None,
            )
        if status != 0:
            raise ProjectorError(f"llama.cpp could not decode the image (status {status})")
        return int(new_position.value) - span.start


def _free(tokenized: _Tokenized) -> None:
    for chunk in tokenized.chunks:
        mtmd_cpp.mtmd_input_chunk_free(chunk)


def _text_tokens(chunk: Any) -> tuple[int, ...]:
    size = ctypes.c_size_t(0)
    pointer = mtmd_cpp.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(size))
    return tuple(int(pointer[i]) for i in range(size.value)) if pointer else ()
