"""Hybrid benchmark (part of `make bench-recon`): few views of each ground-truth scan, reconstructed by the hybrid
backend, by photogrammetry alone and by the visual hull from the same views, and by photogrammetry from 24 views.

    python bench/hybrid.py [--objects spot,Avocado] [--views 4,6,8] [--size 256] [--methods ...] [--untrained]

Scores (meshes compared in the scan's frame: every backend used the capture's known cameras): F-score at 1% of the
scan's bounding-box diagonal with its precision and recall, completeness (mean distance from the scan's surface to
the reconstruction, as a share of the diagonal), and wall/CPU seconds and peak memory per asset. Each run is a child
process through the engine's CLI (see bench/recon.py), so a failure or a time-out costs one row, not the bench.
`--untrained` registers a randomly initialised model in a temporary model folder: it exercises the pipeline, and
its hybrid figures say nothing about the method. Results: bench/results/hybrid.json and hybrid.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from recon import DEFAULT_SCANS, environment, run_backend  # noqa: E402

from reconstruction.engine.metrics import compare_meshes, load_mesh  # noqa: E402
from reconstruction.engine.render import render_capture  # noqa: E402

# A subset that keeps the default run near a quarter of an hour on two cores: a textured animal, a smooth fruit and
# a chair with openings no silhouette sees into.
DEFAULT_OBJECTS = "spot,Avocado,SheenChair"
METHODS = ("hybrid", "photogrammetry", "visual-hull")
REFERENCE = "photogrammetry-24"
# Geometry is what is scored, so the photogrammetry texture is baked small and without an xatlas unwrap.
PARAMS: dict[str, list[str]] = {
    "hybrid": [],
    "photogrammetry": ["texture_size=512", "uv_atlas=grid"],
    "visual-hull": ["color=false"],
}


def score(mesh_path: Path, gt: Any, samples: int) -> dict[str, float]:
    geometry = compare_meshes(load_mesh(mesh_path), gt, samples=samples)
    diagonal = geometry["gt_diagonal"]
    return {
        "fscore": geometry["fscore"],
        "precision": geometry["precision"],
        "recall": geometry["recall"],
        "completeness": geometry["completeness"] / diagonal,
        "accuracy": geometry["accuracy"] / diagonal,
        "chamfer": geometry["chamfer_relative"],
    }


def run_one(method: str, capture: Path, workdir: Path, gt: Any, args: argparse.Namespace) -> dict[str, Any]:
    backend = "photogrammetry" if method == REFERENCE else method
    result = run_backend(backend, capture, workdir, PARAMS[backend] + args.param.get(backend, []), args.timeout)
    if isinstance(result, str):
        print(f"    {method}: failed: {result}", flush=True)
        return {"error": result}
    entry: dict[str, Any] = {
        "geometry": score(result.mesh_path, gt, args.samples),
        "resources": result.resources.to_dict(),
        "parameters": result.parameters,
    }
    for key in ("generated_fraction", "confidence", "sample_confidence", "fused_points", "model_checkpoints"):
        if key in result.metrics:
            entry[key] = result.metrics[key]
    g = entry["geometry"]
    print(
        f"    {method}: F@1% {g['fscore']:.3f} (P {g['precision']:.3f} R {g['recall']:.3f}), completeness "
        f"{g['completeness'] * 100:.2f}% diag, {result.resources.wall_s:.1f} s"
        + (f", generated {entry['generated_fraction']:.0%}" if "generated_fraction" in entry else ""),
        flush=True,
    )
    return entry


def bench_scan(mesh: Path, args: argparse.Namespace, scratch: Path, reused: dict[str, Any] | None) -> dict[str, Any]:
    gt = load_mesh(mesh)
    row: dict[str, Any] = {
        "object": mesh.stem,
        "diagonal": float(np.linalg.norm(gt.bounds[1] - gt.bounds[0])),
        "runs": {},
    }
    for views in args.views:
        runs = dict((reused or {}).get("runs", {}).get(str(views), {}))
        if any(method != REFERENCE for method in args.methods):
            capture = render_capture(mesh, scratch / mesh.stem / f"views-{views}", views=views, size=args.size)
            print(f"  {mesh.stem}, {views} views:", flush=True)
            for method in args.methods:
                if method != REFERENCE:
                    runs[method] = run_one(method, capture, scratch / mesh.stem / f"{method}-{views}", gt, args)
        row["runs"][str(views)] = {method: runs[method] for method in (*METHODS, REFERENCE) if method in runs}
    if reused and "reference" in reused:
        row["reference"] = reused["reference"]
    if REFERENCE in args.methods:
        capture = render_capture(mesh, scratch / mesh.stem / "views-24", views=24, size=args.size)
        print(f"  {mesh.stem}, 24 views:", flush=True)
        row["reference"] = run_one(REFERENCE, capture, scratch / mesh.stem / REFERENCE, gt, args)
    return row


def methods_in(rows: list[dict[str, Any]]) -> list[str]:
    """The methods with a run in any row, this run's and reused ones."""
    found = {method for row in rows for runs in row["runs"].values() for method in runs}
    return [m for m in (*METHODS, REFERENCE) if m in found or (m == REFERENCE and any("reference" in r for r in rows))]


def summary(rows: list[dict[str, Any]], views: list[int], methods: list[str]) -> dict[str, Any]:
    """Mean F@1% and completeness per method and view count over the scans (a failed run scores F = 0 and is
    counted); hybrid's lead over each baseline."""
    table: dict[str, Any] = {}
    for count in views:
        per_method: dict[str, Any] = {}
        for method in (m for m in methods if m != REFERENCE):
            entries = [row["runs"].get(str(count), {}).get(method) for row in rows]
            entries = [e for e in entries if e is not None]
            if not entries:
                continue
            scored = [e for e in entries if "error" not in e]
            per_method[method] = {
                "fscore": float(np.mean([e["geometry"]["fscore"] if "error" not in e else 0.0 for e in entries])),
                "completeness": float(np.mean([e["geometry"]["completeness"] for e in scored])) if scored else None,
                "failed": len(entries) - len(scored),
                "wall_s": float(np.mean([e["resources"]["wall_s"] for e in scored])) if scored else None,
            }
        if "hybrid" in per_method:
            for other in ("photogrammetry", "visual-hull"):
                if other in per_method:
                    per_method[f"hybrid_lead_over_{other}"] = (
                        per_method["hybrid"]["fscore"] - per_method[other]["fscore"]
                    )
        table[str(count)] = per_method
    references = [row["reference"] for row in rows if "reference" in row]
    if references:
        scored = [e for e in references if "error" not in e]
        table["24"] = {
            REFERENCE: {
                "fscore": float(np.mean([e["geometry"]["fscore"] if "error" not in e else 0.0 for e in references])),
                "completeness": float(np.mean([e["geometry"]["completeness"] for e in scored])) if scored else None,
                "failed": len(references) - len(scored),
                "wall_s": float(np.mean([e["resources"]["wall_s"] for e in scored])) if scored else None,
            }
        }
    return table


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Hybrid benchmark ({report['created']})",
        "",
        f"Scans: {', '.join(r['object'] for r in report['rows'])}; renders at {report['size']} px. "
        f"Model: {report['model']}. F@1% of the bounding-box diagonal; completeness = mean scan→reconstruction "
        "distance in % of the diagonal.",
        "",
        "| scan | views | method | F@1% | precision | recall | completeness % | generated | wall s | CPU s | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def line(scan: str, views: str, method: str, entry: dict[str, Any]) -> str:
        if "error" in entry:
            return f"| {scan} | {views} | {method} | failed: {entry['error']} |" + " |" * 7
        g, r = entry["geometry"], entry["resources"]
        generated = f"{entry['generated_fraction']:.0%}" if "generated_fraction" in entry else ""
        return (
            f"| {scan} | {views} | {method} | {g['fscore']:.3f} | {g['precision']:.3f} | {g['recall']:.3f} | "
            f"{g['completeness'] * 100:.2f} | {generated} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['peak_memory_mb']:.0f} |"
        )

    for row in report["rows"]:
        for views, runs in row["runs"].items():
            lines += [line(row["object"], views, method, entry) for method, entry in runs.items()]
        if "reference" in row:
            lines.append(line(row["object"], "24", REFERENCE, row["reference"]))
    lines += [
        "",
        "Means over the scans (a failed run counts F = 0):",
        "",
        "| views | method | F@1% | completeness % | failed | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for views, methods in report["summary"].items():
        for method, entry in methods.items():
            if method.startswith("hybrid_lead"):
                continue
            completeness = f"{entry['completeness'] * 100:.2f}" if entry["completeness"] is not None else "n/a"
            wall = f"{entry['wall_s']:.1f}" if entry["wall_s"] is not None else "n/a"
            lines.append(
                f"| {views} | {method} | {entry['fscore']:.3f} | {completeness} | {entry['failed']} | {wall} |"
            )
    leads = [
        f"{views} views: hybrid − {key.removeprefix('hybrid_lead_over_')} = {value:+.3f}"
        for views, methods in report["summary"].items()
        for key, value in methods.items()
        if key.startswith("hybrid_lead")
    ]
    if leads:
        lines += ["", "F@1% lead of hybrid: " + "; ".join(leads) + "."]
    return "\n".join(lines) + "\n"


def untrained_model_dir(folder: Path) -> str:
    """A model folder holding a randomly initialised occupancy-diffusion checkpoint (pipeline mechanics only)."""
    import torch

    from reconstruction.engine.generative.model import DiffusionModel
    from reconstruction.engine.model_registry import MODEL_DIR_ENV, register_checkpoint

    torch.manual_seed(0)
    model = DiffusionModel()
    torch.save({"config": model.config, "state_dict": model.state_dict()}, folder / "untrained.pt")
    os.environ[MODEL_DIR_ENV] = str(folder / "models")
    card = register_checkpoint(
        folder / "untrained.pt",
        name="occupancy-diffusion",
        version="0.0.0-untrained",
        architecture=model.config["architecture"],
        training_config={},
        training_data={"description": "none: random initial weights", "digest": "0" * 64},
        metrics={},
        description="Randomly initialised: for benchmarking the pipeline's mechanics only.",
    )
    return f"{card.reference} (untrained, random weights)"


def registered_model() -> str:
    from reconstruction.engine.model_registry import find_model

    card = find_model("occupancy-diffusion")
    return f"{card.reference} (sha256 {card.sha256[:12]})"


def _previous_rows(args: argparse.Namespace) -> dict[str, Any]:
    """Rows of an earlier run (same render size and view counts) whose other methods' runs this one keeps."""
    previous = json.loads(args.reuse.read_text())
    if previous["size"] != args.size or not set(args.views) <= set(previous["views"]):
        raise SystemExit(
            f"{args.reuse} was run at {previous['size']} px with views {previous['views']}; cannot reuse it"
        )
    return {row["object"]: row for row in previous["rows"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=Path, default=DEFAULT_SCANS, help="folder of GLB scans (ground truth)")
    parser.add_argument("--objects", default=DEFAULT_OBJECTS, help="comma-separated file stems, or 'all'")
    parser.add_argument("--views", default="4,6,8", help="comma-separated view counts of the few-view captures")
    parser.add_argument("--size", type=int, default=256, help="render size in pixels")
    parser.add_argument("--methods", default=",".join([*METHODS, REFERENCE]))
    parser.add_argument("--samples", type=int, default=50_000, help="surface samples per mesh for the metrics")
    parser.add_argument("--param", action="append", default=[], metavar="BACKEND:K=V")
    parser.add_argument("--untrained", action="store_true", help="use a randomly initialised model (mechanics only)")
    parser.add_argument("--reuse", type=Path, help="an earlier results file whose runs of the other methods are kept")
    parser.add_argument("--keep", type=Path, help="keep captures and outputs in this folder")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed to each backend run")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "hybrid.json")
    args = parser.parse_args(argv)
    args.views = [int(v) for v in args.views.split(",") if v.strip()]
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(args.methods) - {*METHODS, REFERENCE})
    if unknown:
        raise SystemExit(f"unknown method {', '.join(unknown)} (known: {', '.join([*METHODS, REFERENCE])})")
    grouped: dict[str, list[str]] = {}
    for pair in args.param:
        backend, _, assignment = pair.partition(":")
        grouped.setdefault(backend, []).append(assignment)
    args.param = grouped
    scans = sorted(args.scans.glob("*.glb"))
    if args.objects != "all":
        wanted = [o.strip() for o in args.objects.split(",") if o.strip()]
        missing = sorted(set(wanted) - {p.stem for p in scans})
        if missing:
            raise SystemExit(f"no scan named {', '.join(missing)} in {args.scans}")
        scans = [p for p in scans if p.stem in wanted]

    scratch = args.keep or Path(tempfile.mkdtemp(prefix="assay-bench-hybrid-"))
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        model = untrained_model_dir(scratch) if args.untrained else registered_model()
        previous = _previous_rows(args) if args.reuse else {}
        rows = []
        for mesh in scans:
            print(f"{mesh.stem}:", flush=True)
            rows.append(bench_scan(mesh, args, scratch, previous.get(mesh.stem)))
    finally:
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "environment": environment(),
        "model": model,
        "size": args.size,
        "views": args.views,
        "methods": args.methods,
        "parameters": {k: v + args.param.get(k, []) for k, v in PARAMS.items()},
        "rows": rows,
        "summary": summary(rows, args.views, methods_in(rows)),
        "reused": str(args.reuse) if args.reuse else None,
        "total_seconds": time.perf_counter() - started,
        "notes": [
            "Every backend used the capture's known cameras; meshes are compared in the scan's frame.",
            "Cost per asset is left to the job side, which prices the CPU/GPU seconds reported here.",
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    args.out.with_suffix(".md").write_text(markdown(report))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')} in {report['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
