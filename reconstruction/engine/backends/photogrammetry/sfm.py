"""Structure from motion with pycolmap: SIFT features, matching, incremental mapping, and why images failed."""
from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# isort: off
# pycolmap's wheel carries its own zlib; loaded before Pillow's _imaging, Pillow's PNG encoder later frees
# memory with the wrong deflateEnd and the process aborts. Importing Pillow first binds Pillow to the system zlib.
from PIL import Image
import pycolmap
# isort: on

from reconstruction.engine.cameras import Camera, write_colmap_text
from reconstruction.engine.carving import most_contradicting_view, silhouette_coverage
from reconstruction.engine.errors import BackendFailed, Cancelled
from reconstruction.engine.metrics import pose_errors
from reconstruction.engine.protocol import CancelFn

from .lens import simplest_lens
from .merging import SfmModel, merge_models
from .retriangulation import retriangulated
from .views import MIN_VIEWS, View

# Fewer SIFT features than this and an image can hardly be registered: reported as the likely reason.
FEW_FEATURES = 100
# A mapping run may take no longer than this. Runs of the 24-view renders take 2-4 s, but on SheenChair's ambiguous
# matches one run from a given initial pair registered and dropped the same images over and over, 3,445
# registrations in 8 minutes, for a model the silhouettes then refused.
MAPPING_SECONDS = 60
MAPPING_SECONDS_PER_IMAGE = 5
_PAIR_BASE = 2147483647
_EXIF_IFD, _EXIF_FOCAL_LENGTH, _EXIF_FOCAL_LENGTH_35MM = 0x8769, 0x920A, 0xA405
# Two mapping runs agree when, after the similarity that best maps one's camera centres onto the other's, the centres
# miss by at most this share of the cameras' spread (median) and the orientations by at most these degrees (worst),
# over cameras making up at least AGREEMENT_MIN_SHARED of the smaller run. Runs of Avocado's 24-view renders (a full
# one against a partial one included) differ by up to 0.006 and 5.5°; wrong models of the symmetric SheenChair and
# WaterBottle by 0.02-0.4 and 48-180° from one another.
AGREEMENT_MAX_CENTRE_ERROR = 0.02
AGREEMENT_MAX_ROTATION_DEG = 10.0
AGREEMENT_MIN_SHARED = 0.8
# With a mask for every image, a model of the permissive attempt counts when the visual hull of its cameras covers
# at least this share of every registered view's mask (carving.silhouette_coverage), whether or not another run
# agrees. Right cameras of the 24-view renders leave 0.94-1.0; wrong ones less: SheenChair's that two runs agreed
# on 0.01, one of the nearly round WaterBottle (cameras 89° off) 0.89; one camera turned 30° about the object
# 0.88-0.94, and 111° 0.74.
MIN_SILHOUETTE_COVERAGE = 0.93
# Few cameras carve little: a model placing fewer than this share of the views needs another run that agrees with it
# as well as the silhouettes. WaterBottle, images only, once got a wrong model of 9 of 24 views (rotations 66° off)
# that covered every mask to 0.95: a nearly round bottle's silhouettes barely constrain a turn about its axis.
SILHOUETTES_ALONE_MIN_SHARE = 0.5
# Mapping runs go on, each judged by its silhouettes, until one places every image with at least this coverage.
GOOD_SILHOUETTE_COVERAGE = 0.99
# A model that falls short only because of a camera or two (the rocker arm seen end-on, placed 11° off: 0.926, and
# 1.0 without it) keeps the rest: the least covered view is left out while coverage stays short, up to this share
# of the views. A wrong model of a symmetric object contradicts the silhouettes in most views and stays refused.
MAX_CONTRADICTED_SHARE = 0.1


@dataclass(frozen=True)
class Attempt:
    """One try at SfM: how readily features are found and matched, and what the mapper asks of them.

    `mapper` and `pipeline` override fields of pycolmap's IncrementalMapperOptions and IncrementalPipelineOptions;
    anything not named keeps COLMAP's default.
    """

    name: str
    peak_threshold_scale: float = 1.0  # × the configured SIFT peak threshold
    first_octave: int = -1  # COLMAP's default -1 doubles the image before detection; -2 quadruples it
    max_ratio: float | None = None  # Lowe's ratio test; None keeps COLMAP's 0.8
    mapper: Mapping[str, Any] = field(default_factory=dict)
    pipeline: Mapping[str, Any] = field(default_factory=dict)
    # On weak matches a run may split the views into two models where a run from another initial pair places them
    # all. Mapping is cheap next to extraction and matching.
    mapping_runs: int = 1
    # Keep only a model that a second run, from another random seed, places alike (runs_agree), or, when every
    # image has a mask, whose cameras the silhouettes confirm (MIN_SILHOUETTE_COVERAGE). On ambiguous matches
    # (a symmetric object matched to its mirror image) each run settles on a different wrong model.
    require_agreement: bool = False


DEFAULT_ATTEMPT = Attempt("default")
# For views far apart (turntables of 8 views a ring, 45° apart) of weakly textured objects, COLMAP's defaults find
# ~50-100 features and a few pairs of 15-25 matches, short of the 100 inliers its first pair needs. Fainter features,
# found on images upsampled 4× (Avocado: 363 a view at 2×, 1,005 at 4×, and the focal length within 0.1% rather than
# 2%), and a looser ratio test give several times more matches, nearly all correct; the mapper then starts from fewer,
# and leaves the one shared focal length to bundle adjustment (refined per image during registration, it drifted
# and split the model in two). Its outlier filters stay COLMAP's: loosened too, half the runs converged on a wrong
# but complete model. Structure-less registration is off: on such sparse matches it ran for many minutes without
# placing an image. Even so, symmetric objects (SheenChair, WaterBottle) gave complete but wrong models, each run
# another: a model counts only once confirmed, by the silhouettes where every image has a mask, else by a second run
# that agrees with it (Avocado's four runs agree to 0.5°, WaterBottle's and SheenChair's wrong ones by no better
# than 45°), and the attempt gives none when nothing confirms one.
WIDE_BASELINE_ATTEMPT = Attempt(
    "wide-baseline", peak_threshold_scale=0.125, first_octave=-2, max_ratio=0.9,
    mapper={
        "init_min_num_inliers": 30, "init_min_tri_angle": 8.0, "abs_pose_min_num_inliers": 12,
        "abs_pose_refine_focal_length": False,
    },
    pipeline={"structure_less_registration_fallback": False, "ba_refine_extra_params": False},
    mapping_runs=4,
    require_agreement=True,
)


@dataclass
class SparseModel:
    """Cameras of the registered views (by name), the sparse points, and how the registration went."""

    cameras: dict[str, Camera]
    points: np.ndarray  # (N, 3) world coordinates
    point_views: list[list[str]]  # names of the views that see each point
    registered: int
    total: int
    mean_reprojection_error_px: float
    failed: dict[str, str] = field(default_factory=dict)  # name → why it was not registered
    attempt: str = DEFAULT_ATTEMPT.name  # which Attempt gave this model
    silhouette_coverage: float | None = None  # least share of a view's mask its cameras' hull covers (with masks)
    separate_models: int = 1  # COLMAP's models the cameras came from, triangulated again as one when more
    distortion_dropped: bool = False  # the tracks fit as well without radial distortion (lens.py)

    @property
    def partial(self) -> bool:
        return self.registered < self.total


def structure_from_motion(
    views: list[View],
    folder: Path,
    sparse_dir: Path,
    *,
    max_image_size: int,
    exhaustive_max_images: int,
    focal_length_prior: float,
    cancel: CancelFn,
    sift_peak_threshold: float = 0.0067,
    intrinsics: np.ndarray | None = None,
    wide_baseline_retry: bool = False,
) -> SparseModel:
    """Estimates cameras for `views`; writes the COLMAP database under `folder` and the text model in `sparse_dir`.

    `intrinsics` (a 3×3 K shared by every image, e.g. from K.txt) seeds the cameras; otherwise EXIF focal
    lengths do, and `focal_length_prior` × the longer side where a photo has none. Separate COLMAP models that
    agree on shared cameras are joined (merging.py) and triangulated again as one (retriangulation.py); radial
    distortion stays only where the tracks show it (lens.py). When COLMAP's defaults leave an image out and
    `wide_baseline_retry` is set, SfM runs again with WIDE_BASELINE_ATTEMPT and the model with more images is kept.
    When every view has a mask, the silhouettes judge that attempt's models (confirmed_by_silhouettes).
    """
    folder.mkdir(parents=True, exist_ok=True)
    image_dir, names = _image_folder(views, folder)
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    reader.default_focal_length_factor = focal_length_prior
    if intrinsics is not None and len({view.size for view in views}) == 1:
        focal = (intrinsics[0, 0] + intrinsics[1, 1]) / 2
        reader.camera_params = f"{focal},{intrinsics[0, 2]},{intrinsics[1, 2]},0"

    camera_mode = pycolmap.CameraMode.SINGLE if _one_unknown_camera(views) else pycolmap.CameraMode.AUTO
    attempts = [DEFAULT_ATTEMPT, WIDE_BASELINE_ATTEMPT] if wide_baseline_retry else [DEFAULT_ATTEMPT]
    by_name = {rename: view.name for rename, view in zip(names, views, strict=True)}
    masks = {view.name: view.mask for view in views if view.mask is not None}
    coverage = (lambda model: confirmed_by_silhouettes(model, masks)) if len(masks) == len(views) else None
    kept: _Outcome | None = None
    unconfirmed: list[str] = []  # attempts whose mapping runs all placed the images differently
    for attempt in attempts:
        attempt_dir = folder / attempt.name
        attempt_dir.mkdir(exist_ok=True)
        database = attempt_dir / "database.db"
        database.unlink(missing_ok=True)
        _extract_and_match(
            database, image_dir, names, reader, camera_mode, attempt, cancel,
            max_image_size=max_image_size, sift_peak_threshold=sift_peak_threshold,
            exhaustive=len(views) <= exhaustive_max_images,
        )
        outcome = _map(attempt, attempt_dir, database, image_dir, by_name, cancel, coverage)
        if outcome.unconfirmed:
            unconfirmed.append(attempt.name)
        if kept is None or outcome.registered > kept.registered:
            kept = outcome
        if not needs_retry(kept.registered, len(views)):
            break
    assert kept is not None
    diagnosis = _diagnose(kept.database)
    if kept.model is None:
        reasons = {by_name[n]: diagnosis.get(n, "could not be registered") for n in names}
        raise BackendFailed(_too_few_message(0, len(views), reasons, unconfirmed, coverage is not None))
    model, largest = kept.model, max(kept.reconstructions, key=lambda r: (r.num_reg_images(), r.num_points3D()))
    cameras = model.cameras
    others = {
        reconstruction.images[i].name: reconstruction.num_reg_images()
        for reconstruction in kept.reconstructions for i in reconstruction.reg_image_ids()
    }
    failed = {}
    for name in names:
        if by_name[name] in cameras:
            continue
        if by_name[name] in kept.contradicted:
            failed[by_name[name]] = (
                "placed by structure from motion where its silhouette contradicts the other views (a misplaced "
                "camera), so left out"
            )
        elif name in others:
            failed[by_name[name]] = f"registered only in a separate model of {others[name]} images not connected to the main one"
        else:
            failed[by_name[name]] = diagnosis.get(name, "could not be registered")
    if len(cameras) < MIN_VIEWS:
        raise BackendFailed(_too_few_message(len(cameras), len(views), failed, unconfirmed, coverage is not None))

    model, largest, plain = _as_one_model(kept, model, largest, image_dir, by_name, folder / kept.attempt.name)
    cameras = model.cameras
    sparse_dir.mkdir(parents=True, exist_ok=True)
    if len(cameras) == largest.num_reg_images():
        largest.write_text(str(sparse_dir))
    else:  # cameras only: joined models not triangulated as one, or views left out for their silhouettes
        write_colmap_text(sparse_dir, cameras.values())
    return SparseModel(
        cameras=cameras,
        points=model.points,
        point_views=model.point_views,
        registered=len(cameras),
        total=len(views),
        mean_reprojection_error_px=float(largest.compute_mean_reprojection_error()),
        failed=failed,
        attempt=kept.attempt.name,
        silhouette_coverage=(kept.coverage or coverage(model)[1]) if coverage is not None else None,
        separate_models=len(kept.reconstructions),
        distortion_dropped=plain,
    )


@dataclass
class _Outcome:
    """What one attempt gave: COLMAP's models and, joined where they agree, the one used."""

    attempt: Attempt
    database: Path
    reconstructions: list[pycolmap.Reconstruction]
    model: SfmModel | None
    unconfirmed: bool = False  # runs gave models, but none was confirmed (Attempt.require_agreement)
    coverage: float = 0.0  # the model's least silhouette coverage, where the silhouettes judged it
    contradicted: list[str] = field(default_factory=list)  # views left out of `model`: their silhouettes contradict it

    @property
    def registered(self) -> int:
        return len(self.model.cameras) if self.model is not None else 0


def _map(
    attempt: Attempt, attempt_dir: Path, database: Path, image_dir: Path, by_name: dict[str, str], cancel: CancelFn,
    coverage: Callable[[SfmModel], tuple[SfmModel, float, list[str]]] | None = None,
) -> _Outcome:
    """Incremental mapping, run up to `attempt.mapping_runs` times until every image is placed; the fullest run.

    With `attempt.require_agreement` each run after the first starts from another strong image pair, and only
    confirmed runs count: by their silhouette `coverage` when given (at least MIN_SILHOUETTE_COVERAGE once up to
    MAX_CONTRADICTED_SHARE of the views are left out, and an agreeing run too below SILHOUETTES_ALONE_MIN_SHARE of the
    views; of the fullest, the best covered is kept), else by another run that agrees. The outcome has no model when
    none is confirmed.
    """
    best = _Outcome(attempt, database, [], None)
    earlier: list[_Outcome] = []
    # COLMAP's mapping gives the same model from the same matches whatever its seed, so runs after the first start
    # from other strong image pairs, or they would only repeat (and "agree" with) the first.
    starts = _initial_pairs(database, attempt.mapping_runs - 1) if attempt.require_agreement else []
    for run in range(attempt.mapping_runs):
        if run > 0 and attempt.require_agreement and run - 1 >= len(starts):
            break
        models_dir = attempt_dir / f"models-{run}"
        models_dir.mkdir(exist_ok=True)
        options = _mapping_options(attempt, len(by_name))
        if attempt.require_agreement:
            options.random_seed = options.mapper.random_seed = options.triangulation.random_seed = run
            if run > 0:
                options.init_image_id1, options.init_image_id2 = starts[run - 1]
        token, next_image = _cancellable(cancel)
        try:
            mapped = pycolmap.incremental_mapping(
                database, image_dir, models_dir, options, next_image_callback=next_image, cancellation_token=token
            )
        except InterruptedError:  # what pycolmap raises once the token is pulled
            _check_cancel(cancel)
            raise
        _check_cancel(cancel)
        reconstructions = list(mapped.values())
        outcome = _Outcome(attempt, database, reconstructions, _joined(reconstructions, by_name))
        candidates = [outcome]
        if attempt.require_agreement and coverage is not None:
            if outcome.model is not None:
                outcome.model, outcome.coverage, outcome.contradicted = coverage(outcome.model)
            confirmed = outcome.coverage >= MIN_SILHOUETTE_COVERAGE
            if confirmed and outcome.registered < SILHOUETTES_ALONE_MIN_SHARE * len(by_name):
                confirmed = any(runs_agree(outcome.model, other.model) for other in earlier)
            earlier.append(outcome)
            candidates = [outcome] if confirmed else []
        elif attempt.require_agreement:
            confirming = [other for other in earlier if runs_agree(outcome.model, other.model)]
            earlier.append(outcome)
            candidates = [outcome, *confirming] if confirming else []
        for candidate in candidates:
            if (candidate.registered, candidate.coverage) > (best.registered, best.coverage):
                best = candidate
        judged = attempt.require_agreement and coverage is not None
        if not needs_retry(best.registered, len(by_name)) and (not judged or best.coverage >= GOOD_SILHOUETTE_COVERAGE):
            break
    best.unconfirmed = best.model is None and any(run.model is not None for run in earlier)
    return best


def _as_one_model(
    kept: _Outcome, model: SfmModel, largest: pycolmap.Reconstruction, image_dir: Path, by_name: dict[str, str],
    folder: Path,
) -> tuple[SfmModel, pycolmap.Reconstruction, bool]:
    """`model` (kept's cameras, COLMAP's `largest` among them) as one COLMAP model where it can be: joined models
    triangulated again as one (retriangulation.py), then the simplest lens its tracks support (lens.py). Returns
    the model, its COLMAP model, and whether radial distortion was dropped."""
    if len(model.cameras) > largest.num_reg_images():
        database_names = {view: name for name, view in by_name.items()}
        unified = retriangulated(
            kept.database, image_dir, kept.reconstructions,
            {database_names[n]: c for n, c in model.cameras.items()}, folder / "retriangulated",
        )
        if unified is None:
            return model, largest, False
        largest, model = unified, _joined([unified], by_name) or model
    elif len(model.cameras) < largest.num_reg_images():  # views left out for their silhouettes
        return model, largest, False
    largest, plain = simplest_lens(largest)
    return (_joined([largest], by_name) or model) if plain else model, largest, plain


def runs_agree(first: SfmModel | None, second: SfmModel | None) -> bool:
    """Whether two models place the cameras they share alike, up to a similarity, and share most of the smaller one's."""
    if first is None or second is None:
        return False
    shared = set(first.cameras) & set(second.cameras)
    if len(shared) < MIN_VIEWS or len(shared) < AGREEMENT_MIN_SHARED * min(len(first.cameras), len(second.cameras)):
        return False
    errors = pose_errors(
        {name: (first.cameras[name].R, first.cameras[name].center) for name in shared},
        {name: (second.cameras[name].R, second.cameras[name].center) for name in shared},
    )
    return bool(
        errors["centre_error_relative_to_spread"]["median"] <= AGREEMENT_MAX_CENTRE_ERROR
        and errors["rotation_error_deg"]["max"] <= AGREEMENT_MAX_ROTATION_DEG
    )


def least_silhouette_coverage(model: SfmModel, masks: Mapping[str, np.ndarray]) -> float:
    """The least share of a registered view's mask that the hull of the model's cameras covers (0 below 3 views)."""
    if len(model.cameras) < MIN_VIEWS:
        return 0.0
    cameras = list(model.cameras.values())
    return float(silhouette_coverage(cameras, [masks[name] for name in model.cameras]).min())


def confirmed_by_silhouettes(
    model: SfmModel, masks: Mapping[str, np.ndarray]
) -> tuple[SfmModel, float, list[str]]:
    """The model less the few views whose silhouettes contradict it, its least coverage, and the views left out.

    While some view's mask is covered less than MIN_SILHOUETTE_COVERAGE, the camera whose leaving out covers the rest
    best is left out (carving.coverage_without_each), up to MAX_CONTRADICTED_SHARE of the views; when that does not
    bring every view up to it, the model is returned whole with its own coverage.
    """
    if len(model.cameras) < MIN_VIEWS:
        return model, 0.0, []
    cameras = dict(model.cameras)
    least = first = least_silhouette_coverage(model, masks)
    contradicted: list[str] = []
    allowed = int(MAX_CONTRADICTED_SHARE * len(cameras))
    while least < MIN_SILHOUETTE_COVERAGE and len(contradicted) < allowed and len(cameras) > MIN_VIEWS:
        names = list(cameras)
        best, least = most_contradicting_view([cameras[n] for n in names], [masks[n] for n in names])
        contradicted.append(names[best])
        del cameras[names[best]]
    if least < MIN_SILHOUETTE_COVERAGE:
        return model, first, []
    if not contradicted:
        return model, least, []
    point_views = [[name for name in seen if name in cameras] for seen in model.point_views]
    return SfmModel(cameras, model.points, point_views), least, contradicted


def _joined(reconstructions: list[pycolmap.Reconstruction], by_name: dict[str, str]) -> SfmModel | None:
    """COLMAP's models as cameras and points by view name, the separate ones joined where they agree."""
    models = []
    for reconstruction in reconstructions:
        ids_to_name = {i: by_name[reconstruction.images[i].name] for i in reconstruction.reg_image_ids()}
        cameras = {name: _camera(reconstruction, reconstruction.images[i], name) for i, name in ids_to_name.items()}
        points = [p.xyz for p in reconstruction.points3D.values()]
        point_views = [
            sorted({ids_to_name[e.image_id] for e in p.track.elements if e.image_id in ids_to_name})
            for p in reconstruction.points3D.values()
        ]
        models.append(SfmModel(cameras, np.asarray(points, dtype=np.float64).reshape(-1, 3), point_views))
    return merge_models(models) if models else None


def _initial_pairs(database: Path, count: int) -> list[tuple[int, int]]:
    """Up to `count` image pairs with the most verified matches, no image in two of them (database image ids)."""
    if count <= 0 or not database.exists():
        return []
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT pair_id, rows FROM two_view_geometries WHERE rows > 0 ORDER BY rows DESC")
        pairs = [((pair_id - pair_id % _PAIR_BASE) // _PAIR_BASE, pair_id % _PAIR_BASE) for pair_id, _ in rows]
    chosen: list[tuple[int, int]] = []
    used: set[int] = set()
    for first, second in pairs:
        if first not in used and second not in used:
            chosen.append((int(first), int(second)))
            used.update((first, second))
            if len(chosen) == count:
                break
    return chosen


def needs_retry(registered: int, total: int) -> bool:
    """Whether another, more permissive attempt is worth its time: some image is still not in the main model."""
    return registered < total


def _one_unknown_camera(views: list[View]) -> bool:
    """Whether to give every image one shared camera: all are the same size and none has an EXIF focal length.

    Nothing then tells the cameras apart, and COLMAP would give each image its own focal length: on weakly
    connected views (renders of plain objects) those drift apart (some to 500× the truth) and the poses are wrong.
    """
    if len({view.size for view in views}) != 1:
        return False
    return not any(_exif_focal_length(view.path) for view in views if view.path is not None)


def _exif_focal_length(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            exif = image.getexif().get_ifd(_EXIF_IFD)
    except OSError:
        return False
    return bool(exif.get(_EXIF_FOCAL_LENGTH) or exif.get(_EXIF_FOCAL_LENGTH_35MM))


def _extract_and_match(
    database: Path, image_dir: Path, names: list[str], reader: pycolmap.ImageReaderOptions,
    camera_mode: pycolmap.CameraMode, attempt: Attempt, cancel: CancelFn,
    *, max_image_size: int, sift_peak_threshold: float, exhaustive: bool,
) -> None:
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = max_image_size
    extraction.sift.peak_threshold = sift_peak_threshold * attempt.peak_threshold_scale
    extraction.sift.first_octave = attempt.first_octave
    pycolmap.extract_features(
        database, image_dir, image_names=names, camera_mode=camera_mode,
        reader_options=reader, extraction_options=extraction, device=pycolmap.Device.auto,
    )
    _check_cancel(cancel)
    matching = pycolmap.FeatureMatchingOptions()
    if attempt.max_ratio is not None:
        matching.sift.max_ratio = attempt.max_ratio
    if exhaustive:
        pycolmap.match_exhaustive(database, matching_options=matching, device=pycolmap.Device.auto)
    else:
        # Without GPS or a vocabulary tree, neighbours in capture order are the best guess of overlap.
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 15
        pairing.quadratic_overlap = True
        pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.auto)
    _check_cancel(cancel)


def _cancellable(cancel: CancelFn) -> tuple[pycolmap.CancellationToken, Callable[[], None]]:
    """A token that stops COLMAP's mapping, and the callback (run before each image it registers) that pulls it
    once `cancel` says so: a long mapping run no longer holds a cancelled job until it ends."""
    token = pycolmap.CancellationToken()

    def next_image() -> None:
        if cancel():
            token.cancel()

    return token, next_image


def _mapping_options(attempt: Attempt, images: int) -> pycolmap.IncrementalPipelineOptions:
    options = pycolmap.IncrementalPipelineOptions()
    options.max_runtime_seconds = MAPPING_SECONDS + MAPPING_SECONDS_PER_IMAGE * images
    for name, value in attempt.mapper.items():
        setattr(options.mapper, name, value)
    for name, value in attempt.pipeline.items():
        setattr(options, name, value)
    return options


def _too_few_message(
    registered: int, total: int, reasons: dict[str, str], unconfirmed: list[str], by_silhouettes: bool
) -> str:
    listed = "; ".join(f"{name}: {why}" for name, why in sorted(reasons.items()))
    message = (
        f"Structure from motion registered {registered} of {total} images; at least {MIN_VIEWS} are needed. "
        f"Not registered: {listed}."
    )
    for attempt in unconfirmed:
        why = (
            "found only models whose cameras contradict the silhouettes, or that placed too few views for the "
            "silhouettes alone and no other run agreed with"
            if by_silhouettes else "placed the images differently on every run"
        )
        message += (
            f" The {attempt} attempt {why}, so none was kept: the matches are ambiguous (a symmetric or repetitive"
            " object?)."
        )
    return message


def _check_cancel(cancel: CancelFn) -> None:
    if cancel():
        raise Cancelled("Cancelled during structure from motion.")


def _image_folder(views: list[View], folder: Path) -> tuple[Path, list[str]]:
    """Where pycolmap reads the images: the original files when all lie in one folder (EXIF kept), else PNG copies."""
    paths = [view.path for view in views]
    if all(p is not None for p in paths) and len({p.parent.resolve() for p in paths if p is not None}) == 1:
        parent = paths[0].parent.resolve()  # type: ignore[union-attr]
        return parent, [p.name for p in paths]  # type: ignore[union-attr]
    image_dir = folder / "images"
    image_dir.mkdir(exist_ok=True)
    names = []
    for index, view in enumerate(views):
        name = f"{index:04d}_{Path(view.name).stem}.png"
        Image.fromarray((view.image * 255).round().astype(np.uint8)).save(image_dir / name)
        names.append(name)
    return image_dir, names


def _camera(reconstruction: pycolmap.Reconstruction, image: pycolmap.Image, name: str) -> Camera:
    camera = reconstruction.cameras[image.camera_id]
    pose = image.cam_from_world() if callable(image.cam_from_world) else image.cam_from_world
    K = np.asarray(camera.calibration_matrix(), dtype=np.float64)
    params = dict(zip(camera.params_info.split(", "), camera.params, strict=False)) if isinstance(camera.params_info, str) else {}
    k1 = float(params.get("k", params.get("k1", 0.0)))
    return Camera(
        name, camera.width, camera.height, K,
        np.asarray(pose.rotation.matrix(), dtype=np.float64), np.asarray(pose.translation, dtype=np.float64),
        (k1, 0.0, 0.0, 0.0),
    )


def _diagnose(database: Path) -> dict[str, str]:
    """Why each image may have failed, from the features and verified matches in the database (by file name)."""
    with sqlite3.connect(database) as connection:
        names = dict(connection.execute("SELECT image_id, name FROM images"))
        keypoints = dict(connection.execute("SELECT image_id, rows FROM keypoints"))
        best_inliers: dict[int, int] = defaultdict(int)
        for pair_id, rows in connection.execute("SELECT pair_id, rows FROM two_view_geometries WHERE rows > 0"):
            second = pair_id % _PAIR_BASE
            first = (pair_id - second) // _PAIR_BASE
            for image_id in (first, second):
                best_inliers[image_id] = max(best_inliers[image_id], rows)
    reasons = {}
    for image_id, name in names.items():
        features = keypoints.get(image_id, 0)
        if features < FEW_FEATURES:
            reasons[name] = f"only {features} features found (too little texture or too small)"
        elif best_inliers[image_id] == 0:
            reasons[name] = f"{features} features but no verified matches with any other image (no overlap)"
        else:
            reasons[name] = f"at most {best_inliers[image_id]} verified matches with another image, too few to place it"
    return reasons
