"""`python -m reconstruction.engine`: list backends, run one on a folder of images, render captures, evaluate.

Works with no Django and no database. Bad input ends with exit status 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reconstruction.engine.errors import EngineError

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
POSTPROCESS_CLI = "reconstruction.engine.postprocess.cli"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reconstruction.engine", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    backends = sub.add_parser("backends", help="list installed reconstruction backends")
    backends.add_argument("--json", action="store_true", help="print JSON (name, version, capabilities, schema)")
    backends.set_defaults(handler=_backends)

    run = sub.add_parser("run", help="reconstruct a capture folder with one backend")
    run.add_argument("--backend", required=True)
    run.add_argument("--images", required=True, type=Path, help="capture folder (rendered capture or plain photos)")
    run.add_argument("--out", required=True, type=Path, help="output folder (mesh + result.json)")
    run.add_argument("--param", action="append", default=[], metavar="K=V", help="backend parameter (repeatable)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--eval-cameras", type=Path, metavar="FILE",
        help="JSON cameras to render the result at, into OUT/eval/ (in the capture's frame, or for photos without "
        "cameras in the frame of the cameras found, OUT/sparse)",
    )
    run.set_defaults(handler=_run)

    render = sub.add_parser("render", help="render a calibrated capture of a GLB")
    render.add_argument("--mesh", required=True, type=Path)
    render.add_argument("--views", type=int, default=24)
    render.add_argument("--size", type=int, default=512)
    render.add_argument("--out", required=True, type=Path)
    render.add_argument("--single", action="store_true", help="one front-ish view")
    render.add_argument("--depth", action="store_true", help="also write depth/*.npy")
    render.add_argument("--rings", default="-15,15,45", help="ring elevations in degrees, comma-separated")
    render.add_argument("--lighting", choices=["flat", "lit"], default="flat")
    render.add_argument("--transparent", action="store_true", help="transparent background (RGBA PNG)")
    render.add_argument("--seed", type=int, default=0)
    render.add_argument(
        "--cameras", type=Path, metavar="FILE", help="render at exactly these JSON cameras (one PNG each) instead"
    )
    render.set_defaults(handler=_render)

    evaluate = sub.add_parser("evaluate", help="compare a reconstruction with a reference mesh")
    evaluate.add_argument("--mesh", required=True, type=Path)
    evaluate.add_argument("--reference", required=True, type=Path)
    evaluate.add_argument(
        "--cameras", type=Path, help="capture folder whose views to compare images in (PSNR, MS-SSIM)"
    )
    evaluate.add_argument("--align", choices=["none", "icp"], default="none", help="icp when poses are unknown")
    evaluate.add_argument("--samples", type=int, default=100_000)
    evaluate.add_argument("--tau", type=float, help="F-score threshold (default 1%% of the reference diagonal)")
    evaluate.add_argument("--out", type=Path, help="also write the metrics JSON here")
    evaluate.set_defaults(handler=_evaluate)

    models = sub.add_parser("models", help="list the registered model checkpoints (model cards)")
    models.add_argument("--verify", action="store_true", help="check every checkpoint's sha256 against its card")
    models.add_argument("--json", action="store_true", help="print the model cards as JSON")
    models.set_defaults(handler=_models)

    _add_postprocess(sub)
    return parser


def _add_postprocess(sub: Any) -> None:
    """Lets the post-processing package add its own subcommand when it is present."""
    try:
        module = importlib.import_module(POSTPROCESS_CLI)
    except ImportError as exc:
        if exc.name != POSTPROCESS_CLI:  # the module exists but something it needs is broken: show that
            raise
        return
    add_parser = getattr(module, "add_parser", None)
    if callable(add_parser):
        add_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except EngineError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_BAD_INPUT if exc.code in _BAD_INPUT_CODES else EXIT_FAILED
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


_BAD_INPUT_CODES = {"invalid_capture", "invalid_parameters", "unknown_backend", "invalid_input", "render_failed"}


def _backends(args: argparse.Namespace) -> int:
    from reconstruction.engine.registry import available_backends

    found = available_backends()
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": b.name,
                        "version": b.version,
                        "capabilities": b.capabilities.to_dict(),
                        "parameter_schema": dict(b.parameter_schema),
                    }
                    for b in found.values()
                ],
                indent=2,
            )
        )
        return 0
    if not found:
        print("No backends installed (entry-point group assay.backends).")
    for backend in found.values():
        caps = backend.capabilities
        views = f"{caps.min_views}–{caps.max_views}" if caps.max_views else f"≥{caps.min_views}"
        print(
            f"{backend.name} {backend.version}: inputs {', '.join(sorted(caps.inputs))}; views {views}; "
            f"{'GPU' if caps.needs_gpu else 'CPU'}; ~{caps.typical_memory_mb} MB"
            + ("; needs known cameras" if caps.needs_known_cameras else "")
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from reconstruction.engine.capture import Capture, check_capture_fits
    from reconstruction.engine.params import check_parameters, parse_assignments
    from reconstruction.engine.registry import get_backend

    backend = get_backend(args.backend)
    params = check_parameters(backend.parameter_schema, parse_assignments(backend.parameter_schema, args.param))
    capture = Capture.load(args.images)
    check_capture_fits(backend.capabilities, capture, backend.name)
    eval_cameras = None
    if args.eval_cameras is not None:  # read before the run, so a bad file fails in seconds, not after training
        from reconstruction.engine.cameras import read_camera_list

        eval_cameras = read_camera_list(args.eval_cameras)
    args.out.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=100, unit="%", disable=args.quiet, file=sys.stderr, bar_format="{l_bar}{bar}| {n:.0f}% {postfix}")

    def progress(stage: str, fraction: float, message: str) -> None:
        bar.set_description(stage)
        bar.set_postfix_str(message)
        bar.update(max(0.0, fraction * 100 - bar.n))

    # The backend writes into a scratch folder beside --out; only a finished run is moved in, so a failure
    # leaves --out as it was.
    scratch = Path(tempfile.mkdtemp(prefix=".run-", dir=args.out))
    try:
        result = backend.run(capture, scratch, params=params, progress=progress, cancel=lambda: False)
        for item in scratch.iterdir():
            target = args.out / item.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(item), target)
    finally:
        bar.close()
        shutil.rmtree(scratch, ignore_errors=True)
    moved = scratch.resolve()
    result.mesh_path = args.out / Path(result.mesh_path).resolve().relative_to(moved)
    result.texture_paths = [args.out / Path(p).resolve().relative_to(moved) for p in result.texture_paths]
    if result.cameras_path is not None:
        result.cameras_path = args.out / Path(result.cameras_path).resolve().relative_to(moved)
    result.write_report(args.out / "result.json")
    if eval_cameras is not None:
        _render_eval(backend, result, eval_cameras, args.out)
    print(f"{result.mesh_path} ({result.resources.wall_s:.1f} s); report {args.out / 'result.json'}")
    return 0


def _render_eval(backend: Any, result: Any, cameras: list[Any], out: Path) -> list[Path]:
    """Views of a finished run at `cameras` into OUT/eval/: the backend's own renderer when it has one (a
    radiance field), else the mesh rendered as a capture would be."""
    render = getattr(backend, "render_cameras", None)
    if callable(render):
        return list(render(out, cameras, out / "eval"))
    return _render_mesh_at(result.mesh_path, cameras, out / "eval")


def _render_mesh_at(mesh: Path, cameras: list[Any], out: Path) -> list[Path]:
    from PIL import Image

    from reconstruction.engine.render import render_views

    written = []
    for camera in cameras:  # one at a time: the cameras may differ in size
        view = render_views(mesh, [camera])[0]
        path = out / camera.image_name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(view.rgb).save(path)
        written.append(path)
    return written


def _render(args: argparse.Namespace) -> int:
    from reconstruction.engine.render import RenderError, render_capture

    if not args.mesh.is_file():
        raise RenderError(f"{args.mesh} does not exist.")
    if args.cameras is not None:
        from reconstruction.engine.cameras import read_camera_list

        written = _render_mesh_at(args.mesh, read_camera_list(args.cameras), args.out)
        print(f"{len(written)} views written to {args.out}")
        return 0
    try:
        rings = [float(r) for r in args.rings.split(",") if r.strip()]
    except ValueError:
        raise RenderError(f"--rings must be comma-separated degrees, not {args.rings!r}") from None
    out = render_capture(
        args.mesh,
        args.out,
        views=args.views,
        size=args.size,
        single=args.single,
        rings=rings,
        depth=args.depth,
        transparent=args.transparent,
        lighting=args.lighting,
        seed=args.seed,
    )
    print(f"{1 if args.single else args.views} views written to {out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from reconstruction.engine.metrics import MetricError, compare_images, compare_meshes, load_mesh

    for path in (args.mesh, args.reference):
        if not path.is_file():
            raise EngineError(f"{path} does not exist.", code="invalid_input")
    try:
        report: dict[str, Any] = {
            "mesh": str(args.mesh),
            "reference": str(args.reference),
            "geometry": compare_meshes(
                load_mesh(args.mesh),
                load_mesh(args.reference),
                samples=args.samples,
                tau=args.tau,
                alignment=args.align,
            ),
        }
        if args.cameras:
            from reconstruction.engine.capture import Capture
            from reconstruction.engine.render import render_views

            capture = Capture.load(args.cameras)
            if capture.cameras is None:
                raise EngineError(f"{args.cameras} has no cameras (sparse/) to render from.", code="invalid_input")
            rendered = render_views(args.mesh, capture.cameras)
            references = [capture.load_image(i) for i in range(capture.num_views)]
            report["images"] = compare_images([v.rgb for v in rendered], references)
    except MetricError as exc:
        raise EngineError(str(exc), code="invalid_input") from None
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


def _models(args: argparse.Namespace) -> int:
    from reconstruction.engine.model_registry import list_models, model_dir, verify

    cards = list_models()
    if args.json:
        print(json.dumps([c.to_dict() for c in cards], indent=2))
    elif not cards:
        print(f"No model checkpoints registered in {model_dir()}.")
    for card in [] if args.json else cards:
        metrics = ", ".join(f"{k}={v}" for k, v in sorted(card.metrics.items()))
        print(
            f"{card.name} {card.version}: {card.architecture}; sha256 {card.sha256[:12]}; "
            f"{card.size_bytes / 1e6:.1f} MB" + (f"; {metrics}" if metrics else "")
        )
    if args.verify:
        failures = 0
        for card in cards:
            try:
                verify(card)
            except EngineError as exc:
                failures += 1
                print(f"error: {exc.message}", file=sys.stderr)
        if failures:
            return EXIT_FAILED
        print(f"{len(cards)} checkpoint(s) verified.", file=sys.stderr if args.json else sys.stdout)
    return 0
