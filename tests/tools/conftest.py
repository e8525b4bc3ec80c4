"""The sandbox fixtures of the code_execution tests (test_sandbox.py, test_sandbox_escapes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sijo.tools.code_execution import Containers, Sandbox
from tests.tools.sandboxes import WORKSPACE_ID, make_sandbox


@pytest.fixture
def sandbox() -> Sandbox:
    return make_sandbox()


@pytest.fixture
def containers(tmp_path: Path) -> Containers:
    return Containers(tmp_path / "containers", 3600)


@pytest.fixture
def workdir(containers: Containers) -> Path:
    return containers.create(WORKSPACE_ID).path
