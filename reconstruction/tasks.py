"""Celery tasks of reconstruction: run one job, and sweep jobs whose worker went silent.

`run_job` is safe to deliver twice: it claims the job with a conditional update first and does nothing when
the job is finished or held by a live worker. Every later write is fenced by the claim token, so a worker
that lost its job (re-queued after a stall, cancelled) cannot write a second version.
"""
from __future__ import annotations

import json
import logging
import shutil
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from kombu.exceptions import OperationalError as BrokerError

from catalog.storage import open_blob
from config.problems import DomainError
from reconstruction import services
from reconstruction.engine.capture import Capture
from reconstruction.engine.errors import Cancelled, EngineError
from reconstruction.engine.registry import get_backend
from reconstruction.engine.resources import measure
from reconstruction.errors import JobErrorCode, LeaseLost
from reconstruction.ingest import IngestError, ingest_result
from reconstruction.models import ReconstructionJob

log = logging.getLogger(__name__)

# Errors that can pass on their own: the database or broker went away for a moment, storage timed out.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, BrokerError, ConnectionError,
                                                     TimeoutError)
PROGRESS_INTERVAL_S = 1.0
RETRY_BACKOFF_S = (10, 60, 300)


class TransientFailure(Exception):
    """Wraps an error in a phase (materialising, ingesting) where I/O errors are worth another attempt."""


# Capture folder ----------------------------------------------------------------------------------


def _safe_name(filename: str) -> str:
    name = Path(filename).name
    if not name or name != filename or name.startswith("."):
        raise EngineError(f"The capture image name {filename!r} is not a plain file name.", code="invalid_capture")
    return name


def materialise_capture(job: ReconstructionJob, folder: Path) -> Path:
    """Write the job's capture as an engine capture folder: images/, masks/ (when given), sparse/ (COLMAP text
    when the capture has cameras), K.txt (shared intrinsics when known) and capture.json."""
    capture = job.capture
    images_dir = folder / "images"
    images_dir.mkdir(parents=True)
    sources: dict[str, str] = {}
    for image in capture.images.select_related("file", "mask").order_by("filename"):
        name = _safe_name(image.filename)
        with open_blob(image.file) as source, (images_dir / name).open("wb") as target:
            shutil.copyfileobj(source, target, length=1024 * 1024)
        sources[name] = image.file.sha256
        if image.mask_id is not None:
            masks_dir = folder / "masks"
            masks_dir.mkdir(exist_ok=True)
            suffix = ".jpg" if image.mask.media_type == "image/jpeg" else ".png"
            with open_blob(image.mask) as source, (masks_dir / f"{Path(name).stem}{suffix}").open("wb") as target:
                shutil.copyfileobj(source, target, length=1024 * 1024)
    metadata = capture.metadata or {}
    if services.capture_has_cameras(capture):
        sparse = folder / "sparse"
        sparse.mkdir()
        colmap = metadata["colmap"]
        (sparse / "cameras.txt").write_text(colmap["cameras.txt"])
        (sparse / "images.txt").write_text(colmap["images.txt"])
        (sparse / "points3D.txt").write_text(colmap.get("points3D.txt", ""))
    elif isinstance(metadata.get("intrinsics"), dict) and metadata["intrinsics"].get("K"):
        K = metadata["intrinsics"]["K"]
        (folder / "K.txt").write_text("\n".join(" ".join(repr(float(v)) for v in row) for row in K) + "\n")
    manifest = {
        "name": capture.name,
        "units": capture.units,
        "views": len(sources),
        "device": capture.device,
        "lens": capture.lens,
        "focal_length_mm": capture.focal_length_mm,
        "scale_reference": capture.scale_reference,
        "category": capture.category,
        "metadata": {k: v for k, v in metadata.items() if k not in ("colmap", "intrinsics")},
        "source": {"capture": capture.pk, "images": sources},
    }
    (folder / "capture.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return folder


# Progress, cancel and heartbeat ------------------------------------------------------------------


class JobReporter:
    """The progress and cancel callbacks handed to a backend: DB writes at most once a PROGRESS_INTERVAL_S
    (and on every change of stage), cancellation read back with each write."""

    def __init__(self, job_id: int, worker: str, *, interval_s: float = PROGRESS_INTERVAL_S) -> None:
        self.job_id, self.worker, self.interval_s = job_id, worker, interval_s
        self._last_write = 0.0
        self._stage = ""
        self._cancel = False

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        now = time.monotonic()
        if stage == self._stage and now - self._last_write < self.interval_s:
            return
        line = f"[{stage}] {message}" if message else None
        self._cancel = services.heartbeat(job_id=self.job_id, worker=self.worker, stage=stage, progress=fraction,
                                          log_line=line) or self._cancel
        self._stage, self._last_write = stage, now

    def cancel(self) -> bool:
        if not self._cancel and time.monotonic() - self._last_write >= self.interval_s:
            self._cancel = services.heartbeat(job_id=self.job_id, worker=self.worker)
            self._last_write = time.monotonic()
        return self._cancel


class HeartbeatThread(threading.Thread):
    """Beats every ASSAY_JOB_HEARTBEAT_S while a backend computes without reporting progress."""

    def __init__(self, job_id: int, worker: str, interval_s: float) -> None:
        super().__init__(name=f"heartbeat-job-{job_id}", daemon=True)
        self.job_id, self.worker, self.interval_s = job_id, worker, interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval_s):
                try:
                    services.heartbeat(job_id=self.job_id, worker=self.worker)
                except LeaseLost:
                    return  # the main thread finds out at its next write
                except DatabaseError:
                    log.warning("heartbeat of job %s failed; trying again", self.job_id, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=10)


# Running one job ---------------------------------------------------------------------------------


@dataclass
class Outcome:
    status: str  # skipped, succeeded, failed, cancelled, lost, retry
    job: ReconstructionJob | None = None
    reason: str = ""


def _device(queue: str) -> str:
    if queue != "gpu":
        return "cpu"
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def execute_job(job_id: int, *, worker: str) -> Outcome:
    """Claim, run and ingest one job. Never raises for the job's own failures: they end in its state."""
    job = services.claim_job(job_id=job_id, worker=worker)
    if job is None:
        return Outcome("skipped")
    workdir = Path(tempfile.mkdtemp(prefix=f"assay-job-{job.pk}-", dir=settings.ASSAY_JOB_WORKDIR))
    beat = HeartbeatThread(job.pk, worker, settings.ASSAY_JOB_HEARTBEAT_S)
    beat.start()
    try:
        return _run_claimed(job, worker, workdir)
    except LeaseLost as exc:
        log.warning("%s", exc)
        return Outcome("lost", reason=str(exc))
    finally:
        beat.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _run_claimed(job: ReconstructionJob, worker: str, workdir: Path) -> Outcome:
    reporter = JobReporter(job.pk, worker)
    phase = "materialise"
    try:
        try:
            reporter.progress("materialising", 0.0, f"{job.capture.images.count()} image(s)")
            capture_dir = materialise_capture(job, workdir / "capture")
        except (OSError, *TRANSIENT_ERRORS) as exc:
            raise TransientFailure(f"reading the capture from storage failed: {exc}") from exc
        capture = Capture.load(capture_dir)
        backend = get_backend(job.backend)
        if backend.version != job.backend_version:
            log.info("job %s was queued for %s %s; running %s", job.pk, job.backend, job.backend_version, backend.version)
        out = workdir / "result"
        out.mkdir()
        phase = "run"
        with measure(_device(job.queue)) as usage:
            result = backend.run(capture, out, params=job.parameters, progress=reporter.progress, cancel=reporter.cancel)
        usage.gpu_s = max(usage.gpu_s, result.resources.gpu_s)
        usage.peak_gpu_memory_mb = max(usage.peak_gpu_memory_mb, result.resources.peak_gpu_memory_mb)
        reporter.progress("ingesting", 0.99, "storing the result")
        phase = "ingest"
        try:
            done = ingest_result(job_id=job.pk, worker=worker, result=result, usage=usage)
        except (OSError, *TRANSIENT_ERRORS) as exc:
            raise TransientFailure(f"storing the result failed: {exc}") from exc
        return Outcome("succeeded", done)
    except Cancelled:
        return Outcome("cancelled", services.mark_cancelled(job_id=job.pk, worker=worker))
    except LeaseLost:
        raise
    except SoftTimeLimitExceeded:
        return _failed(job, worker, JobErrorCode.TIME_LIMIT,
                       f"The job ran longer than its limit of {settings.ASSAY_JOB_TIME_LIMIT_S} s and was stopped.")
    except (TransientFailure, *TRANSIENT_ERRORS) as exc:
        reason = str(exc) if isinstance(exc, TransientFailure) else f"{type(exc).__name__}: {exc}"
        requeued = services.release_for_retry(job_id=job.pk, worker=worker, reason=reason)
        status = "retry" if requeued.state == ReconstructionJob.State.QUEUED else "failed"
        return Outcome(status, requeued, reason)
    except EngineError as exc:
        return _failed(job, worker, exc.code, exc.message)
    except IngestError as exc:
        return _failed(job, worker, JobErrorCode.INGEST_FAILED, str(exc))
    except DomainError as exc:  # e.g. the requester lost the contribute permission, the asset was archived
        return _failed(job, worker, exc.code_value, f"The result could not be stored: {exc.detail}")
    except Exception as exc:  # a bug: the job fails with the reason kept, never stays running
        log.exception("job %s crashed in its %s phase", job.pk, phase)
        if phase == "ingest":
            return _failed(job, worker, JobErrorCode.INGEST_FAILED,
                           f"Storing the result failed: {type(exc).__name__}: {exc}")
        return _failed(job, worker, JobErrorCode.BACKEND_CRASHED,
                       f"The backend '{job.backend}' crashed: {type(exc).__name__}: {exc}")


def _failed(job: ReconstructionJob, worker: str, code: str, message: str) -> Outcome:
    return Outcome("failed", services.fail_job(job_id=job.pk, worker=worker, code=code, message=message), message)


def worker_name(task_request: Any) -> str:
    """A claim token unique to this delivery: host, task id and a nonce."""
    host = getattr(task_request, "hostname", None) or socket.gethostname()
    task_id = getattr(task_request, "id", None) or "direct"
    return f"{host}/{task_id}/{uuid.uuid4().hex[:8]}"[:200]


@shared_task(name="reconstruction.run_job", bind=True, acks_late=True, reject_on_worker_lost=True,
             max_retries=len(RETRY_BACKOFF_S), ignore_result=True,
             # prefork pools enforce these; the hard limit kills a backend that ignores the soft one.
             soft_time_limit=settings.ASSAY_JOB_TIME_LIMIT_S, time_limit=settings.ASSAY_JOB_TIME_LIMIT_S + 120)
def run_job(self: Any, job_id: int) -> str:
    """Run one reconstruction job (queue chosen per job at dispatch: `apply_async(queue=job.queue)`)."""
    # Celery's Django fixup closes stale connections around each task; the claim below re-reads all state.
    try:
        outcome = execute_job(job_id, worker=worker_name(self.request))
    except TRANSIENT_ERRORS as exc:  # the claim itself could not reach the database
        raise self.retry(exc=exc, countdown=RETRY_BACKOFF_S[min(self.request.retries, len(RETRY_BACKOFF_S) - 1)]) from exc
    if outcome.status == "retry" and outcome.job is not None:
        countdown = RETRY_BACKOFF_S[min(outcome.job.attempts - 1, len(RETRY_BACKOFF_S) - 1)]
        services.dispatch(job_id, outcome.job.queue, countdown=countdown)
    return outcome.status


@shared_task(name="reconstruction.detect_stalled_jobs", ignore_result=True)
def detect_stalled_jobs() -> dict[str, list[int]]:
    """Beat task: re-queue or fail running jobs whose heartbeat is older than ASSAY_JOB_STALL_AFTER_S."""
    return services.detect_stalled_jobs()
