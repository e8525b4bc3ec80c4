"""Images by the Claude API's rules: which formats it takes, how large they may be, how many a
request may carry, and how it scales them down before a model sees them. The result is a `Bitmap`.

Field paths: `field` is the path of the image block (`messages.0.content.1`, or
`messages.0.content.2.content.0` inside a tool result); a rejection names the part at fault by
appending `.source.media_type` (the declared type) or `.source.data` (the bytes), as the API does.
Two exceptions: `check_base64_size` runs before decoding and takes the full path of the base64
text; `check_image_count` is about the whole request and names no field (as the API's does not).

Decoding is bounded before any pixel is read: the format is sniffed from the magic bytes, the size
comes from the header, and an image over the size limit is refused there. Pillow's own guard
(`DecompressionBombError`, at twice `Image.MAX_IMAGE_PIXELS`) fires for headers far past our limit
and is turned into the same 400. The largest image ever decoded is 8000 x 8000 (what the API
accepts); JPEGs are decoded at a reduced scale when they will be shrunk anyway.

Reference: the Claude API vision guide (limits, the 1568 px / 1.15 MP downscaling).
"""

from __future__ import annotations

import hashlib
import io
import math
import struct

from PIL import Image, ImageOps

from sijo.engines.base import Bitmap
from sijo.errors import InvalidRequestError

# The media types the API accepts, with the Pillow format that decodes each.
FORMATS: dict[str, str] = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
}

MAX_BASE64_BYTES = 5 * 1024 * 1024  # of the base64 text, not of the decoded bytes
MAX_SIDE = 8000
MANY_IMAGES = 20  # a request with more images than this is held to MAX_SIDE_MANY
MAX_SIDE_MANY = 2000
MAX_IMAGES = 100  # images and document pages together

# The API scales an image down, keeping its aspect ratio, until both of these hold.
SCALED_LONG_SIDE = 1568
SCALED_PIXELS = 1_150_000

# An EXIF orientation that turns the picture a quarter: width and height trade places.
_QUARTER_TURNS = frozenset({5, 6, 7, 8})
_ORIENTATION_TAG = 0x0112
_WHITE = (255, 255, 255, 255)
# What Pillow raises for damaged data. It reports some damage (corrupt EXIF) as a UserWarning, which
# a warnings-as-errors filter (the test suite's) raises: then it is damage like the rest.
_DAMAGED = (OSError, SyntaxError, ValueError, EOFError, struct.error, UserWarning)


def check_base64_size(text: str, field: str) -> None:
    """Refuse base64 image data over 5 MB, counted on the text as sent. Checked before the text is
    decoded, so `field` here is the full path of the text (`messages.0.content.1.source.data`)."""
    size = len(text)
    if size > MAX_BASE64_BYTES:
        raise InvalidRequestError(
            f"{field}: image exceeds 5 MB maximum: {size} bytes > {MAX_BASE64_BYTES} bytes"
        )


def check_image_count(images: int, document_pages: int = 0) -> None:
    """Refuse a request with more than 100 images and PDF pages together (the API counts both)."""
    if images + document_pages > MAX_IMAGES:
        raise InvalidRequestError(
            f"Too much media: {document_pages} document pages + {images} images > {MAX_IMAGES}"
        )


def check_media_type(media_type: str, field: str) -> None:
    """Refuse a declared media type the API does not take."""
    if media_type not in FORMATS:
        raise InvalidRequestError(
            f"{field}.source.media_type: "
            "Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'"
        )


def sniff(data: bytes) -> str | None:
    """The image media type that `data`'s magic bytes announce, or None for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def decode_image(data: bytes, *, media_type: str | None, field: str, many: bool) -> Bitmap:
    """Image file bytes → the RGB `Bitmap` a model sees, by the API's rules.

    `media_type` is the type a base64 source declares (None for URL and file sources, whose type is
    only sniffed); `many` is whether the request has more than 20 images (smaller size limit)."""
    if media_type is not None:
        check_media_type(media_type, field)
    sniffed = sniff(data)
    if sniffed is None:
        raise InvalidRequestError(
            f"{field}.source.data: Could not process image: the data is not an image in one of the "
            f"supported formats: {', '.join(FORMATS)}"
        )
    if media_type is not None and sniffed != media_type:
        raise InvalidRequestError(
            f"{field}.source.data: Image does not match the provided media type {media_type}"
        )
    image = _open(data, sniffed, field)
    _check_dimensions(image.size, field, many)
    try:
        return to_bitmap(_prepared(image))
    except _DAMAGED as exc:
        raise _undecodable(field, sniffed) from exc


def _open(data: bytes, media_type: str, field: str) -> Image.Image:
    """Read the header only (no pixels yet), with only the sniffed format's decoder allowed."""
    try:
        return Image.open(io.BytesIO(data), formats=[FORMATS[media_type]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Far past MAX_SIDE (Pillow refuses above ~179 MP, warns above ~89 MP, where a warnings-
        # as-errors filter raises it): said in the API's words for an image too large.
        raise _too_large(field, MAX_SIDE, many=False) from None
    except _DAMAGED as exc:
        raise _undecodable(field, media_type) from exc


def _check_dimensions(size: tuple[int, int], field: str, many: bool) -> None:
    limit = MAX_SIDE_MANY if many else MAX_SIDE
    if max(size) > limit:
        raise _too_large(field, limit, many=many)


def _too_large(field: str, limit: int, *, many: bool) -> InvalidRequestError:
    which = "max allowed size for many-image requests" if many else "max allowed size"
    return InvalidRequestError(
        f"{field}.source.data: At least one of the image dimensions exceed {which}: {limit} pixels"
    )


def _undecodable(field: str, media_type: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"{field}.source.data: Could not process image: the {media_type} data is damaged or incomplete"
    )


def _prepared(image: Image.Image) -> Image.Image:
    """Upright, scaled down as the API does, and RGB. Scaling is the same whichever way the EXIF
    orientation turns the picture (both limits are symmetric), so the target is found first and a
    JPEG is asked to decode at the smallest DCT scale still at least that large."""
    width, height = scaled_size(*image.size)
    if image.format == "JPEG" and (width, height) != image.size:
        image.draft(None, (width, height))
    if image.getexif().get(_ORIENTATION_TAG) in _QUARTER_TURNS:
        width, height = height, width
    upright = ImageOps.exif_transpose(image)
    rgb = flatten(upright)
    if rgb.size == (width, height):
        return rgb
    return rgb.resize((width, height), Image.Resampling.LANCZOS, reducing_gap=3.0)


def scaled_size(width: int, height: int) -> tuple[int, int]:
    """The size the API scales an image to: the aspect ratio kept, the long side at most 1568 px and
    the area at most 1.15 MP; an image within both is left as it is. Rounded down, so both hold."""
    scale = min(1.0, SCALED_LONG_SIDE / max(width, height), math.sqrt(SCALED_PIXELS / (width * height)))
    if scale == 1.0:
        return width, height
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def flatten(image: Image.Image) -> Image.Image:
    """Any Pillow image → RGB: transparency composited on white, palettes, grey, CMYK and 16-bit grey
    converted (the last scaled to 8 bits; Pillow's own conversion would clip it to white)."""
    if image.mode == "RGB" and not image.has_transparency_data:
        return image
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    if image.has_transparency_data:
        background = Image.new("RGBA", image.size, _WHITE)
        return Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def to_bitmap(image: Image.Image) -> Bitmap:
    """An image → the engine's `Bitmap`, named by its pixels (size and RGB bytes), not its file."""
    rgb = flatten(image)
    pixels = rgb.tobytes()
    return Bitmap(
        width=rgb.width, height=rgb.height, rgb=pixels, digest=pixel_digest(rgb.width, rgb.height, pixels)
    )


def pixel_digest(width: int, height: int, rgb: bytes) -> str:
    """The hex sha256 of the size and the RGB bytes: the same pixels always have the same digest."""
    return hashlib.sha256(f"{width}x{height}:".encode() + rgb).hexdigest()
