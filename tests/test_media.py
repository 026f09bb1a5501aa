"""Tests of labkit.media: the PNG and animation encoders round-trip through Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageSequence

from labkit.media import animation_bytes, png_bytes


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (5, 7, 3), (5, 7, 4)])
def test_png_bytes_round_trips_the_pixels(shape: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(png_bytes(pixels))))
    assert np.array_equal(back, pixels[..., 0] if shape[-1] == 1 else pixels)
    assert png_bytes(Image.fromarray(back)) == png_bytes(pixels)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((2, 4, 4, 3), np.uint8)])
def test_png_bytes_refuses_what_is_not_a_uint8_image(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="uint8 array"):
        png_bytes(bad)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animation_bytes_holds_every_frame_at_its_delay(fmt: str) -> None:
    frames = [Image.new("RGB", (8, 6), (40 * i, 0, 0)) for i in range(4)]
    anim = Image.open(io.BytesIO(animation_bytes(frames, fmt=fmt, duration_ms=40)))
    assert anim.format == fmt.upper()
    assert sum(1 for _ in ImageSequence.Iterator(anim)) == 4
    if fmt == "gif":  # (Pillow's WebP reader keeps the delay per frame, not in info)
        assert anim.info["duration"] == 40


def test_animation_bytes_refuses_an_unknown_format_and_no_frames() -> None:
    with pytest.raises(ValueError, match="fmt must be"):
        animation_bytes([Image.new("RGB", (2, 2))], fmt="apng", duration_ms=40)
    with pytest.raises(ValueError, match="at least one"):
        animation_bytes([], fmt="gif", duration_ms=40)
