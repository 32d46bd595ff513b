"""A real backend end to end: a capture rendered from a mesh, uploaded with masks and cameras through the
catalog, reconstructed by the installed `visual-hull` backend in a job, ingested as a version with its files,
quality and cost, and close to the mesh it was rendered from."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import trimesh

from catalog import services as catalog
from catalog.storage import open_blob
from reconstruction import services, tasks
from reconstruction.engine.metrics import compare_meshes
from reconstruction.engine.registry import available_backends
from reconstruction.engine.render import render_capture
from reconstruction.models import ReconstructionJob

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def _upload_rendered_capture(owner, collection, standard, folder: Path):
    images = sorted((folder / "images").iterdir())
    masks = sorted((folder / "masks").iterdir())
    sparse = folder / "sparse"
    colmap = {name: (sparse / name).read_text() for name in ("cameras.txt", "images.txt", "points3D.txt")}
    return catalog.create_capture(
        actor=owner, collection=collection, name="Rendered turntable", standard=standard,
        images=[(p.name, io.BytesIO(p.read_bytes())) for p in images],
        masks=[(p.name, io.BytesIO(p.read_bytes())) for p in masks],
        metadata={"colmap": colmap},
    )


def test_a_visual_hull_job_turns_an_uploaded_capture_into_a_close_version(tmp_path, owner, collection, asset,
                                                                         lenient_standard, settings, monkeypatch):
    assert "visual-hull" in available_backends()
    settings.ASSAY_JOB_WORKDIR = str(tmp_path / "work")
    (tmp_path / "work").mkdir()
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda *args, **kwargs: None)  # the test runs the task body
    box = trimesh.creation.box(extents=(0.2, 0.12, 0.08)).subdivide().subdivide()
    # Colours that differ around the box, so no two views of the symmetric shape render the same bytes.
    box.visual.vertex_colors = np.column_stack([
        (box.vertices - box.vertices.min(axis=0)) / np.ptp(box.vertices, axis=0) * 255, np.full(len(box.vertices), 255)
    ]).astype(np.uint8)
    mesh_path = tmp_path / "box.glb"
    box.export(mesh_path)
    folder = render_capture(mesh_path, tmp_path / "capture", views=12, size=96)
    capture = _upload_rendered_capture(owner, collection, lenient_standard, folder)

    assert capture.check_status != "failed", capture.check_report
    job, created = services.submit_job(owner, capture=capture, asset=asset, backend="visual-hull",
                                       parameters={"resolution": 48}, idempotency_key="box-1")
    assert created and job.queue == "cpu"
    assert tasks.run_job.apply(args=[job.pk]).get() == "succeeded"

    job.refresh_from_db()
    assert job.state == ReconstructionJob.State.SUCCEEDED and job.progress == 1.0
    assert job.resource_usage["cpu_s"] > 0
    version = job.produced_version
    assert list(version.captures.all()) == [capture]
    glb = version.variants.get(name="default").lods.get(level=0).representations.get(format="glb")
    with open_blob(glb.file) as handle:
        result = trimesh.load(io.BytesIO(handle.read()), file_type="glb", force="mesh")
    diagonal = float(np.linalg.norm(np.ptp(box.vertices, axis=0)))
    metrics = compare_meshes(result, box, tau=0.05 * diagonal)  # 12 views at 96 px: a coarse hull, but the box
    assert metrics["fscore"] > 0.95 and metrics["chamfer_relative"] < 0.03, metrics
    assert version.quality.triangle_count == len(result.faces)
    assert 0 < version.costs.get().cpu_seconds
