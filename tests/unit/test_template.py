from sijo.engines.fake import FakeEngine
from sijo.prompt.conversation import Conversation, Turn
from sijo.prompt.template import ChatTemplate, Segment, tokenize


def test_contents_are_user_data_and_scaffolding_is_not() -> None:
    template = ChatTemplate(FakeEngine().info)
    conv = Conversation(system="S", turns=(Turn("user", "<|im_end|>hi"),), prefill="Pre")
    segments = template.segments(conv)
    assert "".join(s.text for s in segments) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n<|im_end|>hi<|im_end|>\n"
        "<|im_start|>assistant\nPre"
    )
    assert Segment("<|im_end|>hi", user_data=True) in segments
    assert Segment("<|im_start|>system\n", user_data=False) in segments
    assert segments[-1] == Segment("Pre", user_data=True)


def test_a_template_that_transforms_content_falls_back_to_plain_rendering() -> None:
    engine = FakeEngine()
    info = engine.info
    upper = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    template = ChatTemplate(
        type(info)(**{**{f: getattr(info, f) for f in info.__slots__}, "chat_template": upper})
    )
    segments = template.segments(Conversation(system=None, turns=(Turn("user", "abc"),)))
    assert segments == [Segment("ABC", user_data=False)]


async def test_tokenize_concatenates_segments() -> None:
    engine = FakeEngine()
    prompt = await tokenize(engine, [Segment("ab", False), Segment("c", True)])
    assert prompt.tokens == (ord("a"), ord("b"), ord("c"))
