"""Presets: the ordered steps (with parameters) that turn a source mesh into the deliverables of one target."""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from .errors import BadInput


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    steps: tuple[tuple[str, dict[str, Any]], ...]

    def params(self, step: str) -> dict[str, Any] | None:
        """The parameters of `step`, or None when the preset does not run it."""
        return next((dict(p) for name, p in self.steps if name == step), None)

    def with_overrides(self, overrides: dict[str, dict[str, Any]] | None) -> Preset:
        """A copy with some parameters changed, e.g. {"bake": {"size": 256}}; unknown steps are refused."""
        if not overrides:
            return self
        names = {name for name, _ in self.steps}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise BadInput(f"preset '{self.name}' has no step {', '.join(unknown)}; its steps: {', '.join(sorted(names))}")
        steps = tuple((name, {**copy.deepcopy(p), **overrides.get(name, {})}) for name, p in self.steps)
        return Preset(self.name, self.description, steps)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "steps": [{"step": n, **p} for n, p in self.steps]}


# LOD switch points are screen heights (share of the viewport the bounding sphere covers) below which the
# next level is shown; the pipeline turns them into distances for a 60° vertical field of view.
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset("web", "Storefront viewers: compact GLB with a few LODs (also as one MSFT_lod file), JPEG textures up to 2048², meshopt-compressed copies.", (
            ("units", {}),
            ("cleanup", {}),
            ("decimate", {"max_triangles": 200_000}),
            ("unwrap_and_bake", {"size": 2048, "ao_rays": 16, "atlas": False, "max_triangles": 40_000}),
            ("textures", {"max_size": 2048}),
            ("lods", {"ratios": [1.0, 0.5, 0.25], "screen_sizes": [0.5, 0.25, 0.1]}),
            ("export", {"formats": ["glb", "usdz", "fbx"], "image_format": "jpeg", "msft_lod": True,
                        "compress": ["meshopt"]}),
        )),
        Preset("mobile-ar", "AR Quick Look / Scene Viewer: LOD0 ≤ 100k triangles, one 2048² atlas, GLB ≤ 5 MB.", (
            ("units", {}),
            ("cleanup", {}),
            ("decimate", {"max_triangles": 100_000}),
            ("unwrap_and_bake", {"size": 2048, "ao_rays": 16, "atlas": True, "max_triangles": 40_000}),
            ("textures", {"max_size": 2048}),
            ("lods", {"ratios": [1.0, 0.5, 0.25, 0.1], "screen_sizes": [0.4, 0.2, 0.1, 0.04]}),
            ("export", {"formats": ["glb", "usdz", "fbx"], "image_format": "jpeg", "max_glb_bytes": 5_000_000}),
        )),
        Preset("game", "Real-time engines: even remeshed topology, baked PBR maps, a long LOD chain, FBX first.", (
            ("units", {}),
            ("cleanup", {}),
            ("retopology", {"max_triangles": 50_000}),
            ("unwrap_and_bake", {"size": 2048, "ao_rays": 32, "atlas": True, "force": True, "max_triangles": 40_000}),
            ("textures", {"max_size": 2048}),
            ("lods", {"ratios": [1.0, 0.5, 0.25, 0.125, 0.0625], "screen_sizes": [0.5, 0.25, 0.12, 0.06, 0.03]}),
            ("export", {"formats": ["fbx", "glb", "usdz"], "image_format": "png"}),
        )),
        Preset("archive", "Preservation: full resolution, lossless textures, every format including OBJ+MTL and PLY.", (
            ("units", {}),
            ("cleanup", {"min_component_size": 0.0, "max_hole_edges": 0}),
            ("unwrap_and_bake", {"size": 4096, "ao_rays": 16, "atlas": False, "from_vertex_colors": False,
                                 "max_triangles": 100_000}),
            ("lods", {"ratios": [1.0], "screen_sizes": [0.0]}),
            ("export", {"formats": ["glb", "usdz", "fbx", "obj", "ply"], "image_format": "png"}),
        )),
    )
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise BadInput(f"unknown preset '{name}'; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
