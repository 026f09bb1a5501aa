"""The embedded default model: a small class-conditional DDPM for 16×16 handwritten digits.

labkit needs one generative model that runs anywhere (a laptop CPU, Binder) with nothing to
download, so that a person can steer its latents by ranking images within seconds. This module
holds all of it:

* the data: scikit-learn's ``load_digits`` (1797 images of 8×8, values 0..16), upsampled
  bilinearly to 16×16 and split once, stratified and seeded, into a *train* part (70 %) that the
  generator learns from and a *held-out* part (30 %) it never sees;
* the generator: a UNet with a class embedding (10 digits plus one "null" class for
  classifier-free guidance) and a DDIM sampler;
* loading (:func:`load_digits_model`) and deterministic sampling (:func:`generate`), plus
  :func:`to_png` to turn images into PNG bytes; training (:func:`train`, ``python -m
  labkit.models.digits train``) lives in :mod:`labkit.models.digits_train` and is named here too;
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

import json
import math
import threading
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import torch
import torch.nn.functional as F

from labkit.devices import resolve_device
from labkit.media import png_bytes
from labkit.models._ddim import DDIM
from labkit.models._dpm import DPMSolver2M
from labkit.models._unet import UNet

if TYPE_CHECKING:
    from labkit.models.digits_train import main as main
    from labkit.models.digits_train import train

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


def check_sampler(sampler: object) -> Sampler:
    """``sampler`` if it names one of :data:`SAMPLERS`, else a ValueError listing them."""
    if isinstance(sampler, str) and sampler in SAMPLERS:
        return cast(Sampler, sampler)
    raise ValueError(f"sampler must be one of {', '.join(map(repr, SAMPLERS))}; got {sampler!r}")


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
    sampler = check_sampler(sampler)
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
    return [png_bytes(img) for img in pixels]


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


def __getattr__(name: str) -> Any:
    # The trainer and its command line live in labkit.models.digits_train; they are still named
    # here (`from labkit.models.digits import train`), and resolved on first use, so that this
    # module does not import the trainer's (which imports this one).
    if name in ("main", "train"):
        from labkit.models import digits_train

        return getattr(digits_train, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    from labkit.models.digits_train import main as _main

    raise SystemExit(_main())
