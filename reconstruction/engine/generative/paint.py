"""Procedural surface colours (solid, stripes, bands, noise, logo-like patches) and baked lighting.

A `Paint` maps surface points and normals (object coordinates, before the object is scaled) to linear RGB in
[0, 1]. Lighting is baked into vertex colours per view, so a flat (unlit) render still shows random key and fill
lights; the renderer's own headlight is the other option.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence

import numpy as np

Paint = Callable[[np.ndarray, np.ndarray], np.ndarray]
Colour = Sequence[float] | np.ndarray
NEUTRALS = [(0.95, 0.95, 0.93), (0.08, 0.08, 0.09), (0.55, 0.55, 0.56), (0.82, 0.76, 0.64), (0.35, 0.24, 0.16)]


def random_colour(rng: np.random.Generator, *, neutral: float = 0.4) -> np.ndarray:
    """A product-like colour: a neutral (white, black, grey, beige, brown) or a hue of random saturation."""
    if rng.random() < neutral:
        base = np.array(NEUTRALS[rng.integers(len(NEUTRALS))])
        return np.clip(base + rng.normal(0, 0.03, 3), 0, 1)
    hue, saturation, value = rng.random(), rng.uniform(0.35, 0.95), rng.uniform(0.3, 0.95)
    return np.array(colorsys.hsv_to_rgb(hue, saturation, value))


def contrasting(rng: np.random.Generator, colour: np.ndarray) -> np.ndarray:
    """A colour that stands out against `colour` (by luminance)."""
    for _ in range(8):
        other = random_colour(rng, neutral=0.5)
        if abs(other.mean() - colour.mean()) > 0.3 or np.abs(other - colour).max() > 0.45:
            return other
    return np.ones(3) - colour


def solid(colour: Colour) -> Paint:
    c = np.asarray(colour, dtype=np.float64)
    return lambda points, normals: np.broadcast_to(c, points.shape).copy()


def stripes(base: Paint, colour: Colour, axis: Colour, period: float, duty: float = 0.5) -> Paint:
    """Bands of `colour` across `axis` every `period`, covering `duty` of each period."""
    c, a = np.asarray(colour, dtype=np.float64), np.asarray(axis, dtype=np.float64)

    def paint(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        out = base(points, normals)
        phase = np.mod(points @ a / period, 1.0)
        out[phase < duty] = c
        return out

    return paint


def band(base: Paint, colour: Colour, axis: Colour, low: float, high: float) -> Paint:
    """`colour` where low ≤ point·axis < high (labels, soles, tape)."""
    c, a = np.asarray(colour, dtype=np.float64), np.asarray(axis, dtype=np.float64)

    def paint(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        out = base(points, normals)
        t = points @ a
        out[(t >= low) & (t < high)] = c
        return out

    return paint


def patch(base: Paint, colour: Colour, centre: Colour, radii: Colour) -> Paint:
    """`colour` inside an ellipsoid: where it meets the surface it leaves a logo-like blotch or swoosh."""
    c, o, r = (np.asarray(v, dtype=np.float64) for v in (colour, centre, radii))

    def paint(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        out = base(points, normals)
        out[(((points - o) / r) ** 2).sum(axis=1) < 1.0] = c
        return out

    return paint


def noise(base: Paint, rng: np.random.Generator, amplitude: float, scale: float, waves: int = 6) -> Paint:
    """Multiplies `base` by smooth value noise (a sum of random plane waves) of relative `amplitude`."""
    directions = rng.normal(size=(waves, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    frequencies = rng.uniform(0.5, 2.0, waves) / scale
    phases = rng.uniform(0, 2 * np.pi, waves)
    tint = rng.uniform(0.7, 1.3, 3)

    def paint(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        field = np.sin(points @ (directions * frequencies[:, None]).T + phases).mean(axis=1)
        factor = 1.0 + amplitude * field[:, None] * tint
        return np.clip(base(points, normals) * factor, 0.0, 1.0)

    return paint


def where(inside: Callable[[np.ndarray], np.ndarray], paint: Paint, otherwise: Paint) -> Paint:
    """`paint` on points for which `inside(points)` holds, `otherwise` elsewhere."""

    def combined(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
        out = otherwise(points, normals)
        mask = inside(points)
        if mask.any():
            out[mask] = paint(points[mask], normals[mask])
        return out

    return combined


def bake_lighting(
    albedo: np.ndarray, normals: np.ndarray, view_direction: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Albedo lit by an ambient term, a key light from above the camera and an optional fill, with a soft sheen.

    `view_direction` points from the object towards the camera (unit, world). Returns RGB in [0, 1].
    """
    up = np.array([0.0, 1.0, 0.0])
    side = np.cross(up, view_direction)
    side = side / max(float(np.linalg.norm(side)), 1e-9)
    key = view_direction * rng.uniform(0.3, 1.0) + up * rng.uniform(0.3, 1.2) + side * rng.uniform(-1.0, 1.0)
    key /= np.linalg.norm(key)
    fill = view_direction * rng.uniform(0.2, 1.0) - side * rng.uniform(0.0, 1.0) + up * rng.uniform(-0.2, 0.5)
    fill /= np.linalg.norm(fill)
    ambient = rng.uniform(0.2, 0.45)
    shade = ambient + rng.uniform(0.55, 0.9) * np.clip(normals @ key, 0, None)
    shade += rng.uniform(0.0, 0.35) * np.clip(normals @ fill, 0, None)
    halfway = key + view_direction
    halfway /= np.linalg.norm(halfway)
    sheen = rng.uniform(0.0, 0.35) * np.clip(normals @ halfway, 0, None) ** rng.uniform(8, 40)
    tint = 1.0 + rng.normal(0, 0.04, 3)  # warm or cool light
    return np.clip(albedo * shade[:, None] * tint + sheen[:, None], 0.0, 1.0)
