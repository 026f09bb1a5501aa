"""The digits generator's UNet, for inference, in plain torch.

The embedded digits model was trained as a diffusers ``UNet2DModel`` (``train()`` in
:mod:`labkit.models.digits`), but sampling from it needs none of diffusers: importing diffusers
pulls in torch._dynamo, every transformer model and a probe of every installed package, 5-7 s of
a Voilà kernel's start-up, for a network of four block kinds. :class:`UNet` is that network's
forward pass, derived from the architecture's definition:

* the timestep t becomes sinusoidal features (as in "Attention is all you need"), then a
  two-layer SiLU MLP gives the conditioning vector e = MLP(features(t)) + embed(class);
* residual blocks ``h = conv(SiLU(GN(x)));  h += W·SiLU(e);  h = conv(SiLU(GN(h)));  x' = s(x) + h``
  (s a 1×1 convolution when the channel count changes, else the identity);
* at the coarse resolutions, multi-head self-attention over the H·W pixels (pre-GroupNorm,
  residual);
* a stride-2 3×3 convolution halves the side, nearest-neighbour ×2 then a 3×3 convolution
  doubles it;
* the encoder's activations are kept ("skips") and concatenated, last first, onto the decoder's
  input of each residual block.

Every parameter has diffusers' name, so a state dict of ``UNet2DModel`` (the shipped
``digits_ddpm/unet/``) loads with ``strict=True`` and the trainer keeps using diffusers.

Supported configurations (:class:`UNetConfig`, read from the folder's ``unet/config.json``): any
channel counts, depth and number of layers, with down blocks ``DownBlock2D``/``AttnDownBlock2D``,
up blocks ``UpBlock2D``/``AttnUpBlock2D``, the ``UNetMidBlock2D`` middle with attention, a class
embedding (``num_class_embeds``), positional time features (any ``flip_sin_to_cos`` and
``freq_shift``) and diffusers' defaults for everything else. Any other setting raises a
ValueError naming the key: there is deliberately no fallback to diffusers, which would bring
back, silently, the import this module exists to avoid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "UNetConfig", "timestep_features"]

_DOWN_BLOCKS = ("DownBlock2D", "AttnDownBlock2D")
_UP_BLOCKS = ("UpBlock2D", "AttnUpBlock2D")

#: Settings of diffusers' UNet2DModel this module implements at one value only: key -> the
#: accepted values (the first is diffusers' default, used when the key is absent).
_FIXED: dict[str, tuple[Any, ...]] = {
    "center_input_sample": (False,),
    "time_embedding_type": ("positional",),
    "mid_block_type": ("UNetMidBlock2D",),
    "downsample_padding": (1,),
    "downsample_type": ("conv",),
    "upsample_type": ("conv",),
    "act_fn": ("silu", "swish"),  # two names of x·sigmoid(x)
    "attn_norm_num_groups": (None,),
    "resnet_time_scale_shift": ("default",),
    "add_attention": (True,),
    "class_embed_type": (None,),
}
#: Settings that only matter while training (dropout) or for a time embedding this module does
#: not support ("learned" needs ``num_train_timesteps``); accepted with any value.
_IGNORED = ("dropout", "num_train_timesteps")


def _positive_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"UNet config {key!r} must be an integer >= 1; got {value!r}")
    return value


def _finite(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"UNet config {key!r} must be a finite number; got {value!r}")
    return float(value)


def _names(key: str, value: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise ValueError(
            f"UNet config {key!r} must be a non-empty list of block names; got {value!r}"
        )
    for name in value:
        if name not in allowed:
            raise ValueError(
                f"UNet config {key!r}: block {name!r} is not supported by labkit's UNet "
                f"(supported: {', '.join(allowed)})"
            )
    return tuple(value)


@dataclass(frozen=True)
class UNetConfig:
    """The architecture of a :class:`UNet`, in diffusers ``UNet2DModel``'s terms.

    Build it with :meth:`from_dict` from a model folder's ``unet/config.json``; the fields are
    the supported keys, with diffusers' defaults.
    """

    sample_size: int | None = None
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (224, 448, 672, 896)
    layers_per_block: int = 2
    down_block_types: tuple[str, ...] = (
        "DownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
        "AttnDownBlock2D",
    )
    up_block_types: tuple[str, ...] = (
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "AttnUpBlock2D",
        "UpBlock2D",
    )
    norm_num_groups: int = 32
    norm_eps: float = 1e-5
    #: Channels per attention head; None: one head over all the block's channels.
    attention_head_dim: int | None = 8
    num_class_embeds: int | None = None
    #: Width E of the conditioning vector; None: 4 × ``block_out_channels[0]``.
    time_embedding_dim: int | None = None
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    mid_block_scale_factor: float = 1.0

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> UNetConfig:
        """Check ``config`` (keyword arguments of diffusers' ``UNet2DModel``) and return it.

        Keys starting with ``_`` (diffusers' bookkeeping, e.g. ``_diffusers_version``) are
        ignored. Raises ValueError naming the first key that is unknown or set to a value this
        implementation does not support.
        """
        fields = set(cls.__dataclass_fields__)
        for key, value in config.items():
            if key.startswith("_") or key in fields or key in _IGNORED:
                continue
            if key not in _FIXED:
                raise ValueError(f"UNet config key {key!r} is unknown to labkit's UNet")
            if value not in _FIXED[key]:
                raise ValueError(
                    f"UNet config {key!r}={value!r} is not supported by labkit's UNet "
                    f"(supported: {_FIXED[key][0]!r})"
                )
        base = cls()
        get = config.get
        channels = get("block_out_channels", base.block_out_channels)
        if isinstance(channels, str) or not isinstance(channels, Sequence) or not channels:
            raise ValueError(
                f"UNet config 'block_out_channels' must be a non-empty list; got {channels!r}"
            )
        channels = tuple(_positive_int("block_out_channels", c) for c in channels)
        down = _names(
            "down_block_types", get("down_block_types", base.down_block_types), _DOWN_BLOCKS
        )
        up = _names("up_block_types", get("up_block_types", base.up_block_types), _UP_BLOCKS)
        if not len(down) == len(up) == len(channels):
            raise ValueError(
                "UNet config 'down_block_types', 'up_block_types' and 'block_out_channels' must "
                f"have the same length; got {len(down)}, {len(up)} and {len(channels)}"
            )
        groups = _positive_int("norm_num_groups", get("norm_num_groups", base.norm_num_groups))
        num_class_embeds = get("num_class_embeds", base.num_class_embeds)
        if num_class_embeds is None:
            raise ValueError(
                "UNet config 'num_class_embeds' must be an integer >= 1: labkit's UNet is "
                "class-conditional (guidance needs the null class); got None"
            )
        head_dim = get("attention_head_dim", base.attention_head_dim)
        time_dim = get("time_embedding_dim", base.time_embedding_dim)
        sample_size = get("sample_size", base.sample_size)
        flip = get("flip_sin_to_cos", base.flip_sin_to_cos)
        if not isinstance(flip, bool):
            raise ValueError(f"UNet config 'flip_sin_to_cos' must be true or false; got {flip!r}")
        eps = _finite("norm_eps", get("norm_eps", base.norm_eps))
        if eps <= 0:
            raise ValueError(f"UNet config 'norm_eps' must be > 0; got {eps!r}")
        out = cls(
            sample_size=None if sample_size is None else _positive_int("sample_size", sample_size),
            in_channels=_positive_int("in_channels", get("in_channels", base.in_channels)),
            out_channels=_positive_int("out_channels", get("out_channels", base.out_channels)),
            block_out_channels=channels,
            layers_per_block=_positive_int(
                "layers_per_block", get("layers_per_block", base.layers_per_block)
            ),
            down_block_types=down,
            up_block_types=up,
            norm_num_groups=groups,
            norm_eps=eps,
            attention_head_dim=None
            if head_dim is None
            else _positive_int("attention_head_dim", head_dim),
            num_class_embeds=_positive_int("num_class_embeds", num_class_embeds),
            time_embedding_dim=None
            if time_dim is None
            else _positive_int("time_embedding_dim", time_dim),
            flip_sin_to_cos=flip,
            freq_shift=_finite("freq_shift", get("freq_shift", base.freq_shift)),
            mid_block_scale_factor=_finite(
                "mid_block_scale_factor", get("mid_block_scale_factor", base.mid_block_scale_factor)
            ),
        )
        out._check_shapes()
        return out

    @property
    def embedding_dim(self) -> int:
        """E, the width of the conditioning vector (time MLP output and class embedding)."""
        return self.time_embedding_dim or 4 * self.block_out_channels[0]

    def heads(self, channels: int) -> int:
        """Number of attention heads of a block with ``channels`` channels."""
        return 1 if self.attention_head_dim is None else channels // self.attention_head_dim

    def _check_shapes(self) -> None:
        # GroupNorm needs the group count to divide every normalized channel count: the blocks'
        # outputs and the decoder's concatenations (checked by the layers themselves, at build).
        for c in self.block_out_channels:
            if c % self.norm_num_groups:
                raise ValueError(
                    f"UNet config 'norm_num_groups'={self.norm_num_groups} must divide every "
                    f"entry of 'block_out_channels'; {c} is not a multiple"
                )
        if self.mid_block_scale_factor == 0:
            raise ValueError("UNet config 'mid_block_scale_factor' must not be 0")
        attention_channels = [
            c
            for c, kind in zip(self.block_out_channels, self.down_block_types, strict=True)
            if kind.startswith("Attn")
        ]
        attention_channels += [self.block_out_channels[-1]]  # the middle block's attention
        for c in attention_channels:
            if self.heads(c) < 1:
                raise ValueError(
                    f"UNet config 'attention_head_dim'={self.attention_head_dim} is larger than "
                    f"an attention block's {c} channels"
                )


def timestep_features(
    t: torch.Tensor, dim: int, *, flip_sin_to_cos: bool = True, freq_shift: float = 0.0
) -> torch.Tensor:
    """Sinusoidal features of the timesteps ``t`` ``(b,)``: a float32 ``(b, dim)`` tensor.

    With h = ⌊dim/2⌋ frequencies ω_i = 10000^(−i/(h − freq_shift)), i = 0..h−1, the features
    are [cos(t ω), sin(t ω)] (``flip_sin_to_cos``) or [sin(t ω), cos(t ω)], plus a zero column
    when ``dim`` is odd. The lowest frequency, ω_{h−1} ≈ 1/10000, changes slowly over the
    1000 training steps, the highest (ω₀ = 1) changes at every step: together they tell apart
    every t. Computed in float32 whatever the model's dtype (the features of t ≈ 1000 need the
    precision), on ``t``'s device.
    """
    half = dim // 2
    # The exponent is formed as index · (−ln 10000) / (h − shift), in float32 and in that order:
    # the features of t ≈ 1000 amplify a last-bit difference in ω a thousandfold, so the order
    # is part of the definition the weights were trained with.
    exponent = torch.arange(half, dtype=torch.float32, device=t.device) * -math.log(10000.0)
    omega = torch.exp(exponent / (half - freq_shift))
    angles = t.float()[:, None] * omega[None, :]
    parts = [torch.cos(angles), torch.sin(angles)]
    if not flip_sin_to_cos:
        parts.reverse()
    if dim % 2:
        parts.append(angles.new_zeros(angles.shape[0], 1))
    return torch.cat(parts, dim=1)


class _TimeMLP(nn.Module):
    """features (b, F) → Linear → SiLU → Linear → (b, E)."""

    def __init__(self, features: int, width: int) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(features, width)
        self.linear_2 = nn.Linear(width, width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(features)))


class _ResBlock(nn.Module):
    """A residual block conditioned on the embedding: ``(b, c_in, H, W) → (b, c_out, H, W)``."""

    def __init__(
        self, c_in: int, c_out: int, *, emb_dim: int, groups: int, eps: float, scale: float = 1.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in, eps=eps)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time_emb_proj = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(groups, c_out, eps=eps)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        # The residual path needs a 1×1 projection only where the channel count changes.
        self.conv_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None
        self.scale = scale

    def forward(self, x: torch.Tensor, emb_act: torch.Tensor) -> torch.Tensor:
        """``emb_act`` is SiLU(e), ``(b, E)``: the embedding enters as a per-channel shift."""
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_emb_proj(emb_act)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return (skip + h) / self.scale


class _SelfAttention(nn.Module):
    """Multi-head self-attention among the H·W pixels of ``(b, c, H, W)``, with a residual.

    The pixels are the tokens and the (group-normalized) channels their features; ``heads`` heads
    of ``head_dim`` channels each (heads·head_dim may be below c: the projections then narrow).
    Scores are scaled by 1/√head_dim. Output: ``(x + attention(GN(x))) / scale``.
    """

    def __init__(
        self, channels: int, *, heads: int, head_dim: int, groups: int, eps: float, scale: float
    ) -> None:
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.group_norm = nn.GroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, inner)
        self.to_k = nn.Linear(channels, inner)
        self.to_v = nn.Linear(channels, inner)
        self.to_out = nn.ModuleList([nn.Linear(inner, channels)])  # diffusers' key: to_out.0
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)  # (b, H·W, c)

        def split(proj: nn.Module) -> torch.Tensor:  # (b, H·W, inner) → (b, heads, H·W, d)
            return proj(tokens).unflatten(-1, (self.heads, -1)).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            split(self.to_q), split(self.to_k), split(self.to_v)
        )
        out = self.to_out[0](attended.transpose(1, 2).flatten(2))  # (b, H·W, c)
        out = out.transpose(1, 2).reshape(b, c, height, width)
        return (out + x) / self.scale


class _Downsample(nn.Module):
    """Halve the side by a 3×3 convolution of stride 2: ``(b, c, H, W) → (b, c, H/2, W/2)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Upsample(nn.Module):
    """Double the side: nearest-neighbour ×2, then a 3×3 convolution that smooths the blocks."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _DownBlock(nn.Module):
    """Residual blocks (each optionally followed by attention), then optionally a downsampling.

    Pushes onto ``skips`` the output of every layer and of the downsampling.
    """

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        config: UNetConfig,
        attention: bool,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            _resblock(c_in if i == 0 else c_out, c_out, config)
            for i in range(config.layers_per_block)
        )
        self.attentions = (
            nn.ModuleList(_attention(c_out, config) for _ in range(config.layers_per_block))
            if attention
            else None
        )
        self.downsamplers = nn.ModuleList([_Downsample(c_out)]) if downsample else None

    def forward(
        self, x: torch.Tensor, emb_act: torch.Tensor, skips: list[torch.Tensor]
    ) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, emb_act)
            if self.attentions is not None:
                x = self.attentions[i](x)
            skips.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            skips.append(x)
        return x


class _UpBlock(nn.Module):
    """Residual blocks on [input, last skip] (each optionally followed by attention), then
    optionally an upsampling. Pops one entry of ``skips`` per residual block."""

    def __init__(
        self,
        c_prev: int,
        c_out: int,
        skip_channels: Sequence[int],
        *,
        config: UNetConfig,
        attention: bool,
        upsample: bool,
    ) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            _resblock((c_prev if i == 0 else c_out) + c_skip, c_out, config)
            for i, c_skip in enumerate(skip_channels)
        )
        self.attentions = (
            nn.ModuleList(_attention(c_out, config) for _ in skip_channels) if attention else None
        )
        self.upsamplers = nn.ModuleList([_Upsample(c_out)]) if upsample else None

    def forward(
        self, x: torch.Tensor, emb_act: torch.Tensor, skips: list[torch.Tensor]
    ) -> torch.Tensor:
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), emb_act)
            if self.attentions is not None:
                x = self.attentions[i](x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class _MidBlock(nn.Module):
    """Residual block, attention, residual block, at the coarsest resolution.

    ``mid_block_scale_factor`` divides the output of each of the three (after the residual sum).
    """

    def __init__(self, channels: int, *, config: UNetConfig) -> None:
        super().__init__()
        scale = config.mid_block_scale_factor
        self.resnets = nn.ModuleList(
            _resblock(channels, channels, config, scale=scale) for _ in range(2)
        )
        self.attentions = nn.ModuleList([_attention(channels, config, scale=scale)])

    def forward(self, x: torch.Tensor, emb_act: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x, emb_act)
        x = self.attentions[0](x)
        return self.resnets[1](x, emb_act)


def _resblock(c_in: int, c_out: int, config: UNetConfig, *, scale: float = 1.0) -> _ResBlock:
    """A residual block with the embedding width and normalization of ``config``."""
    return _ResBlock(
        c_in,
        c_out,
        emb_dim=config.embedding_dim,
        groups=config.norm_num_groups,
        eps=config.norm_eps,
        scale=scale,
    )


def _attention(channels: int, config: UNetConfig, *, scale: float = 1.0) -> _SelfAttention:
    head_dim = channels if config.attention_head_dim is None else config.attention_head_dim
    return _SelfAttention(
        channels,
        heads=config.heads(channels),
        head_dim=head_dim,
        groups=config.norm_num_groups,
        eps=config.norm_eps,
        scale=scale,
    )


class UNet(nn.Module):
    """A class-conditional UNet that predicts, from a noisy image x_t, its timestep t and a class,
    the model's target (v for the digits model); inference only.

    ``config`` is the dict of a model folder's ``unet/config.json``: keyword arguments of diffusers'
    ``UNet2DModel``, checked by :meth:`UNetConfig.from_dict` (which raises ValueError for what is
    not supported); the checked form is kept as ``config``. The parameters start from torch's
    default initialization and are meant to be overwritten from a state dict of a
    ``UNet2DModel`` of the same configuration, whose keys they share. ``class_embedding`` is an
    :class:`torch.nn.Embedding`, one row of width E per class; its output, ``(b, E)``, is what a
    forward hook on it may shift.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        cfg = UNetConfig.from_dict(config)
        self.config = cfg
        channels = cfg.block_out_channels
        n, layers = len(channels), cfg.layers_per_block
        assert cfg.num_class_embeds is not None  # from_dict refuses None

        self.conv_in = nn.Conv2d(cfg.in_channels, channels[0], 3, padding=1)
        self.time_embedding = _TimeMLP(channels[0], cfg.embedding_dim)
        self.class_embedding = nn.Embedding(cfg.num_class_embeds, cfg.embedding_dim)

        # Encoder. Block i maps channels[i-1] → channels[i] (block 0 starts from conv_in's
        # channels[0]) and halves the side unless it is the last. skip_channels records what
        # each entry pushed onto the skip stack holds, for the decoder to consume.
        self.down_blocks = nn.ModuleList()
        skip_channels = [channels[0]]  # conv_in's output
        for i, kind in enumerate(cfg.down_block_types):
            last = i == n - 1
            c_in, c_out = channels[max(i - 1, 0)], channels[i]
            self.down_blocks.append(
                _DownBlock(
                    c_in, c_out, config=cfg, attention=kind.startswith("Attn"), downsample=not last
                )
            )
            skip_channels += [c_out] * (layers + (0 if last else 1))

        self.mid_block = _MidBlock(channels[-1], config=cfg)

        # Decoder, mirrored: block i outputs channels[n-1-i] and has layers + 1 residual blocks,
        # so that, all blocks together, it consumes exactly the skips the encoder pushed (the
        # encoder pushes layers + 1 per level, conv_in's included), last pushed first.
        self.up_blocks = nn.ModuleList()
        c_prev = channels[-1]
        for i, kind in enumerate(cfg.up_block_types):
            c_out = channels[n - 1 - i]
            taken = [skip_channels.pop() for _ in range(layers + 1)]
            self.up_blocks.append(
                _UpBlock(
                    c_prev,
                    c_out,
                    taken,
                    config=cfg,
                    attention=kind.startswith("Attn"),
                    upsample=i < n - 1,
                )
            )
            c_prev = c_out
        assert not skip_channels  # every skip has its consumer

        self.conv_norm_out = nn.GroupNorm(cfg.norm_num_groups, channels[0], eps=cfg.norm_eps)
        self.conv_out = nn.Conv2d(channels[0], cfg.out_channels, 3, padding=1)

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor | int, class_labels: torch.Tensor
    ) -> torch.Tensor:
        """The prediction for ``sample`` ``(b, in_channels, H, W)`` (H, W multiples of
        2^(depth−1)); ``timestep`` an int or a 0-d or ``(b,)`` tensor; ``class_labels`` a
        ``(b,)`` int64 tensor. Returns ``(b, out_channels, H, W)`` in the weights' dtype.
        """
        b = sample.shape[0]
        t = torch.as_tensor(timestep, device=sample.device)
        if t.dim() == 0:
            t = t.expand(b)
        elif t.shape != (b,):
            raise ValueError(
                f"timestep must be a number or have shape ({b},); got {tuple(t.shape)}"
            )
        dtype = self.conv_in.weight.dtype

        # 1. the conditioning vector e = MLP(features(t)) + embed(class), (b, E). Every residual
        # block takes SiLU(e), so it is formed once here.
        cfg = self.config
        features = timestep_features(
            t,
            cfg.block_out_channels[0],
            flip_sin_to_cos=cfg.flip_sin_to_cos,
            freq_shift=cfg.freq_shift,
        )
        emb = self.time_embedding(features.to(dtype))
        emb = emb + self.class_embedding(class_labels).to(dtype)
        emb_act = F.silu(emb)

        # 2. encoder, keeping the skips; 3. middle; 4. decoder, consuming them.
        x = self.conv_in(sample)
        skips = [x]
        for down in self.down_blocks:
            x = down(x, emb_act, skips)
        x = self.mid_block(x, emb_act)
        for up in self.up_blocks:
            x = up(x, emb_act, skips)

        # 5. back to image channels.
        return self.conv_out(F.silu(self.conv_norm_out(x)))
