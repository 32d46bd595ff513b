"""Parameters shared by the field backends; kept free of torch so listing backends stays light."""

from __future__ import annotations

from dataclasses import dataclass, field

# Views a field needs at least, whether given with the capture or placed by calibration from photos alone.
MIN_VIEWS = 4


@dataclass
class FieldParams:
    """Parameters shared by the field backends (each backend subclasses this with its own defaults)."""

    resolution: int = field(
        default=128,
        metadata={"description": "Final grid points along the longest side of the box.", "minimum": 16, "maximum": 512},
    )
    iterations: int = field(
        default=3000, metadata={"description": "Training iterations at most.", "minimum": 1, "maximum": 200000}
    )
    time_budget_s: float = field(
        default=600.0,
        metadata={
            "description": "Wall-time budget of the whole run, seconds (training stops in time to mesh).",
            "minimum": 1.0,
            "maximum": 86400.0,
        },
    )
    # Many small steps beat few large ones within a time budget: on spot at 256 px, 150 s, resolution 64 (CPU),
    # 1024 rays reached 893 iterations and 35.9 dB at held-out cameras, 4096 rays 271 iterations and 32.2 dB.
    batch_rays: int = field(
        default=1024, metadata={"description": "Rays per training iteration.", "minimum": 64, "maximum": 65536}
    )
    step_ratio: float = field(
        default=0.5, metadata={"description": "Sample spacing along rays, in voxels.", "minimum": 0.1, "maximum": 2.0}
    )
    max_samples: int = field(
        default=512, metadata={"description": "Samples per ray at most.", "minimum": 8, "maximum": 4096}
    )
    learning_rate: float = field(
        default=0.1, metadata={"description": "Adam step size of the grids.", "minimum": 1e-5, "maximum": 10.0}
    )
    tv_weight: float = field(
        default=1e-4,
        metadata={"description": "Total-variation weight on the geometry grid.", "minimum": 0.0, "maximum": 10.0},
    )
    colour_tv_weight: float = field(
        default=0.0,
        metadata={"description": "Total-variation weight on the colour grid.", "minimum": 0.0, "maximum": 10.0},
    )
    mask_weight: float = field(
        default=0.1,
        metadata={
            "description": "Weight of the mask (opacity) loss when the capture has masks.",
            "minimum": 0.0,
            "maximum": 10.0,
        },
    )
    require_masks: bool = field(default=False, metadata={"description": "Refuse captures without masks."})
    hold_out_view: bool = field(
        default=True,
        metadata={"description": "Keep the last view out of training (from 8 views up) to report validation PSNR."},
    )
    memory_budget_mb: int = field(
        default=4096,
        metadata={
            "description": "Memory the training may use; estimated before it starts.",
            "minimum": 64,
            "maximum": 1048576,
        },
    )
    lower_resolution_to_fit: bool = field(
        default=True,
        metadata={"description": "Lower the resolution to fit the memory budget instead of refusing the run."},
    )
    turntable_frames: int = field(
        default=8, metadata={"description": "Preview frames rendered from the field.", "minimum": 0, "maximum": 120}
    )
    preview_size: int = field(
        default=128, metadata={"description": "Preview frame size, pixels.", "minimum": 16, "maximum": 1024}
    )
    max_triangles: int = field(
        default=100_000,
        metadata={
            "description": "The marching-cubes surface is simplified to at most this many triangles before texturing.",
            "minimum": 1000,
            "maximum": 5_000_000,
        },
    )
    texture_size: int = field(
        default=1024,
        metadata={"description": "Side of the baked base-colour texture, pixels.", "minimum": 256, "maximum": 8192},
    )
    uv_atlas: str = field(
        default="auto",
        metadata={
            "description": "UV layout: xatlas charts (few seams, slow on large meshes), a grid of triangles, or auto.",
            "enum": ["auto", "xatlas", "grid"],
        },
    )
    seed: int = field(default=0, metadata={"description": "Random seed (ray batches, sample jitter).", "minimum": 0})
    threads: int = field(
        default=0,
        metadata={
            "description": "CPU threads for training; 0 takes the cores other work leaves idle (at least one).",
            "minimum": 0,
            "maximum": 256,
        },
    )
    device: str = field(
        default="auto",
        metadata={"description": "Torch device: auto picks cuda when present.", "enum": ["auto", "cpu", "cuda"]},
    )
