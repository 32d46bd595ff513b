"""Backends used only by the tests: real, small reconstructions whose output depends on the capture.

A worker process started by the integration tests loads `tests.reconstruction.worker_plugins`, which
registers these the same way the test fixtures do in-process.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from reconstruction.engine import protocol
from reconstruction.engine.capture import Capture
from reconstruction.engine.errors import BackendFailed, Cancelled

PARAMETER_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "properties": {
        "subdivisions": {"type": "integer", "minimum": 0, "maximum": 3},
        "radius": {"type": "number", "exclusiveMinimum": 0},
        "fail": {"enum": ["engine", "crash", "transient"]},
        "texture": {"type": "boolean"},
        "wait_for": {"type": "string", "description": "Hold the run until this file exists (worker-kill tests)."},
    },
    "additionalProperties": False,
}


class IcosphereBackend:
    """Reconstructs every capture as an icosphere whose radius is the mean image brightness (so the output
    depends on the input bytes), written as a real GLB, optionally with a PNG texture beside it."""

    name = "test-icosphere"
    version = "1.0.0"
    capabilities = protocol.Capabilities(inputs=frozenset({protocol.MULTI_VIEW}), min_views=2, max_views=8)
    parameter_schema: Mapping[str, Any] = PARAMETER_SCHEMA

    def __init__(self) -> None:
        self.during_run: Callable[[], None] | None = None  # tests hook in here (e.g. cancel mid-run)
        self.runs = 0

    def run(self, capture: Capture, workdir: Path, *, params: Mapping[str, Any], progress: protocol.ProgressFn,
            cancel: protocol.CancelFn) -> protocol.ReconstructionResult:
        self.runs += 1
        progress("reading", 0.1, f"{capture.num_views} views")
        brightness = float(np.mean([capture.load_image(i).mean() for i in range(capture.num_views)]))
        if self.during_run is not None:
            self.during_run()
        if params.get("wait_for"):
            self._wait_for(Path(params["wait_for"]), progress, cancel)
        progress("meshing", 0.5, "icosphere")
        if cancel():
            raise Cancelled("Cancelled while meshing.")
        failure = params.get("fail")
        if failure == "engine":
            raise BackendFailed("Only 1 of 3 views registered; cannot build a mesh.")
        if failure == "crash":
            raise ZeroDivisionError("division by zero")
        if failure == "transient":
            from django.db import OperationalError

            raise OperationalError("server closed the connection unexpectedly")
        radius = params.get("radius", 0.5 + brightness)
        mesh = trimesh.creation.icosphere(subdivisions=params.get("subdivisions", 1), radius=radius)
        mesh_path = workdir / "mesh.glb"
        mesh_path.write_bytes(mesh.export(file_type="glb"))
        textures = []
        if params.get("texture"):
            textures.append(workdir / "albedo.png")
            Image.fromarray(np.full((8, 8, 3), int(brightness * 255), dtype=np.uint8)).save(textures[0])
        progress("done", 1.0, "")
        return protocol.ReconstructionResult(
            mesh_path=mesh_path, texture_paths=textures, metrics={"views_used": capture.num_views, "radius": radius},
            backend=self.name, backend_version=self.version, parameters=dict(params), log=["icosphere written"],
        )


    @staticmethod
    def _wait_for(gate: Path, progress: protocol.ProgressFn, cancel: protocol.CancelFn, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not gate.exists():
            if cancel():
                raise Cancelled("Cancelled while waiting.")
            if time.monotonic() > deadline:
                raise BackendFailed(f"{gate} did not appear within {timeout_s:.0f} s.")
            progress("waiting", 0.3, f"pid {os.getpid()}")
            time.sleep(0.05)


class GpuBackend(IcosphereBackend):
    name = "test-gpu"
    capabilities = protocol.Capabilities(inputs=frozenset({protocol.MULTI_VIEW}), min_views=2, needs_gpu=True,
                                         needs_known_cameras=True)
