import shutil

import numpy as np
import pytest
import trimesh
from PIL import Image

from reconstruction.engine.backends.visual_hull import VisualHullBackend, VisualHullParams
from reconstruction.engine.capture import Capture
from reconstruction.engine.errors import BackendFailed, Cancelled, InvalidCapture, InvalidParameters
from reconstruction.engine.metrics import compare_meshes, load_mesh
from reconstruction.engine.params import json_schema
from reconstruction.engine.protocol import Backend, ReconstructionResult
from reconstruction.engine.registry import available_backends, get_backend

CENTRE = np.array([0.02, 0.05, -0.01])


def run(capture, workdir, params=None, cancel=lambda: False):
    events = []
    result = VisualHullBackend().run(
        capture, workdir, params=params or {}, progress=lambda *e: events.append(e), cancel=cancel
    )
    return result, events


def test_is_registered_and_meets_the_protocol():
    backend = get_backend("visual-hull")
    assert isinstance(backend, Backend)
    assert "visual-hull" in available_backends()
    assert backend.parameter_schema == json_schema(VisualHullParams)
    assert backend.capabilities.needs_known_cameras


@pytest.mark.slow
def test_carves_a_sphere_from_eight_views(sphere_capture, tmp_path):
    capture = Capture.load(sphere_capture)
    result, events = run(capture, tmp_path / "out", {"resolution": 40})
    mesh = load_mesh(result.mesh_path)
    assert mesh.is_watertight
    # The hull holds the sphere: no point of it is nearer the centre than the radius (less a voxel and a bit).
    distances = np.linalg.norm(mesh.vertices - CENTRE, axis=1)
    assert distances.min() > 0.1 - 0.01
    truth = trimesh.creation.icosphere(subdivisions=4, radius=0.1)
    truth.apply_translation(CENTRE)
    report = compare_meshes(mesh, truth, samples=20_000)
    assert report["chamfer"] < 0.01  # 5% of the radius from eight 96-pixel views
    assert report["recall"] > 0.9
    assert result.metrics["watertight"] is True
    assert result.metrics["coloured_vertex_fraction"] > 0.95
    assert mesh.visual.kind == "vertex"
    colours = np.asarray(mesh.visual.vertex_colors)[:, :3]
    assert colours.std() > 20  # the blotches came through, not one flat colour
    # progress runs from 0 to 1 without going back
    fractions = [e[1] for e in events]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert result.parameters["resolution"] == 40
    assert result.resources.wall_s > 0 and result.resources.peak_memory_mb > 0


@pytest.mark.slow
def test_result_report_round_trips(sphere_capture, tmp_path):
    result, _ = run(Capture.load(sphere_capture), tmp_path / "out", {"resolution": 24, "color": False})
    report = result.write_report(tmp_path / "out" / "result.json")
    back = ReconstructionResult.read_report(report)
    assert back.mesh_path.resolve() == result.mesh_path.resolve()
    assert back.backend == "visual-hull" and back.metrics["faces"] == result.metrics["faces"]
    assert back.metrics["coloured_vertex_fraction"] == 0.0


@pytest.mark.slow
def test_tolerance_keeps_a_voxel_one_bad_mask_would_carve(sphere_capture, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(sphere_capture, broken)
    # Blank one mask: with no tolerance the whole hull goes; with one view forgiven it stays.
    mask_path = broken / "masks" / "view_000.png"
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(mask_path)
    capture = Capture.load(broken)
    with pytest.raises(BackendFailed, match="share no common volume"):
        run(capture, tmp_path / "a", {"resolution": 24})
    result, _ = run(capture, tmp_path / "b", {"resolution": 24, "tolerance_views": 1})
    assert result.metrics["faces"] > 0


def test_cancel_stops_the_run(sphere_capture, tmp_path):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        run(Capture.load(sphere_capture), tmp_path / "out", {"resolution": 24}, cancel=cancel)
    assert not (tmp_path / "out" / "mesh.glb").exists()


def test_bad_parameters_are_refused(sphere_capture, tmp_path):
    with pytest.raises(InvalidParameters, match="resolution must be at least 16, got 4"):
        run(Capture.load(sphere_capture), tmp_path, {"resolution": 4})
    with pytest.raises(InvalidParameters, match="device must be one of auto, cpu, cuda, got 'tpu'"):
        run(Capture.load(sphere_capture), tmp_path, {"device": "tpu"})


def test_needs_masks_and_cameras(sphere_capture, tmp_path):
    capture = Capture.load(sphere_capture)
    capture.masks = None
    with pytest.raises(InvalidCapture, match="visual-hull needs a foreground mask per image"):
        run(capture, tmp_path)
    capture = Capture.load(sphere_capture)
    capture.cameras = None
    with pytest.raises(InvalidCapture, match="visual-hull needs calibrated cameras"):
        run(capture, tmp_path)
    capture = Capture.load(sphere_capture)
    capture.images, capture.cameras, capture.masks = capture.images[:2], capture.cameras[:2], capture.masks[:2]
    with pytest.raises(InvalidCapture, match="visual-hull needs at least 3 views, the capture has 2."):
        run(capture, tmp_path)
