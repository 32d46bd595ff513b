"""Job services: submission rules (idempotency, schema, capabilities, permission), the claim, cancel, retry,
and the stall sweep."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
from django.db import connection
from django.utils import timezone

from catalog.errors import PermissionDenied
from catalog.models import Capture
from catalog.permissions import Role
from governance.models import AuditEvent
from reconstruction import services
from reconstruction.errors import (
    CaptureUnsuitable,
    IdempotencyConflict,
    InvalidJobParameters,
    InvalidJobTransition,
    LeaseLost,
    UnknownBackendError,
)
from reconstruction.models import ReconstructionJob
from tests.reconstruction.conftest import make_capture, user_with_role

pytestmark = pytest.mark.django_db
State = ReconstructionJob.State


@pytest.fixture
def sent(monkeypatch):
    """Tasks sent to the broker (recorded instead of sent), after the transaction commits."""
    calls: list[tuple[list, str]] = []
    from reconstruction import tasks

    monkeypatch.setattr(tasks.run_job, "apply_async", lambda args, queue, **kw: calls.append((args, queue)))
    return calls


def submit(owner, capture, asset, key="k1", **kw):
    return services.submit_job(owner, capture=capture, asset=asset, backend=kw.pop("backend", "test-icosphere"),
                               parameters=kw.pop("parameters", {"subdivisions": 1}), idempotency_key=key, **kw)


def events(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def test_submit_queues_audits_and_dispatches_after_commit(owner, capture, asset, backend, sent,
                                                          django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job, created = submit(owner, capture, asset)
    assert created
    assert (job.state, job.queue, job.backend_version, job.max_attempts) == (State.QUEUED, "cpu", "1.0.0", 3)
    assert sent == [([job.pk], "cpu")]
    [event] = events("job.queued")
    assert event.object_id == str(job.pk) and event.data["backend"] == "test-icosphere"


def test_same_key_same_request_returns_the_same_job(owner, capture, asset, backend, sent,
                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first, created1 = submit(owner, capture, asset)
        again, created2 = submit(owner, capture, asset)
    assert (created1, created2) == (True, False)
    assert first.pk == again.pk
    assert ReconstructionJob.objects.count() == 1
    assert len(sent) == 1
    assert len(events("job.queued")) == 1


def test_same_key_other_parameters_is_a_conflict(owner, capture, asset, backend, sent):
    job, _ = submit(owner, capture, asset)
    with pytest.raises(IdempotencyConflict) as err:
        submit(owner, capture, asset, parameters={"subdivisions": 2})
    assert err.value.detail == (f"The idempotency key 'k1' was used for job {job.pk} with different parameters; "
                                "send the same request again or use a new key.")
    assert err.value.status_code == 409


def test_key_of_another_user_is_a_conflict(owner, collection, capture, asset, backend, sent):
    submit(owner, capture, asset)
    other = user_with_role(Role.CONTRIBUTOR, collection)
    with pytest.raises(IdempotencyConflict, match="The idempotency key 'k1' is already in use; choose another key."):
        submit(other, capture, asset)


def test_parameters_failing_the_schema_name_each_field(owner, capture, asset, backend):
    with pytest.raises(InvalidJobParameters) as err:
        submit(owner, capture, asset, parameters={"subdivisions": 9, "radius": "big", "colour": "red"})
    assert err.value.extra["errors"] == [
        {"field": "parameters", "message": "Additional properties are not allowed ('colour' was unexpected)"},
        {"field": "parameters.radius", "message": "'big' is not of type 'number'"},
        {"field": "parameters.subdivisions", "message": "9 is greater than the maximum of 3"},
    ]
    assert err.value.detail.startswith("parameters: Additional properties are not allowed")
    assert not ReconstructionJob.objects.exists()


def test_unknown_backend(owner, capture, asset, backend):
    with pytest.raises(UnknownBackendError) as err:
        submit(owner, capture, asset, backend="nerf-9000")
    assert err.value.detail == "No backend named 'nerf-9000' is installed (installed: test-gpu, test-icosphere)."


def test_too_few_and_too_many_views(owner, collection, asset, backend, lenient_standard):
    one = make_capture(owner, collection, lenient_standard, views=1)
    with pytest.raises(CaptureUnsuitable) as err:
        submit(owner, one, asset)
    assert err.value.detail == "Backend 'test-icosphere' needs at least 2 views; capture 'Shoot of 1' has 1."
    many = make_capture(owner, collection, lenient_standard, views=9)
    with pytest.raises(CaptureUnsuitable, match=r"takes at most 8 views; capture 'Shoot of 9' has 9\.$"):
        submit(owner, many, asset, key="k2")


def test_failed_capture_check_is_refused(owner, capture, asset, backend):
    Capture.objects.filter(pk=capture.pk).update(check_status=Capture.CheckStatus.FAILED)
    capture.refresh_from_db()
    with pytest.raises(CaptureUnsuitable, match="failed its capture check"):
        submit(owner, capture, asset)


def test_gpu_backend_needs_cameras_and_goes_to_the_gpu_queue(owner, collection, asset, backend, lenient_standard):
    capture = make_capture(owner, collection, lenient_standard)
    with pytest.raises(CaptureUnsuitable) as err:
        submit(owner, capture, asset, backend="test-gpu", parameters={})
    assert err.value.detail == "Backend 'test-gpu' needs known cameras; capture 'Shoot of 3' has none (metadata.colmap)."
    with_cameras = make_capture(owner, collection, lenient_standard,
                                metadata={"colmap": {"cameras.txt": "# c\n", "images.txt": "# i\n"}})
    job, _ = submit(owner, with_cameras, asset, backend="test-gpu", parameters={}, key="k2")
    assert job.queue == "gpu"


def test_capture_of_another_collection(owner, asset, backend, lenient_standard):
    from tests.factories import CollectionFactory

    other = CollectionFactory(owner=owner)
    from catalog.permissions import assign_role

    assign_role(owner, Role.ADMIN, other)
    capture = make_capture(owner, other, lenient_standard)
    with pytest.raises(CaptureUnsuitable, match="belongs to another collection than asset 'Oak chair'"):
        submit(owner, capture, asset)


def test_viewer_may_not_submit(collection, capture, asset, backend):
    viewer = user_with_role(Role.VIEWER, collection)
    with pytest.raises(PermissionDenied) as err:
        submit(viewer, capture, asset)
    assert err.value.detail == "You need the 'contribute' permission on asset 'Oak chair'."
    assert not ReconstructionJob.objects.exists()


def test_claim_is_won_once(owner, capture, asset, backend):
    job, _ = submit(owner, capture, asset)
    first = services.claim_job(job_id=job.pk, worker="w1")
    second = services.claim_job(job_id=job.pk, worker="w2")
    assert first is not None and second is None
    job.refresh_from_db()
    assert (job.state, job.worker, job.attempts) == (State.RUNNING, "w1", 1)
    assert len(events("job.started")) == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_claiming_at_the_same_instant(owner, capture, asset, backend):
    """Two threads, two database connections, one barrier: exactly one claim wins."""
    job, _ = submit(owner, capture, asset)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def claim(name: str) -> None:
        try:
            barrier.wait()
            results[name] = services.claim_job(job_id=job.pk, worker=name)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, r in results.items() if r is not None]
    assert len(winners) == 1
    assert ReconstructionJob.objects.get(pk=job.pk).worker == winners[0]


def test_heartbeat_is_fenced_by_the_claim(owner, capture, asset, backend):
    job, _ = submit(owner, capture, asset)
    services.claim_job(job_id=job.pk, worker="w1")
    assert services.heartbeat(job_id=job.pk, worker="w1", stage="meshing", progress=0.5, log_line="half") is False
    job.refresh_from_db()
    assert (job.stage, job.progress, job.log_tail) == ("meshing", 0.5, "half\n")
    with pytest.raises(LeaseLost):
        services.heartbeat(job_id=job.pk, worker="w2")


def test_cancel_queued_job_at_once(owner, capture, asset, backend):
    job, _ = submit(owner, capture, asset)
    job = services.cancel_job(owner, job=job)
    assert job.state == State.CANCELLED and job.finished_at is not None
    assert services.claim_job(job_id=job.pk, worker="w1") is None
    [event] = events("job.cancelled")
    assert event.changes == {"state": ["queued", "cancelled"]}
    with pytest.raises(InvalidJobTransition) as err:
        services.cancel_job(owner, job=job)
    assert err.value.detail == f"Job {job.pk} is already cancelled; only queued or running jobs can be cancelled."


def test_cancel_running_job_asks_its_worker(owner, capture, asset, backend):
    job, _ = submit(owner, capture, asset)
    services.claim_job(job_id=job.pk, worker="w1")
    job = services.cancel_job(owner, job=job)
    assert (job.state, job.cancel_requested) == (State.RUNNING, True)
    assert services.heartbeat(job_id=job.pk, worker="w1") is True
    job = services.mark_cancelled(job_id=job.pk, worker="w1")
    assert job.state == State.CANCELLED
    assert [e.action for e in AuditEvent.objects.filter(object_id=str(job.pk), object_type="reconstruction.reconstructionjob")
            .order_by("seq")] == ["job.queued", "job.started", "job.cancel_requested", "job.cancelled"]


def test_retry_only_failed_or_cancelled(owner, capture, asset, backend, sent, django_capture_on_commit_callbacks):
    job, _ = submit(owner, capture, asset)
    with pytest.raises(InvalidJobTransition, match=f"Job {job.pk} is queued; only failed or cancelled jobs can be retried."):
        services.retry_job(owner, job=job)
    services.claim_job(job_id=job.pk, worker="w1")
    services.fail_job(job_id=job.pk, worker="w1", code="backend_failed", message="No mesh.")
    with django_capture_on_commit_callbacks(execute=True):
        job = services.retry_job(owner, job=job)
    assert (job.state, job.attempts, job.error, job.error_code) == (State.QUEUED, 0, "", "")
    assert sent[-1] == ([job.pk], "cpu")
    assert services.claim_job(job_id=job.pk, worker="w2") is not None


def test_transient_retries_are_bounded(owner, capture, asset, backend):
    job, _ = submit(owner, capture, asset)
    for attempt in range(1, 4):
        assert services.claim_job(job_id=job.pk, worker=f"w{attempt}") is not None
        job = services.release_for_retry(job_id=job.pk, worker=f"w{attempt}", reason="broker went away")
    assert job.state == State.FAILED
    assert job.error_code == "transient_exhausted"
    assert job.error == "Gave up after 3 attempts; the last one failed with: broker went away"
    assert services.claim_job(job_id=job.pk, worker="w4") is None


def _stall(job: ReconstructionJob, minutes: int = 10) -> None:
    ReconstructionJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - dt.timedelta(minutes=minutes))


def test_stalled_job_is_requeued_then_failed_when_attempts_run_out(owner, capture, asset, backend, sent,
                                                                   django_capture_on_commit_callbacks):
    job, _ = submit(owner, capture, asset)
    for attempt in range(1, 4):
        assert services.claim_job(job_id=job.pk, worker=f"w{attempt}") is not None
        _stall(job)
        with django_capture_on_commit_callbacks(execute=True):
            outcome = services.detect_stalled_jobs()
        job.refresh_from_db()
        if attempt < 3:
            assert outcome == {"requeued": [job.pk], "failed": [], "cancelled": [], "resent": []}
            assert job.state == State.QUEUED
        else:
            assert outcome == {"requeued": [], "failed": [job.pk], "cancelled": [], "resent": []}
    assert job.state == State.FAILED and job.error_code == "worker_lost"
    assert job.error.startswith("The job stopped responding on each of its 3 attempts (last: its worker w3 sent no "
                                "heartbeat since ")
    assert len(sent) == 2  # re-sent after each of the first two stalls, never after the last


def test_fresh_heartbeat_is_not_stalled_and_a_stale_job_can_be_taken_over(owner, capture, asset, backend):
    job, _ = submit(owner, capture, asset)
    services.claim_job(job_id=job.pk, worker="w1")
    assert services.detect_stalled_jobs() == {"requeued": [], "failed": [], "cancelled": [], "resent": []}
    assert services.claim_job(job_id=job.pk, worker="w2") is None  # w1 is alive
    _stall(job)
    assert services.claim_job(job_id=job.pk, worker="w2") is not None  # w1 went silent: a redelivery takes over
    with pytest.raises(LeaseLost):
        services.heartbeat(job_id=job.pk, worker="w1")


def test_broker_down_at_submit_keeps_the_job_and_the_sweep_sends_it(owner, capture, asset, backend, monkeypatch,
                                                                     django_capture_on_commit_callbacks):
    from kombu.exceptions import OperationalError as BrokerError

    from reconstruction import tasks

    def down(args, queue, **kw):
        raise BrokerError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.run_job, "apply_async", down)
    with django_capture_on_commit_callbacks(execute=True):
        job, _ = submit(owner, capture, asset)
    job.refresh_from_db()
    assert (job.state, job.stage) == (State.QUEUED, services.UNDISPATCHED)
    assert services.detect_stalled_jobs()["resent"] == []  # still down
    sent: list = []
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda args, queue, **kw: sent.append((args, queue)))
    assert services.detect_stalled_jobs()["resent"] == [job.pk]
    job.refresh_from_db()
    assert (job.state, job.stage, sent) == (State.QUEUED, "", [([job.pk], "cpu")])


def test_detect_stalled_jobs_command(owner, capture, asset, backend, sent):
    from io import StringIO

    from django.core.management import call_command

    job, _ = submit(owner, capture, asset)
    services.claim_job(job_id=job.pk, worker="w1")
    _stall(job)
    out = StringIO()
    call_command("detect_stalled_jobs", stdout=out)
    assert out.getvalue() == f"requeued: {job.pk}\nfailed: none\ncancelled: none\nresent: none\n"
