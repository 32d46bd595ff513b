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

from reconstruction.engine.cameras import Camera
from reconstruction.engine.carving import axes_convergence
from reconstruction.engine.devices import resolve_device
from reconstruction.engine.params import json_schema, validate
from reconstruction.engine.protocol import MULTI_VIEW, CancelFn, Capabilities, ProgressFn, ReconstructionResult
from reconstruction.engine.resources import measure
from reconstruction.engine.texturing import bake, write_glb

from .calibration import calibrate, check, staged
from .config import PhotogrammetryParams
from .fusion import barely_confirmed, fuse, split_by_confirmation, with_normals
from .meshing import poisson_mesh
from .mvs import MIN_POINTS_FOR_RANGE, DepthMap, StereoImage, depth_ranges, estimate_depth, select_neighbours
from .silhouettes import hull_fill
from .views import MIN_VIEWS

# Shares of the whole run given to each stage, for progress reports.
_STAGES = {"sfm": (0.0, 0.15), "refine": (0.15, 0.2), "mvs": (0.2, 0.75), "fusion": (0.75, 0.8), "meshing": (0.8, 0.88), "texture": (0.88, 1.0)}


class PhotogrammetryBackend:
    """Photos (with or without cameras) → textured mesh, accurate to about a pixel when the photos allow it."""

    name = "photogrammetry"
    version = "1.7.0"
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
        calibration = calibrate(capture, workdir, config, device, cancel, staged(progress, _STAGES))
        views, points, sparse_dir, metrics = calibration.views, calibration.points, calibration.sparse_dir, calibration.metrics
        log.extend(calibration.log)
        timings["calibration"] = time.perf_counter() - started
        stereo_views = [view.resized(config.mvs_max_image_size) for view in views]
        cams: list[Camera] = [v.camera for v in stereo_views]  # type: ignore[misc]
        centre = np.median(points, axis=0) if len(points) else axes_convergence(cams)
        neighbours = select_neighbours(cams, centre, config.neighbours)
        stereo = [StereoImage.build(v.name, v.image, v.mask, v.camera, device) for v in stereo_views]  # type: ignore[arg-type]

        started = time.perf_counter()
        depths = []
        start, end = _STAGES["mvs"]
        for index, (view, near_far) in enumerate(zip(stereo, depth_ranges(cams, points, centre), strict=True)):
            check(cancel, "during multi-view stereo")
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
                        plane_iterations=config.plane_iterations,
                    )
                )
            progress("mvs", start + (end - start) * (index + 1) / len(stereo), f"depth map {index + 1} of {len(stereo)} ({view.name})")
        timings["mvs"] = time.perf_counter() - started
        metrics["depth_valid_share"] = round(float(np.mean([(d.depth > 0).float().mean().item() for d in depths])), 4)

        started = time.perf_counter()
        check(cancel, "before fusion")
        silhouettes = [(v.camera, v.mask) for v in stereo_views if v.mask is not None and v.camera is not None]
        hull_filled = config.silhouette_fill and bool(silhouettes) and len(silhouettes) == len(stereo_views)
        # With the hull to judge them, points one neighbour confirms are kept aside for the pockets (hull_fill).
        cloud = fuse(
            stereo, [v.image for v in stereo_views], depths, neighbours,
            max_pixels=config.consistency_pixels, max_relative_depth=config.consistency_depth,
            min_views=1 if hull_filled else config.min_consistent_views, estimate_normals=not hull_filled,
        )
        del depths
        weak = None
        if hull_filled:  # normals from each part's own points, so the weak ones do not blur the confirmed ones'
            confirmed, unconfirmed = split_by_confirmation(cloud, neighbours, config.min_consistent_views)
            cloud, weak = with_normals(confirmed, stereo), with_normals(unconfirmed, stereo)
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
        check(cancel, "before meshing")
        if hull_filled:
            soft = [(v.camera, v.silhouette) for v in stereo_views]
            barely = barely_confirmed(cloud, neighbours, config.min_consistent_views)
            cloud, added = hull_fill(cloud, soft, _object_bounds(cloud.points, points), weak, barely)  # type: ignore[arg-type]
            metrics["silhouette_fill_points"] = added["hull"]
            metrics["pocket_points"] = added["pocket"]
            metrics["stereo_points_yielded_to_hull"] = added["yielded"]
        mesh, mesh_report = poisson_mesh(
            cloud, depth=config.poisson_depth, density_trim_quantile=config.density_trim_quantile,
            min_component_share=config.min_component_share, max_triangles=config.max_triangles, silhouettes=silhouettes or None,
            trim_unsupported=not hull_filled,
        )
        metrics["mesh"] = mesh_report
        timings["meshing"] = time.perf_counter() - started
        progress("meshing", _STAGES["meshing"][1], f"{len(mesh.faces)} triangles")

        started = time.perf_counter()
        check(cancel, "before texturing")
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


def _object_bounds(dense: np.ndarray, sparse: np.ndarray) -> np.ndarray:
    """A box around the object: the robust extent of the stereo points (and of the sparse or declared ones), grown 15%."""
    sources = [p for p in (dense, sparse) if len(p) >= MIN_POINTS_FOR_RANGE]
    low = np.min([np.percentile(p, 0.5, axis=0) for p in sources], axis=0)
    high = np.max([np.percentile(p, 99.5, axis=0) for p in sources], axis=0)
    margin = 0.15 * (high - low)
    return np.stack([low - margin, high + margin])
