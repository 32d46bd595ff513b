"""Separating one object from a plain-ish background, and refusing photos that do not show one usable object.

The background colour is modelled from the image border (median and robust spread); pixels far from it are
foreground. Morphology removes speckle and closes small gaps, holes are filled, and connected components decide
whether the photo shows exactly one object of a usable size and shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage
from skimage.filters import apply_hysteresis_threshold

from reconstruction.engine.errors import InvalidInput

BORDER_FRACTION = 0.03  # the band of the image taken as background
MIN_THRESHOLD = 0.12  # colour distance (RGB in [0, 1]) below which a pixel is background whatever the border says
# Pixels this far from a clean background (and WEAK_SPREAD_FACTOR × its spread) join the object where they touch
# pixels past the threshold: a pale body on white (spot the cow, 0.1 from the render's white) is held together by
# its dark patches instead of falling apart into them. A noisy border (spread ≥ 0.04) leaves only the threshold.
WEAK_THRESHOLD = 0.04
WEAK_SPREAD_FACTOR = 3.0
MIN_OBJECT_FRACTION = 0.01  # smaller objects carry too few pixels to reconstruct
SIMILAR_SIZE = 0.35  # a second component at least this share of the largest means several objects
MAX_ASPECT = 4.0
SPECK_FRACTION = 0.001  # components below this share of the image are noise
# A border whose colours stray at most this far (RGB distance, 99th percentile) from its median is a plain
# background: a render's is 0, a lit studio sweep's a few hundredths; a scene's border is far above.
PLAIN_BORDER_SPREAD = 0.08


def load_photo(path: Path | str) -> np.ndarray:
    """RGB float32 (H, W, 3) in [0, 1]; InvalidInput when the file is not a readable image."""
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"The image {Path(path).name} cannot be read: {exc}") from None


def separate_object(image: np.ndarray) -> np.ndarray:
    """Foreground mask (H, W) float32 in {0, 1} of the single object on a plain-ish background; raises
    InvalidInput (no object, several objects, a tiny object, an extreme aspect ratio) when there is no usable one."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] < 3 or min(image.shape[:2]) < 16:
        raise InvalidInput(f"The image must be an RGB array of at least 16×16 pixels, not shape {image.shape}.")
    if image.max() > 1.0:
        image = image / 255.0
    rgb = image[..., :3]
    height, width = rgb.shape[:2]
    background, border_spread = _background(rgb)
    threshold = max(MIN_THRESHOLD, border_spread * 1.5)
    distance = np.linalg.norm(rgb - background, axis=2)
    weak = min(threshold, max(WEAK_THRESHOLD, WEAK_SPREAD_FACTOR * border_spread))
    foreground = apply_hysteresis_threshold(distance, weak, threshold)
    radius = max(1, int(round(min(height, width) / 200)))
    structure = np.ones((2 * radius + 1, 2 * radius + 1), dtype=bool)
    foreground = ndimage.binary_opening(foreground, structure)
    foreground = ndimage.binary_closing(foreground, structure, border_value=0)
    foreground = ndimage.binary_fill_holes(foreground)
    return check_silhouette(foreground).astype(np.float32)


def plain_background(image: np.ndarray) -> bool:
    """Whether the image border is one nearly uniform colour (a studio sweep, a render), so separate_object's
    colour rule can be trusted; a scene (sky above, ground below, clutter) is not."""
    rgb = np.asarray(image, dtype=np.float32)[..., :3]
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    return _background(rgb)[1] <= PLAIN_BORDER_SPREAD


def _background(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The border band's median colour and its spread (99th percentile of the border's distances from it)."""
    height, width = rgb.shape[:2]
    band = max(2, int(round(BORDER_FRACTION * min(height, width))))
    border = np.concatenate(
        [rgb[:band].reshape(-1, 3), rgb[-band:].reshape(-1, 3), rgb[:, :band].reshape(-1, 3), rgb[:, -band:].reshape(-1, 3)]
    )
    background = np.median(border, axis=0)
    return background, float(np.percentile(np.linalg.norm(border - background, axis=1), 99))


def check_silhouette(mask: np.ndarray, *, single_object: bool = True) -> np.ndarray:
    """The largest component of a mask (bool, uint8 or float ≥ 0.5) after checking that it is one usable object.

    With single_object=False (a mask the caller gave, which may show one object in separate pieces) every
    component is kept and only emptiness, size and aspect ratio are checked."""
    mask = np.asarray(mask)
    inside = mask if mask.dtype == bool else (mask >= (128 if np.issubdtype(mask.dtype, np.integer) else 0.5))
    area = inside.size
    labels, count = ndimage.label(inside)
    if count == 0:
        raise InvalidInput("No object found: the image is uniform (or the mask is empty).")
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    largest = int(sizes[order[0]])
    if largest < SPECK_FRACTION * area:
        raise InvalidInput("No object found: only specks differ from the background.")
    if largest < MIN_OBJECT_FRACTION * area:
        raise InvalidInput(
            f"The object is too small: it covers {100 * largest / area:.2f}% of the image "
            f"(at least {100 * MIN_OBJECT_FRACTION:.0f}% needed)."
        )
    if single_object and count > 1 and sizes[order[1]] >= SIMILAR_SIZE * largest:
        raise InvalidInput(
            f"Several objects found ({int(np.count_nonzero(sizes >= SIMILAR_SIZE * largest))} of similar size): "
            "the image must show one object."
        )
    keep = labels == order[0] + 1 if single_object else inside
    rows, columns = np.flatnonzero(keep.any(axis=1)), np.flatnonzero(keep.any(axis=0))
    box_height, box_width = rows[-1] - rows[0] + 1, columns[-1] - columns[0] + 1
    aspect = max(box_height, box_width) / max(1, min(box_height, box_width))
    if aspect > MAX_ASPECT:
        raise InvalidInput(
            f"The object's aspect ratio is {aspect:.1f}:1 (at most {MAX_ASPECT:.0f}:1): too thin to reconstruct "
            "from one view."
        )
    return keep
