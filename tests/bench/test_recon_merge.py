"""`bench/recon.py --update` merges a partial run into the earlier report without losing what it did not rerun."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_bench():
    spec = importlib.util.spec_from_file_location("recon_bench", ROOT / "bench" / "recon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report(created, rows, photo_rows=(), backends=("sdf",)):
    return {
        "created": created,
        "environment": {"load_average_1m": 1.0},
        "backends": {name: {"version": "1"} for name in backends},
        "rows": rows,
        "photo_rows": list(photo_rows),
    }


def test_an_update_replaces_only_the_entries_it_measured():
    bench = load_bench()
    earlier = report(
        "T1",
        [{"object": "spot", "backends": {"sdf": {"v": "old"}, "nerf": {"v": "kept"}}, "pycolmap_sfm": {"r": 1}}],
        [{"photos": "castle", "images": 11, "photogrammetry": {"v": "kept"}}],
        backends=("sdf", "nerf"),
    )
    now = report("T2", [{"object": "spot", "backends": {"sdf": {"v": "new"}}}, {"object": "bunny", "backends": {}}])
    merged = bench.merged(earlier, now)
    spot = merged["rows"][0]
    assert spot["backends"] == {"sdf": {"v": "new"}, "nerf": {"v": "kept"}}
    assert spot["pycolmap_sfm"] == {"r": 1}  # not rerun: kept
    assert [row["object"] for row in merged["rows"]] == ["spot", "bunny"]
    assert merged["photo_rows"] == earlier["photo_rows"]
    assert set(merged["backends"]) == {"sdf", "nerf"}
    assert [u["created"] for u in merged["updates"]] == ["T1", "T2"] and merged["updates"][1]["entries"][
        0
    ] == "spot: sdf"
