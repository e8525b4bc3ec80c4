"""Keep it so (issue 10): a storm of clients that hang up at random points leaves nothing behind.

200 concurrent requests of mixed kinds (streams, plain replies, count_tokens, uploads cut off
halfway, headers cut off) against a small engine (4 slots, a queue of 16, so some are refused
with 529), each client leaving at a random point: before the response, after a few text deltas,
right after sending, or in the middle of its body. Then the engine must come back to where it
was: no running or waiting request, no admission held, no KV cell used; a normal request must
still be answered; and the server log must hold no traceback (a client gone mid-upload is one
line, not an unhandled error). The storm is seeded, so a failure replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import HEADERS, Server, start_configured, stop_server

MODEL = "claude-sonnet-4-6"
CLIENTS = 200
SLOTS = 4
DELTA = b"event: content_block_delta"
SEED = 20_240_610
# Slots and a queue small enough that the storm also meets the 529 path; finished requests keep
# no cells (leftover_ttl = 0), so an idle engine holds none.
CONFIG = f"""
[engines.default]
context_window = 512
slots = {SLOTS}
max_queue = 16
leftover_ttl = 0
"""
# Greedy decoding keeps counting for as long as it is let (test_server.py).
COUNTING: list[dict[str, Any]] = [
    {"role": "user", "content": "Count from 1 to 1000, separated by commas."},
    {"role": "assistant", "content": "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"},
]
IDLE = {"running": 0, "waiting": 0, "admitted": 0}
# How the clients (besides the leaders) leave, weighted: streams and replies hold slots, so more of them.
KINDS = [
    *["stream_mid"] * 2,  # after a few text deltas, or when out of patience
    "stream_early",  # a stream left before its first event
    *["reply"] * 2,  # a plain reply, left at a random time
    "sent_and_gone",  # the whole request sent, then gone at once
    "count",  # count_tokens, read or left
    "upload_cut",  # part of the body of the length it declared, then gone
    "head_cut",  # half the headers, then gone
]


@pytest.fixture(scope="module")
def stormed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_configured(tmp_path_factory.mktemp("storm"), CONFIG)
    yield running
    stop_server(running)


def engine_state(server: Server) -> dict[str, Any]:
    status = httpx.get(f"{server.base_url}/sijo/status", headers=HEADERS, timeout=30).json()
    return dict(status["engines"]["default"])


def wait_until(server: Server, expected: dict[str, int], seconds: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = engine_state(server)
        if all(state.get(key, value) == value for key, value in expected.items()):
            return state
        time.sleep(0.1)
    raise AssertionError(f"the engine never came back to {expected}: {engine_state(server)}")


# --- one client --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    """What one client of the storm sends, and when it leaves."""

    kind: str
    path: str
    body: bytes
    leave_after: float  # seconds after sending, when it leaves (reading or not)
    deltas: int = 0  # content_block_delta events after which a stream leaves earlier
    sent_fraction: float = 1.0  # of the body, for uploads cut off
    reset: bool = False  # leave with a TCP reset instead of a FIN


def _body(rng: random.Random, *, stream: bool) -> bytes:
    body = {
        "model": MODEL,
        "max_tokens": rng.choice([16, 64, 128]),
        "temperature": 0,
        "messages": COUNTING,
        "stream": stream,
    }
    return json.dumps(body).encode()


def plan(rng: random.Random) -> Client:
    kind = rng.choice(KINDS)
    reset = rng.random() < 0.3
    leave = rng.uniform(0.05, 2.5)
    if kind == "stream_mid":  # patient enough to see some of the reply, most of the time
        patience = rng.uniform(0.5, 6.0)
        return Client(kind, "/v1/messages", _body(rng, stream=True), patience, rng.randint(1, 6), reset=reset)
    if kind == "stream_early":
        return Client(kind, "/v1/messages", _body(rng, stream=True), rng.uniform(0, 0.3), reset=reset)
    if kind == "reply":
        return Client(kind, "/v1/messages", _body(rng, stream=False), leave, reset=reset)
    if kind == "sent_and_gone":
        path = rng.choice(["/v1/messages", "/v1/messages/count_tokens"])
        body = _body(rng, stream=rng.random() < 0.5) if path == "/v1/messages" else _count_body()
        return Client(kind, path, body, 0, reset=reset)
    if kind == "count":
        return Client(kind, "/v1/messages/count_tokens", _count_body(), rng.choice([0, leave]), reset=reset)
    path = rng.choice(["/v1/messages", "/v1/messages/count_tokens"])
    return Client(kind, path, _body(rng, stream=False), 0, sent_fraction=rng.uniform(0.05, 0.95), reset=reset)


def _count_body() -> bytes:
    return json.dumps({"model": MODEL, "messages": COUNTING}).encode()


def _request(client: Client, host: str) -> bytes:
    head = (
        f"POST {client.path} HTTP/1.1\r\nhost: {host}\r\nanthropic-version: 2023-06-01\r\n"
        f"content-type: application/json\r\ncontent-length: {len(client.body)}\r\nconnection: close\r\n\r\n"
    ).encode()
    if client.kind == "head_cut":
        return head[: len(head) // 2]
    return head + client.body[: int(len(client.body) * client.sent_fraction)]


async def run(client: Client, base_url: str, replying: asyncio.Event | None = None) -> str:
    """Plays `client`; what it saw: the response's status (`+delta` if text came), or `-` if it
    left before one. `replying` is set once the first text delta has come."""
    url = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    seen = ["-"]
    try:
        writer.write(_request(client, url.netloc))
        await writer.drain()
        if client.kind in ("stream_lead", "stream_mid", "count"):
            with contextlib.suppress(TimeoutError):  # it leaves when its time is up, read or not
                await asyncio.wait_for(_read(reader, client.deltas, seen, replying), client.leave_after)
        else:
            await asyncio.sleep(client.leave_after)
    finally:
        if client.reset:  # SO_LINGER 0: close() sends an RST
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.close()
    return seen[0]


async def _read(
    reader: asyncio.StreamReader, deltas: int, seen: list[str], replying: asyncio.Event | None
) -> None:
    """Reads the status into `seen`, then until `deltas` text deltas have come or the response ends."""
    line = await reader.readline()
    seen[0] = line.split(b" ")[1].decode() if line.startswith(b"HTTP/1.1 ") else "closed"
    received = b""
    while deltas and received.count(DELTA) < deltas:
        chunk = await reader.read(4096)
        if not chunk:
            break
        received += chunk
        if DELTA in received and not seen[0].endswith("+delta"):
            seen[0] += "+delta"
            if replying is not None:
                replying.set()


async def storm(base_url: str) -> Counter[str]:
    """The leaders take every slot and start replying; then the other clients arrive, while the
    leaders read a few more deltas and leave mid-reply."""
    rng = random.Random(SEED)
    leaders = [
        Client(
            "stream_lead", "/v1/messages", _body(rng, stream=True), 30, rng.randint(2, 8), reset=i % 2 == 1
        )
        for i in range(SLOTS)
    ]
    others = [plan(rng) for _ in range(CLIENTS - SLOTS)]
    replying = [asyncio.Event() for _ in leaders]
    leading = [asyncio.ensure_future(run(c, base_url, r)) for c, r in zip(leaders, replying, strict=True)]
    with contextlib.suppress(TimeoutError):  # a leader that never replies fails below, by its outcome
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in replying)), 30)
    results = await asyncio.gather(
        *leading, *(asyncio.wait_for(run(c, base_url), timeout=30) for c in others), return_exceptions=True
    )
    seen: Counter[str] = Counter()
    for client, result in zip([*leaders, *others], results, strict=True):
        outcome = result if isinstance(result, str) else type(result).__name__
        seen[f"{client.kind}:{outcome}"] += 1
    return seen


# --- the test ----------------------------------------------------------------------------------------


def test_a_storm_of_leaving_clients_leaks_nothing(stormed: Server) -> None:
    ask = {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": "Hi."}]}
    url = f"{stormed.base_url}/v1/messages"
    assert httpx.post(url, json=ask, headers=HEADERS, timeout=60).status_code == 200  # warm up
    baseline = wait_until(stormed, IDLE)

    seen = asyncio.run(storm(stormed.base_url))

    assert stormed.process.poll() is None, f"the server died:\n{stormed.log.read_text()[-4000:]}"
    statuses = {outcome: outcome.split(":")[1] for outcome in seen}
    failed = [o for o, status in statuses.items() if status.startswith("5") and not status.startswith("529")]
    assert not failed, f"server errors in the storm: {failed} (all: {dict(seen)})"
    assert "TimeoutError" not in statuses.values(), f"clients left hanging: {dict(seen)}"
    assert seen["stream_lead:200+delta"] == SLOTS, f"the leaders never got a reply: {dict(seen)}"
    after = wait_until(stormed, {**IDLE, "kv_cells_used": baseline["kv_cells_used"]})
    assert after["kept_prefixes"] == baseline["kept_prefixes"], (baseline, after)

    reply = httpx.post(url, json=ask, headers=HEADERS, timeout=60)
    assert reply.status_code == 200, reply.text
    assert reply.json()["stop_reason"] in {"end_turn", "max_tokens"}
    wait_until(stormed, {**IDLE, "kv_cells_used": baseline["kv_cells_used"]})

    log = stormed.log.read_text(errors="replace")
    first = log.find("Traceback")
    assert first < 0, (
        f"{log.count('Traceback')} tracebacks in the server log after the storm; the first:\n"
        + log[max(0, first - 300) : first + 4000]
    )
