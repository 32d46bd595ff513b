"""API benchmark (`make bench`): latency and SQL queries per request of the catalog API at scale.

Seeds a throwaway database (a fresh PostgreSQL database beside the one DATABASE_URL names, or a temporary
SQLite file), then measures, through Django's test client with token authentication, as a user who sees
a subset of the collections through a team:
  list (two page sizes), filtered list, detail, representation metadata, and a file download;
and beside each list the raw SQL floor: the same SQL statements re-executed directly on the connection.
Writes bench/results/api.json with the environment. The database is dropped afterwards.

    .venv/bin/python bench/api.py [--assets 2000] [--collections 100] [--users 200] [--visible 20] [--repeat 60]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "api.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", type=int, default=2000, help="assets to seed (each: version, variant, LOD, file)")
    parser.add_argument("--collections", type=int, default=100)
    parser.add_argument("--users", type=int, default=200, help="users holding viewer grants on random collections")
    parser.add_argument("--visible", type=int, default=20, help="collections the measured user sees through a team")
    parser.add_argument("--blobs", type=int, default=20, help="distinct real GLB files the representations share")
    parser.add_argument("--repeat", type=int, default=60, help="timed requests per case (after 5 warm-up requests)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--keep-database", action="store_true", help="do not drop the throwaway database")
    return parser.parse_args()


# Throwaway database ------------------------------------------------------------------------------


class ThrowawayDatabase:
    """A new, empty database named after this run; DATABASE_URL points at it while the benchmark runs."""

    def __init__(self, base_url: str | None) -> None:
        self.base_url = base_url
        self.name = f"assay_bench_{uuid.uuid4().hex[:10]}"
        self.url = ""
        self.sqlite_dir: tempfile.TemporaryDirectory[str] | None = None
        self.keep = False

    @property
    def is_postgres(self) -> bool:
        return bool(self.base_url) and urlsplit(self.base_url).scheme in ("postgres", "postgresql", "pgsql")

    def __enter__(self) -> ThrowawayDatabase:
        if self.is_postgres:
            import psycopg

            parts = urlsplit(self.base_url)
            with psycopg.connect(self._maintenance_url(), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
            self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
        else:
            self.sqlite_dir = tempfile.TemporaryDirectory(prefix="assay-bench-")
            self.url = f"sqlite:///{self.sqlite_dir.name}/bench.sqlite3"
        return self

    def _maintenance_url(self) -> str:
        return urlunsplit(urlsplit(self.base_url)._replace(path="/postgres"))

    def __exit__(self, *exc: Any) -> None:
        from django.db import connections

        connections.close_all()
        if self.keep:
            return
        if self.is_postgres:
            import psycopg

            with psycopg.connect(self._maintenance_url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        elif self.sqlite_dir is not None:
            self.sqlite_dir.cleanup()


# Seeding -----------------------------------------------------------------------------------------


def seed(args: argparse.Namespace) -> dict[str, Any]:
    """Bulk-insert the catalog (the services' per-row audit would take hours at this size; what is measured
    here is reading). Files are real GLBs stored through catalog.storage and shared by many representations."""
    import io

    import trimesh
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from catalog.models import (
        LOD,
        Asset,
        AssetVersion,
        Collection,
        CollectionGroupObjectPermission,
        CollectionUserObjectPermission,
        Representation,
        Tag,
        Variant,
    )
    from catalog.storage import store_stream
    from governance.models import Licence

    rng = random.Random(20261125)
    User = get_user_model()
    started = time.perf_counter()
    owner = User.objects.create_user("bench-owner", password=None)
    users = User.objects.bulk_create([User(username=f"bench-user-{i}") for i in range(args.users)])
    collections = Collection.objects.bulk_create([
        Collection(slug=f"collection-{i:04d}", name=f"Collection {i}", owner=owner) for i in range(args.collections)
    ])
    licences = Licence.objects.bulk_create([
        Licence(spdx_id="CC0-1.0", name="CC0 1.0"), Licence(spdx_id="CC-BY-4.0", name="CC BY 4.0", attribution="x"),
    ])
    tags = Tag.objects.bulk_create([Tag(name=f"tag-{i}") for i in range(40)])
    categories = ["furniture/chair", "furniture/table", "food/fruit", "toys/figure", "apparel/shoe", "lighting/lamp"]
    states = [Asset.State.PUBLISHED] * 6 + [Asset.State.DRAFT, Asset.State.IN_REVIEW, Asset.State.APPROVED,
                                             Asset.State.DEPRECATED]

    blobs = []
    for i in range(args.blobs):
        data = trimesh.creation.icosphere(subdivisions=2 + i % 3, radius=0.1 + i / 100).export(file_type="glb")
        blob, _ = store_stream(io.BytesIO(data), filename=f"model-{i}.glb")
        blobs.append(blob)

    now = timezone.now()
    assets = Asset.objects.bulk_create([
        Asset(collection=collections[i % len(collections)], slug=f"asset-{i:06d}", name=f"Asset {i}",
              description="Seeded for the API benchmark.", category=rng.choice(categories), owner=owner,
              state=rng.choice(states), licence=rng.choice(licences))
        for i in range(args.assets)
    ], batch_size=2000)
    Through = Asset.tags.through
    Through.objects.bulk_create([
        Through(asset_id=a.pk, tag_id=t.pk) for a in assets for t in rng.sample(tags, 2)
    ], batch_size=5000)
    versions = AssetVersion.objects.bulk_create([
        AssetVersion(asset=a, number=1, state=AssetVersion.State.PUBLISHED, created_by=owner, submitted_at=now,
                     published_at=now, metadata={"units": "m"})
        for a in assets
    ], batch_size=2000)
    variants = Variant.objects.bulk_create([Variant(version=v, name="default") for v in versions], batch_size=2000)
    lods = LOD.objects.bulk_create([LOD(variant=v, level=0, triangle_count=1280) for v in variants], batch_size=2000)
    Representation.objects.bulk_create([
        Representation(lod=lod, file=blobs[i % len(blobs)], filename="model.glb", format="glb",
                       validation_status=Representation.Validation.VALID)
        for i, lod in enumerate(lods)
    ], batch_size=2000)

    view = Permission.objects.get(codename="view_collection", content_type__app_label="catalog")
    CollectionUserObjectPermission.objects.bulk_create([
        CollectionUserObjectPermission(user=u, permission=view, content_object=c)
        for u in users for c in rng.sample(collections, min(5, len(collections)))
    ], batch_size=5000)
    team = Group.objects.create(name="bench-team")
    visible = collections[: args.visible]
    CollectionGroupObjectPermission.objects.bulk_create([
        CollectionGroupObjectPermission(group=team, permission=view, content_object=c) for c in visible
    ])
    reader = User.objects.create_user("bench-reader", password=None)
    reader.groups.add(team)
    token = Token.objects.create(user=reader)

    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    visible_ids = {c.pk for c in visible}
    sample_asset = next(a for a in assets if a.collection_id in visible_ids)
    sample_rep = Representation.objects.filter(lod__variant__version__asset=sample_asset).first()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "token": token.key,
        "asset_id": sample_asset.pk,
        "representation_id": sample_rep.pk,
        "rows": {
            "users": args.users + 2, "collections": args.collections, "assets": args.assets,
            "versions": len(versions), "representations": len(lods), "blobs": len(blobs),
            "user_object_permissions": CollectionUserObjectPermission.objects.count(),
            "assets_visible_to_reader": sum(1 for a in assets if a.collection_id in visible_ids),
        },
    }


# Measuring ---------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(client: Any, url: str, repeat: int, *, stream: bool = False) -> dict[str, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def one() -> tuple[float, int, Any, list[str]]:
        with CaptureQueriesContext(connection) as queries:
            cpu_started = time.process_time()
            started = time.perf_counter()
            response = client.get(url)
            if stream:
                size = sum(len(chunk) for chunk in response.streaming_content)
            else:
                size = len(response.content)
            elapsed = time.perf_counter() - started
            response.cpu_ms = (time.process_time() - cpu_started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}: {response.content[:500]!r}")
        response.size = size
        return elapsed, len(queries), response, [q["sql"] for q in queries.captured_queries]

    for _ in range(5):
        one()
    timings, counts, cpu = [], [], []
    last_sql: list[str] = []
    size = 0
    for _ in range(repeat):
        elapsed, count, response, last_sql = one()
        timings.append(elapsed * 1000)
        counts.append(count)
        cpu.append(response.cpu_ms)
        size = response.size
    return {
        "url": url,
        "requests": repeat,
        "p50_ms": round(statistics.median(timings), 2),
        "p95_ms": round(percentile(timings, 95), 2),
        "p99_ms": round(percentile(timings, 99), 2),
        "mean_ms": round(statistics.fmean(timings), 2),
        # CPU time of the Django process alone: less sensitive than wall time to other load on a shared machine.
        "django_cpu_p50_ms": round(statistics.median(cpu), 2),
        "queries_per_request": max(counts),
        "queries_min": min(counts),
        "response_bytes": size,
        "_sql": last_sql,
    }


def sql_floor(statements: list[str], repeat: int) -> dict[str, Any]:
    """Re-run the request's own SQL statements straight on the connection: the time the database needs."""
    from django.db import connection

    def run_all() -> float:
        started = time.perf_counter()
        with connection.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)  # no parameters: the captured text is already interpolated
                if cursor.description is not None:
                    cursor.fetchall()
        return time.perf_counter() - started

    for _ in range(3):
        run_all()
    timings = [run_all() * 1000 for _ in range(repeat)]
    return {"p50_ms": round(statistics.median(timings), 2), "p95_ms": round(percentile(timings, 95), 2),
            "statements": len(statements)}


def environment(database: ThrowawayDatabase) -> dict[str, Any]:
    import django
    import rest_framework
    from django.db import connection

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=False).stdout.strip()
    except OSError:
        commit = ""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            server = f"PostgreSQL {cursor.fetchone()[0]}"
        else:
            cursor.execute("select sqlite_version()")
            server = f"SQLite {cursor.fetchone()[0]}"
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(), "django": django.get_version(), "djangorestframework": rest_framework.VERSION,
        "database": server, "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in load] if load else None,
        "git_commit": commit, "client": "django.test.Client, in process (no network, no web server)",
        "auth": "DRF token; the user sees its collections through a group (team) with object permissions",
    }


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    media = tempfile.TemporaryDirectory(prefix="assay-bench-media-")
    os.environ["ASSAY_MEDIA_ROOT"] = media.name
    # Production-like: no DEBUG query log, so the numbers do not include Django's debug bookkeeping.
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", uuid.uuid4().hex * 2)
    with ThrowawayDatabase(os.environ.get("DATABASE_URL")) as database:
        os.environ["DATABASE_URL"] = database.url
        import django

        django.setup()
        from django.core.management import call_command
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()
        print(f"Migrating the throwaway database {database.url.rsplit('/', 1)[-1]}…", flush=True)
        call_command("migrate", verbosity=0)
        env = environment(database)
        print(f"Seeding {args.assets} assets in {args.collections} collections…", flush=True)
        seeded = seed(args)
        print(f"Seeded in {seeded['seconds']} s; measuring {args.repeat} requests per case…", flush=True)
        client = Client(HTTP_AUTHORIZATION=f"Token {seeded['token']}")
        asset, rep = seeded["asset_id"], seeded["representation_id"]
        cases = {
            "list_page_50": ("/api/v1/assets/?page_size=50", False),
            "list_page_10": ("/api/v1/assets/?page_size=10", False),
            "list_page_200": ("/api/v1/assets/?page_size=200", False),
            "filtered_list": ("/api/v1/assets/?state=published&category=furniture&tag=tag-3&page_size=50", False),
            "search_list": ("/api/v1/assets/?search=asset-0001&page_size=50", False),
            "detail": (f"/api/v1/assets/{asset}/", False),
            "representation_metadata": (f"/api/v1/representations/{rep}/", False),
            "download": (f"/api/v1/representations/{rep}/download/", True),
        }
        results: dict[str, Any] = {}
        for name, (url, stream) in cases.items():
            result = measure(client, url, args.repeat, stream=stream)
            statements = result.pop("_sql")
            if name.startswith(("list", "filtered", "search")):
                result["raw_sql_floor"] = sql_floor(statements, args.repeat)
            results[name] = result
            floor = result.get("raw_sql_floor", {}).get("p50_ms")
            print(f"  {name:26s} p50 {result['p50_ms']:7.2f} ms  p95 {result['p95_ms']:7.2f} ms  "
                  f"{result['queries_per_request']:2d} queries" + (f"  (SQL floor p50 {floor} ms)" if floor else ""),
                  flush=True)
        document = {
            "benchmark": "catalog API",
            "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "parameters": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "environment": env,
            "seed": {k: v for k, v in seeded.items() if k != "token"},
            "targets": {"list_p50_ms": 30, "list_queries": 10},
            "results": results,
        }
        if args.keep_database:
            document["database_kept"] = database.url
            database.keep = True
    media.cleanup()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
