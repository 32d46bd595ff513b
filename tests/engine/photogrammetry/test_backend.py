"""The backend as the engine sees it: registration, parameters, bad input, cancel, and small end-to-end runs."""
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh
from PIL import Image

from reconstruction.engine import metrics
from reconstruction.engine.backends.photogrammetry import PhotogrammetryBackend
from reconstruction.engine.backends.photogrammetry.views import View, views_from_capture, with_background_masks
from reconstruction.engine.cameras import read_colmap_text, write_colmap_text
from reconstruction.engine.capture import Capture
from reconstruction.engine.errors import BackendFailed, Cancelled, InvalidCapture, InvalidParameters
from reconstruction.engine.protocol import MULTI_VIEW, Backend
from reconstruction.engine.registry import available_backends

from .scenes import orbit_cameras, pattern, render, textured_blob_photos


def _quiet(*_args) -> None:
    return None


def _never() -> bool:
    return False


def _noise(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)


def _save(folder: Path, name: str, pixels: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(pixels).save(path)
    return path


def test_backend_is_registered_and_meets_the_protocol():
    backend = available_backends()["photogrammetry"]
    assert isinstance(backend, PhotogrammetryBackend)
    assert isinstance(backend, Backend)
    assert backend.capabilities.inputs == frozenset({MULTI_VIEW})
    assert backend.capabilities.min_views == 3
    assert backend.capabilities.produces_texture
    schema = backend.parameter_schema
    assert schema["additionalProperties"] is False
    assert schema["properties"]["device"]["enum"] == ["auto", "cpu", "cuda"]
    assert schema["properties"]["depth_hypotheses"] == {"type": "integer", "default": 128, "minimum": 16, "maximum": 512}


def test_bad_parameters_are_refused_before_any_work(tmp_path):
    with pytest.raises(InvalidParameters) as error:
        PhotogrammetryBackend().run(
            SimpleNamespace(images=[]), tmp_path, params={"neighbours": 0, "colour": "red"}, progress=_quiet, cancel=_never
        )
    assert error.value.message == (
        "Invalid parameters: unknown parameter 'colour' (known: "
        + ", ".join(PhotogrammetryBackend.parameter_schema["properties"])
        + "); neighbours must be at least 1, got 0."
    )


def test_one_image_is_too_few(tmp_path):
    capture = SimpleNamespace(images=[_save(tmp_path, "only.png", _noise(64, 1))])
    with pytest.raises(InvalidCapture) as error:
        PhotogrammetryBackend().run(capture, tmp_path / "out", params={}, progress=_quiet, cancel=_never)
    assert error.value.message == "Photogrammetry needs at least 3 images; the capture has 1."


def test_duplicates_are_dropped_and_counted_against_the_minimum(tmp_path):
    pixels = _noise(64, 1)
    images = [_save(tmp_path, f"{name}.png", pixels) for name in ("a", "b")] + [_save(tmp_path, "c.png", _noise(64, 2))]
    with pytest.raises(InvalidCapture) as error:
        views_from_capture(SimpleNamespace(images=images))
    assert error.value.message == "Photogrammetry needs at least 3 distinct images; the capture has 2."
    images.append(_save(tmp_path, "d.png", _noise(64, 3)))
    views, notes = views_from_capture(SimpleNamespace(images=images))
    assert [v.name for v in views] == ["a.png", "c.png", "d.png"]
    assert notes == ["dropped b.png: the same pixels as a.png"]


def test_files_that_are_not_images_are_named(tmp_path):
    images = [_save(tmp_path, f"{i}.png", _noise(64, i)) for i in range(3)]
    (tmp_path / "notes.jpg").write_text("not a photo")
    (tmp_path / "cut.png").write_bytes((tmp_path / "0.png").read_bytes()[:60])
    with pytest.raises(InvalidCapture) as error:
        views_from_capture(SimpleNamespace(images=[*images, tmp_path / "notes.jpg", tmp_path / "cut.png"]))
    assert error.value.message == (
        "These files are not readable images: notes.jpg (not an image format we can read); cut.png (image file is truncated)."
    )


def test_mixed_sizes_are_accepted_with_a_note(tmp_path):
    images = [_save(tmp_path, "a.png", _noise(64, 1)), _save(tmp_path, "b.png", _noise(64, 2)), _save(tmp_path, "c.png", _noise(80, 3))]
    views, notes = views_from_capture(SimpleNamespace(images=images))
    assert [v.size for v in views] == [(64, 64), (64, 64), (80, 80)]
    assert notes == ["images come in 2 sizes (64×64, 80×80); each size gets its own intrinsics"]


@pytest.mark.slow
def test_images_that_do_not_overlap_fail_with_the_reason_for_each(tmp_path):
    images = [_save(tmp_path / "photos", f"noise_{i}.png", _noise(256, i)) for i in range(4)]
    with pytest.raises(BackendFailed) as error:
        PhotogrammetryBackend().run(SimpleNamespace(images=images), tmp_path / "out", params={}, progress=_quiet, cancel=_never)
    message = error.value.message
    assert message.startswith("Structure from motion registered 0 of 4 images; at least 3 are needed. Not registered: noise_0.png: ")
    for i in range(4):
        assert f"noise_{i}.png: " in message
    assert "no verified matches with any other image (no overlap)" in message or "too few to place it" in message


def test_cancel_stops_the_run(tmp_path):
    cameras = orbit_cameras(4, 48)
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=0.8)
    images = [render(sphere, camera)[0] for camera in cameras]
    capture = SimpleNamespace(images=images, cameras=cameras, masks=None, metadata={})
    with pytest.raises(Cancelled):
        PhotogrammetryBackend().run(capture, tmp_path, params={}, progress=_quiet, cancel=lambda: True)


@pytest.fixture(scope="module")
def blob_capture(tmp_path_factory) -> tuple[Path, trimesh.Trimesh]:
    """Ten 128-pixel views of a procedurally coloured, bumpy blob with exact cameras and masks, as a capture folder."""
    blob = trimesh.creation.icosphere(subdivisions=4, radius=0.8)
    direction = blob.vertices / np.linalg.norm(blob.vertices, axis=1, keepdims=True)
    blob.vertices = blob.vertices * (1 + 0.15 * np.sin(3 * direction[:, [0]]) * np.cos(2 * direction[:, [1]]))
    folder = tmp_path_factory.mktemp("blob")
    cameras = orbit_cameras(10, 128)
    for camera in cameras:
        image, mask, _ = render(blob, camera)
        _save(folder / "images", camera.image_name, (image * 255).round().astype(np.uint8))
        _save(folder / "masks", camera.image_name, (mask * 255).astype(np.uint8))
    from reconstruction.engine.cameras import write_colmap_text

    write_colmap_text(folder / "sparse", cameras)
    return folder, blob


@pytest.mark.slow
def test_known_cameras_end_to_end_give_a_textured_mesh_close_to_the_truth(blob_capture, tmp_path):
    folder, blob = blob_capture
    stages: list[str] = []
    result = PhotogrammetryBackend().run(
        Capture.load(folder), tmp_path,
        params={"depth_hypotheses": 48, "texture_size": 512, "poisson_depth": 7},
        progress=lambda stage, fraction, message: stages.append(stage), cancel=_never,
    )
    assert result.metrics["status"] == "complete"
    assert result.metrics["registered_images"] == 10
    assert stages.count("mvs") == 10
    assert (tmp_path / "sparse" / "images.txt").is_file()
    glb = trimesh.load(result.mesh_path)
    mesh = glb.to_geometry() if isinstance(glb, trimesh.Scene) else glb
    assert mesh.visual.uv is not None
    assert mesh.visual.material.baseColorTexture.size == (512, 512)
    diagonal = float(np.linalg.norm(blob.bounds[1] - blob.bounds[0]))
    predicted, _ = metrics.sample_surface(mesh, 20000)
    truth, _ = metrics.sample_surface(blob, 20000)
    assert metrics.fscore(predicted, truth, 0.01 * diagonal)["fscore"] > 0.9
    # The baked colours match the procedural pattern at the surface.
    colours = np.asarray(mesh.visual.to_color().vertex_colors)[:, :3] / 255.0
    error = np.abs(colours - pattern(np.asarray(mesh.vertices))).mean()
    assert error < 0.1


def _on_plain_background(box: tuple[int, int, int, int]) -> np.ndarray:
    image = np.full((96, 96, 3), 0.95, dtype=np.float32)
    top, left, bottom, right = box
    image[top:bottom, left:right] = _noise(96, 3)[top:bottom, left:right] / 255.0
    return image


def test_masks_are_cut_from_a_plain_background_only_when_every_image_allows_it():
    plain = [View(f"view_{i}.png", _on_plain_background((20 + i, 30, 70, 60 + i))) for i in range(3)]

    masked, note = with_background_masks(plain)
    assert note == "object masks cut from the plain background of all 3 images"
    assert [int(view.mask.sum()) for view in masked] == [50 * 30, 49 * 31, 48 * 32]  # type: ignore[union-attr]

    cluttered = [*plain[:2], View("street.png", _noise(96, 4) / 255.0)]
    kept, note = with_background_masks(cluttered)
    assert note == "no automatic masks: street.png has no plain background"
    assert all(view.mask is None for view in kept)

    empty = [*plain[:2], View("blank.png", np.full((96, 96, 3), 0.95, dtype=np.float32))]
    assert with_background_masks(empty)[1].startswith("no automatic masks: blank.png: No object found")

    given = [View("a.png", plain[0].image, mask=np.ones((96, 96), dtype=bool)), *plain[1:]]
    assert with_background_masks(given) == (given, "the capture's own masks used")


@pytest.mark.parametrize(
    ("setting", "background", "retried"),
    [("with-masks", 0.95, True), ("with-masks", None, False), ("always", None, True), ("never", 0.95, False)],
)
def test_the_wide_baseline_retry_runs_by_default_only_where_silhouettes_can_confirm_it(
    monkeypatch, tmp_path, setting, background, retried
):
    from reconstruction.engine.backends.photogrammetry import calibration

    asked = {}

    def structure_from_motion(views, *args, **kwargs):
        asked.update(kwargs, masked=all(view.mask is not None for view in views))
        raise BackendFailed("stop here")

    monkeypatch.setattr(calibration, "structure_from_motion", structure_from_motion)
    if background is None:  # photos of a scene: nothing to cut masks from
        images = [_noise(96, i) / 255.0 for i in range(3)]
    else:
        images = [_on_plain_background((20 + i, 30, 70, 60)) for i in range(3)]
    with pytest.raises(BackendFailed, match="stop here"):
        PhotogrammetryBackend().run(
            SimpleNamespace(images=images), tmp_path, params={"sfm_wide_baseline_retry": setting},
            progress=_quiet, cancel=_never,
        )
    assert asked["wide_baseline_retry"] is retried
    assert asked["masked"] is (background is not None)


def test_masks_cut_from_the_background_are_dropped_where_the_cameras_contradict_them():
    from reconstruction.engine.backends.photogrammetry.calibration import _unless_contradicted

    box = trimesh.creation.box(extents=(1.2, 0.7, 0.9))
    views = []
    for camera in orbit_cameras(8, 64):
        image, mask, _ = render(box, camera)
        views.append(View(camera.image_name, image, mask, camera))
    metrics: dict = {}
    assert _unless_contradicted(views, None, metrics, []) == views
    assert metrics["background_mask_coverage"] > 0.97

    shifted = list(views)
    shifted[3] = View(views[3].name, views[3].image, np.roll(views[3].mask, 12, axis=1), views[3].camera)
    log: list[str] = []
    kept = _unless_contradicted(shifted, None, metrics, log)
    assert all(view.mask is None for view in kept)
    assert metrics["background_mask_coverage"] < 0.85
    assert log[0].startswith("masks cut from the background dropped: the cameras' visual hull covers only")


@pytest.mark.slow
def test_images_alone_give_refined_cameras_and_a_mesh_close_to_the_truth(tmp_path):
    photos, folder = tmp_path / "photos", tmp_path / "truth"
    blob, cameras = textured_blob_photos(photos)
    write_colmap_text(folder / "sparse", cameras)
    result = PhotogrammetryBackend().run(
        Capture.load(photos), tmp_path / "out",
        params={"depth_hypotheses": 48, "texture_size": 512, "poisson_depth": 7, "uv_atlas": "grid"},
        progress=_quiet, cancel=_never,
    )
    assert result.metrics["status"] == "complete" and not result.metrics["known_cameras"]
    assert result.metrics["sfm_radial_distortion"] != "fitted"  # the renders have none
    refinement = result.metrics["camera_refinement"]
    assert refinement["reprojection_error_px"]["after"] < refinement["reprojection_error_px"]["before"]
    assert refinement["least_observations_in_a_view"] >= 30
    # The COLMAP model written moved with the refinement: its cameras align the mesh onto the truth.
    found = {c.image_name: c for c in read_colmap_text(tmp_path / "out" / "sparse")}
    truth = {c.image_name: c for c in read_colmap_text(folder / "sparse")}
    names = sorted(found)
    errors = metrics.pose_errors(
        {n: (found[n].R, found[n].center) for n in names}, {n: (truth[n].R, truth[n].center) for n in names}
    )
    # SfM alone left them 0.1-0.5° off (median, over runs); refined, 0.02-0.06°. Its own tracks fit them as well.
    assert errors["rotation_error_deg"]["median"] < 0.15
    tracks = refinement["sfm_track_error_px"]
    assert tracks["after"] <= tracks["before"] * 1.05
    glb = trimesh.load(result.mesh_path)
    mesh = glb.to_geometry() if isinstance(glb, trimesh.Scene) else glb
    mesh.apply_transform(
        metrics.align_by_cameras(np.array([found[n].center for n in names]), np.array([truth[n].center for n in names]))
    )
    diagonal = float(np.linalg.norm(blob.bounds[1] - blob.bounds[0]))
    predicted, _ = metrics.sample_surface(mesh, 20000)
    reference, _ = metrics.sample_surface(blob, 20000)
    assert metrics.fscore(predicted, reference, 0.01 * diagonal)["fscore"] > 0.9
