"""The job task in-process: a run end to end into a new version with its files, quality and cost; failures,
cancellation and transient errors; nothing half-written when the ingest fails."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
import trimesh
from django.core.files.storage import default_storage

from catalog.models import LOD, AssetVersion, CostRecord, QualityReport, Representation, StoredFile
from catalog.permissions import Role, remove_role
from catalog.storage import open_blob
from governance.models import AuditEvent
from reconstruction import services, tasks
from reconstruction.models import ReconstructionJob
from tests.reconstruction.conftest import user_with_role

pytestmark = pytest.mark.django_db
State = ReconstructionJob.State


@pytest.fixture
def quiet_dispatch(monkeypatch):
    """Record tasks instead of sending them: these tests call the task body themselves."""
    calls: list[dict] = []
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda args, queue, **kw: calls.append({"args": args,
                                                                                               "queue": queue, **kw}))
    return calls


@pytest.fixture
def workdirs(tmp_path, settings):
    settings.ASSAY_JOB_WORKDIR = str(tmp_path / "work")
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


def queued(owner, capture, asset, parameters=None, key="k1", **kw):
    job, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere",
                                 parameters={"subdivisions": 2} if parameters is None else parameters,
                                 idempotency_key=key, **kw)
    return job


def blob_names() -> set[str]:
    root = Path(default_storage.location) / "blobs"
    return {str(p.relative_to(default_storage.location)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


def test_run_end_to_end_makes_a_version_with_files_quality_and_cost(owner, capture, asset, backend, quiet_dispatch,
                                                                    workdirs):
    parent = AssetVersion.objects.create(asset=asset, number=1, created_by=owner)
    job = queued(owner, capture, asset, parameters={"subdivisions": 2, "texture": True}, parent_version=parent)

    assert tasks.run_job.apply(args=[job.pk]).get() == "succeeded"

    job.refresh_from_db()
    version = job.produced_version
    assert (job.state, job.progress, job.stage, job.attempts) == (State.SUCCEEDED, 1.0, "done", 1)
    assert (version.asset_id, version.number, version.parent_id) == (asset.pk, 2, parent.pk)
    assert list(version.captures.all()) == [capture]
    assert version.metadata["source"] == {"job": job.pk, "backend": "test-icosphere", "backend_version": "1.0.0",
                                          "parameters": {"subdivisions": 2, "texture": True}}
    lod0 = LOD.objects.get(variant__version=version, variant__name="default", level=0)
    assert lod0.triangle_count == 320  # an icosphere of subdivision 2
    model = Representation.objects.get(lod=lod0, role=Representation.Role.MODEL)
    assert (model.filename, model.format) == ("model.glb", "glb")
    with open_blob(model.file) as handle:
        stored = trimesh.load(io.BytesIO(handle.read()), file_type="glb", force="mesh")
    assert len(stored.faces) == 320
    texture = Representation.objects.get(lod=lod0, role=Representation.Role.TEXTURE)
    assert (texture.filename, texture.format) == ("albedo.png", "png")
    quality = QualityReport.objects.get(version=version)
    assert (quality.triangle_count, quality.vertex_count, quality.texture_count, quality.watertight) == (320, 162, 1, True)
    assert quality.metrics["views_used"] == 3
    cost = CostRecord.objects.get(version=version)
    assert cost.kind == "reconstruction" and cost.source == f"job:{job.pk}"
    assert 0 < cost.cpu_seconds and cost.gpu_seconds == 0
    assert cost.storage_bytes == model.file.size + texture.file.size
    assert job.resource_usage["wall_s"] > 0 and job.resource_usage["device"] == "cpu"
    assert "icosphere written" in job.log_tail and "[reading] 3 views" in job.log_tail
    actions = list(AuditEvent.objects.filter(asset_id=asset.pk).order_by("seq").values_list("action", flat=True))
    assert actions[-8:] == ["job.queued", "job.started", "version.created", "representation.added",
                            "representation.added", "quality.recorded", "cost.recorded", "job.succeeded"]
    assert list(workdirs.iterdir()) == []  # the temporary capture and result folders are gone


def test_second_delivery_of_a_finished_job_does_nothing(owner, capture, asset, backend, quiet_dispatch, workdirs):
    job = queued(owner, capture, asset)
    assert tasks.run_job.apply(args=[job.pk]).get() == "succeeded"
    assert tasks.run_job.apply(args=[job.pk]).get() == "skipped"
    assert AssetVersion.objects.filter(asset=asset).count() == 1
    assert backend.runs == 1


def test_engine_error_fails_without_retry(owner, capture, asset, backend, quiet_dispatch, workdirs):
    job = queued(owner, capture, asset, parameters={"fail": "engine"})
    assert tasks.run_job.apply(args=[job.pk]).get() == "failed"
    job.refresh_from_db()
    assert (job.state, job.error_code, job.error) == (
        State.FAILED, "backend_failed", "Only 1 of 3 views registered; cannot build a mesh.")
    assert quiet_dispatch == []  # no retry for bad input
    assert not AssetVersion.objects.exists()


def test_backend_crash_fails_with_the_reason_kept(owner, capture, asset, backend, quiet_dispatch, workdirs):
    job = queued(owner, capture, asset, parameters={"fail": "crash"})
    assert tasks.run_job.apply(args=[job.pk]).get() == "failed"
    job.refresh_from_db()
    assert (job.state, job.error_code) == (State.FAILED, "backend_crashed")
    assert job.error == "The backend 'test-icosphere' crashed: ZeroDivisionError: division by zero"
    assert list(workdirs.iterdir()) == []


def test_transient_error_requeues_with_backoff_until_attempts_run_out(owner, capture, asset, backend, quiet_dispatch,
                                                                      workdirs):
    job = queued(owner, capture, asset, parameters={"fail": "transient"})
    assert tasks.run_job.apply(args=[job.pk]).get() == "retry"
    job.refresh_from_db()
    assert (job.state, job.attempts) == (State.QUEUED, 1)
    assert quiet_dispatch == [{"args": [job.pk], "queue": "cpu", "countdown": 10}]
    assert tasks.run_job.apply(args=[job.pk]).get() == "retry"
    assert quiet_dispatch[-1]["countdown"] == 60
    assert tasks.run_job.apply(args=[job.pk]).get() == "failed"
    job.refresh_from_db()
    assert (job.state, job.error_code, job.attempts) == (State.FAILED, "transient_exhausted", 3)
    assert job.error == ("Gave up after 3 attempts; the last one failed with: OperationalError: "
                         "server closed the connection unexpectedly")
    assert len(quiet_dispatch) == 2


def test_cancel_while_running_stops_the_backend(owner, capture, asset, backend, quiet_dispatch, workdirs):
    job = queued(owner, capture, asset)
    backend.during_run = lambda: services.cancel_job(owner, job=job)
    assert tasks.run_job.apply(args=[job.pk]).get() == "cancelled"
    job.refresh_from_db()
    assert job.state == State.CANCELLED
    assert not AssetVersion.objects.exists()


def test_failed_ingest_leaves_no_rows_and_no_blobs(owner, collection, capture, asset, backend, quiet_dispatch,
                                                   workdirs):
    """The requester loses the contribute permission mid-run: the version cannot be created, so nothing of it
    stays — no version, no representation, no stored file, no blob on disk — and the job fails saying why."""
    contributor = user_with_role(Role.CONTRIBUTOR, collection)
    job = queued(contributor, capture, asset, parameters={"subdivisions": 3, "texture": True})
    before_files, before_blobs = StoredFile.objects.count(), blob_names()
    backend.during_run = lambda: remove_role(contributor, Role.CONTRIBUTOR, collection)

    assert tasks.run_job.apply(args=[job.pk]).get() == "failed"

    job.refresh_from_db()
    assert (job.state, job.error_code) == (State.FAILED, "permission_denied")
    assert job.error == "The result could not be stored: You need the 'contribute' permission on asset 'Oak chair'."
    assert not AssetVersion.objects.exists()
    assert not QualityReport.objects.exists() and not CostRecord.objects.exists()
    assert StoredFile.objects.count() == before_files
    assert blob_names() == before_blobs


def test_failure_after_files_are_stored_removes_their_blobs(owner, capture, asset, backend, quiet_dispatch, workdirs,
                                                            monkeypatch):
    """A failure at the very end of the ingest (recording the cost) rolls back every row and deletes the blobs
    that the ingest wrote."""
    job = queued(owner, capture, asset, parameters={"subdivisions": 3, "texture": True})
    before_blobs = blob_names()

    def broken_cost(**kwargs):
        raise ValueError("cost rates are not configured")

    monkeypatch.setattr("reconstruction.ingest.catalog.record_cost", broken_cost)
    assert tasks.run_job.apply(args=[job.pk]).get() == "failed"
    job.refresh_from_db()
    assert (job.error_code, job.error) == ("ingest_failed", "Storing the result failed: ValueError: cost rates are not configured")
    assert not AssetVersion.objects.exists() and not Representation.objects.exists()
    assert blob_names() == before_blobs


def test_a_worker_that_lost_its_job_writes_nothing(owner, capture, asset, backend, quiet_dispatch, workdirs):
    """While the backend runs, the job is taken over (its heartbeat looked stale): the first worker's result
    is dropped and only the new holder may finish it."""
    job = queued(owner, capture, asset)

    def taken_over():
        ReconstructionJob.objects.filter(pk=job.pk).update(worker="someone-else")

    backend.during_run = taken_over
    assert tasks.execute_job(job.pk, worker="first").status == "lost"
    job.refresh_from_db()
    assert (job.state, job.worker) == (State.RUNNING, "someone-else")
    assert not AssetVersion.objects.exists() and not StoredFile.objects.filter(media_type="model/gltf-binary").exists()


def test_materialised_capture_has_images_cameras_and_manifest(owner, collection, asset, backend, lenient_standard,
                                                              tmp_path):
    import json

    from reconstruction.engine.capture import Capture
    from tests.reconstruction.conftest import make_capture

    images_txt = "".join(f"{i + 1} 1 0 0 0 0 0 {i} 1 view{i:02d}.png\n\n" for i in range(3))
    capture = make_capture(owner, collection, lenient_standard, units="cm", metadata={
        "colmap": {"cameras.txt": "1 PINHOLE 32 32 40 40 16 16\n", "images.txt": images_txt},
        "turntable": True,
    })
    job = queued(owner, capture, asset)
    folder = tasks.materialise_capture(job, tmp_path / "capture")
    loaded = Capture.load(folder)
    assert [p.name for p in loaded.images] == ["view00.png", "view01.png", "view02.png"]
    assert [c.image_name for c in loaded.cameras] == ["view00.png", "view01.png", "view02.png"]
    manifest = json.loads((folder / "capture.json").read_text())
    assert (manifest["units"], manifest["views"], manifest["metadata"]) == ("cm", 3, {"turntable": True})
    assert set(manifest["source"]["images"]) == {"view00.png", "view01.png", "view02.png"}


def test_truncated_image_in_storage_fails_the_job_with_the_reason(owner, capture, asset, backend, quiet_dispatch,
                                                                  workdirs):
    """An image damaged in storage after upload is caught when the capture loads, before the backend runs."""
    image = capture.images.order_by("filename").first()
    path = Path(default_storage.path(image.file.storage_name))
    path.write_bytes(path.read_bytes()[:60])
    job = queued(owner, capture, asset)
    assert tasks.run_job.apply(args=[job.pk]).get() == "failed"
    job.refresh_from_db()
    assert job.error_code == "invalid_capture"
    assert job.error.startswith("Image view00.png cannot be read: ")
    assert backend.runs == 0


def test_soft_time_limit_fails_the_job_saying_so(owner, capture, asset, backend, quiet_dispatch, workdirs, settings):
    from celery.exceptions import SoftTimeLimitExceeded

    def over_time():
        raise SoftTimeLimitExceeded()

    backend.during_run = over_time
    job = queued(owner, capture, asset)
    assert tasks.run_job.apply(args=[job.pk]).get() == "failed"
    job.refresh_from_db()
    assert (job.error_code, job.error) == (
        "time_limit", f"The job ran longer than its limit of {settings.ASSAY_JOB_TIME_LIMIT_S} s and was stopped.")
