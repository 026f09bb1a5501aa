"""The embedded default model: a small class-conditional DDPM for 16×16 handwritten digits.

labkit needs one generative model that runs anywhere (a laptop CPU, Binder) with nothing to
download, so that a person can steer its latents by ranking images within seconds. This module
holds all of it:

* the data: scikit-learn's ``load_digits`` (1797 images of 8×8, values 0..16), upsampled
  bilinearly to 16×16 and split once, stratified and seeded, into a *train* part (70 %) that the
  generator learns from and a *held-out* part (30 %) it never sees;
* the generator: a UNet with a class embedding (10 digits plus one "null" class for
  classifier-free guidance) and a DDIM sampler;
* training (``python -m labkit.models.digits train``), loading (:func:`load_digits_model`) and
  deterministic sampling (:func:`generate`), plus :func:`to_png` to turn images into PNG bytes;
* :class:`DigitClassifier`, a multinomial logistic regression fitted on the held-out part only,
  so it judges the generator's samples independently of what the generator was trained on.

Symbols (Ho et al. 2020; Song et al. 2021 for DDIM; Salimans & Ho 2022 for v; Ho & Salimans 2021
for guidance):

========================  ========================================================
code                      paper
========================  ========================================================
``x0``                    x₀, a clean image scaled to [-1, 1]
``noise``                 ε ~ N(0, I)
``alphas_cumprod[t]``     ᾱ_t; x_t = √ᾱ_t x₀ + √(1-ᾱ_t) ε
``target`` (v)            v_t = √ᾱ_t ε − √(1-ᾱ_t) x₀, what the UNet predicts
``p_uncond``              probability of replacing the label by the null class
``guidance``              w; v̂ = v(x_t, ∅) + w (v(x_t, c) − v(x_t, ∅))
========================  ========================================================

Training uses diffusers' ``UNet2DModel`` and ``DDIMScheduler`` (imported by :func:`train` only);
loading and sampling use labkit's own torch-only forward pass of the same network
(:mod:`labkit.models._unet`, same parameter names, so the same weights) and DDIM step
(:mod:`labkit.models._ddim`): importing diffusers costs seconds that an app's start-up should not
pay for a network this small.

Why v-prediction and "trailing" timesteps: with few DDIM steps (10–20) the first step starts at
t = 999 where ᾱ_t ≈ 0; an ε-predicting network must then recover x₀ by dividing by √ᾱ_t ≈ 0, while
a v-predicting one stays well conditioned at every noise level. "Trailing" spacing makes the first
sampling step t = 999 (the level the Gaussian latents actually have), not t = 900.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F

from labkit.devices import resolve_device
from labkit.models._ddim import DDIM
from labkit.models._dpm import DPMSolver2M
from labkit.models._unet import UNet

if TYPE_CHECKING:
    # The trainer's types. Imported from their modules rather than from `diffusers`: the package
    # root hides them behind a lazy loader whose type-checking branch resolves to placeholders.
    from diffusers.models.unets.unet_2d import UNet2DModel
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

__all__ = [
    "DEFAULT_GUIDANCE",
    "DEFAULT_STEPS",
    "IMAGE_SIZE",
    "INTERACTIVE_SAMPLER",
    "INTERACTIVE_STEPS",
    "NULL_CLASS",
    "NUM_CLASSES",
    "SAMPLERS",
    "DigitClassifier",
    "DigitsModel",
    "class_embedding_std",
    "class_embedding_width",
    "generate",
    "load_digit_images",
    "load_digits_model",
    "to_png",
    "train",
]

#: Side of the square images the model makes (8×8 digits upsampled twice).
IMAGE_SIZE = 16
#: Digit classes 0..9.
NUM_CLASSES = 10
#: Label index of the "no class" embedding used for classifier-free guidance.
NULL_CLASS = 10
#: DDIM steps used by :func:`generate` unless told otherwise (see the model card,
#: digits_ddpm/README.md, for the quality/time trade-off that picked it).
DEFAULT_STEPS = 10
#: The samplers :func:`generate` offers.
SAMPLERS = ("ddim", "dpm++2m")
Sampler = Literal["ddim", "dpm++2m"]
#: Sampling steps for images a person waits for: the default of :class:`labkit.tasks.DigitsTask`,
#: so of the digits app's rounds, with :data:`INTERACTIVE_SAMPLER`. 5 DPM-Solver++ steps draw a
#: round of 8 unconditional images in about 0.17 s of one core (half the UNet passes of 10) and
#: beat 10 DDIM steps on the classifier's figures (the model card, "Quality and speed").
INTERACTIVE_STEPS = 5
#: The sampler for images a person waits for (see :data:`INTERACTIVE_STEPS`).
INTERACTIVE_SAMPLER: Sampler = "dpm++2m"
#: Guidance scale w used by :func:`generate` unless told otherwise; 1.0 means plain conditional.
DEFAULT_GUIDANCE = 1.5

#: The shipped model: a folder in diffusers' layout inside the package (``unet/``,
#: ``scheduler/``, the model card as ``README.md``), which ``UNet2DModel.from_pretrained(path,
#: subfolder="unet")`` and ``DDIMScheduler.from_pretrained(path, subfolder="scheduler")`` load.
MODEL_DIR = "digits_ddpm"
_UNET_CONFIG = ("unet", "config.json")
_UNET_WEIGHTS = ("unet", "diffusion_pytorch_model.safetensors")
_SCHEDULER_CONFIG = ("scheduler", "scheduler_config.json")
#: How the weights were made (train()'s record): labkit's, beside diffusers' files.
_TRAINING_RECORD = "training.json"
#: Fraction of the digits kept away from the generator, and the seed of that split. Both are
#: constants on purpose: the classifier and the generator must agree on which images are held out.
_HELD_OUT_FRACTION = 0.3
_SPLIT_SEED = 0


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def load_digit_images(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(images, labels)`` of one fixed part of scikit-learn's digits, on the CPU.

    ``images`` is a float32 tensor ``(n, 1, 16, 16)`` in [0, 1] (the 8×8 originals divided by 16
    and upsampled bilinearly; a bilinear blend of values in [0, 1] stays in [0, 1]); ``labels`` is
    an int64 tensor ``(n,)`` of digits 0..9. ``split`` is ``"train"`` (70 %, 1257 images, what the
    generator learns from), ``"held_out"`` (30 %, 540 images, what the classifier learns from) or
    ``"all"``. The split is stratified by digit and seeded, so it is the same on every machine.
    """
    if split not in ("train", "held_out", "all"):
        raise ValueError(f"split must be 'train', 'held_out' or 'all'; got {split!r}")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)  # (1797, 1, 8, 8)
    x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
    y = torch.from_numpy(data.target.astype(np.int64))
    if split == "all":
        return x.contiguous(), y
    idx_train, idx_held = train_test_split(
        np.arange(len(y)),
        test_size=_HELD_OUT_FRACTION,
        random_state=_SPLIT_SEED,
        stratify=data.target,
    )
    idx = torch.from_numpy(np.sort(idx_train if split == "train" else idx_held))
    return x[idx].contiguous(), y[idx]


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------


def _unet_config() -> dict[str, Any]:
    """The UNet's architecture: ~1.1 M parameters, 16 → 8 → 4 pixels, attention only at 4×4.

    Small on purpose: one forward pass of a batch of 16 takes ~20 ms on two CPU cores, so a round
    of 8 guided images (16 rows per step) stays near 0.25 s at 12 steps.
    """
    return {
        "sample_size": IMAGE_SIZE,
        "in_channels": 1,
        "out_channels": 1,
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
        "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
        "norm_num_groups": 8,
        "attention_head_dim": 32,
        "num_class_embeds": NUM_CLASSES + 1,  # + the null class
    }


def _scheduler_config() -> dict[str, Any]:
    """The noise schedule shared by training (``add_noise``) and sampling (DDIM, eta = 0)."""
    return {
        "num_train_timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2",
        "prediction_type": "v_prediction",
        "clip_sample": True,  # the data lie in [-1, 1], so the x₀ estimate may be clipped there
        "clip_sample_range": 1.0,
        "set_alpha_to_one": True,  # the last step lands on ᾱ = 1, i.e. returns the x₀ estimate
        "timestep_spacing": "trailing",
    }


@dataclass
class DigitsModel:
    """A trained generator: the UNet, its noise schedule, and how it was trained.

    ``unet`` (a :class:`labkit.models._unet.UNet`: ``unet(x_t, t, class_labels)`` → v, with the
    parameters of a diffusers ``UNet2DModel``) is in eval mode; its device and dtype are the
    model's (:attr:`device`, :attr:`dtype`). ``scheduler_config`` (DDIMScheduler's arguments) is
    checked on construction and gives the DDIM sampler of :meth:`scheduler`. ``info`` holds the
    training record stored beside the weights (training.json) (steps, seed, final loss, ...).
    """

    unet: UNet
    scheduler_config: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    _sampler: DDIM = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._sampler = DDIM(self.scheduler_config)

    @property
    def device(self) -> torch.device:
        """Device of the UNet's weights."""
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the UNet's weights."""
        return next(self.unet.parameters()).dtype

    def scheduler(self) -> DDIM:
        """The DDIM sampler of this model's noise schedule. It holds no per-run state, so every
        :func:`generate` call, from any thread, shares this one."""
        return self._sampler


def load_digits_model(
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    *,
    weights: str | Path | None = None,
) -> DigitsModel:
    """Load the generator shipped with labkit (or the folder ``weights``), in eval mode.

    The model is a folder in diffusers' layout (:data:`MODEL_DIR`; :func:`train` writes one):
    ``unet/config.json`` and ``unet/diffusion_pytorch_model.safetensors`` (a ``UNet2DModel``),
    ``scheduler/scheduler_config.json`` (a ``DDIMScheduler``) and ``training.json`` (how it was
    trained; optional). diffusers users load the same folder with ``from_pretrained``; labkit
    reads it with torch and safetensors only, because importing diffusers costs seconds of an
    app's start-up. An architecture or schedule that labkit's UNet or samplers do not implement
    raises ValueError naming the setting.

    ``device`` defaults to the CPU and ``dtype`` to float32 (the weights are stored in float16 to
    keep the package small and widened on load). Nothing is downloaded: the folder is package
    data read through :mod:`importlib.resources`.
    """
    resolve_device(device if device is not None else "cpu")  # before reading any file
    target_dtype = dtype if dtype is not None else torch.float32
    if not target_dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype; got {target_dtype}")
    # The packaged folder is reached through importlib.resources; as_file hands out a real path
    # (extracting to a temporary folder only if the package lives in a zip).
    packaged = resources.files("labkit.models").joinpath(MODEL_DIR)
    with resources.as_file(packaged) as default_dir:
        folder = Path(weights) if weights is not None else default_dir
        unet_config, scheduler_config, state, info = _read_model_folder(folder)
    unet = UNet(unet_config)
    unet.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=True)
    dev = resolve_device(device if device is not None else "cpu")
    unet.to(dev, target_dtype).eval().requires_grad_(False)
    return DigitsModel(unet=unet, scheduler_config=scheduler_config, info=info)


def _read_model_folder(
    folder: Path,
) -> tuple[dict[str, Any], dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """The UNet config, scheduler config, weights and training record of a model folder."""
    from safetensors.torch import load_file

    if not folder.is_dir():
        what = "a file" if folder.is_file() else "nothing"
        raise ValueError(
            f"weights must be a model folder in diffusers' layout (unet/, scheduler/); "
            f"{str(folder)!r} is {what}. Train one with `python -m labkit.models.digits train`"
        )
    paths = [folder.joinpath(*parts) for parts in (_UNET_CONFIG, _UNET_WEIGHTS, _SCHEDULER_CONFIG)]
    missing = [str(p.relative_to(folder)) for p in paths if not p.is_file()]
    if missing:
        raise ValueError(f"the model folder {str(folder)!r} lacks {', '.join(missing)}")
    try:
        unet_config = json.loads(paths[0].read_text())
        scheduler_config = json.loads(paths[2].read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"a config file in {str(folder)!r} is not JSON: {err}") from None
    record = folder / _TRAINING_RECORD
    info = json.loads(record.read_text()) if record.is_file() else {}
    return unet_config, scheduler_config, load_file(str(paths[1])), info


def _write_model_folder(folder: Path, unet: Any, scheduler: Any, info: Mapping[str, Any]) -> None:
    """Write ``unet`` (a diffusers ``UNet2DModel``, in float16) and ``scheduler`` to ``folder``.

    diffusers' own ``save_pretrained`` writes both, so the folder is exactly what its
    ``from_pretrained`` reads; the training record goes beside them. Everything is made
    world-readable (safetensors writes owner-only files; package data must be readable).
    """
    folder.mkdir(parents=True, exist_ok=True)
    # float16 weights: half the bytes; the loss change is far below its noise.
    unet.to(torch.float16).save_pretrained(str(folder / _UNET_CONFIG[0]))
    scheduler.save_pretrained(str(folder / _SCHEDULER_CONFIG[0]))
    (folder / _TRAINING_RECORD).write_text(json.dumps(dict(info), indent=2) + "\n")
    for parts in (_UNET_CONFIG, _UNET_WEIGHTS, _SCHEDULER_CONFIG, (_TRAINING_RECORD,)):
        folder.joinpath(*parts).chmod(0o644)


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------


def class_embedding_width(model: DigitsModel) -> int:
    """E, the width of the UNet's class embedding (one row per class, the null class included)."""
    return int(model.unet.class_embedding.embedding_dim)


def class_embedding_std(model: DigitsModel) -> float:
    """The standard deviation of the entries of the ten digits' class embeddings (not the null)."""
    weight = model.unet.class_embedding.weight.detach()[:NUM_CLASSES]
    return float(weight.to(torch.float32).std())


def _check_labels(labels: torch.Tensor, n: int) -> None:
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
        got = labels.dtype if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(
            f"labels must be a LongTensor (int64) of digits 0..9 (or {NULL_CLASS}, the null "
            f"class); got {got}"
        )
    if labels.shape != (n,):
        raise ValueError(
            f"labels must have shape ({n},), one digit per latent; got {tuple(labels.shape)}"
        )
    if n > 0:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi > NULL_CLASS:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"labels must be digits 0..{NUM_CLASSES - 1} or {NULL_CLASS} (the null class, "
                f"unconditional); got {bad}"
            )


def generate(
    model: DigitsModel,
    latents: torch.Tensor,
    labels: torch.Tensor,
    *,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    class_offset: torch.Tensor | None = None,
    sampler: Sampler = "ddim",
) -> torch.Tensor:
    """Denoise ``latents`` into digit images of the classes ``labels`` with DDIM or DPM-Solver++.

    Args:
        model: from :func:`load_digits_model`.
        latents: ``(n, 1, 16, 16)`` floating tensor on ``model.device``: the Gaussian x_T (standard
            normal latents are what the model was trained to start from). Computed in
            ``model.dtype``.
        labels: ``(n,)`` int64 tensor of digits 0..9, on any device; ``NULL_CLASS`` (10) is
            the null class, the unconditional model (with ``guidance=1.0``: one pass a step).
        steps: number of sampling steps (one model evaluation each), 1..1000 (timesteps spaced
            "trailing" from t = 999).
        guidance: classifier-free guidance scale w ≥ 0; 1.0 is the plain conditional model (one
            UNet pass per step), any other value costs a second, unconditional pass per step
            (batched with the first).
        eta: DDIM's η. With the default 0 sampling is deterministic: a latent maps to exactly one
            image, whatever else is in the batch, and ``generator`` is never used. η > 0 adds fresh
            noise at each step drawn from ``generator``.
        generator: the only source of randomness when ``eta > 0``.
        class_offset: optional ``(n, E)`` floating tensor (E = the UNet's class-embedding width,
            :func:`class_embedding_width`) added to the embedding of each row's class: row i is
            conditioned on ``embed(labels[i]) + class_offset[i]`` instead of ``embed(labels[i])``.
            The null class of guidance's unconditional pass is left as it is.
        sampler: ``"ddim"`` (default; what the model card's 10-step figures use, x̂₀ clipped) or
            ``"dpm++2m"``, DPM-Solver++(2M) (:mod:`labkit.models._dpm`): the same ODE to second
            order at the same cost, better at few steps (:data:`INTERACTIVE_SAMPLER`). Only DDIM
            takes ``eta`` > 0.

    Returns:
        ``(n, 1, 16, 16)`` tensor in [0, 1] (0 = paper, 1 = ink), on ``latents``' device in
        ``latents``' dtype.
    """
    if not isinstance(latents, torch.Tensor) or not latents.dtype.is_floating_point:
        raise ValueError(
            f"latents must be a floating tensor (n, 1, {IMAGE_SIZE}, {IMAGE_SIZE}); got {latents!r}"
        )
    if latents.dim() != 4 or tuple(latents.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"latents must have shape (n, 1, {IMAGE_SIZE}, {IMAGE_SIZE}); "
            f"got {tuple(latents.shape)}"
        )
    if latents.device != model.device:
        raise ValueError(f"latents are on {latents.device} but the model is on {model.device}")
    n = latents.shape[0]
    _check_labels(labels, n)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1000:
        raise ValueError(f"steps must be an integer in 1..1000; got {steps!r}")
    if not math.isfinite(guidance) or guidance < 0:
        raise ValueError(f"guidance must be a finite number >= 0; got {guidance!r}")
    if not math.isfinite(eta) or eta < 0:
        raise ValueError(f"eta must be a finite number >= 0; got {eta!r}")
    if sampler not in SAMPLERS:
        raise ValueError(
            f"sampler must be one of {', '.join(map(repr, SAMPLERS))}; got {sampler!r}"
        )
    if sampler != "ddim" and eta != 0:
        raise ValueError(f"eta > 0 (fresh noise each step) needs sampler='ddim'; got {sampler!r}")
    width = class_embedding_width(model)
    if class_offset is not None:
        if not isinstance(class_offset, torch.Tensor) or not class_offset.dtype.is_floating_point:
            raise ValueError(
                f"class_offset must be a floating tensor (n, {width}); got {class_offset!r}"
            )
        if tuple(class_offset.shape) != (n, width):
            raise ValueError(
                f"class_offset must have shape ({n}, {width}), one offset per latent; "
                f"got {tuple(class_offset.shape)}"
            )
    out_dtype = latents.dtype
    if n == 0:
        return latents.new_zeros(latents.shape)

    ddim = model.scheduler()
    plan: list[Any] = (
        ddim.plan(steps) if sampler == "ddim" else DPMSolver2M(ddim.alphas_cumprod).plan(steps)
    )
    cond = labels.to(model.device)
    guided = guidance != 1.0
    # One batch of 2n rows per step when guiding: n conditional rows, then the same n latents with
    # the null class. GroupNorm normalizes each row on its own, so rows never mix.
    class_in = torch.cat([cond, torch.full_like(cond, NULL_CLASS)]) if guided else cond
    x = latents.to(model.dtype)
    hook = None
    if class_offset is not None:
        offset = class_offset.to(model.device, model.dtype)
        caller, rows = threading.get_ident(), (2 * n if guided else n)

        def shift_conditional_rows(_module: Any, _inputs: Any, emb: torch.Tensor) -> torch.Tensor:
            # The UNet looks the classes up once per step; its first n rows are the conditional
            # ones (the guided batch is [conditional; null]), so only those move. The model may
            # be shared: another thread's generate() on it meanwhile is left alone.
            if threading.get_ident() != caller or emb.shape[0] != rows:
                return emb
            return torch.cat([emb[:n] + offset, emb[n:]])

        hook = model.unet.class_embedding.register_forward_hook(shift_conditional_rows)
    x0: torch.Tensor | None = None  # the previous step's x̂₀ (DPM-Solver++'s second order)
    try:
        with torch.inference_mode():
            for step in plan:
                x_in = torch.cat([x, x]) if guided else x
                out = model.unet(x_in, step.t, class_in)
                if guided:
                    v_cond, v_null = out.chunk(2)
                    # Guidance is linear in the prediction, so it applies to v as it does to ε.
                    out = v_null + guidance * (v_cond - v_null)
                if sampler == "ddim":
                    x, x0 = ddim.step(step, out, x, eta=eta, generator=generator)
                else:
                    x, x0 = DPMSolver2M.step(step, out, x, x0)
    finally:
        if hook is not None:
            hook.remove()  # the model may be shared: never leave the offset behind
    # The last step moves to ᾱ = 1 (for DDIM and some step counts, to ᾱ_0 ≈ 1 − 4e-5: see
    # DDIM.plan), so x is the x₀ estimate (DDIM's clipped to [-1, 1]), up to that sliver of noise;
    # map to [0, 1]. The
    # clamp removes float rounding (and the sliver) past the ends; the clipping is the sampler's.
    return ((x.to(out_dtype) + 1.0) / 2.0).clamp_(0.0, 1.0)


def to_png(images: torch.Tensor, *, scale: int = 6, invert: bool = True) -> list[bytes]:
    """Encode each image as an 8-bit grayscale PNG, enlarged ``scale`` times by pixel repetition.

    ``images`` is ``(n, 1, h, w)`` (e.g. from :func:`generate`) with values in [0, 1], on any
    device. ``scale`` is an integer ≥ 1 (the default 6 turns 16×16 into 96×96; nearest-neighbour so
    no blur is invented). With ``invert`` (default) ink is drawn dark on white paper, as
    handwriting looks; otherwise ink is bright on black, as the data are stored. Returns ``n``
    PNG byte strings, ready to travel as binary widget buffers.
    """
    from PIL import Image

    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a tensor of shape (n, 1, h, w); got {shape}")
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1; got {scale!r}")
    arr = images.detach().to("cpu", torch.float32)[:, 0].numpy()
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(
            "image values must lie in [0, 1]; "
            f"got {int((~np.isfinite(arr)).sum())} non-finite values"
        )
    if arr.size and not (arr.min() >= 0.0 and arr.max() <= 1.0):
        raise ValueError(f"image values must lie in [0, 1]; got min {arr.min()}, max {arr.max()}")
    if invert:
        arr = 1.0 - arr
    pixels = np.rint(arr * 255.0).astype(np.uint8)
    pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
    out: list[bytes] = []
    for img in pixels:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


# ---------------------------------------------------------------------------------------------
# Independent judge
# ---------------------------------------------------------------------------------------------


class DigitClassifier:
    """Multinomial logistic regression on the 256 pixels, fitted on the held-out digits only.

    The generator never saw the held-out part, so this classifier judges the generator's samples
    independently of what the generator learnt. Fitting (scikit-learn's L-BFGS, deterministic)
    takes well under a second; nothing is stored. Its accuracy on the generator's *training*
    images, which it never saw, is about 0.95 (see the model card)

    The fitted weights are kept as torch tensors so :meth:`probabilities` runs on the images'
    device without leaving torch. The fit happens on first use, once.
    """

    def __init__(self, *, C: float = 1.0) -> None:
        """``C`` is the inverse L2 strength of scikit-learn.

        The fit on the held-out split happens on first use (:attr:`weight`, :meth:`logits`), not
        here: an app's kernel builds a task, and so a classifier, before its first round, but
        shows no score, and on a busy 2-core machine the fit took seconds of that start-up.
        """
        if not C > 0:
            raise ValueError(f"C must be > 0; got {C!r}")
        self.C = C
        self._fitted: tuple[torch.Tensor, torch.Tensor] | None = None

    def _fit(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._fitted is None:
            from sklearn.linear_model import LogisticRegression

            x, y = load_digit_images("held_out")
            clf = LogisticRegression(C=self.C, max_iter=5000)
            clf.fit(x.flatten(1).numpy().astype(np.float64), y.numpy())
            self._fitted = (
                torch.from_numpy(clf.coef_.astype(np.float32)),  # (10, 256)
                torch.from_numpy(clf.intercept_.astype(np.float32)),  # (10,)
            )
        return self._fitted

    @property
    def weight(self) -> torch.Tensor:
        """``(10, 256)`` float32 weights of the fitted regression (fitted on first access)."""
        return self._fit()[0]

    @property
    def bias(self) -> torch.Tensor:
        """``(10,)`` float32 intercepts of the fitted regression (fitted on first access)."""
        return self._fit()[1]

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(n, 10)`` unnormalized log-probabilities of ``images`` ``(n, 1, 16, 16)`` in [0, 1]."""
        if (
            not isinstance(images, torch.Tensor)
            or images.dim() != 4
            or tuple(images.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE)
        ):
            shape = (
                tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            )
            raise ValueError(
                f"images must have shape (n, 1, {IMAGE_SIZE}, {IMAGE_SIZE}); got {shape}"
            )
        x = images.flatten(1).to(torch.float32)
        w = self.weight.to(x.device)
        b = self.bias.to(x.device)
        return x @ w.T + b

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """``(n, 10)`` class probabilities (rows sum to 1), float32 on ``images``' device."""
        return torch.softmax(self.logits(images), dim=1)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """``(n,)`` int64 most probable digit of each image."""
        return self.logits(images).argmax(dim=1)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to 5 % of it."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _noised_and_target(
    scheduler: DDIMScheduler, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = √ᾱ_t x₀ + √(1-ᾱ_t) ε and the target v_t = √ᾱ_t ε − √(1-ᾱ_t) x₀, all ``(b, 1, 16, 16)``.

    ``t`` is a ``(b,)`` int64 tensor (diffusers annotates it as ``IntTensor`` but indexes with it).
    """
    ti = cast(torch.IntTensor, t)
    return scheduler.add_noise(x0, noise, ti), scheduler.get_velocity(x0, noise, ti)


def _held_out_loss(unet: UNet2DModel, scheduler: DDIMScheduler, *, seed: int) -> float:
    """Mean v-prediction MSE on the held-out images at fixed noise and timesteps (a fair figure)."""
    x, y = load_digit_images("held_out")
    x0 = x * 2.0 - 1.0
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, scheduler.config["num_train_timesteps"], (x0.shape[0],), generator=gen)
    with torch.inference_mode():
        x_t, target = _noised_and_target(scheduler, x0, noise, t)
        pred = unet(x_t, t, class_labels=y).sample
    return float(F.mse_loss(pred, target))


def train(
    *,
    steps: int = 2000,
    out: str | Path | None = None,
    seed: int = 0,
    batch_size: int = 64,
    lr: float = 2e-3,
    p_uncond: float = 0.3,
    ema_decay: float = 0.999,
    threads: int | None = 2,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the generator on the train split and write its EMA weights to ``out`` (safetensors).

    Each step draws ``batch_size`` training images x₀ with replacement, a timestep t uniform in
    0..999 and noise ε, forms x_t = √ᾱ_t x₀ + √(1-ᾱ_t) ε, replaces each label by the null class
    with probability ``p_uncond`` (so one network learns both v(x_t, c) and v(x_t, ∅) for
    guidance) and takes an AdamW step on ‖v̂ − v_t‖². The weights written are an exponential
    moving average (decay ``ema_decay``, warmed up) of the iterates, which samples visibly cleaner
    than the last iterate. All randomness comes from ``seed`` (weight init through the global
    generator seeded once, everything else through a private ``torch.Generator``).

    ``out`` defaults to the weights shipped in the package. ``threads`` caps torch's intra-op
    threads; the shipped weights come from ``python -m labkit.models.digits train --threads 1``
    (2000 steps, seed 0), run on a 2-core machine that other jobs shared, where one thread was
    faster than two. Returns the training record that is also stored in the file's metadata.
    """
    # Training alone uses diffusers: its UNet2DModel defines the architecture the weights are
    # for, and its scheduler the noise schedule; both are slow to import, so only here.
    from diffusers.models.unets.unet_2d import UNet2DModel
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler
    from tqdm.auto import tqdm

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1; got {steps!r}")
    if not 0.0 <= p_uncond < 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1); got {p_uncond!r}")
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"ema_decay must lie in [0, 1); got {ema_decay!r}")
    path = Path(out) if out is not None else Path(__file__).with_name(MODEL_DIR)
    if threads is not None:
        torch.set_num_threads(threads)

    # 1. data: the train split only, scaled to [-1, 1].
    x_all, y_all = load_digit_images("train")
    x_all = x_all * 2.0 - 1.0
    n_train = x_all.shape[0]

    # 2. model, its EMA copy, optimizer, schedule.
    torch.manual_seed(seed)  # UNet2DModel initializes through the global generator
    gen = torch.Generator().manual_seed(seed)
    unet_config, scheduler_config = _unet_config(), _scheduler_config()
    unet = UNet2DModel(**unet_config).train()
    ema = UNet2DModel(**unet_config)
    ema.load_state_dict(unet.state_dict())
    ema.eval().requires_grad_(False)
    params = list(unet.parameters())
    ema_params = list(ema.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = DDIMScheduler(**scheduler_config)
    warmup = min(200, max(1, steps // 10))

    # 3. the loop.
    start = time.perf_counter()
    recent: list[float] = []
    bar = tqdm(range(steps), desc="train digits DDPM", disable=not progress, file=sys.stderr)
    for step in bar:
        idx = torch.randint(0, n_train, (batch_size,), generator=gen)
        x0, c = x_all[idx], y_all[idx].clone()
        c[torch.rand(batch_size, generator=gen) < p_uncond] = NULL_CLASS
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, scheduler_config["num_train_timesteps"], (batch_size,), generator=gen)
        x_t, target = _noised_and_target(scheduler, x0, noise, t)
        loss = F.mse_loss(unet(x_t, t, class_labels=c).sample, target)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        # EMA with warm-up: early on the average would be dominated by the random init.
        decay = min(ema_decay, (1.0 + step) / (10.0 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - decay)
        recent.append(float(loss.detach()))
        recent = recent[-200:]
        if step % 20 == 0 or step == steps - 1:
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.4f}")
    seconds = time.perf_counter() - start
    # Buffers (none today) are copied as-is; parameters already hold the average.
    final_loss = sum(recent) / len(recent)
    held = _held_out_loss(ema, scheduler, seed=seed)

    # 4. save: the folder diffusers' from_pretrained reads, and the record of this run.
    info: dict[str, Any] = {
        "steps": steps,
        "seed": seed,
        "batch_size": batch_size,
        "lr": lr,
        "p_uncond": p_uncond,
        "ema_decay": ema_decay,
        "threads": torch.get_num_threads(),
        "train_images": n_train,
        "train_seconds": round(seconds, 1),
        "final_train_loss": round(final_loss, 5),  # mean of the last ≤200 steps' batch losses
        "held_out_loss_ema": round(held, 5),
        "torch": torch.__version__,
    }
    _write_model_folder(path, ema, scheduler, info)
    return info


# ---------------------------------------------------------------------------------------------
# Evaluation (figures for the model card, digits_ddpm/README.md)
# ---------------------------------------------------------------------------------------------


def _sample_grid(images: torch.Tensor, rows: int, *, scale: int = 4) -> bytes:
    """One PNG of ``images`` ``(rows*cols, 1, 16, 16)`` laid out row-major, dark ink on white."""
    from PIL import Image

    n = images.shape[0]
    cols = n // rows
    pad = 2
    side = IMAGE_SIZE * scale
    canvas = Image.new("L", (cols * (side + pad) + pad, rows * (side + pad) + pad), color=160)
    for i, png in enumerate(to_png(images, scale=scale)):
        r, col = divmod(i, cols)
        canvas.paste(
            Image.open(io.BytesIO(png)), (pad + col * (side + pad), pad + r * (side + pad))
        )
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


def _spread(images: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean RMS pixel distance between two images of the same class (a diversity gauge).

    ``images`` ``(n, 1, 16, 16)`` in [0, 1], ``labels`` ``(n,)``. Collapsed samples score near 0;
    the real digits score about 0.21.
    """
    dists = []
    for c in range(NUM_CLASSES):
        x = images[labels == c].flatten(1)
        if x.shape[0] > 1:
            d = torch.cdist(x, x) / math.sqrt(x.shape[1])
            k = x.shape[0]
            dists.append(d.sum() / (k * (k - 1)))  # the zero diagonal excluded from the mean
    return float(torch.stack(dists).mean())


def _evaluate(
    *,
    weights: str | Path | None,
    per_class: int,
    seed: int,
    steps_list: Sequence[int],
    guidance_list: Sequence[float],
    samplers: Sequence[Sampler] = ("ddim",),
    grid: str | Path | None,
    threads: int | None,
) -> None:
    """Print classifier accuracy on samples and the time for a round of 8.

    One line per sampler × steps × guidance, and one per sampler × steps for the unconditional
    model.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    model = load_digits_model(weights=weights)
    clf = DigitClassifier()
    x_tr, y_tr = load_digit_images("train")
    acc_train = float((clf.predict(x_tr) == y_tr).float().mean())
    print(f"model info: {json.dumps(model.info)}")
    print(f"classifier (fit on held-out) accuracy on the generator's train images: {acc_train:.4f}")
    print(f"real train images: within-class spread {_spread(x_tr, y_tr):.3f}")
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    latents = torch.randn(labels.shape[0], 1, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    unconditional = torch.randn(500, 1, IMAGE_SIZE, IMAGE_SIZE, generator=gen)
    for sampler in samplers:
        for steps in steps_list:
            for guidance in guidance_list:
                imgs = generate(
                    model, latents, labels, steps=steps, guidance=guidance, sampler=sampler
                )
                probs = clf.probabilities(imgs)
                acc = float((probs.argmax(dim=1) == labels).float().mean())
                conf = float(probs.gather(1, labels[:, None]).mean())
                generate(
                    model, latents[:8], labels[:8], steps=steps, guidance=guidance, sampler=sampler
                )  # warm-up
                # Wall time depends on whoever else uses the cores; CPU time (all threads of this
                # process) does not, and with one thread it is the wall time of an idle machine.
                times, cpu = [], []
                for _ in range(5):
                    t0, c0 = time.perf_counter(), time.process_time()
                    generate(
                        model,
                        latents[:8],
                        labels[:8],
                        steps=steps,
                        guidance=guidance,
                        sampler=sampler,
                    )
                    times.append(time.perf_counter() - t0)
                    cpu.append(time.process_time() - c0)
                print(
                    f"{sampler} steps={steps:3d} guidance={guidance:4.1f}: accuracy {acc:.3f} "
                    f"(mean p(requested) {conf:.3f}, spread {_spread(imgs, labels):.3f}) "
                    f"on {labels.shape[0]} samples; round of 8: best {min(times):.3f} s, "
                    f"median {sorted(times)[2]:.3f} s, CPU time best {min(cpu):.3f} s"
                )
            # Unconditional (the null class, one pass a step: what the digits app draws). No digit
            # was asked for, so the figure is the share the classifier gives *some* digit with
            # p >= 0.5 (the real train images: 0.96).
            null = torch.full((unconditional.shape[0],), NULL_CLASS)
            imgs = generate(model, unconditional, null, steps=steps, guidance=1.0, sampler=sampler)
            probs = clf.probabilities(imgs)
            share = float((probs.max(dim=1).values >= 0.5).float().mean())
            pred = probs.argmax(dim=1)
            cpu_u = _cpu_best(
                functools.partial(
                    generate,
                    model,
                    unconditional[:8],
                    null[:8],
                    steps=steps,
                    guidance=1.0,
                    sampler=sampler,
                ),
                5,
            )
            print(
                f"{sampler} steps={steps:3d} unconditional: p(some digit) >= 0.5 for "
                f"{share:.3f} of {null.shape[0]} samples "
                f"(spread {_spread(imgs, pred):.3f} by predicted digit); "
                f"round of 8: CPU time best {cpu_u:.3f} s"
            )
    if grid is not None:
        # Grid: one row per digit, 10 columns, at the defaults.
        g_labels = torch.arange(NUM_CLASSES).repeat_interleave(10)
        g_latents = torch.randn(
            100, 1, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(seed)
        )
        imgs = generate(model, g_latents, g_labels)
        Path(grid).write_bytes(_sample_grid(imgs, rows=NUM_CLASSES))
        print(f"wrote {grid}")


def _cpu_best(fn: Any, repeats: int) -> float:
    """Best CPU time of the process over ``repeats`` calls of ``fn()``, in seconds."""
    best = math.inf
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        best = min(best, time.process_time() - c0)
    return best


def _profile(*, steps_list: Sequence[int], image_px: int, repeats: int, threads: int) -> None:
    """Print where the CPU time of a digits app round goes: ``DigitsTask.render`` of 8 latents.

    The app's task: unconditional (one UNet pass of 8 rows a DDIM step), ``image_px`` tiles.
    Every figure is the best CPU time of ``repeats`` calls with ``threads`` torch threads (on a
    shared machine the best is the least disturbed one; with one thread it is an idle core's wall
    time). A new round draws 8 latents the task never saw; a line-search round 6 new latents plus
    the incumbent and the previous winner drawn in an earlier round (remembered by the task);
    the plot's score of the incumbent after a round is then served from memory too.
    """
    from labkit.tasks.diffusion import DigitsTask, renormalize_latents

    torch.set_num_threads(threads)
    model = load_digits_model()
    clf = DigitClassifier()
    gen = torch.Generator().manual_seed(0)

    def fresh(n: int) -> torch.Tensor:
        return torch.randn(n, 1, IMAGE_SIZE, IMAGE_SIZE, generator=gen)

    z, null = fresh(8), torch.full((8,), NULL_CLASS)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), best of {repeats}")
    with torch.inference_mode():
        t = torch.tensor(999)
        unet8 = _cpu_best(lambda: model.unet(z, t, null), repeats)
        unet1 = _cpu_best(lambda: model.unet(z[:1], t, null[:1]), repeats)
    print(f"UNet pass: 8 rows {unet8 * 1e3:.1f} ms, 1 row {unet1 * 1e3:.1f} ms")

    sampler = model.scheduler()
    plan = sampler.plan(10)
    v = torch.randn_like(z)
    step = _cpu_best(lambda: sampler.step(plan[3], v, z), repeats)
    print(
        f"scheduler: plan of 10 steps {_cpu_best(lambda: sampler.plan(10), repeats) * 1e3:.2f} "
        f"ms a call, step {step * 1e3:.2f} ms"
    )
    images = generate(model, z, null, steps=4, guidance=1.0)
    scale = image_px // IMAGE_SIZE
    png = _cpu_best(lambda: to_png(images, scale=scale), repeats)
    png16 = _cpu_best(lambda: to_png(images, scale=1), repeats)
    print(f"to_png of 8: {image_px} px {png * 1e3:.1f} ms, 16 px {png16 * 1e3:.1f} ms")
    clf_t = _cpu_best(lambda: clf.probabilities(images), repeats)
    renorm = _cpu_best(lambda: renormalize_latents(z), repeats)
    print(f"classifier of 8: {clf_t * 1e3:.2f} ms; renormalize 8 latents {renorm * 1e3:.2f} ms")

    def line(steps: int) -> str:
        gen_t = _cpu_best(lambda: generate(model, z, null, steps=steps, guidance=1.0), repeats)
        one = _cpu_best(
            lambda: generate(model, z[:1], null[:1], steps=steps, guidance=1.0), repeats
        )
        task = DigitsTask(
            0, condition=None, steps=steps, image_px=image_px, model=model, classifier=clf
        )
        rounds = [fresh(8) for _ in range(repeats)]
        it = iter(rounds)
        new_round = _cpu_best(lambda: task.render(next(it)), repeats)
        # Line-search rounds: rows 0 and 1 were drawn in the round before, 6 rows are new.
        ls_rounds = [torch.cat([r[:2], fresh(6)]) for r in rounds]
        it_ls = iter(ls_rounds)
        ls_round = _cpu_best(lambda: task.render(next(it_ls)), repeats)
        score = _cpu_best(lambda: task.score(ls_rounds[-1][:1]), repeats)
        return (
            f"steps={steps:2d}: generate 8 {gen_t * 1e3:.0f} ms, 1 {one * 1e3:.0f} ms; "
            f"DigitsTask.render: new round of "
            f"8 {new_round * 1e3:.0f} ms, line-search round (6 new) {ls_round * 1e3:.0f} ms; "
            f"score of a remembered incumbent {score * 1e3:.2f} ms (drawn afresh: the 1 above)"
        )

    def loop(steps: int, rounds: int = 13) -> str:
        # What the kernel does between a click and the next round, as the app does it: tell the
        # ranking, render the next round, then the plot's score and thumbnail of the incumbent.
        from labkit.optim.zo_ranksgd import ZORankSGD

        task = DigitsTask(
            8, condition=None, steps=steps, image_px=image_px, model=model, classifier=clf
        )
        opt = ZORankSGD(task.x0(1), lr=8.0, mu=1.0, m=8, line_search=6, seed=0)
        times = []
        for _ in range(rounds):
            ranking = torch.argsort(task.score(opt.ask()), descending=True).tolist()
            c0 = time.process_time()
            opt.tell(ranking)
            task.render(opt.ask())
            task.score(opt.x.unsqueeze(0))
            task.render(opt.x.unsqueeze(0))
            times.append(time.process_time() - c0)
        times = sorted(times[1:])  # the first round's incumbent was never drawn in a round
        return (
            f"steps={steps:2d}: app loop (tell, render next round, incumbent score and "
            f"thumbnail), {len(times)} rounds: median {times[len(times) // 2] * 1e3:.0f} ms, "
            f"best {times[0] * 1e3:.0f} ms a round"
        )

    for steps in steps_list:
        print(line(steps))
    for steps in steps_list:
        print(loop(steps))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labkit.models.digits {train,evaluate,profile} ...``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m labkit.models.digits", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_train = sub.add_parser("train", help="train the generator and write safetensors weights")
    p_train.add_argument("--steps", type=int, default=2000, help="optimizer steps (default 2000)")
    p_train.add_argument(
        "--out", type=Path, default=None, help="output file (default: the packaged weights)"
    )
    p_train.add_argument(
        "--seed", type=int, default=0, help="seed of init, batches and noise (default 0)"
    )
    p_train.add_argument("--batch-size", type=int, default=64)
    p_train.add_argument(
        "--p-uncond",
        type=float,
        default=0.3,
        help="probability of training on the null class instead of the label (default 0.3)",
    )
    p_train.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p_eval = sub.add_parser("evaluate", help="classifier accuracy on samples and sampling time")
    p_eval.add_argument("--weights", type=Path, default=None)
    p_eval.add_argument("--per-class", type=int, default=10)
    p_eval.add_argument("--seed", type=int, default=0)
    p_eval.add_argument("--steps", type=int, nargs="+", default=[DEFAULT_STEPS])
    p_eval.add_argument("--guidance", type=float, nargs="+", default=[DEFAULT_GUIDANCE])
    p_eval.add_argument("--sampler", nargs="+", choices=SAMPLERS, default=["ddim"])
    p_eval.add_argument(
        "--grid", type=Path, default=None, help="write a 10×10 sample grid PNG here"
    )
    p_eval.add_argument("--threads", type=int, default=2)
    p_prof = sub.add_parser(
        "profile", help="where the CPU time of a digits app round (DigitsTask.render) goes"
    )
    p_prof.add_argument("--steps", type=int, nargs="+", default=[DEFAULT_STEPS, INTERACTIVE_STEPS])
    p_prof.add_argument("--px", type=int, default=128, help="tile side in pixels (default 128)")
    p_prof.add_argument("--repeats", type=int, default=15)
    p_prof.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.command == "train":
        info = train(
            steps=args.steps,
            out=args.out,
            seed=args.seed,
            batch_size=args.batch_size,
            p_uncond=args.p_uncond,
            threads=args.threads,
        )
        print(json.dumps(info, indent=2))
    elif args.command == "profile":
        _profile(
            steps_list=args.steps, image_px=args.px, repeats=args.repeats, threads=args.threads
        )
    else:
        _evaluate(
            weights=args.weights,
            per_class=args.per_class,
            seed=args.seed,
            steps_list=args.steps,
            guidance_list=args.guidance,
            samplers=args.sampler,
            grid=args.grid,
            threads=args.threads,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
