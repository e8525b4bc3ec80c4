"""Pausing Python's cyclic garbage collector while a large request is parsed and prepared.

A body of 50,000 messages becomes hundreds of thousands of objects (pydantic models, lists, dicts),
and while they pile up the collector runs full collections over all of them: each one holds the GIL
for 70 to 110 ms, stalling every other request. None of those objects form reference cycles, so
reference counting frees them all when the request drops them; the collector has nothing to find
there. So it is paused until every large request in progress is prepared and has let go of its
parsed body; cycles other requests make meanwhile are collected once it resumes.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_paused = 0  # large requests in progress
_we_disabled = False  # the collector was running when the first of them began


@contextmanager
def collection_paused(large: bool) -> Iterator[None]:
    """Pause the collector for the block if `large`; pauses nest across concurrent requests."""
    if not large:
        yield
        return
    global _paused, _we_disabled
    with _lock:
        if _paused == 0:
            _we_disabled = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _lock:
            _paused -= 1
            if _paused == 0 and _we_disabled:
                gc.enable()
