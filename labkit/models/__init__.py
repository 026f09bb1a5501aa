"""The embedded default model: a small class-conditional DDPM of 16×16 handwritten digits.

The model ships as package data, a folder in diffusers' layout (``digits_ddpm/``: ``unet/``,
``scheduler/`` and the model card ``README.md``) that diffusers' ``from_pretrained`` loads too;
see :mod:`labkit.models.digits` for the script that trained it.

The names are resolved lazily, so ``import labkit.models`` stays cheap (torch is imported only
when a name is first used; sampling needs torch and safetensors only, diffusers only training)
and ``python -m labkit.models.digits`` runs without the module having been imported twice.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labkit.models.digits import (
        DigitClassifier,
        DigitsModel,
        generate,
        load_digit_images,
        load_digits_model,
        to_png,
    )

__all__ = [
    "DigitClassifier",
    "DigitsModel",
    "generate",
    "load_digit_images",
    "load_digits_model",
    "to_png",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("labkit.models.digits"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
