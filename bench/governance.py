"""Governance benchmark (`make bench-governance`): audit appends, log verification, attestation signing.

Runs against a throwaway database beside the one DATABASE_URL names (PostgreSQL for the concurrent
append figure; SQLite serialises writers and is reported as such), migrated fresh and dropped afterwards.

  1. Audit appends per second with --writers threads, each on its own database connection, each append
     in its own transaction through `governance.audit.record_event`; then `verify_log()` must find the
     chain intact (dense seq, every leaf, a signed tree head).
  2. Verification of a large log: --db-events rows bulk-inserted (leaf hashes computed as record_event
     does) and checked end to end by `verify_log()` from the database; and a --memory-events log
     (1,000,000 by default) built in memory, because inserting a million rows through the append path
     would take this machine hours: recompute every leaf from its event document, build the RFC 9162 tree,
     compare with a signed root and check the signature.
  3. Attestations (in-toto Statement in DSSE, Ed25519) signed and verified per second, against raw
     Ed25519 sign/verify of the same PAE bytes in the same run.

Writes bench/results/governance.json.

    .venv/bin/python bench/governance.py [--writers 8] [--appends 250] [--db-events 100000] [--memory-events 1000000]
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "governance.json"
ROUNDS = 5
sys.path.insert(0, str(Path(__file__).resolve().parent))
from api import ThrowawayDatabase  # noqa: E402  (the same throwaway database as the API benchmark)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--appends", type=int, default=250, help="appends per writer")
    parser.add_argument("--db-events", type=int, default=100_000, help="rows bulk-inserted for the database verify")
    parser.add_argument("--memory-events", type=int, default=1_000_000, help="events of the in-memory verify")
    parser.add_argument("--attestations", type=int, default=2_000, help="envelopes signed and verified")
    return parser.parse_args()


def concurrent_appends(writers: int, appends: int) -> dict[str, Any]:
    from django.db import connection, connections, transaction

    from governance.audit import record_event

    errors: list[str] = []
    barrier = threading.Barrier(writers + 1)

    def writer(index: int) -> None:
        try:
            barrier.wait()
            for i in range(appends):
                with transaction.atomic():
                    record_event(actor="bench", action="bench.append", data={"writer": index, "i": i})
        except Exception as exc:  # reported in the results, never hidden
            errors.append(f"writer {index}: {exc!r}")
        finally:
            connections.close_all()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    total = writers * appends
    return {
        "writers": writers, "appends_per_writer": appends, "events": total, "seconds": round(seconds, 3),
        "appends_per_second": round(total / seconds, 1), "errors": errors, "database": connection.vendor,
    }


def chain_check() -> dict[str, Any]:
    from governance.tree_heads import sign_tree_head
    from governance.verification import verify_log

    head = sign_tree_head()
    started = time.perf_counter()
    report = verify_log()
    return {
        "tree_head_size": head.tree_size, "intact": report.ok, "problems": report.problems[:20],
        "verify_seconds": round(time.perf_counter() - started, 3),
    }


def bulk_log(count: int) -> float:
    """Append `count` well-formed events by bulk insert (same documents and leaf hashes as record_event)."""
    from django.db.models import Max
    from django.utils import timezone

    from governance.audit import leaf_hash
    from governance.models import AuditEvent

    start = (AuditEvent.objects.aggregate(m=Max("seq"))["m"] or -1) + 1
    now = timezone.now()
    began = time.perf_counter()
    batch: list[AuditEvent] = []
    for i in range(count):
        event = AuditEvent(seq=start + i, occurred_at=now, actor_name="bench", action="bench.bulk",
                           object_type="catalog.asset", object_id=str(i % 5000), asset_id=i % 5000,
                           data={"i": i}, changes={"state": ["draft", "in_review"]})
        event.leaf_hash = leaf_hash(event)
        batch.append(event)
        if len(batch) == 5000:
            AuditEvent.objects.bulk_create(batch)
            batch = []
    if batch:
        AuditEvent.objects.bulk_create(batch)
    return time.perf_counter() - began


def memory_verify(count: int) -> dict[str, Any]:
    """Recompute `count` leaves from event documents, build the tree, check a signed root: all in memory."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from governance.audit import canonical_json
    from governance.merkle import MerkleTree

    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def document(i: int) -> dict[str, Any]:
        return {
            "seq": i, "occurred_at": (base + dt.timedelta(milliseconds=i)).isoformat(timespec="microseconds"),
            "actor_id": 7, "actor_name": "bench", "action": "version.submitted", "object_type": "catalog.assetversion",
            "object_id": str(i), "object_repr": f"Asset {i % 5000} v{i // 5000}", "asset_id": i % 5000,
            "changes": {"state": ["open", "submitted"]}, "data": {}, "request_id": "0" * 32, "ip_address": "10.0.0.1",
        }

    # The stored leaf hashes, as the log would hold them (not timed).
    stored = b"".join(hashlib.sha256(b"\x00" + canonical_json(document(i))).digest() for i in range(count))
    key = Ed25519PrivateKey.generate()
    signed_root = MerkleTree(stored).root()
    head = canonical_json({"tree_size": count, "root_hash": signed_root.hex()})
    signature = key.sign(head)

    began = time.perf_counter()
    recomputed = bytearray()
    mismatches = 0
    for i in range(count):  # documents are rebuilt one at a time, as rows streamed from the database would be
        leaf = hashlib.sha256(b"\x00" + canonical_json(document(i))).digest()
        if leaf != stored[i * 32 : (i + 1) * 32]:
            mismatches += 1
        recomputed += leaf
    leaves_s = time.perf_counter() - began
    tree_began = time.perf_counter()
    root = MerkleTree(bytes(recomputed)).root()
    tree_s = time.perf_counter() - tree_began
    key.public_key().verify(signature, head)
    total = time.perf_counter() - began
    return {
        "events": count, "note": "documents built in memory; inserting 1e6 rows through record_event is too slow here",
        "recompute_leaves_seconds": round(leaves_s, 3), "build_tree_and_root_seconds": round(tree_s, 3),
        "total_seconds": round(total, 3), "root_matches": root == signed_root and mismatches == 0,
    }


def attestation_rates(count: int) -> dict[str, Any]:
    from governance import attestations, keys
    from governance.models import SigningKey

    key = keys.active_key(SigningKey.Purpose.ATTESTATION)
    public = keys.public_key_of(key)
    private = keys._private_key(key)
    subjects = [{"name": f"chair_lod{i}.glb", "digest": {"sha256": hashlib.sha256(bytes([i])).hexdigest()}} for i in range(3)]
    predicate = {
        "buildDefinition": {
            "buildType": "https://assay.dev/build-types/photogrammetry@1.2.0",
            "externalParameters": {"backend": "photogrammetry", "parameters": {"max_image_size": 1600}, "capture": 1},
            "internalParameters": {"queue": "gpu"},
            "resolvedDependencies": [
                {"uri": f"assay:capture/1/img_{i:03d}.jpg", "name": f"img_{i:03d}.jpg",
                 "digest": {"sha256": hashlib.sha256(str(i).encode()).hexdigest()}} for i in range(24)
            ],
        },
        "runDetails": {"builder": {"id": "https://assay.dev/builders/worker/gpu-1"},
                       "metadata": {"invocationId": "assay:job/1", "startedOn": "2026-01-01T00:00:00+00:00",
                                    "finishedOn": "2026-01-01T00:10:00+00:00"}},
    }
    statement = attestations.statement(subjects, attestations.SLSA_PROVENANCE, predicate)

    message = attestations.pae(attestations.PAYLOAD_TYPE, json.dumps(statement).encode())
    per_round = max(1, count // ROUNDS)
    timings: dict[str, list[float]] = {"sign": [], "verify": [], "raw_sign": [], "raw_verify": []}
    # Interleaved rounds, median of each: the machine is shared, so load shifts during a run.
    for _ in range(ROUNDS):
        began = time.perf_counter()
        envelopes = [attestations.sign_statement(statement, key) for _ in range(per_round)]
        timings["sign"].append(time.perf_counter() - began)
        began = time.perf_counter()
        for envelope in envelopes:
            attestations.verify_envelope(envelope, expected_key=public)
        timings["verify"].append(time.perf_counter() - began)
        began = time.perf_counter()
        signatures = [private.sign(message) for _ in range(per_round)]
        timings["raw_sign"].append(time.perf_counter() - began)
        began = time.perf_counter()
        for signature in signatures:
            public.verify(signature, message)
        timings["raw_verify"].append(time.perf_counter() - began)
    sign_s, verify_s, raw_sign_s, raw_verify_s = (statistics.median(timings[k]) for k in timings)
    count = per_round

    both = count / (sign_s + verify_s)
    raw_both = count / (raw_sign_s + raw_verify_s)
    return {
        "rounds": ROUNDS, "per_round": count, "payload_bytes": len(envelopes[0]["payload"]) * 3 // 4,
        "attestation_sign_per_second": round(count / sign_s, 1), "attestation_verify_per_second": round(count / verify_s, 1),
        "attestation_sign_and_verify_per_second": round(both, 1),
        "raw_ed25519_sign_per_second": round(count / raw_sign_s, 1),
        "raw_ed25519_verify_per_second": round(count / raw_verify_s, 1),
        "raw_sign_and_verify_per_second": round(raw_both, 1),
        "ratio_to_raw": round(both / raw_both, 3), "target_ratio": 0.5,
    }


def main() -> None:
    args = parse_args()
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DJANGO_DEBUG"] = "0"
    os.environ.setdefault("DJANGO_SECRET_KEY", uuid.uuid4().hex * 2)
    keydir = tempfile.TemporaryDirectory(prefix="assay-bench-keys-")
    os.environ["ASSAY_KEY_DIR"] = keydir.name
    with ThrowawayDatabase(os.environ.get("DATABASE_URL")) as database:
        os.environ["DATABASE_URL"] = database.url
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        print(f"Migrating the throwaway database {database.url.rsplit('/', 1)[-1]}…", flush=True)
        call_command("migrate", verbosity=0)
        results: dict[str, Any] = {
            "environment": {
                "python": platform.python_version(), "django": django.get_version(), "database": connection.vendor,
                "server_version": getattr(connection, "pg_version", None), "cpu_count": os.cpu_count(),
                "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
                "measured_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        }
        print(f"1 writer × {args.appends} appends (baseline: the cost of one serialised append and its commit)…", flush=True)
        results["single_writer_appends"] = concurrent_appends(1, args.appends)
        print(json.dumps(results["single_writer_appends"]), flush=True)
        print(f"{args.writers} writers × {args.appends} appends…", flush=True)
        results["concurrent_appends"] = concurrent_appends(args.writers, args.appends)
        results["concurrent_appends"]["chain"] = chain_check()
        print(json.dumps(results["concurrent_appends"]), flush=True)

        print(f"Bulk-inserting {args.db_events} events and verifying from the database…", flush=True)
        insert_s = bulk_log(args.db_events)
        chain = chain_check()
        results["database_verify"] = {"events": chain["tree_head_size"], "bulk_insert_seconds": round(insert_s, 3),
                                      **chain, "events_per_second": round(chain["tree_head_size"] / chain["verify_seconds"], 1)}
        print(json.dumps(results["database_verify"]), flush=True)

        print(f"In-memory verification of {args.memory_events} events…", flush=True)
        results["memory_verify"] = memory_verify(args.memory_events)
        print(json.dumps(results["memory_verify"]), flush=True)

        print(f"Signing and verifying {args.attestations} attestations…", flush=True)
        results["attestations"] = attestation_rates(args.attestations)
        print(json.dumps(results["attestations"]), flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"Wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
