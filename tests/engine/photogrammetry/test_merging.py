"""Joining separate SfM models: shared cameras that agree carry the other model over, disagreeing ones do not."""
import numpy as np
from scipy.spatial.transform import Rotation

from reconstruction.engine.backends.photogrammetry.merging import SfmModel, _moved, merge_models

from .scenes import orbit_cameras

IDENTITY = np.eye(4)


def _similarity(scale: float, degrees: tuple[float, float, float], offset: tuple[float, float, float]) -> np.ndarray:
    transform = np.eye(4)
    transform[:3, :3] = scale * Rotation.from_euler("xyz", degrees, degrees=True).as_matrix()
    transform[:3, 3] = offset
    return transform


def _model(cameras, names, transform=IDENTITY) -> SfmModel:
    """The named cameras (copies) and one point at the origin, seen in the frame `transform` maps the world to."""
    chosen = {c.image_name: _moved(c, transform) for c in cameras if c.image_name in names}
    return SfmModel(chosen, transform[:3, 3].reshape(1, 3), [sorted(chosen)])


def test_a_model_sharing_agreeing_cameras_joins_in_the_main_frame():
    cameras = orbit_cameras(10, 64)
    names = [c.image_name for c in cameras]
    main = _model(cameras, names[:7])
    # The smaller model saw views 4–9 in its own frame: turned, shifted and at a third of the scale.
    other = _model(cameras, names[4:], _similarity(1 / 3, (10, 40, -5), (2.0, -1.0, 0.5)))
    merged = merge_models([other, main])
    assert sorted(merged.cameras) == names
    for camera in cameras:
        assert np.allclose(merged.cameras[camera.image_name].center, camera.center, atol=1e-9)
        assert np.allclose(merged.cameras[camera.image_name].R, camera.R, atol=1e-9)
    assert np.allclose(merged.points, 0.0, atol=1e-9) and len(merged.points) == len(merged.point_views) == 2


def test_a_model_whose_shared_cameras_disagree_stays_apart():
    cameras = orbit_cameras(10, 64)
    names = [c.image_name for c in cameras]
    main = _model(cameras, names[:7])
    other = _model(cameras, names[4:])
    # One shared camera turned in place by 20°: the frames cannot both be right.
    turned = other.cameras[names[5]]
    centre = turned.center
    turned.R = Rotation.from_euler("y", 20, degrees=True).as_matrix() @ turned.R
    turned.t = -turned.R @ centre
    merged = merge_models([main, other])
    assert sorted(merged.cameras) == names[:7]


def test_two_shared_cameras_are_too_few_to_join():
    cameras = orbit_cameras(10, 64)
    names = [c.image_name for c in cameras]
    merged = merge_models([_model(cameras, names[:7]), _model(cameras, names[5:])])
    assert sorted(merged.cameras) == names[:7]
