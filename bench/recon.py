"""Reconstruction benchmark (`make bench-recon`): render calibrated captures of ground-truth scans, run every
installed multi-view backend on each, score the results, and write bench/results/recon.json and recon.md.

    python bench/recon.py [--scans DIR] [--objects spot,Avocado] [--backends visual-hull] [--views 24] [--size 512]
                          [--photos all|none|NAME,…] [--keep DIR]

Per scan: F-score at 0.25%, 0.5% and 1% of the scan's bounding-box diagonal and Chamfer (known cameras, so no
alignment), held-out views at cameras between the capture's rings (PSNR, MS-SSIM of the backend's own renderer
and of its mesh), wall/CPU/GPU seconds and peak memory, each beside the silhouette visual hull of the same run.
Backends that find their own cameras also run on the images alone (no cameras, no masks): their meshes are scored
after a similarity ICP and their cameras against the true ones. pycolmap's own SfM on the same images is the
registration reference. Real photo sets (../shared/data/photos/*) report registration, reprojection error and a
screenshot of the textured result beside the photo.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402 -- before anything that may load pycolmap (zlib clash)

from reconstruction.engine.cameras import read_colmap_text, write_camera_list  # noqa: E402
from reconstruction.engine.capture import IMAGE_SUFFIXES, Capture  # noqa: E402
from reconstruction.engine.metrics import (  # noqa: E402
    align_by_cameras,
    compare_images,
    compare_meshes,
    load_mesh,
    pose_errors,
    sample_surface,
)
from reconstruction.engine.protocol import MULTI_VIEW, ReconstructionResult  # noqa: E402
from reconstruction.engine.registry import get_backend  # noqa: E402
from reconstruction.engine.render import load_scene, render_capture, render_views, turntable_cameras  # noqa: E402

DEFAULT_SCANS = Path(os.environ.get("ASSAY_SHARED_DATA") or REPO.parent / "shared" / "data") / "gltf"
# The default run (about ten minutes on two cores) covers two scans; `--objects all` takes every GLB in --scans.
DEFAULT_OBJECTS = "spot,Avocado"
DEFAULT_PHOTOS = DEFAULT_SCANS.parent / "photos"
HELD_OUT_RINGS = (0.0, 30.0)  # between the capture's rings, so no held-out view repeats a training view
# F-score thresholds as fractions of the scan's diagonal: 0.25% is about one pixel at capture distance at 512 px.
TAU_FRACTIONS = (0.0025, 0.005, 0.01)
# Captures at another size for some backends: the radiance field's target is set at 256 px.
CAPTURE_SIZES = {"nerf": 256}


def environment() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "platform": platform.platform(),
        "opengl": os.environ.get("PYOPENGL_PLATFORM", "egl"),
    }


def render_timing(mesh: Path, size: int, frames: int = 24) -> dict[str, float]:
    """Per-frame render time at `size` px after the first (shader compilation) frame."""
    bounds = np.asarray(load_scene(mesh).bounds)
    cameras = turntable_cameras(bounds, views=frames + 1, size=size)
    seconds: list[float] = []
    render_views(mesh, cameras, frame_seconds=seconds)
    steady = seconds[1:]
    return {
        "size": size,
        "frames": len(steady),
        "first_frame_ms": seconds[0] * 1000,
        "median_ms": statistics.median(steady) * 1000,
        "mean_ms": statistics.fmean(steady) * 1000,
    }


def colmap_reference(capture_dir: Path, workdir: Path, size: int, timeout: float) -> dict[str, Any]:
    """pycolmap's own SfM on a capture, run in a child process: pycolmap's bundled zlib corrupts the heap of a
    process that later writes PNGs with Pillow (double free in deflateEnd), so it never loads in this one."""
    command = [sys.executable, str(Path(__file__).resolve()), "--colmap-reference", str(capture_dir)]
    command += ["--size", str(size), "--keep", str(workdir)]
    done = _run_child(command, timeout)
    if isinstance(done, str):
        return {"available": False, "reason": done}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _colmap_reference_here(capture_dir: Path, workdir: Path, size: int) -> dict[str, Any]:
    """CPU SIFT + exhaustive matching + incremental mapping; registered views and camera-centre error."""
    try:
        import PIL.Image  # noqa: F401 -- Pillow before pycolmap (see photogrammetry/sfm.py on zlib)
        import pycolmap
    except ImportError:
        return {"available": False, "reason": "pycolmap is not installed"}
    pycolmap.logging.minloglevel = 2  # errors only: its INFO lines would bury the benchmark's own output
    capture = Capture.load(capture_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    database = workdir / "database.db"
    database.unlink(missing_ok=True)
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.max_image_size = size
    image_dir = capture.images[0].parent
    pycolmap.extract_features(database, image_dir, extraction_options=extraction)
    pycolmap.match_exhaustive(database)
    models = workdir / "models"
    models.mkdir(exist_ok=True)
    reconstructions = pycolmap.incremental_mapping(database, image_dir, models)
    seconds = time.perf_counter() - started
    if not reconstructions:
        return {"available": True, "registered": 0, "views": capture.num_views, "seconds": seconds}
    best = max(reconstructions.values(), key=lambda r: r.num_reg_images())
    truth = {c.image_name: c.center for c in capture.cameras or []}
    estimated, reference = [], []
    for image_id in best.reg_image_ids():
        image = best.images[image_id]
        if image.name in truth:
            estimated.append(np.asarray(image.projection_center()))
            reference.append(truth[image.name])
    report: dict[str, Any] = {
        "available": True,
        "views": capture.num_views,
        "registered": best.num_reg_images(),
        "points": best.num_points3D(),
        "mean_reprojection_error_px": float(best.compute_mean_reprojection_error()),
        "seconds": seconds,
    }
    if len(estimated) >= 3:
        T = align_by_cameras(np.array(estimated), np.array(reference))
        moved = np.array(estimated) @ T[:3, :3].T + T[:3, 3]
        errors = np.linalg.norm(moved - np.array(reference), axis=1)
        diagonal = capture.metadata["object"]["diagonal"]
        report["camera_centre_error_relative_to_diagonal"] = {
            "mean": float(errors.mean() / diagonal),
            "max": float(errors.max() / diagonal),
        }
    return report


def _run_child(command: list[str], timeout: float) -> subprocess.CompletedProcess[str] | str:
    """Runs a child in its own process group; returns it, or the reason it failed (last stderr line, timeout)."""
    child = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return f"timed out after {timeout:.0f} s"
    if child.returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        return f"exit {child.returncode}: {lines[-1] if lines else 'no message'}"
    return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)


def installed_backends() -> dict[str, dict[str, Any]]:
    """Name → listing of the installed backends, asked of a child process: loading a plugin may load pycolmap,
    which must stay out of this process (see colmap_reference)."""
    done = _run_child([sys.executable, "-m", "reconstruction.engine", "backends", "--json"], timeout=300)
    if isinstance(done, str):
        raise SystemExit(f"cannot list backends: {done}")
    return {entry["name"]: entry for entry in json.loads(done.stdout)}


def run_backend(
    name: str,
    capture_dir: Path,
    workdir: Path,
    params: list[str],
    timeout: float,
    eval_cameras: Path | None = None,
    resume: bool = False,
) -> Any:
    """Runs one backend through the CLI in a child process (own peak memory, a time limit, crash isolation);
    with `eval_cameras`, the run also renders its result at those cameras into workdir/eval/."""
    report = workdir / "result.json"
    if resume and report.is_file():  # a finished run of an earlier, interrupted benchmark under --keep
        print(f"    reusing {report}", flush=True)
        return ReconstructionResult.read_report(report)
    command = [sys.executable, "-m", "reconstruction.engine", "run", "--backend", name, "--quiet"]
    command += ["--images", str(capture_dir), "--out", str(workdir)]
    if eval_cameras is not None:
        command += ["--eval-cameras", str(eval_cameras)]
    for param in params:
        command += ["--param", param]
    done = _run_child(command, timeout)
    if isinstance(done, str):
        return done
    return ReconstructionResult.read_report(report)


def plain_photo_folder(capture_dir: Path, folder: Path) -> Path:
    """The capture's images alone, as a user would upload them: no cameras, no masks, no manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for image in sorted((capture_dir / "images").iterdir()):
        shutil.copy2(image, folder / image.name)
    return folder


def view_set(mesh: Path, folder: Path, args: argparse.Namespace, size: int) -> dict[str, Any]:
    """A calibrated capture of `mesh` at `size` px, held-out cameras between its rings and their references."""
    started = time.perf_counter()
    render_capture(mesh, folder / "capture", views=args.views, size=size)
    seconds = time.perf_counter() - started
    capture = Capture.load(folder / "capture")
    bounds = np.array([capture.metadata["object"]["bbox_min"], capture.metadata["object"]["bbox_max"]])
    held_out = turntable_cameras(bounds, views=args.held_out, size=size, rings=HELD_OUT_RINGS, seed=12345)
    for index, camera in enumerate(held_out):
        camera.image_name = f"held_out_{index:02d}.png"
    return {
        "capture": folder / "capture",
        "cameras": write_camera_list(held_out, folder / "held_out.json"),
        "held_out": held_out,
        "references": [view.rgb for view in render_views(mesh, held_out)],
        "render_seconds": seconds,
        "truth": {c.image_name: (c.R, c.center) for c in capture.cameras or []},
        "diagonal": capture.metadata["object"]["diagonal"],
    }


def seen_share(gt: Any, cameras: list[Any], samples: int) -> float:
    """Share of `gt`'s surface samples that at least one of `cameras` sees (in frame, not occluded)."""
    import open3d as o3d

    points, _ = sample_surface(gt, samples, 2)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(gt.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(gt.faces, dtype=np.uint32)),
    )
    seen = np.zeros(len(points), dtype=bool)
    for camera in cameras:
        offsets = points - camera.center
        distance = np.linalg.norm(offsets, axis=1)
        rays = np.concatenate([np.broadcast_to(camera.center, offsets.shape), offsets / distance[:, None]], axis=1)
        hit = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
        uv, depth = camera.project(points)
        # The first surface along the ray is the point itself (to within float32 and a crease's neighbour).
        seen |= camera.in_image(uv, depth) & (hit >= distance * (1 - 1e-3))
    return float(seen.mean())


def score_run(
    result: ReconstructionResult, workdir: Path, views: dict[str, Any], gt: Any, args: argparse.Namespace, align: str
) -> dict[str, Any]:
    """Geometry at three thresholds, held-out views (the backend's own renderer and its mesh), resources."""
    prediction = load_mesh(result.mesh_path)
    estimated = {}
    if align == "icp" and result.cameras_path is not None and views["truth"]:  # cameras it found itself
        estimated = {c.image_name: (c.R, c.center) for c in read_colmap_text(Path(result.cameras_path))}
        estimated = {name: pose for name, pose in estimated.items() if name in views["truth"]}
    if len(estimated) >= 3:
        # The similarity its cameras give: ICP from the centroids can settle in a wrong minimum on such shapes.
        names = sorted(estimated)
        prediction.apply_transform(
            align_by_cameras(
                np.array([estimated[n][1] for n in names]), np.array([views["truth"][n][1] for n in names])
            )
        )
        align = "none"
    geometry = compare_meshes(prediction, gt, samples=args.samples, alignment=align, tau_fractions=TAU_FRACTIONS)
    geometry["alignment"] = "by cameras" if len(estimated) >= 3 else align
    transform = geometry.pop("alignment_transform", None)
    entry: dict[str, Any] = {
        "version": result.backend_version,
        "parameters": result.parameters,
        "geometry": geometry,
        "resources": result.resources.to_dict(),
        "output": {k: v for k, v in result.metrics.items() if isinstance(v, int | float | bool | str)},
    }
    if transform is None and not estimated:  # held-out cameras only mean something in the capture's own frame
        synthesised = [
            np.asarray(Image.open(workdir / "eval" / c.image_name).convert("RGB")) for c in views["held_out"]
        ]
        entry["images"] = _image_scores(synthesised, views["references"])
    elif len(estimated) >= 3 and hasattr(backend := get_backend(result.backend), "render_cameras"):
        # Cameras found from the photos: the held-out ones are carried into the run's frame by the similarity its
        # cameras give, so view synthesis is judged with the calibration's errors included.
        names = sorted(estimated)
        into_run = np.linalg.inv(
            align_by_cameras(np.array([estimated[n][1] for n in names]), np.array([views["truth"][n][1] for n in names]))
        )
        held_out = [camera.in_frame(into_run) for camera in views["held_out"]]
        rendered = backend.render_cameras(workdir, held_out, workdir / "eval")
        synthesised = [np.asarray(Image.open(path).convert("RGB")) for path in rendered]
        entry["images"] = _image_scores(synthesised, views["references"])
    if transform is None:  # the mesh is in the capture's frame now (or was all along)
        mesh_views = [view.rgb for view in render_views(prediction, views["held_out"])]
        entry["mesh_images"] = _image_scores(mesh_views, views["references"])
    if len(estimated) >= 3:
        entry["cameras"] = pose_errors(estimated, views["truth"])
    return entry


def _image_scores(rendered: list[np.ndarray], references: list[np.ndarray]) -> dict[str, Any]:
    scores = compare_images(rendered, references)
    scores.pop("psnr_per_view", None)
    return scores


def bench_object(
    mesh: Path, backends: dict[str, Any], args: argparse.Namespace, params: dict[str, list[str]], scratch: Path
) -> dict[str, Any]:
    name = mesh.stem
    folder = scratch / name
    sizes = {args.size} | {size for backend, size in CAPTURE_SIZES.items() if backend in backends}
    view_sets = {size: view_set(mesh, folder / f"{size}px", args, size) for size in sorted(sizes)}
    gt = load_mesh(mesh)
    row: dict[str, Any] = {
        "object": name,
        "mesh": str(mesh),
        "triangles": len(gt.faces),
        "diagonal": view_sets[args.size]["diagonal"],
        "capture": {
            "views": args.views,
            "sizes": sorted(sizes),
            "render_seconds": {size: v["render_seconds"] for size, v in view_sets.items()},
        },
        "backends": {},
        # Surface no capture view sees (inner walls, hidden parts) caps recall for any image-based method.
        "seen_share": seen_share(gt, Capture.load(view_sets[args.size]["capture"]).cameras or [], args.samples),
    }
    runs = [(backend, backend, False) for backend in backends] if args.runs != "images-only" else []
    # Backends that find their own cameras are also given the images alone, as users upload them.
    if args.runs != "known-cameras":
        runs += [
            (f"{b} (images only)", b, True)
            for b, entry in backends.items()
            if not entry["capabilities"]["needs_known_cameras"] and b != "visual-hull"
        ]
    for label, backend_name, images_only in runs:
        views = view_sets[CAPTURE_SIZES.get(backend_name, args.size)]
        workdir = folder / label.replace(" ", "_").replace("(", "").replace(")", "")
        images = (
            plain_photo_folder(views["capture"], workdir.with_name(workdir.name + "_photos"))
            if images_only
            else views["capture"]
        )
        print(f"  {name}: {label} …", flush=True)
        eval_cameras = None if images_only else views["cameras"]
        result = run_backend(
            backend_name, images, workdir, params.get(backend_name, []), args.timeout, eval_cameras, args.resume
        )
        if isinstance(result, str):
            row["backends"][label] = {"error": result}
            print(f"    failed: {result}", flush=True)
            continue
        entry = score_run(result, workdir, views, gt, args, "icp" if images_only else args.align)
        entry["capture_size"] = CAPTURE_SIZES.get(backend_name, args.size)
        row["backends"][label] = entry
        g = entry["geometry"]
        psnr = f", PSNR {entry['images']['psnr']:.2f} dB" if "images" in entry else ""
        print(
            f"    F@0.25/0.5/1% {g['fscore_at']['0.25%']:.3f}/{g['fscore_at']['0.5%']:.3f}/{g['fscore']:.3f}{psnr}, "
            f"{result.resources.wall_s:.1f} s",
            flush=True,
        )
    if not args.skip_sfm:
        print(f"  {name}: pycolmap SfM reference …", flush=True)
        row["pycolmap_sfm"] = colmap_reference(
            view_sets[args.size]["capture"], folder / "colmap", args.size, args.timeout
        )
    return row


def bench_photos(
    folder: Path, backends: dict[str, Any], args: argparse.Namespace, params: dict[str, list[str]], scratch: Path
) -> dict[str, Any]:
    """A real photo set: registration, reprojection error, time, memory, and a screenshot of the textured result."""
    images = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    row: dict[str, Any] = {"photos": folder.name, "images": len(images)}
    for backend_name, entry in backends.items():
        if entry["capabilities"]["needs_known_cameras"] or backend_name == "visual-hull":
            continue
        print(f"{folder.name}: {backend_name} …", flush=True)
        workdir = scratch / folder.name / backend_name
        result = run_backend(
            backend_name, folder, workdir, params.get(backend_name, []), args.timeout, resume=args.resume
        )
        if isinstance(result, str):
            row[backend_name] = {"error": result}
            print(f"    failed: {result}", flush=True)
            continue
        keep = (
            "registered_images",
            "total_images",
            "registration_rate",
            "status",
            "mean_reprojection_error_px",
            "texture_coverage",
        )
        row[backend_name] = {
            "output": {k: result.metrics[k] for k in keep if k in result.metrics},
            "resources": result.resources.to_dict(),
        }
        if result.cameras_path is not None:
            cameras = read_colmap_text(Path(result.cameras_path))
            shot = args.out.with_name(f"{args.out.stem}-{folder.name}-{backend_name}.png")
            row[backend_name]["screenshot"] = screenshot(result.mesh_path, cameras[0], folder, shot).name  # beside .md
        print(f"    {row[backend_name]['output']}", flush=True)
    if not args.skip_sfm:
        print(f"{folder.name}: pycolmap SfM reference …", flush=True)
        row["pycolmap_sfm"] = colmap_reference(folder, scratch / folder.name / "colmap", args.photo_size, args.timeout)
    return row


def screenshot(mesh: Path, camera: Any, photos: Path, out: Path, width: int = 640) -> Path:
    """The textured result rendered from a registered camera, beside the photo it was taken from."""
    photo = Image.open(photos / camera.image_name).convert("RGB")
    scale = width / camera.width
    view = camera.scaled(scale)
    rendered = Image.fromarray(render_views(mesh, [view], lighting="flat")[0].rgb)
    side = Image.new("RGB", (2 * rendered.width, rendered.height), "white")
    side.paste(photo.resize(rendered.size), (0, 0))
    side.paste(rendered, (rendered.width, 0))
    side.save(out)
    return out


def merged(earlier: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """`earlier` with the objects, backends and photo sets measured `now` replacing theirs; each merge is listed
    under "updates" (when, which entries) so a table's rows can be told apart by run."""
    rows = {row["object"]: row for row in earlier["rows"]}
    for row in now["rows"]:
        if row["object"] in rows:
            old = rows[row["object"]]
            old["backends"].update(row["backends"])
            old.update({k: v for k, v in row.items() if k not in ("backends",)})
        else:
            rows[row["object"]] = row
    photos = {row["photos"]: row for row in earlier.get("photo_rows", [])}
    for row in now["photo_rows"]:
        photos.setdefault(row["photos"], {}).update(row)
    updates = earlier.get("updates", [{"created": earlier["created"], "entries": "all"}])
    entries = [f"{row['object']}: {', '.join(row['backends'])}" for row in now["rows"]]
    entries += [
        f"{row['photos']}: {', '.join(k for k in row if k not in ('photos', 'images'))}" for row in now["photo_rows"]
    ]
    updates.append({"created": now["created"], "entries": entries, "environment": now["environment"]})
    return {
        **earlier,
        "backends": {**earlier["backends"], **now["backends"]},
        "rows": list(rows.values()),
        "photo_rows": list(photos.values()),
        "updates": updates,
    }


def markdown(report: dict[str, Any]) -> str:
    capture = report["capture"]
    lines = [
        f"# Reconstruction benchmark ({report['created']})",
        "",
        f"{capture['views']} views per object at {capture['size']} px (nerf: {CAPTURE_SIZES.get('nerf', capture['size'])} px); "
        f"{capture['held_out']} held-out views at other cameras. CPU: {report['environment']['cpu']} "
        f"({report['environment']['cpu_count']} cores, load {report['environment']['load_average_1m']:.1f} at the "
        f"start), torch {report['environment']['torch']}, CUDA: {report['environment']['cuda'] or 'none'}. "
        f"F-scores and Chamfer: {capture['samples']} samples of each surface measured against the other surface "
        "itself (point-to-surface), F at 0.25/0.5/1% of the scan's bounding-box diagonal.",
        "",
        "| object | backend | F@0.25% | F@0.5% | F@1% | ÷ hull F@0.25% | Chamfer (% diag) | view synthesis PSNR dB / "
        "MS-SSIM | mesh PSNR dB | cameras: centre err. (% spread) / rot. ° (median) | wall s | ÷ hull time | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    if len(report.get("updates", [])) > 1:  # the header's figures are those of the first run
        runs = [
            f"{u['created']}: {u['entries'] if isinstance(u['entries'], str) else '; '.join(u['entries'])}"
            + (f" (load {u['environment']['load_average_1m']:.1f})" if "environment" in u else "")
            for u in report["updates"]
        ]
        lines[3:3] = ["", "Entries by run (later runs replace earlier ones): " + " | ".join(runs)]
    for row in report["rows"]:
        hull = row["backends"].get("visual-hull", {})
        for name, entry in row["backends"].items():
            if "error" in entry:
                lines.append(f"| {row['object']} | {name} | failed: {_short(entry['error'])} |" + " |" * 10)
                continue
            g, r = entry["geometry"], entry["resources"]
            at = g["fscore_at"]
            ratio = _ratio(at["0.25%"], hull.get("geometry", {}).get("fscore_at", {}).get("0.25%"))
            time_ratio = _ratio(r["wall_s"], hull.get("resources", {}).get("wall_s"))
            images = entry.get("images")
            synthesis = f"{images['psnr']:.2f} / {images['ms_ssim']:.4f}" if images else "n/a (other frame)"
            mesh_psnr = f"{entry['mesh_images']['psnr']:.2f}" if "mesh_images" in entry else "n/a"
            cams = entry.get("cameras")
            cam_text = (
                f"{cams['centre_error_relative_to_spread']['median'] * 100:.3f} / {cams['rotation_error_deg']['median']:.3f}"
                if cams
                else "known"
            )
            output = entry.get("output", {})
            if output.get("status") == "partial":  # the backend said so; the table must not read as a success
                name = f"{name}, partial: {output['registered_images']} of {output['total_images']} registered"
            lines.append(
                f"| {row['object']} | {name} | {at['0.25%']:.3f} | {at['0.5%']:.3f} | {g['fscore']:.3f} | {ratio} | "
                f"{g['chamfer_relative'] * 100:.3f} | {synthesis} | {mesh_psnr} | {cam_text} | {r['wall_s']:.1f} | "
                f"{time_ratio} | {r['peak_memory_mb']:.0f} |"
            )
    seen = [f"{row['object']} {row['seen_share']:.1%}" for row in report["rows"] if "seen_share" in row]
    if seen:
        lines += [
            "",
            "Share of each scan's surface that some capture view sees (the rest, inner walls and hidden parts, no "
            "image-based method can recover, which caps recall): " + "; ".join(seen) + ".",
        ]
    sfm_rows = [(row["object"], row["pycolmap_sfm"]) for row in report["rows"] if "pycolmap_sfm" in row]
    sfm_rows += [(row["photos"], row["pycolmap_sfm"]) for row in report.get("photo_rows", []) if "pycolmap_sfm" in row]
    if sfm_rows:
        lines += ["", "pycolmap SfM reference (default options; camera registration only):", ""]
        lines += [
            "| capture | registered | points | reproj. px | centre error mean/max (% diag) | s |",
            "|---|---|---|---|---|---|",
        ]
        for name, sfm in sfm_rows:
            if not sfm.get("available"):
                lines.append(f"| {name} | {sfm['reason']} |" + " |" * 4)
                continue
            err = sfm.get("camera_centre_error_relative_to_diagonal")
            err_text = f"{err['mean'] * 100:.3f} / {err['max'] * 100:.3f}" if err else "n/a"
            lines.append(
                f"| {name} | {sfm['registered']}/{sfm['views']} | {sfm.get('points', 0)} | "
                f"{sfm.get('mean_reprojection_error_px', float('nan')):.3f} | {err_text} | {sfm['seconds']:.1f} |"
            )
    for row in report.get("photo_rows", []):
        lines += ["", f"Real photos `{row['photos']}` ({row['images']} images):", ""]
        for name, entry in row.items():
            if not isinstance(entry, dict) or name == "pycolmap_sfm":
                continue
            if "error" in entry:
                lines.append(f"- {name}: failed: {entry['error']}")
                continue
            out, r = entry["output"], entry["resources"]
            lines.append(
                f"- {name}: {out.get('registered_images')}/{out.get('total_images')} registered ({out.get('status')}), "
                f"reprojection error {out.get('mean_reprojection_error_px', float('nan')):.3f} px, texture coverage "
                f"{out.get('texture_coverage', float('nan')):.3f}, {r['wall_s']:.0f} s, peak {r['peak_memory_mb']:.0f} MB; "
                f"screenshot (photo | textured result from its camera): `{entry.get('screenshot')}`"
            )
    timing = report["render_timing"]
    lines += [
        "",
        f"Rendering ({timing['size']} px, {timing['frames']} frames): median {timing['median_ms']:.1f} ms/frame, "
        f"first frame {timing['first_frame_ms']:.0f} ms. LPIPS: not available (no torchvision or weights here).",
    ]
    return "\n".join(lines) + "\n"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _ratio(ours: float | None, reference: float | None) -> str:
    return f"{ours / reference:.2f}" if ours is not None and reference else "n/a"


# Budgets that fit the trained-field backends into the bench's per-run timeout on a 2-core CPU; any
# --param for the same backend and key replaces its default.
CPU_DEFAULT_PARAMS = ["nerf:time_budget_s=150", "nerf:resolution=64", "sdf:time_budget_s=150", "sdf:resolution=64"]


def parse_params(pairs: list[str]) -> dict[str, list[str]]:
    """`backend:key=value` → {backend: ["key=value", …]}; the backend's CLI run checks them."""
    given = {pair.split("=", 1)[0] for pair in pairs}
    pairs = [p for p in CPU_DEFAULT_PARAMS if p.split("=", 1)[0] not in given] + pairs
    grouped: dict[str, list[str]] = {}
    for pair in pairs:
        backend, sep, assignment = pair.partition(":")
        if not sep or "=" not in assignment:
            raise SystemExit(f"--param {pair!r} must be backend:key=value")
        grouped.setdefault(backend, []).append(assignment)
    return grouped


def photo_sets(args: argparse.Namespace) -> list[Path]:
    if args.photos == "none" or not args.photo_dir.is_dir():
        return []
    folders = sorted(p for p in args.photo_dir.iterdir() if p.is_dir())
    if args.photos != "all":
        wanted = {name.strip() for name in args.photos.split(",")}
        folders = [p for p in folders if p.name in wanted]
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=Path, default=DEFAULT_SCANS, help="folder of GLB scans (ground truth)")
    parser.add_argument("--objects", default=DEFAULT_OBJECTS, help="comma-separated file stems, or 'all'")
    parser.add_argument("--backends", default="all", help="comma-separated backend names, or 'all'")
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--held-out", type=int, default=6)
    parser.add_argument("--samples", type=int, default=100_000, help="surface samples per mesh for the metrics")
    parser.add_argument("--align", choices=["none", "icp"], default="none")
    parser.add_argument("--param", action="append", default=[], metavar="BACKEND:K=V")
    parser.add_argument(
        "--photos", default="all", help="photo-set folders under --photo-dir, comma-separated, 'all' or 'none'"
    )
    parser.add_argument("--photo-dir", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument(
        "--photo-size", type=int, default=1600, help="longest side for the pycolmap reference on photos"
    )
    parser.add_argument("--skip-sfm", action="store_true", help="do not run the pycolmap SfM reference")
    parser.add_argument(
        "--runs",
        choices=["both", "known-cameras", "images-only"],
        default="both",
        help="backends given the capture's cameras, the images alone (those that find their own cameras), or both",
    )
    parser.add_argument("--keep", type=Path, help="keep captures and outputs in this folder")
    parser.add_argument(
        "--resume", action="store_true", help="with --keep: reuse runs that finished there (delete one to redo it)"
    )
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds allowed to each backend run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "recon.json")
    parser.add_argument(
        "--update",
        action="store_true",
        help="merge into the report at --out: entries measured now replace theirs, the others stay as they were",
    )
    parser.add_argument("--colmap-reference", type=Path, help=argparse.SUPPRESS)  # child-process mode
    args = parser.parse_args(argv)
    if args.colmap_reference:
        print(
            json.dumps(_colmap_reference_here(args.colmap_reference, args.keep or Path(tempfile.mkdtemp()), args.size))
        )
        return 0

    scans = sorted(args.scans.glob("*.glb"))
    if args.objects != "all":
        wanted = [o.strip() for o in args.objects.split(",") if o.strip()]
        missing = sorted(set(wanted) - {p.stem for p in scans})
        if missing:
            raise SystemExit(f"no scan named {', '.join(missing)} in {args.scans}")
        scans = [p for p in scans if p.stem in wanted]
    installed = installed_backends()
    multi_view = {
        n: b
        for n, b in installed.items()
        if MULTI_VIEW in b["capabilities"]["inputs"] and (b["capabilities"]["max_views"] or args.views) >= args.views
    }  # a few-view backend (hybrid) has its own benchmark, bench/hybrid.py
    if args.backends != "all":
        wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = sorted(set(wanted) - set(multi_view))
        if unknown:
            raise SystemExit(
                f"not an installed multi-view backend: {', '.join(unknown)} (installed: {', '.join(multi_view)})"
            )
        multi_view = {n: multi_view[n] for n in wanted}
    params = parse_params(args.param)
    if args.resume and args.keep is None:
        raise SystemExit("--resume needs --keep DIR, the folder of the earlier run")

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="assay-bench-recon-"))
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        print(f"render timing at {args.size} px …", flush=True)
        timing = render_timing(scans[0], args.size)
        rows = []
        for mesh in scans:
            print(f"{mesh.stem}:", flush=True)
            rows.append(bench_object(mesh, multi_view, args, params, scratch))
        photo_rows = [bench_photos(folder, multi_view, args, params, scratch) for folder in photo_sets(args)]
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment(),
        "capture": {"views": args.views, "size": args.size, "held_out": args.held_out, "samples": args.samples},
        "backends": {n: {"version": b["version"], "capabilities": b["capabilities"]} for n, b in multi_view.items()},
        "render_timing": timing,
        "rows": rows,
        "photo_rows": photo_rows,
        "total_seconds": time.perf_counter() - started,
        "notes": [
            "F-score thresholds: 0.25%, 0.5% and 1% of each scan's bounding-box diagonal; meshes compared in the "
            "scan's frame (the backends used the capture's known cameras) unless --align icp; 'images only' runs "
            "got the PNGs alone; their meshes are moved by the similarity that maps their camera centres onto the "
            "true ones (ICP when they report no cameras).",
            "Held-out images: 'view synthesis' is the backend's own renderer at the held-out cameras (the radiance "
            "field for nerf and sdf, the mesh otherwise); 'mesh' renders the exported mesh there.",
            "LPIPS is not reported: torchvision and pretrained weights are not available.",
            "Cost per asset is left to the job side, which prices CPU/GPU seconds with configured rates.",
        ],
    }
    if args.update and args.out.is_file():
        report = merged(json.loads(args.out.read_text()), report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')} in {report['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
