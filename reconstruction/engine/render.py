"""Headless rendering of textured meshes: synthetic captures with exact cameras, and views for image metrics.

pyrender draws through EGL on Mesa (llvmpipe on a CPU-only machine); PYOPENGL_PLATFORM must be set before
OpenGL is first imported, which is why pyrender is imported inside the functions that need it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from reconstruction.engine.cameras import Camera, camera_looking_at, intrinsics, write_colmap_text
from reconstruction.engine.capture import MANIFEST
from reconstruction.engine.digests import sha256_file
from reconstruction.engine.errors import EngineError

DEFAULT_RINGS = (-15.0, 15.0, 45.0)
# OpenCV camera axes (x right, y down, z forward) → OpenGL (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


class RenderError(EngineError):
    code = "render_failed"


@dataclass
class RenderedView:
    rgb: np.ndarray  # uint8 (H, W, 3), or (H, W, 4) when transparent; edges antialiased against the background
    coverage: np.ndarray  # float32 (H, W) in [0, 1]: the share of each pixel the object covers (4× multisampling)
    depth: np.ndarray  # float32 (H, W), metres along the optical axis, 0 where empty

    @property
    def mask(self) -> np.ndarray:
        """Pixels at least half covered."""
        return self.coverage >= 0.5


def load_scene(mesh: Path | str | trimesh.Trimesh | trimesh.Scene) -> trimesh.Scene:
    """A trimesh scene of a mesh file or object; raises RenderError when it holds no triangles."""
    if isinstance(mesh, trimesh.Scene):
        scene = mesh
    elif isinstance(mesh, trimesh.Trimesh):
        scene = trimesh.Scene(mesh)
    else:
        try:
            loaded = trimesh.load(str(mesh), force="scene")
        except Exception as exc:  # trimesh raises many kinds for a bad file
            raise RenderError(f"Cannot load mesh {Path(mesh).name}: {exc}") from None
        if not isinstance(loaded, trimesh.Scene):
            raise RenderError(f"Cannot load mesh {Path(mesh).name}: not a scene of triangles.")
        scene = loaded
    if not any(isinstance(g, trimesh.Trimesh) and len(g.faces) for g in scene.geometry.values()):
        raise RenderError("The mesh has no triangles to render.")
    return scene


def _pyrender():
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    import pyrender

    return pyrender


def _build_scene(scene: trimesh.Scene, background: Sequence[float], lighting: str):
    pyrender = _pyrender()
    out = pyrender.Scene(bg_color=list(background), ambient_light=[1.0, 1.0, 1.0] if lighting == "flat" else [0.3] * 3)
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry[geometry_name]
        if not isinstance(geometry, trimesh.Trimesh) or not len(geometry.faces):
            continue
        out.add(pyrender.Mesh.from_trimesh(geometry, smooth=False), pose=transform)
    return out


@contextmanager
def _renderer(width: int, height: int) -> Iterator[Any]:
    pyrender = _pyrender()
    try:
        renderer = pyrender.OffscreenRenderer(width, height)
    except Exception as exc:  # no EGL/Mesa: say what is missing rather than an OpenGL traceback
        raise RenderError(
            f"Headless rendering is unavailable ({exc}); install libegl1, libgl1-mesa-dri and libegl-mesa0."
        ) from None
    try:
        yield renderer
    finally:
        renderer.delete()


def _render_one(
    renderer: Any, scene: Any, bounds: np.ndarray, camera: Camera, lighting: str, transparent: bool
) -> RenderedView:
    pyrender = _pyrender()
    K = camera.K
    # Clipping planes from the object's bounding sphere (pyrender's own bounds use np.infty, gone in NumPy 2).
    radius = float(np.linalg.norm(bounds[1] - bounds[0])) / 2
    distance = float(np.linalg.norm(camera.center - bounds.mean(axis=0)))
    znear = max(radius * 1e-3, distance - radius * 1.5)
    gl_camera = pyrender.IntrinsicsCamera(
        fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], znear=znear, zfar=distance + radius * 1.5
    )
    pose = camera.camera_to_world @ _CV_TO_GL
    camera_node = scene.add(gl_camera, pose=pose)
    light_node = None
    if lighting == "lit":
        light_node = scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=3.0), pose=pose)
    # Always RGBA: the alpha of the multisampled frame is the object's coverage of each pixel, a soft mask.
    flags = pyrender.RenderFlags.RGBA | (pyrender.RenderFlags.FLAT if lighting == "flat" else pyrender.RenderFlags.NONE)
    renderer.viewport_width, renderer.viewport_height = camera.width, camera.height
    try:
        color, depth = renderer.render(scene, flags=flags)
    finally:
        scene.remove_node(camera_node)
        if light_node is not None:
            scene.remove_node(light_node)
    # pyrender's depth is the distance along −z of the OpenGL camera, the same as OpenCV's z.
    coverage = color[..., 3].astype(np.float32) / 255.0
    rgb = color if transparent else color[..., :3]
    return RenderedView(rgb=np.ascontiguousarray(rgb), coverage=coverage, depth=depth.astype(np.float32))


def render_views(
    mesh: Path | str | trimesh.Trimesh | trimesh.Scene,
    cameras: Sequence[Camera],
    *,
    background: Sequence[float] = (1.0, 1.0, 1.0),
    lighting: str = "flat",
    transparent: bool = False,
    frame_seconds: list[float] | None = None,
) -> list[RenderedView]:
    """Renders `mesh` from each camera (distortion ignored). `flat` shows base colour unlit; `lit` adds a headlight.

    When `frame_seconds` is given, the wall time of each frame (draw and read-back) is appended to it.
    """
    if lighting not in ("flat", "lit"):
        raise RenderError(f"lighting must be 'flat' or 'lit', not {lighting!r}")
    source = load_scene(mesh)
    bounds = np.asarray(source.bounds, dtype=np.float64)
    scene = _build_scene(source, (*background[:3], 0.0), lighting)
    views: list[RenderedView] = []
    if not cameras:
        return views
    with _renderer(cameras[0].width, cameras[0].height) as renderer:
        for camera in cameras:
            started = time.perf_counter()
            views.append(_render_one(renderer, scene, bounds, camera, lighting, transparent))
            if frame_seconds is not None:
                frame_seconds.append(time.perf_counter() - started)
    return views


def turntable_cameras(
    bounds: np.ndarray,
    *,
    views: int,
    size: int,
    rings: Sequence[float] = DEFAULT_RINGS,
    single: bool = False,
    fov_deg: float = 40.0,
    margin: float = 1.15,
    seed: int | None = None,
) -> list[Camera]:
    """Cameras on rings around the bounding box (y up, as glTF), all looking at its centre, the whole object in view.

    Views are dealt to the rings in turn; each ring's azimuths are evenly spaced and offset from the previous
    ring's so no two views line up. `seed` adds a reproducible random turn of the whole turntable.
    """
    if views < 1:
        raise RenderError("views must be at least 1")
    if size < 8:
        raise RenderError("size must be at least 8 pixels")
    bounds = np.asarray(bounds, dtype=np.float64)
    center = bounds.mean(axis=0)
    radius = float(np.linalg.norm(bounds[1] - bounds[0])) / 2
    half_fov = math.radians(fov_deg) / 2
    distance = radius * margin / math.sin(half_fov)
    focal = size / 2 / math.tan(half_fov)
    K = intrinsics(focal, focal, size / 2, size / 2)
    if single:
        placements = [(15.0, 30.0)]
    else:
        rings = list(rings) or [0.0]
        per_ring = [views // len(rings) + (1 if i < views % len(rings) else 0) for i in range(len(rings))]
        turn = float(np.random.default_rng(seed).uniform(0, 360)) if seed is not None else 0.0
        placements = []
        for ring_index, (elevation, count) in enumerate(zip(rings, per_ring, strict=True)):
            offset = turn + ring_index * 360.0 / max(count, 1) / len(rings)
            placements.extend((elevation, offset + k * 360.0 / count) for k in range(count))
    cameras = []
    for index, (elevation, azimuth) in enumerate(placements):
        el, az = math.radians(elevation), math.radians(azimuth)
        eye = center + distance * np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])
        cameras.append(camera_looking_at(f"view_{index:03d}.png", size, size, K, eye, center))
    return cameras


def render_capture(
    mesh_path: Path | str,
    out_dir: Path | str,
    *,
    views: int = 24,
    size: int = 512,
    single: bool = False,
    rings: Sequence[float] = DEFAULT_RINGS,
    depth: bool = False,
    transparent: bool = False,
    lighting: str = "flat",
    seed: int | None = 0,
) -> Path:
    """Renders a calibrated capture of a GLB into `out_dir` (images/, masks/, sparse/, capture.json[, depth/]).

    Units are the mesh's own (glTF: metres). Depth maps are float32 `.npy` in those units, 0 where empty.
    """
    mesh_path, out = Path(mesh_path), Path(out_dir)
    scene = load_scene(mesh_path)
    bounds = np.asarray(scene.bounds, dtype=np.float64)
    cameras = turntable_cameras(bounds, views=views, size=size, rings=rings, single=single, seed=seed)
    background = (1.0, 1.0, 1.0)
    rendered = render_views(scene, cameras, background=background, lighting=lighting, transparent=transparent)
    for sub in ("images", "masks") + (("depth",) if depth else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for camera, view in zip(cameras, rendered, strict=True):
        stem = Path(camera.image_name).stem
        Image.fromarray(view.rgb).save(out / "images" / camera.image_name)
        # Masks keep the soft coverage (0–255): silhouette edges land with sub-pixel accuracy.
        Image.fromarray(np.round(view.coverage * 255).astype(np.uint8)).save(out / "masks" / f"{stem}.png")
        if depth:
            np.save(out / "depth" / f"{stem}.npy", view.depth)
    write_colmap_text(out / "sparse", cameras)
    K = cameras[0].K
    manifest = {
        "format": "assay-capture",
        "format_version": 1,
        "units": "metres",
        "scale": 1.0,
        "up": "+y",
        "views": len(cameras),
        "single": single,
        "rings_deg": [15.0] if single else [float(r) for r in rings],
        "size": [size, size],
        "background": "transparent" if transparent else "white",
        "lighting": lighting,
        "seed": seed,
        "object": {
            "bbox_min": bounds[0].tolist(),
            "bbox_max": bounds[1].tolist(),
            "center": bounds.mean(axis=0).tolist(),
            "diagonal": float(np.linalg.norm(bounds[1] - bounds[0])),
        },
        "ground_truth": {"path": str(mesh_path.resolve()), "sha256": sha256_file(mesh_path)},
        "intrinsics": {
            "K": K.tolist(),
            "fx": K[0, 0],
            "fy": K[1, 1],
            "cx": K[0, 2],
            "cy": K[1, 2],
            "convention": "opencv",
        },
        "images": [c.image_name for c in cameras],
        "depth": "depth/*.npy (float32, metres along the optical axis, 0 = empty)" if depth else None,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out
