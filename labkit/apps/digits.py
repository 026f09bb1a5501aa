"""The digits app (``labkit app``, the default) and its pipeline variant (``labkit app pipeline``).

The person has a digit image in mind and steers the embedded digits diffusion model toward it by
ranking rounds of its images. A candidate is the model's starting noise (the latent); with
deterministic DDIM sampling one latent gives exactly one image, so ranking images ranks latents
(see ``notebooks/diffusion.ipynb`` for the lesson behind it).

Set-up is what a preheated kernel runs before a visitor arrives, so it is kept to the cheap part:
imports, loading the model (2 MB, from the package) and the first round.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets

from labkit.apps._view import AppView, limit_threads
from labkit.defaults import make_optimizer
from labkit.session import Session

if TYPE_CHECKING:
    from labkit.tasks.diffusion import DigitsTask, PipelineTask

__all__ = ["digits_app", "pipeline_app"]

TILE_PX = 128
INSTRUCTIONS = (
    "Drag the images into order, the one closest to what you have in mind first, then press "
    'Submit ranking. The image marked "current" is your pick so far: press "None is better" '
    'to keep it, or "=" between two images you like equally.'
)


def digits_app(
    *,
    model: Any = None,
    classifier: Any = None,
    tile_px: int = TILE_PX,
    start_seed: int = 1,
    log: Any = None,
) -> AppView:
    """The digits app's page. ``model``/``classifier`` share ones already loaded (a lesson's).

    The controls: what the model is told to draw ("any digit": unconditional, the default; or one
    class, then the person steers within it) and "New start" (fresh starting images). Every start
    is a new session in the round log (``log``: a path or :class:`~labkit.roundlog.RoundLog`;
    default ``$LABKIT_DB``).
    """
    limit_threads()
    from labkit.models.digits import DigitClassifier, load_digits_model
    from labkit.tasks.diffusion import DigitsTask

    model = model if model is not None else load_digits_model()
    # The classifier only scores for plots and judges; the app shows none. One is shared by
    # every start (it fits on first use, so the app never pays for it).
    classifier = classifier if classifier is not None else DigitClassifier()
    draws = ipywidgets.Dropdown(
        options=[("any digit", -1)] + [(str(d), d) for d in range(10)],
        value=-1,
        description="The model draws",
        style={"description_width": "initial"},
    )
    restart = ipywidgets.Button(description="New start", tooltip="fresh starting images")

    def new_task() -> DigitsTask:
        condition = None if draws.value < 0 else int(draws.value)
        return DigitsTask(
            0 if condition is None else condition,
            condition=condition,
            # w = 1: one UNet pass a step, as cheap as the unconditional round (w = 1.5
            # doubles it); 4 steps at w = 1 draw the told digit 99 % of the time.
            guidance=1.0,
            image_px=tile_px,
            model=model,
            classifier=classifier,
        )

    view, start = _page(
        "Steer the digits model",
        [draws, restart],
        new_task,
        tile_px=tile_px,
        first_seed=start_seed,
        log=log,
        name="app-digits",
    )
    restart.on_click(start)
    draws.observe(start, names="value")
    start()
    return view


def pipeline_app(
    pipeline: Any = None,
    *,
    prompt: str = "a watercolor painting of a fox",
    steps: int = 20,
    tile_px: int = 192,
    log: Any = None,
) -> AppView:
    """The digits app's page over a diffusers text-to-image pipeline: steer its latents.

    ``pipeline``: a loaded pipeline, or a folder (or cached hub name) to load with local files
    only; default ``$LABKIT_PIPELINE``. The person types a prompt and presses Start.
    """
    limit_threads()
    from labkit.tasks.diffusion import PipelineTask

    if pipeline is None:
        pipeline = os.environ.get("LABKIT_PIPELINE") or None
    if pipeline is None:
        raise ValueError(
            "the pipeline app needs a diffusers pipeline: pass one, or set LABKIT_PIPELINE to "
            "its folder (labkit app pipeline --pipeline PATH)"
        )
    if isinstance(pipeline, (str, os.PathLike)):
        pipeline = PipelineTask.from_pretrained(os.fspath(pipeline), prompt).pipeline
    prompt_box = ipywidgets.Text(value=prompt, description="Prompt", continuous_update=False)
    go = ipywidgets.Button(description="Start", button_style="primary")

    def new_task() -> PipelineTask:
        text = prompt_box.value.strip()
        if not text:
            raise ValueError("type a prompt first")
        return PipelineTask(pipeline, text, num_inference_steps=steps)

    view, start = _page(
        "Steer a diffusion model",
        [prompt_box, go],
        new_task,
        tile_px=tile_px,
        first_seed=1,
        log=log,
        name="app-pipeline",
    )
    go.on_click(start)
    start()
    return view


def _page(
    title: str,
    controls: list[ipywidgets.Widget],
    new_task: Callable[[], DigitsTask | PipelineTask],
    *,
    tile_px: int,
    first_seed: int,
    log: Any,
    name: str,
) -> tuple[AppView, Callable[..., None]]:
    """What the two pages share: the view, and ``start`` (a control's callback, or called with
    nothing), which shows a new session on ``new_task()`` from the next starting seed, each a
    session of its own in the round log."""
    view = AppView(title=title, instructions=INSTRUCTIONS, controls=controls, tile_px=tile_px)
    state = {"seed": first_seed}

    def new_session() -> Session:
        task = new_task()
        x0 = task.x0(seed=state["seed"])
        state["seed"] += 1
        return Session(make_optimizer(task, x0), task=task, log=log, name=name, rater="visitor")

    def start(_: Any = None) -> None:
        view.start(new_session)

    return view, start
