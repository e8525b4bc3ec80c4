"""`sijo serve` runs uvicorn on uvloop and httptools where they are installed, else on asyncio and h11,
with the header deadline either way."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from sijo.api.timeouts import Deadline
from sijo.cli import server_options


def test_uvloop_and_httptools_where_installed() -> None:
    options = server_options(3.5)
    assert options["loop"] == "uvloop" and options["ws"] == "none"
    protocol = options["http"]
    assert issubclass(protocol, HttpToolsProtocol) and issubclass(protocol, Deadline)
    assert protocol.header_timeout == 3.5


def test_asyncio_and_h11_without_them(monkeypatch: pytest.MonkeyPatch) -> None:
    find_spec = importlib.util.find_spec

    def without(name: str, *args: Any) -> Any:
        return None if name in ("uvloop", "httptools") else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without)
    options = server_options(2.0)
    assert options["loop"] == "asyncio"
    protocol = options["http"]
    assert issubclass(protocol, H11Protocol) and issubclass(protocol, Deadline)
    assert protocol.header_timeout == 2.0
