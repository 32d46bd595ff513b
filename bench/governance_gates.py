"""Safety-gate benchmark (part of `make bench-governance`): precision and recall of the text, logo and face gates
on a labelled set made from the shared Sceaux Castle photos (crops), each with synthetic overlays (printed
signs, a synthetic brand mark at random scale and rotation, a drawn face) or none.

Labels are the overlays drawn; the photos are real, so any real text or face in them counts against precision,
as it would in production. No photo of a real person is used (none is licence-clean here): the face gate is
measured on drawn faces, which says how it works on this pipeline, not how it does on real people.

Writes bench/results/governance_gates.json.

    .venv/bin/python bench/governance_gates.py [--crops 2] [--per-background 4] [--seed 7]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHOTOS = Path(os.environ.get("ASSAY_SHARED_DATA") or ROOT.parent / "shared" / "data") / "photos" / "sceaux-castle"


def backgrounds(crops: int, seed: int) -> list:
    import cv2

    rng = random.Random(seed)
    out = []
    for path in sorted(PHOTOS.glob("*.JPG")):
        photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
        photo = cv2.resize(photo, (photo.shape[1] // 2, photo.shape[0] // 2), interpolation=cv2.INTER_AREA)
        for _ in range(crops):
            y, x = rng.randint(0, photo.shape[0] - 480), rng.randint(0, photo.shape[1] - 640)
            out.append(photo[y:y + 480, x:x + 640].copy())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=int, default=2, help="crops per photo")
    parser.add_argument("--per-background", type=int, default=4, help="samples per crop (the first is clean)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "governance_gates.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    import cv2

    from governance.gates import FLAG, GateContext, GateImage
    from governance.gates.evaluation import brand_mark, make_set, precision_recall
    from governance.gates.faces import FaceGate
    from governance.gates.logos import LogoGate, ReferenceMark
    from governance.gates.ocr import TextGate

    if not PHOTOS.is_dir():
        sys.exit(f"The shared photos are missing: {PHOTOS}")
    mark = brand_mark(200, seed=args.seed)
    samples = make_set(backgrounds(args.crops, args.seed), mark=mark, per_background=args.per_background, seed=args.seed)
    gates = {"text": TextGate(), "logos": LogoGate(marks=[ReferenceMark("Synthetic", FLAG, mark)]), "faces": FaceGate()}
    results = {}
    for name, gate in gates.items():
        predicted, seconds, misses = [], [], []
        for sample in samples:
            start = time.perf_counter()
            result = gate.check([GateImage(sample.name, "", sample.pixels)], GateContext())
            seconds.append(time.perf_counter() - start)
            predicted.append(result.outcome == FLAG)
            if predicted[-1] != (name in sample.labels):
                misses.append({"sample": sample.name, "labels": sorted(sample.labels), "predicted": predicted[-1],
                               "reason": result.reason[:160]})
        expected = [name in s.labels for s in samples]
        results[name] = {"gate_version": gate.version, "positives": sum(expected), "negatives": len(expected) - sum(expected),
                         **precision_recall(predicted, expected), "mean_seconds_per_image": round(sum(seconds) / len(seconds), 4),
                         "errors": misses[:20]}
        print(f"{name:6s} precision {results[name]['precision']:.3f} recall {results[name]['recall']:.3f} "
              f"({results[name]['tp']} tp, {results[name]['fp']} fp, {results[name]['fn']} fn; "
              f"{results[name]['mean_seconds_per_image'] * 1000:.0f} ms/image)")
    report = {
        "benchmark": "governance_gates", "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "opencv": cv2.__version__},
        "set": {"source": "shared/data/photos/sceaux-castle, 640x480 crops at half resolution", "samples": len(samples),
                "crops_per_photo": args.crops, "per_background": args.per_background, "seed": args.seed,
                "overlays": "printed sign text (DejaVu Sans Bold, 28-48 px), synthetic brand mark 110-170 px rotated "
                            "±20°, drawn face 110-170 px; one clean sample per crop"},
        "gates": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
