"""Procedural household objects built from revolved profiles: bottles, vases, cups and mugs, bowls, lamps.

Builders return (parts, paints) in their own units with y up; procedural.py centres and scales them.
"""

from __future__ import annotations

import numpy as np
import trimesh

from reconstruction.engine.generative import paint as p
from reconstruction.engine.generative.shapes import revolve, rod, tube


def _ease(t: np.ndarray) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(t, 0, 1))


def _segments(rng: np.random.Generator) -> int:
    """Mostly round; sometimes a faceted (square, hexagonal, octagonal) body."""
    return int(rng.choice([64, 64, 64, 64, 4, 6, 8]))


def _hollow(outer: np.ndarray, wall: float, floor: float) -> np.ndarray:
    """Closed (radius, height) profile of a vessel: up the outside, over a rim, down the inside to the floor."""
    top = outer[-1]
    inner = outer[::-1].copy()
    inner[:, 0] = np.maximum(inner[:, 0] - wall, wall * 0.5)
    keep = inner[:, 1] > floor
    inner = np.vstack([inner[keep], [max(np.interp(floor, outer[:, 1], outer[:, 0]) - wall, wall * 0.5), floor]])
    rim = [top[0] - wall * 0.5, top[1] + wall * 0.3]
    return np.vstack([[0.0, 0.0], outer, rim, inner, [0.0, floor]])


def _body_paint(rng: np.random.Generator, height: float, radius: float) -> p.Paint:
    colour = p.random_colour(rng)
    paint = p.solid(colour)
    choice = rng.random()
    if choice < 0.3:  # label
        low = rng.uniform(0.15, 0.4) * height
        paint = p.band(paint, p.contrasting(rng, colour), (0, 1, 0), low, low + rng.uniform(0.15, 0.35) * height)
    elif choice < 0.5:
        paint = p.stripes(paint, p.contrasting(rng, colour), (0, 1, 0), rng.uniform(0.05, 0.2) * height, 0.4)
    elif choice < 0.65:  # logo on the front
        paint = p.patch(
            paint, p.contrasting(rng, colour), (0, height * rng.uniform(0.3, 0.6), radius), (0.4 * radius,) * 3
        )
    return p.noise(paint, rng, rng.uniform(0.0, 0.15), radius * rng.uniform(0.1, 0.5))


def bottle(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], list[p.Paint]]:
    radius, height = 1.0, rng.uniform(2.4, 4.5)
    shoulder, neck_r = rng.uniform(0.5, 0.75) * height, rng.uniform(0.22, 0.45)
    neck_top = height * rng.uniform(0.86, 0.95)
    ys = np.linspace(0.03, shoulder, 6)
    body = np.stack([radius * (1 + rng.uniform(-0.06, 0.06) * np.sin(ys / height * np.pi * 2)), ys], 1)
    t = np.linspace(0, 1, 10)[1:]
    shoulder_ys = shoulder + t * (neck_top * 0.85 - shoulder)
    shoulder_rs = radius + (neck_r - radius) * _ease(t) ** rng.uniform(0.7, 1.5)
    profile = np.vstack(
        [[0, 0], [radius * 0.9, 0], body, np.stack([shoulder_rs, shoulder_ys], 1), [neck_r, neck_top], [0, neck_top]]
    )
    segments = _segments(rng)
    squash = (1.0, rng.uniform(0.55, 1.0) if rng.random() < 0.3 else 1.0)
    parts = [revolve(profile, segments, squash)]
    cap_h = rng.uniform(0.12, 0.4) * radius
    cap = rod((0, neck_top - cap_h * 0.4, 0), (0, neck_top + cap_h, 0), neck_r * rng.uniform(1.05, 1.3), 32)
    glassy = rng.random() < 0.3
    body_paint = _body_paint(rng, height, radius)
    if glassy:
        body_paint = p.band(
            p.solid(np.array([0.2, 0.45, 0.25]) * rng.uniform(0.5, 1.5)),
            (0.9, 0.9, 0.85),
            (0, 1, 0),
            0.3 * height,
            0.55 * height,
        )
    return parts + [cap], [body_paint, p.solid(p.random_colour(rng))]


def vase(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], list[p.Paint]]:
    height, base = rng.uniform(1.2, 3.0), rng.uniform(0.45, 0.8)
    ys = np.linspace(0, height, 14)
    waves = sum(rng.uniform(-0.3, 0.3) * np.sin(ys / height * np.pi * k + rng.uniform(0, 6)) for k in (1, 2, 3))
    radius = base * (1 + waves) * (1 + rng.uniform(-0.4, 0.5) * ys / height)
    radius = np.clip(radius, 0.2, 1.2)
    outer = np.stack([radius, ys], 1)[1:]
    profile = _hollow(outer, wall=rng.uniform(0.07, 0.12), floor=0.1 * height)
    return [revolve(profile, _segments(rng))], [_body_paint(rng, height, float(radius.max()))]


def cup(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], list[p.Paint]]:
    height, bottom_r = rng.uniform(0.8, 1.6), rng.uniform(0.38, 0.5)
    top_r = bottom_r * rng.uniform(0.95, 1.35)
    ys = np.linspace(0, height, 8)[1:]
    outer = np.stack([bottom_r + (top_r - bottom_r) * ys / height, ys], 1)
    wall = rng.uniform(0.05, 0.08)
    parts = [revolve(_hollow(outer, wall, 0.1), 64)]
    paints = [_body_paint(rng, height, top_r)]
    if rng.random() < 0.7:  # a mug handle: a C-shaped tube whose ends stop inside the wall
        lo, hi = height * rng.uniform(0.15, 0.3), height * rng.uniform(0.7, 0.85)
        reach = rng.uniform(0.25, 0.45)
        angles = np.linspace(-np.pi / 2, np.pi / 2, 14)
        mid, half = (lo + hi) / 2, (hi - lo) / 2
        wall_at = lambda y: bottom_r + (top_r - bottom_r) * y / height - wall / 2  # noqa: E731
        path = np.stack([np.cos(angles) * reach, mid + np.sin(angles) * half, np.zeros_like(angles)], 1)
        path[:, 0] += np.array([wall_at(y) for y in path[:, 1]])
        parts.append(tube(path, rng.uniform(0.04, 0.07), 12))
        paints.append(paints[0])
    return parts, paints


def bowl(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], list[p.Paint]]:
    radius, height = 1.0, rng.uniform(0.35, 0.7)
    foot = rng.uniform(0.3, 0.5)
    t = np.linspace(0, 1, 12)[1:]
    outer = np.stack([foot + (radius - foot) * np.sin(t * np.pi / 2) ** rng.uniform(0.6, 1.2), height * t], 1)
    profile = _hollow(outer, rng.uniform(0.06, 0.09), floor=height * 0.15)
    return [revolve(profile, 64)], [_body_paint(rng, height, radius)]


def lamp(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], list[p.Paint]]:
    base_r, base_h = rng.uniform(0.3, 0.5), rng.uniform(0.05, 0.15)
    stem_h = rng.uniform(0.8, 1.8)
    base = revolve(np.array([[0, 0], [base_r, 0], [base_r * 0.9, base_h], [0, base_h * 1.3]]), 48)
    stem = rod((0, base_h, 0), (0, stem_h, 0), rng.uniform(0.025, 0.05), 16)
    metal = p.noise(p.solid(p.random_colour(rng, neutral=0.7)), rng, 0.05, 0.2)
    shade_colour = np.array(p.NEUTRALS[0]) * rng.uniform(0.85, 1.0) if rng.random() < 0.6 else p.random_colour(rng)
    if rng.random() < 0.75:  # a drum or cone shade, open top and bottom
        low_r, high_r = rng.uniform(0.35, 0.7), rng.uniform(0.2, 0.55)
        shade_h, wall = rng.uniform(0.35, 0.7), 0.04
        y0 = stem_h - shade_h * rng.uniform(0.2, 0.5)
        shade = revolve(
            np.array([[low_r, y0], [high_r, y0 + shade_h], [high_r - wall, y0 + shade_h], [low_r - wall, y0]]), 64
        )
        spider = rod((0, y0 + shade_h * 0.8, -high_r + wall), (0, y0 + shade_h * 0.8, high_r - wall), 0.012, 8)
        return [base, stem, shade, spider], [metal, metal, p.noise(p.solid(shade_colour), rng, 0.05, 0.1), metal]
    globe = trimesh.creation.icosphere(subdivisions=3, radius=rng.uniform(0.2, 0.4))
    globe.apply_translation((0, stem_h + 0.1, 0))
    return [base, stem, globe], [metal, metal, p.solid(shade_colour)]
