"""Reconstruction benchmark (`make bench-recon`): render calibrated captures of ground-truth scans, run every
installed multi-view backend on each, score the results, and write bench/results/recon.json and recon.md.

    python bench/recon.py [--scans DIR] [--objects spot,Avocado] [--backends visual-hull] [--views 24] [--size 512]

Scores: Chamfer distance and F-score at 1% of the scan's bounding-box diagonal (known cameras, so no alignment),
normal consistency, volume IoU where both meshes are watertight, PSNR and MS-SSIM of held-out views, wall/CPU/GPU
seconds and peak memory. With pycolmap installed, its own SfM on the same renders is reported as the reference
for camera registration (registered views, reprojection error, camera-centre error after a similarity fit).
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

from reconstruction.engine.capture import Capture  # noqa: E402
from reconstruction.engine.metrics import align_by_cameras, compare_images, compare_meshes, load_mesh  # noqa: E402
from reconstruction.engine.protocol import MULTI_VIEW, ReconstructionResult  # noqa: E402
from reconstruction.engine.render import load_scene, render_capture, render_views, turntable_cameras  # noqa: E402

DEFAULT_SCANS = Path(os.environ.get("ASSAY_SHARED_DATA") or REPO.parent / "shared" / "data") / "gltf"
# The default run (about ten minutes on two cores) covers two scans; `--objects all` takes every GLB in --scans.
DEFAULT_OBJECTS = "spot,Avocado"
HELD_OUT_RINGS = (0.0, 30.0)  # between the capture's rings, so no held-out view repeats a training view


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


def run_backend(name: str, capture_dir: Path, workdir: Path, params: list[str], timeout: float) -> Any:
    """Runs one backend through the CLI in a child process (own peak memory, a time limit, crash isolation)."""
    command = [sys.executable, "-m", "reconstruction.engine", "run", "--backend", name, "--quiet"]
    command += ["--images", str(capture_dir), "--out", str(workdir)]
    for param in params:
        command += ["--param", param]
    done = _run_child(command, timeout)
    if isinstance(done, str):
        return done
    return ReconstructionResult.read_report(workdir / "result.json")


def bench_object(
    mesh: Path, backends: dict[str, Any], args: argparse.Namespace, params: dict[str, list[str]], scratch: Path
) -> dict[str, Any]:
    name = mesh.stem
    folder = scratch / name
    started = time.perf_counter()
    render_capture(mesh, folder / "capture", views=args.views, size=args.size)
    render_seconds = time.perf_counter() - started
    capture = Capture.load(folder / "capture")
    bounds = np.array([capture.metadata["object"]["bbox_min"], capture.metadata["object"]["bbox_max"]])
    held_out = turntable_cameras(bounds, views=args.held_out, size=args.size, rings=HELD_OUT_RINGS, seed=12345)
    references = [view.rgb for view in render_views(mesh, held_out)]
    gt = load_mesh(mesh)
    row: dict[str, Any] = {
        "object": name,
        "mesh": str(mesh),
        "triangles": len(gt.faces),
        "diagonal": capture.metadata["object"]["diagonal"],
        "capture": {"views": args.views, "size": args.size, "render_seconds": render_seconds},
        "backends": {},
    }
    for backend_name in backends:
        print(f"  {name}: {backend_name} …", flush=True)
        result = run_backend(
            backend_name, folder / "capture", folder / backend_name, params.get(backend_name, []), args.timeout
        )
        if isinstance(result, str):
            row["backends"][backend_name] = {"error": result}
            print(f"    failed: {result}", flush=True)
            continue
        prediction = load_mesh(result.mesh_path)
        geometry = compare_meshes(prediction, gt, samples=args.samples, alignment=args.align)
        geometry.pop("alignment_transform", None)
        rendered = [view.rgb for view in render_views(prediction, held_out)]
        images = compare_images(rendered, references)
        images.pop("psnr_per_view", None)
        row["backends"][backend_name] = {
            "version": result.backend_version,
            "parameters": result.parameters,
            "geometry": geometry,
            "images": images,
            "resources": result.resources.to_dict(),
            "output": {k: v for k, v in result.metrics.items() if isinstance(v, int | float | bool | str)},
        }
        print(
            f"    chamfer {geometry['chamfer']:.5g} ({geometry['chamfer_relative'] * 100:.2f}% diag), "
            f"F@1% {geometry['fscore']:.3f}, PSNR {images['psnr']:.2f} dB, {result.resources.wall_s:.1f} s",
            flush=True,
        )
    if not args.skip_sfm:
        print(f"  {name}: pycolmap SfM reference …", flush=True)
        row["pycolmap_sfm"] = colmap_reference(folder / "capture", folder / "colmap", args.size, args.timeout)
    return row


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Reconstruction benchmark ({report['created']})",
        "",
        f"{report['capture']['views']} views at {report['capture']['size']} px per object; "
        f"held-out views: {report['capture']['held_out']}. CPU: {report['environment']['cpu']} "
        f"({report['environment']['cpu_count']} cores), torch {report['environment']['torch']}.",
        "",
        "| object | backend | Chamfer (% diag) | F@1% | normal cons. | IoU | PSNR dB | MS-SSIM | wall s | CPU s | GPU s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        for name, entry in row["backends"].items():
            if "error" in entry:
                lines.append(f"| {row['object']} | {name} | failed: {entry['error']} |" + " |" * 9)
                continue
            g, i, r = entry["geometry"], entry["images"], entry["resources"]
            iou = f"{g['volume_iou']:.3f}" if g.get("volume_iou") is not None else "n/a"
            lines.append(
                f"| {row['object']} | {name} | {g['chamfer_relative'] * 100:.3f} | {g['fscore']:.3f} | "
                f"{g['normal_consistency']:.3f} | {iou} | {i['psnr']:.2f} | {i['ms_ssim']:.4f} | "
                f"{r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['gpu_s']:.1f} | {r['peak_memory_mb']:.0f} |"
            )
    sfm_rows = [(row["object"], row["pycolmap_sfm"]) for row in report["rows"] if "pycolmap_sfm" in row]
    if sfm_rows:
        lines += ["", "pycolmap SfM reference (camera registration only):", ""]
        lines += [
            "| object | registered | points | reproj. px | centre error mean/max (% diag) | s |",
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
    timing = report["render_timing"]
    lines += [
        "",
        f"Rendering ({timing['size']} px, {timing['frames']} frames): median {timing['median_ms']:.1f} ms/frame, "
        f"first frame {timing['first_frame_ms']:.0f} ms. LPIPS: not available (no torchvision or weights here).",
    ]
    return "\n".join(lines) + "\n"


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=Path, default=DEFAULT_SCANS, help="folder of GLB scans (ground truth)")
    parser.add_argument("--objects", default=DEFAULT_OBJECTS, help="comma-separated file stems, or 'all'")
    parser.add_argument("--backends", default="all", help="comma-separated backend names, or 'all'")
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--held-out", type=int, default=4)
    parser.add_argument("--samples", type=int, default=100_000, help="surface samples per mesh for the metrics")
    parser.add_argument("--align", choices=["none", "icp"], default="none")
    parser.add_argument("--param", action="append", default=[], metavar="BACKEND:K=V")
    parser.add_argument("--skip-sfm", action="store_true", help="do not run the pycolmap SfM reference")
    parser.add_argument("--keep", type=Path, help="keep captures and outputs in this folder")
    parser.add_argument("--timeout", type=float, default=420.0, help="seconds allowed to each backend run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "recon.json")
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
    multi_view = {n: b for n, b in installed.items() if MULTI_VIEW in b["capabilities"]["inputs"]}
    if args.backends != "all":
        wanted = [b.strip() for b in args.backends.split(",") if b.strip()]
        unknown = sorted(set(wanted) - set(multi_view))
        if unknown:
            raise SystemExit(
                f"not an installed multi-view backend: {', '.join(unknown)} (installed: {', '.join(multi_view)})"
            )
        multi_view = {n: multi_view[n] for n in wanted}
    params = parse_params(args.param)

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
        "total_seconds": time.perf_counter() - started,
        "notes": [
            "F-score threshold: 1% of each scan's bounding-box diagonal; meshes compared in the scan's frame "
            "(the backends used the capture's known cameras) unless --align icp.",
            "LPIPS is not reported: torchvision and pretrained weights are not available.",
            "Cost per asset is left to the job side, which prices CPU/GPU seconds with configured rates.",
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')} in {report['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
