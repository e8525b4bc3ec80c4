"""Standalone check of the test projector (tests/projector.py) through llama.cpp's low-level bindings.

Run: .venv/bin/python tests/projector_check.py [--verbose]

It writes the projector, loads SmolLM2-135M-Instruct with `llama_cpp`'s C API and the projector
with `libmtmd` (`llama_cpp.mtmd_cpp`; none of llama-cpp-python's high-level chat handlers), then:
prints the chunks `mtmd_tokenize` makes of one image alone; encodes the image and times it;
decodes a few text tokens, the image's embeddings (`mtmd_helper_decode_image_chunk`) and one more
text token, and shows that the last logits differ between two images and are identical for the
same image twice. It exits non-zero when a check fails.
"""

# ruff: noqa: T201

from __future__ import annotations

import argparse
import ctypes
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp.llama_cpp as ll
import llama_cpp.mtmd_cpp as mtmd

from tests.projector import IMAGE_TOKENS, smollm2_path, write_projector

CHUNK_TYPES = {
    mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT: "text",
    mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE: "image",
    mtmd.MTMD_INPUT_CHUNK_TYPE_AUDIO: "audio",
}
N_BATCH = 512
FAILURES: list[str] = []


def check(ok: bool, what: str) -> None:
    print(f"  [{'ok' if ok else 'FAIL'}] {what}")
    if not ok:
        FAILURES.append(what)


def image(kind: str, size: int = 80) -> bytes:
    """RGB bytes, row-major, 3 bytes a pixel."""
    y, x = np.mgrid[0:size, 0:size]
    if kind == "gradient":
        rgb = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 128)], axis=-1)
    elif kind == "checker":
        rgb = np.where(((x // 10 + y // 10) % 2 == 0)[..., None], [250, 20, 20], [20, 20, 250])
    else:
        raise ValueError(kind)
    return rgb.astype(np.uint8).tobytes()


def bitmap(rgb: bytes, size: int = 80) -> int:
    data = (ctypes.c_uint8 * len(rgb)).from_buffer_copy(rgb)
    bmp = mtmd.mtmd_bitmap_init(size, size, data)  # copies the pixels: `data` may go after this
    assert bmp, "mtmd_bitmap_init failed"
    return bmp


def piece(vocab: int, token: int) -> str:
    buf = ctypes.create_string_buffer(64)
    n = ll.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
    return buf.raw[: max(n, 0)].decode("utf-8", "replace")


def tokenize(vocab: int, text: str) -> list[int]:
    raw = text.encode()
    out = (ll.llama_token * (len(raw) + 8))()
    n = ll.llama_tokenize(vocab, raw, len(raw), out, len(out), False, True)
    assert n >= 0
    return list(out[:n])


def describe_chunks(chunks: int, vocab: int) -> list[tuple[str, int]]:
    layout = []
    for i in range(mtmd.mtmd_input_chunks_size(chunks)):
        chunk = mtmd.mtmd_input_chunks_get(chunks, i)
        kind = CHUNK_TYPES[mtmd.mtmd_input_chunk_get_type(chunk)]
        n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
        n_pos = mtmd.mtmd_input_chunk_get_n_pos(chunk)
        line = f"    chunk {i}: {kind:5s} n_tokens={n_tokens} n_pos={n_pos}"
        if kind == "text":
            n = ctypes.c_size_t()
            toks = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
            ids = [toks[j] for j in range(n.value)]
            line += f" tokens={ids} pieces={[piece(vocab, t) for t in ids]}"
        else:
            img = mtmd.mtmd_input_chunk_get_tokens_image(chunk)
            line += f" grid={mtmd.mtmd_image_tokens_get_nx(img)}x{mtmd.mtmd_image_tokens_get_ny(img)}"
        print(line)
        layout.append((kind, n_tokens))
    return layout


def decode_text(lctx: int, tokens: list[int], n_past: int, logits_last: bool) -> int:
    batch = ll.llama_batch_init(len(tokens), 0, 1)
    try:
        batch.n_tokens = len(tokens)
        for i, tok in enumerate(tokens):
            batch.token[i] = tok
            batch.pos[i] = n_past + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = logits_last and i == len(tokens) - 1
        rc = ll.llama_decode(lctx, batch)
        assert rc == 0, f"llama_decode: {rc}"
    finally:
        ll.llama_batch_free(batch)
    return n_past + len(tokens)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--verbose", action="store_true", help="show llama.cpp's and libmtmd's info logs")
    args = parser.parse_args()

    @ll.llama_log_callback
    def log(level: int, text: bytes, _user: int) -> None:
        if args.verbose or level in (3, 4):  # GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR
            sys.stderr.write(text.decode("utf-8", "replace"))

    ll.llama_log_set(log, None)
    mtmd.mtmd_log_set(log, None)
    mtmd.mtmd_helper_log_set(log, None)
    ll.llama_backend_init()

    tmp = Path(tempfile.mkdtemp(prefix="sijo-projector-"))
    t0 = time.perf_counter()
    mmproj = write_projector(tmp / "mmproj.gguf")
    print(
        f"projector: {mmproj} ({mmproj.stat().st_size} bytes) written in {(time.perf_counter() - t0) * 1e3:.1f} ms"
    )
    again = write_projector(tmp / "mmproj-again.gguf")
    check(mmproj.read_bytes() == again.read_bytes(), "the same seed writes the same bytes")
    other = write_projector(tmp / "mmproj-seed1.gguf", seed=1)
    check(mmproj.read_bytes() != other.read_bytes(), "another seed writes other bytes")

    model_path = smollm2_path()
    mparams = ll.llama_model_default_params()
    mparams.n_gpu_layers = 0
    model = ll.llama_model_load_from_file(str(model_path).encode(), mparams)
    assert model, "llama_model_load_from_file failed"
    vocab = ll.llama_model_get_vocab(model)
    print(f"text model: {model_path.name}, n_embd_inp={ll.llama_model_n_embd_inp(model)}")

    cparams = ll.llama_context_default_params()
    cparams.n_ctx = 512
    cparams.n_batch = N_BATCH
    cparams.n_ubatch = N_BATCH  # a non-causal image must fit one ubatch
    cparams.n_threads = cparams.n_threads_batch = 2
    lctx = ll.llama_init_from_model(model, cparams)
    assert lctx, "llama_init_from_model failed"

    params = mtmd.mtmd_context_params_default()
    params.use_gpu = False
    params.n_threads = 2
    params.print_timings = False
    t0 = time.perf_counter()
    mctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), model, params)
    assert mctx, "mtmd_init_from_file failed"
    print(f"mtmd_init_from_file (with warmup): {(time.perf_counter() - t0) * 1e3:.1f} ms")
    check(mtmd.mtmd_support_vision(mctx), "mtmd_support_vision")
    check(not mtmd.mtmd_support_audio(mctx), "no audio")
    print(f"  mtmd_decode_use_mrope: {mtmd.mtmd_decode_use_mrope(mctx)}")
    print(f"  mtmd_decode_use_non_causal(ctx, NULL): {mtmd.mtmd_decode_use_non_causal(mctx, None)}")
    marker = mtmd.mtmd_default_marker().decode()
    print(f"  default marker: {marker!r}; context's marker: {mtmd.mtmd_get_marker(mctx).decode()!r}")

    def tokenize_image(rgb: bytes, text: str = marker) -> int:
        """mtmd_tokenize of `text` with one image for its marker; returns the chunks (caller frees)."""
        bmp = bitmap(rgb)
        try:
            chunks = mtmd.mtmd_input_chunks_init()
            raw = text.encode()
            inp = mtmd.mtmd_input_text(raw, len(raw), False, True)
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bmp)
            rc = mtmd.mtmd_tokenize(mctx, chunks, ctypes.byref(inp), bitmaps, 1)
            assert rc == 0, f"mtmd_tokenize: {rc}"
            return chunks
        finally:
            mtmd.mtmd_bitmap_free(bmp)  # the chunks hold their own copy of the preprocessed image

    def image_chunk(chunks: int) -> int:
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                return chunk
        raise AssertionError("no image chunk")

    print("\nmtmd_tokenize(marker alone, one image):")
    chunks = tokenize_image(image("gradient"))
    layout = describe_chunks(chunks, vocab)
    chunk = image_chunk(chunks)
    check(mtmd.mtmd_input_chunk_get_n_tokens(chunk) == IMAGE_TOKENS, f"{IMAGE_TOKENS} image tokens")
    print(f"  mtmd_decode_use_non_causal(ctx, image chunk): {mtmd.mtmd_decode_use_non_causal(mctx, chunk)}")
    mtmd.mtmd_input_chunks_free(chunks)

    print("\nmtmd_tokenize_from_parts(one image part):")
    bmp = bitmap(image("gradient"))
    part = mtmd.mtmd_input_part(None, bmp)
    parts = (ctypes.POINTER(mtmd.mtmd_input_part) * 1)(ctypes.pointer(part))
    chunks = mtmd.mtmd_input_chunks_init()
    rc = mtmd.mtmd_tokenize_from_parts(mctx, chunks, parts, 1, False)
    check(rc == 0, f"mtmd_tokenize_from_parts returned {rc}")
    layout_parts = describe_chunks(chunks, vocab)
    mtmd.mtmd_input_chunks_free(chunks)
    mtmd.mtmd_bitmap_free(bmp)

    n_embd = ll.llama_model_n_embd_inp(model)
    mem = ll.llama_get_memory(lctx)
    prompt = f"<|im_start|>user\nWhat is this?{marker}<|im_end|>"

    def run(rgb: bytes) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Tokenize `prompt` with `rgb` for its marker and decode it chunk by chunk into a fresh KV:
        text chunks with llama_decode, the image with mtmd_encode_chunk + mtmd_get_output_embd +
        mtmd_helper_decode_image_chunk. Returns the embeddings, the last token's logits and the timings."""
        chunks = tokenize_image(rgb, prompt)
        try:
            ll.llama_memory_clear(mem, True)
            n_past = 0
            n_chunks = mtmd.mtmd_input_chunks_size(chunks)
            embd = np.zeros(0, dtype=np.float32)
            times: list[str] = []
            for i in range(n_chunks):
                chunk = mtmd.mtmd_input_chunks_get(chunks, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t()
                    toks = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    t0 = time.perf_counter()
                    n_past = decode_text(lctx, [toks[j] for j in range(n.value)], n_past, i == n_chunks - 1)
                    times.append(f"text[{n.value}] {(time.perf_counter() - t0) * 1e3:.1f} ms")
                    continue
                n_tokens = mtmd.mtmd_input_chunk_get_n_tokens(chunk)
                t0 = time.perf_counter()
                rc = mtmd.mtmd_encode_chunk(mctx, chunk)
                times.append(f"encode {(time.perf_counter() - t0) * 1e3:.1f} ms")
                assert rc == 0, f"mtmd_encode_chunk: {rc}"
                out = mtmd.mtmd_get_output_embd(mctx)  # float* into mctx; valid until the next encode
                embd = np.ctypeslib.as_array(out, shape=(n_tokens * n_embd,)).copy()
                new_n_past = ll.llama_pos(0)
                t0 = time.perf_counter()
                rc = mtmd.mtmd_helper_decode_image_chunk(
                    mctx,
                    lctx,
                    chunk,
                    embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                    n_past,
                    0,
                    N_BATCH,
                    ctypes.byref(new_n_past),
                    mtmd.mtmd_helper_post_decode_callback(),
                    None,
                )
                times.append(f"image[{n_tokens}] {(time.perf_counter() - t0) * 1e3:.1f} ms")
                assert rc == 0, f"mtmd_helper_decode_image_chunk: {rc}"
                assert new_n_past.value == n_past + mtmd.mtmd_input_chunk_get_n_pos(chunk)
                n_past = new_n_past.value
            logits = np.ctypeslib.as_array(
                ll.llama_get_logits_ith(lctx, -1), shape=(ll.llama_vocab_n_tokens(vocab),)
            ).copy()
            return embd, logits, times
        finally:
            mtmd.mtmd_input_chunks_free(chunks)

    print(f"\nmtmd_tokenize({prompt!r}, one image):")
    chunks = tokenize_image(image("gradient"), prompt)
    describe_chunks(chunks, vocab)
    mtmd.mtmd_input_chunks_free(chunks)

    print("\nencode + decode:")
    embd_a, logits_a, times_a = run(image("gradient"))
    embd_b, logits_b, times_b = run(image("checker"))
    embd_a2, logits_a2, times_a2 = run(image("gradient"))
    for name, times in (("gradient", times_a), ("checker", times_b), ("gradient", times_a2)):
        print(f"  {name:8s}: {', '.join(times)}")
    print(
        f"  embedding rms {np.sqrt(np.mean(embd_a**2)):.4f}, "
        f"mean |a-b| {np.mean(np.abs(embd_a - embd_b)):.4f}"
    )
    print(
        f"  logits: max |a-b| {np.max(np.abs(logits_a - logits_b)):.4f}, "
        f"max |a-a'| {np.max(np.abs(logits_a - logits_a2)):.6f}, "
        f"argmax a={int(np.argmax(logits_a))} ({piece(vocab, int(np.argmax(logits_a)))!r}) "
        f"b={int(np.argmax(logits_b))} ({piece(vocab, int(np.argmax(logits_b)))!r})"
    )
    check(not np.array_equal(embd_a, embd_b), "different images give different embeddings")
    check(np.array_equal(embd_a, embd_a2), "the same image gives the same embeddings")
    check(not np.array_equal(logits_a, logits_b), "different images give different logits")
    check(np.array_equal(logits_a, logits_a2), "the same image gives identical logits")

    # Cross-check: libmtmd's all-in-one helper over the same prompt gives the same logits.
    chunks = tokenize_image(image("gradient"), prompt)
    ll.llama_memory_clear(mem, True)
    n_past = ll.llama_pos(0)
    rc = mtmd.mtmd_helper_eval_chunks(mctx, lctx, chunks, 0, 0, N_BATCH, True, ctypes.byref(n_past))
    check(rc == 0, f"mtmd_helper_eval_chunks returned {rc}")
    logits_h = np.ctypeslib.as_array(
        ll.llama_get_logits_ith(lctx, -1), shape=(ll.llama_vocab_n_tokens(vocab),)
    )
    print(
        f"  mtmd_helper_eval_chunks: n_past={n_past.value}; max |helper - manual| "
        f"{np.max(np.abs(logits_h - logits_a)):.6f}"
    )
    mtmd.mtmd_input_chunks_free(chunks)

    mtmd.mtmd_free(mctx)
    ll.llama_free(lctx)
    ll.llama_model_free(model)
    print(f"\nlayout of one image alone: {layout}; from parts: {layout_parts}")
    if FAILURES:
        print(f"FAILED: {FAILURES}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
