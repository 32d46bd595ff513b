"""Tiny captures for the field backends: a rendered sphere with held-out cameras and their ground-truth views."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reconstruction.engine.cameras import Camera
from reconstruction.engine.capture import Capture
from reconstruction.engine.metrics import psnr

SIZE = 48
VIEWS = 10
# Small enough for a shared two-core machine: each backend run is a few hundred ray batches.
QUICK = {
    "resolution": 32,
    "iterations": 80,
    "batch_rays": 512,
    "turntable_frames": 2,
    "preview_size": 32,
    "texture_size": 256,
}


def render_tiny_capture(glb: Path, out: Path) -> Path:
    from reconstruction.engine.render import render_capture

    return render_capture(glb, out, views=VIEWS, size=SIZE)


def held_out_cameras(capture_dir: Path) -> list[Camera]:
    """Three cameras on a ring the capture does not use, the whole object in view."""
    from reconstruction.engine.render import turntable_cameras

    box = json.loads((capture_dir / "capture.json").read_text())["object"]
    bounds = np.array([box["bbox_min"], box["bbox_max"]])
    cameras = turntable_cameras(bounds, views=3, size=SIZE, rings=(30.0,), seed=11)
    for index, camera in enumerate(cameras):
        camera.image_name = f"held_{index}.png"
    return cameras


def constant_colour_psnr(capture: Capture, targets: list[np.ndarray]) -> float:
    """PSNR of the best constant image (mean training colour) against the held-out views: the bar to beat."""
    mean = np.mean([capture.load_image(i).reshape(-1, 3).mean(axis=0) for i in range(capture.num_views)], axis=0)
    return float(np.mean([psnr(np.broadcast_to(mean, t.shape).copy(), t) for t in targets]))


def check_textured_glb(path: Path) -> None:
    """The mesh passes the Khronos glTF-Validator and carries UVs and a base-colour texture, as catalog assets do."""
    from reconstruction.engine.postprocess.export.gltf import validate_gltf
    from reconstruction.engine.postprocess.load import load_asset

    verdict = validate_gltf(path)
    assert verdict.errors == [] and verdict.passed, verdict.errors
    asset, _ = load_asset(path, require_textures=True)
    assert asset.uvs is not None and len(asset.uvs) == asset.vertex_count
    assert "base_color" in asset.materials[0].textures
