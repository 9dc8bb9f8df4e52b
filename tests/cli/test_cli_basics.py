"""The CLI as a user runs it: real subprocesses, exit codes, one-line errors, outputs on disk."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pytest
from rasterio.crs import CRS

from tests.conftest import REPO

GEOSEG = [sys.executable, "-m", "geoseg.cli"] if shutil.which("geoseg") is None else ["geoseg"]


def geoseg(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([*GEOSEG, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_teaches_the_commands():
    out = geoseg("--help")
    assert out.returncode == 0
    for cmd in ("run", "validate", "steps", "info", "eval", "train"):
        assert cmd in out.stdout
    run_help = geoseg("run", "--help").stdout
    assert "--set" in run_help and "Examples" in run_help


def test_info_reports_gsd_in_metres(plus_tif):
    out = geoseg("info", plus_tif, "--json")
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["crs"] == "EPSG:32633" and record["width"] == 120
    assert record["gsd_m"] == pytest.approx([0.5002, 0.5002], abs=2e-4)


def test_info_shows_every_readable_input_and_says_the_others(plus_tif, tmp_path):
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    out = geoseg("info", empty, plus_tif, "--json")
    assert out.returncode == 1
    assert out.stderr == f"geoseg: error: {empty}: the file is empty (0 bytes)\n"
    assert json.loads(out.stdout)["width"] == 120


def test_run_writes_shapefile_with_input_crs_and_batch_goes_on(plus_tif, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "missing.tif"
    res = geoseg("run", "pipelines/mask_to_centerlines.yaml", plus_tif, missing, "-o", out, "--progress", "json")
    assert res.returncode == 1  # one scene failed
    events = [json.loads(line) for line in res.stdout.splitlines()]
    assert events[0] == {"event": "start", "total": 2, "unit": "scene"}
    by_name = {Path(e["input"]).name: e for e in events[1:]}
    assert {name: e["status"] for name, e in by_name.items()} == {"plus.tif": "done", "missing.tif": "failed"}
    assert "missing.tif: no such file" in by_name["missing.tif"]["error"]
    assert "Traceback" not in res.stderr
    lines = gpd.read_file(out / "plus.shp")
    assert CRS.from_user_input(lines.crs) == CRS.from_epsg(32633)
    assert len(lines) == 4 and (out / "plus_nodes.shp").exists()
    assert not (out / "missing.shp").exists()


def test_cli_and_python_api_give_the_same_network(plus_tif, tmp_path):
    import geoseg as api

    res = geoseg("run", "mask_to_centerlines", plus_tif, "-o", tmp_path, "--format", "geojson", "--progress", "none")
    assert res.returncode == 0, res.stderr
    from_cli = gpd.read_file(tmp_path / "plus.geojson")
    from_api = api.run(REPO / "pipelines" / "mask_to_centerlines.yaml", plus_tif).lines
    assert len(from_cli) == len(from_api)
    assert from_cli.geometry.normalize().geom_equals_exact(from_api.geometry.normalize(), tolerance=1e-6).all()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        # an existing scene: a run with none stops at the missing scenes before loading the pipeline
        (["run", "pipelines/mask_to_centerlines.yaml", "sample_data/scene_a_mask.tif", "-o", "o", "--set", "nope=1"], "--set nope"),
        (["run", "no_such_pipeline", "x.tif", "-o", "o"], "no_such_pipeline: no such pipeline"),
        (["validate", "README.md"], "README.md"),
        (["info", "nope.tif"], "nope.tif: no such file"),
    ],
)
def test_errors_are_one_clear_line_and_nonzero(args, needle):
    res = geoseg(*args)
    assert res.returncode != 0
    assert needle in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0


def test_verbose_shows_the_traceback():
    res = geoseg("-v", "info", "nope.tif")
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_steps_lists_parameters_as_json():
    res = geoseg("steps", "--json")
    described = json.loads(res.stdout)
    assert described["connect_network"]["fields"]["max_gap_factor"]["default"] == 2.0
    assert described["mjcr_classify"]["fields"]["model"]["required"] is True
    assert described["road_network"]["takes"] == ["centerline"]


def test_steps_show_literal_choices_defaults_and_layers_chosen_by_settings():
    described = json.loads(geoseg("steps", "--json").stdout)
    voting = described["tensor_voting"]
    assert voting["fields"]["source"]["type"] == "'mask' | 'probability'"
    assert voting["takes"] == ["mask"] and voting["takes_depends_on_settings"] is True
    assert described["graph_cut"]["fields"]["bands"]["default"] == [1, 2, 3]  # from a default factory
    assert described["tensor_voting"]["fields"]["sigma_m"]["type"] == "float | None"
    text = geoseg("steps", "tensor_voting").stdout
    assert "takes: mask (by default; its settings choose the layer)" in text


def test_validate_asks_only_for_required_parameters():
    res = geoseg("validate", "road_centerlines")
    assert res.returncode == 0, res.stderr
    assert "parameter 'model' is required: pass --set model=VALUE" in res.stdout
    assert "--set max_gap_m=VALUE when running" not in res.stdout and "--set sigma_m=VALUE when running" not in res.stdout
    assert "parameter 'max_gap_m' is unset: its steps use their own default" in res.stdout


def test_steps_take_python_class_names_and_list_the_names_they_know():
    import importlib

    assert geoseg("steps", "GraphCut").stdout.startswith("graph_cut: ")
    res = geoseg("steps", "Nope")
    assert res.returncode == 2 and "unknown step(s): Nope (steps: band_probability, " in res.stderr
    assert {"GraphCut", "RoadNetwork"} <= set(dir(importlib.import_module("geoseg.steps")))
