"""Diffusion latents as candidates: steer what a diffusion model draws by ranking its images.

The optimized vector is the **initial noise latent** x_T of deterministic DDIM sampling (η = 0):
with η = 0 every denoising step is a fixed function of the current latent, so one latent maps to
exactly one image, and a ranking of images is a ranking of latents. Optionally the conditioning
is optimized along with it: the digits model's class embedding (``optimize="latents+class"``) or a
text-to-image pipeline's prompt embedding (``optimize="latents+prompt"``).

Two tasks, one mechanism:

======================  ==========================================================================
task                    model
======================  ==========================================================================
:class:`DigitsTask`     the embedded 16×16 digits model (:mod:`labkit.models.digits`); nothing to
                        download, a round of 8 in a fraction of a second on a laptop CPU
:class:`PipelineTask`   any diffusers text-to-image pipeline a user has loaded (Stable Diffusion
                        and pipelines with the same call signature)
======================  ==========================================================================

Symbols:

==========  ==================  ===========================================================
symbol      code                meaning
==========  ==================  ===========================================================
z = x_T     a candidate row     initial latent, N(0, I_D) under the model's prior
D           ``self.dim``        number of latent entries (1·16·16 = 256 for the digits)
√D          ``radius``          the norm a N(0, I_D) draw concentrates at: ‖z‖ = √D ± O(1)
e           ``prompt_embeds``   the prompt's text-encoder embedding, ``(L, H)``; for the
                                digits, the class's embedding row ``(E,)``
δ           conditioning part   ``e + s·δ`` is the embedding used (``s = prompt_scale`` or
            of a candidate      ``class_scale``); δ = 0 is the conditioning as given
==========  ==================  ===========================================================

**Why renormalize.** A standard normal draw in D dimensions lies, with overwhelming probability,
in a thin shell of radius √D (‖z‖² is χ²_D: mean D, standard deviation √(2D)). The model was only
ever trained to denoise latents from that shell. An optimizer's candidates are not: ZO-RankSGD's
x + μξ has ‖x + μξ‖² ≈ ‖x‖² + μ²D, and CMA-ES's mean, an average of samples, shrinks toward the
origin. With ``renormalize=True`` (the default) :meth:`render` and :meth:`score` map each
candidate z to z·√D/‖z‖ before sampling, so whatever the optimizer proposes is drawn from the
shell the model knows. The optimizer stays generic: it never learns this happened, and the map is
scale-invariant, so the radial part of its moves is simply ignored. Whether it helps is measured
by ``labkit bench diffusion`` (see docs/benchmarks.md).

**Machine judges.** ``task.judge(...)`` is a :class:`labkit.judges.ScoreJudge` that ranks the
rendered images by a score — :class:`DigitProbability` (the digits classifier's probability of a
requested digit) or :class:`ImageSimilarity` (closeness to a target image, a person with a picture
in mind) — optionally with Thurstone noise and slips (``noise=``, ``swap_prob=``) to act like a
person.

Cost. Each task generates the new images of a round in **one** batched call and remembers the last
``_cache_rows`` images it made (32; the digits task 256), one per latent, keyed by the candidate's
exact bytes and the task's settings (:meth:`_LatentTask.images`). Only candidates it has not drawn
recently go to the model: the widget's render, a judge's score and the plot's score of the same
round share one generation, and a line-search round's incumbent and previous winner (drawn in
earlier rounds) are not drawn again. An image served from memory is, bit for bit, the one shown when
that latent was first drawn. Drawn afresh in a batch of another size it may differ in the last float
bits (CPU kernels pick their blocking by batch size; measured ≤ 1e-6 on [0, 1] pixels for the digits
model), never visibly.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Literal

import torch

from labkit._checks import check_flag, check_int, check_nonneg, integer
from labkit.devices import resolve_device
from labkit.judges import ScoreJudge
from labkit.media import png_bytes

__all__ = [
    "DigitProbability",
    "DigitsTask",
    "ImageSimilarity",
    "PipelineTask",
    "renormalize_latents",
]

#: Scores of a batch of images: ``(n, C, H, W)`` in [0, 1] -> ``(n,)``, higher is better.
Scorer = Callable[[torch.Tensor], torch.Tensor]

#: How many images (one per candidate) a task remembers: four rounds of 8 — the round on screen,
#: the rounds its incumbent and previous winner came from, a replayed one. 32 images of Stable
#: Diffusion at 512² are 100 MB of float32; of the digits model, 32 kB.
_CACHE_ROWS = 32


# -- the prior's shell ----------------------------------------------------------------------------
def renormalize_latents(Z: torch.Tensor) -> torch.Tensor:
    """Scale each row of ``Z`` to the norm √D of a typical draw from N(0, I_D).

    ``Z`` is an ``(n, *shape)`` floating tensor (any device); D is the number of entries of one
    row, ``prod(shape)``. Returns a new tensor of the same shape, device and dtype, each row
    ``z·√D/‖z‖``. The norm is computed in float32 at least, so a float16 latent of D = 16384
    (‖z‖² ≈ 16384, fine) and larger ones do not overflow. A row of zeros has no direction to keep
    and is refused with a ``ValueError``.
    """
    if not isinstance(Z, torch.Tensor) or not Z.dtype.is_floating_point or Z.dim() < 2:
        raise ValueError(
            f"renormalize_latents takes an (n, *shape) floating tensor; got "
            f"{tuple(Z.shape) if isinstance(Z, torch.Tensor) else type(Z).__name__}"
        )
    flat = Z.reshape(Z.shape[0], -1)
    work = flat.to(torch.promote_types(flat.dtype, torch.float32))
    norms = torch.linalg.vector_norm(work, dim=1, keepdim=True)
    # One host sync per batch: a task renders a batch at a time anyway.
    zero = norms.squeeze(1) == 0
    if bool(zero.any()):
        raise ValueError(
            f"cannot renormalize latent row {int(zero.nonzero()[0, 0])}: it is all zeros "
            f"(a latent needs a direction to be put on the prior's shell)"
        )
    out = work * (math.sqrt(flat.shape[1]) / norms)
    return out.to(Z.dtype).reshape(Z.shape)


# -- scores ---------------------------------------------------------------------------------------
class DigitProbability:
    """The digits classifier's probability that an image shows ``digit``.

    Args:
        digit: the requested digit, 0..9.
        classifier: a :class:`labkit.models.digits.DigitClassifier` (``None``: fit one, under a
            second, on the held-out digits the generator never saw).

    Call it on ``(n, 1, 16, 16)`` images in [0, 1] (any device); returns ``(n,)`` float32
    probabilities on the images' device. Higher is better.
    """

    def __init__(self, digit: int, *, classifier: Any = None) -> None:
        self.digit = _check_digit(digit, "digit")
        if classifier is None:
            from labkit.models.digits import DigitClassifier

            classifier = DigitClassifier()
        self.classifier = classifier

    def __repr__(self) -> str:
        return f"DigitProbability({self.digit})"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(n,)`` probabilities of ``self.digit`` for ``(n, 1, 16, 16)`` images."""
        return self.classifier.probabilities(images)[:, self.digit]


class ImageSimilarity:
    """Closeness of images to a target image in pixel space: a person with a picture in mind.

    Args:
        target: ``(C, H, W)`` or ``(1, C, H, W)`` tensor in [0, 1], the picture in mind (any
            device; moved to the images' device when scoring).
        metric: ``"mse"`` (default): the score is −mean((x − target)²), 0 for a perfect match
            and −1 at worst; ``"cosine"``: the cosine of the angle between the flattened image and
            target, 1 for a match (images in [0, 1] give scores in [0, 1]).

    Call it on ``(n, C, H, W)`` images in [0, 1]; returns ``(n,)`` float32 scores on their device.
    Higher is better for both metrics.
    """

    def __init__(self, target: torch.Tensor, *, metric: Literal["mse", "cosine"] = "mse") -> None:
        if not isinstance(target, torch.Tensor) or not target.dtype.is_floating_point:
            raise ValueError(
                f"target must be a floating image tensor (C, H, W) in [0, 1]; got {target!r}"
            )
        if target.dim() == 4 and target.shape[0] == 1:
            target = target[0]
        if target.dim() != 3:
            raise ValueError(
                f"target must have shape (C, H, W) or (1, C, H, W); got {tuple(target.shape)}"
            )
        if metric not in ("mse", "cosine"):
            raise ValueError(f"metric must be 'mse' or 'cosine'; got {metric!r}")
        if metric == "cosine" and not bool(target.any()):
            raise ValueError("a cosine similarity needs a target that is not all zeros")
        self.target = target.detach().to(torch.float32)
        self.metric: str = metric

    def __repr__(self) -> str:
        return f"ImageSimilarity(target {tuple(self.target.shape)}, metric={self.metric!r})"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """``(n,)`` similarity of each of the ``(n, C, H, W)`` images to the target."""
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise ValueError(
                f"images must be an (n, C, H, W) tensor; got "
                f"{tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)}"
            )
        if tuple(images.shape[1:]) != tuple(self.target.shape):
            raise ValueError(
                f"images of shape {tuple(images.shape[1:])} cannot be compared with a target of "
                f"shape {tuple(self.target.shape)}"
            )
        x = images.to(torch.float32).flatten(1)
        t = self.target.to(x.device).flatten()
        if self.metric == "mse":
            return -((x - t) ** 2).mean(dim=1)
        return torch.nn.functional.cosine_similarity(x, t.unsqueeze(0), dim=1)


# -- what both tasks share ------------------------------------------------------------------------
def _check_digit(value: Any, name: str) -> int:
    if integer(value) is None or not 0 <= int(value) <= 9:
        raise ValueError(f"{name} must be a digit, an int in 0..9; got {value!r}")
    return int(value)


def _digest(x: torch.Tensor) -> str:
    """A key for one candidate: its shape, dtype and exact bytes."""
    t = x.detach().to("cpu").contiguous()
    h = hashlib.sha1(str((t.dtype, tuple(t.shape))).encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class _LatentTask:
    """Shared machinery: checks, the image cache, render/score/judge on top of ``_generate``.

    Subclasses set ``shape`` (one candidate's shape), ``device``, ``scorer`` and implement
    ``_generate(X) -> images``, one batched model call for all rows of ``X``.
    """

    maximize: bool = True
    mime: str = "image/png"
    #: Images remembered (``_CACHE_ROWS``; the digits task more: its optimizer renders a pool).
    _cache_rows: int = _CACHE_ROWS
    shape: tuple[int, ...]
    latent_shape: tuple[int, ...]
    optimize: str
    device: torch.device
    scorer: Scorer | None
    renormalize: bool

    def __init__(self) -> None:
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        #: Number of batched model calls made so far (for tests and benchmarks).
        self.calls = 0

    @property
    def dim(self) -> int:
        """D, the number of entries of one candidate vector."""
        return math.prod(self.shape)

    def _check(self, X: Any) -> torch.Tensor:
        if not isinstance(X, torch.Tensor) or not X.dtype.is_floating_point:
            raise ValueError(
                f"candidates must be a floating tensor (m, {', '.join(map(str, self.shape))}); "
                f"got {type(X).__name__ if not isinstance(X, torch.Tensor) else X.dtype}"
            )
        if X.dim() != len(self.shape) + 1 or tuple(X.shape[1:]) != self.shape:
            raise ValueError(
                f"candidates must have shape (m, {', '.join(map(str, self.shape))}), one latent "
                f"per row; got {tuple(X.shape)} (use x.unsqueeze(0) for one latent)"
            )
        if X.shape[0] < 1:
            raise ValueError("a round must have at least one candidate; got m=0")
        finite = torch.isfinite(X).flatten(1).all(dim=1)
        if not bool(finite.all()):  # one host sync a round: the model would draw noise from NaN
            bad = (~finite).nonzero().flatten().tolist()
            raise ValueError(f"candidates {bad} are not finite (NaN or inf in the latent)")
        return X

    def images(self, X: torch.Tensor) -> torch.Tensor:
        """The images of the ``(m, *shape)`` candidates, ``(m, C, H, W)`` in [0, 1].

        Candidates drawn recently (the last ``_cache_rows`` images, keyed by each row's exact
        bytes and the task's settings) come from memory; the others, without duplicates, go to
        the model in one batched call (none if every row is remembered). The result is a new
        tensor on the task's device.
        """
        X = self._check(X)
        # 1. One key per row. The settings are part of it, so changing one (say ``renormalize``)
        # after a round was drawn never serves that round's stale images.
        settings = repr(self._settings())
        cpu = X.detach().to("cpu")  # one transfer for the whole round, then hashing per row
        keys = [_digest(row) + settings for row in cpu]
        # 2. Draw the rows not remembered, each distinct latent once, in their order of appearance.
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in self._cache and key not in first:
                first[key] = i
        if first:
            rows = list(first.values())
            new = self._generate(X[rows] if len(rows) < X.shape[0] else X)
            self.calls += 1
            for key, image in zip(first, new, strict=True):
                # A copy, not a view: an evicted image must not keep its whole batch alive.
                self._cache[key] = image.clone()
        # 3. Assemble in row order, mark this round's rows most recent, forget the oldest.
        for key in keys:
            self._cache.move_to_end(key)
        out = torch.stack([self._cache[key] for key in keys])
        while len(self._cache) > self._cache_rows:
            self._cache.popitem(last=False)
        return out

    def split(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The latents ``(m, *latent_shape)`` and the conditioning offsets δ, or ``None``.

        δ is ``(m, E)`` for :class:`DigitsTask` (``optimize="latents+class"``) and ``(m, L, H)``
        for :class:`PipelineTask` (``optimize="latents+prompt"``). ``X`` is
        ``(m, *self.shape)``; the latents are as given (not renormalized).
        """
        return self._split(self._check(X))

    def _split(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.optimize == "latents":
            return X, None
        m, d = X.shape[0], math.prod(self.latent_shape)
        return (
            X[:, :d].reshape(m, *self.latent_shape),
            X[:, d:].reshape(m, *self._conditioning_shape()),
        )

    def _conditioning_shape(self) -> tuple[int, ...]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _start(self, seed: int) -> torch.Tensor:
        """The starting candidate of ``x0(seed)``, on the task's device, float32.

        The latent ~ N(0, I) from a CPU generator seeded ``seed``, so the same on every device;
        a conditioning offset δ, when it is optimized, starts at 0: the condition as given.
        """
        g = torch.Generator(device="cpu").manual_seed(seed)
        z = torch.randn(self.latent_shape, generator=g)
        if self.optimize != "latents":
            z = torch.cat([z.reshape(-1), torch.zeros(math.prod(self._conditioning_shape()))])
        return z.to(self.device)

    def _generate(self, X: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _settings(self) -> tuple[Any, ...]:  # pragma: no cover - abstract
        """Everything besides the candidates that decides the images."""
        raise NotImplementedError

    def _latents(self, Z: torch.Tensor) -> torch.Tensor:
        """The latents actually sampled from: ``Z`` itself, or put on the shell (renormalize)."""
        return renormalize_latents(Z) if self.renormalize else Z

    def render(self, X: torch.Tensor) -> list[bytes]:
        """One PNG (bytes) per row of the ``(m, *shape)`` candidates, in row order."""
        return self._png(self.images(X))

    def _png(self, images: torch.Tensor) -> list[bytes]:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, X: torch.Tensor) -> torch.Tensor:
        """``(m,)`` scores of the candidates' images (higher is better), on the CPU.

        Raises ``NotImplementedError`` when the task has no scorer (a person is the only judge).
        """
        if self.scorer is None:
            raise NotImplementedError("this task has no scorer; pass scorer=... to score images")
        return self.scorer(self.images(X)).detach().to("cpu", torch.float32)

    def judge(
        self,
        scorer: Scorer | None = None,
        *,
        k: int | None = None,
        noise: float = 0.0,
        swap_prob: float = 0.0,
        seed: int | torch.Generator = 0,
    ) -> ScoreJudge:
        """A machine judge ranking this task's images by ``scorer`` (default: the task's own).

        Args:
            scorer: images ``(m, C, H, W)`` -> ``(m,)`` scores, higher better, e.g.
                :class:`DigitProbability` or :class:`ImageSimilarity`.
            k: how many to rank (``None``: all).
            noise: Thurstone noise σ ≥ 0 added to the scores before ranking, in the scores' own
                units (a probability judge with ``noise=0.1`` confuses images ~0.1 apart).
            swap_prob: probability of one adjacent swap per round (a slip of the hand).
            seed: seed or CPU generator of the noise.

        The judge renders through :meth:`images`, so it shares the round's generation.
        """
        fn = scorer if scorer is not None else self.scorer
        if fn is None:
            raise ValueError("judge() needs a scorer: this task has none; pass scorer=...")
        return ScoreJudge(
            fn,
            render=self.images,
            k=k,
            maximize=True,
            noise=noise,
            swap_prob=swap_prob,
            seed=seed,
        )


# -- the embedded digits model --------------------------------------------------------------------
DigitsOptimize = Literal["latents", "latents+class"]


class DigitsTask(_LatentTask):
    """Latents of the embedded 16×16 digits model; the classifier judges the requested digit.

    Args:
        digit: the digit a person (or the judge) wants to see, 0..9; :meth:`score` is the
            classifier's probability of it.
        condition: what the generator is conditioned on: ``"digit"`` (default) the class
            ``digit``, with classifier-free guidance ``guidance``; another int 0..9 a different
            class (steer against the conditioning); ``None`` unconditional — the model's "null"
            class only, as if it had never been told a digit (``guidance`` is then not used).
        steps: sampling steps (one model evaluation each); default
            :data:`~labkit.models.digits.INTERACTIVE_STEPS` (5), picked for rounds a person waits
            for (the model card, labkit/models/digits_ddpm/README.md: better classifier figures
            than 10 DDIM steps at half the work).
        sampler: ``"dpm++2m"`` (default, :data:`~labkit.models.digits.INTERACTIVE_SAMPLER`) or
            ``"ddim"`` (η = 0); see :func:`labkit.models.digits.generate`.
        guidance: classifier-free guidance scale w (see :func:`labkit.models.digits.generate`).
        renormalize: put each candidate on the prior's shell ‖z‖ = √256 = 16 before sampling
            (see the module docstring).
        device: where the model runs (default: the CPU, or ``model``'s device).
        image_px: side of the rendered PNGs in pixels, a multiple of 16 (pixels are repeated).
        model: a loaded :class:`~labkit.models.digits.DigitsModel` to share between tasks
            (``None``: load the packaged weights).
        classifier: a :class:`~labkit.models.digits.DigitClassifier` to share (``None``: fit one).
        scorer: override what :meth:`score` and :meth:`judge` use, e.g. an
            :class:`ImageSimilarity` to a target image.
        optimize: ``"latents"`` (default): a candidate is the ``(1, 16, 16)`` latent;
            ``"latents+class"``: a flat vector, the latent's 256 entries followed by an offset δ
            of the conditioning class's embedding (E = 128 entries), used as
            ``e + class_scale·δ``: the ranking also reshapes what "the digit" means to the model.
            Needs a conditional task (``condition`` not ``None``).
        class_scale: the unit of δ (default: the standard deviation of the digit classes'
            embedding entries, so a unit step moves the embedding as much, relatively, as the
            latent).

    A round is ``(m, *task.shape)`` on ``device``: ``(m, 1, 16, 16)`` latents, or ``(m, 384)``
    with ``optimize="latents+class"`` (:meth:`split` takes the two parts apart).
    """

    #: A pool of 64 (``make_optimizer``'s ImageThompson), the round's fresh rows and the
    #: rounds the widget and plot render: 256 images of 1 kB.
    _cache_rows = 256

    def __init__(
        self,
        digit: int,
        *,
        condition: int | Literal["digit"] | None = "digit",
        steps: int | None = None,
        sampler: str | None = None,
        guidance: float | None = None,
        renormalize: bool = True,
        device: str | torch.device | None = None,
        image_px: int = 96,
        model: Any = None,
        classifier: Any = None,
        scorer: Scorer | None = None,
        optimize: DigitsOptimize = "latents",
        class_scale: float | None = None,
    ) -> None:
        super().__init__()
        from labkit.models import digits as dm

        self.digit = _check_digit(digit, "digit")
        if condition == "digit":
            self.condition: int | None = self.digit
        elif condition is None:
            self.condition = None
        else:
            self.condition = _check_digit(condition, "condition (a class, 'digit' or None)")
        self.steps = check_int("steps", dm.INTERACTIVE_STEPS if steps is None else steps, minimum=1)
        self.sampler = dm.check_sampler(dm.INTERACTIVE_SAMPLER if sampler is None else sampler)
        self.guidance = check_nonneg(
            "guidance", dm.DEFAULT_GUIDANCE if guidance is None else guidance
        )
        image_px = check_int("image_px", image_px, minimum=dm.IMAGE_SIZE)
        if image_px % dm.IMAGE_SIZE:
            raise ValueError(
                f"image_px must be a multiple of {dm.IMAGE_SIZE} (pixels are repeated, never "
                f"interpolated); got {image_px}"
            )
        self.image_px = image_px
        self.renormalize = check_flag("renormalize", renormalize)
        if model is None:
            model = dm.load_digits_model(device=device)
        elif device is not None and resolve_device(device) != model.device:
            raise ValueError(f"device={device!r} but the model given is on {model.device}")
        if optimize not in ("latents", "latents+class"):
            raise ValueError(f"optimize must be 'latents' or 'latents+class'; got {optimize!r}")
        if optimize == "latents+class" and self.condition is None:
            raise ValueError(
                "optimize='latents+class' steers the embedding of the class the model is "
                "conditioned on, but condition=None is unconditional; pass a condition"
            )
        self.optimize: str = optimize
        self.model = model
        self.device = model.device
        self.latent_shape: tuple[int, ...] = (1, dm.IMAGE_SIZE, dm.IMAGE_SIZE)
        self.class_dim = dm.class_embedding_width(model)
        self.class_scale = check_nonneg(
            "class_scale", dm.class_embedding_std(model) if class_scale is None else class_scale
        )
        if optimize == "latents":
            self.shape = self.latent_shape
        else:
            self.shape = (math.prod(self.latent_shape) + self.class_dim,)
        self.classifier = classifier if classifier is not None else dm.DigitClassifier()
        self.scorer = (
            scorer if scorer is not None else DigitProbability(digit, classifier=self.classifier)
        )

    def __repr__(self) -> str:
        cond = "unconditional" if self.condition is None else f"condition={self.condition}"
        return (
            f"DigitsTask({self.digit}, {cond}, steps={self.steps}, sampler={self.sampler!r}, "
            f"guidance={self.guidance}, "
            f"optimize={self.optimize!r}, renormalize={self.renormalize}, scorer={self.scorer!r})"
        )

    def x0(self, seed: int = 0) -> torch.Tensor:
        """A starting candidate of shape ``self.shape`` on the task's device, float32.

        The latent ~ N(0, I) from a CPU generator seeded ``seed`` (so the same on every device);
        the class offset δ (``"latents+class"``) starts at 0, the class as trained. The model
        casts when sampling.
        """
        return self._start(check_int("seed", seed, minimum=0))

    def _conditioning_shape(self) -> tuple[int, ...]:
        return (self.class_dim,)

    def _settings(self) -> tuple[Any, ...]:
        return (
            self.renormalize,
            self.condition,
            self.steps,
            self.sampler,
            self.guidance,
            self.class_scale,
            id(self.model),
        )

    def _generate(self, X: torch.Tensor) -> torch.Tensor:
        from labkit.models.digits import NULL_CLASS, generate

        Z, delta = self._split(X)  # X was checked by images()
        Z = self._latents(Z).to(self.device)
        m = Z.shape[0]
        if self.condition is None:
            # The unconditional model is the null class's plain prediction v(x, ∅): one UNet
            # pass a step (guidance w = 0 would give the same v(x, ∅) + 0·(…) but pay for the
            # conditional pass it throws away).
            labels = torch.full((m,), NULL_CLASS, dtype=torch.int64)
            guidance = 1.0
        else:
            labels = torch.full((m,), self.condition, dtype=torch.int64)
            guidance = self.guidance
        # e + s·δ: the class's embedding row moved by the candidate's offset (module docstring).
        offset = None if delta is None else self.class_scale * delta.to(self.device)
        return generate(
            self.model,
            Z,
            labels,
            steps=self.steps,
            guidance=guidance,
            class_offset=offset,
            sampler=self.sampler,
        )

    def _png(self, images: torch.Tensor) -> list[bytes]:
        from labkit.models.digits import IMAGE_SIZE, to_png

        return to_png(images, scale=self.image_px // IMAGE_SIZE)


# -- any diffusers text-to-image pipeline ---------------------------------------------------------
Optimize = Literal["latents", "latents+prompt"]


class PipelineTask(_LatentTask):
    """Latents (and optionally the prompt embedding) of a diffusers text-to-image pipeline.

    Args:
        pipeline: a loaded pipeline with Stable Diffusion's call signature (``prompt_embeds=``,
            ``negative_prompt_embeds=``, ``latents=``, ``eta=``, ``output_type="pt"``) and an
            ``encode_prompt`` method; e.g. ``StableDiffusionPipeline`` (SDXL-style pipelines whose
            ``encode_prompt`` also returns pooled embeddings are passed those too). Its scheduler
            is **replaced** by a :class:`~diffusers.DDIMScheduler` of the same configuration (η = 0
            then makes sampling deterministic); everything else is used as loaded (device, dtype).
        prompt: the text prompt.
        negative_prompt: optional negative prompt (used with guidance).
        num_inference_steps: DDIM steps.
        guidance_scale: classifier-free guidance scale (> 1 turns guidance on).
        height, width: image size in pixels (default: the pipeline's); multiples of the VAE's
            scale factor.
        optimize: ``"latents"`` (default): a candidate is the initial latent, shape
            ``(C, height/f, width/f)``; ``"latents+prompt"``: a flat vector, the latent's D
            entries followed by an offset δ of the prompt embedding (L·H entries), which is used
            as ``e + prompt_scale·δ``.
        prompt_scale: the unit of δ (default: the standard deviation of the prompt embedding's
            entries, so a unit step moves the embedding as much, relatively, as the latent).
        renormalize: put the latent part of each candidate on the shell ‖z‖ = √D.
        seed: seed of the fixed generator passed to every call (η = 0 never draws from it; some
            pipelines' other steps might) and of :meth:`x0`'s default.
        scorer: images ``(m, 3, H, W)`` in [0, 1] -> ``(m,)`` scores for :meth:`score` and
            :meth:`judge`, e.g. an :class:`ImageSimilarity` (``None``: no machine score).
        pipeline_kwargs: further keyword arguments for every pipeline call.

    The ``m`` candidates of a round are generated in one pipeline call with a batch of ``m``
    latents and the prompt embedding repeated ``m`` times; the prompt is encoded once, here.
    Candidates live on the pipeline's device in float32 (the optimizer's precision) and are cast
    to the pipeline's dtype (float16 on CUDA via :meth:`from_pretrained`) for sampling.
    """

    def __init__(
        self,
        pipeline: Any,
        prompt: str,
        *,
        negative_prompt: str | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.5,
        height: int | None = None,
        width: int | None = None,
        optimize: Optimize = "latents",
        prompt_scale: float | None = None,
        renormalize: bool = True,
        seed: int = 0,
        scorer: Scorer | None = None,
        pipeline_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        from diffusers.schedulers.scheduling_ddim import DDIMScheduler

        for attr in ("unet", "scheduler", "encode_prompt"):
            if not hasattr(pipeline, attr):
                raise ValueError(
                    f"pipeline must be a diffusers text-to-image pipeline with a UNet and "
                    f"encode_prompt (Stable Diffusion and friends); {type(pipeline).__name__} "
                    f"has no {attr!r}"
                )
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string; got {prompt!r}")
        if optimize not in ("latents", "latents+prompt"):
            raise ValueError(f"optimize must be 'latents' or 'latents+prompt'; got {optimize!r}")
        self.pipeline = pipeline
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.num_inference_steps = check_int("num_inference_steps", num_inference_steps, minimum=1)
        self.guidance_scale = check_nonneg("guidance_scale", guidance_scale)
        self.optimize: str = optimize
        self.renormalize = check_flag("renormalize", renormalize)
        self.seed = check_int("seed", seed, minimum=0)
        self.scorer = scorer
        self.pipeline_kwargs = dict(pipeline_kwargs or {})

        # 1. DDIM, η = 0: each denoising step is a fixed function of the latent.
        if not isinstance(pipeline.scheduler, DDIMScheduler):
            config = pipeline.scheduler.config
            # DDIM clips its x₀ estimate to [-1, 1] by default, right for pixels but not for a
            # VAE's latents; a scheduler that never had the option (PNDM, Euler...) did not clip.
            pipeline.scheduler = DDIMScheduler.from_config(
                config, clip_sample=bool(config.get("clip_sample", False))
            )

        # 2. Latent geometry.
        factor = int(getattr(pipeline, "vae_scale_factor", 8))
        sample = pipeline.unet.config.sample_size
        default_px = (sample if isinstance(sample, int) else sample[0]) * factor
        self.height = check_int("height", default_px if height is None else height, minimum=factor)
        self.width = check_int("width", default_px if width is None else width, minimum=factor)
        for name, px in (("height", self.height), ("width", self.width)):
            if px % factor:
                raise ValueError(
                    f"{name} must be a multiple of the VAE's scale factor {factor}; got {px}"
                )
        self.latent_shape: tuple[int, ...] = (
            int(pipeline.unet.config.in_channels),
            self.height // factor,
            self.width // factor,
        )
        self.device = torch.device(pipeline.device)
        self.dtype: torch.dtype = pipeline.unet.dtype

        # 3. The prompt, encoded once: (1, L, H) embeddings (and pooled ones, SDXL-style).
        self._guided = self.guidance_scale > 1.0
        encoded = pipeline.encode_prompt(
            prompt=prompt,
            device=self.device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=self._guided,
            negative_prompt=negative_prompt,
        )
        names: tuple[str, ...]
        if len(encoded) == 2:
            names = ("prompt_embeds", "negative_prompt_embeds")
        elif len(encoded) == 4:
            names = (
                "prompt_embeds",
                "negative_prompt_embeds",
                "pooled_prompt_embeds",
                "negative_pooled_prompt_embeds",
            )
        else:
            raise ValueError(
                f"{type(pipeline).__name__}.encode_prompt returned {len(encoded)} tensors; "
                f"PipelineTask knows pipelines returning 2 (SD) or 4 (SDXL-style)"
            )
        pairs = zip(names, encoded, strict=True)
        self._embeds = {n: e.detach() for n, e in pairs if e is not None}
        base = self._embeds["prompt_embeds"]
        self.prompt_shape: tuple[int, ...] = tuple(base.shape[1:])
        if prompt_scale is None:
            prompt_scale = float(base.to(torch.float32).std())
        self.prompt_scale = check_nonneg("prompt_scale", prompt_scale)
        if optimize == "latents":
            self.shape = self.latent_shape
        else:
            self.shape = (math.prod(self.latent_shape) + math.prod(self.prompt_shape),)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str,
        prompt: str,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | None = None,
        local_files_only: bool = True,
        pipeline_class: Any = None,
        **task_kwargs: Any,
    ) -> PipelineTask:
        """Load a pipeline from a local folder or hub name and wrap it.

        ``device`` defaults to CUDA when available, else the CPU; ``dtype`` to float16 on CUDA
        and float32 elsewhere. ``local_files_only=True`` (the default) never downloads: pass
        ``False`` yourself if you mean to fetch weights. ``pipeline_class`` defaults to
        :class:`diffusers.DiffusionPipeline` (which picks the class from the model's files);
        ``task_kwargs`` go to :class:`PipelineTask`.
        """
        if pipeline_class is None:
            from diffusers import DiffusionPipeline

            pipeline_class = DiffusionPipeline
        dev = resolve_device(device if device is not None else _default_device())
        if dtype is None:
            dtype = torch.float16 if dev.type == "cuda" else torch.float32
        pipe = pipeline_class.from_pretrained(
            name_or_path, local_files_only=local_files_only, **{_dtype_keyword(): dtype}
        )
        pipe = pipe.to(dev)
        if hasattr(pipe, "set_progress_bar_config"):
            pipe.set_progress_bar_config(disable=True)
        return cls(pipe, prompt, **task_kwargs)

    def __repr__(self) -> str:
        return (
            f"PipelineTask({type(self.pipeline).__name__}, prompt={self.prompt!r}, "
            f"steps={self.num_inference_steps}, guidance_scale={self.guidance_scale}, "
            f"{self.height}x{self.width}, optimize={self.optimize!r}, "
            f"renormalize={self.renormalize}, scorer={self.scorer!r})"
        )

    def x0(self, seed: int | None = None) -> torch.Tensor:
        """A starting candidate of shape ``self.shape`` on the pipeline's device, float32.

        The latent part ~ N(0, I) from ``seed`` (default: the task's), drawn on the CPU so it is
        the same on every device; the prompt offset δ (``"latents+prompt"``) starts at 0, i.e. at
        the prompt as written.
        """
        return self._start(self.seed if seed is None else check_int("seed", seed, minimum=0))

    def _conditioning_shape(self) -> tuple[int, ...]:
        return self.prompt_shape

    def _settings(self) -> tuple[Any, ...]:
        return (
            self.renormalize,
            self.prompt_scale,
            self.num_inference_steps,
            self.guidance_scale,
            self.height,
            self.width,
            self.seed,
            id(self.pipeline),
            repr(sorted(self.pipeline_kwargs.items())),
        )

    def _generate(self, X: torch.Tensor) -> torch.Tensor:
        Z, delta = self._split(X)  # X was checked by images()
        m = Z.shape[0]
        latents = self._latents(Z).to(self.device, self.dtype)
        # The prompt's embeddings repeated for the m rows; expand is a view, the pipeline
        # concatenates the negative and positive halves into a new tensor itself.
        kw: dict[str, Any] = {
            n: e.expand(m, *e.shape[1:]).to(self.dtype) for n, e in self._embeds.items()
        }
        if delta is not None:
            base = self._embeds["prompt_embeds"].to(torch.float32)
            kw["prompt_embeds"] = (base + self.prompt_scale * delta.to(self.device)).to(self.dtype)
        generator = torch.Generator(device=self.device).manual_seed(self.seed)
        out = self.pipeline(
            **kw,
            latents=latents,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            height=self.height,
            width=self.width,
            eta=0.0,
            generator=generator,
            output_type="pt",
            **self.pipeline_kwargs,
        )
        images = out.images if hasattr(out, "images") else out[0]
        return images.to(torch.float32)

    def _png(self, images: torch.Tensor) -> list[bytes]:
        arr = images.detach().to("cpu", torch.float32).clamp(0.0, 1.0)
        pixels = (arr * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return [png_bytes(img) for img in pixels]  # (h, w, 1): grayscale


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype_keyword() -> str:
    """The name of ``from_pretrained``'s dtype argument in the installed diffusers.

    Newer diffusers take ``dtype`` and warn on the old ``torch_dtype``; older ones only know
    ``torch_dtype``. The helper that resolves the two names exists exactly when ``dtype`` does.
    """
    try:
        from diffusers.utils import deprecation_utils
    except ImportError:
        return "torch_dtype"
    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
