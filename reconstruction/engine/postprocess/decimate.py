"""Decimation to a triangle budget by quadric edge collapse (meshoptimizer, the simplifier inside gltfpack).

UV seams and open borders survive: vertices split at a seam are only collapsed along the seam, and border
vertices only along the border, so textures stay mapped and outlines keep their shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import meshopt, surface
from .asset import Asset
from .errors import BadInput


@dataclass(frozen=True)
class DecimateOptions:
    # Upper bound on the geometric deviation in metres; None lets the budget alone decide.
    max_error_m: float | None = None
    # Weights of UVs and normals against position error: higher keeps texture and shading detail.
    uv_weight: float = 1.0
    normal_weight: float = 0.5
    # Border vertices never move (for parts that must meet another mesh exactly).
    lock_border: bool = False


def decimate(asset: Asset, target_triangles: int, options: DecimateOptions = DecimateOptions()) -> tuple[Asset, dict[str, object]]:
    """At most `target_triangles` triangles (fewer if the error bound is reached first)."""
    if target_triangles < 1:
        raise BadInput(f"triangle budget must be at least 1, got {target_triangles}")
    before = asset.triangle_count
    report: dict[str, object] = {"input_triangles": before, "target_triangles": int(target_triangles)}
    if target_triangles >= before:
        return asset, {**report, "output_triangles": before, "error_m": 0.0, "budget_met": True, "skipped": True}
    scale = meshopt.simplify_scale(asset.positions)
    target_error = 1.0 if options.max_error_m is None else options.max_error_m / max(scale, 1e-30)
    attributes, weights = _attributes(asset, options)
    faces, relative_error = meshopt.simplify(
        asset.positions, asset.faces, int(target_triangles), target_error,
        options=meshopt.LOCK_BORDER if options.lock_border else 0, attributes=attributes, weights=weights,
    )
    faces, dropped = _without_collapsed_faces(asset.positions, faces)
    faces, face_materials = _material_of_kept(asset, faces)
    used, remapped = np.unique(faces, return_inverse=True)
    simplified = asset.with_geometry(asset.positions[used], remapped.reshape(-1, 3), used, face_materials)
    error_m = relative_error * scale
    return simplified, {
        **report,
        "output_triangles": simplified.triangle_count,
        "ratio": round(simplified.triangle_count / before, 6),
        "error_m": error_m,
        "error_share_of_diagonal": error_m / max(asset.diagonal, 1e-30),
        "budget_met": simplified.triangle_count <= target_triangles,
        "collapsed_faces_dropped": dropped,
        "skipped": False,
    }


def _without_collapsed_faces(positions: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, int]:
    """Drop faces that collapsed onto a seam: zero area, or the same corners as another face.

    Split seam vertices share a position, so the simplifier can leave a sliver whose corners coincide, or two
    faces over the same three points; importers (Blender's among them) delete those, and counts would differ.
    """
    welded, _ = surface.weld(positions)
    corners = welded[faces]
    _, area = surface.face_normals_and_areas(positions, faces)
    extent = float(np.ptp(positions, axis=0).max()) if len(positions) else 0.0
    keep = (corners[:, 0] != corners[:, 1]) & (corners[:, 1] != corners[:, 2]) & (corners[:, 0] != corners[:, 2])
    keep &= area > (extent * 1e-9) ** 2
    first, _ = surface.unique_rows(np.sort(corners, axis=1))
    unique = np.zeros(len(faces), dtype=bool)
    unique[first] = True
    keep &= unique
    return faces[keep], int((~keep).sum())


def _attributes(asset: Asset, options: DecimateOptions) -> tuple[np.ndarray | None, np.ndarray | None]:
    columns, weights = [], []
    if asset.uvs is not None and options.uv_weight > 0:
        columns.append(asset.uvs)
        weights += [options.uv_weight] * 2
    if asset.normals is not None and options.normal_weight > 0:
        columns.append(asset.normals)
        weights += [options.normal_weight] * 3
    if not columns:
        return None, None
    return np.hstack(columns), np.array(weights, dtype=np.float32)


def _material_of_kept(asset: Asset, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # The simplifier keeps vertices but rebuilds faces; a face's material is that of its corners' faces.
    # Material boundaries are seams (vertices are never shared across materials), so the first corner decides.
    owner = np.zeros(asset.vertex_count, dtype=np.int32)
    owner[asset.faces.reshape(-1)] = np.repeat(asset.face_materials, 3)
    return faces, owner[faces[:, 0]]
