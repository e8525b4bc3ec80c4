import pytest
from pydantic import ValidationError

from sijo.api.body import describe_errors
from sijo.protocol.params import MessageCreateParams


def message_for(data: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as info:
        MessageCreateParams.model_validate(data)
    return describe_errors(info.value.errors(), data)


BASE = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}


def test_missing_field() -> None:
    assert message_for({"model": "m", "messages": []}) == "max_tokens: Field required"


def test_unknown_key() -> None:
    assert message_for({**BASE, "bogus": 1}) == "bogus: Extra inputs are not permitted"


def test_wrong_type_inside_a_block_names_the_block_field() -> None:
    data = {**BASE, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}
    assert message_for(data) == "messages.0.content.0.text: Input should be a valid string"


def test_out_of_range_temperature() -> None:
    assert message_for({**BASE, "temperature": 1.5}).startswith("temperature: Input should be less")


def test_negative_max_tokens() -> None:
    assert message_for({**BASE, "max_tokens": -1}).startswith("max_tokens: Input should be greater")
