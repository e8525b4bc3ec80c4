"""The HTTP edge of a real `sijo serve`, over raw sockets: slow clients are cut off (header and body
timeouts), and the Host check holds for HTTP/1.0 requests without a Host."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import HEADERS, Server, start_configured, stop_server

TIMEOUT = 1.0  # header_timeout and body_timeout of the server under test
LATE = TIMEOUT + 3.0  # by when a timed-out connection must be closed (a loaded CI machine is slow)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    config = f"header_timeout = {TIMEOUT}\nbody_timeout = {TIMEOUT}\n"
    running = start_configured(tmp_path_factory.mktemp("edge"), config)
    yield running
    stop_server(running)


def connect(server: Server) -> socket.socket:
    url = urlsplit(server.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=LATE + 5)
    return sock


def read_all(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received, time.monotonic() - started


def test_half_a_header_line_is_cut_off(edge: Server) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nanthropic-ver")
        received, waited = read_all(sock)
    assert received == b""
    assert TIMEOUT * 0.8 < waited < LATE


def is_closed(sock: socket.socket, wait: float) -> bool:
    """Whether the server closes `sock` within `wait` seconds (having sent nothing)."""
    sock.settimeout(max(wait, 0.01))
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:  # closed while we were still writing
        return True


def test_trickled_headers_are_cut_off_however_steady(edge: Server) -> None:
    # Each byte arrives well within the timeout: only a deadline for the whole header stops this.
    with connect(edge) as sock:
        started = time.monotonic()
        for byte in b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 1000:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if is_closed(sock, TIMEOUT / 10):
                break
            assert time.monotonic() - started < LATE, "the trickling connection is still open"
    assert time.monotonic() - started > TIMEOUT * 0.8


def test_the_next_request_on_a_kept_alive_connection_has_the_same_deadline(edge: Server) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nanthropic-version: 2023-06-01\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        headers = dict(line.split(b": ", 1) for line in head.lower().split(b"\r\n")[1:])
        length = int(headers[b"content-length"])
        while len(body) < length:
            body += sock.recv(65536)
        started = time.monotonic()
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHo")
        assert is_closed(sock, LATE)
    assert TIMEOUT * 0.8 < time.monotonic() - started < LATE


def test_a_head_still_incomplete_past_16_kib_gets_400(edge: Server) -> None:
    # uvicorn's httptools protocol bounds no head: Sijo's does, as h11 does (what is buffered of one).
    with connect(edge) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nx-padding: ")
        sock.settimeout(0.05)
        sent, received = 0, b""
        while not received and sent < 64 * 1024:  # a header that never ends, a KiB at a time
            sock.sendall(b"a" * 1024)
            sent += 1024
            try:
                received = sock.recv(65536)
            except TimeoutError:
                pass
        sock.settimeout(LATE)
        rest, _ = read_all(sock)
    answer = received + rest
    assert answer.startswith(b"HTTP/1.1 400"), received[:100]
    assert sent >= 16 * 1024  # (without the bound, the header deadline would close it, answering nothing)
    body = json.loads(answer.partition(b"\r\n\r\n")[2])  # in the API's error shape, as every failure
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["request_id"].startswith("req_")


def test_a_stalled_body_gets_408_and_the_connection_closes(edge: Server) -> None:
    head = (
        "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "anthropic-version: 2023-06-01\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    )
    with connect(edge) as sock:
        sock.sendall(head.encode() + b'{"model": ')
        received, waited = read_all(sock)
    status, _, rest = received.partition(b"\r\n")
    headers, _, body = rest.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 408")
    assert b"connection: close" in headers.lower()
    error = json.loads(body)
    assert error["type"] == "error"
    assert error["error"]["type"] == "timeout_error"
    assert error["request_id"].startswith("req_")
    assert TIMEOUT * 0.8 < waited < LATE


def test_a_body_nobody_reads_cannot_be_trickled_forever(edge: Server) -> None:
    # The Host check answers before reading the body; the rest of it gets the header deadline.
    head = b"POST /v1/messages HTTP/1.1\r\nHost: rebound.example\r\ncontent-length: 100000\r\n\r\n"
    with connect(edge) as sock:
        sock.sendall(head + b"{")
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(65536)
        assert received.startswith(b"HTTP/1.1 403")
        started = time.monotonic()
        while not is_closed(sock, TIMEOUT / 10):
            assert time.monotonic() - started < LATE, "the connection is still open"
            try:
                sock.sendall(b" ")
            except OSError:
                break
    assert time.monotonic() - started > TIMEOUT * 0.5


def test_trickling_connections_do_not_hold_up_a_request(edge: Server) -> None:
    socks = [connect(edge) for _ in range(70)]
    stop = threading.Event()

    def trickle() -> None:
        for sock in socks:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while not stop.is_set():
            for sock in socks:
                try:
                    sock.sendall(b"X")
                except OSError:
                    pass
            time.sleep(0.1)

    trickler = threading.Thread(target=trickle)
    trickler.start()
    try:
        time.sleep(TIMEOUT / 2)
        started = time.monotonic()
        response = httpx.get(f"{edge.base_url}/v1/models", headers=HEADERS, timeout=LATE)
        assert response.status_code == 200
        assert time.monotonic() - started < 1.0
        deadline = time.monotonic() + LATE
        for sock in socks:
            assert is_closed(sock, deadline - time.monotonic()), "a trickling connection is still open"
    finally:
        stop.set()
        trickler.join()
        for sock in socks:
            sock.close()


def test_http_1_0_without_host_is_answered_on_loopback(edge: Server) -> None:
    with connect(edge) as sock:
        sock.sendall(b"GET /v1/models HTTP/1.0\r\nanthropic-version: 2023-06-01\r\n\r\n")
        received, _ = read_all(sock)
    assert received.startswith(b"HTTP/1.1 200")


def test_a_foreign_host_is_refused_by_the_real_server(edge: Server) -> None:
    response = httpx.get(f"{edge.base_url}/v1/models", headers={**HEADERS, "host": "rebound.example"})
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "permission_error"
