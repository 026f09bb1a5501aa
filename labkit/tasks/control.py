"""Parameters of a gymnasium policy → rollouts: returns for a machine, animations for a person.

A candidate is one flat parameter vector θ of a deterministic policy. ``score`` runs one episode
(or ``episodes``) per candidate and returns the episode returns (higher is better); ``render``
runs the same episodes again and turns each into a short animation that the ranking widget plays
side by side.

**Policies.** ``policy="linear"``: a = W o + b. ``policy="mlp"``: a = W₂ tanh(W₁ o + b₁) + b₂
(more hidden layers with ``hidden=(h₁, h₂, ...)``). θ is the concatenation, layer by layer, of
each W (row-major, ``out × in``) and then its b. The output ``y`` becomes an action:

* continuous actions (a ``Box``): ``clip(y, low, high)`` — the action space's own bounds, the
  usual convention of linear policies in random-search RL (ARS, ES);
* discrete actions: ``argmax(y)``, one output per action (ties to the lower action).

The policy is deterministic, so all the randomness of a rollout is in the environment's reset,
which is seeded: episode ``e`` of every candidate starts from ``env.reset(seed=seed + e)``. Every
candidate of a round thus meets the same start states (common random numbers), and a candidate's
return does not depend on which other candidates share its round, how they are batched, or which
executor runs them.

**Batched stepping.** The candidates of a round (or of one executor chunk) step in lockstep: one
environment per candidate, all observations stacked into an ``m × o`` array, all actions computed
by one batched matrix product, then each live environment steps. An environment that terminates
stops adding reward (and its animation freezes, dimmed).

**Views** (``view=``):

* ``"frames"`` — the environment's own ``rgb_array`` renderer (pygame for classic control, the
  offscreen MuJoCo renderer for MuJoCo tasks; slow in software GL, ~5–20 frames/s here).
* ``"stick"`` — MuJoCo tasks only, and their default: the geometry drawn from the simulator's
  state (``data.geom_xpos``/``geom_xmat``: capsules as thick lines, spheres as discs), projected on
  the plane the bodies move in (x–z for Hopper/HalfCheetah, x–y for Swimmer/Reacher), the camera
  following the root body along the ground, with ground ticks every metre so progress shows.
  Every frame also shows where the body went over the whole rollout so far, so that two
  candidates that moved differently look different even where one frame alone would not: the
  path of the root body (the torso) at every step, drawn in the world frame with a flag where it
  started; its displacement along the ground since the start ("+2.31 m") in the corner; and,
  under the ground of an x–z view, a progress strip centred on the start whose bar is the span
  of ground covered so far, on a signed logarithmic scale that is the same for every candidate
  (ticks at ±1, ±10, ... m). A figure fixed to the world (Reacher's arm) has none of these.
* ``"trajectory"`` — any environment: the observation components and the running return as
  curves, with a cursor sweeping through time.

Views are animated GIFs (``fmt="gif"``, mime ``image/gif``) or WebPs (``fmt="webp"``) of at
most ``max_frames`` frames, played at the simulation's real time.

**MuJoCo's GL.** MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when its rendering modules
are imported, and without it the offscreen renderer can abort the whole process on a headless
machine. This module therefore sets ``MUJOCO_GL`` (``os.environ.setdefault``: a value you set
wins) before gymnasium or mujoco is imported: ``egl`` when libEGL is found, else ``osmesa``.
"""

from __future__ import annotations

import contextlib
import ctypes.util
import itertools
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def _choose_mujoco_gl() -> None:
    """Set ``MUJOCO_GL`` for headless offscreen rendering unless the user chose one."""
    if "MUJOCO_GL" in os.environ:
        return
    if ctypes.util.find_library("EGL") is not None:
        os.environ["MUJOCO_GL"] = "egl"
    else:
        os.environ["MUJOCO_GL"] = "osmesa"


_choose_mujoco_gl()

from labkit.executors import Executor, as_executor, split  # noqa: E402
from labkit.tasks._control_views import (  # noqa: E402
    _ROOT_BODY,
    _VIEW_DRAWERS,
    _frame_stride,
    _Record,
)

__all__ = ["VIEWS", "ControlTask"]

#: The kinds of view ``render`` can make (see the module docstring).
VIEWS = ("auto", "frames", "stick", "trajectory")
_FORMATS = {"gif": "image/gif", "webp": "image/webp"}
_POLICIES = ("linear", "mlp")


# -- the picklable description of a rollout ------------------------------------------------------
@dataclass(frozen=True)
class _Spec:
    """Everything a worker needs to run rollouts (picklable, hashable: it keys the env pool)."""

    env_id: str
    env_kwargs: tuple[tuple[str, Any], ...]
    layers: tuple[int, ...]  # sizes o, h₁, ..., out
    discrete: bool
    low: tuple[float, ...]
    high: tuple[float, ...]
    horizon: int
    seed: int
    episodes: int
    view: str  # resolved: "frames" | "stick" | "trajectory"
    width: int
    max_frames: int
    fmt: str
    mujoco: bool

    @property
    def n_params(self) -> int:
        return sum(a * b + b for a, b in itertools.pairwise(self.layers))


# One process-wide pool of environments per (spec's env, render mode): made once, reset per
# episode. A worker process of an executor keeps its own.
_POOL: dict[tuple[str, tuple[tuple[str, Any], ...], str | None], list[Any]] = {}


def _make_env(env_id: str, env_kwargs: dict[str, Any], render_mode: str | None) -> Any:
    import gymnasium as gym

    kwargs = dict(env_kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    # No TimeLimit of gymnasium's: the horizon is ours. No env checker: it only slows stepping.
    with _quiet_mujoco_compiler():
        return gym.make(env_id, disable_env_checker=True, max_episode_steps=None, **kwargs)


@contextlib.contextmanager
def _quiet_mujoco_compiler() -> Iterator[None]:
    """While a model is compiled, drop MuJoCo's deprecation notice about gymnasium's own
    HalfCheetah asset ("settotalmass"), which it prints to the process's stderr (and so into
    every notebook cell) each time an environment is made; other warnings go to stderr as usual.
    The previous warning handler is restored afterwards."""
    try:
        import mujoco
    except ImportError:
        yield
        return
    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if "settotalmass" in message:
            return
        if previous is not None:
            previous(message)
        else:
            print(f"WARNING: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _envs(spec: _Spec, n: int, render_mode: str | None) -> list[Any]:
    kwargs = dict(spec.env_kwargs)
    if render_mode == "rgb_array" and spec.mujoco:
        # MuJoCo renders at the size asked (480 × 480 by default): ask for the view's size,
        # since software GL pays per pixel.
        kwargs.setdefault("width", spec.width)
        kwargs.setdefault("height", round(0.75 * spec.width))
    key = (spec.env_id, tuple(sorted(kwargs.items())), render_mode)
    pool = _POOL.setdefault(key, [])
    while len(pool) < n:
        pool.append(_make_env(spec.env_id, kwargs, render_mode))
    return pool[:n]


def _is_mujoco(env: Any) -> bool:
    u = env.unwrapped
    return hasattr(u, "model") and hasattr(u, "data") and hasattr(u.data, "geom_xpos")


# -- the policy ----------------------------------------------------------------------------------
def _unflatten(spec: _Spec, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Views (W ``n × out × in``, b ``n × out``) per layer of the ``n × d`` parameters."""
    out, pos = [], 0
    n = theta.shape[0]
    for a, b in itertools.pairwise(spec.layers):
        W = theta[:, pos : pos + a * b].reshape(n, b, a)
        pos += a * b
        bias = theta[:, pos : pos + b]
        pos += b
        out.append((W, bias))
    return out


def _forward(params: list[tuple[np.ndarray, np.ndarray]], obs: np.ndarray) -> np.ndarray:
    """Outputs ``n × out`` of the ``n`` policies on their ``n × o`` observations (float64).

    ``np.matmul`` on stacked matrices runs the same kernel on each ``out × in`` slice, so a row's
    output does not depend on how many rows share the batch (batched == one by one, bit for bit).
    """
    h = obs
    last = len(params) - 1
    for i, (W, b) in enumerate(params):
        h = np.matmul(W, h[:, :, None])[:, :, 0] + b
        if i < last:
            h = np.tanh(h)
    return h


def _to_actions(spec: _Spec, y: np.ndarray) -> np.ndarray:
    if spec.discrete:
        return np.argmax(y, axis=1)
    return np.clip(y, np.asarray(spec.low), np.asarray(spec.high))


# -- rollouts ------------------------------------------------------------------------------------
def _env_dt(env: Any) -> float:
    u = env.unwrapped
    dt = getattr(u, "dt", None)
    if dt is None:
        dt = getattr(u, "tau", None)  # CartPole
    if dt is None:
        fps = env.metadata.get("render_fps") or 30
        dt = 1.0 / float(fps)
    return float(dt)


def _root_position(env: Any) -> np.ndarray:
    return np.asarray(env.unwrapped.data.xpos[_ROOT_BODY], dtype=np.float64).copy()


def _snapshot(spec: _Spec, env: Any, obs: np.ndarray, ret: float) -> Any:
    if spec.view == "frames":
        return env.render()
    if spec.view == "stick":
        d = env.unwrapped.data
        return (d.geom_xpos.copy(), d.geom_xmat.copy())
    return (np.asarray(obs, dtype=np.float64).copy(), ret)


def _rollouts(spec: _Spec, theta: np.ndarray, *, record: bool) -> tuple[np.ndarray, list[_Record]]:
    """Returns ``(n,)`` (mean over ``spec.episodes``) of the ``n × d`` policies θ, and, when
    ``record``, the first episode of each as a :class:`_Record`."""
    n = theta.shape[0]
    render_mode = "rgb_array" if record and spec.view == "frames" else None
    envs = _envs(spec, n, render_mode)
    params = _unflatten(spec, theta)
    total = np.zeros(n, dtype=np.float64)
    stride = _frame_stride(spec)
    records: list[_Record] = []
    for episode in range(spec.episodes):
        rec = record and episode == 0
        track = rec and spec.view == "stick"
        obs = np.stack(
            [np.asarray(env.reset(seed=spec.seed + episode)[0], dtype=np.float64) for env in envs]
        )
        ret = np.zeros(n, dtype=np.float64)
        alive = np.ones(n, dtype=bool)
        frames: list[list[Any]] = [[] for _ in range(n)]
        done_at: list[int | None] = [None] * n
        paths: list[list[np.ndarray]] = [[_root_position(env)] if track else [] for env in envs]
        for t in range(spec.horizon):
            if rec and t % stride == 0:
                for i, env in enumerate(envs):
                    if alive[i]:
                        frames[i].append(_snapshot(spec, env, obs[i], float(ret[i])))
            actions = _to_actions(spec, _forward(params, obs))
            for i, env in enumerate(envs):
                if not alive[i]:
                    continue
                a = int(actions[i]) if spec.discrete else actions[i]
                o, r, terminated, truncated, _ = env.step(a)
                ret[i] += float(r)
                obs[i] = o
                if track:
                    paths[i].append(_root_position(env))
                if terminated or truncated:
                    alive[i] = False
                    if rec:
                        frames[i].append(_snapshot(spec, env, obs[i], float(ret[i])))
                        done_at[i] = len(frames[i])
            if not alive.any():
                break
        total += ret
        if rec:
            dt = _env_dt(envs[0]) * stride
            for i in range(n):
                if alive[i]:  # the state at the end of the horizon
                    frames[i].append(_snapshot(spec, envs[i], obs[i], float(ret[i])))
                path = np.stack(paths[i]) if track else None
                records.append(_Record(frames=frames[i], done_at=done_at[i], dt=dt, path=path))
    return total / spec.episodes, records


def _evaluate_chunk(job: tuple[_Spec, np.ndarray, bool]) -> tuple[np.ndarray, list[bytes]]:
    """Executor work item: returns of a chunk of candidates and, if asked, their encoded views."""
    spec, theta, views = job
    returns, records = _rollouts(spec, theta, record=views)
    encoded: list[bytes] = []
    if views:
        envs = _envs(spec, 1, "rgb_array" if spec.view == "frames" else None)
        draw = _VIEW_DRAWERS[spec.view]
        encoded = [draw(spec, envs[0], rec) for rec in records]
    return returns, encoded


# -- the task ------------------------------------------------------------------------------------
class ControlTask:
    """The parameters of a policy for a gymnasium environment, judged by their rollouts.

    Args:
        env_id: any gymnasium id with a ``Box`` (continuous) or ``Discrete`` action space and a
            flat ``Box`` observation space, e.g. ``"CartPole-v1"``, ``"Pendulum-v1"``,
            ``"HalfCheetah-v5"``.
        policy: ``"linear"`` (default) or ``"mlp"``.
        hidden: hidden layer sizes of the MLP (an int or a tuple; default ``(16,)``); not allowed
            with the linear policy.
        horizon: steps per episode (default: the environment's registered episode length).
        seed: episode ``e`` starts from ``env.reset(seed=seed + e)``.
        episodes: episodes per candidate; the score is their mean return.
        executor: where rollouts run: ``None``/``"inprocess"``, ``"ray"`` or an
            :class:`~labkit.executors.Executor`. The candidates are split into
            ``executor.workers`` chunks.
        view: ``"auto"`` (``"stick"`` for MuJoCo, ``"frames"`` for environments with an
            ``rgb_array`` renderer, else ``"trajectory"``), or one of them by name.
        width: width of a view in pixels (the height follows).
        max_frames: most frames of an animation (the steps are subsampled evenly).
        fmt: ``"gif"`` (default) or ``"webp"``.
        env_kwargs: keyword arguments of ``gymnasium.make``.

    Attributes:
        n_params: d, the length of a candidate vector.
        obs_dim, act_dim: o, and the action outputs (discrete: the number of actions).
        discrete: whether actions are discrete.
        maximize: ``True``: a higher return is better.
        mime: ``"image/gif"`` or ``"image/webp"``.

    Example:
        >>> task = ControlTask("CartPole-v1", horizon=200)
        >>> opt = ZORankSGD(task.x0(), lr=0.5, mu=0.1, m=8, seed=0)
        >>> task.score(opt.ask())     # (8,) returns, float64
    """

    maximize: bool = True

    def __init__(
        self,
        env_id: str,
        *,
        policy: str = "linear",
        hidden: int | Sequence[int] | None = None,
        horizon: int | None = None,
        seed: int = 0,
        episodes: int = 1,
        executor: Executor | str | None = None,
        view: str = "auto",
        width: int = 192,
        max_frames: int = 48,
        fmt: str = "gif",
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(env_id, str) or not env_id:
            raise ValueError(f"env_id must be a gymnasium environment id; got {env_id!r}")
        if policy not in _POLICIES:
            raise ValueError(f"policy must be one of {_POLICIES}; got {policy!r}")
        if policy == "linear" and hidden is not None:
            raise ValueError(
                f"hidden={hidden!r} sizes an MLP; the linear policy has no hidden layer"
            )
        hidden_t: tuple[int, ...] = ()
        if policy == "mlp":
            hs = (16,) if hidden is None else ((hidden,) if isinstance(hidden, int) else hidden)
            hidden_t = tuple(hs)
            if not hidden_t or any(
                isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden_t
            ):
                raise ValueError(
                    f"hidden must be positive ints, e.g. 16 or (32, 32); got {hidden!r}"
                )
        for name, value, least in (
            ("seed", seed, 0),
            ("episodes", episodes, 1),
            ("width", width, 16),
            ("max_frames", max_frames, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}; got {view!r}")
        if fmt not in _FORMATS:
            raise ValueError(f"fmt must be one of {tuple(_FORMATS)}; got {fmt!r}")
        kwargs = dict(env_kwargs or {})
        if "render_mode" in kwargs:
            raise ValueError("render_mode is chosen by the view; leave it out of env_kwargs")

        # 1. Probe the environment once for its spaces, episode length and kind.
        import gymnasium as gym
        from gymnasium import spaces

        env = _make_env(env_id, kwargs, None)
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1:
            raise ValueError(
                f"{env_id} observes {obs_space}; a ControlTask needs a flat Box observation"
            )
        if isinstance(act_space, spaces.Discrete):
            discrete, out = True, int(act_space.n)
            low: tuple[float, ...] = ()
            high: tuple[float, ...] = ()
        elif isinstance(act_space, spaces.Box) and len(act_space.shape) == 1:
            discrete, out = False, int(act_space.shape[0])
            low = tuple(float(v) for v in act_space.low)
            high = tuple(float(v) for v in act_space.high)
        else:
            raise ValueError(
                f"{env_id} acts in {act_space}; a ControlTask needs a Discrete or flat Box action"
            )
        registered = gym.spec(env_id).max_episode_steps
        if horizon is None:
            if registered is None:
                raise ValueError(f"{env_id} registers no episode length; give horizon=")
            horizon = int(registered)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be an int >= 1; got {horizon!r}")
        mujoco = _is_mujoco(env)
        if view == "auto":
            if mujoco:
                view = "stick"
            elif "rgb_array" in (env.metadata.get("render_modes") or []):
                view = "frames"
            else:
                view = "trajectory"
        if view == "stick" and not mujoco:
            raise ValueError(f"view='stick' draws MuJoCo geometry; {env_id} is not a MuJoCo task")
        env.close()

        self.env_id = env_id
        self.policy = policy
        self.hidden = hidden_t
        self.obs_dim = int(obs_space.shape[0])
        self.act_dim = out
        self.discrete = discrete
        self.horizon = horizon
        self.seed = seed
        self.episodes = episodes
        self.view = view
        self.executor = as_executor(executor)
        self.mime = _FORMATS[fmt]
        self._spec = _Spec(
            env_id=env_id,
            env_kwargs=tuple(sorted(kwargs.items())),
            layers=(self.obs_dim, *hidden_t, out),
            discrete=discrete,
            low=low,
            high=high,
            horizon=horizon,
            seed=seed,
            episodes=episodes,
            view=view,
            width=width,
            max_frames=max_frames,
            fmt=fmt,
            mujoco=mujoco,
        )
        self.n_params = self._spec.n_params

    def __repr__(self) -> str:
        pol = "linear" if self.policy == "linear" else f"mlp{list(self.hidden)}"
        return (
            f"ControlTask({self.env_id!r}, policy={pol}, d={self.n_params}, "
            f"horizon={self.horizon}, seed={self.seed}, episodes={self.episodes}, "
            f"view={self.view!r})"
        )

    @property
    def layer_shapes(self) -> list[tuple[tuple[int, int], int]]:
        """``((out, in), out)`` of each layer's W and b, in the order they sit in θ."""
        sizes = self._spec.layers
        return [((b, a), b) for a, b in itertools.pairwise(sizes)]

    def x0(self, *, seed: int = 0) -> torch.Tensor:
        """A starting point, a ``(d,)`` float32 CPU tensor.

        Linear policy: zeros (the usual start of random search on linear policies: the zero
        policy is a neutral, deterministic baseline). MLP: hidden weights W ~ N(0, 1/fan_in)
        from ``seed`` (so the hidden units compute distinct features), biases and the output
        layer zero (so the start policy is still the zero policy). With zero hidden weights every
        hidden unit would stay tanh(0) = 0 and the output layer would see no signal.
        """
        x = torch.zeros(self.n_params, dtype=torch.float32)
        if self.policy == "mlp":
            g = torch.Generator(device="cpu").manual_seed(seed)
            pos = 0
            for (out, inp), nb in self.layer_shapes[:-1]:
                w = torch.randn(out * inp, generator=g, dtype=torch.float32) / math.sqrt(inp)
                x[pos : pos + out * inp] = w
                pos += out * inp + nb
        return x

    def _params(self, X: torch.Tensor) -> np.ndarray:
        if not isinstance(X, torch.Tensor) or X.dim() < 1:
            raise ValueError(f"candidates must be an m × d tensor; got {X!r}")
        if not X.dtype.is_floating_point:
            raise ValueError(f"candidates must be a floating tensor; got dtype {X.dtype}")
        if X.shape[0] < 1:
            raise ValueError("a round must have at least one candidate; got m=0")
        flat = X.detach().reshape(X.shape[0], -1)
        if flat.shape[1] != self.n_params:
            raise ValueError(
                f"{self!r} takes candidates of {self.n_params} parameters; got shape "
                f"{tuple(X.shape)}"
            )
        theta = flat.to("cpu", torch.float64).numpy()
        if not np.isfinite(theta).all():
            raise ValueError("candidate parameters must be finite; got NaN or inf")
        return theta

    def evaluate(self, X: torch.Tensor, *, views: bool = False) -> tuple[torch.Tensor, list[bytes]]:
        """Roll out the ``m × d`` candidates: ``(m,)`` float64 CPU returns and, when ``views``,
        one encoded animation per candidate (else an empty list)."""
        theta = self._params(X)
        jobs = [
            (self._spec, theta[a:b], views) for a, b in split(theta.shape[0], self.executor.workers)
        ]
        results = self.executor.map(_evaluate_chunk, jobs)
        returns = np.concatenate([r for r, _ in results])
        encoded = [v for _, vs in results for v in vs]
        return torch.from_numpy(returns), encoded

    def score(self, X: torch.Tensor) -> torch.Tensor:
        """Episode returns of the ``m × d`` candidates, an ``(m,)`` float64 CPU tensor (higher is
        better; the mean over ``episodes`` episodes)."""
        return self.evaluate(X)[0]

    def render(self, X: torch.Tensor) -> list[bytes]:
        """One animation (bytes of ``mime``) of the first episode of each of the ``m × d``
        candidates, in row order."""
        return self.evaluate(X, views=True)[1]
