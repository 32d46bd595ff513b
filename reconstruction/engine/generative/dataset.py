"""Training data for the occupancy prior: procedural objects rendered from random views, with exact occupancy.

Each sample is one view of one object: the square crop of the render and its coverage mask at R×R, the ViewFrame
of that crop (frame.py) and the object's occupancy at the frame's voxel centres. Object i of seed s is shown from
1–3 views; everything about sample (i, view) is drawn from its own seeded stream, so the data set is the same for
any number of worker processes and any shard size, and shards are byte-for-byte reproducible.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reconstruction.engine.cameras import Camera, camera_looking_at, intrinsics
from reconstruction.engine.errors import InvalidInput
from reconstruction.engine.generative.frame import ViewFrame, frame_for
from reconstruction.engine.generative.occupancy import column_occupancy
from reconstruction.engine.generative.procedural import GENERATOR_VERSION, generate_object, painted_mesh
from reconstruction.engine.generative.shards import (
    FORMAT,
    FORMAT_VERSION,
    Dataset,
    dataset_digest,
    load_dataset,
    write_manifest,
    write_shard,
)
from reconstruction.engine.render import render_views, sha256_file

__all__ = ["Dataset", "build_dataset", "load_dataset", "render_object", "sample_plan"]

RENDER_SIZE = 256
# Recorded in dataset.json: inference must build its frames the same way.
FRAME_OPTIONS = {"margin": 0.1, "depth_ratio": 2.0}
MAX_VIEWS = 3


@dataclass
class Sample:
    image: np.ndarray  # uint8 (R, R, 3)
    mask: np.ndarray  # uint8 (R, R)
    occupancy: np.ndarray  # bool (D, R, R)
    frame: ViewFrame
    kind: str


def sample_plan(seed: int, count: int) -> list[tuple[int, int]]:
    """(object index, view index) of each of `count` samples: object i contributes 1–3 consecutive views."""
    plan: list[tuple[int, int]] = []
    index = 0
    while len(plan) < count:
        views = int(np.random.default_rng([int(seed), index, 99]).integers(1, MAX_VIEWS + 1))
        plan.extend((index, view) for view in range(views))
        index += 1
    return plan[:count]


def _background(rng: np.random.Generator) -> np.ndarray:
    """Mostly white or light studio grey, sometimes a pastel or any colour."""
    choice = rng.random()
    if choice < 0.5:
        return np.full(3, rng.uniform(0.88, 1.0))
    if choice < 0.75:
        return np.clip(rng.uniform(0.7, 0.95) + rng.normal(0, 0.04, 3), 0, 1)
    return rng.uniform(0.0, 1.0, 3)


def _camera(rng: np.random.Generator, vertices: np.ndarray, size: int) -> Camera:
    """A random view of the object: azimuth 0–360°, elevation −10…60°, distance 1.6–5 bounding radii (strong to
    weak perspective), aimed a little off centre; the focal length makes the object span 45–95% of the picture,
    and the principal point shifts if needed so that none of it leaves the picture.
    """
    radius = float(np.linalg.norm(vertices, axis=1).max())
    distance = radius * rng.uniform(1.6, 5.0)
    azimuth, elevation = math.radians(rng.uniform(0, 360)), math.radians(rng.uniform(-10, 60))
    direction = np.array(
        [math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth)]
    )
    target = rng.normal(0, 0.1 * radius, 3)
    unit = camera_looking_at(
        "view.png", size, size, intrinsics(1.0, 1.0, 0.0, 0.0), tuple(direction * distance), tuple(target)
    )
    uv, _ = unit.project(vertices)
    low, high = uv.min(axis=0), uv.max(axis=0)
    focal = rng.uniform(0.45, 0.95) * size / float((high - low).max())
    margin = 2.0
    centre = np.array([size / 2, size / 2]) + rng.uniform(-0.5, 0.5, 2) * np.maximum(
        size - 2 * margin - (high - low) * focal, 0
    )
    principal = centre - (low + high) / 2 * focal
    return camera_looking_at(
        "view.png", size, size, intrinsics(focal, focal, *principal), tuple(direction * distance), tuple(target)
    )


def render_object(
    seed: int, index: int, views: list[int], *, resolution: int = 64, depth_bins: int = 64, size: int = RENDER_SIZE
) -> list[Sample]:
    """Renders the given views of object `index` of `seed`: crops, masks, frames and occupancy.

    Lighting (random key and fill lights baked into the colours, or the renderer's headlight) and background are
    drawn per object; each view's camera from its own stream, so a view is the same whichever others come with it.
    """
    obj = generate_object(seed, index)
    mesh = obj.mesh
    rng = np.random.default_rng([int(seed), int(index), 5])
    cameras = [_camera(np.random.default_rng([int(seed), int(index), view, 6]), mesh.vertices, size) for view in views]
    background = _background(rng)
    painted = painted_mesh(obj)
    if rng.random() < 0.65:  # studio lights fixed in the world, as when the camera walks round the object
        toward = np.array([rng.uniform(-1, 1), rng.uniform(0.2, 1.0), rng.uniform(-1, 1)])
        shown, lighting = painted.lit(toward / np.linalg.norm(toward), rng), "flat"
    else:  # the renderer's headlight on the bare colours
        shown, lighting = painted.unlit(), "lit"
    rendered = render_views(shown, cameras, background=tuple(background), lighting=lighting)
    fill = tuple(float(c) for c in np.round(background * 255))
    samples = []
    labels = obj.face_labels
    for camera, view in zip(cameras, rendered, strict=True):
        # Procedural objects are centred on the origin, so the default centre hint is the object centre.
        frame = frame_for(
            camera,
            view.coverage,
            resolution=resolution,
            depth_bins=depth_bins,
            margin=FRAME_OPTIONS["margin"],
            depth_ratio=FRAME_OPTIONS["depth_ratio"],
        )
        image = frame.crop(view.rgb, fill=fill)
        mask = frame.crop(np.round(view.coverage * 255).astype(np.uint8))
        occupancy = column_occupancy(frame, mesh, labels, thin_walls=True)
        samples.append(Sample(image, mask, occupancy, frame, obj.kind))
    return samples


def _job_key(job: dict[str, Any]) -> dict[str, Any]:
    """Everything a shard's content depends on."""
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": job["seed"],
        "resolution": job["resolution"],
        "depth_bins": job["depth_bins"],
        "plan": [list(item) for item in job["plan"]],
    }


def _finished_shard(job: dict[str, Any]) -> dict[str, Any] | None:
    """The record of a shard an earlier, interrupted run already wrote for the same job, if its file is intact."""
    folder = Path(job["folder"])
    record_path = folder / f"{Path(job['name']).stem}.json"
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        return None
    shard = folder / job["name"]
    if record.get("key") != _job_key(job) or not shard.is_file() or sha256_file(shard) != record["result"]["sha256"]:
        return None
    return dict(record["result"], seconds=0.0)


def _write_shard_job(job: dict[str, Any]) -> dict[str, Any]:
    """Renders one shard (or reuses an identical one from an interrupted run) and returns its record."""
    finished = _finished_shard(job)
    if finished is not None:
        return finished
    started = time.perf_counter()
    samples: list[Sample] = []
    plan = job["plan"]
    for index in dict.fromkeys(index for index, _ in plan):  # objects in order, each with its views in this shard
        views = [view for i, view in plan if i == index]
        samples += render_object(job["seed"], index, views, resolution=job["resolution"], depth_bins=job["depth_bins"])
    folder = Path(job["folder"])
    digest = write_shard(
        folder / job["name"],
        np.stack([s.image for s in samples]),
        np.stack([s.mask for s in samples]),
        np.stack([s.occupancy for s in samples]),
        [s.frame for s in samples],
        [s.kind for s in samples],
    )
    result = {
        "name": job["name"],
        "count": len(samples),
        "sha256": digest,
        "kinds": dict(Counter(s.kind for s in samples)),
        "seconds": time.perf_counter() - started,
    }
    record_path = folder / f"{Path(job['name']).stem}.json"
    temporary = record_path.with_name(f".{record_path.name}.tmp")
    temporary.write_text(json.dumps({"key": _job_key(job), "result": result}))
    os.replace(temporary, record_path)
    return result


def build_dataset(
    out: Path | str,
    *,
    count: int,
    seed: int,
    resolution: int = 64,
    depth_bins: int = 64,
    shard_size: int = 250,
    workers: int = 2,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Renders `count` samples into shards under `out` and writes dataset.json last; returns the manifest.

    Shards cut the sample plan into fixed runs of `shard_size`, and a plan for fewer samples is a prefix of one
    for more; a shard an interrupted run left behind (checked by its record and sha256) is reused, not redrawn.
    """
    if count < 1 or resolution % 8 or resolution < 8 or depth_bins < 1:
        raise InvalidInput("count must be positive and resolution a positive multiple of 8.")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    plan = sample_plan(seed, count)
    jobs = [
        {
            "seed": seed,
            "resolution": resolution,
            "depth_bins": depth_bins,
            "folder": str(folder),
            "name": f"shard-{number:04d}.npz",
            "plan": plan[start : start + shard_size],
        }
        for number, start in enumerate(range(0, count, shard_size))
    ]
    started, done, results = time.perf_counter(), 0, []
    workers = max(1, min(workers, 2, len(jobs)))
    finished: Iterator[dict[str, Any]]
    if workers == 1:
        finished = map(_write_shard_job, jobs)
        pool = None
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers)  # no EGL state inherited across a fork
        finished = pool.imap_unordered(_write_shard_job, jobs)
    try:
        for result in finished:
            results.append(result)
            done += result["count"]
            elapsed = time.perf_counter() - started
            if progress:
                progress(
                    f"{result['name']}: {done}/{count} samples, {elapsed / done:.3f} s/sample wall, "
                    f"eta {elapsed / done * (count - done) / 60:.1f} min"
                )
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
    results.sort(key=lambda r: r["name"])
    elapsed = time.perf_counter() - started
    kinds: Counter[str] = Counter()
    for result in results:
        kinds.update(result["kinds"])
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "count": count,
        "objects": len({index for index, _ in plan}),
        "counts_by_kind": dict(sorted(kinds.items())),
        "resolution": resolution,
        "depth_bins": depth_bins,
        "render_size": RENDER_SIZE,
        "frame_options": FRAME_OPTIONS,
        "occupancy": "voxel centres inside any part; a solid stretch too thin to hold a centre marks its middle voxel",
        "shards": [{"name": r["name"], "count": r["count"], "sha256": r["sha256"]} for r in results],
        "digest": dataset_digest([r["sha256"] for r in results]),
        "timing": {
            "wall_seconds": round(elapsed, 1),
            "workers": workers,
            "seconds_per_sample_wall": round(elapsed / count, 4),
            "seconds_per_sample_cpu": round(sum(r["seconds"] for r in results) / count, 4),
        },
    }
    write_manifest(folder, manifest)
    return manifest
