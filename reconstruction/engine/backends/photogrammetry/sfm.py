"""Structure from motion with pycolmap: SIFT features, matching, incremental mapping, and why images failed."""
from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# isort: off
# pycolmap's wheel carries its own zlib; loaded before Pillow's _imaging, Pillow's PNG encoder later frees
# memory with the wrong deflateEnd and the process aborts. Importing Pillow first binds Pillow to the system zlib.
from PIL import Image
import pycolmap
# isort: on

from reconstruction.engine.cameras import Camera
from reconstruction.engine.errors import BackendFailed, Cancelled
from reconstruction.engine.protocol import CancelFn

from .views import MIN_VIEWS, View

# Fewer SIFT features than this and an image can hardly be registered: reported as the likely reason.
FEW_FEATURES = 100
_PAIR_BASE = 2147483647


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
) -> SparseModel:
    """Estimates cameras for `views`; writes the COLMAP database under `folder` and the text model in `sparse_dir`.

    `intrinsics` (a 3×3 K shared by every image, e.g. from K.txt) seeds the cameras; otherwise EXIF focal
    lengths do, and `focal_length_prior` × the longer side where a photo has none.
    """
    folder.mkdir(parents=True, exist_ok=True)
    image_dir, names = _image_folder(views, folder)
    database = folder / "database.db"
    database.unlink(missing_ok=True)

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    reader.default_focal_length_factor = focal_length_prior
    if intrinsics is not None and len({view.size for view in views}) == 1:
        focal = (intrinsics[0, 0] + intrinsics[1, 1]) / 2
        reader.camera_params = f"{focal},{intrinsics[0, 2]},{intrinsics[1, 2]},0"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = max_image_size
    extraction.sift.peak_threshold = sift_peak_threshold
    pycolmap.extract_features(
        database, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.AUTO,
        reader_options=reader, extraction_options=extraction, device=pycolmap.Device.auto,
    )
    _check_cancel(cancel)
    if len(views) <= exhaustive_max_images:
        pycolmap.match_exhaustive(database, device=pycolmap.Device.auto)
    else:
        # Without GPS or a vocabulary tree, neighbours in capture order are the best guess of overlap.
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = 15
        pairing.quadratic_overlap = True
        pycolmap.match_sequential(database, pairing_options=pairing, device=pycolmap.Device.auto)
    _check_cancel(cancel)

    options = pycolmap.IncrementalPipelineOptions()
    models_dir = folder / "models"
    models_dir.mkdir(exist_ok=True)
    reconstructions = pycolmap.incremental_mapping(database, image_dir, models_dir, options)
    _check_cancel(cancel)
    by_name = {rename: view.name for rename, view in zip(names, views, strict=True)}
    diagnosis = _diagnose(database)
    if not reconstructions:
        reasons = {by_name[n]: diagnosis.get(n, "could not be registered") for n in names}
        raise BackendFailed(_too_few_message(0, len(views), reasons))
    best = max(reconstructions.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()))
    others = {
        reconstruction.images[i].name: reconstruction.num_reg_images()
        for reconstruction in reconstructions.values() if reconstruction is not best
        for i in reconstruction.reg_image_ids()
    }
    sparse_dir.mkdir(parents=True, exist_ok=True)
    best.write_text(str(sparse_dir))

    cameras: dict[str, Camera] = {}
    for image_id in best.reg_image_ids():
        image = best.images[image_id]
        cameras[by_name[image.name]] = _camera(best, image, by_name[image.name])
    failed = {}
    for name in names:
        if by_name[name] in cameras:
            continue
        if name in others:
            failed[by_name[name]] = f"registered only in a separate model of {others[name]} images not connected to the main one"
        else:
            failed[by_name[name]] = diagnosis.get(name, "could not be registered")
    if len(cameras) < MIN_VIEWS:
        raise BackendFailed(_too_few_message(len(cameras), len(views), failed))

    ids_to_name = {image_id: by_name[best.images[image_id].name] for image_id in best.reg_image_ids()}
    points, point_views = [], []
    for point in best.points3D.values():
        points.append(point.xyz)
        point_views.append(sorted({ids_to_name[e.image_id] for e in point.track.elements if e.image_id in ids_to_name}))
    return SparseModel(
        cameras=cameras,
        points=np.asarray(points, dtype=np.float64).reshape(-1, 3),
        point_views=point_views,
        registered=len(cameras),
        total=len(views),
        mean_reprojection_error_px=float(best.compute_mean_reprojection_error()),
        failed=failed,
    )


def _too_few_message(registered: int, total: int, reasons: dict[str, str]) -> str:
    listed = "; ".join(f"{name}: {why}" for name, why in sorted(reasons.items()))
    return (
        f"Structure from motion registered {registered} of {total} images; at least {MIN_VIEWS} are needed. "
        f"Not registered: {listed}."
    )


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
