import hashlib

import pytest

from sijo.engines.base import Bitmap
from sijo.errors import InvalidRequestError
from sijo.prompt import markup
from sijo.prompt.attachments import Attachments
from sijo.prompt.conversation import Part, to_conversation
from sijo.protocol.content import TextBlockParam
from sijo.protocol.params import MessageParam


def msgs(*pairs: tuple[str, object]) -> list[MessageParam]:
    return [MessageParam.model_validate({"role": r, "content": c}) for r, c in pairs]


def test_consecutive_same_role_turns_are_merged() -> None:
    conv = to_conversation(msgs(("user", "a"), ("user", [{"type": "text", "text": "b"}])), None)
    assert [t.role for t in conv.turns] == ["user"]
    assert conv.turns[0].text == "a\n\nb"
    assert [p.block for p in conv.turns[0].parts] == [0, 1]


def test_final_assistant_turn_is_a_prefill() -> None:
    conv = to_conversation(msgs(("user", "hi"), ("assistant", "Once upon")), "sys")
    assert conv.system_text == "sys"
    assert [(t.role, t.text) for t in conv.turns] == [("user", "hi")]
    assert conv.prefill_text == "Once upon"
    assert [p.block for p in conv.parts()] == [0, 1, 2]  # system, then messages, in prompt order


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
    assert conv.system_text == "top\n\nrules"
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
    assert conv.prefill == () and [(t.role, t.text) for t in conv.turns] == [("user", "a")]


def test_unsupported_block_types_are_named() -> None:
    result = {"type": "search_result", "source": "s", "title": "t", "content": []}
    with pytest.raises(InvalidRequestError, match=r"^messages\.0\.content\.1\.type: .*'search_result'"):
        to_conversation(msgs(("user", [{"type": "text", "text": "a"}, result])), None)


def test_an_image_block_is_a_mark_with_its_bitmap() -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}
    bitmap = Bitmap(1, 1, b"\x00\x00\x00", "d" * 64)
    attachments = Attachments(images={("base64:image/png", hashlib.sha256(b"AAAA").hexdigest()): bitmap})
    conv = to_conversation(
        msgs(("user", [{"type": "text", "text": "a"}, image])), None, attachments=attachments
    )
    part = conv.turns[0].parts[1]
    assert (part.text, part.images, part.field) == (markup.IMAGE, (bitmap,), "messages.0.content.1")
    assert conv.has_images


def test_cache_control_is_carried_on_its_block() -> None:
    block = {"type": "text", "text": "doc", "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    conv = to_conversation(msgs(("user", [{"type": "text", "text": "a"}, block])), None)
    assert conv.turns[0].parts[1] == Part("doc", 1, "1h", "messages.0.content.1")
    default = {"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}
    conv = to_conversation(msgs(("user", "q")), [TextBlockParam.model_validate(default)])
    assert conv.system[0].cache_ttl == "5m"


def test_claude_code_billing_nonce_is_dropped_from_the_prompt() -> None:
    def system(nonce: str) -> list[TextBlockParam]:
        header = f"x-anthropic-billing-header: cc_version=2.1.38.713; cc_entrypoint=cli; cch={nonce};"
        return [TextBlockParam(type="text", text=header), TextBlockParam(type="text", text="You are...")]

    first = to_conversation(msgs(("user", "q")), system("90d92"))
    second = to_conversation(msgs(("user", "q")), system("1a2b3"))
    assert first.system_text == second.system_text
    assert first.system[0].text == "x-anthropic-billing-header: cc_version=2.1.38.713; cc_entrypoint=cli;"
