"""Presets end to end on small meshes: budgets, LOD chain, validators, progress, cancellation and the CLI."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from reconstruction.engine.errors import Cancelled
from reconstruction.engine.postprocess.cli import main
from reconstruction.engine.postprocess.errors import BadInput
from reconstruction.engine.postprocess.pipeline import run_pipeline, switch_distance
from reconstruction.engine.postprocess.presets import PRESETS, get_preset

from .meshes import SPOT

# Small maps keep the tests quick; assimp writes the FBX here (one Blender start per file is slow), the
# Blender path is covered in test_export.py and by the subprocess test below.
SMALL = {"unwrap_and_bake": {"size": 128, "ao_rays": 2}, "textures": {"max_size": 256}, "export": {"fbx_writer": "assimp"}}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def coloured_scan(tmp_path):
    """A vertex-coloured icosphere in millimetres, Z up, as a scanner writes PLY."""
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=100.0)
    colours = np.column_stack([(mesh.vertices[:, 0] > 0) * 255, np.full(len(mesh.vertices), 64),
                               (mesh.vertices[:, 2] > 0) * 255, np.full(len(mesh.vertices), 255)]).astype(np.uint8)
    mesh.visual.vertex_colors = colours
    path = tmp_path / "scan.ply"
    mesh.export(path)
    return path


def test_mobile_ar_meets_its_budgets_and_every_file_validates(tmp_path):
    events = []
    report = run_pipeline(SPOT, tmp_path / "out", "mobile-ar", overrides=SMALL,
                          progress=lambda stage, fraction, message: events.append((stage, fraction)))
    assert report["validation_passed"] is True
    assert all(budget["met"] for budget in report["budgets"].values())
    assert report["budgets"]["lod0_glb_bytes"]["limit"] == 5_000_000
    levels = report["lods"]
    assert [row["triangles"] for row in levels] == [5856, 2928, 1464, 586]
    distances = [row["switch_distance_m"] for row in levels]
    assert distances == sorted(distances) and distances[0] > 0
    for row in levels:
        assert set(row["files"]) == {"glb", "usdz", "fbx"}
        for result in row["files"].values():
            assert Path(result["path"]).is_file() and result["validation"]["errors"] == []
    assert json.loads((tmp_path / "out" / "report.json").read_text())["lods"][0]["triangles"] == 5856
    fractions = [fraction for _, fraction in events]
    assert fractions == sorted(fractions) and events[-1] == ("done", 1.0)
    assert {step["step"] for step in report["steps"]} >= {"load", "cleanup", "decimate", "lods", "export"}
    # Spot's own UVs survive decimation, so its texture is reused, not baked again.
    assert report["unwrap_and_bake"]["skipped"] is True


@pytest.mark.parametrize("limit", [160_000, 100_000])
def test_glb_over_its_size_budget_gets_smaller_textures(tmp_path, limit):
    overrides = {**SMALL, "textures": {"max_size": 2048}, "export": {"fbx_writer": "assimp", "max_glb_bytes": limit},
                 "lods": {"ratios": [1.0], "screen_sizes": [0.5]}}
    report = run_pipeline(SPOT, tmp_path / "out", "mobile-ar", overrides=overrides)
    attempts = report["glb_budget"]["attempts"]
    sides = [a["max_texture"] for a in attempts]
    assert sides[0] == 1024 and len(sides) > 1 and all(b == a // 2 for a, b in zip(sides, sides[1:], strict=False))
    assert attempts[0]["bytes"] > limit
    assert report["budgets"]["texture_size"]["value"] == sides[-1]
    assert report["validation_passed"] is True
    if limit == 160_000:
        assert attempts[-1]["bytes"] <= limit and report["budgets"]["lod0_glb_bytes"]["met"]
    else:  # Spot's geometry alone is larger: textures stop at 256² and the miss is reported, not hidden
        assert sides[-1] == 256 and not report["glb_budget"]["met"] and not report["budgets"]["lod0_glb_bytes"]["met"]


def test_switch_distance_for_a_sixty_degree_view():
    # A 1 m radius sphere fills half the view height at 1 / (0.5 · tan 30°) ≈ 3.46 m.
    assert switch_distance(1.0, 0.5) == pytest.approx(3.4641, abs=1e-4)
    assert switch_distance(1.0, 0.0) is None


def test_vertex_coloured_scan_is_scaled_rotated_and_baked(coloured_scan, tmp_path):
    report = run_pipeline(coloured_scan, tmp_path / "out", "web", unit="mm", up_axis="Z",
                          overrides={**SMALL, "lods": {"ratios": [1.0, 0.5], "screen_sizes": [0.5, 0.2]}})
    assert report["lods"][0]["files"]["fbx"]["validation"]["details"]["writer"] == "assimp"
    assert report["units"]["metres_per_source_unit"] == 0.001
    extent = report["units"]["extent_m"]
    assert extent == pytest.approx([0.2, 0.2, 0.2], abs=0.01)
    assert report["unwrap_and_bake"]["reason"] == "vertex colours are baked into a texture"
    assert report["unwrap_and_bake"]["bake"]["texels_missed"] == 0
    assert report["validation_passed"] is True


def test_web_adds_an_msft_lod_chain_and_meshopt_copies(tmp_path):
    lods = {"ratios": [1.0, 0.5], "screen_sizes": [0.5, 0.2]}
    report = run_pipeline(SPOT, tmp_path / "out", "web", overrides={**SMALL, "lods": lods})
    assert report["validation_passed"] is True
    chain = report["lod_chain"]
    assert chain["path"] == str(tmp_path / "out" / "spot_lods.glb") and chain["validation"]["errors"] == []
    for row in report["lods"]:
        plain, packed = row["files"]["glb"], row["files"]["glb-meshopt"]
        assert packed["path"] == plain["path"].replace(".glb", ".meshopt.glb")
        assert packed["validation"]["passed"] and packed["bytes"] < plain["bytes"]
    # The chain holds both levels' geometry and the shared texture once: less than the two files together.
    assert max(r["files"]["glb"]["bytes"] for r in report["lods"]) < chain["bytes"] < sum(
        r["files"]["glb"]["bytes"] for r in report["lods"])


def test_unknown_compression_and_compression_without_glb_are_refused(tmp_path):
    with pytest.raises(BadInput, match="^unknown compression draco; supported: meshopt$"):
        run_pipeline(SPOT, tmp_path / "a", "web", overrides={"export": {"compress": ["draco"]}})
    with pytest.raises(BadInput, match="^GLB compression and MSFT_lod need 'glb' among the export formats$"):
        run_pipeline(SPOT, tmp_path / "b", "web", overrides={"export": {"formats": ["usdz"]}})


def test_cancel_stops_between_steps(tmp_path):
    calls = []

    def cancel() -> bool:
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled, match="^post-processing cancelled before step 'cleanup'$"):
        run_pipeline(SPOT, tmp_path / "out", "web", cancel=cancel)
    assert not (tmp_path / "out" / "report.json").exists()


def test_unknown_preset_and_unknown_override_are_refused(tmp_path):
    with pytest.raises(BadInput, match="^unknown preset 'vr'; choose one of web, mobile-ar, game, archive$"):
        run_pipeline(SPOT, tmp_path, "vr")
    with pytest.raises(BadInput, match="^preset 'archive' has no step decimate; its steps: "):
        get_preset("archive").with_overrides({"decimate": {"max_triangles": 10}})


def test_every_preset_exports_glb_usdz_and_fbx():
    for preset in PRESETS.values():
        assert {"glb", "usdz", "fbx"} <= set(preset.params("export")["formats"])
    assert {"obj", "ply"} <= set(PRESETS["archive"].params("export")["formats"])
    assert PRESETS["mobile-ar"].params("decimate")["max_triangles"] == 100_000
    assert PRESETS["mobile-ar"].params("textures")["max_size"] == 2048


def test_cli_main_writes_every_lod_and_the_report(tmp_path, capsys):
    code = main(["postprocess", "--preset", "archive", "--mesh", SPOT, "--out", str(tmp_path / "out"), "--quiet",
                 "--set", "export.fbx_writer=assimp"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["validation_passed"] is True
    files = summary["lods"][0]["files"]
    assert set(files) == {"glb", "usdz", "fbx", "obj", "ply"}
    assert all(Path(path).is_file() for path in files.values())
    assert (tmp_path / "out" / "report.json").is_file()


def test_cli_names_the_msft_lod_file_of_web(tmp_path, capsys):
    code = main(["postprocess", "--preset", "web", "--mesh", SPOT, "--out", str(tmp_path / "out"), "--quiet",
                 "--set", "export.fbx_writer=assimp", "--set", "lods.ratios=[1.0, 0.5]",
                 "--set", "lods.screen_sizes=[0.5, 0.2]"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["lod_chain"] == str(tmp_path / "out" / "spot_lods.glb") and Path(summary["lod_chain"]).is_file()
    assert set(summary["lods"][1]["files"]) == {"glb", "glb-meshopt", "usdz", "fbx"}


def test_cli_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    (tmp_path / "empty.glb").write_bytes(b"")
    code = main(["postprocess", "--preset", "web", "--mesh", str(tmp_path / "empty.glb"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert capsys.readouterr().err.strip().endswith("error: empty.glb: file is empty")


@pytest.mark.slow
def test_engine_cli_runs_postprocess_in_a_subprocess(coloured_scan, tmp_path):
    out = tmp_path / "out"
    completed = subprocess.run(
        [sys.executable, "-m", "reconstruction.engine", "postprocess", "--preset", "game", "--mesh", str(coloured_scan),
         "--out", str(out), "--unit", "mm", "--set", "unwrap_and_bake.size=128", "--set", "unwrap_and_bake.ao_rays=2",
         "--set", "textures.max_size=128", "--set", "retopology.max_triangles=600", "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads((out / "report.json").read_text())
    assert len(report["lods"]) == 5 and report["lods"][0]["triangles"] <= 600
    fbx = report["lods"][0]["files"]["fbx"]["validation"]
    assert fbx["details"]["encoding"] == "binary" and fbx["tool"] == "Blender FBX importer (re-import)"
    assert report["validation_passed"] is True
    for level in range(5):
        assert (out / f"lod{level}" / f"scan_lod{level}.glb").is_file()
        assert (out / f"lod{level}" / f"scan_lod{level}.usdz").is_file()
        assert (out / f"lod{level}" / "fbx" / f"scan_lod{level}.fbx").is_file()
