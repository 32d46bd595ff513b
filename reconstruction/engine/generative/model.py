"""The image-conditioned occupancy denoiser: a 2D U-Net over the view-aligned frustum grid.

Because every voxel column of the frustum grid (see `frame.py`) projects to one pixel of the conditioning crop, the
(D, R, R) occupancy is treated as a D-channel R×R image: the network sees the noisy volume and the crop (RGB + mask)
stacked as channels, so image evidence and the column it explains sit at the same place.

Parameterisation: the network predicts x0 (the clean volume) as logits and is trained with a Bernoulli likelihood
(binary cross-entropy against the {0, 1} occupancy). The data are binary, so an x0 estimate is directly a voxel
probability: the silhouette constraint and inpainting act on it at every sampling step, it can be clipped without
bias, and it gives a useful loss at every noise level — what a short CPU training run needs. DDIM derives ε from it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from reconstruction.engine.model_registry import ModelCard

CONDITION_CHANNELS = 5  # RGB, mask, and a flag that is 1 when the condition is given (0 when dropped for CFG)
DEFAULT_CONFIG: dict[str, Any] = {
    "architecture": "frustum-unet2d",
    "resolution": 32,  # R: in-plane cells of the grid the network works on
    "depth_bins": 32,  # D: depth cells, the network's volume channels
    "base_channels": 32,
    "channel_mults": [1, 2, 4],
    "timesteps": 1000,
    "schedule": "cosine",
    "prediction": "x0-logits",
    "condition_dropout": 0.1,
    # frame_for options the training frames were built with; inference must build its frames the same way
    "margin": 0.1,
    "depth_ratio": 2.0,
}


def cosine_alphas_cumprod(timesteps: int, s: float = 0.008) -> torch.Tensor:
    """ᾱ_t for t = 0..T-1 of the cosine schedule (Nichol & Dhariwal 2021), clipped away from 0 and 1."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alphas_cumprod = f[1:] / f[0]
    return alphas_cumprod.clamp(1e-5, 0.9999).float()


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding (B,) → (B, dim) of integer or fractional timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, embedding: int) -> None:
        super().__init__()
        self.norm1 = _norm(channels_in)
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1)
        self.embed = nn.Linear(embedding, channels_out)
        self.norm2 = _norm(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.skip = nn.Conv2d(channels_in, channels_out, 1) if channels_in != channels_out else nn.Identity()

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.embed(embedding)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class DiffusionModel(nn.Module):
    """x0-logit predictor: (noisy volume (B,D,R,R) in [-1,1]-ish, t (B,), condition (B,5,R,R)) → logits (B,D,R,R)."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.config = {**DEFAULT_CONFIG, **(config or {})}
        depth, base = int(self.config["depth_bins"]), int(self.config["base_channels"])
        widths = [base * m for m in self.config["channel_mults"]]
        self.embedding_dim = base * 4
        self.time_mlp = nn.Sequential(
            nn.Linear(base, self.embedding_dim), nn.SiLU(), nn.Linear(self.embedding_dim, self.embedding_dim)
        )
        self.stem = nn.Conv2d(depth + CONDITION_CHANNELS, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        previous = widths[0]
        for level, width in enumerate(widths):
            self.down.append(ResBlock(previous, width, self.embedding_dim))
            previous = width
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.middle = ResBlock(previous, previous, self.embedding_dim)
        self.up = nn.ModuleList()
        for width in reversed(widths):
            self.up.append(ResBlock(previous + width, width, self.embedding_dim))
            previous = width
        self.out_norm = _norm(previous)
        self.out = nn.Conv2d(previous, depth, 3, padding=1)
        self.alphas_cumprod: torch.Tensor
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(int(self.config["timesteps"])), persistent=False)

    @property
    def resolution(self) -> int:
        return int(self.config["resolution"])

    @property
    def depth_bins(self) -> int:
        return int(self.config["depth_bins"])

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        embedding = self.time_mlp(timestep_embedding(t, int(self.config["base_channels"])))
        h = self.stem(torch.cat([x, condition], dim=1))
        skips = []
        for level, block in enumerate(self.down):
            h = block(h, embedding)
            skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
        h = self.middle(h, embedding)
        for block in self.up:
            skip = skips.pop()
            if h.shape[-1] != skip.shape[-1]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1), embedding)
        return self.out(F.silu(self.out_norm(h)))

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x0 + √(1−ᾱ_t) ε."""
        a = self.alphas_cumprod[t][:, None, None, None]
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def loss(
        self, occupancy: torch.Tensor, condition: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Training loss of one batch: occupancy (B,D,R,R) in {0,1}, condition (B,5,R,R) (dropout applied already)."""
        batch = occupancy.shape[0]
        t = torch.randint(0, int(self.config["timesteps"]), (batch,), generator=generator)
        noise = torch.randn(occupancy.shape, generator=generator)
        x_t = self.q_sample(occupancy * 2 - 1, t, noise)
        logits = self(x_t, t, condition)
        return F.binary_cross_entropy_with_logits(logits, occupancy)


def make_condition(image: torch.Tensor, mask: torch.Tensor, present: torch.Tensor | None = None) -> torch.Tensor:
    """(B,3,R,R) image in [0,1], (B,R,R) mask in [0,1] → (B,5,R,R) condition; rows where `present` is False are
    zeroed with flag 0 (the unconditional branch of classifier-free guidance)."""
    batch = image.shape[0]
    flag = torch.ones((batch, 1, *image.shape[-2:]), dtype=image.dtype)
    condition = torch.cat([image * 2 - 1, mask[:, None] * 2 - 1, flag], dim=1)
    if present is not None:
        condition = condition * present.to(condition.dtype)[:, None, None, None]
    return condition


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def model_from_checkpoint(checkpoint: dict[str, Any]) -> DiffusionModel:
    """A model in eval mode from a checkpoint dict {"config", "state_dict"}."""
    model = DiffusionModel(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    return model


def load_model(card: ModelCard) -> DiffusionModel:
    """The registered model of `card`, its checkpoint's sha256 verified before anything is read from it."""
    from reconstruction.engine.errors import CheckpointRejected
    from reconstruction.engine.model_registry import load_checkpoint

    checkpoint = load_checkpoint(card)
    try:
        return model_from_checkpoint(checkpoint)
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointRejected(f"Checkpoint {card.reference} does not hold a {card.architecture} model: {exc}") from None
