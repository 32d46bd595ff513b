"""Post-processing benchmark (`make bench-postprocess`) -> bench/results/postprocess.json.

1. Decimation at 50%, 10% and 1% of each shared scan and of a 1M-triangle mesh (the bunny subdivided once):
   our decimator and gltfpack (npm, same ratios, no quantization, no error limit) on the same geometry;
   symmetric Hausdorff and RMS distance to the original (Metro-style sampling, MeshLab), time of each.
2. The `mobile-ar` preset on each scan: time and peak memory per step, LOD chain sizes, budgets, validators.

Usage: python bench/postprocess.py [--only NAME ...] [--skip-presets | --skip-decimation] [--skip-million] [--merge]
       [--bake-size N] [--samples N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconstruction.engine.postprocess import cleanup, decimate, measure, surface  # noqa: E402
from reconstruction.engine.postprocess.asset import Asset, Material  # noqa: E402
from reconstruction.engine.postprocess.export import gltf  # noqa: E402
from reconstruction.engine.postprocess.load import load_asset  # noqa: E402
from reconstruction.engine.postprocess.pipeline import run_pipeline  # noqa: E402

DATA = Path(os.environ.get("ASSAY_SHARED_DATA") or ROOT.parent / "shared" / "data") / "gltf"
SCANS = ["spot", "stanford-bunny", "rocker-arm", "Avocado", "WaterBottle", "SheenChair"]
RATIOS = [0.5, 0.1, 0.01]
GLTFPACK = ROOT / "node_modules" / "gltfpack" / "cli.js"


def geometry_only(asset: Asset) -> Asset:
    """Welded positions and faces only: both simplifiers see the same topology and are judged on geometry
    (gltfpack welds a positions-only mesh itself; split UV-seam vertices would otherwise hold ours back)."""
    welded, positions = surface.weld(asset.positions)
    return Asset(positions=positions, faces=welded[asset.faces], materials=(Material(name="m"),),
                 face_materials=np.zeros(asset.triangle_count, dtype=np.int32), name=asset.name)


def one_million(bunny: Asset) -> Asset:
    positions, faces = trimesh.remesh.subdivide(bunny.positions, bunny.faces)
    return geometry_only(Asset(positions=positions, faces=faces, materials=(Material(name="m"),),
                               face_materials=np.zeros(len(faces), dtype=np.int32), name="bunny-subdivided-1.2M"))


def gltfpack_version() -> str:
    completed = subprocess.run(["node", str(GLTFPACK), "-v"], capture_output=True, text=True)
    return (completed.stdout + completed.stderr).splitlines()[0].strip()


def decimation_rows(asset: Asset, samples: int, scratch: Path) -> list[dict]:
    source = scratch / f"{asset.name}.glb"
    gltf.write_glb(asset.replace(normals=None), source)
    rows = []
    for ratio in RATIOS:
        target = max(int(asset.triangle_count * ratio), 4)
        started = time.perf_counter()
        ours, report = decimate.decimate(asset, target)
        ours_s = time.perf_counter() - started
        packed = scratch / f"{asset.name}-{ratio}.glb"
        started = time.perf_counter()
        completed = subprocess.run(["node", str(GLTFPACK), "-i", str(source), "-o", str(packed), "-si", str(ratio),
                                    "-se", "1", "-noq"], capture_output=True, text=True, timeout=1200)
        theirs_s = time.perf_counter() - started
        row = {"ratio": ratio, "target_triangles": target,
               "ours": {"triangles": ours.triangle_count, "seconds": round(ours_s, 3),
                        **_distance(asset, ours, samples)}}
        if completed.returncode == 0:
            packed_asset, _ = load_asset(packed)
            row["gltfpack"] = {"triangles": packed_asset.triangle_count, "seconds": round(theirs_s, 3),
                               **_distance(asset, packed_asset, samples)}
        else:
            row["gltfpack"] = {"error": completed.stderr.strip()[-300:]}
        diagonal = asset.diagonal
        for side in ("ours", "gltfpack"):
            if "hausdorff" in row[side]:
                row[side]["hausdorff_share_of_diagonal"] = row[side]["hausdorff"] / diagonal
                row[side]["rms_share_of_diagonal"] = row[side]["rms"] / diagonal
        print(json.dumps({"mesh": asset.name, **row}), flush=True)
        rows.append(row)
    return rows


def _distance(original: Asset, simplified: Asset, samples: int) -> dict:
    distance = measure.surface_distance(original.positions, original.faces, simplified.positions, simplified.faces,
                                        samples=samples)
    return {"hausdorff": distance["hausdorff"], "rms": distance["rms"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="scan names (default: all, plus the 1M mesh)")
    parser.add_argument("--skip-presets", action="store_true", help="decimation comparison only")
    parser.add_argument("--skip-million", action="store_true")
    parser.add_argument("--skip-decimation", action="store_true", help="presets only")
    parser.add_argument("--bake-size", type=int, default=2048)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "postprocess.json"))
    parser.add_argument("--merge", action="store_true", help="keep the other meshes' results already in --out")
    args = parser.parse_args()
    names = args.only or SCANS
    results: dict = {
        "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(),
                    "platform": platform.platform()},
        "gltfpack": gltfpack_version(),
        "decimation": {}, "presets": {},
    }
    if args.merge and Path(args.out).is_file():
        previous = json.loads(Path(args.out).read_text())
        for section in ("decimation", "presets", "cleanup_seconds"):
            results[section] = {**previous.get(section, {}), **results.get(section, {})}
    with tempfile.TemporaryDirectory(prefix="bench-postprocess-") as scratch_name:
        scratch = Path(scratch_name)
        meshes = []
        for name in [] if args.skip_decimation else names:
            asset, _ = load_asset(DATA / f"{name}.glb")
            started = time.perf_counter()
            cleaned, _ = cleanup.cleanup(asset)
            results.setdefault("cleanup_seconds", {})[name] = round(time.perf_counter() - started, 3)
            meshes.append(geometry_only(cleaned).replace(name=name))
        if not args.skip_million and not args.skip_decimation:
            bunny, _ = load_asset(DATA / "stanford-bunny.glb")
            meshes.append(one_million(bunny))
        for asset in meshes:
            results["decimation"][asset.name] = {"triangles": asset.triangle_count,
                                                 "rows": decimation_rows(asset, args.samples, scratch)}
            write(results, args.out)
        if not args.skip_presets:
            for name in names:
                out = scratch / f"preset-{name}"
                started = time.perf_counter()
                report = run_pipeline(DATA / f"{name}.glb", out, "mobile-ar",
                                      overrides={"unwrap_and_bake": {"size": args.bake_size}})
                results["presets"][name] = {
                    "preset": "mobile-ar",
                    "seconds": round(time.perf_counter() - started, 2),
                    "steps": report["steps"],
                    "budgets": report["budgets"],
                    "validation_passed": report["validation_passed"],
                    "baked": not report.get("unwrap_and_bake", {}).get("skipped", False),
                    "lods": [{"level": row["level"], "triangles": row["triangles"],
                              "switch_distance_m": row["switch_distance_m"],
                              "bytes": {fmt: f["bytes"] for fmt, f in row["files"].items()},
                              "validation": {fmt: f["validation"]["passed"] for fmt, f in row["files"].items()}}
                             for row in report["lods"]],
                }
                print(json.dumps({"preset": name, **{k: results["presets"][name][k] for k in ("seconds", "budgets")}}),
                      flush=True)
                write(results, args.out)
    write(results, args.out)
    print(f"wrote {args.out}")


def write(results: dict, out: str) -> None:
    """Written after every mesh, so a long run that is stopped still leaves what it measured."""
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
