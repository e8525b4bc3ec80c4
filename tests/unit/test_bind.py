"""`sijo serve` binds beyond loopback only when keys guard it: configured ones or `sijo keys create`'s."""

from __future__ import annotations

from sijo.cli import check_bind
from sijo.config import Settings


def test_keys_made_with_the_cli_allow_a_public_address() -> None:
    public = Settings(host="0.0.0.0")
    refusal = check_bind(public, lambda: False)
    assert refusal is not None and refusal.startswith("refusing to listen on 0.0.0.0")
    assert check_bind(public, lambda: True) is None
    assert check_bind(Settings(host="0.0.0.0", api_keys=["k"]), lambda: False) is None


def test_the_database_is_not_asked_when_the_answer_is_known() -> None:
    def never() -> bool:
        raise AssertionError("asked")

    assert check_bind(Settings(), never) is None  # loopback
    assert check_bind(Settings(host="0.0.0.0", api_keys=["k"]), never) is None
