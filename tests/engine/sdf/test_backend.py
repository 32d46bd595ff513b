"""The `sdf` backend on a tiny rendered capture: a watertight zero level set near the truth, novel views, failures."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reconstruction.engine.backends.sdf import SdfBackend, SdfParams
from reconstruction.engine.cameras import read_colmap_text
from reconstruction.engine.capture import Capture
from reconstruction.engine.errors import BackendFailed, Cancelled
from reconstruction.engine.fields.dense import DenseField
from reconstruction.engine.metrics import align_by_cameras, compare_meshes, load_mesh, psnr
from reconstruction.engine.params import json_schema
from reconstruction.engine.protocol import Backend
from reconstruction.engine.registry import get_backend
from reconstruction.engine.render import render_views
from tests.engine.nerf.scenes import (
    QUICK,
    check_textured_glb,
    constant_colour_psnr,
    held_out_cameras,
    render_tiny_capture,
)
from tests.engine.photogrammetry.scenes import textured_blob_photos


@pytest.fixture(scope="module")
def tiny_capture(sphere_glb, tmp_path_factory):
    return render_tiny_capture(sphere_glb, tmp_path_factory.mktemp("sdf") / "sphere")


def run(capture_dir, workdir, params=None, cancel=lambda: False):
    events = []
    result = SdfBackend().run(
        Capture.load(capture_dir), workdir, params=params or {}, progress=lambda *e: events.append(e), cancel=cancel
    )
    return result, events


def test_is_registered_with_its_schema():
    backend = get_backend("sdf")
    assert isinstance(backend, Backend)
    assert backend.parameter_schema == json_schema(SdfParams)
    assert backend.capabilities.produces_texture
    assert {"eikonal_weight", "smoothness_weight", "time_budget_s"} <= set(backend.parameter_schema["properties"])


@pytest.mark.slow
def test_zero_level_set_is_watertight_and_close_to_the_truth(tiny_capture, sphere_glb, tmp_path):
    result, events = run(tiny_capture, tmp_path / "out", QUICK)
    assert result.backend == "sdf" and result.metrics["beta_voxels"] > 0
    check_textured_glb(result.mesh_path)
    assert result.metrics["texture_coverage"] > 0.9
    assert any(stage == "texture" for stage, _, _ in events)
    # Watertight as marched, and again once the UV atlas's seams are welded.
    mesh = load_mesh(result.mesh_path)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    assert mesh.is_watertight and result.metrics["watertight"]
    geometry = compare_meshes(mesh, load_mesh(sphere_glb), samples=20_000, tau=0.05 * 0.3464)
    assert geometry["fscore"] > 0.9
    cameras = held_out_cameras(tiny_capture)
    targets = [v.rgb for v in render_views(sphere_glb, cameras)]
    rendered = SdfBackend().render_cameras(tmp_path / "out", cameras, tmp_path / "eval")
    ours = np.mean([psnr(np.asarray(Image.open(p).convert("RGB")), t) for p, t in zip(rendered, targets, strict=True)])
    assert ours > constant_colour_psnr(Capture.load(tiny_capture), [t / 255.0 for t in targets]) + 3


def test_nan_loss_fails_with_the_reason(tiny_capture, tmp_path, monkeypatch):
    original = DenseField.forward

    def poisoned(self, points, directions):
        sigma, colour = original(self, points, directions)
        return sigma * float("nan"), colour

    monkeypatch.setattr(DenseField, "forward", poisoned)
    with pytest.raises(BackendFailed) as failure:
        run(tiny_capture, tmp_path / "out", QUICK)
    assert failure.value.message == (
        "Training diverged at iteration 1: the loss is nan (rgb, mask term); try a smaller learning_rate."
    )
    assert not (tmp_path / "out" / "mesh.glb").exists()


def test_cancel_stops_the_run(tiny_capture, tmp_path):
    with pytest.raises(Cancelled, match=r"^Cancelled by request\.$"):
        run(tiny_capture, tmp_path / "out", QUICK, cancel=lambda: True)


@pytest.mark.slow
def test_photos_alone_are_calibrated_by_structure_from_motion(tmp_path):
    # What users upload: photos, no cameras, no masks. The photogrammetry calibration places and refines the
    # cameras, the masks cut from the white background are confirmed by them, and the field trains in SfM's frame.
    blob, truth = textured_blob_photos(tmp_path / "photos")
    events = []
    result = SdfBackend().run(
        Capture.load(tmp_path / "photos"), tmp_path / "out",
        params={**QUICK, "resolution": 48, "iterations": 300},
        progress=lambda *event: events.append(event), cancel=lambda: False,
    )
    calibration = result.metrics["calibration"]
    assert not calibration["known_cameras"] and calibration["registered_images"] == len(truth)
    assert calibration["camera_refinement"]["reprojection_error_px"]["after"] < 0.5
    assert result.metrics["masks"] and result.parameters["time_budget_s"] == 600.0
    assert [stage for stage, _, _ in events][:2] == ["sfm", "sfm"]
    fractions = [fraction for _, fraction, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    # OUT/sparse holds the cameras the field was trained with: they carry the mesh onto the truth.
    found = {Path(c.image_name).stem: c for c in read_colmap_text(tmp_path / "out" / "sparse")}
    known = {Path(c.image_name).stem: c for c in truth}
    names = sorted(found)
    mesh = load_mesh(result.mesh_path)
    mesh.apply_transform(
        align_by_cameras(np.array([found[n].center for n in names]), np.array([known[n].center for n in names]))
    )
    diagonal = float(np.linalg.norm(blob.bounds[1] - blob.bounds[0]))
    assert compare_meshes(mesh, blob, samples=20_000, tau=0.01 * diagonal)["fscore"] > 0.8
