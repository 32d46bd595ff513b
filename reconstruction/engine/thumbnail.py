"""A catalog thumbnail of a mesh: one lit three-quarter view on a transparent background, as PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from reconstruction.engine.render import load_scene, render_views, turntable_cameras


def render_thumbnail(mesh: Path | str, out_path: Path, *, size: int = 512) -> Path:
    """Renders `mesh` (GLB, glTF, OBJ, PLY…) into `out_path` (PNG, RGBA) and returns the path."""
    scene = load_scene(mesh)
    camera = turntable_cameras(np.asarray(scene.bounds), views=1, size=size, single=True)[0]
    view = render_views(scene, [camera], lighting="lit", transparent=True)[0]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(view.rgb, mode="RGBA").save(out_path, format="PNG", optimize=True)
    return out_path
