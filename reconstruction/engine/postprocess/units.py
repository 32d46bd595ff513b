"""Scale and up axis: every later step and exporter works in metres with +Y up (glTF's frame)."""
from __future__ import annotations

import numpy as np

from .asset import Asset
from .errors import BadInput

UNIT_SCALES = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}

# Rotations taking each source up axis to +Y while keeping a right-handed frame.
_TO_Y_UP = {
    "Y": np.eye(3),
    "Z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    "X": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
}


def unit_scale_of(unit: str | float) -> float:
    """Metres per source unit, from a unit name ('mm') or a number (the capture's measured scale)."""
    if isinstance(unit, int | float):
        scale = float(unit)
    elif unit in UNIT_SCALES:
        scale = UNIT_SCALES[unit]
    else:
        try:
            scale = float(unit)
        except ValueError:
            raise BadInput(f"unknown unit '{unit}'; use one of {', '.join(UNIT_SCALES)} or metres per unit") from None
    if not np.isfinite(scale) or scale <= 0:
        raise BadInput(f"unit scale must be a positive number of metres per unit, got {unit}")
    return scale


def apply_units(asset: Asset, unit: str | float = "m", up_axis: str = "Y") -> tuple[Asset, dict[str, object]]:
    """Scale to metres and rotate so `up_axis` becomes +Y."""
    scale = unit_scale_of(unit)
    axis = up_axis.upper()
    if axis not in _TO_Y_UP:
        raise BadInput(f"unknown up axis '{up_axis}'; use X, Y or Z")
    rotation = _TO_Y_UP[axis]
    positions = asset.positions @ rotation.T * scale
    rotated = asset.replace(
        positions=positions,
        normals=None if asset.normals is None else asset.normals @ rotation.T,
        tangents=None,
    )
    report = {
        "metres_per_source_unit": scale,
        "source_up_axis": axis,
        "bounds_m": np.round(rotated.bounds, 6).tolist(),
        "extent_m": np.round(rotated.bounds[1] - rotated.bounds[0], 6).tolist(),
    }
    return rotated, report
