"""One check of a ``device=`` argument, so every entry point says the same thing when it is wrong.

``torch.device("gpu")`` raises a RuntimeError from torch's parser, and a CUDA device on a torch
built without CUDA fails only later, deep inside the first tensor op; a user should instead hear
which argument was wrong and why, before any work starts.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["resolve_device"]


def resolve_device(device: Any, *, name: str = "device") -> torch.device:
    """``device`` (a string like ``"cpu"``/``"cuda:0"``, a :class:`torch.device` or a CUDA
    index) checked; ``"cuda"`` comes back with its index (the current device), so it compares
    equal to the device of a model put on ``"cuda:0"``.

    Raises ValueError, naming the argument ``name``, when it is not a device at all, or is a
    CUDA (or MPS) device this torch cannot use here.
    """
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise ValueError(
            f"{name} must be a device name like 'cpu' or 'cuda:0' (or a torch.device, or a CUDA "
            f"index); got {device!r}"
        )
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise ValueError(
            f"{name}={device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1'): {exc}"
        ) from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name}={device!r} asks for CUDA, but this torch has no usable CUDA device "
                f"(torch {torch.__version__}, torch.cuda.is_available() is False); use 'cpu'"
            )
        if dev.index is None:  # "cuda" is the current device: name it, so cuda == cuda:0 here
            dev = torch.device("cuda", torch.cuda.current_device())
        if dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={device!r}: there are only {torch.cuda.device_count()} CUDA devices"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={device!r} asks for MPS, which this machine does not have")
    return dev
