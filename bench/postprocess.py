"""Post-processing benchmark (`make bench-postprocess`) -> bench/results/postprocess.json (+ postprocess.md).

1. Decimation at 50%, 10% and 1% of each shared scan and of a 1M-triangle mesh (the bunny subdivided once):
   our decimator and gltfpack (npm, same ratios, no quantization, no error limit) on the same geometry;
   symmetric Hausdorff and RMS distance to the original (Metro-style sampling, MeshLab), time of each.
2. Every preset on every scan, each run in its own process (so its peak memory is its own): validator verdicts
   per LOD and format, triangles per LOD, file sizes (meshopt-compressed against uncompressed GLB, the MSFT_lod
   chain), budgets, time and peak memory per step.

Usage: python bench/postprocess.py [--only NAME ...] [--presets NAME ...] [--skip-presets | --skip-decimation]
       [--skip-million] [--merge] [--jobs N] [--bake-size N] [--samples N]
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
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import trimesh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reconstruction.engine.postprocess import cleanup, decimate, measure, surface  # noqa: E402
from reconstruction.engine.postprocess.asset import Asset, Material  # noqa: E402
from reconstruction.engine.postprocess.export import gltf  # noqa: E402
from reconstruction.engine.postprocess.load import load_asset  # noqa: E402
from reconstruction.engine.postprocess.pipeline import peak_rss_mb, run_pipeline  # noqa: E402
from reconstruction.engine.postprocess.presets import PRESETS  # noqa: E402

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
    with_normals = asset.replace(normals=surface.smooth_vertex_normals(asset.positions, asset.faces))
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
        # As the pipeline runs on a mesh with normals, and as gltfpack gets it (write_glb adds smooth normals,
        # which gltfpack weighs in its collapses): the normals steer collapses at DecimateOptions' weight.
        started = time.perf_counter()
        steered, _ = decimate.decimate(with_normals, target)
        row["ours_with_normals"] = {"triangles": steered.triangle_count, "seconds": round(time.perf_counter() - started, 3),
                                    "normal_weight": decimate.DecimateOptions().normal_weight,
                                    **_distance(asset, steered, samples)}
        if completed.returncode == 0:
            packed_asset, _ = load_asset(packed)
            row["gltfpack"] = {"triangles": packed_asset.triangle_count, "seconds": round(theirs_s, 3),
                               **_distance(asset, packed_asset, samples)}
        else:
            row["gltfpack"] = {"error": completed.stderr.strip()[-300:]}
        diagonal = asset.diagonal
        for side in ("ours", "ours_with_normals", "gltfpack"):
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
    parser.add_argument("--presets", nargs="*", help="preset names (default: all)")
    parser.add_argument("--jobs", type=int, default=1, help="preset runs at once (each in its own process)")
    parser.add_argument("--bake-size", type=int, help="override every preset's bake size (default: the preset's)")
    parser.add_argument("--run-one", nargs=3, metavar=("PRESET", "SCAN", "OUT_DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "postprocess.json"))
    parser.add_argument("--merge", action="store_true", help="keep the other meshes' results already in --out")
    args = parser.parse_args()
    if args.run_one:
        run_one(*args.run_one, bake_size=args.bake_size)
        return
    names = args.only or SCANS
    results: dict = {
        "machine": {"python": platform.python_version(), "cpu_count": __import__("os").cpu_count(),
                    "platform": platform.platform()},
        "gltfpack": gltfpack_version(),
        "decimation": {}, "presets": {},
    }
    if args.merge and Path(args.out).is_file():
        previous = json.loads(Path(args.out).read_text())
        for section in ("decimation", "cleanup_seconds"):
            results[section] = {**previous.get(section, {}), **results.get(section, {})}
        # Per preset, per scan (older files kept one preset per scan: those are dropped).
        results["presets"] = {preset: dict(rows) for preset, rows in previous.get("presets", {}).items()
                              if preset in PRESETS and isinstance(rows, dict) and "lods" not in rows}
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
            runs = [(preset, name) for preset in args.presets or list(PRESETS) for name in names]
            results["preset_jobs"] = args.jobs
            # --jobs 2 halves the wall time on two idle cores; each run's seconds then include sharing the CPU.
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                futures = {pool.submit(run_preset, preset, name, scratch, args.bake_size): (preset, name)
                           for preset, name in runs}
                for future in as_completed(futures):
                    preset, name = futures[future]
                    row = future.result()
                    results["presets"].setdefault(preset, {})[name] = row
                    print(json.dumps({"preset": preset, "scan": name,
                                      **{k: row.get(k) for k in ("seconds", "peak_rss_mb", "validation_passed", "error")}}),
                          flush=True)
                    write(results, args.out)
    write(results, args.out)
    print(f"wrote {args.out}")


def run_preset(preset: str, name: str, scratch: Path, bake_size: int | None) -> dict:
    """One preset on one scan in a child process; its summary, or the error that stopped it."""
    out = scratch / f"{preset}-{name}"
    command = [sys.executable, __file__, "--run-one", preset, name, str(out)]
    if bake_size:
        command += ["--bake-size", str(bake_size)]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    summary_path = out / "bench-summary.json"
    if completed.returncode != 0 or not summary_path.is_file():
        return {"error": (completed.stderr or completed.stdout).strip()[-1500:], "validation_passed": False,
                "seconds": round(time.perf_counter() - started, 2)}
    return json.loads(summary_path.read_text())


def run_one(preset: str, name: str, out_dir: str, bake_size: int | None = None) -> None:
    """Child process: run the pipeline, then write `bench-summary.json` into `out_dir`."""
    out = Path(out_dir)
    overrides = {"unwrap_and_bake": {"size": bake_size}} if bake_size and PRESETS[preset].params("unwrap_and_bake") else None
    started = time.perf_counter()
    report = run_pipeline(DATA / f"{name}.glb", out, preset, overrides=overrides)
    seconds = time.perf_counter() - started

    def verdict(result: dict) -> dict:
        validation = result["validation"]
        return {"passed": validation["passed"], "tool": validation["tool"], "errors": validation["errors"][:5],
                "warnings": len(validation["warnings"]), "infos": validation["details"].get("infos", [])[:5]}

    lods = [{"level": row["level"], "triangles": row["triangles"], "switch_distance_m": row["switch_distance_m"],
             "error_m": row["error_m"], "bytes": {fmt: f["bytes"] for fmt, f in row["files"].items()},
             "validation": {fmt: verdict(f) for fmt, f in row["files"].items()}}
            for row in report["lods"]]
    summary = {
        "seconds": round(seconds, 2),
        "peak_rss_mb": peak_rss_mb(),
        "validation_passed": report["validation_passed"],
        "verdicts": {fmt: all(row["validation"][fmt]["passed"] for row in lods) for fmt in lods[0]["validation"]},
        "triangles": [row["triangles"] for row in lods],
        "glb_bytes": [row["bytes"]["glb"] for row in lods] if "glb" in lods[0]["bytes"] else None,
        "budgets": report["budgets"],
        "baked": "unwrap_and_bake" in report and not report["unwrap_and_bake"].get("skipped", False),
        "steps": report["steps"],
        "lods": lods,
    }
    compressed = [key for key in lods[0]["bytes"] if key.startswith("glb-")]
    if compressed:
        summary["compression"] = {key: {"bytes": sum(row["bytes"][key] for row in lods),
                                        "uncompressed_bytes": sum(row["bytes"]["glb"] for row in lods)}
                                  for key in compressed}
        for entry in summary["compression"].values():
            entry["ratio"] = round(entry["bytes"] / entry["uncompressed_bytes"], 4)
    if "lod_chain" in report:
        chain = report["lod_chain"]
        summary["lod_chain"] = {"bytes": chain["bytes"], **verdict(chain)}
    (out / "bench-summary.json").write_text(json.dumps(summary, indent=2))


def write(results: dict, out: str) -> None:
    """Written after every mesh, so a long run that is stopped still leaves what it measured."""
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2))
    Path(out).with_suffix(".md").write_text(markdown(results))


def markdown(results: dict) -> str:
    """The tables of the report: every preset × scan, and decimation against gltfpack."""
    lines = ["# Post-processing benchmark", "", f"Machine: {results['machine']}; {results['gltfpack']}.", "",
             "## Presets × scans", "",
             "| preset | scan | GLB | USDZ | FBX | other files | triangles per LOD | LOD0 GLB bytes | meshopt / plain GLB | "
             "MSFT_lod GLB | seconds | peak MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for preset, rows in sorted(results.get("presets", {}).items(), key=lambda item: list(PRESETS).index(item[0])):
        for scan, row in sorted(rows.items(), key=lambda item: SCANS.index(item[0]) if item[0] in SCANS else len(SCANS)):
            if "error" in row:
                lines.append(f"| {preset} | {scan} | failed: {row['error'].splitlines()[-1][:120]} |||||||||| ")
                continue
            verdicts = row["verdicts"]
            mark = {True: "pass", False: "FAIL", None: "—"}
            others = ", ".join(f"{fmt} {mark[ok]}" for fmt, ok in verdicts.items() if fmt not in ("glb", "usdz", "fbx"))
            compression = row.get("compression", {}).get("glb-meshopt")
            chain = row.get("lod_chain")
            ratio = f"{compression['ratio']:.2f}" if compression else "—"
            chain_text = f"{chain['bytes']} ({mark[chain['passed']]})" if chain else "—"
            lines.append(
                f"| {preset} | {scan} | {mark[verdicts.get('glb')]} | {mark[verdicts.get('usdz')]} | {mark[verdicts.get('fbx')]} "
                f"| {others or '—'} | {' / '.join(str(t) for t in row['triangles'])} "
                f"| {row['glb_bytes'][0] if row.get('glb_bytes') else '—'} "
                f"| {ratio} | {chain_text} "
                f"| {row['seconds']} | {row['peak_rss_mb']} |")
    lines += ["", "## Decimation: ours / gltfpack (share of the bounding-box diagonal)", "",
              "Ours: positions only; ours+n: smooth normals steer collapses (weight 0.5, as the pipeline runs a mesh with "
              "normals); gltfpack gets the same normals in its input GLB.", "",
              "| mesh | triangles | ratio | Hausdorff ours | ours+n | gltfpack | RMS ours | ours+n | gltfpack | s ours | s gltfpack |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for mesh, entry in results.get("decimation", {}).items():
        for row in entry["rows"]:
            ours, steered, theirs = row["ours"], row.get("ours_with_normals", {}), row.get("gltfpack", {})
            if "hausdorff_share_of_diagonal" not in theirs:
                continue

            def share(side: dict, key: str) -> str:
                return f"{side[key]:.2e}" if key in side else "—"

            lines.append(
                f"| {mesh} | {entry['triangles']} | {row['ratio']} | {share(ours, 'hausdorff_share_of_diagonal')} "
                f"| {share(steered, 'hausdorff_share_of_diagonal')} | {share(theirs, 'hausdorff_share_of_diagonal')} "
                f"| {share(ours, 'rms_share_of_diagonal')} | {share(steered, 'rms_share_of_diagonal')} "
                f"| {share(theirs, 'rms_share_of_diagonal')} | {ours['seconds']} | {theirs['seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
