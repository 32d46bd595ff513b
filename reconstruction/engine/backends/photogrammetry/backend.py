"""The `photogrammetry` backend: SfM (or the capture's cameras) → torch multi-view stereo → Poisson → baked texture."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import open3d as o3d
import torch

from reconstruction.engine.cameras import Camera, write_colmap_text
from reconstruction.engine.carving import axes_convergence, silhouette_coverage
from reconstruction.engine.devices import resolve_device
from reconstruction.engine.errors import BackendFailed, Cancelled
from reconstruction.engine.metrics import transform_points, umeyama
from reconstruction.engine.params import json_schema, validate
from reconstruction.engine.protocol import MULTI_VIEW, CancelFn, Capabilities, ProgressFn, ReconstructionResult
from reconstruction.engine.resources import measure
from reconstruction.engine.texturing import bake, write_glb

from .config import PhotogrammetryParams
from .fusion import fuse
from .meshing import poisson_mesh
from .mvs import DepthMap, StereoImage, estimate_depth, select_neighbours
from .refine import apply, refine_cameras, rewrite_model
from .sfm import DEFAULT_ATTEMPT, MIN_SILHOUETTE_COVERAGE, SparseModel, structure_from_motion
from .silhouettes import hull_fill
from .views import MIN_VIEWS, View, undistorted, views_from_capture, with_background_masks

# Share of each view's sparse-point depth span added on either side of the sweep range.
DEPTH_MARGIN = 0.15
MIN_POINTS_FOR_RANGE = 10
# The quick stereo pass that seeds the dense tracks of camera refinement runs at this fraction of the stereo size.
REFINE_DEPTH_REDUCTION = 4

# Shares of the whole run given to each stage, for progress reports.
_STAGES = {"sfm": (0.0, 0.15), "refine": (0.15, 0.2), "mvs": (0.2, 0.75), "fusion": (0.75, 0.8), "meshing": (0.8, 0.88), "texture": (0.88, 1.0)}


class PhotogrammetryBackend:
    """Photos (with or without cameras) → textured mesh, accurate to about a pixel when the photos allow it."""

    name = "photogrammetry"
    version = "1.5.0"
    capabilities = Capabilities(
        inputs=frozenset({MULTI_VIEW}), min_views=MIN_VIEWS, typical_memory_mb=3072, produces_texture=True
    )
    parameter_schema: Mapping[str, Any] = json_schema(PhotogrammetryParams)

    def run(
        self,
        capture: Any,
        workdir: Path,
        *,
        params: Mapping[str, Any],
        progress: ProgressFn,
        cancel: CancelFn,
    ) -> ReconstructionResult:
        """Reconstructs `capture` into `workdir`: mesh.glb, texture, sparse/ (COLMAP text), dense/fused.ply."""
        config = validate(PhotogrammetryParams, params)
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        device = torch.device(resolve_device(config.device))
        log: list[str] = []
        timings: dict[str, float] = {}
        with measure(str(device)) as usage:
            result = self._run(capture, workdir, config, device, progress, cancel, log, timings)
        result.resources = usage
        result.metrics["stage_seconds"] = {k: round(v, 3) for k, v in timings.items()}
        return result

    def _run(
        self, capture: Any, workdir: Path, config: PhotogrammetryParams, device: torch.device,
        progress: ProgressFn, cancel: CancelFn, log: list[str], timings: dict[str, float],
    ) -> ReconstructionResult:
        started = time.perf_counter()
        views, notes = views_from_capture(capture)
        log.extend(notes)
        cut_masks = False  # masks of our own making, which the cameras must confirm before they trim anything
        if config.background_masks:
            given = any(view.mask is not None for view in views)
            views, note = with_background_masks(views)
            log.append(note)
            cut_masks = not given and all(view.mask is not None for view in views)
        known = all(view.camera is not None for view in views)
        metrics: dict[str, Any] = {"total_images": len(views), "known_cameras": known}
        progress("sfm", 0.0, f"{len(views)} images, {'known' if known else 'unknown'} cameras")

        sparse: SparseModel | None = None
        if known:
            cameras = {view.name: view.camera for view in views}
            sparse_dir = write_colmap_text(workdir / "sparse", [c for c in cameras.values() if c is not None])
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
            cameras = dict(sparse.cameras)
            points = sparse.points
            metrics.update(
                registered_images=sparse.registered,
                registration_rate=sparse.registered / sparse.total,
                status="partial" if sparse.partial else "complete",
                failed_images=sparse.failed,
                mean_reprojection_error_px=sparse.mean_reprojection_error_px,
                sparse_points=len(sparse.points),
                sfm_attempt=sparse.attempt,
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
            views = [dataclasses.replace(view, camera=cameras[view.name]) for view in views if view.name in cameras]
        timings["sfm"] = time.perf_counter() - started
        progress("sfm", _STAGES["sfm"][1], f"{metrics['registered_images']} of {metrics['total_images']} images placed")
        _check(cancel, "after structure from motion")

        if cut_masks:
            views = _unless_contradicted(views, sparse.silhouette_coverage if sparse else None, metrics, log)
        views = [undistorted(view) for view in views]
        if sparse is not None and config.refine_cameras:
            refine_started = time.perf_counter()
            views, points = _refined(views, points, sparse_dir, config, device, cancel, metrics, log)
            timings["refine"] = time.perf_counter() - refine_started
            progress("refine", _STAGES["refine"][1], "cameras refined on dense tracks")
        stereo_views = [view.resized(config.mvs_max_image_size) for view in views]
        cams: list[Camera] = [v.camera for v in stereo_views]  # type: ignore[misc]
        centre = np.median(points, axis=0) if len(points) else axes_convergence(cams)
        neighbours = select_neighbours(cams, centre, config.neighbours)
        stereo = [StereoImage.build(v.name, v.image, v.mask, v.camera, device) for v in stereo_views]  # type: ignore[arg-type]

        started = time.perf_counter()
        depths = []
        start, end = _STAGES["mvs"]
        for index, (view, near_far) in enumerate(zip(stereo, _depth_ranges(cams, points, centre), strict=True)):
            _check(cancel, "during multi-view stereo")
            others = [stereo[j] for j in neighbours[index]]
            if not others:
                log.append(f"{view.name}: no neighbour view at a useful angle; no depth map")
                empty = torch.zeros(view.height, view.width, device=device)
                depths.append(DepthMap(depth=empty, confidence=empty.clone()))
            else:
                depths.append(
                    estimate_depth(
                        view, others, near_far,
                        hypotheses=config.depth_hypotheses, patch=config.patch_size, min_ncc=config.min_ncc,
                    )
                )
            progress("mvs", start + (end - start) * (index + 1) / len(stereo), f"depth map {index + 1} of {len(stereo)} ({view.name})")
        timings["mvs"] = time.perf_counter() - started
        metrics["depth_valid_share"] = round(float(np.mean([(d.depth > 0).float().mean().item() for d in depths])), 4)

        started = time.perf_counter()
        _check(cancel, "before fusion")
        cloud = fuse(
            stereo, [v.image for v in stereo_views], depths, neighbours,
            max_pixels=config.consistency_pixels, max_relative_depth=config.consistency_depth,
            min_views=config.min_consistent_views,
        )
        del depths
        metrics["fused_points"] = len(cloud.points)
        dense_dir = workdir / "dense"
        dense_dir.mkdir(exist_ok=True)
        if len(cloud.points):
            pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(cloud.points))
            pcd.colors = o3d.utility.Vector3dVector(cloud.colors)
            pcd.normals = o3d.utility.Vector3dVector(cloud.normals)
            o3d.io.write_point_cloud(dense_dir / "fused.ply", pcd)
        timings["fusion"] = time.perf_counter() - started
        progress("fusion", _STAGES["fusion"][1], f"{len(cloud.points)} consistent points")

        started = time.perf_counter()
        _check(cancel, "before meshing")
        silhouettes = [(v.camera, v.mask) for v in stereo_views if v.mask is not None and v.camera is not None]
        hull_filled = config.silhouette_fill and bool(silhouettes) and len(silhouettes) == len(stereo_views)
        if hull_filled:
            soft = [(v.camera, v.silhouette) for v in stereo_views]
            cloud, added = hull_fill(cloud, soft, _object_bounds(cloud.points, points))  # type: ignore[arg-type]
            metrics["silhouette_fill_points"] = added
        mesh, mesh_report = poisson_mesh(
            cloud, depth=config.poisson_depth, density_trim_quantile=config.density_trim_quantile,
            min_component_share=config.min_component_share, max_triangles=config.max_triangles, silhouettes=silhouettes or None,
            trim_unsupported=not hull_filled,
        )
        metrics["mesh"] = mesh_report
        timings["meshing"] = time.perf_counter() - started
        progress("meshing", _STAGES["meshing"][1], f"{len(mesh.faces)} triangles")

        started = time.perf_counter()
        _check(cancel, "before texturing")
        textured = bake(mesh, [(v.camera, v.image) for v in views], config.texture_size, config.uv_atlas)  # type: ignore[misc]
        texture_path = workdir / "texture_base_color.png"
        textured.texture.save(texture_path)
        mesh_path = write_glb(textured, workdir / "mesh.glb", "photogrammetry")
        metrics["texture_coverage"] = round(textured.coverage, 4)
        metrics["uv_atlas"] = textured.atlas
        timings["texture"] = time.perf_counter() - started
        progress("texture", 1.0, "textured mesh written")

        return ReconstructionResult(
            mesh_path=mesh_path,
            texture_paths=[texture_path],
            cameras_path=sparse_dir,
            metrics=metrics,
            backend=self.name,
            backend_version=self.version,
            parameters=dataclasses.asdict(config),
            log=log,
        )


def _refined(
    views: list[View], points: np.ndarray, sparse_dir: Path, config: PhotogrammetryParams, device: torch.device,
    cancel: CancelFn, metrics: dict[str, Any], log: list[str],
) -> tuple[list[View], np.ndarray]:
    """The views with SfM's cameras refined on dense tracks (refine.py), and the sparse points in the refined frame.

    The tracks start from the depth maps of a quick stereo pass at a quarter of the stereo resolution, which puts
    them within the few pixels Lucas-Kanade converges from. The COLMAP model in `sparse_dir` moves along.
    """
    _check(cancel, "before camera refinement")
    stereo_views = [view.resized(config.mvs_max_image_size) for view in views]
    cameras: list[Camera] = [v.camera for v in stereo_views]  # type: ignore[misc]
    centre = np.median(points, axis=0) if len(points) else axes_convergence(cameras)
    neighbours = select_neighbours(cameras, centre, config.neighbours)
    full = [StereoImage.build(v.name, v.image, v.mask, v.camera, device) for v in stereo_views]  # type: ignore[arg-type]
    coarse_views = [v.resized(max(64, config.mvs_max_image_size // REFINE_DEPTH_REDUCTION)) for v in stereo_views]
    coarse = [StereoImage.build(v.name, v.image, v.mask, v.camera, device) for v in coarse_views]  # type: ignore[arg-type]
    depths = []
    for index, near_far in enumerate(_depth_ranges([v.camera for v in coarse_views], points, centre)):  # type: ignore[misc]
        _check(cancel, "during camera refinement")
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
    rewrite_model(sparse_dir, refinement, refined)
    metrics["camera_refinement"] = {
        "tracks": refinement.tracks,
        "observations": refinement.observations,
        "least_observations_in_a_view": min(refinement.observations_per_view),
        "reprojection_error_px": {"before": round(refinement.error_before_px, 4), "after": round(refinement.error_after_px, 4)},
        "focal_length_change": round(refinement.focal_change, 5),
        "median_rotation_change_deg": round(refinement.rotation_change_deg, 4),
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


def _object_bounds(dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    """A box around the object: the robust extent of the stereo points (and of the sparse or declared ones), grown 15%."""
    sources = [p for p in (dense, sparse) if len(p) >= MIN_POINTS_FOR_RANGE]
    low = np.min([np.percentile(p, 0.5, axis=0) for p in sources], axis=0)
    high = np.max([np.percentile(p, 99.5, axis=0) for p in sources], axis=0)
    margin = 0.15 * (high - low)
    return np.stack([low - margin, high + margin])


def _shared_intrinsics(capture: Any) -> np.ndarray | None:
    """The capture's one K for every photo (K.txt), when it declares one."""
    metadata = getattr(capture, "metadata", None) or {}
    K = metadata.get("intrinsics", {}).get("K") if isinstance(metadata, Mapping) else None
    try:
        matrix = np.asarray(K, dtype=np.float64).reshape(3, 3) if K is not None else None
    except (TypeError, ValueError):
        return None
    return matrix if matrix is not None and np.isfinite(matrix).all() and matrix[0, 0] > 0 else None


def _check(cancel: CancelFn, where: str) -> None:
    if cancel():
        raise Cancelled(f"Cancelled {where}.")


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


def _depth_ranges(cameras: list[Camera], points: np.ndarray, centre: np.ndarray) -> list[tuple[float, float]]:
    """Near and far sweep depth per camera from the sparse points it sees, else around the scene centre."""
    ranges = []
    for camera in cameras:
        uv, z = camera.project(points) if len(points) else (np.zeros((0, 2)), np.zeros(0))
        seen = z[camera.in_image(uv, z)] if len(points) else z
        if len(seen) >= MIN_POINTS_FOR_RANGE:
            near, far = np.percentile(seen, [1, 99])
            margin = DEPTH_MARGIN * (far - near) + 0.01 * near
            near, far = max(near - margin, 0.05 * near), far + margin
        else:
            distance = float(np.linalg.norm(camera.center - centre))
            near, far = 0.5 * distance, 1.5 * distance
        ranges.append((float(near), float(far)))
    return ranges
