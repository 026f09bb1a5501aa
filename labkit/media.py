"""Image encoding: pixels → PNG bytes, frames → animated GIF or WebP bytes.

Every image a task renders travels to the ranking widget as encoded bytes (house style 6); these
are the package's encoders, so that each task draws its pixels and no task writes its own
encoder. Pillow is imported on first use, not with this module, so that a module importing these
names (``labkit.models.digits``) stays cheap to import.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["animation_bytes", "png_bytes"]


def png_bytes(image: np.ndarray | Image) -> bytes:
    """The PNG bytes of one image (Pillow's encoder at its default settings).

    ``image`` is a uint8 array ``(h, w)`` or ``(h, w, c)``, read as Pillow's ``fromarray``
    reads it (c = 3: RGB, c = 4: RGBA), except that ``(h, w, 1)`` is grayscale like ``(h, w)``;
    or a Pillow image, written in its own mode.
    """
    from PIL import Image as PILImage

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError(
                f"image must be a uint8 array (h, w) or (h, w, c); got {image.dtype} {image.shape}"
            )
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        image = PILImage.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def animation_bytes(frames: Sequence[Image], *, fmt: str, duration_ms: int) -> bytes:
    """The bytes of an animation of Pillow images, ``duration_ms`` apart, looping forever.

    ``fmt="gif"`` writes the frames as they are (give "P" images sharing one palette to skip
    quantization); ``fmt="webp"`` converts them to RGB and encodes lossy at quality 70 with the
    fastest method (0), which is what a round of animations a person waits for can afford.
    Browsers play GIF frame delays under 20 ms at 100 ms: ask for 20 or more.
    """
    if not frames:
        raise ValueError("frames must hold at least one image; got none")
    buf = io.BytesIO()
    first, rest = frames[0], list(frames[1:])
    if fmt == "gif":
        first.save(
            buf, format="GIF", save_all=True, append_images=rest, duration=duration_ms, loop=0
        )
    elif fmt == "webp":
        first.convert("RGB").save(
            buf,
            format="WEBP",
            save_all=True,
            append_images=[f.convert("RGB") for f in rest],
            duration=duration_ms,
            loop=0,
            quality=70,
            method=0,
        )
    else:
        raise ValueError(f"fmt must be 'gif' or 'webp'; got {fmt!r}")
    return buf.getvalue()
