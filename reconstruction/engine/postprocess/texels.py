"""Texture-space helpers: rasterising UV triangles to texels, bilinear sampling, edge padding, sRGB.

UVs follow glTF: u to the right, v down, (0, 0) at the image's top-left corner; texel (x, y) has its
centre at ((x + 0.5) / width, (y + 0.5) / height).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Candidate texels examined per batch: bounds memory to a few hundred MB whatever the texture size.
_BATCH_CANDIDATES = 4_000_000


@dataclass(frozen=True)
class Coverage:
    """Texels whose centres fall inside a UV triangle: where they are, which face, barycentric weights."""

    y: np.ndarray
    x: np.ndarray
    face: np.ndarray
    weights: np.ndarray  # (n, 3), sums to 1

    def __len__(self) -> int:
        return len(self.face)

    def chunks(self, size: int) -> Iterator[slice]:
        for start in range(0, len(self), size):
            yield slice(start, min(start + size, len(self)))


def rasterize(uvs: np.ndarray, faces: np.ndarray, width: int, height: int) -> Coverage:
    """Every texel centre covered by a triangle (where triangles overlap, the later face wins)."""
    corners = uvs[faces] * np.array([width, height]) - 0.5  # texel-centre coordinates
    low = np.clip(np.floor(corners.min(axis=1)).astype(np.int64), 0, [width - 1, height - 1])
    high = np.clip(np.ceil(corners.max(axis=1)).astype(np.int64), 0, [width - 1, height - 1])
    spans = high - low + 1
    counts = spans[:, 0] * spans[:, 1]
    parts_y, parts_x, parts_face, parts_weights = [], [], [], []
    cumulative = np.cumsum(counts)
    splits = np.searchsorted(cumulative, np.arange(_BATCH_CANDIDATES, cumulative[-1] if len(cumulative) else 0, _BATCH_CANDIDATES), side="right")
    for batch in np.split(np.arange(len(faces)), splits):
        if len(batch) == 0:
            continue
        face = np.repeat(batch, counts[batch])
        local = np.arange(len(face)) - np.repeat(np.cumsum(counts[batch]) - counts[batch], counts[batch])
        x = low[face, 0] + local % spans[face, 0]
        y = low[face, 1] + local // spans[face, 0]
        weights = _barycentric(corners[face], np.column_stack([x, y]).astype(np.float64))
        inside = (weights >= -1e-6).all(axis=1)
        parts_y.append(y[inside])
        parts_x.append(x[inside])
        parts_face.append(face[inside])
        parts_weights.append(np.clip(weights[inside], 0.0, 1.0))
    if not parts_face:
        empty = np.zeros(0, dtype=np.int64)
        return Coverage(empty, empty, empty, np.zeros((0, 3)))
    y, x, face, weights = (np.concatenate(p) for p in (parts_y, parts_x, parts_face, parts_weights))
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
    # One owner per texel: keep the last face that claimed it.
    key = y * width + x
    _, last = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - last
    return Coverage(y[keep], x[keep], face[keep], weights[keep])


def _barycentric(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    v0, v1, v2 = b - a, c - a, points - a
    den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
    safe = np.where(np.abs(den) > 1e-18, den, np.inf)
    w1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / safe
    w2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / safe
    weights = np.column_stack([1.0 - w1 - w2, w1, w2])
    weights[~np.isfinite(den) | (np.abs(den) <= 1e-18)] = -1.0  # degenerate in UV space: covers nothing
    return weights


def sample_bilinear(image: np.ndarray, uv: np.ndarray, repeat: bool = True) -> np.ndarray:
    """Bilinear lookup of an (h, w, c) float image at glTF UVs; wraps (REPEAT) or clamps."""
    height, width = image.shape[:2]
    x = uv[:, 0] * width - 0.5
    y = uv[:, 1] * height - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]

    def wrap(index: np.ndarray, size: int) -> np.ndarray:
        return np.mod(index, size) if repeat else np.clip(index, 0, size - 1)

    xa, xb, ya, yb = wrap(x0, width), wrap(x0 + 1, width), wrap(y0, height), wrap(y0 + 1, height)
    top = image[ya, xa] * (1 - fx) + image[ya, xb] * fx
    bottom = image[yb, xa] * (1 - fx) + image[yb, xb] * fx
    return top * (1 - fy) + bottom * fy


def pad(image: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """Edge padding: every empty texel takes the value of the nearest filled one.

    Filling the whole background (not just a few texels) keeps chart borders clean at every mip level.
    """
    if filled.all() or not filled.any():
        return image
    _, (near_y, near_x) = ndimage.distance_transform_edt(~filled, return_indices=True)
    return image[near_y, near_x]


def srgb_to_linear(values: np.ndarray) -> np.ndarray:
    return np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(values: np.ndarray) -> np.ndarray:
    values = np.clip(values, 0.0, 1.0)
    return np.where(values <= 0.0031308, values * 12.92, 1.055 * values ** (1 / 2.4) - 0.055)
