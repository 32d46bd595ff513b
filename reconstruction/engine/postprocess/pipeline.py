"""The post-processing pipeline: a preset's steps from a source mesh file to validated LOD files and a report.

load → units → cleanup → decimate or retopology (LOD0) → unwrap + bake (when the LOD0 cannot reuse the
source's textures) → texture budget → LOD chain → export every LOD in the preset's formats, each checked by
its validator (optionally also meshopt-compressed GLB copies, and the whole chain as one MSFT_lod GLB).
Progress and cancellation follow the engine protocol (`ProgressFn`, `CancelFn`).
"""
from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled
from ..protocol import CancelFn, ProgressFn
from . import bake, cleanup, decimate, export, retopology, textures, units, uv
from .asset import Asset
from .errors import BadInput
from .load import DEFAULT_MAX_TRIANGLES, load_asset
from .presets import Preset, get_preset

FIELD_OF_VIEW_DEG = 60.0
REPORT_NAME = "report.json"


def switch_distance(radius_m: float, screen_size: float, fov_deg: float = FIELD_OF_VIEW_DEG) -> float | None:
    """Camera distance (m) at which a bounding sphere of `radius_m` fills `screen_size` of the view height."""
    if screen_size <= 0:
        return None
    return radius_m / (screen_size * math.tan(math.radians(fov_deg) / 2))


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB: Linux's VmHWM, which (unlike ru_maxrss) does not include
    the peak of a parent that forked and exec'd it; ru_maxrss elsewhere."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _Steps:
    """Times each step, records peak memory, reports progress and honours cancellation between steps."""

    def __init__(self, names: list[str], progress: ProgressFn | None, cancel: CancelFn | None) -> None:
        self.names, self.progress, self.cancel = names, progress, cancel
        self.done = 0
        self.timings: list[dict[str, Any]] = []

    def run(self, name: str, work: Callable[[], Any], message: str = "") -> Any:
        if self.cancel is not None and self.cancel():
            raise Cancelled(f"post-processing cancelled before step '{name}'")
        if self.progress is not None:
            self.progress(name, self.done / max(len(self.names), 1), message or name)
        started = time.perf_counter()
        result = work()
        self.timings.append({
            "step": name,
            "seconds": round(time.perf_counter() - started, 4),
            # The process's peak so far: a step's own peak when it sets a new one.
            "peak_rss_mb": peak_rss_mb(),
        })
        if name in self.names:
            self.done += 1
        return result


def _needs_bake(source: Asset, lod0: Asset, params: dict[str, Any]) -> str | None:
    """Why LOD0 needs new UVs and baked maps, or None when it can keep the source's textures as they are."""
    if params.get("force"):
        return "the preset always bakes"
    has_textures = any(m.textures for m in source.materials)
    if uv.uv_problems(lod0) and has_textures:
        return "; ".join(uv.uv_problems(lod0))
    if source.colors is not None and params.get("from_vertex_colors", True):
        return "vertex colours are baked into a texture"
    textured = [m for m in source.materials if m.textures]
    if params.get("atlas") and len(source.materials) > 1 and textured:
        return f"{len(source.materials)} materials are atlased into one"
    return None


def run_pipeline(
    mesh: Path | str,
    out_dir: Path | str,
    preset: str | Preset,
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
    unit: str | float = "m",
    up_axis: str = "Y",
    max_triangles: int = DEFAULT_MAX_TRIANGLES,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> dict[str, Any]:
    """Run a preset on a mesh file; writes every LOD in each format and `report.json` into `out_dir`."""
    try:
        return _run(mesh, out_dir, preset, overrides=overrides, unit=unit, up_axis=up_axis, max_triangles=max_triangles,
                    progress=progress, cancel=cancel)
    finally:
        export.gltf.forget_encoded_images()


def _run(
    mesh: Path | str,
    out_dir: Path | str,
    preset: str | Preset,
    *,
    overrides: dict[str, dict[str, Any]] | None,
    unit: str | float,
    up_axis: str,
    max_triangles: int,
    progress: ProgressFn | None,
    cancel: CancelFn | None,
) -> dict[str, Any]:
    chosen = (get_preset(preset) if isinstance(preset, str) else preset).with_overrides(overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step_names = ["load"] + [name for name, _ in chosen.steps]
    steps = _Steps(step_names, progress, cancel)
    report: dict[str, Any] = {"preset": chosen.to_dict(), "input": str(mesh)}

    source, report["load"] = steps.run("load", lambda: load_asset(mesh, max_triangles=max_triangles))
    name = source.name
    if (params := chosen.params("units")) is not None:
        source, report["units"] = steps.run("units", lambda: units.apply_units(source, unit, up_axis))
    if (params := chosen.params("cleanup")) is not None:
        cleanup_options = cleanup.CleanupOptions(**params)
        source, report["cleanup"] = steps.run("cleanup", lambda: cleanup.cleanup(source, cleanup_options))

    lod0 = source
    if (params := chosen.params("decimate")) is not None:
        budget = int(params["max_triangles"])
        decimate_options = decimate.DecimateOptions(**{k: v for k, v in params.items() if k != "max_triangles"})
        lod0, report["decimate"] = steps.run("decimate", lambda: decimate.decimate(source, budget, decimate_options))
    if (params := chosen.params("retopology")) is not None:
        budget = int(params["max_triangles"])
        if source.triangle_count > budget:
            lod0, report["retopology"] = steps.run("retopology", lambda: retopology.remesh(source, budget))
            if lod0.triangle_count > budget:  # the remesher works by edge length; trim to the budget exactly
                lod0, report["retopology"]["trimmed"] = decimate.decimate(lod0, budget)
        else:
            report["retopology"] = {"skipped": True, "reason": f"{source.triangle_count} triangles already within {budget}"}

    if (params := chosen.params("unwrap_and_bake")) is not None:
        reason = _needs_bake(source, lod0, params)
        if reason is None:
            report["unwrap_and_bake"] = {"skipped": True, "reason": "LOD0 keeps the source's UVs and textures"}
        else:
            size = int(params["size"])
            cap = int(params.get("max_triangles", 0))
            capped = None
            if cap and lod0.triangle_count > cap:
                # xatlas's chart packing grows faster than linearly (≈35 s for 30k scan triangles on 2 cores),
                # so a mesh that must be unwrapped is first brought to this budget; detail moves into the maps.
                lod0, capped = steps.run("decimate_for_unwrap", lambda: decimate.decimate(lod0, cap))
            target = lod0.replace(uvs=None, colors=None)
            unwrapped, unwrap_report = steps.run("unwrap", lambda: uv.unwrap(target, uv.UnwrapOptions(texture_size=size)))
            bake_options = bake.BakeOptions(size=size, ao_rays=int(params.get("ao_rays", 16)))
            lod0, bake_report = steps.run("bake", lambda: bake.bake(source, unwrapped, bake_options))
            report["unwrap_and_bake"] = {"reason": reason, "decimated_for_unwrap": capped, "unwrap": unwrap_report, "bake": bake_report}
    if (params := chosen.params("textures")) is not None:
        texture_budget = int(params["max_size"])
        lod0, report["textures"] = steps.run("textures", lambda: textures.fit_textures(lod0, texture_budget))
    if lod0.uvs is not None:
        largest = max((max(t.size) for m in lod0.materials for t in m.textures.values()), default=0)
        if largest:
            report["texel_density"] = uv.texel_density(lod0, largest)

    lod_params = chosen.params("lods") or {"ratios": [1.0], "screen_sizes": [0.0]}
    ratios, screens = lod_params["ratios"], lod_params["screen_sizes"]
    if len(ratios) != len(screens):
        raise BadInput(f"preset '{chosen.name}': {len(ratios)} LOD ratios but {len(screens)} screen sizes")
    radius = lod0.diagonal / 2

    def make_lods() -> list[tuple[Asset, dict[str, Any]]]:
        levels: list[tuple[Asset, dict[str, Any]]] = []
        for level, ratio in enumerate(ratios):
            if level == 0:
                levels.append((lod0, {"error_m": 0.0}))
                continue
            target = max(int(round(lod0.triangle_count * float(ratio))), 4)
            levels.append(decimate.decimate(lod0, target))
        return levels

    levels = steps.run("lods", make_lods)
    export_params = chosen.params("export") or {"formats": ["glb"], "image_format": "png"}
    normal_format = "png"
    if "max_glb_bytes" in export_params and "glb" in export_params["formats"]:
        levels, normal_format, report["glb_budget"] = steps.run(
            "fit_glb_budget", lambda: _fit_glb_budget(levels, int(export_params["max_glb_bytes"]),
                                                      export_params.get("image_format", "png"), out / ".budget.glb"))
    exporters = {
        "glb": lambda a, p: export.export_glb(a, p, export_params.get("image_format", "png"), normal_format),
        "usdz": lambda a, p: export.export_usdz(a, p, export_params.get("image_format", "png")),
        # fbx_writer: "blender" (binary) or "assimp"; unset picks Blender when it is installed.
        "fbx": lambda a, p: export.export_fbx(a, p, export_params.get("image_format", "png"), export_params.get("fbx_writer")),
        "obj": lambda a, p: export.export_obj(a, p, export_params.get("image_format", "png")),
        "ply": lambda a, p: export.export_ply(a, p),
    }
    unknown = sorted(set(export_params["formats"]) - set(exporters))
    if unknown:
        raise BadInput(f"unknown export format(s) {', '.join(unknown)}; supported: {', '.join(exporters)}")
    # compress: GLB geometry compression written beside each uncompressed GLB (files "glb-<method>");
    # msft_lod: the whole chain in one more GLB with MSFT_lod (report["lod_chain"]).
    compression = list(export_params.get("compress", []))
    unknown = sorted(set(compression) - set(export.compress.METHODS))
    if unknown:
        raise BadInput(f"unknown compression {', '.join(unknown)}; supported: {', '.join(export.compress.METHODS)}")
    if (compression or export_params.get("msft_lod")) and "glb" not in export_params["formats"]:
        raise BadInput("GLB compression and MSFT_lod need 'glb' among the export formats")

    def export_all() -> list[dict[str, Any]]:
        rows = []
        for level, (asset, decimation) in enumerate(levels):
            files = {}
            for fmt in export_params["formats"]:
                folder = out / f"lod{level}" / fmt if fmt in ("fbx", "obj") else out / f"lod{level}"
                files[fmt] = exporters[fmt](asset, folder / f"{name}_lod{level}.{fmt}").to_dict()
            for method in compression:
                files[f"glb-{method}"] = export.compress_glb(files["glb"]["path"], method).to_dict()
            rows.append({
                "level": level,
                "ratio": float(ratios[level]),
                "triangles": asset.triangle_count,
                "vertices": asset.vertex_count,
                "screen_size": float(screens[level]),
                "switch_distance_m": switch_distance(radius, float(screens[level])),
                "error_m": float(decimation.get("error_m", 0.0)),
                "files": files,
            })
        return rows

    report["lods"] = steps.run("export", export_all)
    if export_params.get("msft_lod"):
        report["lod_chain"] = steps.run("lod_chain", lambda: export.export_glb_lods(
            [asset for asset, _ in levels], out / f"{name}_lods.glb", [float(v) for v in screens],
            export_params.get("image_format", "png"), normal_format).to_dict())
    budgets: dict[str, Any] = {}
    if "max_glb_bytes" in export_params and "glb" in export_params["formats"]:
        size = report["lods"][0]["files"]["glb"]["bytes"]
        budgets["lod0_glb_bytes"] = {"value": size, "limit": export_params["max_glb_bytes"], "met": size <= export_params["max_glb_bytes"]}
    if (params := chosen.params("decimate")) is not None:
        limit = params["max_triangles"]
        budgets["lod0_triangles"] = {"value": lod0.triangle_count, "limit": limit, "met": lod0.triangle_count <= limit}
    if (params := chosen.params("textures")) is not None:
        final = levels[0][0]
        largest = max((max(t.size) for m in final.materials for t in m.textures.values()), default=0)
        budgets["texture_size"] = {"value": largest, "limit": params["max_size"], "met": largest <= params["max_size"]}
    report["budgets"] = budgets
    report["validation_passed"] = all(
        f["validation"]["passed"] for row in report["lods"] for f in row["files"].values()
    ) and report.get("lod_chain", {"validation": {"passed": True}})["validation"]["passed"]
    report["steps"] = steps.timings
    if progress is not None:
        progress("done", 1.0, f"{len(levels)} LODs written to {out}")
    (out / REPORT_NAME).write_text(json.dumps(report, indent=2, default=_json_default))
    return json.loads(json.dumps(report, default=_json_default))


def _fit_glb_budget(
    levels: list[tuple[Asset, dict[str, Any]]], limit: int, image_format: str, scratch: Path
) -> tuple[list[tuple[Asset, dict[str, Any]]], str, dict[str, Any]]:
    """Make LOD0's GLB fit `limit` bytes: first lossy (JPEG) normal maps, then halve every texture (all
    levels share them) down to 256², measuring the real file each time. Reports each attempt."""
    attempts: list[dict[str, Any]] = []
    normal_format = "png"
    while True:
        size = export.gltf.write_glb(levels[0][0], scratch, image_format, normal_format).stat().st_size
        largest = max((max(t.size) for m in levels[0][0].materials for t in m.textures.values()), default=0)
        attempts.append({"normal_format": normal_format, "max_texture": largest, "bytes": size})
        if size <= limit or (normal_format == "jpeg" and largest <= 256):
            break
        if normal_format == "png" and any(m.texture("normal") for m in levels[0][0].materials):
            normal_format = "jpeg"
            continue
        if largest <= 256:
            break
        normal_format = "jpeg"
        levels = [(textures.fit_textures(asset, largest // 2)[0], info) for asset, info in levels]
    scratch.unlink(missing_ok=True)
    return levels, normal_format, {"limit": limit, "met": attempts[-1]["bytes"] <= limit, "attempts": attempts}


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
