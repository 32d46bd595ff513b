import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from reconstruction.engine import cli
from reconstruction.engine.backends.visual_hull import VisualHullBackend
from reconstruction.engine.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_module_entry_lists_backends():
    done = subprocess.run(
        [sys.executable, "-m", "reconstruction.engine", "backends"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"visual-hull {VisualHullBackend.version}: inputs multi_view; views ≥3; CPU" in done.stdout


@pytest.mark.slow
def test_backends_json(capsys):
    assert main(["backends", "--json"]) == 0
    listed = {b["name"]: b for b in json.loads(capsys.readouterr().out)}
    assert listed["visual-hull"]["capabilities"]["needs_known_cameras"] is True
    assert listed["visual-hull"]["parameter_schema"]["properties"]["resolution"]["type"] == "integer"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "nope"], "error: No backend named 'nope' is installed (installed: "),
        (["--backend", "visual-hull", "--param", "resolution=high"], "error: Parameter resolution must be an integer"),
        (["--backend", "visual-hull", "--param", "voxels=3"], "error: Invalid parameters: unknown parameter 'voxels'"),
    ],
)
def test_run_refuses_bad_input_with_one_line(argv, message, sphere_capture, tmp_path, capsys):
    code = main(["run", *argv, "--images", str(sphere_capture), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(message)
    assert err.count("\n") == 1


def test_run_refuses_a_folder_without_images(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["run", "--backend", "visual-hull", "--images", str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert code == 2
    assert capsys.readouterr().err == f"error: No JPEG or PNG images in {tmp_path / 'empty'}.\n"


def test_run_refuses_photos_without_cameras(tmp_path, capsys, sphere_capture):
    photos = tmp_path / "photos"
    photos.mkdir()
    for image in sorted((sphere_capture / "images").iterdir())[:4]:
        (photos / image.name).write_bytes(image.read_bytes())
    code = main(["run", "--backend", "visual-hull", "--images", str(photos), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    assert "visual-hull needs calibrated cameras" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.slow
def test_run_writes_mesh_and_report(sphere_capture, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "run",
            "--backend",
            "visual-hull",
            "--images",
            str(sphere_capture),
            "--out",
            str(out),
            "--param",
            "resolution=16",
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "result.json").read_text())
    assert report["mesh"] == "mesh.glb" and report["cameras"] == "sparse"
    assert report["parameters"]["resolution"] == 16
    assert (out / "mesh.glb").stat().st_size > 0
    assert sorted(p.name for p in out.iterdir()) == ["mesh.glb", "result.json", "sparse"]  # no scratch left


@pytest.mark.slow
def test_render_then_evaluate(sphere_glb, tmp_path, capsys):
    assert (
        main(["render", "--mesh", str(sphere_glb), "--views", "3", "--size", "32", "--out", str(tmp_path / "c")]) == 0
    )
    assert len(list((tmp_path / "c" / "images").iterdir())) == 3
    code = main(
        [
            "evaluate",
            "--mesh",
            str(sphere_glb),
            "--reference",
            str(sphere_glb),
            "--cameras",
            str(tmp_path / "c"),
            "--samples",
            "5000",
            "--out",
            str(tmp_path / "metrics.json"),
        ]
    )
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["geometry"]["volume_iou"] == 1.0
    assert metrics["images"]["psnr"] > 100  # the reference rendered from its own cameras (float rounding only)
    assert metrics["images"]["lpips"]["available"] is False


def test_render_and_evaluate_refuse_missing_files(tmp_path, capsys):
    assert main(["render", "--mesh", str(tmp_path / "x.glb"), "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'x.glb'} does not exist.\n"
    assert main(["evaluate", "--mesh", str(tmp_path / "x.glb"), "--reference", str(tmp_path / "y.glb")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'x.glb'} does not exist.\n"


def test_postprocess_subcommand_is_added_when_present(monkeypatch, capsys):
    module = types.ModuleType(cli.POSTPROCESS_CLI)

    def add_parser(subparsers):
        parser = subparsers.add_parser("postprocess")
        parser.set_defaults(handler=lambda args: print("post-processed") or 0)

    module.add_parser = add_parser
    monkeypatch.setitem(sys.modules, cli.POSTPROCESS_CLI, module)
    assert main(["postprocess"]) == 0
    assert capsys.readouterr().out == "post-processed\n"
