"""Scoring single-view reconstructions: the silhouette-extrusion baseline and mesh metrics at 2% / 5% of the
reference's bounding-box diagonal, shared by training's held-out evaluation and the benchmark."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import trimesh

from reconstruction.engine.generative.frame import ViewFrame
from reconstruction.engine.metrics import (
    MetricError,
    fscore,
    normal_consistency,
    sample_surface,
    transform_points,
    umeyama,
    volume_iou,
)

F_SCORE_FRACTIONS = (0.02, 0.05)
SCORES = ("volume_iou", "f@2%", "f@5%", "normal_consistency")  # what score_meshes reports that is worth averaging


def extrusion_baseline(frame: ViewFrame, mask: np.ndarray) -> np.ndarray:
    """(D, R, R) bool: the silhouette swept through a depth band centred on the frame's centre depth, as thick as the
    mean of the silhouette's width and height (what one guesses with no shape knowledge)."""
    mask = np.asarray(mask)
    inside = mask >= (128 if np.issubdtype(mask.dtype, np.integer) else 0.5)
    volume = np.zeros(frame.shape, dtype=bool)
    if not inside.any():
        return volume
    rows, columns = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    cell, _ = frame.voxel_size()  # world size of a column
    thickness = (len(rows) + len(columns)) / 2 * cell
    z = frame.depth_of(np.arange(frame.depth_bins))
    band = np.abs(z - frame.centre_depth) <= thickness / 2
    volume[band] = inside
    return volume


def at_resolution(frame: ViewFrame, resolution: int, depth_bins: int) -> ViewFrame:
    """The same frustum sampled with another number of columns and depth bins."""
    return dataclasses.replace(frame, resolution=resolution, depth_bins=depth_bins)


def score_meshes(
    pred: trimesh.Trimesh, reference: trimesh.Trimesh, *, align: bool = False, samples: int = 20_000, seed: int = 0
) -> dict[str, Any]:
    """Volume IoU and F-score at 2% and 5% of the reference's diagonal; with `align`, after a similarity ICP of the
    prediction onto the reference (a single view fixes neither scale nor depth exactly)."""
    diagonal = float(np.linalg.norm(reference.bounds[1] - reference.bounds[0]))
    pred_points, pred_normals = sample_surface(pred, samples, seed)
    ref_points, ref_normals = sample_surface(reference, samples, seed + 1)
    report: dict[str, Any] = {}
    if align:
        T, rms = symmetric_icp(pred_points, ref_points)
        pred_points = transform_points(T, pred_points)
        pred_normals = pred_normals @ T[:3, :3].T
        pred_normals /= np.linalg.norm(pred_normals, axis=1, keepdims=True)
        pred = pred.copy()
        pred.apply_transform(T)
        report["alignment_rms"] = rms
        report["alignment_scale"] = float(np.cbrt(abs(np.linalg.det(T[:3, :3]))))
    for fraction in F_SCORE_FRACTIONS:
        report[f"f@{int(fraction * 100)}%"] = fscore(pred_points, ref_points, fraction * diagonal)["fscore"]
    report["normal_consistency"] = normal_consistency(pred_points, pred_normals, ref_points, ref_normals)
    try:
        report["volume_iou"] = volume_iou(pred, reference, samples=samples, seed=seed)
    except MetricError:
        report["volume_iou"] = None
    return report


def symmetric_icp(source: np.ndarray, target: np.ndarray, iterations: int = 30) -> tuple[np.ndarray, float]:
    """Similarity ICP from the identity with correspondences both ways (each source point to its nearest target
    point and each target point to its nearest moved source point). One-way ICP with scale can shrink the source
    onto a dense patch of the target; the target→source pairs forbid that collapse. Returns (T, final RMS)."""
    from scipy.spatial import cKDTree

    target_tree = cKDTree(target)
    T = np.eye(4)
    rms = float("inf")
    for _ in range(iterations):
        moved = transform_points(T, source)
        forward, to_target = target_tree.query(moved, workers=-1)
        backward, to_source = cKDTree(moved).query(target, workers=-1)
        rms = float(np.sqrt((np.mean(forward**2) + np.mean(backward**2)) / 2))
        step = umeyama(np.concatenate([moved, moved[to_source]]), np.concatenate([target[to_target], target]))
        T = step @ T
        if np.abs(step - np.eye(4)).max() < 1e-6:
            break
    return T, rms


def mean_scores(rows: list[dict[str, Any]], keys: tuple[str, ...] = ("volume_iou", "f@2%", "f@5%")) -> dict[str, Any]:
    """Mean of each key over the rows that have a value for it."""
    out: dict[str, Any] = {"count": len(rows)}
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None
    return out


def evaluate_on_dataset(
    model: Any,
    folder: Any,
    *,
    limit: int | None = None,
    samples: int = 4,
    steps: int = 24,
    guidance: float = 2.0,
    seed: int = 0,
    align: bool = False,
    log: Any = None,
) -> dict[str, Any]:
    """Ours and the extrusion baseline on every item of a data set folder (or the first `limit`), against the
    item's ground-truth occupancy meshed in the same frame. Returns per-item rows and the means."""
    import time

    from reconstruction.engine.errors import InvalidInput
    from reconstruction.engine.generative.dataset import load_dataset
    from reconstruction.engine.generative.sampling import sample_occupancy

    dataset = load_dataset(folder)
    count = len(dataset.frames) if limit is None else min(limit, len(dataset.frames))
    ours: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    for index in range(count):
        frame = dataset.frames[index]
        frame = frame if isinstance(frame, ViewFrame) else ViewFrame.from_dict(frame)
        image = np.asarray(dataset.images[index], dtype=np.float32) / 255.0
        mask = np.asarray(dataset.masks[index], dtype=np.float32) / 255.0
        truth = dataset.occupancy_batch(np.array([index]))[0]
        reference = frame.to_world_mesh(truth.astype(np.float32))
        started = time.perf_counter()
        result = sample_occupancy(model, image, mask, samples=samples, steps=steps, guidance=guidance, seed=seed)
        volume = upsample_volume(result.volume, frame.shape)
        row: dict[str, Any] = {"index": index, "kind": str(dataset.kinds[index]), "confidence": result.confidence}
        try:
            row.update(score_meshes(frame.to_world_mesh(np.minimum(volume, mask[None])), reference, align=align))
        except InvalidInput:
            row.update({"volume_iou": 0.0, "f@2%": 0.0, "f@5%": 0.0})
        row["seconds"] = time.perf_counter() - started
        ours.append(row)
        base = extrusion_baseline(frame, mask)
        baseline.append({"index": index, **score_meshes(frame.to_world_mesh(base.astype(np.float32)), reference, align=align)})
        if log is not None:
            log(f"{index + 1}/{count} {row['kind']}: ours IoU {row['volume_iou']} F@2% {row['f@2%']:.3f} | "
                f"baseline IoU {baseline[-1]['volume_iou']} F@2% {baseline[-1]['f@2%']:.3f}")
    return {
        "items": count,
        "ours": mean_scores(ours, (*SCORES, "seconds", "confidence")),
        "baseline": mean_scores(baseline, SCORES),
        "rows": {"ours": ours, "baseline": baseline},
    }


def upsample_volume(volume: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A (D, R, R) probability volume resampled to `shape` (trilinear, voxel centres kept)."""
    import torch
    import torch.nn.functional as F

    if tuple(volume.shape) == tuple(shape):
        return np.asarray(volume, dtype=np.float32)
    tensor = torch.from_numpy(np.asarray(volume, dtype=np.float32))[None, None]
    return F.interpolate(tensor, size=tuple(shape), mode="trilinear", align_corners=False)[0, 0].numpy()
