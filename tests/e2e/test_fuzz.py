"""Keep it so (issue 10): no request body, however malformed, gets a 5xx, crashes the server or
stalls the others.

Against one real server (a 512-token window, one decoding thread, replies of at most 8 tokens, so
that the few valid generations stay cheap):

- hypothesis (strategies in `fuzz_bodies.py`) draws bodies shaped like `MessageCreateParams` and
  `CountTokensParams` (content blocks, tool calls and results, tools with JSON schemas, thinking,
  output formats) and mutates them: wrong types, missing and extra fields, huge and negative
  numbers, emptied lists and strings, odd unicode, lone surrogates and NULs in JSON escapes. A
  third test keeps the body valid and varies only a tool's or an output format's schema, so that
  each one reaches the grammar compiler. Derandomized: CI sees the same cases every run.
- a hand list of nasty inputs (`NASTY`): deep nesting, huge arrays, bad base64, bad schemas,
  invalid UTF-8, NUL bytes, decompression bombs, bad JSON, odd bodies and headers. While each is
  sent, a probe thread times a cheap request every ~10 ms; the worst of those latencies must stay
  under `STALL_BOUND`, or else do so when the input is sent again (recorded per case as the
  `stall_ms` user property, in `--junitxml` reports with `-o junit_family=xunit1`).

Every answer must be below 500, every 4xx the API's error shape with a short message, and the
server must be alive after each test.
"""

from __future__ import annotations

import base64
import functools
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.conftest import HEADERS, Server, start_configured, stop_server
from tests.e2e.fuzz_bodies import COUNTING, CREATE, MODEL, OBJECT_SCHEMAS, as_json, mutated

MESSAGES = "/v1/messages"
COUNT = "/v1/messages/count_tokens"
STALL_BOUND = 0.200  # seconds: the worst latency of a cheap request while a nasty one is served
MAX_MESSAGE = 2048  # characters: no error message echoes a large input back
CONFIG = f"""
[engines.default]
context_window = 512
threads = 1

[[models]]
id = "{MODEL}"
max_output_tokens = 8
"""
CASES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no `explain`: it reruns each failure
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_configured(tmp_path_factory.mktemp("fuzz"), CONFIG)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def client(fuzzed: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed.base_url, headers=HEADERS, timeout=120) as c:
        yield c


@pytest.fixture(autouse=True)
def _still_alive(fuzzed: Server) -> Iterator[None]:
    yield
    assert fuzzed.process.poll() is None, f"the server died:\n{fuzzed.log.read_text()[-4000:]}"


# --- what every answer must look like --------------------------------------------------------------


def check_error(response: httpx.Response) -> None:
    """A 4xx is the API's error body: `{"type": "error", "error": {type, message}, "request_id"}`."""
    body = response.json()
    assert body["type"] == "error", body
    assert set(body) == {"type", "error", "request_id"}, body
    assert isinstance(body["request_id"], str), body
    assert set(body["error"]) == {"type", "message"}, body
    assert isinstance(body["error"]["type"], str), body
    message = body["error"]["message"]
    assert isinstance(message, str), body
    assert len(message) < MAX_MESSAGE, f"a {len(message)}-character message: {message[:200]}…"


def check_answer(response: httpx.Response, *, streamed: str = "") -> None:
    assert response.status_code < 500, f"{response.status_code}: {response.text[:2000]}"
    if response.status_code >= 400:
        check_error(response)
    elif streamed:
        assert "event: error" not in streamed, streamed[-2000:]
    elif response.request.url.path == MESSAGES:
        assert response.json()["type"] == "message", response.text[:2000]


def send(client: httpx.Client, path: str, content: bytes) -> None:
    """POST `content` as it is and check the answer; a 200 stream is read to its end."""
    request = client.build_request("POST", path, content=content)
    response = client.send(request, stream=True)
    try:
        streamed = ""
        if response.status_code == 200 and "event-stream" in response.headers.get("content-type", ""):
            streamed = "".join(response.iter_text())
        else:
            response.read()
        check_answer(response, streamed=streamed)
    finally:
        response.close()


# --- request bodies ---------------------------------------------------------------------------------


def _create(**fields: Any) -> dict[str, Any]:
    """A small valid request with `fields` (those that are None left out: count_tokens has no max_tokens)."""
    body = {"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "Hi."}], **fields}
    return {key: value for key, value in body.items() if value is not None}


def _tool_with(schema: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
    return {"name": "record", "description": "Record it.", "input_schema": schema, "strict": strict}


def _with_schema(schema: dict[str, Any], where: str, **fields: Any) -> dict[str, Any]:
    """A body with `schema` in a strict tool, a non-strict one (`loose`) or an output format;
    the tools are forced, so that their schemas are compiled."""
    if where == "format":
        return _create(output_config={"format": {"type": "json_schema", "schema": schema}}, **fields)
    tool = _tool_with(schema, strict=where == "strict")
    return _create(tools=[tool], tool_choice={"type": "any"}, **fields)


@CASES
@given(body=mutated(CREATE))
def test_fuzzed_messages_are_never_a_5xx(client: httpx.Client, body: dict[str, Any]) -> None:
    send(client, MESSAGES, as_json(body))


@CASES
@given(body=mutated(COUNTING))
def test_fuzzed_count_tokens_are_never_a_5xx(client: httpx.Client, body: dict[str, Any]) -> None:
    send(client, COUNT, as_json(body))


@CASES
@given(
    schema=OBJECT_SCHEMAS,
    where=st.sampled_from(["strict", "loose", "format"]),
    path=st.sampled_from([MESSAGES, COUNT]),
)
def test_fuzzed_schemas_are_never_a_5xx(
    client: httpx.Client, schema: dict[str, Any], where: str, path: str
) -> None:
    """The rest of the body valid, so that the schema reaches the grammar compiler; no reply generated."""
    body = _with_schema(schema, where, max_tokens=0 if path == MESSAGES else None)
    send(client, path, as_json(body))


# --- the probe: a cheap request every ~10 ms, timed --------------------------------------------------


class Probe:
    """Times GET /v1/models and a tiny count_tokens, alternately, every ~10 ms on a thread of its own."""

    def __init__(self, base_url: str) -> None:
        self._client = httpx.Client(base_url=base_url, headers=HEADERS, timeout=60)
        self._changed = threading.Condition()
        self._done = 0
        self._worst = 0.0
        self.failures: list[str] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stall-probe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tiny = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                if self._done % 2:
                    response = self._client.get("/v1/models")
                else:
                    response = self._client.post(COUNT, json=tiny)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
            except httpx.HTTPError as exc:
                self.failures.append(repr(exc))
            elapsed = time.monotonic() - started
            with self._changed:
                self._worst = max(self._worst, elapsed)
                self._done += 1
                self._changed.notify_all()
            self._stopping.wait(0.01)

    def worst_during(self, action: Callable[[], None]) -> float:
        """The worst probe latency while `action` runs, including the probe in flight when it ends."""
        with self._changed:
            self._worst = 0.0
        action()
        with self._changed:
            settled = self._done + 2
            assert self._changed.wait_for(lambda: self._done >= settled, timeout=90), "the probe hung"
            return self._worst

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=90)
        self._client.close()


@pytest.fixture(scope="module")
def probe(fuzzed: Server) -> Iterator[Probe]:
    running = Probe(fuzzed.base_url)
    yield running
    running.close()


# --- the nasty inputs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Nasty:
    """A request sent as it is. `must_fail`: the only right answer is a 4xx (never a 200)."""

    body: Callable[[], bytes]
    path: str = MESSAGES
    headers: dict[str, Any] = field(default_factory=dict)
    must_fail: bool = True
    raw_head: bytes = b""  # sent over a plain socket instead, for what httpx refuses to send


def _json(body: Any) -> Callable[[], bytes]:
    return lambda: as_json(body)


def _with_deep(body: dict[str, Any], kind: str) -> Callable[[], bytes]:
    """`body` with its "DEEP" string replaced by 10,000 nested arrays or objects (too deep for json.dumps)."""
    return lambda: as_json(body).replace(b'"DEEP"', _deep(10_000, kind).encode())


def _deep(depth: int, kind: str) -> str:
    return "[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + "0" + "}" * depth


def _tool_turns(result: dict[str, Any], tool_input: Any = None) -> list[dict[str, Any]]:
    """A tool call and its result (`result`), the call's input `tool_input` (or none)."""
    call = {
        "type": "tool_use",
        "id": "t",
        "name": "record",
        "input": {} if tool_input is None else tool_input,
    }
    return [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": [call]},
        {"role": "user", "content": [result]},
    ]


def _sourced(kind: str, media_type: str, data: str) -> dict[str, Any]:
    source = {"type": "base64", "media_type": media_type, "data": data}
    return {
        "role": "user",
        "content": [{"type": kind, "source": source}, {"type": "text", "text": "What is it?"}],
    }


@functools.cache
def _bomb() -> str:
    """base64url of a forged MAC and a zlib stream that inflates to 500 MB of zeros (~0.5 MB of it)."""
    squeezer = zlib.compressobj(9)
    zeros = b"\0" * (1 << 20)
    compressed = b"".join(squeezer.compress(zeros) for _ in range(500_000_000 >> 20)) + squeezer.flush()
    return base64.urlsafe_b64encode(b"\x01" * 32 + compressed).decode().rstrip("=")


def _bombed(version: str, kind: str, *, count: bool = False) -> Callable[[], bytes]:
    """A bomb in a `redacted_thinking` block's data or a `thinking` block's signature."""

    def body() -> bytes:
        block = (
            {"type": "redacted_thinking", "data": version + _bomb()}
            if kind == "redacted"
            else {"type": "thinking", "thinking": "", "signature": version + _bomb()}
        )
        messages = [
            {"role": "user", "content": "Hi."},
            {"role": "assistant", "content": [block, {"type": "text", "text": "Hello."}]},
            {"role": "user", "content": "And?"},
        ]
        fields = {"messages": messages, "thinking": {"type": "adaptive"}}
        return as_json(_create(**fields, max_tokens=None) if count else _create(**fields))

    return body


BAD_SCHEMAS: dict[str, dict[str, Any]] = {
    "enum_5": {"type": "object", "properties": {"a": {"enum": 5}}},
    "anyOf_5": {"type": "object", "properties": {"a": {"anyOf": 5}}},
    "defs_list": {"type": "object", "properties": {"a": {"type": "string"}}, "$defs": [1, 2]},
    "type_object": {"type": "object", "properties": {"a": {"type": {}}}},
    "type_nested_list": {"type": "object", "properties": {"a": {"type": [[]]}}},
    "format_list": {"type": "object", "properties": {"a": {"type": "string", "format": []}}},
    "required_5": {"type": "object", "properties": {"a": {"type": "string"}}, "required": 5},
    "required_nested": {"type": "object", "properties": {"a": {"type": "string"}}, "required": [["a"]]},
    "defs_type_object": {
        "type": "object",
        "properties": {},
        "$defs": {"a": {"type": {}}},
    },  # found by hypothesis
    "inner_required_5": {
        "type": "object",
        "properties": {"o": {"type": "object", "properties": {"a": {"type": "string"}}, "required": 5}},
    },
}
SOME_TEXT = {"role": "user", "content": "x"}
VALID = as_json(_create())

NASTY: dict[str, Nasty] = {
    "control_valid": Nasty(lambda: VALID, must_fail=False),
    # deep nesting
    "deep_arrays_top_level": Nasty(lambda: _deep(10_000, "array").encode()),
    "deep_objects_top_level": Nasty(lambda: _deep(10_000, "object").encode()),
    "deep_arrays_in_input_schema": Nasty(
        _with_deep(_create(tools=[_tool_with({"type": "object", "default": "DEEP"})]), "array")
    ),
    "deep_objects_in_input_schema": Nasty(
        _with_deep(_create(tools=[_tool_with({"type": "object", "properties": "DEEP"})]), "object")
    ),
    "deep_arrays_in_tool_result": Nasty(
        _with_deep(
            _create(messages=_tool_turns({"type": "tool_result", "tool_use_id": "t", "content": "DEEP"})),
            "array",
        )
    ),
    "deep_objects_in_tool_use_input": Nasty(
        _with_deep(
            {"model": MODEL, "messages": _tool_turns({"type": "text", "text": "x"}, tool_input="DEEP")},
            "object",
        ),
        path=COUNT,
    ),
    "fresh_tool_schema": Nasty(  # valid: its grammar is compiled on first use
        _json(_create(tools=[_tool_with({"type": "object", "properties": {"fresh": {"type": "string"}}})])),
        must_fail=False,
    ),
    # huge arrays
    "messages_100001": Nasty(_json(_create(messages=[SOME_TEXT] * 100_001, max_tokens=None)), path=COUNT),
    "messages_10001": Nasty(_json(_create(messages=[SOME_TEXT] * 10_001))),
    "text_blocks_60000": Nasty(
        _json(
            {
                "model": MODEL,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}] * 60_000}],
            }
        ),
        path=COUNT,
        must_fail=False,
    ),
    "stop_sequences_100000": Nasty(_json(_create(stop_sequences=["x"] * 100_000)), must_fail=False),
    # bad base64
    **{
        f"bad_base64_{kind}_{i}": Nasty(_json(_create(messages=[_sourced(kind, media, data)])))
        for kind, media in (("image", "image/png"), ("document", "application/pdf"))
        for i, data in enumerate(["!!!not base64!!!", "iVBORw0KGgo", "AAAA====AAAA", "é€😀", "A" * 1_000_001])
    },
    # bad JSON schemas, in strict tools, in non-strict tools, in output formats, on both routes
    **{
        f"schema_{name}_{where}_{route}": Nasty(_json(_with_schema(schema, where)))
        if route == "create"
        else Nasty(_json(_with_schema(schema, where, max_tokens=None)), path=COUNT)
        for name, schema in BAD_SCHEMAS.items()
        for where in ("strict", "loose", "format")
        for route in ("create", "count")
        if where != "loose" or name == "format_list"
    },
    # invalid UTF-8 and NUL bytes
    "utf8_invalid_byte": Nasty(lambda: VALID.replace(b"Hi.", b"Hi\xff\xfe.")),
    "utf8_overlong": Nasty(lambda: VALID.replace(b"Hi.", b"Hi\xc0\xaf.")),
    "utf8_encoded_surrogate": Nasty(lambda: VALID.replace(b"Hi.", b"Hi\xed\xa0\x80.")),
    "utf8_truncated": Nasty(lambda: VALID.replace(b"Hi.", b"Hi\xe2\x82")),
    "raw_nul_in_string": Nasty(lambda: VALID.replace(b"Hi.", b"Hi\x00.")),
    "lone_surrogate_text": Nasty(lambda: VALID.replace(b"Hi.", b"Hi\\ud800."), must_fail=False),
    "lone_surrogate_model": Nasty(lambda: VALID.replace(MODEL.encode(), b"\\udc00" + MODEL.encode())),
    "lone_surrogate_stop_sequence": Nasty(_json(_create(stop_sequences=["\ud800"])), must_fail=False),
    "lone_surrogate_system": Nasty(_json(_create(system="\udbff")), must_fail=False),
    "nul_escape_text": Nasty(
        _json(_create(messages=[{"role": "user", "content": "a\x00b"}])), must_fail=False
    ),
    "nul_escape_model": Nasty(_json({**_create(), "model": MODEL + "\x00"})),
    "nul_escape_tool_name": Nasty(_json(_create(tools=[_tool_with({"type": "object"}) | {"name": "a\x00"}]))),
    "nul_escape_stop_sequence": Nasty(_json(_create(stop_sequences=["\x00"])), must_fail=False),
    "nul_escape_property_name": Nasty(
        _json(_create(tools=[_tool_with({"type": "object", "properties": {"\x00": {"type": "string"}}})])),
        must_fail=False,
    ),
    "control_in_version_header": Nasty(
        lambda: VALID, headers={"anthropic-version": "2023-06-01\x01"}, must_fail=False
    ),
    "control_in_beta_header": Nasty(lambda: VALID, headers={"anthropic-beta": "\x7f\x01"}, must_fail=False),
    "latin1_in_api_key_header": Nasty(
        lambda: VALID, headers={b"x-api-key": b"\xff\xfe\x01"}, must_fail=False
    ),
    "nul_in_header_raw": Nasty(lambda: VALID, raw_head=b"anthropic-version: 2023-06-01\x00\r\n"),
    # decompression bombs
    "bomb_redacted_thinking_v2": Nasty(_bombed("v2", "redacted")),
    "bomb_redacted_thinking_v1": Nasty(_bombed("v1", "redacted")),
    "bomb_thinking_signature_v2": Nasty(_bombed("v2", "signature")),
    "bomb_redacted_thinking_v2_count": Nasty(_bombed("v2", "redacted", count=True), path=COUNT),
    # long identifiers, numbers
    "model_name_1mb": Nasty(_json({**_create(), "model": "m" * 1_000_000})),
    "model_name_1mb_count": Nasty(_json({"model": "m" * 1_000_000, "messages": [SOME_TEXT]}), path=COUNT),
    "tool_choice_name_1mb": Nasty(_json(_create(tool_choice={"type": "tool", "name": "t" * 1_000_000}))),
    "max_tokens_10e400": Nasty(lambda: VALID.replace(b'"max_tokens": 1', b'"max_tokens": 1' + b"0" * 400)),
    "top_k_2e64": Nasty(_json(_create(top_k=2**64))),
    "budget_tokens_10e30": Nasty(_json(_create(thinking={"type": "enabled", "budget_tokens": 10**30}))),
    "temperature_1e400": Nasty(
        lambda: VALID.replace(b'"max_tokens": 1', b'"temperature": 1e400, "max_tokens": 1')
    ),
    "max_tokens_negative": Nasty(_json(_create(max_tokens=-1))),
    # bad JSON
    "truncated_json": Nasty(lambda: VALID[: len(VALID) // 2]),
    "nan": Nasty(lambda: VALID.replace(b'"max_tokens": 1', b'"max_tokens": NaN')),
    "infinity": Nasty(lambda: VALID.replace(b'"max_tokens": 1', b'"temperature": Infinity, "max_tokens": 1')),
    "minus_infinity": Nasty(
        lambda: VALID.replace(b'"max_tokens": 1', b'"top_p": -Infinity, "max_tokens": 1')
    ),
    "duplicate_keys": Nasty(
        lambda: VALID.replace(b'"max_tokens": 1', b'"max_tokens": -5, "max_tokens": 0'), must_fail=False
    ),
    "duplicate_model_keys": Nasty(lambda: b'{"model": "nope", ' + VALID[1:], must_fail=False),
    "body_array": Nasty(lambda: b"[1, 2]"),
    "body_string": Nasty(lambda: b'"hello"'),
    "body_number": Nasty(lambda: b"1e999"),
    "body_null": Nasty(lambda: b"null"),
    "body_empty": Nasty(lambda: b""),
    "body_whitespace": Nasty(lambda: b" \r\n\t "),
    "body_bom": Nasty(lambda: b"\xef\xbb\xbf" + VALID, must_fail=False),
    # content types
    "content_type_text": Nasty(lambda: VALID, headers={"content-type": "text/plain"}, must_fail=False),
    "content_type_form": Nasty(
        lambda: b"model=x&max_tokens=1", headers={"content-type": "application/x-www-form-urlencoded"}
    ),
    "content_type_multipart": Nasty(
        lambda: b"--b\r\n\r\nx\r\n--b--\r\n", headers={"content-type": "multipart/form-data; boundary=b"}
    ),
    "content_type_charset_latin1": Nasty(
        lambda: VALID, headers={"content-type": "application/json; charset=latin-1"}, must_fail=False
    ),
    # forced tool calls with too small a budget
    **{
        f"tool_choice_any_max_tokens_{n}": Nasty(
            _json(
                _create(
                    max_tokens=n,
                    tools=[
                        _tool_with(
                            {"type": "object", "properties": {"city": {"type": "string"}}}, strict=False
                        )
                    ],
                    tool_choice={"type": "any"},
                    messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                )
            ),
            must_fail=False,
        )
        for n in range(1, 7)
    },
}


def _raw_exchange(base_url: str, extra_head: bytes, body: bytes) -> int | None:
    """POST over a plain socket with `extra_head` among the headers; the status, or None when closed."""
    url = urlsplit(base_url)
    head = (
        f"POST {MESSAGES} HTTP/1.1\r\nhost: {url.netloc}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n"
    ).encode()
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(head + extra_head + b"\r\n" + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None


@pytest.mark.parametrize("name", list(NASTY))
def test_nasty_inputs_are_a_clear_4xx_and_stall_no_one(
    name: str,
    client: httpx.Client,
    probe: Probe,
    fuzzed: Server,
    request: pytest.FixtureRequest,
) -> None:
    nasty = NASTY[name]
    body = nasty.body()
    answers: list[httpx.Response] = []

    def post() -> None:
        if nasty.raw_head:
            status = _raw_exchange(fuzzed.base_url, nasty.raw_head, body)
            assert status is None or status < 500, status  # refused by the HTTP parser, before Sijo
            return
        response = client.post(
            nasty.path, content=body, headers={"content-type": "application/json", **nasty.headers}
        )
        answers.append(response)

    stalls = [probe.worst_during(post)]
    if stalls[0] >= STALL_BOUND:  # a real stall comes back; one slow probe on a busy machine does not
        stalls.append(probe.worst_during(post))
    request.node.user_properties.append(("stall_ms", "/".join(f"{s * 1000:.1f}" for s in stalls)))
    for response in answers:
        request.node.user_properties.append(("status", response.status_code))
        check_answer(response)
        if nasty.must_fail:
            assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text[:500]}"
        if name.startswith("tool_choice_any") and response.status_code == 200:
            texts = [b["text"] for b in response.json()["content"] if b["type"] == "text"]
            assert not any("<" in t for t in texts), f"markup leaked: {texts}"
    assert not probe.failures, probe.failures[:5]
    stall = min(stalls)
    assert stall < STALL_BOUND, (
        f"a cheap request waited {stall * 1000:.0f} ms (twice) while {name} was served"
    )
