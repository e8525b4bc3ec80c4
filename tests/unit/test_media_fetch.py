"""URL sources are fetched only from addresses the operator has opened: every hop's every address is
checked, the connection goes to the address that was checked (DNS rebinding cannot slip through),
redirects are checked like the first URL, and time and size are capped. Each guard has a test that
fails without it; the servers are real, on loopback."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sijo.config import MediaConfig
from sijo.errors import InvalidRequestError
from sijo.media import fetch as fetch_module
from sijo.media.fetch import FetchError, FetchFailure, FetchPolicy, IPAddress, fetch, refusal

FIELD = "messages.0.content.1"
PREFIX = f"{FIELD}.source.url: Unable to download the file: "
LOCAL = FetchPolicy(allow=("127.0.0.1",), timeout=5.0)


class Handler(BaseHTTPRequestHandler):
    server: TestServer

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Host", "")))
        url = urlsplit(self.path)
        route = getattr(self, "route_" + url.path.strip("/").replace("-", "_"), None)
        if route is None:
            self.send_error(404)
            return
        route(parse_qs(url.query))

    def reply(self, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def route_bytes(self, _query: dict[str, list[str]]) -> None:
        self.reply(b"\x89PNG-ish", "Image/PNG; charset=binary")

    def route_whoami(self, _query: dict[str, list[str]]) -> None:
        self.reply(self.server.server_address[0].encode())

    def route_redirect(self, query: dict[str, list[str]]) -> None:
        self.send_response(302)
        self.send_header("Location", query["to"][0])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def route_loop(self, _query: dict[str, list[str]]) -> None:
        self.route_redirect({"to": ["/loop"]})

    def route_big(self, _query: dict[str, list[str]]) -> None:
        self.reply(b"x" * 1000)

    def route_unsized(self, _query: dict[str, list[str]]) -> None:
        """1000 bytes with no Content-Length: the end is the connection closing (HTTP/1.0)."""
        self.send_response(200)
        self.end_headers()
        for _ in range(10):
            self.wfile.write(b"y" * 100)
            self.wfile.flush()

    def route_liar(self, _query: dict[str, list[str]]) -> None:
        """Announces a gigabyte, sends ten bytes and hangs up."""
        self.send_response(200)
        self.send_header("Content-Length", str(10**9))
        self.end_headers()
        self.wfile.write(b"z" * 10)

    def route_slow(self, _query: dict[str, list[str]]) -> None:
        self.server.release.wait(5)
        self.reply(b"late")

    def log_message(self, *_args: Any) -> None:
        pass


class TestServer(ThreadingHTTPServer):
    __test__ = False
    daemon_threads = True

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(address, Handler)
        self.seen: list[tuple[str, str]] = []
        self.release = threading.Event()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@dataclass
class Servers:
    running: list[TestServer] = field(default_factory=list)

    def start(self, host: str = "127.0.0.1", port: int = 0) -> TestServer:
        server = TestServer((host, port))
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        self.running.append(server)
        return server


@pytest.fixture
def servers() -> Iterator[Servers]:
    started = Servers()
    yield started
    for server in started.running:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(servers: Servers) -> TestServer:
    return servers.start()


def fake_resolver(monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[str]]) -> list[str]:
    """Replace the module's resolver; returns the list of hosts it was asked for."""
    asked: list[str] = []

    async def resolve(host: str, _port: int) -> list[IPAddress]:
        asked.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(a) for a in answers[host]]

    monkeypatch.setattr(fetch_module, "resolve", resolve)
    return asked


async def refused(url: str, policy: FetchPolicy = LOCAL) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        await fetch(url, policy, field=FIELD)
    message = caught.value.message
    assert message.startswith(PREFIX)
    return message.removeprefix(PREFIX)


async def failure(url: str, policy: FetchPolicy = LOCAL) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await fetch(url, policy, field=FIELD)
    return caught.value


# --- addresses -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("100.64.0.1", "carrier-grade NAT (shared address space)"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::a00:1", "private"),
        ("2002:a00:1::1", "private"),
        ("169.254.169.254", "a cloud metadata address"),
        ("::ffff:169.254.169.254", "a cloud metadata address"),
        ("fd00:ec2::254", "a cloud metadata address"),
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_refusal(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


def test_policy_from_config() -> None:
    config = MediaConfig(
        fetch_allow=["10.0.0.0/8"], fetch_deny=["bad.test"], fetch_timeout=3, fetch_max_bytes=9
    )
    assert FetchPolicy.from_config(config) == FetchPolicy(
        allow=("10.0.0.0/8",), deny=("bad.test",), timeout=3.0, max_bytes=9, max_redirects=5
    )


# --- fetching --------------------------------------------------------------------------------------


async def test_allowed_loopback_is_fetched(server: TestServer) -> None:
    got = await fetch(server.url("/bytes"), LOCAL, field=FIELD)
    assert got.data == b"\x89PNG-ish"
    assert got.content_type == "image/png"
    assert got.charset == "binary"
    assert got.url == server.url("/bytes")
    assert (await fetch(server.url("/whoami"), LOCAL, field=FIELD)).charset is None


async def test_loopback_is_refused_by_default(server: TestServer) -> None:
    assert await refused(server.url("/bytes"), FetchPolicy()) == "the address 127.0.0.1 is loopback"
    assert server.seen == []


@pytest.mark.parametrize("allow", ["127.0.0.0/8", "127.0.0.1/32", "*.internal.test", "files.internal.test"])
async def test_allow_entries(monkeypatch: pytest.MonkeyPatch, server: TestServer, allow: str) -> None:
    fake_resolver(monkeypatch, {"files.internal.test": ["127.0.0.1"]})
    got = await fetch(server.url("/bytes", "files.internal.test"), FetchPolicy(allow=(allow,)), field=FIELD)
    assert got.data == b"\x89PNG-ish"


async def test_suffix_does_not_match_a_longer_name(
    monkeypatch: pytest.MonkeyPatch, server: TestServer
) -> None:
    fake_resolver(monkeypatch, {"evilinternal.test": ["127.0.0.1"]})
    policy = FetchPolicy(allow=("*.internal.test",))
    assert await refused(server.url("/", "evilinternal.test"), policy) == "the address 127.0.0.1 is loopback"


async def test_deny_wins_over_allow(server: TestServer) -> None:
    policy = FetchPolicy(allow=("127.0.0.1",), deny=("127.0.0.0/8",))
    assert await refused(server.url("/bytes"), policy) == "the address 127.0.0.1 is denied"
    assert server.seen == []


async def test_denied_name_is_not_even_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_resolver(monkeypatch, {"files.internal.test": ["127.0.0.1"]})
    policy = FetchPolicy(allow=("127.0.0.1",), deny=("*.internal.test",))
    assert await refused("http://files.internal.test/x", policy) == "the host files.internal.test is denied"
    assert asked == []


async def test_deny_applies_to_public_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resolver(monkeypatch, {"cdn.test": ["8.8.8.8"]})
    policy = FetchPolicy(deny=("8.8.8.0/24",))
    assert await refused("http://cdn.test/x", policy) == "the address 8.8.8.8 is denied"


async def test_name_resolving_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resolver(monkeypatch, {"intranet.test": ["10.0.0.5"]})
    assert await refused("http://intranet.test/x", FetchPolicy()) == "the address 10.0.0.5 is private"


async def test_every_resolved_address_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A public first answer does not vouch for the private second one."""
    fake_resolver(monkeypatch, {"mixed.test": ["8.8.8.8", "10.0.0.1"]})
    assert await refused("http://mixed.test/x", FetchPolicy(timeout=2)) == "the address 10.0.0.1 is private"


async def test_mapped_ipv6_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resolver(monkeypatch, {"sneaky.test": ["::ffff:127.0.0.1"]})
    shown = ipaddress.ip_address("::ffff:127.0.0.1")  # ::ffff:7f00:1 before Python 3.13
    assert await refused("http://sneaky.test/x", FetchPolicy()) == f"the address {shown} is loopback"


async def test_metadata_needs_to_be_named_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resolver(monkeypatch, {"meta.test": ["169.254.169.254"]})
    wide = FetchPolicy(allow=("169.254.0.0/16", "*.test"))
    assert (
        await refused("http://meta.test/latest", wide)
        == "the address 169.254.169.254 is a cloud metadata address"
    )
    assert await refused("http://169.254.169.254/latest", wide) == (
        "the address 169.254.169.254 is a cloud metadata address"
    )


async def test_metadata_host_name_is_refused_before_resolving(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = fake_resolver(monkeypatch, {})
    policy = FetchPolicy(allow=("*.internal",))
    assert await refused("http://metadata.google.internal/computeMetadata/v1/", policy) == (
        "the host metadata.google.internal is a cloud metadata service"
    )
    assert asked == []


@pytest.mark.parametrize("url", ["ftp://example.com/a.png", "file:///etc/passwd", "gopher://example.com/"])
async def test_only_http_and_https(url: str) -> None:
    assert await refused(url, FetchPolicy()) == "only http and https URLs are allowed"


async def test_invalid_url() -> None:
    assert (await refused("http://[::1", FetchPolicy())).startswith("the URL is not valid")


async def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_resolver(monkeypatch, {})
    assert (
        await refused("http://nowhere.test/", FetchPolicy()) == "the host nowhere.test could not be resolved"
    )


async def test_http_error_status(server: TestServer) -> None:
    assert await refused(server.url("/missing")) == "HTTP status 404"


# --- the connection goes where the check said ------------------------------------------------------


def twin_servers(servers: Servers) -> tuple[TestServer, TestServer]:
    """A server on 127.0.0.1 and another on 127.0.0.2, on one port."""
    for _ in range(20):
        rebound = servers.start("127.0.0.2")
        try:
            return servers.start("127.0.0.1", rebound.port), rebound
        except OSError:
            continue
    pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")


async def test_dns_rebinding_cannot_redirect_the_connection(
    monkeypatch: pytest.MonkeyPatch, servers: Servers
) -> None:
    """The name resolves to the allowed 127.0.0.1 the first time and to 127.0.0.2 (refused) ever
    after. Resolving again to connect would reach the 127.0.0.2 server; connecting by name would
    fail (the system resolver does not know `rebind.test`). Only connecting to the checked address
    reaches 127.0.0.1, with the name in the Host header."""
    checked, rebound = twin_servers(servers)
    asked: list[str] = []

    async def resolve(host: str, _port: int) -> list[IPAddress]:
        asked.append(host)
        return [ipaddress.ip_address("127.0.0.1" if len(asked) == 1 else "127.0.0.2")]

    monkeypatch.setattr(fetch_module, "resolve", resolve)
    got = await fetch(checked.url("/whoami", "rebind.test"), LOCAL, field=FIELD)
    assert got.data == b"127.0.0.1"
    assert asked == ["rebind.test"]
    assert checked.seen == [("/whoami", f"rebind.test:{checked.port}")]
    assert rebound.seen == []


async def test_https_connects_to_the_checked_address_with_the_name_for_sni(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake_resolver(monkeypatch, {"images.example.test": ["93.184.215.14"]})
    sent: list[httpx.Request] = []

    async def send(_client: httpx.AsyncClient, request: httpx.Request, **_options: Any) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, content=b"ok", request=request)

    monkeypatch.setattr(httpx.AsyncClient, "send", send)
    got = await fetch("https://images.example.test/cat.png?size=2", FetchPolicy(), field=FIELD)
    assert got.data == b"ok"
    [request] = sent
    assert str(request.url) == "https://93.184.215.14/cat.png?size=2"
    assert request.headers["Host"] == "images.example.test"
    assert request.extensions["sni_hostname"] == "images.example.test"


# --- redirects -------------------------------------------------------------------------------------


async def test_redirect_is_followed(server: TestServer) -> None:
    got = await fetch(server.url("/redirect?to=/bytes"), LOCAL, field=FIELD)
    assert got.data == b"\x89PNG-ish"
    assert got.url == server.url("/bytes")


async def test_redirect_to_a_refused_address_is_refused(server: TestServer) -> None:
    elsewhere = f"http://127.0.0.3:{server.port}/bytes"
    assert await refused(server.url(f"/redirect?to={elsewhere}")) == "the address 127.0.0.3 is loopback"
    metadata = "http://169.254.169.254/latest/meta-data/"
    assert await refused(server.url(f"/redirect?to={metadata}")) == (
        "the address 169.254.169.254 is a cloud metadata address"
    )
    assert (
        await refused(server.url("/redirect?to=file:///etc/passwd")) == "only http and https URLs are allowed"
    )


async def test_redirect_to_an_invalid_url(server: TestServer) -> None:
    message = await refused(server.url("/redirect?to=http://[::1"))
    assert message.startswith("the request to 127.0.0.1 failed (Invalid URL in location header")


async def test_redirects_are_limited(server: TestServer) -> None:
    policy = FetchPolicy(allow=("127.0.0.1",), max_redirects=2)
    assert await refused(server.url("/loop"), policy) == "more than 2 redirects"
    assert len(server.seen) == 3


# --- time and size ---------------------------------------------------------------------------------


async def test_body_size_is_capped(server: TestServer) -> None:
    at_limit = FetchPolicy(allow=("127.0.0.1",), max_bytes=1000)
    assert len((await fetch(server.url("/big"), at_limit, field=FIELD)).data) == 1000
    under = FetchPolicy(allow=("127.0.0.1",), max_bytes=999)
    assert await refused(server.url("/big"), under) == "the file is larger than 999 bytes"


async def test_body_without_a_length_is_counted_as_it_streams(server: TestServer) -> None:
    under = FetchPolicy(allow=("127.0.0.1",), max_bytes=999)
    assert await refused(server.url("/unsized"), under) == "the file is larger than 999 bytes"
    enough = FetchPolicy(allow=("127.0.0.1",), max_bytes=1000)
    assert (await fetch(server.url("/unsized"), enough, field=FIELD)).data == b"y" * 1000


async def test_announced_length_is_refused_before_reading(server: TestServer) -> None:
    policy = FetchPolicy(allow=("127.0.0.1",), max_bytes=1000)
    assert await refused(server.url("/liar"), policy) == "the file is larger than 1000 bytes"


async def test_fetch_times_out(server: TestServer) -> None:
    policy = FetchPolicy(allow=("127.0.0.1",), timeout=0.3)
    started = time.monotonic()
    assert await refused(server.url("/slow"), policy) == "timed out after 0.3 s"
    assert time.monotonic() - started < 2


async def test_deadline_covers_the_whole_fetch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A resolver that never answers is cut off by the same deadline."""

    async def resolve(_host: str, _port: int) -> list[IPAddress]:
        await asyncio.sleep(10)
        return []

    monkeypatch.setattr(fetch_module, "resolve", resolve)
    assert await refused("http://slow-dns.test/", FetchPolicy(timeout=0.2)) == "timed out after 0.2 s"


async def test_proxies_from_the_environment_are_ignored(
    monkeypatch: pytest.MonkeyPatch, server: TestServer
) -> None:
    """A proxy would connect by name, after our check: the fetch goes direct whatever the environment says."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    got = await fetch(server.url("/bytes"), LOCAL, field=FIELD)
    assert got.data == b"\x89PNG-ish"


async def test_connection_refused_is_a_400() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    message = await refused(f"http://127.0.0.1:{port}/")
    assert message.startswith("the request to 127.0.0.1 failed (")


# --- what kind of failure --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "policy", "reason"),
    [
        ("http://[::1", LOCAL, "invalid_url"),
        ("ftp://example.com/a.png", LOCAL, "invalid_url"),
        ("/redirect?to=file:///etc/passwd", LOCAL, "invalid_url"),
        ("/bytes", FetchPolicy(), "refused"),
        ("/bytes", FetchPolicy(allow=("127.0.0.1",), deny=("127.0.0.1",)), "refused"),
        ("http://169.254.169.254/", LOCAL, "refused"),
        ("/redirect?to=http://127.0.0.2/", LOCAL, "refused"),
        ("/loop", LOCAL, "failed"),
        ("/big", FetchPolicy(allow=("127.0.0.1",), max_bytes=999), "too_large"),
        ("/slow", FetchPolicy(allow=("127.0.0.1",), timeout=0.2), "timeout"),
    ],
)
async def test_failures_say_their_reason(
    server: TestServer, path: str, policy: FetchPolicy, reason: FetchFailure
) -> None:
    """Callers other than image and document sources (web_fetch) tell failures apart by `reason`;
    the error is still the same 400 with the same message."""
    error = await failure(server.url(path) if path.startswith("/") else path, policy)
    assert error.reason == reason
    assert error.http_status is None
    assert isinstance(error, InvalidRequestError)
    assert error.status_code == 400
    assert error.message == PREFIX + error.detail


async def test_error_status_is_kept(server: TestServer) -> None:
    error = await failure(server.url("/missing"))
    assert (error.reason, error.http_status, error.detail) == ("status", 404, "HTTP status 404")


async def test_unreachable_and_unresolvable_have_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert (await failure(f"http://127.0.0.1:{port}/")).reason == "failed"
    fake_resolver(monkeypatch, {})
    assert (await failure("http://nowhere.test/", FetchPolicy())).reason == "failed"
