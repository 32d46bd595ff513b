"""Small synthetic scenes with exact cameras and depth, rendered by ray casting procedurally coloured meshes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import open3d as o3d
import trimesh

from reconstruction.engine.cameras import Camera, camera_looking_at, intrinsics


def pattern(points: np.ndarray) -> np.ndarray:
    """A deterministic, non-periodic, high-contrast colour for each 3D point (sums of random sinusoids)."""
    rng = np.random.default_rng(7)
    colours = np.zeros((len(points), 3))
    for scale in (6.0, 13.0, 29.0):
        for channel in range(3):
            direction = rng.normal(size=(3, 3))
            phase = rng.uniform(0, 2 * np.pi, size=3)
            colours[:, channel] += np.sin(points @ direction.T * scale + phase).sum(1) / scale**0.3
    colours -= colours.min(0)
    return colours / colours.max(0)


def render(mesh: trimesh.Trimesh, camera: Camera, background: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB image, object mask and z-depth (0 where empty) of `mesh` seen by `camera`."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(mesh.vertices.astype(np.float32)), o3d.core.Tensor(mesh.faces.astype(np.uint32)))
    rows, cols = np.mgrid[0 : camera.height, 0 : camera.width]
    uv = np.stack([cols.ravel() + 0.5, rows.ravel() + 0.5], axis=1)
    directions = camera.pixel_rays(uv)
    origins = np.broadcast_to(camera.center, directions.shape)
    hit = scene.cast_rays(o3d.core.Tensor(np.concatenate([origins, directions], 1).astype(np.float32)))["t_hit"].numpy()
    found = np.isfinite(hit)
    points = origins + directions * np.where(found, hit, 0)[:, None]
    image = np.full((len(uv), 3), background, dtype=np.float64)
    image[found] = pattern(points[found])
    depth = np.where(found, hit * (directions @ camera.R[2]), 0.0)
    shape = (camera.height, camera.width)
    return image.reshape(*shape, 3).astype(np.float32), found.reshape(shape), depth.reshape(shape)


def orbit_cameras(count: int, size: int, radius: float = 3.0, elevations: tuple[float, ...] = (20.0, -10.0)) -> list[Camera]:
    """`count` cameras on rings around the origin, all looking at it."""
    K = intrinsics(size * 1.2, size * 1.2, size / 2, size / 2)
    cameras = []
    for index in range(count):
        elevation = np.radians(elevations[index % len(elevations)])
        azimuth = 2 * np.pi * index / count
        eye = radius * np.array([np.cos(elevation) * np.sin(azimuth), np.sin(elevation), np.cos(elevation) * np.cos(azimuth)])
        cameras.append(camera_looking_at(f"view_{index:02d}.png", size, size, K, eye, (0.0, 0.0, 0.0)))
    return cameras


def two_planes() -> trimesh.Trimesh:
    """A back wall at z = −0.5 and a smaller card in front of it at z = +0.4 (cameras look down −z)."""
    back = trimesh.creation.box(extents=(4.0, 4.0, 0.01))
    back.apply_translation((0, 0, -0.5))
    front = trimesh.creation.box(extents=(1.2, 1.2, 0.01))
    front.apply_translation((0.3, 0.1, 0.4))
    return trimesh.util.concatenate([back, front])


def textured_blob_photos(folder: Path, views: int = 24, size: int = 256) -> tuple[trimesh.Trimesh, list[Camera]]:
    """Photos of a bumpy textured blob on white, as users upload them (no cameras, no masks), and the truth.

    SfM needs more than the 128-pixel captures: 24 views at 256 px, the procedural colours 3× finer across the
    blob than on the unit shapes, enough corners for SIFT.
    """
    from PIL import Image

    blob = trimesh.creation.icosphere(subdivisions=4, radius=0.8)
    direction = blob.vertices / np.linalg.norm(blob.vertices, axis=1, keepdims=True)
    blob.vertices = blob.vertices * (1 + 0.15 * np.sin(3 * direction[:, [0]]) * np.cos(2 * direction[:, [1]]))
    blob.vertices *= 3.0
    cameras = orbit_cameras(views, size, radius=9.0)
    folder.mkdir(parents=True, exist_ok=True)
    for camera in cameras:
        Image.fromarray((render(blob, camera)[0] * 255).round().astype(np.uint8)).save(folder / camera.image_name)
    return blob, cameras
