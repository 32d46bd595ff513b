"""A capture: the photos of one object, with masks and calibrated cameras where known.

Two folder layouts load:
- a rendered capture (see `render.py`): `images/`, `masks/`, `sparse/` (COLMAP text) and `capture.json`;
- a plain folder of JPEG/PNG photos (in the folder itself or in `images/`), optionally with `K.txt` (the 3×3
  intrinsics shared by every photo) and `masks/` (one mask per photo, same stem).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from reconstruction.engine.cameras import Camera, read_colmap_text
from reconstruction.engine.errors import InvalidCapture
from reconstruction.engine.protocol import Capabilities

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
MANIFEST = "capture.json"


@dataclass
class Capture:
    root: Path
    images: list[Path]
    masks: list[Path] | None = None
    cameras: list[Camera] | None = None  # aligned with `images`
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_views(self) -> int:
        return len(self.images)

    @property
    def intrinsics(self) -> np.ndarray | None:
        """Shared 3×3 intrinsics from K.txt or the manifest, when known."""
        K = self.metadata.get("intrinsics", {}).get("K")
        return np.asarray(K, dtype=np.float64) if K is not None else None

    def load_image(self, index: int) -> np.ndarray:
        """RGB image as float32 (H, W, 3) in [0, 1]."""
        with Image.open(self.images[index]) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0

    def load_mask(self, index: int) -> np.ndarray:
        """Foreground mask as float32 (H, W) in [0, 1] (soft edges kept)."""
        if self.masks is None:
            raise InvalidCapture("This capture has no masks.")
        with Image.open(self.masks[index]) as mask:
            return np.asarray(mask.convert("L"), dtype=np.float32) / 255.0

    @classmethod
    def load(cls, folder: Path | str) -> Capture:
        """Reads and checks a capture folder; raises InvalidCapture with the reason when it cannot be used."""
        root = Path(folder)
        if not root.is_dir():
            raise InvalidCapture(f"{root} is not a folder.")
        metadata: dict[str, Any] = {}
        manifest = root / MANIFEST
        if manifest.is_file():
            try:
                metadata = json.loads(manifest.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InvalidCapture(f"{MANIFEST} is not valid JSON: {exc}") from None
            if not isinstance(metadata, dict):
                raise InvalidCapture(f"{MANIFEST} must hold a JSON object.")
        image_dir = root / "images" if (root / "images").is_dir() else root
        images = sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise InvalidCapture(f"No JPEG or PNG images in {image_dir}.")
        sizes = [_image_size(p) for p in images]

        masks = _find_masks(root, images)
        if masks is not None:
            for image, size, mask in zip(images, sizes, masks, strict=True):
                if _image_size(mask) != size:
                    raise InvalidCapture(
                        f"Mask {mask.name} is {_fmt(_image_size(mask))} but image {image.name} is {_fmt(size)}."
                    )

        cameras = None
        sparse = next((d for d in (root / "sparse", root / "sparse" / "0") if (d / "images.txt").is_file()), None)
        if sparse is not None:
            cameras = _align_cameras(read_colmap_text(sparse), images, sizes)
        if (root / "K.txt").is_file():
            K = _read_k(root / "K.txt")
            if len(set(sizes)) > 1:
                raise InvalidCapture(
                    "K.txt gives one set of intrinsics but the images have different sizes: "
                    + ", ".join(sorted({_fmt(s) for s in sizes}))
                )
            metadata.setdefault("intrinsics", {})["K"] = K.tolist()
        metadata.setdefault("image_sizes", sorted({_fmt(s) for s in sizes}))
        return cls(root=root, images=images, masks=masks, cameras=cameras, metadata=metadata)


def check_capture_fits(capabilities: Capabilities, capture: Capture, backend_name: str) -> None:
    """Raises InvalidCapture when a backend cannot take this capture (too few or many views, no cameras…)."""
    views = capture.num_views
    if views < capabilities.min_views:
        raise InvalidCapture(f"{backend_name} needs at least {capabilities.min_views} views, the capture has {views}.")
    if capabilities.max_views is not None and views > capabilities.max_views:
        raise InvalidCapture(f"{backend_name} takes at most {capabilities.max_views} views, the capture has {views}.")
    if capabilities.needs_known_cameras and capture.cameras is None:
        raise InvalidCapture(
            f"{backend_name} needs calibrated cameras (a sparse/ COLMAP model) and the capture has none."
        )


def _fmt(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _image_size(path: Path) -> tuple[int, int]:
    """Size of an image after checking that it decodes in full (a truncated file fails here, not mid-run)."""
    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except Image.DecompressionBombError:
        raise InvalidCapture(f"Image {path.name} is too large to decode safely (decompression bomb limit).") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InvalidCapture(f"Image {path.name} cannot be read: {exc}") from None


def _find_masks(root: Path, images: list[Path]) -> list[Path] | None:
    mask_dir = root / "masks"
    if not mask_dir.is_dir():
        return None
    by_stem = {p.stem: p for p in mask_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}
    if not by_stem:
        return None
    missing = [image.name for image in images if image.stem not in by_stem]
    if missing:
        raise InvalidCapture(f"masks/ has no mask for {len(missing)} image(s): {', '.join(missing[:5])}")
    return [by_stem[image.stem] for image in images]


def _align_cameras(cameras: list[Camera], images: list[Path], sizes: list[tuple[int, int]]) -> list[Camera]:
    by_name = {camera.image_name: camera for camera in cameras}
    names = {image.name for image in images}
    unknown = sorted(set(by_name) - names)
    if unknown:
        raise InvalidCapture(
            f"The cameras name {len(unknown)} image(s) that are not in the capture: {', '.join(unknown[:5])}"
        )
    without = [image.name for image in images if image.name not in by_name]
    if without:
        raise InvalidCapture(f"{len(without)} image(s) have no camera: {', '.join(without[:5])}")
    aligned = [by_name[image.name] for image in images]
    for camera, size in zip(aligned, sizes, strict=True):
        if (camera.width, camera.height) != size:
            raise InvalidCapture(
                f"Image {camera.image_name} is {_fmt(size)} but its camera is {camera.width}×{camera.height}."
            )
    return aligned


def _read_k(path: Path) -> np.ndarray:
    try:
        K = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise InvalidCapture(f"K.txt cannot be read as a 3×3 matrix: {exc}") from None
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InvalidCapture("K.txt must hold a 3×3 intrinsics matrix with positive focal lengths.")
    return K
