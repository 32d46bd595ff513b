"""Joins the separate models incremental SfM can leave behind when they share cameras, into the largest one's frame.

COLMAP starts a new model when no further image can be placed against the current one; on weakly connected
views the two often share several images (each registered in both) yet stay apart. The shared cameras give the
similarity between the frames: when their centres and orientations agree after it, the smaller model's other
cameras and points are carried over.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reconstruction.engine.cameras import Camera
from reconstruction.engine.metrics import transform_points, umeyama

MIN_SHARED_CAMERAS = 3
# Shared camera centres may miss each other by this share of the main model's camera spread (median) …
MAX_CENTRE_MISFIT = 0.05
# … and their orientations by this many degrees (worst), else the models disagree and stay apart.
MAX_ROTATION_MISFIT_DEG = 5.0


@dataclass
class SfmModel:
    """One connected SfM model in its own frame: cameras by view name, points and the views that see each."""

    cameras: dict[str, Camera]
    points: np.ndarray  # (N, 3)
    point_views: list[list[str]]


def merge_models(models: list[SfmModel]) -> SfmModel:
    """The model with most cameras, grown by every other model that agrees with it on enough shared cameras.

    Cameras the main model already has keep its estimate. A model joins once it shares cameras with the growing
    one, so chains of models (A–B–C) merge too.
    """
    ordered = sorted(models, key=lambda m: len(m.cameras), reverse=True)
    main = SfmModel(dict(ordered[0].cameras), ordered[0].points, list(ordered[0].point_views))
    pending = ordered[1:]
    joined = True
    while joined and pending:
        joined = False
        for other in list(pending):
            transform = _agreeing_similarity(other, main)
            if transform is None:
                continue
            for name, camera in other.cameras.items():
                main.cameras.setdefault(name, _moved(camera, transform))
            main.points = np.vstack([main.points, transform_points(transform, other.points)])
            main.point_views = main.point_views + other.point_views
            pending.remove(other)
            joined = True
    return main


def _agreeing_similarity(other: SfmModel, main: SfmModel) -> np.ndarray | None:
    """The 4×4 similarity from `other`'s frame to `main`'s, when their shared cameras agree under it."""
    shared = sorted(set(other.cameras) & set(main.cameras))
    if len(shared) < MIN_SHARED_CAMERAS or len(shared) == len(other.cameras):
        return None
    source = np.array([other.cameras[n].center for n in shared])
    target = np.array([main.cameras[n].center for n in shared])
    all_centres = np.array([c.center for c in main.cameras.values()])
    spread = float(np.linalg.norm(all_centres - all_centres.mean(0), axis=1).mean())
    if spread <= 0 or np.linalg.matrix_rank(source - source.mean(0), tol=1e-9 * max(spread, 1e-12)) < 2:
        return None  # coincident or collinear centres leave the similarity undetermined
    transform = umeyama(source, target, with_scale=True)
    misfit = np.linalg.norm(transform_points(transform, source) - target, axis=1)
    if np.median(misfit) > MAX_CENTRE_MISFIT * spread:
        return None
    rotation = transform[:3, :3] / np.cbrt(np.linalg.det(transform[:3, :3]))
    for name in shared:
        moved = other.cameras[name].R @ rotation.T
        cosine = (np.trace(moved.T @ main.cameras[name].R) - 1) / 2
        if np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))) > MAX_ROTATION_MISFIT_DEG:
            return None
    return transform


def _moved(camera: Camera, transform: np.ndarray) -> Camera:
    """`camera` in the frame that `transform` (x' = sQx + d) maps its world to; the image is unchanged."""
    scale = float(np.cbrt(np.linalg.det(transform[:3, :3])))
    rotation, offset = transform[:3, :3] / scale, transform[:3, 3]
    R = camera.R @ rotation.T
    return Camera(camera.image_name, camera.width, camera.height, camera.K, R, scale * camera.t - R @ offset, camera.distortion)
