"""`python -m reconstruction.engine.generative …`: `dataset` (procedural training data) is handled here, the
model's commands (`train`, `evaluate`, `register`) by cli.py.

    dataset --count N --seed S --out DIR [--resolution 64 --depth-bins 64 --shard-size 250 --workers 2]
"""

from __future__ import annotations

import argparse
import sys
import time

from reconstruction.engine.errors import EngineError


def _dataset(args: argparse.Namespace) -> int:
    from reconstruction.engine.generative.dataset import build_dataset

    def progress(line: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)

    manifest = build_dataset(
        args.out,
        count=args.count,
        seed=args.seed,
        resolution=args.resolution,
        depth_bins=args.depth_bins,
        shard_size=args.shard_size,
        workers=args.workers,
        progress=progress,
    )
    timing = manifest["timing"]
    print(
        f"{manifest['count']} samples of {manifest['objects']} objects in {len(manifest['shards'])} shards → "
        f"{args.out} ({timing['seconds_per_sample_wall']} s/sample wall, digest {manifest['digest'][:16]})"
    )
    return 0


def dataset_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reconstruction.engine.generative dataset",
        description="Render procedural objects into occupancy training shards (dataset.json is written last).",
    )
    parser.add_argument("--count", type=int, required=True, help="number of samples (views)")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--resolution", type=int, default=64, help="crop and voxel columns R (multiple of 8)")
    parser.add_argument("--depth-bins", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--workers", type=int, default=2, help="render processes (at most 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] != ["dataset"]:
        from reconstruction.engine.generative.cli import main as model_main

        return model_main(argv)
    args = dataset_parser().parse_args(argv[1:])
    try:
        return _dataset(args)
    except EngineError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
