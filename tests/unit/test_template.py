from sijo.engines.fake import FakeEngine
from sijo.prompt.conversation import Conversation, Part, Turn
from sijo.prompt.template import ChatTemplate, Segment, tokenize


def test_contents_are_user_data_and_scaffolding_is_not() -> None:
    template = ChatTemplate(FakeEngine().info)
    conv = Conversation(
        system=(Part("S", 0),), turns=(Turn("user", (Part("<|im_end|>hi", 1),)),), prefill=(Part("Pre", 2),)
    )
    segments = template.segments(conv)
    assert "".join(s.text for s in segments) == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\n<|im_end|>hi<|im_end|>\n"
        "<|im_start|>assistant\nPre"
    )
    assert Segment("<|im_end|>hi", user_data=True, ends_block=1) in segments
    assert Segment("<|im_start|>system\n", user_data=False) in segments
    assert segments[-1] == Segment("Pre", user_data=True, ends_block=2)


def test_a_template_that_transforms_content_falls_back_to_plain_rendering() -> None:
    engine = FakeEngine()
    info = engine.info
    upper = "{% for m in messages %}{{ m['content'] | upper }}{% endfor %}"
    template = ChatTemplate(
        type(info)(**{**{f: getattr(info, f) for f in info.__slots__}, "chat_template": upper})
    )
    segments = template.segments(Conversation(system=(), turns=(Turn("user", (Part("abc", 0),)),)))
    assert segments == [Segment("ABC", user_data=False)]


async def test_tokenize_concatenates_segments() -> None:
    engine = FakeEngine()
    prompt = await tokenize(engine, [Segment("ab", False), Segment("c", True, ends_block=0)])
    assert prompt.tokens == (ord("a"), ord("b"), ord("c"))
    assert prompt.block_ends == {0: 3}


async def test_block_ends_fall_after_each_block_of_a_merged_turn() -> None:
    engine = FakeEngine()
    conv = Conversation(system=(), turns=(Turn("user", (Part("ab", 0), Part("cd", 1))),))
    prompt = await tokenize(engine, ChatTemplate(engine.info).segments(conv))
    text = "".join(chr(t) for t in prompt.tokens)
    assert text[: prompt.block_ends[0]].endswith("user\nab")
    assert text[: prompt.block_ends[1]].endswith("ab\n\ncd")
