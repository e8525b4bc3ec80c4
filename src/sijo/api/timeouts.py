"""How long a client may take to send its request: the defence against slow clients (slowloris).

uvicorn bounds only the idle time between requests on a kept-alive connection, so a client that
trickles its headers or its body holds a connection (and a task) for as long as it likes. Two bounds:

- headers: the protocol `http_protocol` gives (uvicorn's, with a deadline) closes a connection whose
  request headers are not complete `header_timeout` seconds after it opened (or after the previous
  response, on a kept-alive connection). No request exists yet, so there is nobody to answer. The
  same bound applies to the rest of a body that an answer sent before reading it (a 403, a 401) left
  unread.
- body: `BodyTimeoutMiddleware` gives each wait for the next piece of a request body `body_timeout`
  seconds; past that the request is answered 408 `timeout_error` and the connection closed.

`sijo serve` runs uvicorn with `http_protocol(header_timeout)`: uvicorn's httptools protocol (llhttp,
in C) where httptools is installed, as `uvicorn[standard]` installs it, else its h11 one (pure
Python, and slower). Both answer a 400 to a request whose head (request line and headers) is still
incomplete past 16 KiB: h11 does it itself, `httptools_protocol.py` for uvicorn's httptools
protocol, which bounds nothing (llhttp would gather a header of any length until the deadline).
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
from typing import ClassVar, Self

import h11
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from sijo.errors import InvalidRequestError, RequestTimeoutError
from sijo.ids import new_id

MAX_HEAD_BYTES = 16 * 1024  # what uvicorn's h11 protocol allows (h11's max_incomplete_event_size)


class Deadline:
    """A deadline for what a client owes while no request of its is being served: a request's
    headers (nothing received yet, or part of them), or the rest of a body the answered request did
    not read (a 403 or 401 sent before reading it). Both would otherwise let a client trickle bytes
    forever. The timer starts when the connection opens and when a response completes (`_watch`);
    bytes arriving do not reset it. A protocol says what is owed (`_owed`)."""

    header_timeout: ClassVar[float] = 10.0
    _owing: str | None = None
    _timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    @classmethod
    def with_timeout(cls, seconds: float) -> type[Self]:
        """This protocol with `seconds` for `header_timeout` (uvicorn makes the instances itself)."""
        return type(cls.__name__, (cls,), {"header_timeout": seconds, "__module__": cls.__module__})

    def _owed(self) -> str | None:
        raise NotImplementedError

    def _watch(self) -> None:
        owing = self._owed()
        if owing != self._owing:
            self._disarm()
            self._owing = owing
            if owing is not None:
                self._timer = self.loop.call_later(self.header_timeout, self._late)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _late(self) -> None:
        self._timer = None
        if self._owed() is not None:
            self.transport.close()


class ShapedRefusal:
    """uvicorn answers a request its HTTP parser refuses (a control character in a header value, a
    malformed request line) with a plain-text 400; this answers it in the API's error shape, as
    every other failure is, and closes the connection as uvicorn does."""

    transport: asyncio.Transport

    def send_400_response(self, msg: str) -> None:
        error = InvalidRequestError(
            f"{msg.rstrip('.')}: the request line or a header is malformed, or a header's value "
            "holds a control character"
        )
        body = json.dumps(error.body(new_id("req"))).encode()
        head = (
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nx-should-retry: false\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(head + body)
        self.transport.close()


class HeaderTimeoutProtocol(ShapedRefusal, Deadline, H11Protocol):
    """uvicorn's h11 protocol with the deadline: h11's `their_state` says what the client owes."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _owed(self) -> str | None:
        if self.transport.is_closing():
            return None
        if self.conn.their_state is h11.IDLE:
            return "headers"
        if self.conn.their_state is h11.SEND_BODY and self.conn.our_state is h11.DONE:
            return "unread body"
        return None


def http_protocol(header_timeout: float) -> type[asyncio.Protocol]:
    """The HTTP protocol `sijo serve` runs, with `header_timeout`: httptools' where it is installed,
    else h11's."""
    if importlib.util.find_spec("httptools") is None:
        return HeaderTimeoutProtocol.with_timeout(header_timeout)
    from sijo.api.httptools_protocol import HttpToolsDeadlineProtocol

    return HttpToolsDeadlineProtocol.with_timeout(header_timeout)


class BodyTimeoutMiddleware:
    """Answers 408 to a request whose body pauses for more than `seconds` between two chunks.

    Only reads of the body are timed: once it is complete, `receive` is left to wait as long as the
    app likes (the routes wait on it for the client to disconnect)."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_complete = False

        async def receive_in_time() -> Message:
            nonlocal body_complete
            if body_complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.seconds)
            except TimeoutError:
                raise RequestTimeoutError(
                    f"The request body stopped arriving: nothing for {self.seconds:g} seconds.",
                    # Nothing of the request ran: sending it again is safe.
                    headers={"connection": "close", "x-should-retry": "true"},
                ) from None
            body_complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, receive_in_time, send)
