"""Train, evaluate and register the occupancy denoiser (`python -m reconstruction.engine.generative`; the
`dataset` subcommand is in __main__.py).

    train    --data DIR --steps N --batch B --seed S --out PATH
    evaluate --checkpoint PATH --data TEST_DIR [--limit N] --out metrics.json
    register --checkpoint PATH --metrics metrics.json --data TRAIN_DIR --version X.Y.Z --generation-command "…"
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconstruction.engine.errors import EngineError

MODEL_NAME = "occupancy-diffusion"
DESCRIPTION = (
    "Image-conditioned occupancy diffusion over a view-aligned frustum grid (2D U-Net, depth bins as channels; "
    "DDPM cosine schedule, x0-logit prediction, DDIM sampling with classifier-free guidance)."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reconstruction.engine.generative", description=__doc__.splitlines()[0])
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except EngineError as exc:
        print(f"error ({exc.code}): {exc.message}", file=sys.stderr)
        return 2 if exc.code in ("invalid_input", "checkpoint_rejected", "unknown_model") else 1


def add_parsers(commands: Any) -> None:
    """Adds train, evaluate and register to the `python -m reconstruction.engine.generative` subcommands."""
    train = commands.add_parser("train", help="train the occupancy denoiser on a generated data set")
    train.add_argument("--data", required=True, type=Path)
    train.add_argument("--steps", required=True, type=int)
    train.add_argument("--batch", type=int, default=16)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True, type=Path, help="checkpoint file to write")
    train.add_argument("--resolution", type=int, default=32, help="in-plane columns of the network's grid")
    train.add_argument("--depth-bins", type=int, default=32)
    train.add_argument("--base-channels", type=int, default=32)
    train.add_argument("--learning-rate", type=float, default=5e-4)
    train.add_argument("--threads", type=int, default=1)
    train.set_defaults(run=_train)

    evaluate = commands.add_parser("evaluate", help="score a checkpoint and the extrusion baseline on a held-out set")
    evaluate.add_argument("--checkpoint", required=True, type=Path)
    evaluate.add_argument("--data", required=True, type=Path)
    evaluate.add_argument("--limit", type=int)
    evaluate.add_argument("--samples", type=int, default=4)
    evaluate.add_argument("--steps", type=int, default=24)
    evaluate.add_argument("--guidance", type=float, default=2.0)
    evaluate.add_argument("--out", required=True, type=Path)
    evaluate.set_defaults(run=_evaluate)

    register = commands.add_parser("register", help="register a checkpoint with its card in the model registry")
    register.add_argument("--checkpoint", required=True, type=Path)
    register.add_argument("--metrics", required=True, type=Path, help="JSON written by `evaluate`")
    register.add_argument("--data", required=True, type=Path, help="the training data set folder")
    register.add_argument("--version", required=True)
    register.add_argument("--generation-command", required=True, help="the exact command that made --data")
    register.set_defaults(run=_register)


def _dataset_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "dataset.json"
    if not path.is_file():
        raise EngineError(f"{folder} is not a complete data set (no dataset.json).", code="invalid_input")
    return dict(json.loads(path.read_text()))


def _frame_options(manifest: dict[str, Any]) -> dict[str, Any]:
    """margin and depth_ratio the data set's frames were built with, so inference builds the same frames."""
    found = {}
    for key in ("margin", "depth_ratio"):
        for source in (manifest, manifest.get("frame", {}), manifest.get("frame_options", {}), manifest.get("config", {})):
            if isinstance(source, dict) and key in source:
                found[key] = float(source[key])
                break
    return found


def _train(args: argparse.Namespace) -> int:
    from reconstruction.engine.generative.training import TrainingConfig, arrays_from_dataset, train

    manifest = _dataset_manifest(args.data)
    config = TrainingConfig(
        steps=args.steps,
        batch=args.batch,
        seed=args.seed,
        learning_rate=args.learning_rate,
        resolution=args.resolution,
        depth_bins=args.depth_bins,
        base_channels=args.base_channels,
        threads=args.threads,
    )
    data = arrays_from_dataset(args.data, config.resolution, config.depth_bins)
    summary = train(
        data,
        config,
        args.out,
        log=lambda line: print(line, flush=True),
        extra={"data": str(args.data), "dataset_digest": manifest["digest"]},
        model_options=_frame_options(manifest),
    )
    print(f"wrote {args.out} ({summary['wall_s']:.0f} s, {summary['steps_per_s']:.2f} steps/s)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import torch

    from reconstruction.engine.generative.evaluation import evaluate_on_dataset
    from reconstruction.engine.generative.model import model_from_checkpoint

    torch.set_num_threads(1)
    model = model_from_checkpoint(torch.load(args.checkpoint, map_location="cpu", weights_only=True))
    report = evaluate_on_dataset(
        model,
        args.data,
        limit=args.limit,
        samples=args.samples,
        steps=args.steps,
        guidance=args.guidance,
        log=lambda line: print(line, flush=True),
    )
    report["sampler"] = {"samples": args.samples, "steps": args.steps, "guidance": args.guidance}
    report["test_data"] = {"folder": str(args.data), "digest": _dataset_manifest(args.data).get("digest")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps({"ours": report["ours"], "baseline": report["baseline"]}, indent=2))
    return 0


def _register(args: argparse.Namespace) -> int:
    import torch

    from reconstruction.engine.model_registry import register_checkpoint

    manifest = _dataset_manifest(args.data)
    report = json.loads(args.metrics.read_text())
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    training = checkpoint.get("training", {})
    curve = training.get("loss_curve", [])
    card = register_checkpoint(
        args.checkpoint,
        name=MODEL_NAME,
        version=args.version,
        architecture=str(checkpoint["config"].get("architecture", "frustum-unet2d")),
        training_config={
            **training.get("config", {}),
            "model": checkpoint["config"],
            "wall_s": training.get("wall_s"),
            "steps_per_s": training.get("steps_per_s"),
            "loss_first": curve[0][1] if curve else None,
            "loss_last": curve[-1][1] if curve else None,
        },
        training_data={
            "description": (
                f"{manifest.get('count', training.get('items', '?'))} rendered views of {manifest.get('objects', '?')} "
                f"procedural product-like objects (generator {manifest.get('generator_version', '?')}, seed "
                f"{manifest.get('seed', '?')}), each cropped to its view's frustum grid with exact occupancy"
            ),
            "digest": manifest["digest"],
            "generation_command": args.generation_command,
            "folder": str(args.data),
        },
        metrics={
            "test_items": report["items"],
            "test_data_digest": report.get("test_data", {}).get("digest"),
            "sampler": report.get("sampler", {}),
            "ours": report["ours"],
            "silhouette_extrusion_baseline": report["baseline"],
        },
        description=DESCRIPTION,
    )
    print(f"registered {card.reference} sha256 {card.sha256} ({card.size_bytes / 2**20:.1f} MiB)")
    return 0
