"""Structure from motion's staged retry: when it runs, what the permissive attempt changes, what it leaves alone."""
from pathlib import Path

import numpy as np
import pytest

# isort: off
import PIL.Image  # Pillow before pycolmap (see photogrammetry/sfm.py on zlib)
import pycolmap
# isort: on

from reconstruction.engine.backends.photogrammetry.sfm import (
    DEFAULT_ATTEMPT,
    WIDE_BASELINE_ATTEMPT,
    _cancellable,
    _mapping_options,
    _one_unknown_camera,
    needs_retry,
    structure_from_motion,
)
from reconstruction.engine.backends.photogrammetry.views import View
from reconstruction.engine.errors import BackendFailed


def test_a_retry_is_wanted_only_while_some_image_is_left_out():
    assert needs_retry(0, 24)
    assert needs_retry(23, 24)
    assert not needs_retry(24, 24)


def test_the_default_attempt_keeps_colmaps_own_mapper_options_but_a_time_limit():
    options = _mapping_options(DEFAULT_ATTEMPT, 24)
    assert options.max_runtime_seconds == 60 + 5 * 24
    options.max_runtime_seconds = pycolmap.IncrementalPipelineOptions().max_runtime_seconds
    assert options.summary() == pycolmap.IncrementalPipelineOptions().summary()


def test_a_cancel_during_mapping_pulls_colmaps_cancellation_token():
    asked = iter([False, True])
    token, next_image = _cancellable(lambda: next(asked))
    next_image()
    assert not token.is_cancelled
    next_image()
    assert token.is_cancelled


def test_the_wide_baseline_attempt_asks_the_mapper_for_less_evidence():
    options, colmaps = _mapping_options(WIDE_BASELINE_ATTEMPT, 24), pycolmap.IncrementalPipelineOptions()
    assert options.mapper.init_min_num_inliers == 30 < colmaps.mapper.init_min_num_inliers
    assert options.mapper.abs_pose_min_num_inliers == 12 < colmaps.mapper.abs_pose_min_num_inliers
    # The outlier filters stay COLMAP's: loosened, they let wrong models through.
    assert options.mapper.filter_max_reproj_error == colmaps.mapper.filter_max_reproj_error
    assert options.mapper.abs_pose_max_error == colmaps.mapper.abs_pose_max_error
    assert options.mapper.abs_pose_refine_focal_length is False
    assert options.structure_less_registration_fallback is False
    assert options.ba_refine_focal_length is True  # the shared focal length is still refined, by bundle adjustment
    assert WIDE_BASELINE_ATTEMPT.max_ratio == 0.9
    assert WIDE_BASELINE_ATTEMPT.peak_threshold_scale < 1


def test_same_sized_images_without_a_focal_length_share_one_camera(tmp_path):
    pixels = np.zeros((64, 64, 3), dtype=np.float32)
    assert _one_unknown_camera([View("a.png", pixels), View("b.png", pixels)])
    assert not _one_unknown_camera([View("a.png", pixels), View("b.png", np.zeros((64, 80, 3), dtype=np.float32))])


def test_a_photo_with_an_exif_focal_length_leaves_cameras_to_colmap(tmp_path):
    exif = PIL.Image.Exif()
    exif.get_ifd(0x8769)[0x920A] = 4.5  # FocalLength in mm
    PIL.Image.new("RGB", (64, 64)).save(tmp_path / "photo.jpg", exif=exif)
    pixels = np.zeros((64, 64, 3), dtype=np.float32)
    assert not _one_unknown_camera([View("photo.jpg", pixels, path=tmp_path / "photo.jpg"), View("b.png", pixels)])


def _noise_views(count: int) -> list[View]:
    rng = np.random.default_rng(0)
    return [View(f"noise_{i}.png", rng.random((96, 96, 3), dtype=np.float32)) for i in range(count)]


@pytest.mark.parametrize("retry, attempts", [(True, {"default", "wide-baseline"}), (False, {"default"})])
def test_unmatched_images_are_retried_with_the_wide_baseline_attempt_only_when_allowed(tmp_path, retry, attempts):
    with pytest.raises(BackendFailed) as error:
        structure_from_motion(
            _noise_views(3), tmp_path / "sfm", tmp_path / "sparse", max_image_size=256, exhaustive_max_images=50,
            focal_length_prior=1.2, cancel=lambda: False, wide_baseline_retry=retry,
        )
    assert error.value.message.startswith("Structure from motion registered 0 of 3 images; at least 3 are needed.")
    assert {p.parent.name for p in Path(tmp_path / "sfm").glob("*/database.db")} == attempts
