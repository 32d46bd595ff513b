"""Cleanup, decimation, unwrapping, texel density and baking on tiny meshes built in code."""
import numpy as np
import pytest
import trimesh

from reconstruction.engine.postprocess import bake, cleanup, decimate, measure, retopology, surface, texels, uv
from reconstruction.engine.postprocess.errors import BadInput
from reconstruction.engine.postprocess.load import load_asset

from .meshes import SHARED_GLTF, SPOT, asset_from, sphere, two_colour_plane


def _broken_sphere():
    """An icosphere (320 faces) with every fault cleanup repairs, one of each."""
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.5)
    faces = mesh.faces.copy()
    faces[10] = faces[10][::-1]  # one face wound the wrong way
    faces = np.delete(faces, 20, axis=0)  # a three-edge hole
    faces = np.vstack([faces, faces[5], [0, 0, 1]])  # a duplicate face and a degenerate one
    # Split every vertex per face corner (as an exporter without index sharing writes them).
    positions = mesh.vertices[faces].reshape(-1, 3)
    faces = np.arange(len(positions)).reshape(-1, 3)
    # A tiny tetrahedron floating 2 m away.
    tetra = trimesh.creation.icosphere(subdivisions=0, radius=0.001)
    floater_faces = tetra.faces + len(positions)
    positions = np.vstack([positions, tetra.vertices + [2.0, 0.0, 0.0]])
    faces = np.vstack([faces, floater_faces])
    return asset_from(trimesh.Trimesh(positions, faces, process=False))


def test_cleanup_repairs_and_reports_each_fault():
    broken = _broken_sphere()
    fixed, report = cleanup.cleanup(broken)
    assert report["merged_vertices"] == broken.vertex_count - 162 - 12
    assert report["degenerate_faces_removed"] == 1
    assert report["duplicate_faces_removed"] == 1
    assert report["floaters_removed"] == {"components": 1, "faces": 20}
    assert report["faces_flipped"] == 1
    assert report["holes_filled"] == {"holes": 1, "faces_added": 1}
    assert report["non_manifold_edges"] == 0 and report["open_border_loops"] == 0
    result = trimesh.Trimesh(fixed.positions, fixed.faces, process=False)
    assert fixed.triangle_count == 320
    assert result.is_watertight and result.is_winding_consistent
    assert result.volume > 0  # outward
    assert fixed.normals is not None and np.allclose(np.linalg.norm(fixed.normals, axis=1), 1.0)


def test_cleanup_leaves_a_clean_mesh_alone():
    clean, report = cleanup.cleanup(sphere(2))
    assert report["merged_vertices"] == 0 and report["faces_flipped"] == 0
    assert report["holes_filled"] == {"holes": 0, "faces_added": 0}
    assert clean.triangle_count == 320


def test_cleanup_turns_an_inside_out_mesh_outward():
    inside_out = sphere(2)
    inside_out = inside_out.replace(faces=inside_out.faces[:, ::-1].copy())
    fixed, report = cleanup.cleanup(inside_out)
    assert report["faces_flipped"] == 320
    assert trimesh.Trimesh(fixed.positions, fixed.faces, process=False).volume > 0


def test_cleanup_refuses_a_mesh_of_only_degenerate_faces():
    flat = asset_from(trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0, 1, 2]], process=False))
    with pytest.raises(BadInput, match="^mesh is empty after removing degenerate faces: every triangle has zero area$"):
        cleanup.cleanup(flat)


def test_decimation_meets_the_budget_with_bounded_error():
    source = sphere(4)  # 5,120 triangles
    low, report = decimate.decimate(source, 500)
    assert low.triangle_count <= 500 and report["budget_met"]
    assert low.triangle_count >= 450  # the budget is used, not undershot by far
    distance = measure.surface_distance(source.positions, source.faces, low.positions, low.faces, samples=20_000)
    assert distance["hausdorff"] < 0.01 * source.diagonal
    # meshoptimizer's error estimate is of the same order as the measured deviation.
    assert report["error_m"] / 3 <= distance["hausdorff"] <= report["error_m"] * 3


def test_decimation_stops_at_the_error_bound():
    source = sphere(4)
    low, report = decimate.decimate(source, 100, decimate.DecimateOptions(max_error_m=0.001))
    assert low.triangle_count > 100 and not report["budget_met"]
    distance = measure.surface_distance(source.positions, source.faces, low.positions, low.faces, samples=20_000)
    assert distance["hausdorff"] <= 0.0015


def test_decimation_keeps_uvs_and_budget_on_a_textured_scan():
    spot, _ = load_asset(SPOT)
    low, report = decimate.decimate(spot, 1000)
    assert low.triangle_count <= 1000
    assert low.uvs is not None and len(low.uvs) == low.vertex_count
    assert uv.uv_problems(low) == []


def test_decimation_leaves_no_faces_collapsed_onto_seams():
    # SheenChair's parts are split along UV seams; collapses along them can leave slivers and twin faces.
    chair, _ = cleanup.cleanup(load_asset(SHARED_GLTF / "SheenChair.glb")[0])
    low, report = decimate.decimate(chair, 3999)
    welded, _ = surface.weld(low.positions)
    corners = np.sort(welded[low.faces], axis=1)
    assert report["collapsed_faces_dropped"] > 0 and low.triangle_count <= 3999
    assert len(np.unique(corners, axis=0)) == low.triangle_count
    assert ((corners[:, 0] != corners[:, 1]) & (corners[:, 1] != corners[:, 2])).all()


def test_decimation_refuses_an_empty_budget():
    with pytest.raises(BadInput, match="^triangle budget must be at least 1, got 0$"):
        decimate.decimate(sphere(1), 0)


def test_retopology_evens_out_triangles_near_the_budget():
    source = sphere(3)  # 1,280 triangles
    remeshed, report = retopology.remesh(source, 600)
    assert 400 <= remeshed.triangle_count <= 800
    assert report["attributes_dropped"] == []
    distance = measure.surface_distance(source.positions, source.faces, remeshed.positions, remeshed.faces, samples=10_000)
    assert distance["hausdorff"] < 0.02 * source.diagonal


def test_unwrap_gives_usable_non_overlapping_uvs():
    source = sphere(2)
    assert uv.uv_problems(source) == ["the mesh has no UVs"]
    unwrapped, report = uv.unwrap(source, uv.UnwrapOptions(texture_size=256))
    assert uv.uv_problems(unwrapped) == []
    assert unwrapped.triangle_count == source.triangle_count
    assert ((unwrapped.uvs >= 0) & (unwrapped.uvs <= 1)).all()
    assert report["charts"] >= 1 and report["atlases"] == 1
    # Charts do not overlap: the summed UV area fits in the square and matches the texels they cover.
    area = np.abs(surface.uv_areas(unwrapped.uvs, unwrapped.faces)).sum()
    covered = len(texels.rasterize(unwrapped.uvs, unwrapped.faces, 256, 256))
    assert area < 1.0
    assert covered == pytest.approx(area * 256**2, rel=0.05)


def test_broken_uvs_are_recognised():
    source = sphere(1)
    assert uv.uv_problems(source.replace(uvs=np.zeros((source.vertex_count, 2)))) == [
        "every triangle has zero area in UV space"
    ]
    nan = np.full((source.vertex_count, 2), np.nan)
    assert uv.uv_problems(source.replace(uvs=nan)) == ["UVs contain NaN or infinite values"]


def test_texel_density_of_a_unit_square():
    plane = two_colour_plane()
    density = uv.texel_density(plane, 1024)
    assert density["texels_per_m"] == pytest.approx(1024)
    assert density["texels_per_m_median"] == pytest.approx(1024)
    assert density["uv_coverage"] == pytest.approx(1.0)
    # Halving the UV scale halves the density.
    half = uv.texel_density(plane.replace(uvs=plane.uvs * 0.5), 1024)
    assert half["texels_per_m"] == pytest.approx(512)


def test_bake_transfers_colour_normal_and_occlusion_with_padding():
    source = two_colour_plane()
    target, _ = uv.unwrap(source.replace(uvs=None, materials=(source.materials[0].replace(textures={}),)),
                          uv.UnwrapOptions(texture_size=64))
    baked, report = bake.bake(source, target, bake.BakeOptions(size=64, ao_rays=8))
    assert report["texels_missed"] == 0 and report["coverage"] > 0.3
    assert set(report["maps"]) == {"base_color", "normal", "occlusion", "metallic_roughness"}
    material = baked.materials[0]
    colour = np.asarray(material.textures["base_color"].image)
    # The colour at each target face centre matches the source texture at the same place.
    centres = baked.positions[baked.faces].mean(axis=1)
    centre_uv = baked.uvs[baked.faces].mean(axis=1)
    sampled = texels.sample_bilinear(colour.astype(float), centre_uv, repeat=False)
    away_from_border = np.abs(centres[:, 0]) > 0.1
    red = (centres[:, 0] < 0) & away_from_border
    blue = (centres[:, 0] > 0) & away_from_border
    assert (sampled[red, 0] > 200).all() and (sampled[red, 2] < 50).all()
    assert (sampled[blue, 2] > 200).all() and (sampled[blue, 0] < 50).all()
    # Flat surface: tangent-space normal points straight out; nothing occludes it; roughness carried.
    normal = np.asarray(material.textures["normal"].image).reshape(-1, 3).astype(int)
    assert np.abs(normal - [128, 128, 255]).max() <= 2
    orm = np.asarray(material.textures["occlusion"].image).reshape(-1, 3)
    assert (orm[:, 0] == 255).all() and (np.abs(orm[:, 1].astype(int) - 128) <= 1).all() and (orm[:, 2] == 0).all()
    # Padding: no texel is left black between charts (texels on the red/blue line are purple).
    assert (colour.reshape(-1, 3).max(axis=1) >= 120).all()


def test_bake_darkens_occluded_texels():
    box = trimesh.creation.box(extents=(1, 1, 1))
    source = asset_from(box)
    target, _ = uv.unwrap(source, uv.UnwrapOptions(texture_size=64))
    baked, _ = bake.bake(source, target, bake.BakeOptions(size=64, ao_rays=16, ao_distance=1.0))
    orm = np.asarray(baked.materials[0].textures["occlusion"].image)[..., 0]
    # The outside of a convex box is never occluded; its inside (an inside-out box) is, a lot.
    assert orm.min() >= 250
    inside_out = source.replace(faces=source.faces[:, ::-1].copy())
    inner, _ = uv.unwrap(inside_out, uv.UnwrapOptions(texture_size=64))
    baked_inside, _ = bake.bake(inside_out, inner, bake.BakeOptions(size=64, ao_rays=16, ao_distance=1.0))
    assert np.asarray(baked_inside.materials[0].textures["occlusion"].image)[..., 0].mean() < 128


def test_bake_needs_uvs_on_the_target():
    with pytest.raises(BadInput, match=r"^cannot bake onto 'sphere': the mesh has no UVs; unwrap it first$"):
        bake.bake(sphere(1), sphere(1))
