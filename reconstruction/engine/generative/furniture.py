"""Procedural assemblies of boxes and rods: chairs, stools and tables, boxes and packages.

Builders return (parts, paints) in their own units with y up; procedural.py centres and scales them.
"""

from __future__ import annotations

import numpy as np
import trimesh

from reconstruction.engine.generative import paint as p
from reconstruction.engine.generative.shapes import box, revolve, rod, rounded_box


def _wood(rng: np.random.Generator) -> p.Paint:
    if rng.random() < 0.5:
        tone = np.array([0.55, 0.36, 0.2]) * rng.uniform(0.6, 1.4)
        grain = p.stripes(p.solid(np.clip(tone, 0, 1)), np.clip(tone * 0.8, 0, 1), (1, 0.05, 0.3), 0.03, 0.4)
        return p.noise(grain, rng, 0.1, 0.1)
    return p.noise(p.solid(p.random_colour(rng)), rng, 0.06, 0.3)


def _legs(
    rng: np.random.Generator, width: float, depth: float, top: float, radius: float, inset: float
) -> list[trimesh.Trimesh]:
    splay = rng.uniform(0.0, 0.08) if rng.random() < 0.5 else 0.0
    square = rng.random() < 0.4
    legs = []
    for sx in (-1, 1):
        for sz in (-1, 1):
            x, z = sx * (width / 2 - inset), sz * (depth / 2 - inset)
            if square:
                legs.append(box((radius * 2, top, radius * 2), (x, top / 2, z)))
            else:
                legs.append(rod((x + sx * splay, 0, z + sz * splay), (x, top, z), radius, 12))
    return legs


def chair(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], list[p.Paint]]:
    width, depth = rng.uniform(0.8, 1.1), rng.uniform(0.8, 1.1)
    seat_y, seat_t = rng.uniform(0.85, 1.05), rng.uniform(0.06, 0.18)
    leg_r = rng.uniform(0.03, 0.06)
    frame, cushion = _wood(rng), p.noise(p.solid(p.random_colour(rng)), rng, 0.08, 0.05)
    seat = rounded_box((width, seat_t, depth), rng.uniform(0.01, 0.15), (0, seat_y, 0))
    parts = [seat] + _legs(rng, width, depth, seat_y - seat_t / 2 + 0.01, leg_r, leg_r * 1.5)
    paints = [cushion] + [frame] * 4
    back_h, back_t = rng.uniform(0.7, 1.2), rng.uniform(0.05, 0.12)
    lean = rng.uniform(0.0, 0.25)
    back_z = -depth / 2 + back_t / 2
    if rng.random() < 0.6:  # a solid back panel, leaning back
        back = rounded_box((width, back_h, back_t), rng.uniform(0.01, 0.1), (0, 0, 0))
        tilt = trimesh.transformations.rotation_matrix(-lean * 0.5, (1, 0, 0))
        back.apply_transform(tilt)
        back.apply_translation((0, seat_y + back_h / 2 - 0.02, back_z - lean * back_h * 0.25))
        parts.append(back)
        paints.append(cushion if rng.random() < 0.6 else frame)
    else:  # two posts, a top rail and slats
        for sx in (-1, 1):
            x = sx * (width / 2 - leg_r * 1.5)
            parts.append(rod((x, seat_y - 0.05, back_z), (x, seat_y + back_h, back_z - lean * 0.3), leg_r, 12))
            paints.append(frame)
        rail_y = seat_y + back_h * 0.92
        parts.append(box((width - leg_r * 2, back_h * 0.15, back_t * 0.6), (0, rail_y, back_z - lean * 0.28)))
        paints.append(frame)
        for k in range(int(rng.integers(0, 4))):
            x = (k + 1) / (int(rng.integers(2, 5)) + 1) * width - width / 2
            parts.append(rod((x, seat_y, back_z), (x, rail_y, back_z - lean * 0.28), leg_r * 0.6, 8))
            paints.append(frame)
    if rng.random() < 0.3:  # armrests
        arm_y = seat_y + rng.uniform(0.25, 0.4)
        for sx in (-1, 1):
            x = sx * (width / 2 - 0.04)
            parts.append(box((0.08, 0.06, depth * 0.9), (x, arm_y, 0)))
            parts.append(rod((x, seat_y, depth * 0.35), (x, arm_y, depth * 0.35), leg_r * 0.8, 8))
            paints += [frame, frame]
    return parts, paints


def table(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], list[p.Paint]]:
    """Tables and stools: a round or rectangular top on legs or a pedestal."""
    stool = rng.random() < 0.4
    height = rng.uniform(0.6, 1.4) if stool else rng.uniform(0.5, 1.0)
    width = rng.uniform(0.5, 0.9) if stool else rng.uniform(1.0, 2.0)
    depth = width if stool or rng.random() < 0.3 else width * rng.uniform(0.5, 0.9)
    top_t = rng.uniform(0.03, 0.1)
    wood, legs_paint = _wood(rng), _wood(rng) if rng.random() < 0.3 else None
    round_top = rng.random() < (0.6 if stool else 0.3)
    if round_top:
        top = rod((0, height - top_t, 0), (0, height, 0), width / 2, 48)
        inset = width * 0.2
    else:
        top = rounded_box((width, top_t, depth), rng.uniform(0.0, 0.1), (0, height - top_t / 2, 0))
        inset = rng.uniform(0.03, 0.12)
    leg_paint = legs_paint or wood
    if rng.random() < 0.25:  # pedestal
        column = rod((0, 0.05, 0), (0, height - top_t, 0), rng.uniform(0.04, 0.1), 24)
        foot_r = min(width, depth) * rng.uniform(0.3, 0.45)
        foot = revolve(np.array([[0, 0], [foot_r, 0], [foot_r * 0.8, 0.06], [0, 0.08]]), 48)
        return [top, column, foot], [wood, leg_paint, leg_paint]
    leg_r = rng.uniform(0.02, 0.05) * (1 if stool else 1.3)
    legs = _legs(
        rng,
        width if not round_top else width * 0.9,
        depth if not round_top else width * 0.9,
        height - top_t + 0.01,
        leg_r,
        inset,
    )
    parts, paints = [top] + legs, [wood] + [leg_paint] * len(legs)
    if stool and rng.random() < 0.6:  # a ring of stretchers
        y = height * rng.uniform(0.25, 0.4)
        corners = [leg.bounds.mean(axis=0) for leg in legs]
        for a, b in ((0, 1), (1, 3), (3, 2), (2, 0)):
            start, end = np.array(corners[a]), np.array(corners[b])
            start[1] = end[1] = y
            parts.append(rod(tuple(start), tuple(end), leg_r * 0.6, 8))
            paints.append(leg_paint)
    return parts, paints


def package(rng: np.random.Generator) -> tuple[list[trimesh.Trimesh], list[p.Paint]]:
    """Cardboard boxes, shoeboxes with lids, gift boxes and cylindrical tubes."""
    w, h, d = 1.0, rng.uniform(0.3, 1.2), rng.uniform(0.4, 1.0)
    cardboard = np.array([0.7, 0.55, 0.36]) * rng.uniform(0.8, 1.15)
    colour = np.clip(cardboard, 0, 1) if rng.random() < 0.5 else p.random_colour(rng)
    paint = p.noise(p.solid(colour), rng, 0.06, 0.2)
    if rng.random() < 0.5:  # tape or ribbon over the top
        paint = p.band(paint, p.contrasting(rng, colour), (1, 0, 0), -0.06, 0.06)
    if rng.random() < 0.4:
        paint = p.patch(paint, p.contrasting(rng, colour), (rng.uniform(-0.3, 0.3), h * 0.5, d / 2), (0.18, 0.12, 0.3))
    kind = rng.random()
    if kind < 0.15:  # a cylindrical tube
        radius = rng.uniform(0.2, 0.5)
        return [rod((0, 0, 0), (0, h * 2, 0), radius, 48)], [paint]
    body = (
        rounded_box((w, h, d), rng.uniform(0.0, 0.04), (0, h / 2, 0))
        if rng.random() < 0.5
        else box((w, h, d), (0, h / 2, 0))
    )
    if kind < 0.45:  # a lid overhanging the top
        lid_h = rng.uniform(0.08, 0.25) * h
        lid = box((w * 1.03, lid_h, d * 1.03), (0, h - lid_h / 2 + 0.005, 0))
        return [body, lid], [paint, p.noise(p.solid(p.contrasting(rng, colour)), rng, 0.05, 0.2)]
    return [body], [paint]
