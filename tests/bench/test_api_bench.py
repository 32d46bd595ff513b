"""`bench/api.py` runs end to end on a tiny seed and writes a complete, well-formed result file."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = {"list_page_50", "list_page_10", "list_page_200", "filtered_list", "search_list", "detail",
         "representation_metadata", "download"}


@pytest.mark.slow
def test_the_api_benchmark_writes_its_results(tmp_path):
    output = tmp_path / "api.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # a throwaway SQLite file, not the test db
    completed = subprocess.run(
        [sys.executable, "bench/api.py", "--assets", "40", "--collections", "4", "--users", "3", "--visible", "2",
         "--blobs", "2", "--repeat", "3", "--output", str(output)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    document = json.loads(output.read_text())
    assert set(document["results"]) == CASES
    assert document["seed"]["rows"]["assets"] == 40
    assert document["seed"]["rows"]["assets_visible_to_reader"] == 20  # 2 of 4 collections, assets dealt round-robin
    assert document["environment"]["database"].startswith("SQLite")
    for name, result in document["results"].items():
        assert result["requests"] == 3 and result["p50_ms"] > 0, name
    lists = [document["results"][n] for n in ("list_page_10", "list_page_50", "list_page_200")]
    assert len({r["queries_per_request"] for r in lists}) == 1  # the same SQL cost at any page size
    assert lists[0]["queries_per_request"] < 10
    assert "raw_sql_floor" in document["results"]["list_page_50"]
    assert document["results"]["download"]["response_bytes"] > 0
