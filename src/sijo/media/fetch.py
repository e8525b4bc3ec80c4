"""Fetching `url` sources (images, PDFs) and web_fetch pages without letting a client reach what the
operator has not opened: the server's own loopback, the private network behind it, cloud metadata services.

An address check is only as good as the connection that follows it, so each hop is:

1. http or https, nothing else;
2. its host resolved once (`resolve`), and every address it resolved to checked: loopback, private
   (RFC 1918, fc00::/7), link-local, unspecified, multicast, reserved, carrier-grade NAT
   (100.64/10), cloud metadata, and IPv6 forms embedding such an IPv4 address (mapped, NAT64, 6to4)
   are refused unless an `allow` entry matches; a `deny` entry that matches refuses always;
3. connected to the checked address itself, with the URL's Host header and (https) its name for SNI
   and certificate checks, so a DNS answer that changes between check and connection (rebinding)
   changes nothing;
4. redirected by hand, each target a new hop.

The whole fetch, redirects included, has one deadline; the body is read as a stream and dropped
past `max_bytes`. Proxies from the environment are ignored (a proxy would connect by name).
`allow` and `deny` entries are a host name (`files.internal`), a suffix (`*.internal`), an IP
address or a CIDR (`10.0.0.0/8`). A metadata address or name is opened only by naming it exactly.

Every refusal or failure is a `FetchError`: an `InvalidRequestError` (the 400 an image or document
source answers), whose `reason` tells the kinds apart without reading its message (web_fetch maps
them to its error codes).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Literal

import httpx

from sijo.config import MediaConfig
from sijo.errors import InvalidRequestError, shown

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services (AWS, GCP and Azure share 169.254.169.254; AWS's IPv6 endpoint; AWS
# ECS task metadata; Alibaba Cloud): credentials live there, so a broad `allow` does not open them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
METADATA_HOSTS = frozenset({"metadata.google.internal"})

_CARRIER_GRADE_NAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
# Each address property that refuses an address, in the order that names it best
# (127.0.0.1 is "loopback" before it is "private").
_REFUSED = (
    ("is_loopback", "loopback"),
    ("is_unspecified", "unspecified"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_reserved", "reserved"),
    ("is_private", "private"),
)


@dataclass(frozen=True, slots=True)
class FetchPolicy:
    """What URL sources may reach, and how much they may take."""

    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    timeout: float = 10.0
    max_bytes: int = 32 * 1024 * 1024
    max_redirects: int = 5

    @classmethod
    def from_config(cls, config: MediaConfig) -> FetchPolicy:
        return cls(
            allow=tuple(config.fetch_allow),
            deny=tuple(config.fetch_deny),
            timeout=config.fetch_timeout,
            max_bytes=config.fetch_max_bytes,
            max_redirects=config.fetch_max_redirects,
        )


# What kind of failure a `FetchError` is; `refused` is the one the operator's policy caused.
FetchFailure = Literal["invalid_url", "refused", "failed", "status", "too_large", "timeout"]


class FetchError(InvalidRequestError):
    """A URL that was refused or could not be downloaded: a 400 on `{field}.source.url` for an image
    or document source, and a typed failure for callers that answer otherwise (web_fetch's error
    codes). `reason` is one of:

    - `invalid_url`: not a URL, not http(s), no host (the first URL or a redirect's);
    - `refused`: the host or an address it resolved to is one the policy does not reach (loopback,
      private, link-local, metadata, denied...);
    - `failed`: unresolvable, connection or download broken off, too many redirects;
    - `status`: the site answered a non-2xx status, which is `http_status`;
    - `too_large`: the body is over `max_bytes`;
    - `timeout`: the whole fetch took longer than `timeout`.
    """

    def __init__(
        self, field: str, reason: FetchFailure, detail: str, *, http_status: int | None = None
    ) -> None:
        super().__init__(f"{field}.source.url: Unable to download the file: {detail}")
        self.reason: FetchFailure = reason
        self.detail = detail
        self.http_status = http_status


@dataclass(frozen=True, slots=True)
class Fetched:
    """A downloaded body; `content_type` is the media type alone (`image/png`, no parameters),
    `charset` the one its Content-Type declared (None when it declared none) and `url` the last
    hop's, after redirects."""

    data: bytes
    content_type: str | None
    url: str
    charset: str | None = None


async def fetch(url: str, policy: FetchPolicy, *, field: str) -> Fetched:
    """Download `url` under `policy`; any refusal or failure is a `FetchError`, a 400 on
    `{field}.source.url`."""
    try:
        target = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise _failure(field, "invalid_url", f"the URL is not valid ({exc})") from None
    try:
        async with asyncio.timeout(policy.timeout):
            return await _follow(target, policy, field)
    except (TimeoutError, httpx.TimeoutException):
        raise _failure(field, "timeout", f"timed out after {policy.timeout:g} s") from None


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to, in the resolver's order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    return list(dict.fromkeys(addresses))


def refusal(address: IPAddress) -> str | None:
    """Why `address` is not fetched unless allowed (`"loopback"`, `"private"`...), None when public."""
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        return refusal(embedded)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address in _CARRIER_GRADE_NAT:
        return "carrier-grade NAT (shared address space)"
    for prop, reason in _REFUSED:
        if getattr(address, prop):
            return reason
    return None if address.is_global else "not public"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (IPv4-mapped, NAT64, 6to4), which is what is reached."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


async def _follow(url: httpx.URL, policy: FetchPolicy, field: str) -> Fetched:
    headers = {"Accept-Encoding": "identity", "User-Agent": "sijo"}
    async with httpx.AsyncClient(trust_env=False, follow_redirects=False, headers=headers) as client:
        for _ in range(policy.max_redirects + 1):
            address = await _checked_address(url, policy, field)
            result = await _get(client, url, address, policy, field)
            if isinstance(result, Fetched):
                return result
            url = result
    raise _failure(field, "failed", f"more than {policy.max_redirects} redirects")


async def _checked_address(url: httpx.URL, policy: FetchPolicy, field: str) -> IPAddress:
    """The address to connect to for `url`: resolved once, every answer checked."""
    if url.scheme not in ("http", "https"):
        raise _failure(field, "invalid_url", "only http and https URLs are allowed")
    host = url.raw_host.decode("ascii").lower().rstrip(".")
    if not host:
        raise _failure(field, "invalid_url", "the URL has no host")
    if any(_matches(entry, host, None) for entry in policy.deny):
        raise _failure(field, "refused", f"the host {host} is denied")
    if host in METADATA_HOSTS and not _allowed(policy, host, None, exact=True):
        raise _failure(field, "refused", f"the host {host} is a cloud metadata service")
    addresses = await _addresses(host, url.port or (443 if url.scheme == "https" else 80), field)
    for address in addresses:
        _check_address(address, host, policy, field)
    return addresses[0]


async def _addresses(host: str, port: int, field: str) -> list[IPAddress]:
    """An IP literal stands for itself; a name is resolved (once: the caller connects to what this
    returns)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        addresses = await resolve(host, port)
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        raise _failure(field, "failed", f"the host {host} could not be resolved")
    return addresses


def _check_address(address: IPAddress, host: str, policy: FetchPolicy, field: str) -> None:
    if any(_matches(entry, host, address) for entry in policy.deny):
        raise _failure(field, "refused", f"the address {address} is denied")
    reason = refusal(address)
    if reason is None:
        return
    if not _allowed(policy, host, address, exact=_is_metadata(address)):
        raise _failure(field, "refused", f"the address {address} is {reason}")


def _is_metadata(address: IPAddress) -> bool:
    embedded = _embedded_ipv4(address)
    return address in METADATA_ADDRESSES or (embedded is not None and embedded in METADATA_ADDRESSES)


def _allowed(policy: FetchPolicy, host: str, address: IPAddress | None, *, exact: bool) -> bool:
    """Whether an `allow` entry opens this host or address; `exact` counts only entries naming it
    alone (the host name itself, the address itself), not a suffix or a wider network."""
    return any(_matches(entry, host, address, exact=exact) for entry in policy.allow)


def _matches(entry: str, host: str, address: IPAddress | None, *, exact: bool = False) -> bool:
    entry = entry.strip().lower().rstrip(".")
    if entry.startswith("*."):
        return not exact and host.endswith(entry[1:])
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return host == entry
    if address is None or (exact and network.num_addresses != 1):
        return False
    embedded = _embedded_ipv4(address)
    return address in network or (embedded is not None and embedded in network)


async def _get(
    client: httpx.AsyncClient, url: httpx.URL, address: IPAddress, policy: FetchPolicy, field: str
) -> Fetched | httpx.URL:
    """One GET to `address` on behalf of `url`: the body, or the URL a redirect points to."""
    request = client.build_request(
        "GET",
        url.copy_with(host=str(address)),
        headers={"Host": url.netloc.decode("ascii")},
        extensions={"sni_hostname": url.raw_host.decode("ascii")} if url.scheme == "https" else {},
        timeout=policy.timeout,
    )
    try:
        response = await client.send(request, stream=True)
    except httpx.TimeoutException:
        raise
    except httpx.HTTPError as exc:
        raise _failure(
            field, "failed", f"the request to {url.host} failed ({shown(exc) or type(exc).__name__})"
        ) from None
    try:
        if response.status_code in _REDIRECTS and "location" in response.headers:
            return url.join(response.headers["location"])
        if not response.is_success:
            raise _failure(
                field, "status", f"HTTP status {response.status_code}", http_status=response.status_code
            )
        return Fetched(
            data=await _body(response, policy.max_bytes, field),
            content_type=_media_type(response),
            url=str(url),
            charset=response.charset_encoding,
        )
    finally:
        await response.aclose()


async def _body(response: httpx.Response, max_bytes: int, field: str) -> bytes:
    """The body, read as it comes and given up as soon as it is known to be too large."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(field, max_bytes)
    body = bytearray()
    try:
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise _too_large(field, max_bytes)
    except httpx.TimeoutException:
        raise
    except httpx.HTTPError as exc:
        raise _failure(
            field, "failed", f"the download broke off ({shown(exc) or type(exc).__name__})"
        ) from None
    return bytes(body)


def _media_type(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower() or None


def _too_large(field: str, max_bytes: int) -> FetchError:
    return _failure(field, "too_large", f"the file is larger than {max_bytes} bytes")


def _failure(field: str, reason: FetchFailure, detail: str, *, http_status: int | None = None) -> FetchError:
    return FetchError(field, reason, detail, http_status=http_status)
