"""Radial distortion is kept only where the tracks show it (lens.py)."""

import numpy as np
import pytest

# isort: off
import PIL.Image  # noqa: F401 -- Pillow before pycolmap (see photogrammetry/sfm.py on zlib)
import pycolmap
# isort: on

from reconstruction.engine.backends.photogrammetry.lens import simplest_lens

from .scenes import orbit_cameras


def _model(true_k: float, fitted_k: float) -> pycolmap.Reconstruction:
    """Twelve cameras round a cloud of points, observed through a lens of distortion `true_k` with 0.1 px noise;
    the model's camera says `fitted_k`."""
    rng = np.random.default_rng(3)
    points = rng.uniform(-1.0, 1.0, size=(400, 3))
    model = pycolmap.Reconstruction()
    truth = pycolmap.Camera(camera_id=1, model="SIMPLE_RADIAL", width=640, height=640, params=[700, 320, 320, true_k])
    model.add_camera_with_trivial_rig(
        pycolmap.Camera(camera_id=1, model="SIMPLE_RADIAL", width=640, height=640, params=[700, 320, 320, fitted_k])
    )
    for index, camera in enumerate(orbit_cameras(12, 640, radius=4.0), 1):
        in_camera = points @ camera.R.T + camera.t
        pixels = truth.img_from_cam(in_camera) + rng.normal(scale=0.1, size=(len(points), 2))
        image = pycolmap.Image(name=camera.image_name, keypoints=pixels, camera_id=1, image_id=index)
        model.add_image_with_trivial_frame(image, pycolmap.Rigid3d(pycolmap.Rotation3d(camera.R), camera.t.reshape(3, 1)))
    for number, xyz in enumerate(points):
        track = pycolmap.Track()
        for index in range(1, 13):
            track.add_element(index, number)
        model.add_point3D(xyz.reshape(3, 1), track)
    return model


def test_a_distortion_the_tracks_do_not_show_is_dropped():
    model, plain = simplest_lens(_model(true_k=0.0, fitted_k=0.05))
    assert plain and model.cameras[1].params[3] == 0


@pytest.mark.parametrize("k", [-0.05, 0.1])
def test_a_real_distortion_is_kept(k):
    given = _model(true_k=k, fitted_k=k)
    model, plain = simplest_lens(given)
    assert not plain and model is given and model.cameras[1].params[3] == k
