"""Procedural objects and the occupancy data set made from them: determinism, watertight parts, shard round trip."""

import json

import numpy as np
import pytest

from reconstruction.engine.errors import InvalidInput
from reconstruction.engine.generative.frame import frame_for, mesh_occupancy
from reconstruction.engine.generative.procedural import KINDS, generate_object, kind_names, kind_of, painted_mesh
from reconstruction.engine.generative.shards import dataset_digest


def test_the_same_seed_and_index_give_the_same_object_and_others_differ():
    first, again = generate_object(4, 2), generate_object(4, 2)
    assert first.kind == again.kind
    np.testing.assert_array_equal(first.mesh.vertices, again.mesh.vertices)
    np.testing.assert_array_equal(first.mesh.faces, again.mesh.faces)
    points, normals = first.mesh.vertices[:50], first.mesh.vertex_normals[:50]
    local = first.to_builder_units(points)
    for paint, paint_again in zip(first.paints, again.paints, strict=True):
        np.testing.assert_array_equal(paint(local, normals), paint_again(local, normals))
    other = generate_object(5, 2, kind=first.kind)
    assert len(other.mesh.vertices) != len(first.mesh.vertices) or not np.allclose(
        other.mesh.vertices, first.mesh.vertices
    )


def test_the_stream_mixes_kinds_with_shoes_the_most_common():
    kinds = [kind_of(0, index) for index in range(300)]
    assert kinds[:5] == [generate_object(0, index).kind for index in range(5)]
    assert set(kinds) == set(kind_names())
    assert max(set(kinds), key=kinds.count) == "shoe"


@pytest.mark.parametrize("kind", kind_names())
def test_every_kind_is_made_of_watertight_non_degenerate_parts_centred_at_a_plausible_size(kind):
    low, high = KINDS[kind][2]
    for index in range(4):
        obj = generate_object(11, index, kind=kind)
        assert obj.kind == kind
        for part in obj.parts:
            assert part.is_watertight and part.is_winding_consistent
            assert part.volume > 1e-9
            assert part.area_faces.min() > 1e-12  # no degenerate triangles
        lower, upper = obj.mesh.bounds
        np.testing.assert_allclose((lower + upper) / 2, 0.0, atol=1e-9)
        assert low - 1e-9 <= (upper - lower).max() <= high + 1e-9
        assert (upper - lower).min() > 0.05 * (upper - lower).max()  # not a sliver


def test_painted_mesh_covers_every_part_with_colours_in_range():
    obj = generate_object(3, 0, kind="shoe")
    painted = painted_mesh(obj)
    assert painted.albedo.shape == painted.mesh.vertices.shape
    assert 0.0 <= painted.albedo.min() and painted.albedo.max() <= 1.0
    np.testing.assert_allclose(painted.mesh.bounds, obj.mesh.bounds, atol=1e-9)
    lit = painted.lit(np.array([0.0, 0.6, 0.8]), np.random.default_rng(0))
    assert lit.visual.vertex_colors.shape == (len(painted.mesh.vertices), 4)


def test_assembly_occupancy_is_the_union_of_its_parts():
    from reconstruction.engine.cameras import camera_looking_at, intrinsics

    obj = generate_object(2, 1, kind="chair")
    camera = camera_looking_at("v", 96, 96, intrinsics(90, 90, 48, 48), (1.2, 1.0, 1.6), (0, 0, 0))
    frame = frame_for(camera, np.ones((96, 96), bool), resolution=16, depth_bins=16)
    union = np.zeros(frame.shape, bool)
    for part in obj.parts:
        union |= mesh_occupancy(frame, part)
    np.testing.assert_array_equal(mesh_occupancy(frame, obj.mesh), union)
    assert union.any()


@pytest.mark.slow
def test_a_tiny_data_set_round_trips_through_load_dataset(tmp_path):
    from reconstruction.engine.generative.dataset import build_dataset, load_dataset, sample_plan

    manifest = build_dataset(tmp_path / "a", count=3, seed=9, resolution=16, depth_bins=8, shard_size=2, workers=1)
    data = load_dataset(tmp_path / "a")
    assert len(data) == 3 and data.images.shape == (3, 16, 16, 3) and data.masks.shape == (3, 16, 16)
    assert data.occupancy.shape == (3, 8, 16, 16) and data.occupancy_batch([0, 2]).dtype == bool
    assert [len(data.frames), data.frames[0].resolution, data.frames[0].depth_bins] == [3, 16, 8]
    assert manifest["digest"] == dataset_digest([shard["sha256"] for shard in manifest["shards"]])
    assert json.loads((tmp_path / "a" / "dataset.json").read_text())["count"] == 3
    assert list(data.kinds) == [kind_of(9, index) for index, _ in sample_plan(9, 3)]
    # Columns of solid project inside the silhouette, and the silhouette's core has solid behind it.
    volumes = data.occupancy_batch(np.arange(3))
    solid_columns = volumes.any(axis=1)
    assert solid_columns.any()
    assert (data.masks[solid_columns] > 0).mean() > 0.97
    assert solid_columns[data.masks > 240].mean() > 0.95
    (tmp_path / "a" / "dataset.json").unlink()  # as if interrupted before the end: the shards are reused
    resumed = build_dataset(tmp_path / "a", count=3, seed=9, resolution=16, depth_bins=8, shard_size=2, workers=1)
    assert resumed["digest"] == manifest["digest"] and resumed["timing"]["seconds_per_sample_cpu"] == 0.0
    again = build_dataset(tmp_path / "b", count=3, seed=9, resolution=16, depth_bins=8, shard_size=3, workers=1)
    np.testing.assert_array_equal(load_dataset(tmp_path / "b").images, data.images)
    assert again["digest"] != manifest["digest"]  # other shard boundaries, the same samples


def test_load_dataset_refuses_a_folder_without_a_manifest_or_with_a_changed_shard(tmp_path):
    with pytest.raises(InvalidInput, match="No readable dataset.json"):
        from reconstruction.engine.generative.dataset import load_dataset

        load_dataset(tmp_path)
    (tmp_path / "dataset.json").write_text(
        json.dumps(
            {"format": "assay-occupancy-shards", "resolution": 8, "shards": [{"name": "shard-0000.npz", "sha256": "0"}]}
        )
    )
    with pytest.raises(InvalidInput, match="Shard shard-0000.npz is missing or does not match its sha256"):
        load_dataset(tmp_path)
