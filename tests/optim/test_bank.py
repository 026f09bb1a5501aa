"""Sample banks and the image features they hold (labkit.optim.bank)."""

from __future__ import annotations

import pytest
import torch

from labkit.optim.bank import SampleBank, farthest_rows, half_exact, image_features


def test_image_features_are_centred_unit_vectors_blind_to_ink_and_contrast() -> None:
    images = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    F = image_features(images)
    assert F.shape == (5, 16) and F.dtype == torch.float64
    assert torch.allclose(F.mean(dim=1), torch.zeros(5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(F.norm(dim=1), torch.ones(5, dtype=torch.float64))
    # The same shape drawn brighter and with more contrast is the same feature.
    assert torch.allclose(image_features(0.2 + 3 * images), F)
    assert torch.equal(image_features(torch.full((1, 1, 4, 4), 0.5)), torch.zeros(1, 16).double())
    with pytest.raises(ValueError, match="at least one image"):
        image_features(torch.zeros(0, 3))


def test_bad_banks_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="same number"):
        SampleBank(torch.zeros(3, 4), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="2-D"):
        SampleBank(torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="finite"):
        SampleBank(torch.full((2, 4), float("nan")), torch.zeros(2, 5))


def test_save_and_load_keep_float16_latents_exactly_and_the_images_to_8_bits(tmp_path) -> None:
    g = torch.Generator().manual_seed(1)
    latents = half_exact(torch.randn(6, 1, 3, 3, generator=g))
    images = torch.rand(6, 1, 4, 4, generator=g)
    bank = SampleBank(latents, image_features(images))
    with pytest.raises(ValueError, match="float16"):
        SampleBank(latents + 1e-4, bank.features).save(tmp_path / "x.safetensors", images)
    bank.save(tmp_path / "bank.safetensors", images, sampler="ddim")
    loaded, meta = SampleBank.load(tmp_path / "bank.safetensors")
    assert torch.equal(loaded.latents, latents) and loaded.shape == (1, 3, 3)
    assert loaded.fingerprint == bank.fingerprint and meta == {"sampler": "ddim"}
    assert torch.allclose(loaded.features, bank.features, atol=0.02)
    with pytest.raises(ValueError, match="6 rows"):
        bank.save(tmp_path / "x.safetensors", images[:2])
    from safetensors.torch import save_file

    save_file({"weights": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a sample bank"):
        SampleBank.load(tmp_path / "other.safetensors")


def test_farthest_rows_cover_the_spread() -> None:
    # Two tight pairs and a far point, starting at the origin: the far point, then the far
    # member of the far pair; then only 0.1 separates anything new, and row 0 is the start itself.
    F = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0], [0.0, 9.0]]).double()
    assert farthest_rows(F, torch.tensor([0.0, 0.0]).double(), 3) == [4, 3, 1]
    assert len(set(farthest_rows(F, F[0], 5))) == 5
