"""The `diffusion` backend end to end with the shipped checkpoint, and its refusals."""

import shutil

import numpy as np
import pytest
import trimesh
from PIL import Image

from reconstruction.engine.backends.diffusion import DiffusionBackend
from reconstruction.engine.backends.diffusion.backend import MODEL_NAME
from reconstruction.engine.capture import Capture
from reconstruction.engine.errors import CheckpointRejected, InvalidInput
from reconstruction.engine.metrics import load_mesh
from reconstruction.engine.model_registry import find_model, model_dir
from reconstruction.engine.registry import available_backends

FAST = {"samples": 2, "steps": 8, "mesh_resolution": 48}


def _run(capture_dir, workdir, params=FAST):
    return DiffusionBackend().run(
        Capture.load(capture_dir), workdir, params=params, progress=lambda *_: None, cancel=lambda: False
    )


@pytest.fixture(scope="module")
def vase_capture(tmp_path_factory):
    """One rendered front-ish view (render --single) of a small red vase-like solid of revolution."""
    from reconstruction.engine.render import render_capture

    profile = [(0.0, -0.1), (0.05, -0.1), (0.07, -0.02), (0.04, 0.06), (0.03, 0.1), (0.0, 0.1)]
    vase = trimesh.creation.revolve(np.array(profile), sections=48)
    vase.visual = trimesh.visual.ColorVisuals(vase, vertex_colors=np.tile([200, 40, 40, 255], (len(vase.vertices), 1)))
    folder = tmp_path_factory.mktemp("diffusion")
    vase.export(folder / "vase.glb")
    return render_capture(folder / "vase.glb", folder / "capture", single=True, size=160), vase


def test_the_backend_is_registered_for_single_images():
    backend = available_backends()["diffusion"]

    assert backend.capabilities.min_views == backend.capabilities.max_views == 1
    assert backend.capabilities.inputs == frozenset({"single_image"})


@pytest.mark.slow
def test_a_rendered_single_view_comes_back_as_a_coloured_mesh_in_the_capture_frame(vase_capture, tmp_path):
    capture_dir, vase = vase_capture

    result = _run(capture_dir, tmp_path / "out")

    mesh = load_mesh(result.mesh_path)
    card = find_model(MODEL_NAME)
    assert result.metrics["model_checkpoints"] == [
        {"name": card.reference, "sha256": card.sha256, "uri": f"assay:model/{card.reference}"}
    ]
    assert 0.0 <= result.metrics["confidence"] <= 1.0
    assert result.metrics["silhouette_iou"] > 0.8
    assert len(result.metrics["sample_scores"]) == 2
    assert result.metrics["frame"] == "capture"
    # Same world frame as the object: centres close, sizes comparable.
    diagonal = np.linalg.norm(vase.extents)
    assert np.linalg.norm(mesh.bounds.mean(axis=0) - vase.bounds.mean(axis=0)) < 0.2 * diagonal
    assert 0.6 < np.linalg.norm(mesh.extents) / diagonal < 1.4
    colours = trimesh.load(result.mesh_path, force="mesh").visual.vertex_colors[:, :3].astype(float)
    assert colours[:, 0].mean() > colours[:, 2].mean() + 60  # red from the photo


@pytest.mark.slow
def test_a_plain_photo_without_mask_or_camera_comes_back_in_the_normalised_frame(vase_capture, tmp_path):
    capture_dir, _ = vase_capture
    photo_dir = tmp_path / "photo"
    photo_dir.mkdir()
    shutil.copy(capture_dir / "images" / "view_000.png", photo_dir / "photo.png")

    result = _run(photo_dir, tmp_path / "out")

    mesh = load_mesh(result.mesh_path)
    assert result.metrics["frame"] == "normalised" and result.metrics["mask_source"] == "matting"
    assert np.abs(mesh.bounds.mean(axis=0)).max() < 0.15  # object centre at the origin, unit camera distance
    assert 0.1 < np.linalg.norm(mesh.extents) < 1.0


def test_a_photo_with_two_objects_is_refused(tmp_path):
    image = np.full((128, 128, 3), 240, dtype=np.uint8)
    image[20:60, 20:60] = (30, 60, 160)
    image[70:110, 70:110] = (30, 60, 160)
    Image.fromarray(image).save(tmp_path / "two.png")

    with pytest.raises(InvalidInput, match="Several objects found"):
        _run(tmp_path, tmp_path / "out")


def test_a_tampered_checkpoint_is_refused(vase_capture, tmp_path, monkeypatch):
    copy = tmp_path / "weights"
    shutil.copytree(model_dir(), copy)
    monkeypatch.setenv("ASSAY_MODEL_DIR", str(copy))
    checkpoint = copy / find_model(MODEL_NAME).file
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))

    with pytest.raises(CheckpointRejected, match="does not match its model card"):
        _run(vase_capture[0], tmp_path / "out")


def test_smoothing_turns_the_terraces_of_the_depth_bins_into_a_slope():
    from reconstruction.engine.backends.diffusion.backend import _refine
    from reconstruction.engine.cameras import camera_looking_at, intrinsics
    from reconstruction.engine.generative.evaluation import at_resolution
    from reconstruction.engine.generative.frame import frame_for
    from reconstruction.engine.metrics import normal_consistency, sample_surface

    camera = camera_looking_at("v", 128, 128, intrinsics(150, 150, 64, 64), (0.0, 0.0, 2.0), (0.0, 0.0, 0.0))
    mask = np.ones((128, 128), bool)
    coarse = frame_for(camera, mask, resolution=16, depth_bins=16)

    def slab(frame):  # solid from the front bins back to a plane sloping across the columns
        depth, rows, cols = np.indices(frame.shape, dtype=np.float32) + 0.5
        return (depth / frame.depth_bins < 0.3 + 0.4 * cols / frame.resolution).astype(np.float32)

    truth = at_resolution(coarse, 64, 64)
    reference = truth.to_world_mesh(slab(truth))
    consistency = {}
    for smoothing in (0.0, 1.0):
        fine, volume = _refine(coarse, slab(coarse), np.ones((128, 128), np.float32), 64, smoothing)
        mesh = fine.to_world_mesh(volume)
        consistency[smoothing] = normal_consistency(*sample_surface(mesh, 4000), *sample_surface(reference, 4000, 1))
    assert consistency[1.0] > consistency[0.0] + 0.02


def test_parts_of_the_silhouette_the_volume_missed_get_a_solid_as_deep_as_they_are_wide():
    from reconstruction.engine.backends.diffusion.backend import _fill_silhouette_gaps
    from reconstruction.engine.cameras import camera_looking_at, intrinsics
    from reconstruction.engine.generative.frame import frame_for

    camera = camera_looking_at("v", 128, 128, intrinsics(150, 150, 64, 64), (0.0, 0.0, 2.0), (0.0, 0.0, 0.0))
    frame = frame_for(camera, np.ones((128, 128), bool), resolution=32, depth_bins=32)
    volume = np.zeros(frame.shape, np.float32)
    volume[10:20, 4:16, 4:28] = 1.0  # a seat: front at bin 10
    coverage = np.zeros((32, 32), np.float32)
    coverage[4:16, 4:28] = 1.0
    coverage[16:30, 6:8] = 1.0  # a leg two columns wide that the volume left out

    filled, share = _fill_silhouette_gaps(frame, volume, coverage)

    assert share == pytest.approx(28 / coverage.sum())
    np.testing.assert_array_equal(filled[:, 4:16], volume[:, 4:16])  # what was there is kept
    leg = filled[:, 16:30, 6:8] >= 0.5
    assert leg.any(axis=0).all()  # every leg column is solid now
    assert (leg.argmax(axis=0) == 10).all()  # starting at the seat's front
    column_width = frame.side / frame.resolution / camera.K[0, 0] * frame.centre_depth
    bins = leg.sum(axis=0)
    assert bins.max() == max(1, round(2 * 1 * column_width / (frame.depth_extent / frame.depth_bins)))
    assert not filled[:, 30:].any() and not filled[:, :, 28:].any()  # nothing outside the silhouette

    untouched, none = _fill_silhouette_gaps(frame, volume, coverage * (volume.max(axis=0) > 0))
    assert none == 0.0 and untouched is volume


def test_the_depth_scale_squashes_the_volume_about_its_centre_of_mass_and_keeps_its_outline():
    from reconstruction.engine.backends.diffusion.backend import _scale_depth

    volume = np.zeros((64, 8, 8), np.float32)
    volume[10:30, 2:6, 1:7] = 1.0  # 20 bins deep, centre of mass at bin 19.5

    squashed = _scale_depth(volume, 0.5)

    solid = squashed >= 0.5
    assert solid.any(axis=0).sum() == 4 * 6  # the same columns, no others
    depths = np.flatnonzero(solid.any(axis=(1, 2)))
    assert (depths.min(), depths.max()) == (15, 24)  # 10 bins deep about the same centre
    assert squashed.sum() == pytest.approx(volume.sum() / 2, rel=0.05)
    np.testing.assert_array_equal(_scale_depth(volume, 1.0), volume)
    stretched = _scale_depth(volume, 1.5) >= 0.5
    assert np.flatnonzero(stretched.any(axis=(1, 2))).tolist() == list(range(5, 35))
