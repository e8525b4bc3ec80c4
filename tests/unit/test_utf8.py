from sijo.engines.llama_cpp.text import Utf8Stream


def test_characters_split_across_tokens_are_held_until_complete() -> None:
    data = "안녕 🙂 世界".encode()
    stream = Utf8Stream()
    pieces = [stream.feed(data[i : i + 1]) for i in range(len(data))]
    assert "".join(pieces) + stream.flush() == "안녕 🙂 世界"
    assert all("\ufffd" not in piece for piece in pieces)


def test_invalid_bytes_become_replacement_characters() -> None:
    stream = Utf8Stream()
    assert stream.feed(b"a\xffb") == "a\ufffdb"


def test_truncated_character_at_the_end_is_replaced_on_flush() -> None:
    stream = Utf8Stream()
    assert stream.feed("한".encode()[:2]) == ""
    assert stream.flush() == "\ufffd"
