"""A byte-level vocabulary for llguidance: token i is byte i, token 256 ends the turn, so a test can
write any text token by token under a grammar without a model."""

from __future__ import annotations

import llguidance

EOS = 256
PIECES = [bytes([i]) for i in range(256)] + [b""]


class _Bytes:
    eos_token_id = EOS
    bos_token_id = None
    tokens = PIECES

    def __call__(self, text: bytes | str) -> list[int]:
        return list(text if isinstance(text, bytes) else text.encode())


TOKENIZER = llguidance.LLTokenizer(llguidance.TokenizerWrapper(_Bytes()))
