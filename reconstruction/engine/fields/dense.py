"""Dense voxel fields sampled trilinearly: geometry (raw density or signed distance) plus degree-1 spherical-
harmonics colour, in the style of DVGO/Plenoxels. Distances inside the field are in voxels of its grid."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

DENSITY = "density"
SDF = "sdf"
SH_CHANNELS = 12  # 3 colours × (1 + 3) coefficients of degree ≤ 1
_SH0, _SH1 = 0.28209479177387814, 0.4886025119029199
DENSITY_SHIFT = -4.0  # raw 0 ↦ softplus(−4) ≈ 0.018 per voxel: nearly empty, with a useful gradient


def grid_shape(low: np.ndarray, high: np.ndarray, resolution: int) -> tuple[float, tuple[int, int, int]]:
    """Voxel size and grid-point counts of a box at `resolution` points along its longest side."""
    extent = np.asarray(high, dtype=np.float64) - np.asarray(low, dtype=np.float64)
    voxel = float(extent.max() / (resolution - 1))
    shape = tuple(max(2, int(math.ceil(e / voxel - 1e-9)) + 1) for e in extent)
    return voxel, shape  # type: ignore[return-value]


class DenseField(torch.nn.Module):
    """Geometry and colour on the points of a regular grid from `low` with spacing `voxel`."""

    low: torch.Tensor  # buffer: the first grid point, world coordinates

    def __init__(self, kind: str, low: np.ndarray, voxel: float, shape: tuple[int, int, int], device: str) -> None:
        super().__init__()
        if kind not in (DENSITY, SDF):
            raise ValueError(f"unknown field kind {kind!r}")
        self.kind = kind
        self.low_np = np.asarray(low, dtype=np.float64)
        self.voxel = float(voxel)
        self.shape: tuple[int, int, int] = (int(shape[0]), int(shape[1]), int(shape[2]))
        self.register_buffer("low", torch.tensor(self.low_np, dtype=torch.float32, device=device))
        self.geometry = torch.nn.Parameter(torch.zeros((1, 1, *self.shape), device=device))
        self.colour = torch.nn.Parameter(torch.zeros((1, SH_CHANNELS, *self.shape), device=device))
        # SDF → density (VolSDF): sigma = Ψ_β(−d)/β with β in voxels, learnt.
        self.log_beta = torch.nn.Parameter(torch.tensor(0.0, device=device))

    @property
    def high_np(self) -> np.ndarray:
        return self.low_np + (np.array(self.shape) - 1) * self.voxel

    def _normalised(self, points: torch.Tensor) -> torch.Tensor:
        size = torch.tensor([n - 1 for n in self.shape], dtype=points.dtype, device=points.device)
        unit = (points - self.low) / (size * self.voxel) * 2 - 1
        return unit.flip(-1)  # grid_sample wants (x, y, z) ↦ (W, H, D) = our (z, y, x)

    def sample(self, grid: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Trilinear values (P, C) of a (1, C, X, Y, Z) grid at world points (P, 3); borders clamp."""
        coords = self._normalised(points).reshape(1, 1, 1, -1, 3)
        values = F.grid_sample(grid, coords, mode="bilinear", padding_mode="border", align_corners=True)
        return values.reshape(grid.shape[1], -1).T

    def beta(self) -> torch.Tensor:
        return self.log_beta.exp().clamp(min=0.05)

    def density_from_geometry(self, geometry: torch.Tensor) -> torch.Tensor:
        """Density per voxel length from raw geometry values."""
        if self.kind == DENSITY:
            return F.softplus(geometry + DENSITY_SHIFT)
        beta = self.beta()
        # Ψ_β(−d): Laplace CDF; written with exp of a non-positive argument only, so it cannot overflow.
        inside = 1.0 - 0.5 * torch.exp(-(-geometry).clamp(min=0) / beta)
        outside = 0.5 * torch.exp(-geometry.clamp(min=0) / beta)
        return torch.where(geometry < 0, inside, outside) / beta

    def forward(self, points: torch.Tensor, directions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Density per world unit (P,) and colour (P, 3) at points seen along directions."""
        geometry = self.sample(self.geometry, points)[:, 0]
        sigma = self.density_from_geometry(geometry) / self.voxel
        return sigma, self.colour_at(points, directions)

    def colour_at(self, points: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        coefficients = self.sample(self.colour, points).reshape(-1, 3, 4)
        x, y, z = directions.unbind(-1)
        basis = torch.stack([torch.full_like(x, _SH0), -_SH1 * y, _SH1 * z, -_SH1 * x], dim=-1)
        return torch.sigmoid((coefficients * basis[:, None, :]).sum(-1))

    def resized(self, resolution: int) -> DenseField:
        """The same field on a finer (or coarser) grid over the same box; SDF values rescale to the new voxel."""
        voxel, shape = grid_shape(self.low_np, self.high_np, resolution)
        device = self.geometry.device
        bigger = DenseField(self.kind, self.low_np, voxel, shape, str(device))
        with torch.no_grad():
            axes = [torch.arange(n, device=device, dtype=torch.float32) * voxel for n in shape]
            points = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3) + bigger.low
            geometry = self.sample(self.geometry, points).T.reshape(1, 1, *shape)
            if self.kind == SDF:
                geometry = geometry * (self.voxel / voxel)
            bigger.geometry.copy_(geometry)
            bigger.colour.copy_(self.sample(self.colour, points).T.reshape(1, SH_CHANNELS, *shape))
            bigger.log_beta.copy_(self.log_beta)
        return bigger

    def voxel_density(self) -> torch.Tensor:
        """Density per voxel length at every grid point (X, Y, Z)."""
        with torch.no_grad():
            return self.density_from_geometry(self.geometry[0, 0])

    def checkpoint(self) -> dict[str, Any]:
        return {
            "format": "assay-dense-field",
            "version": 1,
            "kind": self.kind,
            "low": self.low_np.tolist(),
            "voxel": self.voxel,
            "shape": list(self.shape),
            "state": {k: v.detach().cpu() for k, v in self.state_dict().items()},
        }

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any], device: str = "cpu") -> DenseField:
        field = cls(data["kind"], np.asarray(data["low"]), data["voxel"], tuple(data["shape"]), device)
        field.load_state_dict(data["state"])
        return field


def neighbour_differences(grid: torch.Tensor, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Forward differences (count, C, 3) and second differences (count, C, 3) of a (1, C, X, Y, Z) grid at
    random interior points, stacked as (count, C, 6): the sampled footing of TV, eikonal and smoothness terms."""
    _, channels, *shape = grid.shape
    sizes = torch.tensor(shape)
    index = (torch.rand((count, 3), generator=generator) * (sizes - 2).clamp(min=1)).long() + 1
    index = torch.minimum(index, sizes - 2).to(grid.device)
    flat = grid.reshape(channels, -1)
    strides = torch.tensor([shape[1] * shape[2], shape[2], 1], device=grid.device)
    centre = (index * strides).sum(-1)
    values = flat[:, centre]
    first, second = [], []
    for axis in range(3):
        ahead = flat[:, centre + strides[axis]]
        behind = flat[:, centre - strides[axis]]
        first.append(ahead - values)
        second.append(ahead + behind - 2 * values)
    return torch.stack(first + second, dim=-1).permute(1, 0, 2)
