"""Procedural shoes: a sole extruded from a footprint, and an upper built as a height field with a foot opening.

Local units: the shoe is about 1 long along x (heel at −0.5, toe at +0.5), y up, z across. Styles range from
low sneakers and loafers to high-tops and boots; the opening is a cavity down to the insole, so silhouettes from
above and behind show it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh

from reconstruction.engine.generative import paint as p
from reconstruction.engine.generative.shapes import star_solid, tube

HalfWidth = Callable[[np.ndarray], np.ndarray]

STYLES = {
    # collar height, toe height, instep height, opening half-length, sole thickness (heel) — each a (low, high)
    "sneaker": ((0.24, 0.32), (0.10, 0.15), (0.22, 0.28), (0.15, 0.21), (0.05, 0.10)),
    "chunky": ((0.25, 0.34), (0.12, 0.16), (0.24, 0.30), (0.15, 0.20), (0.10, 0.17)),
    "high_top": ((0.42, 0.55), (0.11, 0.15), (0.24, 0.30), (0.12, 0.16), (0.05, 0.09)),
    "boot": ((0.55, 0.85), (0.12, 0.17), (0.26, 0.32), (0.10, 0.14), (0.04, 0.09)),
    "loafer": ((0.16, 0.22), (0.08, 0.12), (0.14, 0.19), (0.19, 0.26), (0.02, 0.05)),
    "pump": ((0.12, 0.17), (0.07, 0.1), (0.1, 0.14), (0.2, 0.26), (0.015, 0.03)),
}
STYLE_WEIGHTS = {"sneaker": 0.34, "chunky": 0.12, "high_top": 0.14, "boot": 0.13, "loafer": 0.15, "pump": 0.12}


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _interp(x: np.ndarray, knots: list[float], values: list[float]) -> np.ndarray:
    """Smooth (cosine-eased) piecewise interpolation through knots."""
    x = np.clip(x, knots[0], knots[-1])
    out = np.interp(x, knots, values)
    index = np.clip(np.searchsorted(knots, x) - 1, 0, len(knots) - 2)
    k0, k1 = np.asarray(knots)[index], np.asarray(knots)[index + 1]
    t = _smoothstep((x - k0) / np.maximum(k1 - k0, 1e-9))
    v0, v1 = np.asarray(values)[index], np.asarray(values)[index + 1]
    return np.where(k1 > k0, v0 + (v1 - v0) * t, out)


def _footprint(rng: np.random.Generator, width: float, count: int) -> tuple[np.ndarray, HalfWidth]:
    """Outline (count, 2) of a foot-shaped sole around (0, 0), and its half-width as a function of x.

    The width profile (narrow heel, wide ball, tapering toe) is rounded off at both ends by a superellipse, a
    blunt one at the toe and a rounder one at the heel.
    """
    heel, toe = rng.uniform(0.7, 0.82), rng.uniform(0.7, 0.9)
    ball_at = rng.uniform(0.1, 0.2)
    knots = [-0.5, -0.3, -0.05, ball_at, 0.36, 0.5]
    values = [heel, heel, 0.9, 1.0, toe, toe * 0.85]
    toe_round, heel_round = rng.uniform(2.2, 3.5), rng.uniform(2.0, 2.6)
    asymmetry = rng.uniform(0.0, 0.08)

    def half_width(x: np.ndarray) -> np.ndarray:
        ends = np.where(x > 0, toe_round, heel_round)
        rounding = np.clip(1 - np.abs(x / 0.5) ** ends, 0, 1) ** (1 / ends)
        return width / 2 * _interp(x, knots, values) * rounding

    u = np.linspace(0, 2 * np.pi, count, endpoint=False)
    x = 0.5 * np.cos(u)  # crowds samples at heel and toe, where the outline turns fastest
    side = np.where(np.sin(u) > 0, 1.0 - asymmetry * _smoothstep((x + 0.1) / 0.5), 1.0 + asymmetry * 0.5)
    z = np.sign(np.sin(u)) * half_width(x) * side
    return np.stack([x, z], axis=1), half_width


def shoe(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], list[p.Paint]]:
    """One shoe of a random style, with sole and upper as overlapping parts."""
    styles = list(STYLE_WEIGHTS)
    style = styles[rng.choice(len(styles), p=np.array(list(STYLE_WEIGHTS.values())))]
    collar, toe_h, instep, opening_half, sole_heel = (rng.uniform(*bounds) for bounds in STYLES[style])
    width = rng.uniform(0.34, 0.42)
    outline, half_width = _footprint(rng, width, 96)
    sole_toe = sole_heel * rng.uniform(0.55, 0.85)
    spring = rng.uniform(0.0, 0.05)
    # A pump's sole rises from the ball to a raised heel that stands on a separate heel post.
    heel_height = rng.uniform(0.12, 0.3) if style == "pump" else 0.0

    def sole_bottom(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        raised = heel_height * _smoothstep((-0.02 - x) / 0.36)
        return spring * _smoothstep((x - 0.25) / 0.25) ** 1.5 + raised

    def sole_top(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        return sole_bottom(x, z) + sole_toe + (sole_heel - sole_toe) * _smoothstep((0.35 - x) / 0.6)

    sole = star_solid(outline, sole_bottom, sole_top, rings=6)
    shrink = rng.uniform(0.93, 0.975)
    upper_outline = outline * shrink
    opening_at = -0.5 + opening_half + rng.uniform(0.06, 0.1)
    opening_width = rng.uniform(0.5, 0.7)
    flatness = rng.uniform(1.8, 3.5)
    heel_bump = rng.uniform(0.0, 0.04)

    throat = opening_at + opening_half
    shaft = style in ("boot", "high_top")  # the collar runs all round the opening, over a high tongue
    if shaft:
        knots = [-0.5, -0.42, opening_at, throat + 0.04, throat + 0.22, 0.32, 0.5]
        heights = [collar + heel_bump, collar, collar, collar * 0.92, instep, toe_h, toe_h * 0.7]
    else:
        knots = [-0.5, -0.42, opening_at, throat, 0.3, 0.5]
        heights = [collar + heel_bump, collar, collar * 0.96, instep, toe_h, toe_h * 0.7]

    def height_along(x: np.ndarray) -> np.ndarray:
        return _interp(x, knots, heights)

    def upper_top(x: np.ndarray, z: np.ndarray) -> np.ndarray:
        base = sole_top(x, z) - 0.01
        across = np.clip(np.abs(z) / np.maximum(half_width(x) * shrink, 1e-6), 0, 1)
        dome = (1 - across**flatness) ** 0.5
        wall = 0.3 + 0.6 * _smoothstep((0.05 - x) / 0.4)  # round over the toes, upright round the collar
        height = height_along(x) * (wall + (1 - wall) * dome)
        # The foot opening: an elliptical cavity down to the insole, with a gentler slope towards the tongue.
        ox = (x - opening_at) / opening_half
        oz = z / (opening_width * np.maximum(half_width(x) * shrink, 1e-6))
        distance = np.sqrt(ox**2 + oz**2)
        softness = np.where(ox > 0, 0.2 if shaft else 0.45, 0.18)
        cavity = _smoothstep((1.0 - distance) / softness)
        insole = 0.02 + sole_heel * 0.1
        return base + np.maximum(height * (1 - cavity) + insole * cavity, insole)

    upper = star_solid(upper_outline, lambda x, z: sole_top(x, z) - 0.015, upper_top, rings=22)
    parts = [sole, upper]
    paints = [_sole_paint(rng, sole_heel), _upper_paint(rng, style, opening_at, width)]
    if heel_height:
        top_radius = rng.uniform(0.05, 0.075)
        foot_radius = top_radius * rng.uniform(0.25, 0.9)  # stiletto to block heel
        x = -0.5 + top_radius + 0.03
        y_top = float(sole_top(np.array([x]), np.array([0.0]))[0]) - 0.005
        levels = np.linspace(0.0, y_top, 6)
        path = np.stack([np.full(6, x), levels, np.zeros(6)], axis=1)
        parts.append(tube(path, foot_radius + (top_radius - foot_radius) * (levels / y_top) ** 1.5, 16))
        paints.append(paints[0])
    return parts, paints


def _sole_paint(rng: np.random.Generator, thickness: float) -> p.Paint:
    colour = [np.array(p.NEUTRALS[0]), np.array(p.NEUTRALS[1]), np.array([0.62, 0.45, 0.27]), p.random_colour(rng)][
        rng.choice(4, p=[0.45, 0.3, 0.12, 0.13])
    ]
    sole = p.solid(colour)
    if rng.random() < 0.6:  # a darker outsole band at the bottom
        sole = p.band(sole, colour * rng.uniform(0.3, 0.7), (0, 1, 0), -1.0, thickness * rng.uniform(0.2, 0.45))
    if rng.random() < 0.3:
        sole = p.band(sole, p.random_colour(rng), (0, 1, 0), thickness * 0.5, thickness * 0.65)
    return p.noise(sole, rng, 0.05, 0.05)


def _upper_paint(rng: np.random.Generator, style: str, opening_at: float, width: float) -> p.Paint:
    base_colour = p.random_colour(rng, neutral=0.5)
    accent = p.contrasting(rng, base_colour)
    upper = p.solid(base_colour)
    if rng.random() < 0.45:  # toe cap
        upper = p.band(upper, p.random_colour(rng) if rng.random() < 0.5 else accent, (1, 0, 0), 0.32, 1.0)
    if rng.random() < 0.5:  # heel counter
        upper = p.band(upper, accent, (1, 0, 0), -1.0, -0.38)
    if (
        style in ("sneaker", "chunky", "high_top") and rng.random() < 0.7
    ):  # side logo: a long flat ellipsoid crossing both sides
        length = rng.uniform(0.18, 0.35)
        upper = p.patch(upper, accent, (rng.uniform(-0.15, 0.1), rng.uniform(0.08, 0.16), 0), (length, 0.035, 1.0))
    if style in ("sneaker", "chunky", "high_top", "boot") and rng.random() < 0.75:  # laces over the instep
        lace = np.array(p.NEUTRALS[rng.integers(0, 2)]) if rng.random() < 0.7 else accent
        laced = p.stripes(p.solid(base_colour * 0.85), lace, (1, 0, 0), rng.uniform(0.035, 0.05), 0.5)

        def over_instep(points: np.ndarray) -> np.ndarray:
            return (points[:, 0] > opening_at + 0.1) & (points[:, 0] < 0.3) & (np.abs(points[:, 2]) < width * 0.17)

        upper = p.where(over_instep, laced, upper)
    suede = rng.random() < 0.3
    return p.noise(upper, rng, 0.15 if suede else 0.05, 0.02 if suede else 0.1)
