"""Separate SfM models triangulated again as one (retriangulation.py), with the simplest lens (lens.py)."""

from types import SimpleNamespace

import pytest

# isort: off
import PIL.Image  # noqa: F401 -- Pillow before pycolmap (see photogrammetry/sfm.py on zlib)
import pycolmap
# isort: on

from reconstruction.engine.backends.photogrammetry import sfm
from reconstruction.engine.backends.photogrammetry.lens import simplest_lens
from reconstruction.engine.backends.photogrammetry.retriangulation import retriangulated
from reconstruction.engine.backends.photogrammetry.views import views_from_capture

from .scenes import textured_blob_photos


@pytest.mark.slow
def test_cameras_placed_apart_are_triangulated_as_one_model_and_the_lens_refitted(tmp_path):
    photos = tmp_path / "photos"
    _, truth = textured_blob_photos(photos)
    views = views_from_capture(SimpleNamespace(images=sorted(photos.iterdir())))[0]
    sfm.structure_from_motion(  # for its database of matches
        views, tmp_path / "sfm", tmp_path / "sparse", max_image_size=256, exhaustive_max_images=50,
        focal_length_prior=1.2, cancel=lambda: False,
    )
    # The true poses, from a model whose lens is 6% long with a distortion the renders do not have, as a separate
    # model's can be.
    wrong = pycolmap.Reconstruction(str(next((tmp_path / "sfm" / "default").glob("models-0/*"))))
    wrong.cameras[1].params = [1.06 * truth[0].K[0, 0], 128, 128, 0.08]

    model = retriangulated(
        tmp_path / "sfm" / "default" / "database.db", photos, [wrong], {c.image_name: c for c in truth}, tmp_path / "one"
    )

    assert model is not None and model.num_reg_images() == len(truth) and list(model.cameras) == [1]
    assert model.num_points3D() > 30 * len(truth)
    fitted = model.compute_mean_reprojection_error()
    assert fitted < 0.3
    # The tracks hardly constrain the distortion, which trades against the focal length; without it they fit as
    # well, and the focal length comes out right.
    model, plain = simplest_lens(model)
    focal, _, _, k = model.cameras[1].params
    assert plain and k == 0 and focal == pytest.approx(truth[0].K[0, 0], rel=0.01)
    assert model.compute_mean_reprojection_error() <= 1.02 * fitted
