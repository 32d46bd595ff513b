"""Admin pages of jobs: the changelist with progress bars and filters, the read-only detail with the log, and the
cancel/retry actions going through the services."""
from __future__ import annotations

import pytest

from governance.models import AuditEvent
from reconstruction import services, tasks
from reconstruction.models import ReconstructionJob
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, monkeypatch):
    monkeypatch.setattr(tasks.run_job, "apply_async", lambda args, queue, **kw: None)
    client.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def jobs(owner, capture, asset, backend):
    queued, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere", parameters={},
                                    idempotency_key="q")
    running, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere",
                                     parameters={"subdivisions": 1}, idempotency_key="r")
    services.claim_job(job_id=running.pk, worker="w1")
    services.heartbeat(job_id=running.pk, worker="w1", stage="meshing", progress=0.42, log_line="[meshing] <half>")
    return queued, running


def test_changelist_shows_progress_and_filters(admin_client, jobs):
    response = admin_client.get("/admin/reconstruction/reconstructionjob/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<progress max="100" value="42" title="42%">42%</progress> 42%' in html
    response = admin_client.get("/admin/reconstruction/reconstructionjob/?state__exact=running")
    assert response.context["cl"].result_count == 1


def test_detail_is_read_only_with_the_log_escaped(admin_client, jobs):
    _, running = jobs
    response = admin_client.get(f"/admin/reconstruction/reconstructionjob/{running.pk}/change/")
    assert response.status_code == 200
    assert "[meshing] &lt;half&gt;" in response.content.decode()
    assert admin_client.post(f"/admin/reconstruction/reconstructionjob/{running.pk}/change/", {}).status_code == 403


def test_cancel_and_retry_actions_use_the_services(admin_client, jobs):
    queued, running = jobs
    url = "/admin/reconstruction/reconstructionjob/"
    admin_client.post(url, {"action": "cancel_jobs", "_selected_action": [queued.pk, running.pk]})
    queued.refresh_from_db()
    running.refresh_from_db()
    assert queued.state == ReconstructionJob.State.CANCELLED
    assert (running.state, running.cancel_requested) == (ReconstructionJob.State.RUNNING, True)
    assert AuditEvent.objects.filter(action="job.cancelled", actor__username="root").count() == 1
    response = admin_client.post(url, {"action": "retry_jobs", "_selected_action": [queued.pk, running.pk]}, follow=True)
    queued.refresh_from_db()
    assert queued.state == ReconstructionJob.State.QUEUED
    messages = [str(m) for m in response.context["messages"]]
    assert f"job {running.pk}: Job {running.pk} is running; only failed or cancelled jobs can be retried." in messages
