"""The images a run works on: read from the capture, checked, de-duplicated, and resized for stereo."""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from reconstruction.engine.cameras import Camera
from reconstruction.engine.errors import InvalidCapture, InvalidInput
from reconstruction.engine.generative.matting import plain_background, separate_object

MIN_VIEWS = 3


@dataclass
class View:
    """One photo: its name, RGB pixels in [0, 1], an optional object mask and, once known, its camera."""

    name: str
    image: np.ndarray  # (H, W, 3) float32
    mask: np.ndarray | None = None  # (H, W) bool, True on the object
    camera: Camera | None = None
    path: Path | None = None  # the original file, so SfM can read its EXIF
    coverage: np.ndarray | None = None  # (H, W) float32 in [0, 1]: the mask with its soft (sub-pixel) edges kept

    @property
    def silhouette(self) -> np.ndarray | None:
        """Object coverage in [0, 1]: the soft mask when there is one, else the boolean mask as 0/1."""
        if self.coverage is not None:
            return self.coverage
        return self.mask.astype(np.float32) if self.mask is not None else None

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]

    def resized(self, max_size: int) -> View:
        """The view scaled down so its longer side is at most `max_size` (camera intrinsics scaled to match)."""
        width, height = self.size
        factor = min(1.0, max_size / max(width, height))
        if factor >= 1.0:
            return self
        new_size = (max(1, round(width * factor)), max(1, round(height * factor)))
        pixels = Image.fromarray((self.image * 255).round().astype(np.uint8)).resize(new_size, Image.Resampling.LANCZOS)
        mask = coverage = None
        if self.mask is not None:
            mask = np.asarray(Image.fromarray(self.mask.astype(np.uint8) * 255).resize(new_size, Image.Resampling.BILINEAR)) > 127
        if self.coverage is not None:
            coverage = np.asarray(Image.fromarray(self.coverage).resize(new_size, Image.Resampling.BILINEAR), dtype=np.float32)
        camera = None
        if self.camera is not None:
            K = self.camera.K.copy()
            K[0] *= new_size[0] / width
            K[1] *= new_size[1] / height
            camera = Camera(self.camera.image_name, new_size[0], new_size[1], K, self.camera.R, self.camera.t, self.camera.distortion)
        return View(self.name, np.asarray(pixels, dtype=np.float32) / 255.0, mask, camera, self.path, coverage)


def views_from_capture(capture: Any) -> tuple[list[View], list[str]]:
    """The capture's images as views (with masks and cameras when it has them) and notes on what was dropped.

    Raises InvalidCapture naming every file that is not a readable image, and when fewer than three distinct
    images remain.
    """
    images = list(getattr(capture, "images", []) or [])
    masks = list(getattr(capture, "masks", None) or [])
    cameras = list(getattr(capture, "cameras", None) or [])
    names = _names(capture, images)
    unreadable: list[str] = []
    views: list[View] = []
    for index, (name, item) in enumerate(zip(names, images, strict=True)):
        try:
            pixels, path = _pixels(item)
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            unreadable.append(f"{name} ({_reason(exc)})")
            continue
        coverage = _coverage(masks[index]) if index < len(masks) and masks[index] is not None else None
        mask = coverage > 0.5 if coverage is not None else None
        if mask is not None and mask.shape != pixels.shape[:2]:
            raise InvalidCapture(f"Mask of {name} is {mask.shape[1]}×{mask.shape[0]} px but the image is {pixels.shape[1]}×{pixels.shape[0]} px.")
        camera = cameras[index] if index < len(cameras) else None
        views.append(View(name, pixels, mask, camera, path, coverage))
    if unreadable:
        raise InvalidCapture(f"These files are not readable images: {'; '.join(unreadable)}.")
    views, notes = _drop_duplicates(views)
    if len(views) < MIN_VIEWS:
        distinct = " distinct" if notes else ""
        raise InvalidCapture(
            f"Photogrammetry needs at least {MIN_VIEWS}{distinct} images; the capture has {len(views)}."
        )
    sizes = sorted({view.size for view in views})
    if len(sizes) > 1:
        listed = ", ".join(f"{w}×{h}" for w, h in sizes)
        notes.append(f"images come in {len(sizes)} sizes ({listed}); each size gets its own intrinsics")
    return views, notes


def with_background_masks(views: list[View]) -> tuple[list[View], str]:
    """The views with object masks cut from their plain background, when none has a mask and every one allows it.

    All or nothing, since the silhouettes are used together (a hull needs every view); the note says which was done
    and, when not, the first view that prevented it.
    """
    if any(view.mask is not None for view in views):
        return views, "the capture's own masks used"
    masked = []
    for view in views:
        if not plain_background(view.image):
            return views, f"no automatic masks: {view.name} has no plain background"
        try:
            mask = separate_object(view.image) > 0.5
        except InvalidInput as exc:
            return views, f"no automatic masks: {view.name}: {exc.message}"
        masked.append(dataclasses.replace(view, mask=mask, coverage=None))
    return masked, f"object masks cut from the plain background of all {len(views)} images"


def _names(capture: Any, images: list[Any]) -> list[str]:
    names = getattr(capture, "image_names", None)
    if names is not None and len(names) == len(images):
        return [str(n) for n in names]
    found = []
    for index, item in enumerate(images):
        if isinstance(item, str | Path):
            found.append(Path(item).name)
        elif getattr(capture, "cameras", None) and index < len(capture.cameras):
            found.append(capture.cameras[index].image_name)
        else:
            found.append(f"image_{index:03d}.png")
    return found


def _pixels(item: Any) -> tuple[np.ndarray, Path | None]:
    if isinstance(item, str | Path):
        with Image.open(item) as opened:
            opened.load()
            rgb = opened.convert("RGB")
        return np.asarray(rgb, dtype=np.float32) / 255.0, Path(item)
    if isinstance(item, Image.Image):
        return np.asarray(item.convert("RGB"), dtype=np.float32) / 255.0, None
    array = np.asarray(item)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"expected an H×W×3 image array, got shape {array.shape}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0, None
    return np.clip(array.astype(np.float32), 0.0, 1.0), None


def _coverage(item: Any) -> np.ndarray:
    """A mask as float32 coverage in [0, 1] (uint8 masks are 0–255, float ones 0–1, bool ones 0/1)."""
    if isinstance(item, str | Path):
        with Image.open(item) as opened:
            item = np.asarray(opened.convert("L"))
    array = np.asarray(item)
    if array.ndim == 3:
        array = array[..., 0]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def _reason(exc: Exception) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format we can read"
    return str(exc).split(":")[0] if isinstance(exc, OSError) else str(exc)


def _drop_duplicates(views: list[View]) -> tuple[list[View], list[str]]:
    seen: dict[str, str] = {}
    kept, notes = [], []
    for view in views:
        digest = hashlib.sha256(np.ascontiguousarray((view.image * 255).round().astype(np.uint8)).tobytes()).hexdigest()
        if digest in seen:
            notes.append(f"dropped {view.name}: the same pixels as {seen[digest]}")
            continue
        seen[digest] = view.name
        kept.append(view)
    return kept, notes


def undistorted(view: View) -> View:
    """The view resampled to an ideal pinhole camera with the same intrinsics (no-op when it has no distortion)."""
    camera = view.camera
    if camera is None or not camera.has_distortion:
        return view
    height, width = view.image.shape[:2]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    fx, fy, cx, cy, skew = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2], camera.K[0, 1]
    y = (rows + 0.5 - cy) / fy
    x = (cols + 0.5 - cx - skew * y) / fx
    k1, k2, p1, p2 = camera.distortion
    r2 = x * x + y * y
    radial = 1 + k1 * r2 + k2 * r2 * r2
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    source_cols = fx * xd + skew * yd + cx - 0.5
    source_rows = fy * yd + cy - 0.5
    inside = (source_cols >= 0) & (source_cols <= width - 1) & (source_rows >= 0) & (source_rows <= height - 1)
    c0 = np.clip(np.floor(source_cols).astype(int), 0, width - 2)
    r0 = np.clip(np.floor(source_rows).astype(int), 0, height - 2)
    fc = np.clip(source_cols - c0, 0, 1)[..., None]
    fr = np.clip(source_rows - r0, 0, 1)[..., None]
    image = view.image
    pixels = (
        image[r0, c0] * (1 - fc) * (1 - fr) + image[r0, c0 + 1] * fc * (1 - fr)
        + image[r0 + 1, c0] * (1 - fc) * fr + image[r0 + 1, c0 + 1] * fc * fr
    )
    pixels[~inside] = 0
    mask = view.mask[r0 + (fr[..., 0] > 0.5), c0 + (fc[..., 0] > 0.5)] & inside if view.mask is not None else None
    coverage = None
    if view.coverage is not None:
        soft = view.coverage[..., None]
        coverage = (
            soft[r0, c0] * (1 - fc) * (1 - fr) + soft[r0, c0 + 1] * fc * (1 - fr)
            + soft[r0 + 1, c0] * (1 - fc) * fr + soft[r0 + 1, c0 + 1] * fc * fr
        )[..., 0]
        coverage[~inside] = 0
        coverage = coverage.astype(np.float32)
    ideal = Camera(camera.image_name, camera.width, camera.height, camera.K, camera.R, camera.t)
    return View(view.name, pixels.astype(np.float32), mask, ideal, view.path, coverage)
