"""The `hybrid` backend: few calibrated views → measured surface where the cameras saw it, the diffusion model's
completion where none did, and a record of which is which."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reconstruction.engine.cameras import write_colmap_text
from reconstruction.engine.capture import Capture, check_capture_fits
from reconstruction.engine.devices import resolve_device
from reconstruction.engine.errors import Cancelled, InvalidCapture
from reconstruction.engine.params import json_schema, validate
from reconstruction.engine.protocol import MULTI_VIEW, CancelFn, Capabilities, ProgressFn, ReconstructionResult
from reconstruction.engine.resources import measure

if TYPE_CHECKING:
    from reconstruction.engine.generative.model import DiffusionModel

# torch, the stereo and the model are imported inside run(), so listing backends (the web process does) stays light.

DEFAULT_MODEL = "occupancy-diffusion"
PROVENANCE_FILE = "provenance.json"
GENERATED_ATTRIBUTE = "_GENERATED"  # per-vertex 0/1 attribute in mesh.glb: 1 where the surface was generated

# Shares of the whole run given to each stage, for progress reports.
_STAGES = {
    "fit": (0.0, 0.5),
    "observe": (0.5, 0.6),
    "complete": (0.6, 0.85),
    "surface": (0.85, 0.88),
    "texture": (0.88, 0.97),
}


@dataclass
class HybridParams:
    model: str = field(
        default=DEFAULT_MODEL, metadata={"description": "Registered diffusion model that completes the unseen parts."}
    )
    model_version: str = field(default="", metadata={"description": "Its version; empty takes the newest registered."})
    output_resolution: int = field(
        default=128,
        metadata={
            "description": "Voxel columns across the reference view's crop of the completed volume.",
            "minimum": 16,
            "maximum": 256,
        },
    )
    samples: int = field(
        default=2,
        metadata={
            "description": "Completions drawn; the one that fits the silhouette best is kept.",
            "minimum": 1,
            "maximum": 16,
        },
    )
    steps: int = field(default=24, metadata={"description": "DDIM sampling steps.", "minimum": 2, "maximum": 250})
    guidance: float = field(
        default=2.0, metadata={"description": "Classifier-free guidance scale.", "minimum": 1.0, "maximum": 10.0}
    )
    repaint_resamples: int = field(
        default=2,
        metadata={
            "description": "Times each step is redone so the completion agrees with the known voxels.",
            "minimum": 1,
            "maximum": 10,
        },
    )
    seed: int = field(default=0, metadata={"description": "Seed of the sampler.", "minimum": 0, "maximum": 2**31 - 1})
    measurement: str = field(
        default="field",
        metadata={
            "description": "How the views measure the surface: plane-sweep stereo between neighbours within 75°, "
            "and where it measured nothing a signed-distance field fitted to all the views (needs 4; fewer fall "
            "back to stereo alone); or stereo alone.",
            "enum": ["field", "stereo"],
        },
    )
    # A fixed iteration count fits the same field on every run, whatever the load: with a time budget alone
    # Avocado's field got 1,072 iterations in 51 s idle and 767 beside a second job, and bench runs of one scan
    # varied by up to 0.066 F@1%; now two runs differ by 0.001 (SheenChair, 4 views: 0.5303 and 0.5309).
    # 1,000 iterations take 48–60 s on 2 CPU cores.
    field_iterations: int = field(
        default=1000,
        metadata={"description": "Training iterations of the fitted field.", "minimum": 50, "maximum": 100000},
    )
    field_seconds: float = field(
        default=120.0,
        metadata={
            "description": "Most training time of the fitted field, seconds; a slower machine stops there, with "
            "fewer iterations (the log says so).",
            "minimum": 5.0,
            "maximum": 3600.0,
        },
    )
    # A coarser field generalises better from few views: at 64 rather than 128, F@1% on the hybrid bench rose at
    # 4 and 6 views on all three scans (means 0.523 → 0.538 and 0.691 → 0.708), and iterations come cheaper.
    field_resolution: int = field(
        default=64,
        metadata={"description": "Grid points along the fitted field's longest side.", "minimum": 16, "maximum": 512},
    )
    mvs_max_image_size: int = field(
        default=512, metadata={"description": "Longer image side for stereo.", "minimum": 64, "maximum": 4096}
    )
    neighbours: int = field(
        default=4, metadata={"description": "Stereo neighbours per view.", "minimum": 1, "maximum": 12}
    )
    depth_hypotheses: int = field(
        default=96, metadata={"description": "Depth planes of the coarse sweep.", "minimum": 16, "maximum": 512}
    )
    patch_size: int = field(
        default=7, metadata={"description": "NCC patch side in pixels.", "minimum": 3, "maximum": 15}
    )
    min_ncc: float = field(
        default=0.3, metadata={"description": "Lowest NCC a depth is kept at.", "minimum": -1.0, "maximum": 1.0}
    )
    # Views 80° apart match only through slanted planes: on Avocado's 4-view pair, 28% of the fronto-parallel
    # sweep's points lay within 1% of the scan's diagonal, 67–74% after 6 iterations.
    plane_iterations: int = field(
        default=6,
        metadata={
            "description": "Iterations of slanted-plane refinement of each depth map (photogrammetry's planes.py).",
            "minimum": 0,
            "maximum": 20,
        },
    )
    min_consistent_views: int = field(
        default=1,
        metadata={
            "description": "Neighbours that must confirm a depth (a surface point is seen by this + 1 views); 0 takes "
            "every point a view sees.",
            "minimum": 0,
            "maximum": 11,
        },
    )
    consistency_pixels: float = field(
        default=1.0,
        metadata={"description": "Reprojection tolerance of the confirmation.", "minimum": 0.1, "maximum": 10.0},
    )
    consistency_depth: float = field(
        default=0.01,
        metadata={"description": "Relative depth tolerance of the confirmation.", "minimum": 0.0001, "maximum": 0.2},
    )
    free_space_tolerance: float = field(
        default=1.5,
        metadata={
            "description": "Voxels in front of a measured surface that are not carved.",
            "minimum": 0.5,
            "maximum": 10.0,
        },
    )
    surface_band: float = field(
        default=2.0,
        metadata={
            "description": "Thickness in voxels of the known-occupied band behind measured surface.",
            "minimum": 0.5,
            "maximum": 10.0,
        },
    )
    snap_radius: float = field(
        default=2.0,
        metadata={
            "description": "Vertices within this many voxels of fused points move onto their surface (0: none).",
            "minimum": 0.0,
            "maximum": 10.0,
        },
    )
    observed_radius: float = field(
        default=1.0,
        metadata={
            "description": "A vertex this many voxels from a fused point counts as observed.",
            "minimum": 0.25,
            "maximum": 10.0,
        },
    )
    min_component_share: float = field(
        default=0.02,
        metadata={
            "description": "Pieces smaller than this share of the largest are dropped.",
            "minimum": 0.0,
            "maximum": 1.0,
        },
    )
    silhouette_repair: bool = field(
        default=True,
        metadata={
            "description": "Give back generated hull voxels on the rays of mask pixels the completion left empty."
        },
    )
    color: bool = field(default=True, metadata={"description": "Colour vertices from the views; fill the unseen ones."})
    device: str = field(
        default="auto",
        metadata={"description": "Torch device for stereo and sampling.", "enum": ["auto", "cpu", "cuda"]},
    )


class HybridBackend:
    """Coarse photogrammetry from few views, completed by the registered diffusion model where no camera saw."""

    name = "hybrid"
    version = "1.4.0"
    capabilities = Capabilities(
        inputs=frozenset({MULTI_VIEW}),
        min_views=2,
        max_views=12,
        needs_gpu=False,
        typical_memory_mb=3072,
        needs_known_cameras=True,
        produces_texture=True,
    )
    parameter_schema: Mapping[str, Any] = json_schema(HybridParams)

    def __init__(self, model: DiffusionModel | None = None) -> None:
        # A model passed in (tests) is used as is and named nowhere; jobs load the registered one by name.
        self._model = model

    def run(
        self,
        capture: Capture,
        workdir: Path,
        *,
        params: Mapping[str, Any],
        progress: ProgressFn,
        cancel: CancelFn,
    ) -> ReconstructionResult:
        """Reconstructs `capture` into workdir: mesh.glb (vertex colours, _GENERATED attribute), provenance.json."""
        import torch

        config = validate(HybridParams, params)
        check_capture_fits(self.capabilities, capture, self.name)
        if capture.masks is None:
            raise InvalidCapture("hybrid needs a foreground mask per image (masks/) and the capture has none.")
        device = torch.device(resolve_device(config.device))
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        log: list[str] = []
        timings: dict[str, float] = {}
        with measure(str(device)) as usage:
            result = self._run(capture, workdir, config, device, progress, cancel, log, timings)
        result.resources = usage
        result.metrics["stage_seconds"] = {k: round(v, 3) for k, v in timings.items()}
        return result

    def _run(
        self,
        capture: Capture,
        workdir: Path,
        config: HybridParams,
        device: Any,
        progress: ProgressFn,
        cancel: CancelFn,
        log: list[str],
        timings: dict[str, float],
    ) -> ReconstructionResult:
        from .completion import SamplerSettings, complete, output_frame
        from .field import can_fit, fitted_surface
        from .observe import StereoSettings, observe
        from .surface import extract_surface, provenance, snap_to_points
        from .texture import colour_mesh

        def check() -> None:
            if cancel():
                raise Cancelled("Cancelled by request.")

        def stage(name: str) -> Any:
            start, end = _STAGES[name]
            return lambda fraction, message="": progress(name, start + (end - start) * fraction, message)

        progress("fit", 0.0, f"{capture.num_views} views")
        started = time.perf_counter()
        model, references = self._load_model(config, log)
        check()
        surface, field_metrics = None, None
        if config.measurement == "field" and can_fit(capture):
            fitting = stage("fit")
            surface, field_metrics = fitted_surface(
                capture,
                workdir / "field",
                seconds=config.field_seconds,
                iterations=config.field_iterations,
                resolution=config.field_resolution,
                device=str(device),
                progress=fitting,
                cancel=cancel,
            )
            timings["fit"] = time.perf_counter() - started
            done = int(field_metrics.get("iterations", config.field_iterations))
            log.append(
                f"surface fitted by a signed-distance field in {timings['fit']:.0f} s, {done} iterations"
                + (f" of {config.field_iterations}: stopped by field_seconds" if done < config.field_iterations else "")
            )
            started = time.perf_counter()
        elif config.measurement == "field":
            log.append(f"{capture.num_views} views are too few to fit a field: measured by stereo")
        check()
        settings = StereoSettings(
            max_image_size=config.mvs_max_image_size,
            neighbours=config.neighbours,
            hypotheses=config.depth_hypotheses,
            patch=config.patch_size,
            min_ncc=config.min_ncc,
            plane_iterations=config.plane_iterations,
            min_consistent_views=config.min_consistent_views,
            consistency_pixels=config.consistency_pixels,
            consistency_depth=config.consistency_depth,
        )
        observation = observe(capture, settings, device, check, stage("observe"), surface)
        timings["observe"] = time.perf_counter() - started
        log.append(
            f"{len(observation.points)} measured surface points; {observation.stereo_pairs} of "
            f"{len(observation.cameras)} views had a neighbour to confirm theirs"
        )
        check()

        started = time.perf_counter()
        reference = observation.reference_view()
        frame = output_frame(model, observation, reference, config.output_resolution)
        sampler = SamplerSettings(
            samples=config.samples,
            steps=config.steps,
            guidance=config.guidance,
            repaint_resamples=config.repaint_resamples,
            seed=config.seed,
        )
        completing = stage("complete")
        completion = complete(
            model,
            observation,
            frame,
            reference,
            sampler,
            tolerance_voxels=config.free_space_tolerance,
            band_voxels=config.surface_band,
            repair_silhouettes=config.silhouette_repair,
            progress=lambda fraction: completing(fraction, "sampling"),
            cancel=cancel,
        )
        sample, volume, counts = completion.sample, completion.volume, completion.label_counts()
        log.append(f"known voxels of the {frame.shape} grid: {counts}; {completion.filled_voxels} sealed voids filled")
        timings["complete"] = time.perf_counter() - started
        check()

        started = time.perf_counter()
        mesh, dropped = extract_surface(frame, volume, config.min_component_share)
        lateral, depth = frame.voxel_size()
        voxel = max(lateral, depth)
        radius = config.observed_radius * voxel
        snapped = snap_to_points(mesh, observation.points, config.snap_radius * voxel) if config.snap_radius > 0 else 0
        origin = provenance(mesh, observation.points, radius)
        timings["surface"] = time.perf_counter() - started
        stage("surface")(1.0, f"{len(mesh.faces)} faces, {origin.generated_fraction:.0%} of the area generated")
        check()

        started = time.perf_counter()
        texture_measured = 0.0
        if config.color:
            assert capture.cameras is not None  # check_capture_fits made sure
            seen = colour_mesh(mesh, capture, capture.cameras, voxel, check)
            face_seen = seen[mesh.faces].sum(axis=1) >= 2
            texture_measured = float(mesh.area_faces[face_seen].sum() / max(mesh.area, 1e-30))
        mesh.vertex_attributes[GENERATED_ATTRIBUTE] = origin.vertex_generated.astype(np.float32)
        timings["texture"] = time.perf_counter() - started
        stage("texture")(1.0, "vertex colours")

        mesh_path = _write_atomic(workdir / "mesh.glb", lambda path: mesh.export(path, file_type="glb"))
        provenance_record = {
            "vertex_attribute": GENERATED_ATTRIBUTE,
            "generated_faces": np.flatnonzero(origin.face_generated).tolist(),
            "observed_radius": radius,
            "reference_view": observation.cameras[reference].image_name,
            "frame": frame.to_dict(),
        }
        _write_atomic(workdir / PROVENANCE_FILE, lambda path: Path(path).write_text(json.dumps(provenance_record)))
        cameras_path = write_colmap_text(workdir / "sparse", observation.cameras)
        generated = origin.generated_fraction
        confidence = (1.0 - generated) + generated * sample.confidence
        metrics: dict[str, Any] = {
            "model_checkpoints": references,
            "generated_fraction": round(generated, 4),
            "confidence": round(float(confidence), 4),
            "sample_confidence": round(float(sample.confidence), 4),
            "sample_scores": [round(float(s), 4) for s in sample.scores],
            "provenance": {**origin.summary(mesh), "file": PROVENANCE_FILE, "vertex_attribute": GENERATED_ATTRIBUTE},
            "texture_measured_fraction": round(texture_measured, 4),
            "fused_points": len(observation.points),
            "measurement": "field" if surface is not None else "stereo",
            "field": _field_summary(field_metrics),
            "stereo_views": observation.stereo_pairs,
            "known_voxels": counts,
            "silhouette_repair": completion.repair.to_dict() if completion.repair else None,
            "grid": list(frame.shape),
            "voxel_size": voxel,
            "snapped_vertices": snapped,
            "dropped_component_faces": dropped,
            "vertices": len(mesh.vertices),
            "faces": len(mesh.faces),
            "watertight": bool(mesh.is_watertight),
            "views": capture.num_views,
        }
        progress("done", 1.0, f"{len(mesh.faces)} faces, {generated:.0%} generated")
        return ReconstructionResult(
            mesh_path=mesh_path,
            cameras_path=cameras_path,
            metrics=metrics,
            backend=self.name,
            backend_version=self.version,
            parameters=asdict(config),
            log=log,
        )

    def _load_model(self, config: HybridParams, log: list[str]) -> tuple[DiffusionModel, list[dict[str, str]]]:
        """The model to complete with and the checkpoint references that name it in the result."""
        from reconstruction.engine.generative.model import load_model
        from reconstruction.engine.model_registry import checkpoint_reference, find_model

        if self._model is not None:
            log.append("completion model supplied by the caller, not loaded from the registry")
            return self._model, []
        card = find_model(config.model, config.model_version or None)
        log.append(f"completion model {card.reference} (sha256 {card.sha256[:12]}…)")
        return load_model(card), [checkpoint_reference(card)]


def _field_summary(metrics: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the fitted field's run reports that bears on the measurement."""
    if metrics is None:
        return None
    keys = ("iterations", "train_s", "train_psnr", "grid", "voxel_size", "faces")
    return {key: metrics[key] for key in keys if key in metrics}


def _write_atomic(path: Path, write: Any) -> Path:
    """Writes through a temporary file in the same folder and renames it into place."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=path.suffix)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
