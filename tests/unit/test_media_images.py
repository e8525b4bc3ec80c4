"""Images by the API's rules: formats sniffed and checked against the declared type, size and count
limits, decompression bombs refused from the header, the API's downscaling, RGB on white, EXIF
orientation, and a digest that names the pixels rather than the file."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import zlib

import pytest
from PIL import Image

from sijo.engines.base import Bitmap
from sijo.errors import InvalidRequestError
from sijo.media.images import (
    MAX_BASE64_BYTES,
    check_base64_size,
    check_image_count,
    decode_image,
    scaled_size,
    sniff,
)

FIELD = "messages.0.content.1"


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes, media_type: str | None = None, many: bool = False) -> Bitmap:
    return decode_image(data, media_type=media_type, field=FIELD, many=many)


def rejection(data: bytes, media_type: str | None = None, many: bool = False) -> str:
    with pytest.raises(InvalidRequestError) as caught:
        decode(data, media_type, many)
    return caught.value.message


def png_header(width: int, height: int) -> bytes:
    """A PNG that announces `width` x `height` and holds almost nothing: what a bomb looks like
    before it is inflated."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def two_colors(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", (width, height), (255, 0, 0))
    image.paste((0, 0, 255), (width // 2, 0, width, height))
    return image


# --- formats ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "media_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")],
)
def test_each_supported_format_decodes_to_rgb(fmt: str, media_type: str) -> None:
    data = encode(two_colors(40, 30), fmt)
    assert sniff(data) == media_type
    bitmap = decode(data, media_type)
    assert (bitmap.width, bitmap.height) == (40, 30)
    assert len(bitmap.rgb) == 40 * 30 * 3
    red = bitmap.rgb[: 3 * 1]
    assert red[0] > 200 and red[2] < 60


def test_digest_is_sha256_of_size_and_pixels() -> None:
    bitmap = decode(encode(two_colors(8, 4), "PNG"))
    expected = hashlib.sha256(b"8x4:" + bitmap.rgb).hexdigest()
    assert bitmap.digest == expected


def test_same_pixels_in_other_files_have_one_digest() -> None:
    image = two_colors(16, 16)
    png = decode(encode(image, "PNG"))
    webp = decode(encode(image, "WEBP", lossless=True))
    gif = decode(encode(image, "GIF"))
    assert png.digest == webp.digest == gif.digest
    assert png.digest != decode(encode(two_colors(16, 8), "PNG")).digest


def test_declared_type_must_match_the_bytes() -> None:
    data = encode(two_colors(4, 4), "PNG")
    assert rejection(data, "image/jpeg") == (
        f"{FIELD}.source.data: Image does not match the provided media type image/jpeg"
    )


def test_declared_type_outside_the_four_is_refused() -> None:
    data = encode(two_colors(4, 4), "PNG")
    assert rejection(data, "image/bmp") == (
        f"{FIELD}.source.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
    )


@pytest.mark.parametrize("data", [encode(two_colors(4, 4), "BMP"), b"not an image at all", b""])
def test_unsupported_bytes_name_the_allowed_formats(data: bytes) -> None:
    message = rejection(data)
    assert message.startswith(f"{FIELD}.source.data: ")
    assert "image/jpeg, image/png, image/gif, image/webp" in message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_truncated_file_is_a_400(fmt: str) -> None:
    data = encode(Image.effect_noise((64, 64), 50).convert("RGB"), fmt)
    message = rejection(data[: len(data) // 2])
    assert message.startswith(f"{FIELD}.source.data: Could not process image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_damaged_files_are_a_400_or_a_picture_never_a_crash(fmt: str) -> None:
    """Bytes flipped in the header, the EXIF block and the pixel data, with a fixed seed: Pillow's
    errors and warnings (corrupt EXIF) all end as a 400 when they do not decode."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "A camera maker"
    data = encode(Image.effect_noise((32, 32), 50).convert("RGB"), fmt, exif=exif)
    chance = random.Random(fmt)
    for _ in range(150):
        damaged = bytearray(data)
        for _ in range(chance.randint(1, 4)):
            damaged[chance.randrange(2, min(len(damaged), 400))] = chance.randrange(256)
        try:
            assert len(decode(bytes(damaged)).rgb) > 0
        except InvalidRequestError as exc:
            assert exc.message.startswith(f"{FIELD}.source.data: ")


def test_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (6, 6), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    bitmap = decode(buffer.getvalue(), "image/gif")
    assert bitmap.rgb[:3] == bytes((255, 0, 0))


# --- limits ----------------------------------------------------------------------------------------


def test_base64_size_counts_the_text() -> None:
    data = f"{FIELD}.source.data"
    check_base64_size("A" * MAX_BASE64_BYTES, data)
    with pytest.raises(InvalidRequestError) as caught:
        check_base64_size("A" * (MAX_BASE64_BYTES + 1), data)
    assert caught.value.message == f"{data}: image exceeds 5 MB maximum: 5242881 bytes > 5242880 bytes"


def test_image_count_includes_document_pages() -> None:
    check_image_count(100)
    check_image_count(60, 40)
    with pytest.raises(InvalidRequestError) as caught:
        check_image_count(101)
    assert caught.value.message == "Too much media: 0 document pages + 101 images > 100"
    with pytest.raises(InvalidRequestError) as caught:
        check_image_count(1, 100)
    assert caught.value.message == "Too much media: 100 document pages + 1 images > 100"


def test_8000_pixels_a_side_at_most() -> None:
    assert decode(encode(Image.new("L", (8000, 1)), "PNG")).width == 1568
    assert rejection(encode(Image.new("L", (1, 8001)), "PNG")) == (
        f"{FIELD}.source.data: At least one of the image dimensions exceed max allowed size: 8000 pixels"
    )


def test_2000_pixels_a_side_when_the_request_has_many_images() -> None:
    image = encode(Image.new("L", (2001, 1)), "PNG")
    assert decode(image).width == 1568
    assert rejection(image, many=True) == (
        f"{FIELD}.source.data: At least one of the image dimensions exceed max allowed size "
        "for many-image requests: 2000 pixels"
    )
    assert decode(encode(Image.new("L", (2000, 1)), "PNG"), many=True).width == 1568


def test_oversized_header_is_refused_before_any_pixel_is_read() -> None:
    """8001 x 8001 is under Pillow's own bomb threshold: only our check stops it, from the header
    (the IDAT here is far too short, so decoding would fail differently)."""
    assert "max allowed size: 8000 pixels" in rejection(png_header(8001, 8001))


@pytest.mark.parametrize("side", [9500, 20_000, 100_000])
def test_decompression_bomb_is_a_400(side: int) -> None:
    """Past Pillow's thresholds (a warning at ~89 MP, an error at ~179 MP) the refusal is the
    same 400, never an exception from Pillow or a large allocation."""
    assert "max allowed size: 8000 pixels" in rejection(png_header(side, side))


# --- scaling and colour ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1000, 1000), (1000, 1000)),
        ((1568, 700), (1568, 700)),
        ((3136, 100), (1568, 50)),
        ((100, 3136), (50, 1568)),
    ],
)
def test_scaled_size(size: tuple[int, int], expected: tuple[int, int]) -> None:
    assert scaled_size(*size) == expected


@pytest.mark.parametrize("size", [(2000, 1000), (1200, 1200), (7999, 4000), (1072, 1073)])
def test_scaled_size_keeps_both_limits_and_the_aspect(size: tuple[int, int]) -> None:
    width, height = scaled_size(*size)
    assert max(width, height) <= 1568
    assert width * height <= 1_150_000
    assert abs(width / height - size[0] / size[1]) < 0.01
    assert width * height > 1_140_000 or max(width, height) >= 1560


def test_large_jpeg_is_scaled_like_any_other() -> None:
    data = encode(two_colors(4000, 3000), "JPEG")
    bitmap = decode(data, "image/jpeg")
    assert (bitmap.width, bitmap.height) == scaled_size(4000, 3000)
    assert bitmap.rgb[:3][0] > 200  # still red at the left edge


def test_exif_orientation_is_applied() -> None:
    """Orientation 6 (turn 90 degrees clockwise to view): stored left-red/right-blue becomes
    top-red/bottom-blue (so the top right corner is red), and width and height trade places, also when the image is scaled."""
    exif = Image.Exif()
    exif[0x0112] = 6
    for stored in ((40, 20), (3200, 100)):
        bitmap = decode(encode(two_colors(*stored), "JPEG", exif=exif, quality=95))
        assert (bitmap.width, bitmap.height) == scaled_size(stored[1], stored[0])
        row = bitmap.width * 3
        top_right, bottom_left = bitmap.rgb[row - 3 : row], bitmap.rgb[-row : -row + 3]
        assert top_right[0] > 200 and top_right[2] < 60
        assert bottom_left[2] > 200 and bottom_left[0] < 60


def test_transparency_is_composited_on_white() -> None:
    image = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    image.putpixel((1, 0), (255, 0, 0, 128))
    bitmap = decode(encode(image, "PNG"))
    assert bitmap.rgb[:3] == bytes((255, 255, 255))
    assert bitmap.rgb[3] == 255 and 120 <= bitmap.rgb[4] <= 135


def test_transparent_gif_is_white_where_transparent() -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((1, 0), 1)
    bitmap = decode(encode(image, "GIF", transparency=0))
    assert bitmap.rgb == bytes((255, 255, 255, 255, 0, 0))


def test_grey_cmyk_and_16_bit_become_rgb() -> None:
    grey = decode(encode(Image.new("L", (1, 1), 77), "PNG"))
    assert grey.rgb == bytes((77, 77, 77))
    cmyk = decode(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG", quality=100))
    assert cmyk.rgb[0] > 200 and cmyk.rgb[1] < 60
    deep = decode(encode(Image.new("I;16", (1, 1), 32768), "PNG"))
    assert deep.rgb == bytes((128, 128, 128))
