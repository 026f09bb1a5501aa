"""Tests of the embedded digits DDPM: loading, sampling, the judge, the PNGs, the train command."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from labkit.models import (
    DigitClassifier,
    DigitsModel,
    generate,
    load_digit_images,
    load_digits_model,
    to_png,
)
from labkit.models.digits import (
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    IMAGE_SIZE,
    INTERACTIVE_SAMPLER,
    INTERACTIVE_STEPS,
    NUM_CLASSES,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    """Run this module's UNet passes on one thread, then restore the setting.

    The model is small enough that a second thread gains little, while on a busy shared machine
    OpenMP's barriers between two threads can make each pass ten times slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> DigitsModel:
    return load_digits_model()


@pytest.fixture(scope="module")
def classifier() -> DigitClassifier:
    return DigitClassifier()


def _latents(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed))


# --- loading --------------------------------------------------------------------------------


def test_weights_ship_as_small_package_data() -> None:
    folder = resources.files("labkit.models").joinpath("digits_ddpm")
    ref = folder.joinpath("unet", "diffusion_pytorch_model.safetensors")
    assert ref.is_file()
    size = len(ref.read_bytes())
    assert 100_000 < size < 5_000_000, f"weights file is {size} bytes"
    # The model card, with the front matter the Hugging Face Hub reads.
    card = folder.joinpath("README.md").read_text()
    assert card.startswith("---\n") and "library_name: diffusers" in card.split("---")[1]


def test_load_works_without_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    m = load_digits_model()
    assert m.device == torch.device("cpu")
    assert m.dtype == torch.float32
    assert not m.unet.training
    assert all(not p.requires_grad for p in m.unet.parameters())
    assert m.info["steps"] >= 1000  # the shipped weights are the full run, not a smoke run
    images = generate(m, _latents(2, 0), torch.tensor([3, 7]), steps=2)
    assert images.shape == (2, 1, IMAGE_SIZE, IMAGE_SIZE)


def test_load_in_float64_and_refuse_integer_dtype() -> None:
    m = load_digits_model(dtype=torch.float64)
    assert m.dtype == torch.float64
    out = generate(m, _latents(1, 0).double(), torch.tensor([5]), steps=2)
    assert out.dtype == torch.float64
    with pytest.raises(ValueError, match="floating dtype"):
        load_digits_model(dtype=torch.int32)


def test_load_refuses_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"must be a model folder .* is nothing\. Train one"):
        load_digits_model(weights=tmp_path / "absent")


# --- sampling -------------------------------------------------------------------------------


def test_generate_shapes_dtype_range(model: DigitsModel) -> None:
    out = generate(model, _latents(4, 1), torch.tensor([0, 1, 2, 9]))
    assert out.shape == (4, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert out.dtype == torch.float32
    assert out.device == torch.device("cpu")
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    # Digits are mostly paper with some ink: neither blank nor all ink.
    ink = out.mean(dim=(1, 2, 3))
    assert bool(((ink > 0.1) & (ink < 0.6)).all()), ink


def test_generate_is_deterministic_and_row_independent(model: DigitsModel) -> None:
    latents, labels = _latents(5, 2), torch.tensor([4, 4, 8, 1, 6])
    a = generate(model, latents, labels)
    b = generate(model, latents, labels)
    assert torch.equal(a, b)
    # A latent maps to one image whatever else is in the batch (up to float rounding of batched
    # kernels): generating row 2 alone gives the same picture.
    alone = generate(model, latents[2:3], labels[2:3])
    torch.testing.assert_close(alone, a[2:3], atol=1e-4, rtol=0)
    # ... and the image depends on the latent and on the label.
    assert (a[0] - a[1]).abs().max() > 0.1
    other = generate(model, latents[:1], torch.tensor([7]))
    assert (other - a[:1]).abs().max() > 0.1


def test_generate_empty_batch(model: DigitsModel) -> None:
    out = generate(model, _latents(0, 0), torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 1, IMAGE_SIZE, IMAGE_SIZE)


@pytest.mark.parametrize(
    ("latents", "labels", "kwargs", "message"),
    [
        (torch.zeros(2, 16, 16), torch.tensor([1, 2]), {}, "shape"),
        (torch.zeros(2, 1, 8, 8), torch.tensor([1, 2]), {}, "shape"),
        (torch.zeros(2, 1, 16, 16, dtype=torch.long), torch.tensor([1, 2]), {}, "floating"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([1.0, 2.0]), {}, "LongTensor"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([1, 2, 3]), {}, r"shape \(2,\)"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([1, 11]), {}, "got 11"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([-1, 2]), {}, "got -1"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([1, 2]), {"steps": 0}, "steps"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([1, 2]), {"steps": 2.5}, "steps"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([1, 2]), {"guidance": -1.0}, "guidance"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([1, 2]), {"guidance": float("nan")}, "guidance"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([1, 2]), {"eta": -0.5}, "eta"),
        (torch.zeros(2, 1, 16, 16), torch.tensor([1, 2]), {"sampler": "euler"}, "sampler must"),
        (
            torch.zeros(2, 1, 16, 16),
            torch.tensor([1, 2]),
            {"sampler": "dpm++2m", "eta": 0.5},
            r"eta > 0 .* needs sampler='ddim'",
        ),
    ],
)
def test_generate_refuses_bad_input(
    model: DigitsModel,
    latents: torch.Tensor,
    labels: torch.Tensor,
    kwargs: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(ValueError, match=message):
        generate(model, latents, labels, **kwargs)


def test_eta_positive_draws_from_the_generator(model: DigitsModel) -> None:
    latents, labels = _latents(2, 3), torch.tensor([2, 3])

    def run(seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return generate(model, latents, labels, steps=4, guidance=1.0, eta=1.0, generator=gen)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-3


@pytest.mark.parametrize("steps", [DEFAULT_STEPS, INTERACTIVE_STEPS])
def test_samples_are_recognized_as_their_class(
    model: DigitsModel, classifier: DigitClassifier, steps: int
) -> None:
    """Quality bar: the independent classifier names the requested digit for >= 90% of samples.

    At ``generate``'s defaults and at the steps of the rounds a person waits for (DigitsTask's
    default), with the default guidance. The shipped weights reach 100/100 with this seed at both
    (see the model card); 90% leaves room for another BLAS, not for a broken model (chance is 10%).
    """
    labels = torch.arange(NUM_CLASSES).repeat_interleave(10)
    sampler = INTERACTIVE_SAMPLER if steps == INTERACTIVE_STEPS else "ddim"
    images = generate(
        model, _latents(100, 0), labels, steps=steps, guidance=DEFAULT_GUIDANCE, sampler=sampler
    )
    predicted = classifier.predict(images)
    per_class = torch.stack(
        [(predicted[labels == c] == c).float().mean() for c in range(NUM_CLASSES)]
    )
    accuracy = float((predicted == labels).float().mean())
    assert accuracy >= 0.9, f"accuracy {accuracy:.2f}, per class {per_class.tolist()}"
    # No digit may be left out: each class is recognized at least half the time.
    assert float(per_class.min()) >= 0.5, per_class.tolist()


def test_unconditional_samples_at_the_app_settings_look_like_digits(
    model: DigitsModel, classifier: DigitClassifier
) -> None:
    """The digits app samples unconditionally (the null class) at INTERACTIVE_STEPS.

    Share of samples the classifier gives some digit with p >= 0.5: 0.91 on these 200 latents
    (0.93 on 500, the model card; real digits score 0.96). The floor (0.85, above the 0.83 the first
    weights reached here) catches a broken sampler or weights; every digit must appear.
    """
    from labkit.models.digits import NULL_CLASS

    images = generate(
        model,
        _latents(200, 1),
        torch.full((200,), NULL_CLASS),
        steps=INTERACTIVE_STEPS,
        guidance=1.0,
        sampler=INTERACTIVE_SAMPLER,
    )
    probs = classifier.probabilities(images)
    share = float((probs.max(dim=1).values >= 0.5).float().mean())
    assert share >= 0.85, share
    counts = torch.bincount(probs.argmax(dim=1), minlength=NUM_CLASSES)
    assert int(counts.min()) >= 5, counts.tolist()


# --- the judge and the data -------------------------------------------------------------------


def test_split_is_fixed_and_disjoint() -> None:
    x_tr, y_tr = load_digit_images("train")
    x_ho, y_ho = load_digit_images("held_out")
    x_all, _ = load_digit_images("all")
    assert x_tr.shape == (1257, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert x_ho.shape == (540, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert x_tr.shape[0] + x_ho.shape[0] == x_all.shape[0]
    assert float(x_all.min()) >= 0.0 and float(x_all.max()) <= 1.0
    # Stratified: every digit appears in both parts in about the 70/30 proportion.
    counts_tr, counts_ho = torch.bincount(y_tr, minlength=10), torch.bincount(y_ho, minlength=10)
    share = counts_ho.float() / (counts_tr + counts_ho).float()
    assert bool(((share > 0.27) & (share < 0.33)).all()), share
    # Same split on a second call.
    assert torch.equal(load_digit_images("held_out")[1], y_ho)
    with pytest.raises(ValueError, match="split"):
        load_digit_images("test")


def test_classifier_probabilities_and_accuracy_on_unseen_digits(
    classifier: DigitClassifier,
) -> None:
    x_tr, y_tr = load_digit_images("train")  # never seen by the classifier
    probs = classifier.probabilities(x_tr)
    assert probs.shape == (x_tr.shape[0], NUM_CLASSES) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(x_tr.shape[0]))
    accuracy = float((probs.argmax(dim=1) == y_tr).float().mean())
    assert accuracy >= 0.9, accuracy
    # Pure noise is not confidently a digit, and the fit is deterministic.
    noise = torch.rand(20, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    assert float(classifier.probabilities(noise).max(dim=1).values.mean()) < 0.9
    assert torch.equal(DigitClassifier().weight, classifier.weight)
    with pytest.raises(ValueError, match="shape"):
        classifier.probabilities(torch.zeros(3, 256))


def test_the_classifier_fits_on_first_use_not_when_made() -> None:
    # An app builds a task (and a classifier) before its first round but shows no score.
    clf = DigitClassifier()
    assert clf._fitted is None
    weight = clf.weight
    assert weight.shape == (NUM_CLASSES, IMAGE_SIZE * IMAGE_SIZE) and clf._fitted is not None
    assert clf.weight is weight  # fitted once
    with pytest.raises(ValueError, match="C must be > 0"):
        DigitClassifier(C=0)


# --- PNGs -----------------------------------------------------------------------------------


def test_to_png_decodes_to_enlarged_grayscale() -> None:
    images = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE)
    images[0, 0, 3, 5] = 1.0  # one ink pixel
    pngs = to_png(images, scale=6)
    assert len(pngs) == 2 and all(p.startswith(b"\x89PNG") for p in pngs)
    img = Image.open(io.BytesIO(pngs[0]))
    assert img.size == (96, 96) and img.mode == "L"
    # Inverted by default: paper white, ink black, the pixel repeated over a 6×6 block.
    assert img.getpixel((0, 0)) == 255
    assert img.getpixel((5 * 6, 3 * 6)) == 0 and img.getpixel((5 * 6 + 5, 3 * 6 + 5)) == 0
    assert img.getpixel((5 * 6 + 6, 3 * 6)) == 255
    raw = Image.open(io.BytesIO(to_png(images, scale=1, invert=False)[0]))
    assert raw.size == (16, 16) and raw.getpixel((5, 3)) == 255 and raw.getpixel((0, 0)) == 0


@pytest.mark.parametrize(
    ("images", "kwargs", "message"),
    [
        (torch.full((1, 1, 4, 4), 1.5), {}, r"\[0, 1\]"),
        (torch.full((1, 1, 4, 4), float("nan")), {}, "non-finite"),
        (torch.zeros(1, 4, 4), {}, "shape"),
        (torch.zeros(1, 1, 4, 4), {"scale": 0}, "scale"),
    ],
)
def test_to_png_refuses_bad_input(
    images: torch.Tensor, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        to_png(images, **kwargs)


# --- the train command ----------------------------------------------------------------------


def test_profile_command_reports_each_piece(capsys: pytest.CaptureFixture[str]) -> None:
    from labkit.models.digits import main

    assert main(["profile", "--steps", "1", "--repeats", "1", "--px", "32"]) == 0
    out = capsys.readouterr().out
    for piece in (
        "UNet pass",
        "scheduler",
        "to_png",
        "classifier",
        "DigitsTask.render",
        "app loop",
    ):
        assert piece in out, out


def test_train_command_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "tiny.safetensors"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    args = ["train", "--steps", "3", "--out", str(out), "--seed", "1", "--threads", "1"]
    cmd = [sys.executable, "-m", "labkit.models.digits", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert '"steps": 3' in done.stdout
    tiny = load_digits_model(weights=out)
    assert tiny.info["steps"] == 3 and tiny.info["seed"] == 1
    images = generate(tiny, _latents(2, 0), torch.tensor([0, 1]), steps=2)
    assert images.shape == (2, 1, IMAGE_SIZE, IMAGE_SIZE)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0


@pytest.mark.parametrize("guidance", [1.0, DEFAULT_GUIDANCE])
def test_a_class_offset_moves_exactly_its_own_rows(model: DigitsModel, guidance: float) -> None:
    """Row i is drawn from embed(label_i) + offset_i, with guidance or without; a zero offset
    is the plain model, and the hook is gone afterwards."""
    from labkit.models.digits import class_embedding_width

    E = class_embedding_width(model)
    latents, labels = _latents(3, 4), torch.tensor([3, 3, 7])
    plain = generate(model, latents, labels, steps=3, guidance=guidance)
    zero = generate(
        model, latents, labels, steps=3, guidance=guidance, class_offset=torch.zeros(3, E)
    )
    torch.testing.assert_close(zero, plain)
    offset = torch.zeros(3, E)
    offset[1] = 2.0 * torch.randn(E, generator=torch.Generator().manual_seed(1))
    moved = generate(model, latents, labels, steps=3, guidance=guidance, class_offset=offset)
    torch.testing.assert_close(moved[[0, 2]], plain[[0, 2]])
    assert float((moved[1] - plain[1]).abs().max()) > 0.05
    assert not model.unet.class_embedding._forward_hooks


def test_with_guidance_zero_a_class_offset_changes_nothing(model: DigitsModel) -> None:
    """w = 0 uses only the null pass, which the offset never touches."""
    from labkit.models.digits import class_embedding_width

    E = class_embedding_width(model)
    latents, labels = _latents(2, 5), torch.tensor([1, 8])
    offset = 3.0 * torch.randn(2, E, generator=torch.Generator().manual_seed(2))
    with_offset = generate(model, latents, labels, steps=3, guidance=0.0, class_offset=offset)
    torch.testing.assert_close(with_offset, generate(model, latents, labels, steps=3, guidance=0.0))
