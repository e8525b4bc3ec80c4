"""Token bytes → text that never splits a UTF-8 character.

A token may end in the middle of a multi-byte character (Korean, CJK, emoji); its bytes are held
until the character is complete. Bytes that can never form a character become U+FFFD.
"""

from __future__ import annotations

import codecs


class Utf8Stream:
    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data, final=False)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
