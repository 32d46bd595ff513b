"""Training of the occupancy denoiser on a procedural data set (see dataset.py for the shard format).

Everything random (initial weights, batches, flips, condition dropout, timesteps, noise) comes from the seed, so
the same data, steps, batch and seed give the same checkpoint on the same machine and thread count.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reconstruction.engine.errors import InvalidInput
from reconstruction.engine.generative.model import DEFAULT_CONFIG, DiffusionModel, make_condition, parameter_count


@dataclass
class TrainingConfig:
    steps: int
    batch: int = 16
    seed: int = 0
    learning_rate: float = 5e-4
    warmup_steps: int = 100
    weight_decay: float = 0.0
    ema_decay: float = 0.99
    condition_dropout: float = 0.1
    resolution: int = int(DEFAULT_CONFIG["resolution"])
    depth_bins: int = int(DEFAULT_CONFIG["depth_bins"])
    base_channels: int = int(DEFAULT_CONFIG["base_channels"])
    channel_mults: list[int] = field(default_factory=lambda: list(DEFAULT_CONFIG["channel_mults"]))
    # One thread: on a shared two-core machine two OpenMP threads ran 4× slower, not faster. On an idle one two
    # ran 1.6× faster (4.3 against 2.7 steps/s): pass --threads 2 there.
    threads: int = 1
    log_every: int = 25


@dataclass
class TrainingArrays:
    """A data set at the network's resolution: images (N,R,R,3) float32 [0,1], masks (N,R,R) float32 [0,1],
    occupancy (N,D,R,R) bool."""

    images: np.ndarray
    masks: np.ndarray
    occupancy: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def downsample_volume(volume: np.ndarray, depth_bins: int, resolution: int) -> np.ndarray:
    """(..., D, R, R) bool/float → (..., depth_bins, resolution, resolution) occupancy by block majority (≥ half).

    A block of the fine grid shares its centre with the coarse voxel, so the coarse grid is the same frame at a
    lower resolution (ViewFrame with resolution/depth_bins divided by the factors)."""
    *lead, D, R, _ = volume.shape
    if D % depth_bins or R % resolution:
        raise InvalidInput(f"A {D}×{R}×{R} grid cannot be reduced to {depth_bins}×{resolution}×{resolution}.")
    fk, fr = D // depth_bins, R // resolution
    blocks = volume.reshape(*lead, depth_bins, fk, resolution, fr, resolution, fr).astype(np.float32)
    return blocks.mean(axis=(-5, -3, -1)) >= 0.5


def downsample_image(image: np.ndarray, resolution: int) -> np.ndarray:
    """(..., R, R[, C]) → (..., resolution, resolution[, C]) by area averaging (the crop at a coarser R)."""
    channels_last = image.ndim >= 3 and image.shape[-1] in (3, 4) and image.shape[-2] == image.shape[-3]
    if channels_last:
        *lead, R, _, C = image.shape
        factor = R // resolution
        return image.reshape(*lead, resolution, factor, resolution, factor, C).mean(axis=(-4, -2))
    *lead, R, _ = image.shape
    factor = R // resolution
    return image.reshape(*lead, resolution, factor, resolution, factor).mean(axis=(-3, -1))


def arrays_from_dataset(folder: Path, resolution: int, depth_bins: int, chunk: int = 128) -> TrainingArrays:
    """Reads a data set folder and brings it to the network's resolution (unpacking occupancy in chunks)."""
    from reconstruction.engine.generative.dataset import load_dataset

    dataset = load_dataset(folder)
    images = np.asarray(dataset.images)
    count, R = images.shape[0], images.shape[1]
    if R % resolution:
        raise InvalidInput(f"The data set's {R}-pixel crops cannot be reduced to {resolution}.")
    occupancy = np.empty((count, depth_bins, resolution, resolution), dtype=bool)
    for start in range(0, count, chunk):
        stop = min(count, start + chunk)
        occupancy[start:stop] = downsample_volume(dataset.occupancy_batch(np.arange(start, stop)), depth_bins, resolution)
    return TrainingArrays(
        images=downsample_image(images.astype(np.float32) / 255.0, resolution).astype(np.float32),
        masks=downsample_image(np.asarray(dataset.masks).astype(np.float32) / 255.0, resolution).astype(np.float32),
        occupancy=occupancy,
    )


def learning_rate(config: TrainingConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to a tenth."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.learning_rate * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def batch_tensors(
    data: TrainingArrays, indices: np.ndarray, generator: torch.Generator, condition_dropout: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(occupancy (B,D,R,R) float {0,1}, condition (B,5,R,R)) with random horizontal flips and condition dropout.

    A flip mirrors the crop left–right and the volume's j axis with it: column j ↔ pixel column j stays true."""
    occupancy = torch.from_numpy(data.occupancy[indices]).float()
    image = torch.from_numpy(data.images[indices]).permute(0, 3, 1, 2).float()
    mask = torch.from_numpy(data.masks[indices]).float()
    flip = torch.rand(len(indices), generator=generator) < 0.5
    occupancy[flip] = occupancy[flip].flip(-1)
    image[flip] = image[flip].flip(-1)
    mask[flip] = mask[flip].flip(-1)
    present = torch.rand(len(indices), generator=generator) >= condition_dropout
    return occupancy, make_condition(image, mask, present)


def train(
    data: TrainingArrays,
    config: TrainingConfig,
    out: Path,
    *,
    log: Callable[[str], None] = print,
    extra: dict[str, Any] | None = None,
    model_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Trains for config.steps (model_options: extra entries of the model config, e.g. the frame's margin) and writes the checkpoint ({"config", "state_dict", "training"}, EMA weights) to
    `out` atomically; returns the training summary (loss curve, wall time, steps/s)."""
    if len(data) == 0:
        raise InvalidInput("The training set is empty.")
    if data.occupancy.shape[1:] != (config.depth_bins, config.resolution, config.resolution):
        raise InvalidInput(f"Training volumes are {data.occupancy.shape[1:]}, the network expects "
                           f"{(config.depth_bins, config.resolution, config.resolution)}.")
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model = DiffusionModel(
        {
            "resolution": config.resolution,
            "depth_bins": config.depth_bins,
            "base_channels": config.base_channels,
            "channel_mults": list(config.channel_mults),
            "condition_dropout": config.condition_dropout,
            **(model_options or {}),
        }
    )
    model.train()
    ema = {name: value.detach().clone() for name, value in model.state_dict().items()}
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    log(f"training {parameter_count(model):,} parameters on {len(data)} items for {config.steps} steps "
        f"(batch {config.batch}, seed {config.seed})")
    curve: list[tuple[int, float]] = []
    running: list[float] = []
    started = time.perf_counter()
    order = torch.randperm(len(data), generator=generator)
    cursor = 0
    for step in range(config.steps):
        if cursor + config.batch > len(order):
            order, cursor = torch.randperm(len(data), generator=generator), 0
        indices = order[cursor : cursor + config.batch].numpy()
        cursor += config.batch
        occupancy, condition = batch_tensors(data, indices, generator, config.condition_dropout)
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(config, step)
        loss = model.loss(occupancy, condition, generator)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        with torch.no_grad():
            decay = min(config.ema_decay, (step + 1) / (step + 10))
            for name, value in model.state_dict().items():
                if value.dtype.is_floating_point:
                    ema[name].mul_(decay).add_(value.detach(), alpha=1 - decay)
                else:
                    ema[name].copy_(value)
        running.append(float(loss.detach()))
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            mean = float(np.mean(running))
            running = []
            curve.append((step + 1, mean))
            elapsed = time.perf_counter() - started
            rate = (step + 1) / elapsed
            log(f"step {step + 1}/{config.steps} loss {mean:.4f} {rate:.2f} steps/s "
                f"eta {(config.steps - step - 1) / rate / 60:.1f} min")
    wall = time.perf_counter() - started
    summary = {
        "config": asdict(config),
        "items": len(data),
        "wall_s": wall,
        "steps_per_s": config.steps / wall,
        "loss_curve": curve,
        "parameters": parameter_count(model),
        **(extra or {}),
    }
    checkpoint = {"config": dict(model.config), "state_dict": ema, "training": json.loads(json.dumps(summary))}
    save_checkpoint(checkpoint, out)
    return summary


def save_checkpoint(checkpoint: dict[str, Any], out: Path) -> Path:
    """Writes a checkpoint through a temporary file in the same folder, so a crash never leaves half a file."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(handle)
    try:
        torch.save(checkpoint, temp_name)
        os.replace(temp_name, out)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return out
