"""Calibration: the capture's photos with cameras that can be trusted to about a pixel, and sparse points that bound
the object. The capture's own cameras when it has them; else structure from motion, refined on dense tracks.

The photogrammetry backend starts from it, and so do the trained fields (nerf, sdf) when a capture has photos only.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from reconstruction.engine.cameras import Camera, write_colmap_text
from reconstruction.engine.capture import Capture
from reconstruction.engine.carving import axes_convergence, silhouette_coverage
from reconstruction.engine.errors import BackendFailed, Cancelled
from reconstruction.engine.metrics import transform_points, umeyama
from reconstruction.engine.protocol import CancelFn, ProgressFn

from .config import PhotogrammetryParams
from .mvs import DepthMap, StereoImage, depth_ranges, estimate_depth, select_neighbours
from .refine import apply, moved_model, refine_cameras, sparse_track_errors
from .sfm import DEFAULT_ATTEMPT, MIN_SILHOUETTE_COVERAGE, SparseModel, structure_from_motion
from .views import View, undistorted, views_from_capture, with_background_masks

# The quick stereo pass that seeds the dense tracks of camera refinement runs at this fraction of the stereo size.
REFINE_DEPTH_REDUCTION = 4
# Percentiles of the sparse points that bound the object for a capture written out (`as_capture`): SfM keeps a few
# points on the background and the odd false match.
BOX_PERCENTILES = (2.0, 98.0)
# The refined cameras must fit SfM's own tracks (SIFT matches the refinement never saw) about as well as SfM's
# cameras do. On the 24-view blob they fit them better (0.13-0.23 px before, 0-9% less after); a refinement led
# astray by wrong dense tracks would fit them worse.
MAX_SPARSE_TRACK_ERROR_GROWTH = 1.5


@dataclass
class Calibration:
    """Views with their (undistorted, pinhole) cameras, sparse points in the cameras' frame, and what was done."""

    views: list[View]
    points: np.ndarray  # (N, 3); empty when nothing bounds the object but the cameras' convergence
    sparse_dir: Path  # COLMAP text model of the cameras
    known: bool  # the capture's own cameras, in the capture's frame
    metrics: dict[str, Any] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)


def calibrate(
    capture: Any, workdir: Path, config: PhotogrammetryParams, device: torch.device,
    cancel: CancelFn, progress: ProgressFn | None = None,
) -> Calibration:
    """Cameras for every photo of `capture` that can be placed, into workdir/sparse (COLMAP text). `progress`
    hears stages "sfm" and "refine", each with its own fraction done.

    Photos SfM cannot place are left out, and the metrics say which and why (`failed_images`); a model with too few
    is refused by SfM with a message naming them.
    """
    report: ProgressFn = progress or (lambda stage, fraction, message: None)
    workdir = Path(workdir)
    views, notes = views_from_capture(capture)
    log = list(notes)
    cut_masks = False  # masks of our own making, which the cameras must confirm before they trim anything
    if config.background_masks:
        given = any(view.mask is not None for view in views)
        views, note = with_background_masks(views)
        log.append(note)
        cut_masks = not given and all(view.mask is not None for view in views)
    known = all(view.camera is not None for view in views)
    metrics: dict[str, Any] = {"total_images": len(views), "known_cameras": known}
    report("sfm", 0.0, f"{len(views)} images, {'known' if known else 'unknown'} cameras")

    sparse: SparseModel | None = None
    if known:
        sparse_dir = write_colmap_text(workdir / "sparse", [v.camera for v in views if v.camera is not None])
        metrics.update(registered_images=len(views), registration_rate=1.0, status="complete", failed_images={})
        points = _declared_bounds(getattr(capture, "metadata", None) or {}, log)
        if not len(points):
            points = _points_for_known_cameras(views, workdir, config, cancel, log)
    else:
        sparse = structure_from_motion(
            views, workdir / "sfm", workdir / "sparse",
            max_image_size=config.max_image_size,
            exhaustive_max_images=config.exhaustive_matching_max_images,
            focal_length_prior=config.focal_length_prior,
            cancel=cancel,
            sift_peak_threshold=config.sift_peak_threshold,
            intrinsics=_shared_intrinsics(capture),
            wide_baseline_retry=config.sfm_wide_baseline_retry == "always" or (
                config.sfm_wide_baseline_retry == "with-masks" and all(view.mask is not None for view in views)
            ),
        )
        sparse_dir = workdir / "sparse"
        points = sparse.points
        _report_sfm(sparse, metrics, log)
        views = [dataclasses.replace(view, camera=sparse.cameras[view.name]) for view in views if view.name in sparse.cameras]
    report("sfm", 1.0, f"{metrics['registered_images']} of {metrics['total_images']} images placed")
    check(cancel, "after structure from motion")

    if cut_masks:
        views = _unless_contradicted(views, sparse.silhouette_coverage if sparse else None, metrics, log)
    views = [undistorted(view) for view in views]
    if sparse is not None and config.refine_cameras:
        views, points = _refined(views, points, sparse_dir, config, device, cancel, metrics, log)
        report("refine", 1.0, "cameras refined on dense tracks")
    return Calibration(views, points, sparse_dir, known, metrics, log)


def as_capture(calibration: Calibration, folder: Path) -> Capture:
    """The calibrated views written out as a capture with known cameras (PNG images, masks when every view has
    one), for the backends that need known cameras. Unless the cameras were the capture's own, the box of the
    sparse points stands for the object's box in the manifest: the cameras' frame is SfM's, not the capture's."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    views = calibration.views
    masked = all(view.mask is not None for view in views)
    if masked:
        (folder / "masks").mkdir(exist_ok=True)
    images, masks, cameras = [], [], []
    stems = [Path(view.name).stem for view in views]
    for index, (view, stem) in enumerate(zip(views, stems, strict=True)):
        unique = stem if stems.count(stem) == 1 else f"{stem}_{index}"  # a.jpg and a.png both become PNGs
        path = folder / "images" / f"{unique}.png"
        Image.fromarray((np.clip(view.image, 0, 1) * 255).round().astype(np.uint8)).save(path)
        images.append(path)
        if masked:
            soft = view.silhouette
            assert soft is not None
            masks.append(folder / "masks" / path.name)
            Image.fromarray((np.clip(soft, 0, 1) * 255).round().astype(np.uint8)).save(masks[-1])
        assert view.camera is not None
        cameras.append(dataclasses.replace(view.camera, image_name=path.name))
    metadata: dict[str, Any] = {"calibration": "capture" if calibration.known else "structure from motion"}
    if not calibration.known and len(calibration.points) >= 10:
        low, high = np.percentile(calibration.points, BOX_PERCENTILES, axis=0)
        metadata["object"] = {"bbox_min": low.tolist(), "bbox_max": high.tolist()}
    return Capture(folder, images, masks if masked else None, cameras, metadata)


def staged(progress: ProgressFn, stages: Mapping[str, tuple[float, float]]) -> ProgressFn:
    """`progress` for stages that report their own fraction done; `stages` gives each its share of the whole run."""

    def report(stage: str, fraction: float, message: str) -> None:
        start, end = stages[stage]
        progress(stage, start + (end - start) * fraction, message)

    return report


def check(cancel: CancelFn, where: str) -> None:
    if cancel():
        raise Cancelled(f"Cancelled {where}.")


def _report_sfm(sparse: SparseModel, metrics: dict[str, Any], log: list[str]) -> None:
    metrics.update(
        registered_images=sparse.registered,
        registration_rate=sparse.registered / sparse.total,
        status="partial" if sparse.partial else "complete",
        failed_images=sparse.failed,
        mean_reprojection_error_px=sparse.mean_reprojection_error_px,
        sparse_points=len(sparse.points),
        sfm_attempt=sparse.attempt,
        sfm_separate_models=sparse.separate_models,
        sfm_radial_distortion=(
            "dropped: the tracks fit as well without it" if sparse.distortion_dropped
            else "fitted" if any(camera.has_distortion for camera in sparse.cameras.values()) else "none"
        ),
    )
    if sparse.silhouette_coverage is not None:
        metrics["sfm_silhouette_coverage"] = round(sparse.silhouette_coverage, 4)
    if sparse.attempt != DEFAULT_ATTEMPT.name:
        log.append(
            f"cameras from the {sparse.attempt} retry of structure from motion (COLMAP's defaults placed too "
            "few images); its looser matching can be misled by symmetric objects"
        )
    if sparse.partial:
        log.append(
            f"partial reconstruction: {sparse.registered} of {sparse.total} images registered; "
            + "; ".join(f"{n}: {why}" for n, why in sorted(sparse.failed.items()))
        )


def _refined(
    views: list[View], points: np.ndarray, sparse_dir: Path, config: PhotogrammetryParams, device: torch.device,
    cancel: CancelFn, metrics: dict[str, Any], log: list[str],
) -> tuple[list[View], np.ndarray]:
    """The views with SfM's cameras refined on dense tracks (refine.py), and the sparse points in the refined frame.

    The tracks start from the depth maps of a quick stereo pass at a quarter of the stereo resolution, which puts
    them within the few pixels Lucas-Kanade converges from. The COLMAP model in `sparse_dir` moves along.
    """
    check(cancel, "before camera refinement")
    stereo_views = [view.resized(config.mvs_max_image_size) for view in views]
    cameras: list[Camera] = [v.camera for v in stereo_views]  # type: ignore[misc]
    centre = np.median(points, axis=0) if len(points) else axes_convergence(cameras)
    neighbours = select_neighbours(cameras, centre, config.neighbours)
    full = [StereoImage.build(v.name, v.image, v.mask, v.camera, device) for v in stereo_views]  # type: ignore[arg-type]
    coarse_views = [v.resized(max(64, config.mvs_max_image_size // REFINE_DEPTH_REDUCTION)) for v in stereo_views]
    coarse = [StereoImage.build(v.name, v.image, v.mask, v.camera, device) for v in coarse_views]  # type: ignore[arg-type]
    depths = []
    for index, near_far in enumerate(depth_ranges([v.camera for v in coarse_views], points, centre)):  # type: ignore[misc]
        check(cancel, "during camera refinement")
        others = [coarse[j] for j in neighbours[index]]
        depth = (
            estimate_depth(coarse[index], others, near_far, hypotheses=max(16, config.depth_hypotheses // 2),
                           patch=config.patch_size, min_ncc=config.min_ncc).depth
            if others else torch.zeros(coarse[index].height, coarse[index].width, device=device)
        )
        upsampled = torch.nn.functional.interpolate(depth[None, None], size=(full[index].height, full[index].width), mode="nearest")[0, 0]
        depths.append(DepthMap(depth=upsampled, confidence=torch.zeros_like(upsampled)))
    refinement = refine_cameras(full, depths, neighbours)
    if refinement is None:
        log.append("camera refinement skipped: too few dense tracks in some view; SfM's cameras kept")
        return views, points
    refined = apply(refinement, [v.camera for v in views])  # type: ignore[misc]
    moved = moved_model(sparse_dir, refinement, refined)
    sfm_error, refined_error = sparse_track_errors(sparse_dir, moved)
    if refined_error > MAX_SPARSE_TRACK_ERROR_GROWTH * sfm_error:
        log.append(
            f"camera refinement undone: SfM's own tracks fit the refined cameras worse ({sfm_error:.3f} → "
            f"{refined_error:.3f} px), a drift the dense tracks could not see; SfM's cameras kept"
        )
        return views, points
    moved.write_text(str(sparse_dir))
    metrics["camera_refinement"] = {
        "tracks": refinement.tracks,
        "observations": refinement.observations,
        "least_observations_in_a_view": min(refinement.observations_per_view),
        "reprojection_error_px": {"before": round(refinement.error_before_px, 4), "after": round(refinement.error_after_px, 4)},
        "focal_length_change": round(refinement.focal_change, 5),
        "median_rotation_change_deg": round(refinement.rotation_change_deg, 4),
        "sfm_track_error_px": {"before": round(sfm_error, 4), "after": round(refined_error, 4)},
    }
    log.append(
        f"cameras refined on {refinement.tracks} dense tracks: reprojection error {refinement.error_before_px:.3f} → "
        f"{refinement.error_after_px:.3f} px, focal length {refinement.focal_change:+.2%}, "
        f"median turn {refinement.rotation_change_deg:.3f}°"
    )
    views = [dataclasses.replace(view, camera=camera) for view, camera in zip(views, refined, strict=True)]
    return views, transform_points(refinement.world_from_old, points) if len(points) else points


def _unless_contradicted(
    views: list[View], coverage: float | None, metrics: dict[str, Any], log: list[str]
) -> list[View]:
    """The views with the masks cut from their background, or without them where the cameras' visual hull leaves
    part of a mask uncovered (`coverage`, the least share, when SfM measured it already): the cut missed or added
    part of the object (a white object on a white sweep), and such masks would trim real surface away."""
    if coverage is None:
        coverage = float(silhouette_coverage([v.camera for v in views], [v.mask for v in views]).min())  # type: ignore[misc]
    metrics["background_mask_coverage"] = round(coverage, 4)
    if coverage >= MIN_SILHOUETTE_COVERAGE:
        return views
    log.append(
        f"masks cut from the background dropped: the cameras' visual hull covers only {coverage:.0%} of one of them"
    )
    return [dataclasses.replace(view, mask=None, coverage=None) for view in views]


def _shared_intrinsics(capture: Any) -> np.ndarray | None:
    """The capture's one K for every photo (K.txt), when it declares one."""
    metadata = getattr(capture, "metadata", None) or {}
    K = metadata.get("intrinsics", {}).get("K") if isinstance(metadata, Mapping) else None
    try:
        matrix = np.asarray(K, dtype=np.float64).reshape(3, 3) if K is not None else None
    except (TypeError, ValueError):
        return None
    return matrix if matrix is not None and np.isfinite(matrix).all() and matrix[0, 0] > 0 else None


def _declared_bounds(metadata: Mapping[str, Any], log: list[str]) -> np.ndarray:
    """A grid of points filling the object's bounding box when the capture declares it (rendered captures do)."""
    box = metadata.get("object") if isinstance(metadata, Mapping) else None
    try:
        low = np.asarray(box["bbox_min"], dtype=np.float64).reshape(3)  # type: ignore[index]
        high = np.asarray(box["bbox_max"], dtype=np.float64).reshape(3)  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        return np.zeros((0, 3))
    if not (np.isfinite(low).all() and np.isfinite(high).all() and (high > low).all()):
        return np.zeros((0, 3))
    log.append("depth ranges from the object bounds declared in the capture")
    axes = [np.linspace(a, b, 5) for a, b in zip(low, high, strict=True)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _points_for_known_cameras(
    views: list[View], workdir: Path, config: PhotogrammetryParams, cancel: CancelFn, log: list[str]
) -> np.ndarray:
    """Sparse points in the capture's frame, to bound the depth sweep: SfM, then a similarity onto the known centres."""
    try:
        sparse = structure_from_motion(
            views, workdir / "sfm", workdir / "sfm" / "estimated",
            max_image_size=config.max_image_size,
            exhaustive_max_images=config.exhaustive_matching_max_images,
            focal_length_prior=config.focal_length_prior,
            cancel=cancel,
            sift_peak_threshold=config.sift_peak_threshold,
            wide_baseline_retry=False,  # the known cameras are used; these points only bound the depth sweep
        )
    except BackendFailed as exc:
        log.append(f"sparse points for depth ranges unavailable ({exc.message}); using the cameras' convergence")
        return np.zeros((0, 3))
    names = [n for n in sparse.cameras if any(v.name == n for v in views)]
    known = {v.name: v.camera for v in views}
    source = np.array([sparse.cameras[n].center for n in names])
    target = np.array([known[n].center for n in names])  # type: ignore[union-attr]
    transform = umeyama(source, target, with_scale=True)
    aligned_error = np.linalg.norm(transform_points(transform, source) - target, axis=1)
    spread = np.linalg.norm(target - target.mean(0), axis=1).mean()
    log.append(
        f"sparse points from SfM aligned to the known cameras: {len(names)} of {len(views)} views, "
        f"median camera misfit {np.median(aligned_error) / max(spread, 1e-12):.2%} of the camera spread"
    )
    if np.median(aligned_error) > 0.05 * spread:
        log.append("alignment too poor to trust; using the cameras' convergence")
        return np.zeros((0, 3))
    return transform_points(transform, sparse.points)
