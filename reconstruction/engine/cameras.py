"""Pinhole cameras in the OpenCV/COLMAP convention and COLMAP's text model format.

A camera maps a world point X to camera coordinates x = R @ X + t (x right, y down, z forward) and to the
pixel (u, v) = (fx * x/z + cx, fy * y/z + cy), with (0, 0) the top-left corner of the top-left pixel, so
that pixel (row i, column j) has its centre at (j + 0.5, i + 0.5), as COLMAP defines it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reconstruction.engine.errors import InvalidCapture

# COLMAP camera models we read, with the names of their parameters in file order.
CAMERA_MODELS: dict[str, tuple[str, ...]] = {
    "SIMPLE_PINHOLE": ("f", "cx", "cy"),
    "PINHOLE": ("fx", "fy", "cx", "cy"),
    "SIMPLE_RADIAL": ("f", "cx", "cy", "k"),
    "RADIAL": ("f", "cx", "cy", "k1", "k2"),
    "OPENCV": ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"),
}


@dataclass
class Camera:
    """One calibrated view: intrinsics K, world→camera rotation R and translation t, optional distortion."""

    image_name: str
    width: int
    height: int
    K: np.ndarray
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))
    # OpenCV radial/tangential coefficients (k1, k2, p1, p2); zeros for an ideal pinhole.
    distortion: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        self.width, self.height = int(self.width), int(self.height)
        self.distortion = tuple(float(c) for c in self.distortion)  # type: ignore[assignment]

    @property
    def center(self) -> np.ndarray:
        """Camera centre in world coordinates (−Rᵀt)."""
        return -self.R.T @ self.t

    @property
    def world_to_camera(self) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = self.R, self.t
        return pose

    @property
    def camera_to_world(self) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = self.R.T, self.center
        return pose

    @property
    def projection(self) -> np.ndarray:
        """3×4 matrix P = K [R | t] (ignores distortion)."""
        return self.K @ np.hstack([self.R, self.t[:, None]])

    @property
    def has_distortion(self) -> bool:
        return any(c != 0.0 for c in self.distortion)

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (N, 3) → camera coordinates (N, 3)."""
        return np.asarray(points, dtype=np.float64) @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) → pixel coordinates (N, 2) and depth along the optical axis (N,)."""
        cam = self.to_camera(points)
        depth = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            x, y = cam[:, 0] / depth, cam[:, 1] / depth
        if self.has_distortion:
            k1, k2, p1, p2 = self.distortion
            r2 = x * x + y * y
            radial = 1 + k1 * r2 + k2 * r2 * r2
            x, y = (
                x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x),
                y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y,
            )
        uv = np.stack([self.K[0, 0] * x + self.K[0, 1] * y + self.K[0, 2], self.K[1, 1] * y + self.K[1, 2]], axis=1)
        return uv, depth

    def in_image(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Mask of projections in front of the camera and inside the image."""
        return (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < self.width) & (uv[:, 1] >= 0) & (uv[:, 1] < self.height)

    def pixel_rays(self, uv: np.ndarray) -> np.ndarray:
        """Unit world-space ray directions through pixel coordinates (N, 2) (ignores distortion)."""
        homogeneous = np.hstack([np.asarray(uv, dtype=np.float64), np.ones((len(uv), 1))])
        directions = homogeneous @ np.linalg.inv(self.K).T @ self.R
        return directions / np.linalg.norm(directions, axis=1, keepdims=True)

    def in_frame(self, transform: np.ndarray) -> Camera:
        """The same camera in the frame that the similarity `transform` (4×4, scale included) carries this one's
        world points to: the pixels it sees do not change."""
        scale = float(np.cbrt(np.linalg.det(transform[:3, :3])))
        rotation = transform[:3, :3] / scale
        R = self.R @ rotation.T
        return Camera(self.image_name, self.width, self.height, self.K, R, scale * self.t - R @ transform[:3, 3], self.distortion)

    def scaled(self, factor: float) -> Camera:
        """The same view for an image resized by `factor` (intrinsics scale, pose unchanged)."""
        K = self.K.copy()
        K[:2] *= factor
        return Camera(
            self.image_name, round(self.width * factor), round(self.height * factor), K, self.R, self.t, self.distortion
        )


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0.0, 1.0, 0.0)) -> np.ndarray:
    """World→camera rotation of a camera at `eye` looking at `target` with `up` pointing up in the image."""
    forward = np.asarray(target, dtype=np.float64) - np.asarray(eye, dtype=np.float64)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: any right-angle choice is valid
        right = np.cross(forward, np.array([1.0, 0.0, 0.0]))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return np.stack([right, down, forward])


def camera_looking_at(
    image_name: str, width: int, height: int, K: np.ndarray, eye: Sequence[float], target: Sequence[float]
) -> Camera:
    R = look_at(eye, target)
    return Camera(image_name, width, height, K, R, -R @ np.asarray(eye, dtype=np.float64))


# Quaternions: COLMAP stores (qw, qx, qy, qz) of the world→camera rotation.


def qvec_to_rotmat(q: Sequence[float] | np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array(
        [
            [1 - 2 * y * y - 2 * z * z, 2 * x * y - 2 * w * z, 2 * x * z + 2 * w * y],
            [2 * x * y + 2 * w * z, 1 - 2 * x * x - 2 * z * z, 2 * y * z - 2 * w * x],
            [2 * x * z - 2 * w * y, 2 * y * z + 2 * w * x, 1 - 2 * x * x - 2 * y * y],
        ]
    )


def rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w ≥ 0 of a rotation matrix (eigenvector method, as COLMAP does)."""
    Rxx, Ryx, Rzx, Rxy, Ryy, Rzy, Rxz, Ryz, Rzz = np.asarray(R, dtype=np.float64).flat
    K = (
        np.array(
            [
                [Rxx - Ryy - Rzz, 0, 0, 0],
                [Ryx + Rxy, Ryy - Rxx - Rzz, 0, 0],
                [Rzx + Rxz, Rzy + Ryz, Rzz - Rxx - Ryy, 0],
                [Ryz - Rzy, Rzx - Rxz, Rxy - Ryx, Rxx + Ryy + Rzz],
            ]
        )
        / 3.0
    )
    values, vectors = np.linalg.eigh(K)
    q = vectors[[3, 0, 1, 2], np.argmax(values)]
    return -q if q[0] < 0 else q


# COLMAP text format.


def _data_lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidCapture(f"Cannot read {path.name}: {exc}") from exc
    return [
        (n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip() and not line.startswith("#")
    ]


def read_cameras_txt(path: Path) -> dict[int, tuple[str, int, int, np.ndarray, tuple[float, float, float, float]]]:
    """camera_id → (model, width, height, K, distortion) from a COLMAP cameras.txt."""
    cameras = {}
    for number, line in _data_lines(path):
        fields = line.split()
        try:
            camera_id, model, width, height = int(fields[0]), fields[1], int(fields[2]), int(fields[3])
            params = [float(v) for v in fields[4:]]
        except (IndexError, ValueError):
            raise InvalidCapture(
                f"{path.name} line {number}: expected 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'"
            ) from None
        if model not in CAMERA_MODELS:
            raise InvalidCapture(
                f"{path.name} line {number}: camera model {model} is not supported "
                f"(supported: {', '.join(CAMERA_MODELS)})"
            )
        if len(params) != len(CAMERA_MODELS[model]):
            raise InvalidCapture(
                f"{path.name} line {number}: {model} takes {len(CAMERA_MODELS[model])} parameters, got {len(params)}"
            )
        p = dict(zip(CAMERA_MODELS[model], params, strict=True))
        fx = p["fx"] if "fx" in p else p["f"]
        fy = p["fy"] if "fy" in p else p["f"]
        distortion = (p.get("k1", p.get("k", 0.0)), p.get("k2", 0.0), p.get("p1", 0.0), p.get("p2", 0.0))
        cameras[camera_id] = (model, width, height, intrinsics(fx, fy, p["cx"], p["cy"]), distortion)
    return cameras


def read_images_txt(path: Path) -> list[tuple[int, np.ndarray, np.ndarray, int, str]]:
    """(image_id, qvec, tvec, camera_id, name) per image of a COLMAP images.txt; 2D points are skipped."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidCapture(f"Cannot read {path.name}: {exc}") from exc
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if not line.startswith("#")]
    images = []
    index = 0
    # Each image takes two lines: its pose, then its 2D points (which may be an empty line).
    while index < len(lines):
        number, line = lines[index]
        if not line:
            index += 1
            continue
        fields = line.split()
        try:
            if len(fields) != 10:
                raise ValueError
            image_id, camera_id = int(fields[0]), int(fields[8])
            qvec = np.array([float(v) for v in fields[1:5]])
            tvec = np.array([float(v) for v in fields[5:8]])
        except ValueError:
            raise InvalidCapture(
                f"{path.name} line {number}: expected 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME' (no spaces in NAME)"
            ) from None
        images.append((image_id, qvec, tvec, camera_id, fields[9]))
        index += 2
    return images


def read_colmap_text(folder: Path) -> list[Camera]:
    """Cameras of a COLMAP text model folder (cameras.txt + images.txt), ordered by image id."""
    folder = Path(folder)
    for name in ("cameras.txt", "images.txt"):
        if not (folder / name).is_file():
            raise InvalidCapture(f"{folder.name}/ has no {name}")
    intrinsic = read_cameras_txt(folder / "cameras.txt")
    cameras = []
    for image_id, qvec, tvec, camera_id, name in sorted(read_images_txt(folder / "images.txt"), key=lambda r: r[0]):
        if camera_id not in intrinsic:
            raise InvalidCapture(
                f"images.txt: image {name} (id {image_id}) names camera {camera_id}, which cameras.txt lacks"
            )
        _, width, height, K, distortion = intrinsic[camera_id]
        cameras.append(Camera(name, width, height, K, qvec_to_rotmat(qvec), tvec, distortion))
    return cameras


def write_colmap_text(folder: Path, cameras: Iterable[Camera]) -> Path:
    """Writes cameras.txt (one camera per image: PINHOLE, or OPENCV when distorted), images.txt, empty points3D.txt."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cameras = list(cameras)
    camera_lines = ["# Camera list with one line of data per camera:", "#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]"]
    image_lines = [
        "# Image list with two lines of data per image:",
        "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME",
        "#   POINTS2D[] as (X, Y, POINT3D_ID)",
    ]
    for index, camera in enumerate(cameras, 1):
        fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
        if camera.has_distortion:
            params = [fx, fy, cx, cy, *camera.distortion]
            model = "OPENCV"
        else:
            params, model = [fx, fy, cx, cy], "PINHOLE"
        camera_lines.append(f"{index} {model} {camera.width} {camera.height} " + " ".join(f"{p:.17g}" for p in params))
        q = rotmat_to_qvec(camera.R)
        pose = " ".join(f"{v:.17g}" for v in (*q, *camera.t))
        image_lines.extend([f"{index} {pose} {index} {camera.image_name}", ""])
    (folder / "cameras.txt").write_text("\n".join(camera_lines) + "\n")
    (folder / "images.txt").write_text("\n".join(image_lines) + "\n")
    (folder / "points3D.txt").write_text(
        "# 3D point list with one line of data per point:\n"
        "#   POINT3D_ID, X, Y, Z, R, G, B, ERROR, TRACK[] as (IMAGE_ID, POINT2D_IDX)\n"
    )
    return folder


def write_camera_list(cameras: Iterable[Camera], path: Path) -> Path:
    """The JSON camera list that read_camera_list reads (distortion is not part of that format)."""
    import json

    entries = [
        {
            "image": c.image_name,
            "width": c.width,
            "height": c.height,
            "K": c.K.tolist(),
            "R": c.R.tolist(),
            "t": c.t.tolist(),
        }
        for c in cameras
    ]
    Path(path).write_text(json.dumps(entries, indent=1))
    return Path(path)


def read_camera_list(path: Path) -> list[Camera]:
    """Cameras from a JSON list of {"image", "width", "height", "K" (3×3), "R" (3×3), "t" (3)} (OpenCV,
    world→camera), as `--eval-cameras` and `render --cameras` take; InvalidCapture names the first problem."""
    import json

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidCapture(f"Cannot read cameras from {path.name}: {exc}") from None
    if not isinstance(data, list) or not data:
        raise InvalidCapture(f"{path.name} must hold a non-empty JSON list of cameras.")
    cameras = []
    for number, entry in enumerate(data):
        where = f"{path.name} camera {number}"
        if not isinstance(entry, dict):
            raise InvalidCapture(f"{where} must be an object with image, width, height, K, R, t.")
        missing = [key for key in ("image", "width", "height", "K", "R", "t") if key not in entry]
        if missing:
            raise InvalidCapture(f"{where} lacks {', '.join(missing)}.")
        image = entry["image"]
        if not isinstance(image, str) or not image or Path(image).is_absolute() or ".." in Path(image).parts:
            raise InvalidCapture(f"{where}: image must be a relative file name, got {image!r}.")
        try:
            K = np.asarray(entry["K"], dtype=np.float64)
            R = np.asarray(entry["R"], dtype=np.float64)
            t = np.asarray(entry["t"], dtype=np.float64)
            width, height = int(entry["width"]), int(entry["height"])
        except (TypeError, ValueError):
            raise InvalidCapture(f"{where}: K, R, t must be numbers and width, height integers.") from None
        if K.shape != (3, 3) or R.shape != (3, 3) or t.shape != (3,):
            raise InvalidCapture(f"{where}: K and R must be 3×3 and t of length 3.")
        if not (np.isfinite(K).all() and np.isfinite(R).all() and np.isfinite(t).all()) or width < 1 or height < 1:
            raise InvalidCapture(f"{where}: values must be finite and the size positive.")
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
            raise InvalidCapture(f"{where}: R is not a rotation matrix.")
        cameras.append(Camera(image, width, height, K, R, t))
    return cameras
