"""Retopology: isotropic remeshing (MeshLab's explicit remesher) to an even triangle size near a budget.

Scans come with long slivers and uneven density; even triangles decimate, unwrap and bake better. Edges
sharper than `feature_angle` are kept as creases. Remeshing replaces the vertices, so UVs and colours are
dropped here and recovered by baking from the source.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymeshlab

from . import surface
from .asset import Asset, Material


@dataclass(frozen=True)
class RetopologyOptions:
    feature_angle_deg: float = 30.0
    iterations: int = 5
    # Remeshed triangles may sit at most this share of the edge length off the original surface.
    max_surface_distance: float = 0.5


def edge_length_for(asset: Asset, target_triangles: int) -> float:
    """Edge length of equilateral triangles that tile the asset's area with `target_triangles` of them."""
    _, areas = surface.face_normals_and_areas(asset.positions, asset.faces)
    return float(np.sqrt(4.0 * areas.sum() / (np.sqrt(3.0) * max(int(target_triangles), 1))))


def remesh(asset: Asset, target_triangles: int, options: RetopologyOptions = RetopologyOptions()) -> tuple[Asset, dict[str, object]]:
    """Isotropic remesh with about `target_triangles` triangles (within ~30%: the remesher works by edge length)."""
    length = edge_length_for(asset, target_triangles)
    meshes = pymeshlab.MeshSet()
    meshes.add_mesh(pymeshlab.Mesh(asset.positions, asset.faces.astype(np.int32)))
    meshes.meshing_isotropic_explicit_remeshing(
        iterations=options.iterations,
        targetlen=pymeshlab.PureValue(length),
        featuredeg=options.feature_angle_deg,
        checksurfdist=True,
        maxsurfdist=pymeshlab.PureValue(length * options.max_surface_distance),
    )
    result = meshes.current_mesh()
    positions = result.vertex_matrix().astype(np.float64)
    faces = result.face_matrix().astype(np.int64)
    remeshed = Asset(
        positions=positions,
        faces=faces,
        materials=(Material(name=f"{asset.name}_baked"),),
        face_materials=np.zeros(len(faces), dtype=np.int32),
        normals=surface.smooth_vertex_normals(positions, faces),
        name=asset.name,
    )
    return remeshed, {
        "input_triangles": asset.triangle_count,
        "target_triangles": int(target_triangles),
        "target_edge_length_m": length,
        "output_triangles": remeshed.triangle_count,
        "feature_angle_deg": options.feature_angle_deg,
        "attributes_dropped": [name for name in ("uvs", "colors") if getattr(asset, name) is not None],
    }
