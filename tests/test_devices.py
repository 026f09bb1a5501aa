"""labkit.devices: a wrong device= is refused up front, naming the argument."""

from __future__ import annotations

import pytest
import torch

from labkit.devices import resolve_device


def test_valid_devices_pass_through() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize(
    ("device", "match"),
    [
        ("gpu", r"dev='gpu' is not a torch device"),
        ("5", r"dev='5' is not a torch device"),
        (None, "dev must be a device name"),
        (True, "dev must be a device name"),
    ],
)
def test_bad_devices_name_the_argument(device: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_device(device, name="dev")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a CPU-only torch")
def test_cuda_without_cuda_says_so() -> None:
    with pytest.raises(ValueError, match=r"device='cuda:1' asks for CUDA, but this torch has no"):
        resolve_device("cuda:1")
