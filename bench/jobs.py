"""Job framework benchmark: what the Django side of a reconstruction job costs around the backend itself.

Seeds a throwaway database (as `bench/api.py` does), registers the tests' icosphere backend (a real GLB from
the capture's images, so the measured overhead is ours, not a reconstruction's), and measures:
  submit_job (validation, idempotency, audit), a job run in-process (claim → materialise → backend → ingest)
  split into backend time and our overhead, a heartbeat, the stall sweep over many silent jobs, and the job
  list API (latency and SQL queries per page).
Writes bench/results/jobs.json with the environment. The database is dropped afterwards.

    .venv/bin/python bench/jobs.py [--jobs 10] [--views 8] [--size 256] [--stalled 200] [--repeat 30]
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results" / "jobs.json"

from bench.api import ThrowawayDatabase  # noqa: E402  (after the path is set)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10, help="jobs run end to end in-process")
    parser.add_argument("--views", type=int, default=8, help="images per capture")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--stalled", type=int, default=200, help="silent running jobs for the stall sweep")
    parser.add_argument("--repeat", type=int, default=30, help="timed calls per micro case")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args()


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    return {"n": len(ms), "median_ms": round(statistics.median(ms), 2), "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 2),
            "min_ms": round(ms[0], 2)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone
    from PIL import Image

    import tests.reconstruction.worker_plugins  # noqa: F401  registers the test backends in the engine registry
    from catalog import services as catalog
    from catalog.models import Capture, CaptureStandard, Collection
    from catalog.permissions import Role, assign_role
    from reconstruction import services, tasks
    from reconstruction.models import ReconstructionJob

    tasks.run_job.apply_async = lambda *a, **kw: None  # measure our side, not a broker round trip

    owner = get_user_model().objects.create_user("bench-owner", password=None)
    collection = Collection.objects.create(slug="bench", name="Bench", owner=owner)
    assign_role(owner, Role.ADMIN, collection)
    asset = catalog.create_asset(actor=owner, collection=collection, slug="bench-asset", name="Bench asset")
    standard = CaptureStandard.objects.create(name="bench", min_views=1, min_short_side_px=8, min_sharpness=0,
                                              max_clipped_fraction=1.0, min_neighbour_similarity=0)
    rng = np.random.default_rng(7)

    def png() -> io.BytesIO:
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8)).save(buffer, format="PNG")
        buffer.seek(0)
        return buffer

    capture: Capture = catalog.create_capture(actor=owner, collection=collection, name="bench shoot", standard=standard,
                                              images=[(f"v{i:03d}.png", png()) for i in range(args.views)])
    results: dict[str, Any] = {}

    submit_s, job_ids = [], []
    for i in range(max(args.repeat, args.jobs)):
        start = time.perf_counter()
        job, _ = services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere",
                                     parameters={"subdivisions": 3}, idempotency_key=f"bench-{i}")
        submit_s.append(time.perf_counter() - start)
        job_ids.append(job.pk)
    results["submit_job"] = summary(submit_s)
    start = time.perf_counter()
    services.submit_job(owner, capture=capture, asset=asset, backend="test-icosphere", parameters={"subdivisions": 3},
                        idempotency_key="bench-0")
    results["submit_job_replay_ms"] = round((time.perf_counter() - start) * 1000, 2)

    totals, backend_walls = [], []
    for job_id in job_ids[: args.jobs]:
        start = time.perf_counter()
        outcome = tasks.execute_job(job_id, worker="bench")
        totals.append(time.perf_counter() - start)
        assert outcome.status == "succeeded", outcome
        backend_walls.append(ReconstructionJob.objects.get(pk=job_id).resource_usage["wall_s"])
    overhead = [t - b for t, b in zip(totals, backend_walls, strict=True)]
    results["job_in_process"] = {
        "views": args.views, "image_px": args.size, "total": summary(totals), "backend": summary(backend_walls),
        "overhead_claim_materialise_ingest": summary(overhead),
    }

    running = ReconstructionJob.objects.get(pk=job_ids[-1])
    services.claim_job(job_id=running.pk, worker="beat")
    beats = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        services.heartbeat(job_id=running.pk, worker="beat", stage="meshing", progress=0.5)
        beats.append(time.perf_counter() - start)
    results["heartbeat"] = summary(beats)

    old = timezone.now() - dt.timedelta(hours=1)
    ReconstructionJob.objects.bulk_create([
        ReconstructionJob(capture=capture, asset=asset, backend="test-icosphere", backend_version="1.0.0",
                          idempotency_key=f"stalled-{i}", state=ReconstructionJob.State.RUNNING, worker=f"gone-{i}",
                          attempts=1, heartbeat_at=old, created_by=owner)
        for i in range(args.stalled)
    ])
    start = time.perf_counter()
    outcome = services.detect_stalled_jobs()
    sweep_s = time.perf_counter() - start
    results["stall_sweep"] = {"jobs": args.stalled, "requeued": len(outcome["requeued"]), "seconds": round(sweep_s, 3),
                              "per_job_ms": round(sweep_s / max(1, args.stalled) * 1000, 2)}

    client = Client()
    client.force_login(owner)
    for page_size in (10, 50):
        url = f"/api/v1/jobs/?page_size={page_size}"
        client.get(url)
        samples = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            response = client.get(url)
            samples.append(time.perf_counter() - start)
            assert response.status_code == 200
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        results[f"api_list_page_{page_size}"] = {**summary(samples), "queries": len(queries)}
    return results


def main() -> None:
    args = parse_args()
    with ThrowawayDatabase(os.environ.get("DATABASE_URL")) as database, \
            tempfile.TemporaryDirectory(prefix="assay-bench-media-") as media:
        os.environ["DATABASE_URL"] = database.url
        os.environ["ASSAY_MEDIA_ROOT"] = media
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", verbosity=0)
        results = run(args)
    import torch

    report = {
        "benchmark": "jobs",
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": {"python": platform.python_version(), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "database": "postgresql" if database.is_postgres else "sqlite",
                        "torch": torch.__version__},
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
