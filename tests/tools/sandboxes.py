"""A sandbox for the code_execution tests, with quick limits."""

from __future__ import annotations

from typing import Any

import pytest

from sijo.config import SandboxConfig
from sijo.tools.code_execution import Sandbox, SandboxUnavailableError

WORKSPACE_ID = "wrkspc_test"


def make_sandbox(**settings: Any) -> Sandbox:
    """A sandbox with quick limits, or a failure saying that bubblewrap is needed."""
    extra = {
        name: settings.pop(name)
        for name in ("workspace_bytes", "tmp_bytes", "grace_seconds")
        if name in settings
    }
    sandbox = Sandbox(SandboxConfig(**{"wall_seconds": 10.0, **settings}), **extra)
    try:
        sandbox.check()
    except SandboxUnavailableError as error:
        pytest.fail(
            f"these tests need a working bubblewrap (`apt-get install bubblewrap`): {error}", pytrace=False
        )
    return sandbox
