"""Every change to a reconstruction job goes through these functions.

The state machine is queued → running → succeeded | failed | cancelled. People submit, cancel and retry
(permission-checked, keyword-only, actor first); workers claim, beat, fail and finish (fenced by the claim
token they got, so a worker that lost its job can write nothing more). Each transition writes its audit event
in the same transaction, and Celery dispatch happens only after the transaction commits.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from catalog.models import Asset, AssetVersion, Capture, Representation
from catalog.permissions import Action
from catalog.services import require
from governance.audit import record_event
from reconstruction.engine import protocol
from reconstruction.engine.errors import UnknownBackend
from reconstruction.engine.registry import get_backend
from reconstruction.errors import (
    CaptureUnsuitable,
    IdempotencyConflict,
    InvalidJobParameters,
    InvalidJobTransition,
    JobErrorCode,
    LeaseLost,
    UnknownBackendError,
)
from reconstruction.models import LearnedModel, ReconstructionJob

Job = ReconstructionJob
log = logging.getLogger(__name__)
State = ReconstructionJob.State
WORKER_ACTOR = "system:reconstruction-worker"
LOG_TAIL_CHARS = 4000


# Submission --------------------------------------------------------------------------------------


def validate_parameters(schema: Mapping[str, Any], parameters: Any) -> None:
    """Raise InvalidJobParameters listing every field that breaks the backend's JSON schema."""
    try:
        validator = Draft202012Validator(dict(schema))
        errors = sorted(validator.iter_errors(parameters), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    except SchemaError as exc:  # the plugin's own bug, but the caller still deserves a sentence
        raise InvalidJobParameters(f"The backend's parameter schema is itself invalid: {exc.message}") from exc
    if not errors:
        return
    fields = [
        {"field": ".".join(["parameters", *map(str, e.absolute_path)]), "message": e.message} for e in errors
    ]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    raise InvalidJobParameters(detail, errors=fields)


def _input_kind(views: int, capabilities: protocol.Capabilities, parent_version: AssetVersion | None) -> str | None:
    """Which input kind of the backend this capture can feed, or None when none fits."""
    if views == 1 and protocol.SINGLE_IMAGE in capabilities.inputs:
        return protocol.SINGLE_IMAGE
    if views >= 1 and protocol.MULTI_VIEW in capabilities.inputs:
        return protocol.MULTI_VIEW
    if views >= 1 and protocol.IMAGES_AND_MESH in capabilities.inputs and parent_version is not None:
        has_mesh = Representation.objects.filter(
            lod__variant__version=parent_version, role=Representation.Role.MODEL
        ).exists()
        return protocol.IMAGES_AND_MESH if has_mesh else None
    return None


def capture_has_cameras(capture: Capture) -> bool:
    colmap = (capture.metadata or {}).get("colmap")
    return isinstance(colmap, dict) and bool(colmap.get("cameras.txt")) and bool(colmap.get("images.txt"))


def check_capture_fits(capture: Capture, backend: protocol.Backend, parent_version: AssetVersion | None) -> int:
    """Raise CaptureUnsuitable with the reason when the backend cannot use this capture; returns the view count."""
    caps = backend.capabilities
    views = capture.images.count()
    if views == 0:
        raise CaptureUnsuitable(f"Capture '{capture}' has no images.")
    if capture.check_status == Capture.CheckStatus.FAILED:
        raise CaptureUnsuitable(
            f"Capture '{capture}' failed its capture check; fix the images it reports before reconstructing."
        )
    if views < caps.min_views:
        raise CaptureUnsuitable(
            f"Backend '{backend.name}' needs at least {caps.min_views} views; capture '{capture}' has {views}."
        )
    if caps.max_views is not None and views > caps.max_views:
        raise CaptureUnsuitable(
            f"Backend '{backend.name}' takes at most {caps.max_views} views; capture '{capture}' has {views}."
        )
    if _input_kind(views, caps, parent_version) is None:
        accepted = ", ".join(sorted(caps.inputs))
        raise CaptureUnsuitable(
            f"Backend '{backend.name}' accepts {accepted}; capture '{capture}' with {views} view(s)"
            + (" and no parent version with a model file" if protocol.IMAGES_AND_MESH in caps.inputs else "")
            + " is none of these."
        )
    if caps.needs_known_cameras and not capture_has_cameras(capture):
        raise CaptureUnsuitable(
            f"Backend '{backend.name}' needs known cameras; capture '{capture}' has none (metadata.colmap)."
        )
    return views


def _fingerprint(*, capture_id: int, asset_id: int, backend: str, parameters: Any, parent_id: int | None) -> dict:
    return {"capture": capture_id, "asset": asset_id, "backend": backend, "parameters": parameters,
            "parent_version": parent_id}


def _replay(existing: Job, actor: Any, request: dict[str, Any], key: str) -> Job:
    """Same key, same request: the existing job. Same key, another request: 409 naming what differs."""
    if existing.created_by_id != getattr(actor, "pk", None):
        raise IdempotencyConflict(f"The idempotency key '{key}' is already in use; choose another key.")
    before = _fingerprint(capture_id=existing.capture_id, asset_id=existing.asset_id, backend=existing.backend,
                          parameters=existing.parameters, parent_id=existing.parent_version_id)
    differing = sorted(k for k in request if request[k] != before[k])
    if differing:
        raise IdempotencyConflict(
            f"The idempotency key '{key}' was used for job {existing.pk} with different {', '.join(differing)}; "
            "send the same request again or use a new key.",
            job=existing.pk, differing=differing,
        )
    return existing


def submit_job(
    actor: Any,
    *,
    capture: Capture,
    asset: Asset,
    backend: str,
    parameters: Any,
    parent_version: AssetVersion | None = None,
    idempotency_key: str,
) -> tuple[Job, bool]:
    """Queue a reconstruction of `capture` into a new version of `asset`; returns (job, created).

    Sending the same idempotency key with the same request returns the existing job (created False).
    """
    key = (idempotency_key or "").strip()
    if not key or len(key) > 128:
        raise InvalidJobParameters("An idempotency key of 1 to 128 characters is required.",
                                   errors=[{"field": "idempotency_key", "message": "1 to 128 characters."}])
    require(actor, Action.CONTRIBUTE, asset)
    request = _fingerprint(capture_id=capture.pk, asset_id=asset.pk, backend=backend, parameters=parameters,
                           parent_id=parent_version.pk if parent_version else None)
    existing = Job.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return _replay(existing, actor, request, key), False

    if capture.collection_id != asset.collection_id:
        raise CaptureUnsuitable(f"Capture '{capture}' belongs to another collection than asset '{asset}'.")
    if parent_version is not None and parent_version.asset_id != asset.pk:
        raise InvalidJobTransition(f"Version {parent_version} is not a version of asset '{asset}'.")
    try:
        engine_backend = get_backend(backend)
    except UnknownBackend as exc:
        raise UnknownBackendError(exc.message) from exc
    validate_parameters(engine_backend.parameter_schema, parameters)
    check_capture_fits(capture, engine_backend, parent_version)
    queue = "gpu" if engine_backend.capabilities.needs_gpu else "cpu"

    with transaction.atomic():
        try:
            with transaction.atomic():
                job = Job.objects.create(
                    capture=capture, asset=asset, parent_version=parent_version, backend=engine_backend.name,
                    backend_version=engine_backend.version, parameters=parameters, queue=queue,
                    idempotency_key=key, max_attempts=settings.ASSAY_JOB_MAX_ATTEMPTS, created_by=actor,
                )
        except IntegrityError:  # the same key committed by a concurrent request between our read and insert
            return _replay(Job.objects.get(idempotency_key=key), actor, request, key), False
        record_event(
            actor=actor, action="job.queued", obj=job, asset_id=asset.pk,
            data={"backend": job.backend, "backend_version": job.backend_version, "capture": capture.pk,
                  "parameters": parameters, "queue": queue, "parent_version": request["parent_version"]},
        )
        _dispatch_on_commit(job)
    return job, True


UNDISPATCHED = "undispatched"


def dispatch(job_id: int, queue: str, *, countdown: float | None = None) -> bool:
    """Send the job to its queue (after `countdown` seconds). A broker that is down does not undo the committed
    job: it is marked undispatched and the stall sweep sends it again."""
    from reconstruction.tasks import run_job  # tasks import services; import at call time

    try:
        if countdown is None:
            run_job.apply_async(args=[job_id], queue=queue)
        else:
            run_job.apply_async(args=[job_id], queue=queue, countdown=countdown)
    except Exception:  # kombu/amqp raise many kinds when the broker is unreachable
        log.exception("could not send job %s to queue %s; the stall sweep will send it again", job_id, queue)
        Job.objects.filter(pk=job_id, state=State.QUEUED).update(stage=UNDISPATCHED)
        return False
    Job.objects.filter(pk=job_id, state=State.QUEUED, stage=UNDISPATCHED).update(stage="")
    return True


def _dispatch_on_commit(job: Job) -> None:
    job_id, queue = job.pk, job.queue
    transaction.on_commit(lambda: dispatch(job_id, queue))


# Changes people make -----------------------------------------------------------------------------


def _lock(job: Job | int) -> Job:
    return Job.objects.select_for_update().get(pk=job if isinstance(job, int) else job.pk)


@transaction.atomic
def cancel_job(actor: Any, *, job: Job) -> Job:
    """A queued job is cancelled at once; a running one is asked to stop and its worker cancels it."""
    job = _lock(job)
    require(actor, Action.CONTRIBUTE, job.asset)
    if job.is_terminal:
        raise InvalidJobTransition(f"Job {job.pk} is already {job.state}; only queued or running jobs can be cancelled.")
    if job.state == State.QUEUED:
        _finish(job, actor=actor, state=State.CANCELLED, event="job.cancelled", stage="cancelled",
                data={"by": "request", "while": State.QUEUED})
        return job
    if not job.cancel_requested:
        Job.objects.filter(pk=job.pk).update(cancel_requested=True, row_version=F("row_version") + 1)
        record_event(actor=actor, action="job.cancel_requested", obj=job, asset_id=job.asset_id,
                     changes={"cancel_requested": [False, True]})
        job.refresh_from_db()
    return job


@transaction.atomic
def retry_job(actor: Any, *, job: Job) -> Job:
    """Queue a failed or cancelled job again as a new series of attempts (same job, same idempotency key)."""
    job = _lock(job)
    require(actor, Action.CONTRIBUTE, job.asset)
    if job.state not in (State.FAILED, State.CANCELLED):
        raise InvalidJobTransition(f"Job {job.pk} is {job.state}; only failed or cancelled jobs can be retried.")
    before = job.state
    job.state = State.QUEUED
    job.stage = ""
    job.progress = 0.0
    job.error = job.error_code = ""
    job.cancel_requested = False
    job.attempts = 0
    job.worker = ""
    job.heartbeat_at = job.started_at = job.finished_at = None
    job.row_version = F("row_version") + 1
    job.save()
    job.refresh_from_db()
    record_event(actor=actor, action="job.queued", obj=job, asset_id=job.asset_id,
                 changes={"state": [before, State.QUEUED]}, data={"retry": True})
    _dispatch_on_commit(job)
    return job


# Changes workers make ----------------------------------------------------------------------------


def _stale_before(now: dt.datetime) -> dt.datetime:
    return now - dt.timedelta(seconds=settings.ASSAY_JOB_STALL_AFTER_S)


@transaction.atomic
def claim_job(*, job_id: int, worker: str) -> Job | None:
    """Take a queued job (or one whose worker went silent) for `worker`; None when someone else holds it.

    One conditional UPDATE decides, so of two workers claiming at the same instant exactly one wins.
    """
    now = timezone.now()
    claimable = Q(state=State.QUEUED) | Q(state=State.RUNNING, heartbeat_at__lt=_stale_before(now))
    won = (
        Job.objects.filter(claimable, pk=job_id, cancel_requested=False, attempts__lt=F("max_attempts"))
        .update(state=State.RUNNING, worker=worker, attempts=F("attempts") + 1, started_at=now, heartbeat_at=now,
                stage="starting", progress=0.0, row_version=F("row_version") + 1)
    )
    if not won:
        return None
    job = Job.objects.get(pk=job_id)
    record_event(actor=WORKER_ACTOR, action="job.started", obj=job, asset_id=job.asset_id,
                 data={"worker": worker, "attempt": job.attempts, "max_attempts": job.max_attempts})
    return job


def heartbeat(*, job_id: int, worker: str, stage: str | None = None, progress: float | None = None,
              log_line: str | None = None) -> bool:
    """Record that `worker` is alive (and its stage/progress); returns True when cancellation was requested.

    Raises LeaseLost when the job is no longer this worker's.
    """
    fields: dict[str, Any] = {"heartbeat_at": timezone.now()}
    if stage is not None:
        fields["stage"] = stage[:64]
    if progress is not None:
        fields["progress"] = min(1.0, max(0.0, float(progress)))
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, state=State.RUNNING, worker=worker).first()
        if job is None:
            raise LeaseLost(f"Job {job_id} is no longer held by {worker}.")
        if log_line:
            fields["log_tail"] = (job.log_tail + log_line.rstrip() + "\n")[-LOG_TAIL_CHARS:]
        Job.objects.filter(pk=job_id).update(**fields)
        return job.cancel_requested


def lock_held(job_id: int, worker: str) -> Job:
    """Inside a transaction: the job row locked, if `worker` still holds it; raises LeaseLost otherwise."""
    job = Job.objects.select_for_update().filter(pk=job_id).first()
    if job is None or job.state != State.RUNNING or job.worker != worker:
        raise LeaseLost(f"Job {job_id} is no longer held by {worker}.")
    return job


def _finish(job: Job, *, actor: Any, state: str, event: str, stage: str, data: dict[str, Any] | None = None,
            **fields: Any) -> Job:
    before = job.state
    job.state = state
    job.stage = stage
    job.finished_at = timezone.now()
    for name, value in fields.items():
        setattr(job, name, value)
    job.row_version = F("row_version") + 1
    job.save()
    job.refresh_from_db()
    record_event(actor=actor, action=event, obj=job, asset_id=job.asset_id, changes={"state": [before, state]},
                 data=data)
    return job


def finish_job(*, job: Job, version: AssetVersion, usage: dict[str, Any], log: list[str],
               model_checkpoints: list[dict[str, str]] | None = None,
               learned_models: Sequence[LearnedModel] = ()) -> Job:
    """Mark the job succeeded with the version it produced (and the registered checkpoints it used); called by
    the ingest, inside its transaction, with the job row locked through `lock_held`."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("finish_job must run inside the ingest's transaction")
    tail = (job.log_tail + "".join(f"{line.rstrip()}\n" for line in log))[-LOG_TAIL_CHARS:]
    checkpoints = list(model_checkpoints or [])
    data: dict[str, Any] = {"version": version.pk, "number": version.number, "resources": usage}
    if checkpoints:
        data["model_checkpoints"] = checkpoints
    job.learned_models.set(learned_models)
    return _finish(job, actor=WORKER_ACTOR, state=State.SUCCEEDED, event="job.succeeded", stage="done", data=data,
                   produced_version=version, progress=1.0, resource_usage=usage, log_tail=tail,
                   model_checkpoints=checkpoints)


@transaction.atomic
def fail_job(*, job_id: int, worker: str, code: str, message: str, log_line: str = "") -> Job:
    """The held job failed for good: keep the code and the reason in words; no retry follows."""
    job = lock_held(job_id, worker)
    tail = (job.log_tail + log_line.rstrip() + "\n")[-LOG_TAIL_CHARS:] if log_line else job.log_tail
    return _finish(job, actor=WORKER_ACTOR, state=State.FAILED, event="job.failed", stage="failed",
                   data={"code": code, "error": message, "attempt": job.attempts},
                   error_code=code[:32], error=message, log_tail=tail)


@transaction.atomic
def mark_cancelled(*, job_id: int, worker: str) -> Job:
    """The worker stopped the held job because cancellation was requested."""
    job = lock_held(job_id, worker)
    return _finish(job, actor=WORKER_ACTOR, state=State.CANCELLED, event="job.cancelled", stage="cancelled",
                   data={"by": "request", "while": State.RUNNING, "attempt": job.attempts})


@transaction.atomic
def release_for_retry(*, job_id: int, worker: str, reason: str) -> Job:
    """A transient error stopped the held job: queue it again if attempts are left, else fail it.

    The caller re-sends the task (with backoff) only when the returned job is queued.
    """
    job = lock_held(job_id, worker)
    if job.attempts >= job.max_attempts:
        return _finish(
            job, actor=WORKER_ACTOR, state=State.FAILED, event="job.failed", stage="failed",
            data={"code": JobErrorCode.TRANSIENT_EXHAUSTED, "error": reason, "attempt": job.attempts},
            error_code=JobErrorCode.TRANSIENT_EXHAUSTED,
            error=f"Gave up after {job.attempts} attempts; the last one failed with: {reason}",
        )
    return _requeue(job, reason=reason)


def _requeue(job: Job, *, reason: str) -> Job:
    before = job.state
    job.state = State.QUEUED
    job.worker = ""
    job.stage = "requeued"
    job.log_tail = (job.log_tail + f"re-queued: {reason}\n")[-LOG_TAIL_CHARS:]
    job.row_version = F("row_version") + 1
    job.save()
    job.refresh_from_db()
    record_event(actor=WORKER_ACTOR, action="job.queued", obj=job, asset_id=job.asset_id,
                 changes={"state": [before, State.QUEUED]}, data={"reason": reason, "attempts_used": job.attempts})
    return job


def detect_stalled_jobs(*, now: dt.datetime | None = None) -> dict[str, list[int]]:
    """Running jobs whose heartbeat is older than the stall limit: re-queued (and re-sent) while attempts are left,
    failed with the reason otherwise; queued jobs the broker refused are sent again. Returns the ids of each."""
    now = now or timezone.now()
    cutoff = _stale_before(now)
    stale = Q(state=State.RUNNING) & (Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
    outcome: dict[str, list[int]] = {"requeued": [], "failed": [], "cancelled": [], "resent": []}
    for job_id, queue in Job.objects.filter(state=State.QUEUED, stage=UNDISPATCHED).values_list("pk", "queue"):
        if dispatch(job_id, queue):
            outcome["resent"].append(job_id)
    for job_id in Job.objects.filter(stale).order_by("pk").values_list("pk", flat=True):
        with transaction.atomic():
            job = Job.objects.select_for_update(skip_locked=True).filter(stale, pk=job_id).first()
            if job is None:  # it beat, finished or is being handled by another sweep meanwhile
                continue
            silent = f"its worker {job.worker or '(unknown)'} sent no heartbeat since {job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" \
                if job.heartbeat_at else f"its worker {job.worker or '(unknown)'} never sent a heartbeat"
            if job.cancel_requested:
                _finish(job, actor=WORKER_ACTOR, state=State.CANCELLED, event="job.cancelled", stage="cancelled",
                        data={"by": "request", "while": "stalled"})
                outcome["cancelled"].append(job.pk)
            elif job.attempts < job.max_attempts:
                _requeue(job, reason=f"stalled: {silent}")
                _dispatch_on_commit(job)
                outcome["requeued"].append(job.pk)
            else:
                message = (f"The job stopped responding on each of its {job.attempts} attempts (last: {silent}); "
                           "it was not started again. A worker that runs out of memory often looks like this.")
                _finish(job, actor=WORKER_ACTOR, state=State.FAILED, event="job.failed", stage="failed",
                        data={"code": JobErrorCode.WORKER_LOST, "error": message},
                        error_code=JobErrorCode.WORKER_LOST, error=message)
                outcome["failed"].append(job.pk)
    return outcome
