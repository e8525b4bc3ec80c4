"""Images in a tokenised prompt: each part of an image (a tiling projector makes several, with text
between them) is a span of placeholder positions drawn from the pixels and the part."""

from __future__ import annotations

import hashlib

from sijo.engines.base import Bitmap, ImageTokens, placeholders
from sijo.engines.fake import FakeEngine
from sijo.prompt import markup
from sijo.prompt.template import Segment, tokenize


class TilingEngine(FakeEngine):
    """Every image is two parts of 3 positions, `<` before, `|` between, `>` after."""

    async def image_tokens(self, bitmap: Bitmap) -> ImageTokens:  # noqa: ARG002
        return ImageTokens(((ord("<"),), 3, (ord("|"),), 3, (ord(">"),)))


def bitmap(seed: bytes) -> Bitmap:
    return Bitmap(1, 1, seed, hashlib.sha256(seed).hexdigest())


async def test_every_part_of_an_image_is_a_span_of_its_own() -> None:
    picture = bitmap(b"abc")
    segment = Segment(f"a{markup.IMAGE}b", user_data=True, images=(picture,))
    prompt = await tokenize(TilingEngine(), [segment])
    first, second = prompt.images
    assert (first.start, first.count, first.part) == (2, 3, 0)
    assert (second.start, second.count, second.part) == (6, 3, 1)
    assert prompt.tokens[:2] == (ord("a"), ord("<")) and prompt.tokens[5] == ord("|")
    assert prompt.tokens[2:5] == placeholders(picture.digest, 3, 0)
    assert prompt.tokens[6:9] == placeholders(picture.digest, 3, 1)
    assert prompt.tokens[9:] == (ord(">"), ord("b"))
    assert set(prompt.tokens[2:5]).isdisjoint(prompt.tokens[6:9])  # the parts differ, so a match stops between


def test_placeholders_are_negative_and_differ_between_images() -> None:
    one, other = bitmap(b"one"), bitmap(b"two")
    assert all(token < 0 for token in placeholders(one.digest, 40))
    assert placeholders(one.digest, 40) == placeholders(one.digest, 40)
    assert placeholders(one.digest, 1) != placeholders(other.digest, 1)  # the first position already differs


def test_a_prefix_match_never_ends_inside_an_image() -> None:
    import numpy as np

    from sijo.engines.base import ImageSpan, Sampling
    from sijo.engines.llama_cpp.scheduler import Job

    picture = bitmap(b"xyz")
    spans = (ImageSpan(4, 10, picture, 0), ImageSpan(20, 5, picture, 1))
    job = Job(np.zeros(30, dtype=np.int32), 1, Sampling(), lambda _item: None, images=spans)
    assert [job.outside_images(n) for n in (3, 4, 5, 13, 14, 15, 21, 25, 29)] == [3, 4, 4, 4, 14, 15, 20, 25, 29]
    assert job.text_until(0) == 4 and job.text_until(14) == 20 and job.text_until(25) == 30
    assert job.image_at(20) is spans[1] and job.image_at(21) is None
