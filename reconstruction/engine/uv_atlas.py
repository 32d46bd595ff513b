"""Chart atlases from xatlas, computed in a child process.

xatlas crashes the whole process on some meshes (a segmentation fault: an icosphere of 81,920 triangles does it
here, and its tracker lists more) and runs for very long on others. A worker must survive both, so the atlas is
made by running this file (`python uv_atlas.py IN OUT`) under a time limit, and a failure comes back as
AtlasFailed, which the caller can answer (the texture baker falls back to its per-triangle atlas).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The child's start-up (importing numpy and xatlas) plus charting time, which grows with the mesh; measured on a
# busy 2-core machine at 3 s for 20,000 triangles and under 20 s for 100,000.
BASE_TIMEOUT_S = 30.0
TIMEOUT_S_PER_TRIANGLE = 1e-3


class AtlasFailed(Exception):
    """xatlas crashed or ran out of time on this mesh."""


@dataclass(frozen=True)
class ChartAtlas:
    vertex_source: np.ndarray  # (V',) the input vertex each atlas vertex copies (vertices split along seams)
    faces: np.ndarray  # (F, 3) into the atlas vertices
    uvs: np.ndarray  # (V', 2) in [0, 1], v up (0 at the texture's bottom row)
    charts: int
    atlases: int
    utilization: float  # share of the atlas the charts cover


def chart_atlas(
    positions: np.ndarray,
    faces: np.ndarray,
    normals: np.ndarray | None = None,
    *,
    texture_size: int = 2048,
    padding_px: int = 4,
    timeout_s: float | None = None,
) -> ChartAtlas:
    """Charts of the mesh packed into one square atlas of `texture_size` texels, `padding_px` apart so bilinear
    filtering and mipmaps do not bleed across charts. Raises AtlasFailed when xatlas crashes or overruns."""
    limit = timeout_s if timeout_s is not None else BASE_TIMEOUT_S + TIMEOUT_S_PER_TRIANGLE * len(faces)
    with tempfile.TemporaryDirectory(prefix="assay-atlas-") as folder:
        request, answer = Path(folder) / "mesh.npz", Path(folder) / "atlas.npz"
        arrays: dict[str, np.ndarray] = {
            "positions": _unit_size(np.asarray(positions, np.float64)),
            "faces": np.asarray(faces, np.uint32),
            "texture_size": np.array(texture_size),
            "padding_px": np.array(padding_px),
        }
        if normals is not None:
            arrays["normals"] = np.asarray(normals, np.float32)
        np.savez(request, **arrays)  # type: ignore[arg-type]
        command = [sys.executable, __file__, str(request), str(answer)]
        try:
            run = subprocess.run(command, capture_output=True, text=True, timeout=limit)
        except subprocess.TimeoutExpired as exc:
            raise AtlasFailed(f"xatlas did not finish within {limit:.0f} s on {len(faces)} triangles") from exc
        if run.returncode != 0 or not answer.exists():
            raise AtlasFailed(f"xatlas failed on {len(faces)} triangles ({_exit_reason(run.returncode, run.stderr)})")
        with np.load(answer) as result:
            return ChartAtlas(
                vertex_source=result["vertex_source"].astype(np.int64),
                faces=result["faces"].astype(np.int64),
                uvs=result["uvs"].astype(np.float64),
                charts=int(result["charts"]),
                atlases=int(result["atlases"]),
                utilization=float(result["utilization"]),
            )


def _unit_size(positions: np.ndarray) -> np.ndarray:
    """The mesh centred and scaled to a unit bounding-box diagonal. Charts do not depend on scale, but xatlas's
    packing does: a 4 cm avocado in metres came back with its charts covering 3% of the atlas (62% at unit size)."""
    if not len(positions):
        return positions.astype(np.float32)
    low, high = positions.min(axis=0), positions.max(axis=0)
    diagonal = float(np.linalg.norm(high - low)) or 1.0
    return ((positions - (low + high) / 2) / diagonal).astype(np.float32)


def _exit_reason(returncode: int, stderr: str) -> str:
    if returncode < 0:
        return f"killed by signal {-returncode}, a crash inside xatlas"
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
    return f"exit status {returncode}: {last}"


def _atlas_in_this_process(request: Path, answer: Path) -> None:
    import xatlas

    with np.load(request) as mesh:
        atlas = xatlas.Atlas()
        if "normals" in mesh:
            atlas.add_mesh(mesh["positions"], mesh["faces"], mesh["normals"])
        else:
            atlas.add_mesh(mesh["positions"], mesh["faces"])
        pack = xatlas.PackOptions()
        pack.resolution = int(mesh["texture_size"])
        pack.padding = int(mesh["padding_px"])
        pack.bilinear = True
    atlas.generate(xatlas.ChartOptions(), pack)
    vertex_source, faces, uvs = atlas[0]
    np.savez(
        answer,
        vertex_source=vertex_source,
        faces=faces,
        uvs=uvs,
        charts=atlas.chart_count,
        atlases=atlas.atlas_count,
        utilization=float(np.mean(atlas.utilization)),
    )


if __name__ == "__main__":
    _atlas_in_this_process(Path(sys.argv[1]), Path(sys.argv[2]))
