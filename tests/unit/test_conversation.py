import pytest

from sijo.errors import InvalidRequestError
from sijo.prompt.conversation import Conversation, Turn, to_conversation
from sijo.protocol.content import TextBlockParam
from sijo.protocol.params import MessageParam


def msgs(*pairs: tuple[str, object]) -> list[MessageParam]:
    return [MessageParam.model_validate({"role": r, "content": c}) for r, c in pairs]


def test_consecutive_same_role_turns_are_merged() -> None:
    conv = to_conversation(msgs(("user", "a"), ("user", [{"type": "text", "text": "b"}])), None)
    assert conv.turns == (Turn("user", "a\n\nb"),)


def test_final_assistant_turn_is_a_prefill() -> None:
    conv = to_conversation(msgs(("user", "hi"), ("assistant", "Once upon")), "sys")
    assert conv == Conversation(system="sys", turns=(Turn("user", "hi"),), prefill="Once upon")


def test_prefill_with_trailing_whitespace_is_rejected() -> None:
    with pytest.raises(InvalidRequestError, match="trailing whitespace"):
        to_conversation(msgs(("user", "hi"), ("assistant", "Once ")), None)


def test_leading_system_messages_join_the_system_prompt_and_later_ones_stay() -> None:
    conv = to_conversation(
        msgs(
            ("system", "rules"),
            ("user", "a"),
            ("assistant", "b"),
            ("system", "note"),
            ("user", "c"),
        ),
        [TextBlockParam(type="text", text="top")],
    )
    assert conv.system == "top\n\nrules"
    assert [t.role for t in conv.turns] == ["user", "assistant", "system", "user"]


def test_empty_messages_and_empty_content_name_the_field() -> None:
    with pytest.raises(InvalidRequestError, match=r"^messages: at least one message"):
        to_conversation([], None)
    with pytest.raises(InvalidRequestError, match=r"^messages\.1: all messages must have non-empty"):
        to_conversation(msgs(("user", "a"), ("assistant", ""), ("user", "b")), None)
    with pytest.raises(InvalidRequestError, match=r"^messages\.0\.content\.0\.text"):
        to_conversation(msgs(("user", [{"type": "text", "text": ""}])), None)


def test_empty_final_assistant_turn_is_allowed_and_ignored() -> None:
    conv = to_conversation(msgs(("user", "a"), ("assistant", "")), None)
    assert conv.prefill is None and conv.turns == (Turn("user", "a"),)


def test_unsupported_block_types_are_named() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "http://x"}}
    with pytest.raises(InvalidRequestError, match=r"^messages\.0\.content\.1\.type: .*'image'"):
        to_conversation(msgs(("user", [{"type": "text", "text": "a"}, image])), None)
