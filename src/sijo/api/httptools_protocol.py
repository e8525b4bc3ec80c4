"""uvicorn's httptools protocol with the header deadline of `timeouts.py`, and h11's bound on a
request's head: a 400 once more than 16 KiB of it has come and it is still incomplete (uvicorn's
httptools protocol sets no bound, and llhttp gathers a header of any length). Imported only where
httptools is installed."""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sijo.api.timeouts import MAX_HEAD_BYTES, Deadline, ShapedRefusal


class HttpToolsDeadlineProtocol(ShapedRefusal, Deadline, HttpToolsProtocol):
    """What the client owes: nothing while one of its requests is being served (responses go out
    in order, so the latest request's cycle says so); the rest of a body once its request was
    answered; else a request's head.

    A head's bytes are counted from the read that starts it to the read that completes it, so a
    read that also carries a body (or the next request) counts wholly or not at all: the bound is
    exact to within one read, and only a head still incomplete after its read is cut off."""

    _head_done = False  # the latest request's head is complete, and its body may still be arriving
    _head_bytes = 0  # bytes read since the head in progress began (or since the previous head)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        if not self._head_done:
            self._head_bytes += len(data)
        super().data_received(data)
        if not self._head_done and self._head_bytes > MAX_HEAD_BYTES and not self.transport.is_closing():
            message = "Invalid HTTP request received."  # what uvicorn's h11 protocol answers
            self.logger.warning(message)
            self.send_400_response(message)
        self._watch()

    def on_headers_complete(self) -> None:
        self._head_done, self._head_bytes = True, 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._head_done = False
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _owed(self) -> str | None:
        if self.transport.is_closing():
            return None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return None
        return "unread body" if self._head_done else "headers"
