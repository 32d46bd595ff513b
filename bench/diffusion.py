"""Single-image benchmark of the `diffusion` backend (part of `make bench-recon`): writes bench/results/diffusion.json.

    python bench/diffusion.py [--test DIR] [--limit 60] [--scans DIR] [--objects all] [--seeds 0,1,2,3]

Two sets: the held-out procedural test set (ground-truth occupancy in each item's frame) and one front-ish view
(`render --single`: elevation 15°, azimuth 30°) of each scan in ../shared/data/gltf. For both, ours and the
silhouette-extrusion baseline from the same view (mask columns swept through a depth band as thick as the mean of
the silhouette's width and height) are scored by volume IoU (where both meshes are watertight) and F-score at 2%
and 5% of the reference's bounding-box diagonal, after a similarity ICP; plus seconds per asset. On the scans, ours is
the mean over several sampler seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from reconstruction.engine.backends.diffusion import DiffusionBackend  # noqa: E402
from reconstruction.engine.backends.diffusion.backend import MODEL_NAME  # noqa: E402
from reconstruction.engine.capture import Capture  # noqa: E402
from reconstruction.engine.generative.evaluation import (  # noqa: E402
    SCORES,
    evaluate_on_dataset,
    extrusion_baseline,
    mean_scores,
    score_meshes,
)
from reconstruction.engine.generative.frame import frame_for  # noqa: E402
from reconstruction.engine.generative.model import load_model  # noqa: E402
from reconstruction.engine.metrics import load_mesh  # noqa: E402
from reconstruction.engine.model_registry import checkpoint_reference, find_model  # noqa: E402
from reconstruction.engine.render import render_capture  # noqa: E402

DEFAULT_SCANS = Path(os.environ.get("ASSAY_SHARED_DATA") or REPO.parent / "shared" / "data") / "gltf"
DEFAULT_TEST = Path(os.environ.get("ASSAY_DIFFUSION_TEST") or REPO / "var" / "diffusion-data" / "test")
BASELINE_RESOLUTION = 64


def bench_scan(mesh_path: Path, scratch: Path, size: int, seeds: list[int]) -> dict[str, Any]:
    """Ours (the mean over sampler seeds; one seed's F@2% varies by ±0.1 on a scan) and the baseline on one rendered
    single view of a scan."""
    capture_dir = render_capture(mesh_path, scratch / mesh_path.stem / "capture", single=True, size=size)
    capture = Capture.load(capture_dir)
    reference = load_mesh(mesh_path)
    runs = []
    for seed in seeds:
        started = time.perf_counter()
        result = DiffusionBackend().run(
            capture, scratch / mesh_path.stem / f"out-{seed}", params={"seed": seed}, progress=lambda *_: None,
            cancel=lambda: False,
        )
        seconds = time.perf_counter() - started
        run = score_meshes(load_mesh(result.mesh_path), reference, align=True)
        run.update(seconds=seconds, confidence=result.metrics["confidence"],
                   silhouette_iou=result.metrics["silhouette_iou"])
        runs.append(run)
    ours = mean_scores(runs, (*SCORES, "seconds", "confidence", "silhouette_iou"))
    ours["by_seed"] = {"seeds": seeds, "f@2%": [r["f@2%"] for r in runs], "f@5%": [r["f@5%"] for r in runs]}
    assert capture.cameras is not None and capture.masks is not None
    mask = capture.load_mask(0)
    centre = tuple(capture.metadata["object"]["center"])
    frame = frame_for(capture.cameras[0], mask, resolution=BASELINE_RESOLUTION, depth_bins=BASELINE_RESOLUTION,
                      centre_hint=centre)
    started = time.perf_counter()
    base_mesh = frame.to_world_mesh(extrusion_baseline(frame, frame.crop(mask)).astype(np.float32))
    seconds = time.perf_counter() - started
    baseline = score_meshes(base_mesh, reference, align=True)
    baseline["seconds"] = seconds
    return {"object": mesh_path.stem, "reference_watertight": bool(reference.is_watertight), "ours": ours,
            "baseline": baseline}


def markdown(report: dict[str, Any]) -> str:
    lines = ["| set | method | items | volume IoU | F@2% | F@5% | normal consistency | s/asset |",
             "|---|---|---|---|---|---|---|---|"]

    def cell(value: Any) -> str:
        return "–" if value is None else f"{value:.3f}"

    for name, block in (("procedural test", report.get("procedural")), ("scans (1 view)", report.get("scans"))):
        if not block:
            continue
        for method in ("ours", "baseline"):
            m = block["mean"][method]
            lines.append(f"| {name} | {method} | {m['count']} | {cell(m['volume_iou'])} | {cell(m['f@2%'])} | "
                         f"{cell(m['f@5%'])} | {cell(m.get('normal_consistency'))} | {cell(m.get('seconds'))} |")
    for row in (report.get("scans") or {}).get("rows", []):
        o, b = row["ours"], row["baseline"]
        lines.append(f"| scan {row['object']} | ours / baseline | 1 | {cell(o['volume_iou'])} / {cell(b['volume_iou'])} | "
                     f"{cell(o['f@2%'])} / {cell(b['f@2%'])} | {cell(o['f@5%'])} / {cell(b['f@5%'])} | "
                     f"{cell(o.get('normal_consistency'))} / {cell(b.get('normal_consistency'))} | {o['seconds']:.1f} |")
    return "\n".join(lines)


def seed_list(text: str) -> list[int]:
    """--seeds: comma-separated non-negative integers, checked before any work starts."""
    try:
        seeds = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2,3, not {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"seeds must be non-negative integers, not {text!r}")
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", type=Path, default=DEFAULT_TEST, help="held-out procedural data set folder")
    parser.add_argument("--limit", type=int, default=60, help="test items to score (all when fewer)")
    parser.add_argument("--scans", type=Path, default=DEFAULT_SCANS)
    parser.add_argument("--objects", default="all", help="comma-separated scan stems, or 'all'")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seeds", type=seed_list, default=[0, 1, 2, 3], help="sampler seeds per scan, e.g. 0,1,2,3; "
                        "ours is their mean")
    parser.add_argument(
        "--align-procedural",
        action="store_true",
        help="similarity ICP on the procedural set too (its predictions already share the ground truth's frame)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "diffusion.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the machine is shared: one thread is steadier (and here faster) than two
    card = find_model(MODEL_NAME)
    report: dict[str, Any] = {
        "model": checkpoint_reference(card),
        "alignment": "scans: similarity ICP of each mesh onto its reference (from the identity); procedural: none "
        "unless --align-procedural (the item's frame is exact, so ours, the baseline and the truth share it)",
        "f_score_thresholds": "2% and 5% of the reference's bounding-box diagonal",
        "baseline": "silhouette extrusion: mask columns swept through a depth band of thickness mean(width, height)",
        "sampler": {"samples": 4, "steps": 24, "guidance": 2.0},
    }
    if not (args.test / "dataset.json").is_file():
        # The held-out set `make train-diffusion` evaluates on: same generator, seed and count.
        from reconstruction.engine.generative.dataset import build_dataset

        build_dataset(args.test, count=60, seed=1001, resolution=64, depth_bins=64, shard_size=60, workers=1)
    if (args.test / "dataset.json").is_file():
        print(f"procedural test set {args.test}", flush=True)
        evaluated = evaluate_on_dataset(load_model(card), args.test, limit=args.limit, align=args.align_procedural,
                                        log=lambda line: print(line, flush=True))
        report["procedural"] = {"folder": str(args.test), "aligned": args.align_procedural, "mean": {"ours": evaluated["ours"],
                                "baseline": evaluated["baseline"]}, "rows": evaluated["rows"]}
    else:
        report["procedural"] = None
        print(f"no procedural test set at {args.test}; skipped", flush=True)
    stems = None if args.objects == "all" else set(args.objects.split(","))
    seeds = args.seeds
    scans = sorted(p for p in args.scans.glob("*.glb") if stems is None or p.stem in stems)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-diffusion-") as scratch:
        for mesh_path in scans:
            print(f"scan {mesh_path.stem}", flush=True)
            rows.append(bench_scan(mesh_path, Path(scratch), args.size, seeds))
            print(json.dumps({k: rows[-1][k] for k in ("ours", "baseline")}), flush=True)
    report["scans"] = {
        "folder": str(args.scans),
        "view": "render --single (elevation 15°, azimuth 30°), 512 px, white background, mask from the render",
        "seeds": seeds,
        "rows": rows,
        "mean": {"ours": mean_scores([r["ours"] for r in rows], (*SCORES, "seconds")),
                 "baseline": mean_scores([r["baseline"] for r in rows], (*SCORES, "seconds"))},
    } if rows else None
    report["table"] = markdown(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(report["table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
