"""Checks of a capture against its capture standard, reported per image.

Pure functions over decoded images: sharpness (variance of the Laplacian), clipped exposure, resolution,
EXIF focal length, duplicates, and an overlap hint (each view should look like at least one other view,
measured by colour-histogram intersection of small thumbnails; an orbit's neighbours score high).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import IO, Any

import numpy as np
from PIL import ExifTags, Image, ImageOps

ANALYSIS_SIZE = 256  # long side the image is reduced to before measuring; fast and stable across resolutions
HISTOGRAM_BINS = 8


@dataclass
class ImageAnalysis:
    filename: str
    sha256: str
    width: int
    height: int
    sharpness: float
    clipped_fraction: float
    exif: dict[str, Any]
    histogram: np.ndarray = field(repr=False)
    problems: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class StandardRules:
    """The numbers of a CaptureStandard, detached from the database."""

    min_views: int
    min_short_side_px: int
    min_sharpness: float
    max_clipped_fraction: float
    min_neighbour_similarity: float
    required_metadata: tuple[str, ...] = ()


def _exif(image: Image.Image) -> dict[str, Any]:
    raw = image.getexif()
    tags: dict[str, Any] = {}
    merged = dict(raw.items())
    merged.update(raw.get_ifd(ExifTags.IFD.Exif).items())
    for key, value in merged.items():
        name = ExifTags.TAGS.get(key)
        if name in {"Make", "Model", "FocalLength", "FocalLengthIn35mmFilm", "ExposureTime", "FNumber", "ISOSpeedRatings",
                    "DateTimeOriginal", "LensModel", "Orientation"}:
            tags[name] = float(value) if isinstance(value, (int, float)) or hasattr(value, "numerator") else str(value)
    return tags


def analyse_image(stream: IO[bytes], *, filename: str, sha256: str) -> ImageAnalysis:
    """Measure one decoded image; the caller has already checked it is a valid, bounded image."""
    with Image.open(stream) as image:
        exif = _exif(image)
        width, height = image.size
        image.draft("RGB", (ANALYSIS_SIZE, ANALYSIS_SIZE))  # JPEG decodes at reduced scale: much faster
        small = ImageOps.exif_transpose(image).convert("RGB")
        small.thumbnail((ANALYSIS_SIZE, ANALYSIS_SIZE))
    rgb = np.asarray(small, dtype=np.float32)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    laplacian = (
        grey[1:-1, :-2] + grey[1:-1, 2:] + grey[:-2, 1:-1] + grey[2:, 1:-1] - 4 * grey[1:-1, 1:-1]
    )
    clipped = float(np.mean((grey <= 2) | (grey >= 253)))
    quantised = (rgb // (256 / HISTOGRAM_BINS)).astype(np.int64).clip(0, HISTOGRAM_BINS - 1)
    index = (quantised[..., 0] * HISTOGRAM_BINS + quantised[..., 1]) * HISTOGRAM_BINS + quantised[..., 2]
    histogram = np.bincount(index.ravel(), minlength=HISTOGRAM_BINS**3).astype(np.float64)
    histogram /= histogram.sum()
    return ImageAnalysis(
        filename=filename, sha256=sha256, width=width, height=height, sharpness=float(laplacian.var()),
        clipped_fraction=clipped, exif=exif, histogram=histogram,
    )


def _problem(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def check_capture(images: list[ImageAnalysis], metadata: dict[str, Any], rules: StandardRules) -> dict[str, Any]:
    """Fill each image's `problems` and return the capture report: status, capture-level problems, per-image rows."""
    capture_problems: list[dict[str, str]] = []
    if len(images) < rules.min_views:
        capture_problems.append(_problem("too_few_views", f"{len(images)} images; the standard needs at least {rules.min_views}."))
    for key in rules.required_metadata:
        if not metadata.get(key):
            capture_problems.append(_problem("missing_metadata", f"Capture metadata '{key}' is required by the standard."))

    seen: dict[str, str] = {}
    for image in images:
        short = min(image.width, image.height)
        if short < rules.min_short_side_px:
            image.problems.append(_problem(
                "low_resolution", f"Short side is {short} px; the standard needs {rules.min_short_side_px} px."))
        if image.sharpness < rules.min_sharpness:
            image.problems.append(_problem(
                "blurred", f"Sharpness {image.sharpness:.1f} is below {rules.min_sharpness:.1f}: the image looks blurred."))
        if image.clipped_fraction > rules.max_clipped_fraction:
            image.problems.append(_problem(
                "clipped_exposure",
                f"{image.clipped_fraction:.0%} of pixels are pure black or white (limit {rules.max_clipped_fraction:.0%})."))
        if "FocalLength" not in image.exif and not metadata.get("focal_length_mm"):
            image.problems.append(_problem(
                "no_focal_length", "No EXIF focal length and none in the capture metadata; a prior will be assumed."))
        if image.sha256 in seen:
            image.problems.append(_problem("duplicate", f"Same bytes as '{seen[image.sha256]}'."))
        else:
            seen[image.sha256] = image.filename

    if len(images) > 1:
        stack = np.stack([im.histogram for im in images])
        similarity = np.minimum(stack[:, None, :], stack[None, :, :]).sum(axis=2)
        np.fill_diagonal(similarity, -1.0)
        best = similarity.max(axis=1)
        for image, score in zip(images, best, strict=True):
            if score < rules.min_neighbour_similarity:
                image.problems.append(_problem(
                    "low_overlap",
                    f"Resembles no other image (best similarity {score:.2f} < {rules.min_neighbour_similarity:.2f}); "
                    "shoot more views between it and its neighbours."))

    blocking = {"too_few_views", "missing_metadata"}
    per_image_blocking = {"low_resolution", "duplicate"}
    failed = any(p["code"] in blocking for p in capture_problems) or any(
        p["code"] in per_image_blocking for im in images for p in im.problems
    )
    warned = bool(capture_problems) or any(im.problems for im in images)
    return {
        "status": "failed" if failed else "warnings" if warned else "passed",
        "views": len(images),
        "problems": capture_problems,
        "images": [
            {"filename": im.filename, "width": im.width, "height": im.height, "sharpness": round(im.sharpness, 2),
             "clipped_fraction": round(im.clipped_fraction, 4), "problems": im.problems}
            for im in images
        ],
    }
