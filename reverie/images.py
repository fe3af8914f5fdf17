"""An image input and the checks every one passes: the suffixes of image files, the size limit,
load_image (readable, within the limit, an 8-bit mode; transparent pixels read as white) and
decode_base64 (an image sent as text), with the errors they raise. A leaf: graph_store (image files
for ingest), the encoders (the image tower and its host) and the pipeline all check images here.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

from reverie.errors import ReverieError

MAX_IMAGE_PIXELS = 40_000_000  # above this an image is refused, before it is decoded
# Modes PIL converts to RGB without guessing a scale; 16/32-bit integer and float images are refused.
SUPPORTED_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})


class ImageError(ReverieError):
    """An input that is not a usable image."""


class ImageTooLargeError(ImageError):
    status = 413


class UnsupportedImageError(ImageError):
    status = 415


def load_image(source, max_pixels: int = MAX_IMAGE_PIXELS, name: str = "image"):
    """A PIL RGB image from bytes, a path or a PIL image; a clear ImageError for anything else."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, Image.Image):
        image = source
    else:
        if isinstance(source, (str, Path)):
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"{name}: no such file: {path}")
            source = path.read_bytes()
        if not isinstance(source, (bytes, bytearray)) or not source:
            raise ImageError(f"{name}: empty image")
        try:
            image = Image.open(io.BytesIO(source))
        except UnidentifiedImageError:
            raise UnsupportedImageError(
                f"{name}: not an image PIL can read (PNG, JPEG, GIF, BMP, WebP, TIFF)"
            ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(f"{name}: {width}x{height} is {width * height:,} pixels; the limit is {max_pixels:,}")
    if image.mode not in SUPPORTED_MODES:
        raise UnsupportedImageError(
            f"{name}: image mode {image.mode!r} is not supported; send 8-bit RGB, RGBA, grey or palette images"
        )
    try:
        image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name}: the image data is damaged ({exc})") from None
    if image.mode in ("RGBA", "LA", "PA", "RGBa") or (image.mode == "P" and "transparency" in image.info):
        # transparent pixels read as white, as a viewer shows them
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return image.convert("RGB")


def decode_base64(data: str, name: str = "image") -> bytes:
    """An image sent as base64 text (optionally a data: URL, as browsers write it)."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageError(f"{name}: not valid base64") from None
