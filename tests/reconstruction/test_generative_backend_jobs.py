"""The learned backends end to end: a rendered capture uploaded through the catalog, a `diffusion` (one view) or
`hybrid` (six views) job run by the task body with the shipped checkpoint, ingested as a version that is linked
to the registered model and whose provenance cites the checkpoint's digest."""
from __future__ import annotations

import io

import numpy as np
import pytest
import trimesh

from catalog.storage import open_blob
from governance.attestations import provenance_predicate
from reconstruction import services, tasks
from reconstruction.engine.metrics import compare_meshes
from reconstruction.engine.model_registry import find_model
from reconstruction.engine.render import render_capture
from reconstruction.model_catalog import sync_learned_models
from reconstruction.models import LearnedModel, ReconstructionJob

from .test_real_backend_job import _upload_rendered_capture

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture
def bottle_glb(tmp_path):
    """A coloured solid of revolution (a bottle-like cylinder on a wider base)."""
    body = trimesh.creation.cylinder(radius=0.04, height=0.16, sections=48)
    base = trimesh.creation.cylinder(radius=0.055, height=0.04, sections=48)
    base.apply_translation((0, 0, -0.08))
    bottle = trimesh.util.concatenate([body, base])
    bottle.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, (1, 0, 0)))  # stand it up (y up)
    # Colour varies around the axis too, so no two views of the symmetric shape render the same bytes.
    angle = (np.arctan2(bottle.vertices[:, 2], bottle.vertices[:, 0]) + np.pi) / (2 * np.pi)
    top = (bottle.vertices[:, 1] > 0).astype(float)
    bottle.visual.vertex_colors = np.column_stack([
        40 + 180 * top, 40 + 180 * angle, 200 - 160 * top, np.full(len(angle), 255)
    ]).astype(np.uint8)
    path = tmp_path / "bottle.glb"
    bottle.export(path)
    return path, bottle


def _run(owner, asset, capture, backend, parameters, key, settings, tmp_path, monkeypatch) -> ReconstructionJob:
    settings.ASSAY_JOB_WORKDIR = str(tmp_path / "work")
    (tmp_path / "work").mkdir(exist_ok=True)
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda *args, **kwargs: None)  # the test runs the task body
    job, created = services.submit_job(owner, capture=capture, asset=asset, backend=backend, parameters=parameters,
                                       idempotency_key=key)
    assert created
    assert tasks.run_job.apply(args=[job.pk]).get() == "succeeded", job.error
    job.refresh_from_db()
    return job


def _check_version_cites_the_model(job: ReconstructionJob) -> trimesh.Trimesh:
    card = find_model("occupancy-diffusion")
    model = LearnedModel.objects.get(sha256=card.sha256)
    assert list(job.learned_models.all()) == [model]
    version = job.produced_version
    dependencies = provenance_predicate(version)["buildDefinition"]["resolvedDependencies"]
    assert {"sha256": card.sha256} in [d["digest"] for d in dependencies]
    glb = version.variants.get(name="default").lods.get(level=0).representations.get(format="glb")
    with open_blob(glb.file) as handle:
        return trimesh.load(io.BytesIO(handle.read()), file_type="glb", force="mesh")


def test_a_diffusion_job_makes_a_version_from_one_photo(tmp_path, owner, collection, asset, lenient_standard,
                                                        bottle_glb, settings, monkeypatch):
    sync_learned_models()
    path, bottle = bottle_glb
    folder = render_capture(path, tmp_path / "capture", single=True, size=160)
    capture = _upload_rendered_capture(owner, collection, lenient_standard, folder)
    job = _run(owner, asset, capture, "diffusion", {"samples": 2, "steps": 12}, "bottle-diffusion",
               settings, tmp_path, monkeypatch)

    mesh = _check_version_cites_the_model(job)
    assert 0.0 <= job.produced_version.quality.metrics["confidence"] <= 1.0
    # In the capture's world frame: the generated solid overlaps the bottle (one view is ambiguous in depth,
    # so the bar is a loose 10% of the diagonal).
    diagonal = float(np.linalg.norm(np.ptp(bottle.vertices, axis=0)))
    metrics = compare_meshes(mesh, bottle, tau=0.1 * diagonal)
    assert metrics["fscore"] > 0.6, metrics


def test_a_hybrid_job_completes_a_few_view_capture(tmp_path, owner, collection, asset, lenient_standard,
                                                   bottle_glb, settings, monkeypatch):
    sync_learned_models()
    path, bottle = bottle_glb
    folder = render_capture(path, tmp_path / "capture", views=6, size=128)
    capture = _upload_rendered_capture(owner, collection, lenient_standard, folder)
    fast = {"output_resolution": 48, "samples": 1, "steps": 8, "repaint_resamples": 1, "field_seconds": 10,
            "field_resolution": 64}
    job = _run(owner, asset, capture, "hybrid", fast, "bottle-hybrid", settings, tmp_path, monkeypatch)

    mesh = _check_version_cites_the_model(job)
    assert 0.0 <= job.produced_version.quality.metrics["generated_fraction"] <= 1.0
    diagonal = float(np.linalg.norm(np.ptp(bottle.vertices, axis=0)))
    metrics = compare_meshes(mesh, bottle, tau=0.05 * diagonal)
    assert metrics["fscore"] > 0.7, metrics
