"""UV unwrapping with xatlas when a mesh has no usable UVs, and the texel-density report for any UVs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reconstruction.engine.uv_atlas import AtlasFailed, chart_atlas

from . import surface
from .asset import Asset
from .errors import PostprocessError


@dataclass(frozen=True)
class UnwrapOptions:
    texture_size: int = 2048
    # Gap between charts in texels, so bilinear filtering and mip levels do not bleed across charts.
    padding_px: int = 4


def uv_problems(asset: Asset) -> list[str]:
    """Why the asset's UVs cannot carry a texture; empty when they can."""
    if asset.uvs is None:
        return ["the mesh has no UVs"]
    if not np.isfinite(asset.uvs).all():
        return ["UVs contain NaN or infinite values"]
    uv_area = np.abs(surface.uv_areas(asset.uvs, asset.faces))
    _, area = surface.face_normals_and_areas(asset.positions, asset.faces)
    collapsed = (uv_area <= 1e-12) & (area > 0)
    problems = []
    if uv_area.sum() <= 1e-12:
        problems.append("every triangle has zero area in UV space")
    elif collapsed.mean() > 0.05:
        problems.append(f"{collapsed.mean():.0%} of triangles have zero area in UV space")
    return problems


def texel_density(asset: Asset, texture_size: int) -> dict[str, float | int | None]:
    """Texels per metre of surface for a square texture of `texture_size`, overall and across triangles."""
    if asset.uvs is None:
        return {}
    uv_area = np.abs(surface.uv_areas(asset.uvs, asset.faces))
    _, area = surface.face_normals_and_areas(asset.positions, asset.faces)
    valid = area > 0
    per_face = np.sqrt(uv_area[valid] * texture_size**2 / area[valid])
    weights = area[valid] / area[valid].sum()
    order = np.argsort(per_face)
    cumulative = np.cumsum(weights[order])

    def percentile(share: float) -> float:
        return float(per_face[order][min(np.searchsorted(cumulative, share), len(order) - 1)])

    inside_unit_square = bool(((asset.uvs >= 0.0) & (asset.uvs <= 1.0)).all())
    return {
        "texture_size": int(texture_size),
        "texels_per_m": float(np.sqrt(uv_area.sum() * texture_size**2 / max(area.sum(), 1e-30))),
        "texels_per_m_p05": percentile(0.05),
        "texels_per_m_median": percentile(0.5),
        "texels_per_m_p95": percentile(0.95),
        # Share of the texture covered by triangles (overlaps counted twice); None when UVs tile past 0–1.
        "uv_coverage": float(min(uv_area.sum(), 1.0)) if inside_unit_square else None,
    }


def unwrap(asset: Asset, options: UnwrapOptions = UnwrapOptions()) -> tuple[Asset, dict[str, object]]:
    """New UVs from xatlas: vertices are split along chart seams; charts packed into one square atlas."""
    normals = (
        asset.normals if asset.normals is not None else surface.smooth_vertex_normals(asset.positions, asset.faces)
    )
    try:
        atlas = chart_atlas(
            asset.positions, asset.faces, normals, texture_size=options.texture_size, padding_px=options.padding_px
        )
    except AtlasFailed as exc:
        raise PostprocessError(f"UV unwrapping failed: {exc}.") from exc
    unwrapped = asset.with_geometry(
        asset.positions[atlas.vertex_source], atlas.faces, atlas.vertex_source, asset.face_materials
    )
    unwrapped = unwrapped.replace(uvs=atlas.uvs, normals=normals[atlas.vertex_source])
    report = {
        "charts": atlas.charts,
        "atlases": atlas.atlases,
        "utilization": atlas.utilization,
        "vertices_before": asset.vertex_count,
        "vertices_after": unwrapped.vertex_count,
        "texel_density": texel_density(unwrapped, options.texture_size),
    }
    return unwrapped, report
