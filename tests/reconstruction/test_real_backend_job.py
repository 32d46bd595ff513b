"""Real backends end to end: a capture rendered from a mesh, uploaded with masks and cameras through the
catalog, reconstructed by the installed `visual-hull`, `nerf` or `sdf` backend in a job, ingested as a version with its files,
quality and cost, and close to the mesh it was rendered from; and photos alone, calibrated by the field backend's run."""
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
from tests.engine.photogrammetry.scenes import textured_blob_photos

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


@pytest.fixture
def box(tmp_path):
    box = trimesh.creation.box(extents=(0.2, 0.12, 0.08)).subdivide().subdivide()
    # Colours that differ around the box, so no two views of the symmetric shape render the same bytes.
    box.visual.vertex_colors = np.column_stack([
        (box.vertices - box.vertices.min(axis=0)) / np.ptp(box.vertices, axis=0) * 255, np.full(len(box.vertices), 255)
    ]).astype(np.uint8)
    return box


@pytest.fixture
def box_capture(tmp_path, box, owner, collection, lenient_standard):
    mesh_path = tmp_path / "box.glb"
    box.export(mesh_path)
    folder = render_capture(mesh_path, tmp_path / "capture", views=12, size=96)
    capture = _upload_rendered_capture(owner, collection, lenient_standard, folder)
    assert capture.check_status != "failed", capture.check_report
    return capture


def _run_job(owner, asset, capture, backend, parameters, settings, tmp_path, monkeypatch) -> ReconstructionJob:
    settings.ASSAY_JOB_WORKDIR = str(tmp_path / "work")
    (tmp_path / "work").mkdir()
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda *args, **kwargs: None)  # the test runs the task body
    job, created = services.submit_job(owner, capture=capture, asset=asset, backend=backend,
                                       parameters=parameters, idempotency_key=f"box-{backend}")
    assert created and job.queue == "cpu"
    assert tasks.run_job.apply(args=[job.pk]).get() == "succeeded", job.error
    job.refresh_from_db()
    assert job.state == ReconstructionJob.State.SUCCEEDED and job.progress == 1.0
    return job


def _version_mesh(version) -> trimesh.Trimesh:
    glb = version.variants.get(name="default").lods.get(level=0).representations.get(format="glb")
    with open_blob(glb.file) as handle:
        return trimesh.load(io.BytesIO(handle.read()), file_type="glb", force="mesh")


def test_a_visual_hull_job_turns_an_uploaded_capture_into_a_close_version(tmp_path, owner, asset, box, box_capture,
                                                                         settings, monkeypatch):
    assert "visual-hull" in available_backends()
    job = _run_job(owner, asset, box_capture, "visual-hull", {"resolution": 48}, settings, tmp_path, monkeypatch)
    assert job.resource_usage["cpu_s"] > 0
    version = job.produced_version
    assert list(version.captures.all()) == [box_capture]
    result = _version_mesh(version)
    diagonal = float(np.linalg.norm(np.ptp(box.vertices, axis=0)))
    metrics = compare_meshes(result, box, tau=0.05 * diagonal)  # 12 views at 96 px: a coarse hull, but the box
    assert metrics["fscore"] > 0.95 and metrics["chamfer_relative"] < 0.03, metrics
    assert version.quality.triangle_count == len(result.faces)
    assert 0 < version.costs.get().cpu_seconds


# A few dozen iterations on a 32³ grid: enough for the box's shape, not for a fine surface.
QUICK_FIELD = {"resolution": 32, "iterations": 80, "batch_rays": 512, "turntable_frames": 2, "preview_size": 32,
               "texture_size": 256}


@pytest.mark.parametrize("backend", ["nerf", "sdf"])
def test_a_trained_field_job_makes_a_version_near_the_box(backend, tmp_path, owner, asset, box, box_capture,
                                                          settings, monkeypatch):
    job = _run_job(owner, asset, box_capture, backend, QUICK_FIELD, settings, tmp_path, monkeypatch)
    version = job.produced_version
    assert version.quality.metrics["iterations"] == QUICK_FIELD["iterations"]
    diagonal = float(np.linalg.norm(np.ptp(box.vertices, axis=0)))
    metrics = compare_meshes(_version_mesh(version), box, tau=0.05 * diagonal)
    assert metrics["fscore"] > 0.85, metrics
    # A UV-textured model with its texture beside it; the surface counts as closed across the atlas's seams.
    assert version.quality.texture_count == 1 and version.quality.metrics["texture_coverage"] > 0.9
    assert version.quality.watertight == version.quality.metrics["watertight"]


def test_a_field_job_on_photos_alone_finds_its_cameras_and_records_the_calibration(tmp_path, owner, asset,
                                                                                   collection, lenient_standard,
                                                                                   settings, monkeypatch):
    # Photos as users upload them: no cameras and no masks. The job accepts them for nerf, whose run calibrates
    # them (structure from motion, refined) before training; the version's quality record keeps what it found.
    _, truth = textured_blob_photos(tmp_path / "photos")
    photos = sorted((tmp_path / "photos").iterdir())
    capture = catalog.create_capture(
        actor=owner, collection=collection, name="Blob photos", standard=lenient_standard,
        images=[(p.name, io.BytesIO(p.read_bytes())) for p in photos],
    )
    assert not services.capture_has_cameras(capture)
    job = _run_job(owner, asset, capture, "nerf", QUICK_FIELD, settings, tmp_path, monkeypatch)
    calibration = job.produced_version.quality.metrics["calibration"]
    assert calibration["registered_images"] == len(truth) and not calibration["known_cameras"]
    assert calibration["camera_refinement"]["reprojection_error_px"]["after"] < 0.5
    assert job.resource_usage["wall_s"] > calibration["seconds"]
