"""Calibrated views written out as a capture with known cameras, for the backends that need them."""

from pathlib import Path

import numpy as np

from reconstruction.engine.backends.photogrammetry.calibration import Calibration, as_capture
from reconstruction.engine.backends.photogrammetry.views import View
from reconstruction.engine.capture import Capture

from .scenes import orbit_cameras


def _calibration(names: list[str], masked: bool, known: bool) -> Calibration:
    cameras = orbit_cameras(len(names), 32)
    rng = np.random.default_rng(3)
    views = []
    for name, camera in zip(names, cameras, strict=True):
        coverage = np.zeros((32, 32), np.float32)
        coverage[8:24, 8:24] = 1.0
        coverage[8, 8:24] = 0.4  # a soft edge
        views.append(View(
            name, rng.random((32, 32, 3), dtype=np.float32), coverage > 0.5 if masked else None, camera,
            coverage=coverage if masked else None,
        ))
    points = rng.normal(size=(200, 3))
    return Calibration(views, points, Path("unused"), known)


def test_views_become_a_capture_with_their_cameras_masks_and_the_box_of_the_sparse_points(tmp_path):
    calibration = _calibration(["a.jpg", "b.jpg", "a.png", "c.tif"], masked=True, known=False)
    capture = as_capture(calibration, tmp_path / "capture")
    assert [p.name for p in capture.images] == ["a_0.png", "b.png", "a_2.png", "c.png"]
    assert [c.image_name for c in capture.cameras] == [p.name for p in capture.images]
    for index, view in enumerate(calibration.views):
        assert np.abs(capture.load_image(index) - view.image).max() <= 0.5 / 255 + 1e-6
        np.testing.assert_allclose(capture.cameras[index].K, view.camera.K)
        np.testing.assert_allclose(capture.cameras[index].R, view.camera.R)
    assert np.isclose(capture.load_mask(0)[8, 10], 0.4, atol=1 / 255)  # soft edges kept
    box = capture.metadata["object"]
    np.testing.assert_allclose(box["bbox_min"], np.percentile(calibration.points, 2, axis=0))
    np.testing.assert_allclose(box["bbox_max"], np.percentile(calibration.points, 98, axis=0))
    assert capture.metadata["calibration"] == "structure from motion"
    # Written files are a capture like any other.
    assert Capture.load(tmp_path / "capture").num_views == 4


def test_without_masks_on_every_view_none_are_written_and_known_cameras_keep_no_box(tmp_path):
    capture = as_capture(_calibration(["a.png", "b.png", "c.png"], masked=False, known=True), tmp_path / "capture")
    assert capture.masks is None and not (tmp_path / "capture" / "masks").exists()
    assert "object" not in capture.metadata and capture.metadata["calibration"] == "capture"
