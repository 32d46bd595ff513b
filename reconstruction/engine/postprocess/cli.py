"""`python -m reconstruction.engine postprocess --preset NAME --mesh FILE --out DIR`: every LOD in GLB, USDZ
and FBX (plus the preset's other formats) and report.json, without Django.

`add_parser(subparsers)` plugs the subcommand into the engine's CLI; `main(argv)` runs it on its own.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from ..errors import EngineError
from .errors import PostprocessError
from .load import DEFAULT_MAX_TRIANGLES
from .presets import PRESETS


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `postprocess` subcommand (its handler is the `handler` and `func` default)."""
    parser = subparsers.add_parser(
        "postprocess",
        help="clean, decimate, unwrap, bake and export a mesh as LODs in GLB, USDZ and FBX",
        description="; ".join(f"{p.name}: {p.description}" for p in PRESETS.values()),
    )
    parser.add_argument("--preset", required=True, choices=sorted(PRESETS), help="target preset")
    parser.add_argument("--mesh", required=True, help="source mesh (.glb, .gltf, .obj, .ply, .stl)")
    parser.add_argument("--out", required=True, help="output folder (created if missing)")
    parser.add_argument("--unit", default="m", help="source unit: m, cm, mm, in, ft, or metres per unit (default m)")
    parser.add_argument("--up-axis", default="Y", choices=["X", "Y", "Z"], help="source up axis (default Y)")
    parser.add_argument("--max-triangles", type=int, default=DEFAULT_MAX_TRIANGLES, help="refuse larger inputs")
    parser.add_argument("--set", action="append", default=[], metavar="STEP.PARAM=JSON",
                        help="override a preset parameter, e.g. --set bake.size=1024 (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    # The engine CLI dispatches on `handler`; `func` is argparse's usual name, kept for standalone use.
    parser.set_defaults(func=run_command, handler=run_command)
    return parser


def _overrides(pairs: Sequence[str]) -> dict[str, dict[str, object]]:
    result: dict[str, dict[str, object]] = {}
    for pair in pairs:
        key, separator, raw = pair.partition("=")
        step, dot, param = key.partition(".")
        if not separator or not dot or not step or not param:
            raise PostprocessError(f"--set expects STEP.PARAM=VALUE, got '{pair}'")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        result.setdefault(step, {})[param] = value
    return result


def run_command(args: argparse.Namespace) -> int:
    from .pipeline import run_pipeline  # heavy imports (usd, embree, meshlab) only when the command runs

    def progress(stage: str, fraction: float, message: str) -> None:
        if not args.quiet:
            print(f"[{fraction:4.0%}] {stage}: {message}", file=sys.stderr, flush=True)

    try:
        report = run_pipeline(
            args.mesh, args.out, args.preset, overrides=_overrides(args.set), unit=args.unit, up_axis=args.up_axis,
            max_triangles=args.max_triangles, progress=progress,
        )
    except (PostprocessError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = {
        "report": f"{args.out}/report.json",
        "validation_passed": report["validation_passed"],
        "lods": [{"level": row["level"], "triangles": row["triangles"], "files": {k: v["path"] for k, v in row["files"].items()}}
                 for row in report["lods"]],
    }
    if "lod_chain" in report:
        summary["lod_chain"] = report["lod_chain"]["path"]
    print(json.dumps(summary, indent=2))
    return 0 if report["validation_passed"] else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reconstruction.engine.postprocess")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
