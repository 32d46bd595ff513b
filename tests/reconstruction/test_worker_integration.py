"""Real Celery worker processes on the real brokers (RabbitMQ, and Redis as the alternative), against the test
database: a job goes end to end, and a worker killed with SIGKILL mid-job leaves no duplicate while a second
worker completes the job. RabbitMQ redelivers the killed worker's message at once; Redis only after its
visibility timeout (hours), so there the stall sweep alone brings the job back."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.db import connection

from catalog.models import AssetVersion, CostRecord, QualityReport, Representation
from governance.models import AuditEvent
from reconstruction import services, tasks
from reconstruction.models import ReconstructionJob

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

AMQP_URL = os.environ.get("ASSAY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
REDIS_URL = os.environ.get("ASSAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")  # a database only these tests use
BROKERS = pytest.mark.parametrize("broker_url", [AMQP_URL, REDIS_URL], ids=["rabbitmq", "redis"])
REPO = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).parent / "celery"
HEARTBEAT_S, STALL_AFTER_S = 0.5, 3.0
State = ReconstructionJob.State


def _database_url() -> str:
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def broker_url() -> str:
    return AMQP_URL


@pytest.fixture
def start_worker(settings, tmp_path, broker_url) -> Iterator[Callable[[str], subprocess.Popen]]:
    """Starts `celery worker -Q cpu --pool solo` processes on the test database; each is always terminated."""
    settings.ASSAY_JOB_STALL_AFTER_S = STALL_AFTER_S
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker_url,
        "ASSAY_MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "ASSAY_JOB_WORKDIR": str(tmp_path),
        "ASSAY_JOB_HEARTBEAT_S": str(HEARTBEAT_S),
        "ASSAY_JOB_STALL_AFTER_S": str(STALL_AFTER_S),
        "PYTHONPATH": str(REPO),
    }
    started: list[tuple[subprocess.Popen, object]] = []

    def start(name: str) -> subprocess.Popen:
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(
            [str(CELERY), "-A", "config", "worker", "-Q", "cpu", "-c", "1", "--pool", "solo", "-n", f"{name}@%h",
             "-I", "tests.reconstruction.worker_plugins", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        started.append((process, log))
        return process

    try:
        yield start
    finally:
        for process, log in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            log.close()


@pytest.fixture
def to_broker(monkeypatch, broker_url):
    """This test process publishes to the real broker (its settings default to the filesystem transport)."""
    original = tasks.run_job.apply_async

    def publish(args, queue, **options):
        with tasks.run_job.app.connection_for_write(broker_url) as conn:
            return original(args=args, queue=queue, connection=conn, **options)

    monkeypatch.setattr(tasks.run_job, "apply_async", publish)
    yield
    if broker_url.startswith("redis://"):
        # A killed worker's message stays "unacked" in Redis until its visibility timeout (hours); this Redis
        # database is reserved for these tests, so empty it rather than leave a stray delivery behind.
        with tasks.run_job.app.connection_for_write(broker_url) as conn:
            conn.default_channel.client.flushdb()


def wait_until(condition: Callable[[], bool], *, deadline_s: float, logs: Path, every: Callable[[], object] | None = None):
    """Poll until `condition()` holds; fail with the workers' logs once the deadline passes."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            tails = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(logs.glob("*.log")))
            pytest.fail(f"condition not met within {deadline_s} s\n{tails}")
        if every is not None:
            every()
        time.sleep(0.2)


def job_state(job: ReconstructionJob) -> str:
    job.refresh_from_db()
    return job.state


@BROKERS
def test_job_runs_end_to_end_on_a_real_worker(owner, capture, asset, backend, start_worker, to_broker, tmp_path):
    start_worker("w1")
    job, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere",
                                 parameters={"subdivisions": 2}, idempotency_key="integration-1")
    wait_until(lambda: job_state(job) in ReconstructionJob.TERMINAL_STATES, deadline_s=180, logs=tmp_path)
    assert job.state == State.SUCCEEDED, (job.error_code, job.error)
    version = job.produced_version
    assert Representation.objects.get(lod__variant__version=version, role="model").filename == "model.glb"
    assert QualityReport.objects.get(version=version).triangle_count == 320
    assert 0 < CostRecord.objects.get(version=version).cpu_seconds
    assert job.worker.startswith("w1@")
    assert job.attempts == 1


@BROKERS
def test_worker_killed_mid_job_leaves_no_duplicate(owner, capture, asset, backend, start_worker, to_broker, tmp_path):
    gate = tmp_path / "gate"
    first = start_worker("w1")
    job, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere",
                                 parameters={"wait_for": str(gate)}, idempotency_key="integration-kill")
    wait_until(lambda: job_state(job) == State.RUNNING and job.stage == "waiting", deadline_s=180, logs=tmp_path)
    killed_token = job.worker

    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    start_worker("w2")
    gate.touch()
    # The beat's stall sweep runs here in the test, as `reconstruction.detect_stalled_jobs` would every minute.
    wait_until(lambda: job_state(job) in ReconstructionJob.TERMINAL_STATES, deadline_s=180, logs=tmp_path,
               every=services.detect_stalled_jobs)

    assert job.state == State.SUCCEEDED, (job.error_code, job.error)
    assert job.attempts == 2
    assert job.worker != killed_token and job.worker.startswith("w2@")
    assert AssetVersion.objects.filter(asset=asset).count() == 1
    assert list(AuditEvent.objects.filter(object_id=str(job.pk), action="job.succeeded").values_list("action", flat=True)) \
        == ["job.succeeded"]
    assert AuditEvent.objects.filter(object_id=str(job.pk), action="job.started").count() == 2
