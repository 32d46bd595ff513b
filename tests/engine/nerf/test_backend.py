"""The `nerf` backend on a tiny rendered capture: mesh quality, held-out views, and its exact failures."""

import shutil

import numpy as np
import pytest
from PIL import Image

from reconstruction.engine.backends.nerf import NerfBackend, NerfParams
from reconstruction.engine.backends.photogrammetry.views import views_from_capture
from reconstruction.engine.cameras import write_camera_list
from reconstruction.engine.capture import Capture
from reconstruction.engine.cli import main
from reconstruction.engine.errors import BackendFailed, Cancelled, InvalidCapture, InvalidParameters
from reconstruction.engine.fields.dense import DenseField
from reconstruction.engine.metrics import compare_meshes, load_mesh, psnr
from reconstruction.engine.params import json_schema
from reconstruction.engine.protocol import Backend
from reconstruction.engine.registry import get_backend
from reconstruction.engine.render import render_views, sha256_file
from tests.engine.nerf.scenes import (
    QUICK,
    check_textured_glb,
    constant_colour_psnr,
    held_out_cameras,
    render_tiny_capture,
)


@pytest.fixture(scope="module")
def tiny_capture(sphere_glb, tmp_path_factory):
    return render_tiny_capture(sphere_glb, tmp_path_factory.mktemp("nerf") / "sphere")


def run(capture_dir, workdir, params=None, cancel=lambda: False):
    events = []
    result = NerfBackend().run(
        Capture.load(capture_dir), workdir, params=params or {}, progress=lambda *e: events.append(e), cancel=cancel
    )
    return result, events


def test_is_registered_with_its_schema():
    backend = get_backend("nerf")
    assert isinstance(backend, Backend)
    assert backend.parameter_schema == json_schema(NerfParams)
    assert backend.parameter_schema["properties"]["time_budget_s"]["default"] == 600.0
    assert not backend.capabilities.needs_known_cameras and backend.capabilities.produces_texture


@pytest.mark.slow
def test_trains_a_field_whose_mesh_and_novel_views_are_sane(tiny_capture, sphere_glb, tmp_path, capsys):
    result, events = run(tiny_capture, tmp_path / "out", QUICK)
    metrics = result.metrics
    assert result.backend == "nerf" and metrics["iterations"] == QUICK["iterations"]
    assert metrics["checkpoint_sha256"] == sha256_file(tmp_path / "out" / "field.pt")
    assert len(metrics["preview_frames"]) == 2 and all(
        (tmp_path / "out" / p).is_file() for p in metrics["preview_frames"]
    )
    assert metrics["validation_view"] == "view_009.png" and np.isfinite(metrics["validation_psnr"])
    assert any(stage == "train" and "PSNR" in message for stage, _, message in events)
    # A UV-textured mesh, closed once the atlas's seams are welded again.
    check_textured_glb(result.mesh_path)
    assert result.texture_paths == [tmp_path / "out" / "texture_base_color.png"]
    assert metrics["texture_size"] == 256 and metrics["texture_coverage"] > 0.9 and metrics["bake_s"] > 0
    assert any(stage == "texture" and "seen by a view" in message for stage, _, message in events)
    mesh = load_mesh(result.mesh_path)
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    assert metrics["watertight"] and mesh.is_watertight
    geometry = compare_meshes(mesh, load_mesh(sphere_glb), samples=20_000, tau=0.05 * 0.3464)
    assert geometry["fscore"] > 0.9

    # Novel views at held-out cameras, of the field and of the textured mesh, beat the best constant image.
    cameras = held_out_cameras(tiny_capture)
    targets = [v.rgb for v in render_views(sphere_glb, cameras)]
    rendered = NerfBackend().render_cameras(tmp_path / "out", cameras, tmp_path / "eval")
    predicted = [np.asarray(Image.open(p).convert("RGB")) for p in rendered]
    ours = np.mean([psnr(p, t) for p, t in zip(predicted, targets, strict=True)])
    baseline = constant_colour_psnr(Capture.load(tiny_capture), [t / 255.0 for t in targets])
    assert ours > baseline + 3
    mesh_views = render_views(result.mesh_path, cameras)
    assert np.mean([psnr(v.rgb, t) for v, t in zip(mesh_views, targets, strict=True)]) > baseline + 3

    # The same through the command line, with --eval-cameras.
    camera_file = write_camera_list(cameras, tmp_path / "cameras.json")
    argv = ["run", "--backend", "nerf", "--images", str(tiny_capture), "--out", str(tmp_path / "cli"), "--quiet"]
    params = ["--param", "resolution=24", "--param", "iterations=5", "--param", "turntable_frames=0"]
    assert main([*argv, *params, "--eval-cameras", str(camera_file)]) == 0
    assert sorted(p.name for p in (tmp_path / "cli" / "eval").iterdir()) == ["held_0.png", "held_1.png", "held_2.png"]
    assert Image.open(tmp_path / "cli" / "eval" / "held_0.png").size == (48, 48)


def test_cli_refuses_a_bad_camera_file_before_training(tiny_capture, tmp_path, capsys):
    bad = tmp_path / "cameras.json"
    bad.write_text(
        '[{"image": "a.png", "width": 4, "height": 4, "K": [[1, 0, 2], [0, 1, 2]], "R": [], "t": [0, 0, 1]}]'
    )
    argv = ["run", "--backend", "nerf", "--images", str(tiny_capture), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*argv, "--eval-cameras", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == "error: cameras.json camera 0: K and R must be 3×3 and t of length 3."
    assert not (tmp_path / "o" / "result.json").exists()


def test_refuses_too_few_views(tiny_capture, tmp_path):
    few = tmp_path / "few"
    shutil.copytree(tiny_capture, few)
    for name in ("images", "masks"):
        for path in sorted((few / name).iterdir())[3:]:
            path.unlink()
    lines = (few / "sparse" / "images.txt").read_text().splitlines()
    kept = [
        line
        for line in lines
        if not line.strip()
        or line.startswith("#")
        or line.split()[-1] in {"view_000.png", "view_001.png", "view_002.png"}
    ]
    (few / "sparse" / "images.txt").write_text("\n".join(kept) + "\n")
    with pytest.raises(InvalidCapture, match=r"^nerf needs at least 4 views, the capture has 3\.$"):
        run(few, tmp_path / "out")


@pytest.mark.parametrize(
    ("moved", "message"),
    [([3], r"and at least \d+% of every mask without view_003\.png\. That view's camera"),
     ([3, 6], r"and no single view explains it; several cameras or masks are wrong\.$")],
)
def test_refuses_cameras_that_contradict_the_masks(tiny_capture, tmp_path, moved, message):
    capture = Capture.load(tiny_capture)
    centre = np.array([0.02, 0.05, -0.01])  # the sphere's
    turn = np.eye(4)
    turn[:3, :3] = [[0, 0, 1], [0, 1, 0], [-1, 0, 0]]  # 90° about the vertical through the sphere
    turn[:3, 3] = centre - turn[:3, :3] @ centre + [0.15, 0, 0]  # and aside, so it no longer looks at the sphere
    for index in moved:
        capture.cameras[index] = capture.cameras[index].in_frame(turn)
    with pytest.raises(InvalidCapture, match=r"^The cameras and masks contradict each other: .*" + message):
        NerfBackend().run(capture, tmp_path / "out", params=QUICK, progress=lambda *e: None, cancel=lambda: False)


def test_photos_of_which_structure_from_motion_places_too_few_are_refused_with_the_reasons(
    tiny_capture, tmp_path, monkeypatch
):
    from reconstruction.engine.backends.photogrammetry.calibration import Calibration
    from reconstruction.engine.fields import photos_only

    def calibrate(capture, folder, *args):
        views = views_from_capture(capture)[0][:3]
        failed = {f"view_00{i}.png": "only 12 features found (too little texture or too small)" for i in range(3, 10)}
        return Calibration(views, np.zeros((0, 3)), folder / "sparse", False, {"failed_images": failed})

    monkeypatch.setattr(photos_only, "calibrate", calibrate)
    photos = tmp_path / "photos"
    shutil.copytree(tiny_capture / "images", photos)
    with pytest.raises(
        BackendFailed,
        match=r"^Structure from motion placed 3 of 10 photos; a field needs at least 4\. Not placed: view_003\.png: only 12",
    ):
        run(photos, tmp_path / "out", QUICK)


def test_refuses_a_capture_without_masks_when_masks_are_required(tiny_capture, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(tiny_capture, bare)
    shutil.rmtree(bare / "masks")
    with pytest.raises(
        InvalidCapture, match=r"^nerf was asked to require masks \(require_masks=true\) and the capture has none\.$"
    ):
        run(bare, tmp_path / "out", {"require_masks": True})


def test_refuses_a_grid_over_the_memory_budget(tiny_capture, tmp_path):
    with pytest.raises(
        InvalidParameters, match=r"^nerf at resolution 512 needs about \d+ MB, more than memory_budget_mb=512"
    ):
        run(
            tiny_capture,
            tmp_path / "out",
            {"resolution": 512, "memory_budget_mb": 512, "lower_resolution_to_fit": False},
        )


def test_lowers_the_resolution_to_fit_the_memory_budget(tiny_capture, tmp_path):
    result, events = run(
        tiny_capture,
        tmp_path / "out",
        {**QUICK, "resolution": 512, "memory_budget_mb": 400, "iterations": 2, "turntable_frames": 0},
    )
    assert result.metrics["resolution"] < 512
    assert result.metrics["memory_estimate_mb"] <= 400
    assert any("to fit the memory budget" in message for _, _, message in events)


def test_nan_loss_fails_with_the_reason(tiny_capture, tmp_path, monkeypatch):
    original = DenseField.forward

    def poisoned(self, points, directions):
        sigma, colour = original(self, points, directions)
        return sigma, colour * float("nan")

    monkeypatch.setattr(DenseField, "forward", poisoned)
    with pytest.raises(BackendFailed) as failure:
        run(tiny_capture, tmp_path / "out", {**QUICK, "mask_weight": 0.0})
    assert (
        failure.value.message
        == "Training diverged at iteration 1: the loss is nan (rgb term); try a smaller learning_rate."
    )
    assert not (tmp_path / "out" / "mesh.glb").exists()


def test_cancel_stops_the_run(tiny_capture, tmp_path):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled, match=r"^Cancelled by request\.$"):
        run(tiny_capture, tmp_path / "out", QUICK, cancel=cancel)
    assert not (tmp_path / "out" / "mesh.glb").exists()


@pytest.mark.slow
def test_render_at_cameras_and_eval_cameras_of_a_mesh_backend(tiny_capture, sphere_glb, tmp_path, capsys):
    cameras = held_out_cameras(tiny_capture)
    camera_file = write_camera_list(cameras, tmp_path / "cameras.json")
    assert (
        main(["render", "--mesh", str(sphere_glb), "--cameras", str(camera_file), "--out", str(tmp_path / "gt")]) == 0
    )
    expected = render_views(sphere_glb, cameras)
    for camera, view in zip(cameras, expected, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "gt" / camera.image_name)), view.rgb)
    # A backend without a field of its own (visual hull) gets its mesh rendered at the cameras.
    argv = ["run", "--backend", "visual-hull", "--images", str(tiny_capture), "--out", str(tmp_path / "vh"), "--quiet"]
    assert main([*argv, "--param", "resolution=24", "--eval-cameras", str(camera_file)]) == 0
    assert sorted(p.name for p in (tmp_path / "vh" / "eval").iterdir()) == ["held_0.png", "held_1.png", "held_2.png"]
