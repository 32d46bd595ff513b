"""The simplest lens the tracks support: radial distortion only where the reprojection errors show it.

COLMAP fits one radial term (SIMPLE_RADIAL) to every camera. Where the features gather near the image centre, as
on an object photographed all round, the term is barely constrained and trades against the focal length: models of
one 24-view blob rendered without distortion came out with k from −0.19 to +0.16 and focal lengths 275-335 px
(truth 307), their sparse points 1-2% off scale. Fitted with k = 0, the same tracks reprojected as well
(0.1417 against 0.1421 px) with focal lengths 305-306 px. A real lens's distortion shows in the errors and stays.
"""
from __future__ import annotations

import numpy as np

# isort: off
from PIL import Image  # noqa: F401 -- Pillow before pycolmap (see sfm.py on zlib)
import pycolmap
# isort: on

# Distortion is kept when dropping it raises the mean reprojection error by more than this share. On the blob's
# models it changed by −0.3% to +0.1%; on the real Sceaux castle photos (k = −0.157) it rose by 111%, 0.44 → 0.93 px.
MAX_ERROR_GROWTH_WITHOUT_DISTORTION = 0.02
# Camera models whose extra parameters are radial terms only: all zero, the lens is a pinhole.
RADIAL_MODELS = {"SIMPLE_RADIAL", "RADIAL"}


def simplest_lens(model: pycolmap.Reconstruction) -> tuple[pycolmap.Reconstruction, bool]:
    """`model` bundle-adjusted without radial distortion when its tracks fit that about as well, and whether it
    was; else `model` unchanged."""
    radial = [camera for camera in model.cameras.values() if camera.model.name in RADIAL_MODELS]
    if not radial or all(not np.any(np.asarray(c.params)[list(c.extra_params_idxs())]) for c in radial):
        return model, False
    model.update_point_3d_errors()  # the errors are cached per point, and stale after edits
    before = model.compute_mean_reprojection_error()
    plain = pycolmap.Reconstruction(model)
    for camera in plain.cameras.values():
        if camera.model.name in RADIAL_MODELS:
            params = np.asarray(camera.params, dtype=np.float64).copy()
            params[list(camera.extra_params_idxs())] = 0.0
            camera.params = params
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_extra_params = False
    options.print_summary = False
    pycolmap.bundle_adjustment(plain, options)
    plain.update_point_3d_errors()
    after = plain.compute_mean_reprojection_error()
    if np.isfinite(after) and after <= (1 + MAX_ERROR_GROWTH_WITHOUT_DISTORTION) * before:
        return plain, True
    return model, False
