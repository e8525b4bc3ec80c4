"""Stop-sequence matching over streamed text.

Text that might be the start of a stop sequence is held back until it is known not to be one, so
a matched sequence never reaches the client (the Claude API excludes it from the content).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StopScan:
    text: str  # safe to emit now
    matched: str | None  # the stop sequence that ended generation, if any


class StopMatcher:
    def __init__(self, stop_sequences: list[str]) -> None:
        self._stops = [s for s in stop_sequences if s]
        self._held = ""

    def feed(self, text: str) -> StopScan:
        if not self._stops:
            return StopScan(text, None)
        buffer = self._held + text
        first = self._earliest_match(buffer)
        if first is not None:
            start, stop = first
            self._held = ""
            return StopScan(buffer[:start], stop)
        keep = self._partial_suffix(buffer)
        self._held = buffer[len(buffer) - keep :]
        return StopScan(buffer[: len(buffer) - keep], None)

    def flush(self) -> str:
        held, self._held = self._held, ""
        return held

    def _earliest_match(self, buffer: str) -> tuple[int, str] | None:
        """The stop sequence completed first (smallest end), as generation would have met it."""
        found = [(buffer.find(s), s) for s in self._stops]
        hits = [(i, s) for i, s in found if i >= 0]
        return min(hits, key=lambda hit: hit[0] + len(hit[1])) if hits else None

    def _partial_suffix(self, buffer: str) -> int:
        """The length of the longest suffix of `buffer` that is a proper prefix of a stop sequence."""
        longest = 0
        for stop in self._stops:
            for size in range(min(len(stop) - 1, len(buffer)), longest, -1):
                if buffer.endswith(stop[:size]):
                    longest = size
                    break
        return longest
