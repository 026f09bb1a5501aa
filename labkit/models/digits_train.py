"""Training and measuring the embedded digits model: the script behind its weights and model card.

:func:`train` makes the weights shipped in ``digits_ddpm/`` (and writes any other model folder
the same way); ``_evaluate`` and ``_profile`` print the figures of the model card
(``digits_ddpm/README.md``) and of a digits app round. The command line is
``python -m labkit.models.digits {train,evaluate,profile}`` (:func:`main`; ``labkit
train-digits`` is its ``train``).

Kept apart from :mod:`labkit.models.digits` (data, model, loader, sampler, judge) because
training needs diffusers, whose ``UNet2DModel`` defines the architecture and whose
``DDIMScheduler`` the noise schedule, and importing diffusers costs seconds that an app's start-up
should not pay; it is imported inside :func:`train` only, so importing this module stays cheap
too. ``labkit.models.digits.train`` and ``labkit.models.digits.main`` still name these functions.
The symbols are those of :mod:`labkit.models.digits`.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F

import labkit.models.digits as _digits
from labkit.media import png_bytes
from labkit.models.digits import (
    _SCHEDULER_CONFIG,
    _TRAINING_RECORD,
    _UNET_CONFIG,
    _UNET_WEIGHTS,
    DEFAULT_GUIDANCE,
    DEFAULT_STEPS,
    IMAGE_SIZE,
    INTERACTIVE_STEPS,
    MODEL_DIR,
    NULL_CLASS,
    NUM_CLASSES,
    SAMPLERS,
    DigitClassifier,
    Sampler,
    _scheduler_config,
    _unet_config,
    generate,
    load_digit_images,
    load_digits_model,
    to_png,
)

if TYPE_CHECKING:
    # The trainer's types. Imported from their modules rather than from `diffusers`: the package
    # root hides them behind a lazy loader whose type-checking branch resolves to placeholders.
    from diffusers.models.unets.unet_2d import UNet2DModel
    from diffusers.schedulers.scheduling_ddim import DDIMScheduler

__all__ = ["main", "train"]


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


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
    return png_bytes(canvas)


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


def _train_and_print(**options: Any) -> None:
    """``train``, then its summary as JSON on stdout (the ``train`` command)."""
    print(json.dumps(train(**options), indent=2))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m labkit.models.digits {train,evaluate,profile} ...``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m labkit.models.digits",
        description=cast(str, _digits.__doc__).splitlines()[0],
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
    p_train.set_defaults(run=_train_and_print)
    p_eval = sub.add_parser("evaluate", help="classifier accuracy on samples and sampling time")
    p_eval.add_argument("--weights", type=Path, default=None)
    p_eval.add_argument("--per-class", type=int, default=10)
    p_eval.add_argument("--seed", type=int, default=0)
    p_eval.add_argument(
        "--steps", type=int, nargs="+", default=[DEFAULT_STEPS], dest="steps_list", metavar="STEPS"
    )
    p_eval.add_argument(
        "--guidance",
        type=float,
        nargs="+",
        default=[DEFAULT_GUIDANCE],
        dest="guidance_list",
        metavar="GUIDANCE",
    )
    p_eval.add_argument("--sampler", nargs="+", choices=SAMPLERS, default=["ddim"], dest="samplers")
    p_eval.add_argument(
        "--grid", type=Path, default=None, help="write a 10×10 sample grid PNG here"
    )
    p_eval.add_argument("--threads", type=int, default=2)
    p_eval.set_defaults(run=_evaluate)
    p_prof = sub.add_parser(
        "profile", help="where the CPU time of a digits app round (DigitsTask.render) goes"
    )
    p_prof.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[DEFAULT_STEPS, INTERACTIVE_STEPS],
        dest="steps_list",
        metavar="STEPS",
    )
    p_prof.add_argument(
        "--px",
        type=int,
        default=128,
        dest="image_px",
        metavar="PX",
        help="tile side in pixels (default 128)",
    )
    p_prof.add_argument("--repeats", type=int, default=15)
    p_prof.add_argument("--threads", type=int, default=1)
    p_prof.set_defaults(run=_profile)
    # Each option's dest is the keyword of the function its command runs (set_defaults(run=...)),
    # so the parsed options are that function's arguments as they stand.
    options = vars(parser.parse_args(argv))
    del options["command"]
    options.pop("run")(**options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
