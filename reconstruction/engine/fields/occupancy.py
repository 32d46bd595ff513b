"""A boolean voxel grid of where the field may be non-empty, so rendering skips the rest of the box."""

from __future__ import annotations

import torch


class OccupancyGrid:
    """Occupied cells of a box split into `occupied.shape` equal cells; points outside the box are empty."""

    def __init__(self, low: torch.Tensor, high: torch.Tensor, occupied: torch.Tensor) -> None:
        self.low = low
        self.high = high
        self.occupied = occupied.bool()
        self._shape = torch.tensor(occupied.shape, device=occupied.device)

    def query(self, points: torch.Tensor) -> torch.Tensor:
        """Occupancy of points (..., 3)."""
        cell = ((points - self.low) / (self.high - self.low) * self._shape).floor().long()
        inside = ((cell >= 0) & (cell < self._shape)).all(dim=-1)
        cell = torch.minimum(cell.clamp(min=0), self._shape - 1)
        hit = self.occupied[cell[..., 0], cell[..., 1], cell[..., 2]]
        return hit & inside

    def dilated(self, cells: int = 1) -> OccupancyGrid:
        """The grid grown by `cells` in every direction (a safety margin for trilinear footprints)."""
        grown = torch.nn.functional.max_pool3d(
            self.occupied[None, None].float(), kernel_size=2 * cells + 1, stride=1, padding=cells
        )[0, 0]
        return OccupancyGrid(self.low, self.high, grown > 0)

    @property
    def fraction(self) -> float:
        return float(self.occupied.float().mean())
