"""Mapping runs that must agree: what counts as agreement, and which run the permissive attempt keeps."""

import dataclasses
import sqlite3
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

# isort: off
import PIL.Image  # noqa: F401 -- Pillow before pycolmap (see photogrammetry/sfm.py on zlib)
import pycolmap
# isort: on

from reconstruction.engine.backends.photogrammetry import sfm
from reconstruction.engine.backends.photogrammetry.merging import SfmModel
from reconstruction.engine.backends.photogrammetry.sfm import WIDE_BASELINE_ATTEMPT, runs_agree
from reconstruction.engine.backends.photogrammetry.views import View, views_from_capture
from reconstruction.engine.cameras import Camera
from reconstruction.engine.errors import BackendFailed, Cancelled

from ..test_carving import _turned_about_the_object, chair_leg_object, ring_cameras, splat
from .scenes import orbit_cameras


def _model(cameras: list[Camera]) -> SfmModel:
    return SfmModel({camera.image_name: camera for camera in cameras}, np.zeros((0, 3)), [])


def _in_other_frame(camera: Camera, rotation: np.ndarray, scale: float, offset: np.ndarray) -> Camera:
    """The same camera in a world frame moved by x' = scale · rotation · x + offset (as another run would give it)."""
    R = camera.R @ rotation.T
    return Camera(camera.image_name, camera.width, camera.height, camera.K, R, scale * camera.t - R @ offset)


def _turned(camera: Camera, degrees: float) -> Camera:
    """The camera at the same place, looking elsewhere (turned about its own y axis)."""
    R = Rotation.from_euler("y", degrees, degrees=True).as_matrix() @ camera.R
    return Camera(camera.image_name, camera.width, camera.height, camera.K, R, -R @ camera.center)


CAMERAS = orbit_cameras(12, 64)
ROTATION = Rotation.from_euler("xyz", (20, -35, 70), degrees=True).as_matrix()
ANOTHER_FRAME = [_in_other_frame(c, ROTATION, 2.5, np.array([1.0, -2.0, 0.5])) for c in CAMERAS]


def test_the_same_cameras_in_another_frame_agree():
    assert runs_agree(_model(CAMERAS), _model(ANOTHER_FRAME))


def test_a_camera_turned_by_more_than_the_tolerance_breaks_agreement():
    slightly, badly = list(ANOTHER_FRAME), list(ANOTHER_FRAME)
    slightly[3] = _turned(slightly[3], 5.0)
    badly[3] = _turned(badly[3], 20.0)
    assert runs_agree(_model(CAMERAS), _model(slightly))
    assert not runs_agree(_model(CAMERAS), _model(badly))


def test_cameras_placed_in_mirror_image_do_not_agree():
    # A symmetric object matched to its mirror image: each camera lands at its reflection across a plane.
    mirror = np.diag([-1.0, 1.0, 1.0])
    mirrored = [Camera(c.image_name, c.width, c.height, c.K, mirror @ c.R @ mirror, mirror @ c.t) for c in CAMERAS]
    assert not runs_agree(_model(CAMERAS), _model(mirrored))


def test_a_partial_run_confirms_what_it_shares_but_too_few_shared_cameras_or_no_model_do_not():
    assert runs_agree(_model(CAMERAS), _model(ANOTHER_FRAME[:6]))  # a partial run confirms what it shares
    assert not runs_agree(_model(CAMERAS[:10]), _model(ANOTHER_FRAME[4:]))  # 6 of 8: a quarter unconfirmed
    assert not runs_agree(_model(CAMERAS[:2]), _model(ANOTHER_FRAME[:2]))
    assert not runs_agree(None, _model(CAMERAS))


def _scripted_mapping(monkeypatch, models: list[SfmModel | None]) -> list[int]:
    """Makes each incremental mapping run give the next of `models`; returns the random seeds the runs used."""
    seeds: list[int] = []
    script = iter(models)

    def incremental_mapping(database, image_dir, models_dir, options, **callbacks):
        seeds.append(options.random_seed)
        return {}

    monkeypatch.setattr(pycolmap, "incremental_mapping", incremental_mapping)
    monkeypatch.setattr(sfm, "_joined", lambda reconstructions, by_name: next(script))
    monkeypatch.setattr(sfm, "_initial_pairs", lambda database, count: [(2 * k + 1, 2 * k + 2) for k in range(count)])
    return seeds


def test_later_runs_start_from_other_strong_pairs_that_share_no_image(tmp_path):
    database = tmp_path / "database.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE two_view_geometries (pair_id INTEGER, rows INTEGER)")
        pairs = {(1, 2): 300, (2, 3): 250, (4, 5): 200, (1, 6): 150, (6, 7): 120, (8, 9): 0}
        connection.executemany(
            "INSERT INTO two_view_geometries VALUES (?, ?)",
            [(a * sfm._PAIR_BASE + b, rows) for (a, b), rows in pairs.items()],
        )
    assert sfm._initial_pairs(database, 3) == [(1, 2), (4, 5), (6, 7)]
    assert sfm._initial_pairs(database, 10) == [(1, 2), (4, 5), (6, 7)]
    assert sfm._initial_pairs(tmp_path / "missing.db", 3) == []


def test_mapping_stops_when_no_other_start_is_left(monkeypatch, tmp_path):
    wrong = [_model([_turned(c, 40.0 * run) for c in CAMERAS]) for run in range(WIDE_BASELINE_ATTEMPT.mapping_runs)]
    seeds = _scripted_mapping(monkeypatch, wrong)
    monkeypatch.setattr(sfm, "_initial_pairs", lambda database, count: [(1, 2)])
    outcome = _map(tmp_path, WIDE_BASELINE_ATTEMPT)
    assert seeds == [0, 1] and outcome.model is None


def _map(tmp_path, attempt: sfm.Attempt) -> sfm._Outcome:
    by_name = {c.image_name: c.image_name for c in CAMERAS}
    return sfm._map(attempt, tmp_path, tmp_path / "database.db", tmp_path, by_name, lambda: False)


def test_the_permissive_attempt_keeps_a_model_only_once_a_second_run_confirms_it(monkeypatch, tmp_path):
    wrong = _model([_turned(c, 40.0 * (i % 2)) for i, c in enumerate(CAMERAS)])
    seeds = _scripted_mapping(monkeypatch, [wrong, _model(CAMERAS), _model(ANOTHER_FRAME), wrong])
    outcome = _map(tmp_path, WIDE_BASELINE_ATTEMPT)
    assert outcome.registered == len(CAMERAS)
    assert outcome.model is not None and runs_agree(outcome.model, _model(CAMERAS))
    assert not outcome.unconfirmed
    assert seeds == [0, 1, 2]  # each run its own seed; the third confirmed the second, so no fourth


def test_the_permissive_attempt_gives_no_model_when_no_two_runs_agree(monkeypatch, tmp_path):
    runs = [_model([_turned(c, 40.0 * run) for c in CAMERAS]) for run in range(WIDE_BASELINE_ATTEMPT.mapping_runs)]
    _scripted_mapping(monkeypatch, runs)
    outcome = _map(tmp_path, WIDE_BASELINE_ATTEMPT)
    assert outcome.model is None and outcome.registered == 0
    assert outcome.unconfirmed


def _map_judged(tmp_path, coverage) -> sfm._Outcome:
    by_name = {c.image_name: c.image_name for c in CAMERAS}
    return sfm._map(WIDE_BASELINE_ATTEMPT, tmp_path, tmp_path / "database.db", tmp_path, by_name, lambda: False, coverage)


def test_with_masks_the_silhouettes_judge_each_run_and_the_best_covered_is_kept(monkeypatch, tmp_path):
    wrong, fair, good = _model([_turned(c, 40.0 * (i % 2)) for i, c in enumerate(CAMERAS)]), _model(ANOTHER_FRAME), _model(CAMERAS)
    seeds = _scripted_mapping(monkeypatch, [wrong, wrong, fair, good])
    judged = {id(wrong): 0.89, id(fair): 0.95, id(good): 0.995}
    outcome = _map_judged(tmp_path, lambda model: (model, judged[id(model)], []))
    # Two runs agreeing on `wrong` do not count; `fair` is confirmed but mapping goes on for a better covered run.
    assert outcome.model is good and outcome.coverage == 0.995 and not outcome.unconfirmed
    assert seeds == [0, 1, 2, 3]


def test_with_masks_mapping_stops_at_the_first_complete_run_the_silhouettes_fully_confirm(monkeypatch, tmp_path):
    good = _model(CAMERAS)
    seeds = _scripted_mapping(monkeypatch, [good, _model(ANOTHER_FRAME)])
    outcome = _map_judged(tmp_path, lambda model: (model, 1.0, []))
    assert outcome.model is good and seeds == [0]


def test_with_masks_no_run_is_kept_when_the_silhouettes_refuse_them_all(monkeypatch, tmp_path):
    _scripted_mapping(monkeypatch, [_model(CAMERAS)] * WIDE_BASELINE_ATTEMPT.mapping_runs)
    outcome = _map_judged(tmp_path, lambda model: (model, sfm.MIN_SILHOUETTE_COVERAGE - 0.01, []))
    assert outcome.model is None and outcome.unconfirmed


def test_with_masks_a_model_of_few_views_needs_an_agreeing_run_as_well_as_the_silhouettes(monkeypatch, tmp_path):
    few = len(CAMERAS) // 3
    runs = WIDE_BASELINE_ATTEMPT.mapping_runs
    lone = [_model([_turned(c, 40.0 * run) for c in CAMERAS[:few]]) for run in range(runs)]  # no two agree
    _scripted_mapping(monkeypatch, lone)
    refused = _map_judged(tmp_path, lambda model: (model, 0.95, []))
    assert refused.model is None and refused.unconfirmed

    confirmed = _model(ANOTHER_FRAME[:few])
    _scripted_mapping(monkeypatch, [_model(CAMERAS[:few]), confirmed] + lone[2:])
    kept = _map_judged(tmp_path, lambda model: (model, 0.95, []))
    assert kept.model is confirmed and kept.registered == few


def test_an_attempt_without_agreement_keeps_its_first_complete_run(monkeypatch, tmp_path):
    lone = _model([_turned(c, 40.0) for c in CAMERAS])
    seeds = _scripted_mapping(monkeypatch, [lone])
    outcome = _map(tmp_path, dataclasses.replace(WIDE_BASELINE_ATTEMPT, require_agreement=False))
    assert outcome.model is lone
    assert seeds == [-1]  # COLMAP's own seeding where no agreement is asked for


def test_a_failure_says_when_the_permissive_attempt_found_only_disagreeing_models(monkeypatch, tmp_path):
    def mapping(attempt, attempt_dir, database, image_dir, by_name, cancel, coverage):
        return sfm._Outcome(attempt, database, [], None, unconfirmed=attempt.require_agreement)

    monkeypatch.setattr(sfm, "_map", mapping)
    pixels = np.random.default_rng(0).random((96, 96, 3), dtype=np.float32)
    with pytest.raises(BackendFailed) as error:
        sfm.structure_from_motion(
            [View(f"view_{i}.png", pixels) for i in range(3)],
            tmp_path / "sfm",
            tmp_path / "sparse",
            max_image_size=256,
            exhaustive_max_images=50,
            focal_length_prior=1.2,
            cancel=lambda: False,
            wide_baseline_retry=True,
        )
    assert error.value.message.endswith(
        "The wide-baseline attempt placed the images differently on every run, so none was kept: the matches are"
        " ambiguous (a symmetric or repetitive object?)."
    )


@pytest.fixture(scope="module")
def leg_scene():
    """Twelve cameras round an off-centre, oval object, and its silhouettes."""
    points = chair_leg_object()
    points[:, 0] *= 1.6
    points[40_000:, 0] += 0.35
    cameras = ring_cameras(12)
    return cameras, {camera.image_name: splat(camera, points) for camera in cameras}


def test_one_misplaced_camera_is_left_out_and_the_rest_kept(leg_scene):
    cameras, masks = leg_scene
    placed = list(cameras)
    placed[5] = _turned_about_the_object(cameras[5], 60.0)
    model = _model(placed)
    assert sfm.least_silhouette_coverage(model, masks) < sfm.MIN_SILHOUETTE_COVERAGE

    kept, coverage, contradicted = sfm.confirmed_by_silhouettes(model, masks)

    assert contradicted == [cameras[5].image_name]
    assert sorted(kept.cameras) == sorted(c.image_name for c in cameras if c is not cameras[5])
    assert coverage >= sfm.MIN_SILHOUETTE_COVERAGE


def test_a_model_wrong_in_many_views_is_not_trimmed_into_acceptance(leg_scene):
    cameras, masks = leg_scene
    model = _model([_turned_about_the_object(c, 60.0) if i % 3 == 0 else c for i, c in enumerate(cameras)])
    kept, coverage, contradicted = sfm.confirmed_by_silhouettes(model, masks)
    assert kept is model and not contradicted and coverage < sfm.MIN_SILHOUETTE_COVERAGE


def test_right_cameras_are_confirmed_whole(leg_scene):
    cameras, masks = leg_scene
    model = _model(cameras)
    kept, coverage, contradicted = sfm.confirmed_by_silhouettes(model, masks)
    assert kept is model and not contradicted and coverage > 0.97


@pytest.mark.slow
def test_a_cancel_stops_colmaps_mapping_at_the_next_image(tmp_path):
    from .scenes import textured_blob_photos

    textured_blob_photos(tmp_path / "photos")
    views = views_from_capture(SimpleNamespace(images=sorted((tmp_path / "photos").iterdir())))[0]
    asked = []

    def cancel():  # after extraction and matching, the third ask comes from mapping's first image
        asked.append(True)
        return len(asked) >= 3

    with pytest.raises(Cancelled, match="^Cancelled during structure from motion"):
        sfm.structure_from_motion(
            views, tmp_path / "sfm", tmp_path / "sparse", max_image_size=256, exhaustive_max_images=50,
            focal_length_prior=1.2, cancel=cancel,
        )
    assert len(asked) == 4  # the one that pulled COLMAP's token, and the check of why mapping stopped
