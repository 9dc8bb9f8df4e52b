"""Writing one's own pipelines and chaining them from Python, as a user meets it (the third tour).

Each test reproduces a defect found by a user's tour (docs/RELIABILITY.md) and fails on the
code before its fix.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import geoseg
from geoseg.errors import ConfigError
from geoseg.pipeline.pipeline import load_pipeline
from tests.cli.test_cli_basics import GEOSEG
from tests.conftest import SAMPLE_DATA

MASK_CHAIN = "  - type: threshold_mask\n  - type: skeletonize\n  - type: road_network\n"


def _pipeline(tmp_path: Path, steps: str, outputs: str | None = None, params: str = "") -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(f"schema_version: 1\n{params}steps:\n{steps}" + (f"outputs: {outputs}\n" if outputs is not None else ""))
    return path


@pytest.mark.parametrize(
    ("steps", "outputs", "message"),
    [
        (MASK_CHAIN + "  - type: tensor_voting\n", "[network, saliency]", r"step 4 \(tensor_voting\): gives raster layer\(s\) \['saliency', 'orientation'\] after step 3"),
        (MASK_CHAIN + "  - type: road_network\n", None, r"step 4 \(road_network\): turns rasters into a network again, after step 3"),
        ("  - type: threshold_mask\n", "[image, mask]", r"outputs: layer 'image' is the scene itself"),
        (MASK_CHAIN, "[nodes]", r"outputs: nodes are written beside the network"),
        ("  - type: threshold_mask\n", "[]", r"outputs: is empty"),
    ],
    ids=["raster-after-network", "two-vectorizers", "image-output", "nodes-alone", "no-outputs"],
)
def test_pipelines_that_cannot_run_are_refused_when_loaded(tmp_path: Path, steps: str, outputs: str | None, message: str) -> None:
    """These passed `geoseg validate`; every scene then failed, or the run said done and wrote nothing."""
    with pytest.raises(ConfigError, match=message):
        load_pipeline(_pipeline(tmp_path, steps, outputs))


def test_a_set_of_a_parameter_no_step_uses_is_refused_and_validate_says_so(tmp_path: Path) -> None:
    path = _pipeline(tmp_path, "  - type: threshold_mask\n", params="params: {smoothness: 1.0}\n")
    with pytest.raises(ConfigError, match=r"--set smoothness: parameter 'smoothness' is used by no step of .*mine.yaml"):
        load_pipeline(path, ["smoothness=0.1"])
    res = subprocess.run([*GEOSEG, "validate", str(path)], capture_output=True, text=True)
    assert res.returncode == 0 and "parameter 'smoothness' is used by no step" in res.stdout


def test_validate_checks_the_files_a_run_would_check_first(tmp_path: Path) -> None:
    res = subprocess.run([*GEOSEG, "validate", "road_centerlines", "--set", f"model={tmp_path / 'none.npz'}"], capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.strip() == f"geoseg: error: {tmp_path / 'none.npz'}: no such model file" and res.stdout == ""
    aoi = tmp_path / "aoi.yaml"
    aoi.write_text(f"schema_version: 1\nengine:\n  extent: {{aoi: {tmp_path / 'nosuch.gpkg'}}}\nsteps:\n  - type: threshold_mask\n")
    res = subprocess.run([*GEOSEG, "validate", str(aoi)], capture_output=True, text=True)
    assert res.returncode == 1 and "nosuch.gpkg: no such file" in res.stderr


def test_the_dry_run_refuses_geojson_of_a_scene_without_crs_as_the_run_does(tmp_path: Path) -> None:
    res = subprocess.run([*GEOSEG, "run", "mask_to_centerlines", str(SAMPLE_DATA / "tile_c_mask.png"), "-o", str(tmp_path / "o"), "--format", "geojson",
                          "--dry-run"], capture_output=True, text=True)  # fmt: skip
    assert res.returncode == 1 and "1 cannot run" in res.stdout and "GeoJSON cannot hold" in res.stdout


def test_run_batch_keeps_folders_as_its_error_message_says(tmp_path: Path) -> None:
    for folder, scene in (("a", "scene_a_mask.tif"), ("b", "scene_b_mask.tif")):
        (tmp_path / folder).mkdir()
        shutil.copy(SAMPLE_DATA / scene, tmp_path / folder / "s1.tif")
    pipeline = geoseg.load_pipeline("mask_to_centerlines")
    with pytest.raises(ConfigError, match=r"keep_folders=True from Python"):
        pipeline.run_batch([tmp_path / "a" / "s1.tif", tmp_path / "b" / "s1.tif"], tmp_path / "o")
    reports = pipeline.run_batch([tmp_path / "a" / "s1.tif", tmp_path / "b" / "s1.tif"], tmp_path / "o", keep_folders=True)
    assert [r.status for r in reports] == ["done", "done"] and len({Path(r.outputs[0]).parent for r in reports}) == 2


def test_a_named_step_answers_to_its_type_too(tmp_path: Path) -> None:
    path = _pipeline(tmp_path, "  - type: threshold_mask\n    name: cut\n")
    assert load_pipeline(path, ["threshold_mask.work_road_px=4"]).steps[0].work_road_px == 4
    assert load_pipeline(path, ["cut.work_road_px=5"]).steps[0].work_road_px == 5


def test_a_file_named_with_glob_characters_is_taken_as_it_is(tmp_path: Path) -> None:
    """``mask [a].tif`` was read as a pattern and matched no file (QGIS passes layer files as they are named)."""
    scene = tmp_path / "mask [a].tif"
    shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", scene)
    res = subprocess.run([*GEOSEG, "run", "mask_to_centerlines", str(scene), "-o", str(tmp_path / "o"), "-q"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "o" / "mask [a].shp").is_file()


def test_a_replaced_aoi_or_model_redoes_the_batch(tmp_path: Path) -> None:
    """The AOI was recorded by its name only: an edited AOI kept the old clipping ("already done")."""
    import os

    import geopandas as gpd
    import shapely

    from geoseg.pipeline.batch import pipeline_hash

    aoi = tmp_path / "aoi.geojson"
    gpd.GeoDataFrame(geometry=[shapely.box(533010, 5289900, 533070, 5289990)], crs=32633).to_file(aoi)
    first = geoseg.load_pipeline("mask_to_centerlines", {"extent": {"aoi": str(aoi)}})
    before = pipeline_hash(first)
    assert pipeline_hash(geoseg.load_pipeline("mask_to_centerlines", {"extent": {"aoi": str(aoi)}})) == before  # the same file, the same hash
    gpd.GeoDataFrame(geometry=[shapely.box(533080, 5289850, 533150, 5289950)], crs=32633).to_file(aoi)
    os.utime(aoi, ns=(1, 1))
    assert pipeline_hash(first) != before
    model = tmp_path / "roads.mjcr.npz"
    shutil.copy(SAMPLE_DATA / "roads.mjcr.npz", model)
    with_model = geoseg.load_pipeline("road_centerlines", [f"model={model}"])
    old = pipeline_hash(with_model)
    os.utime(model, ns=(2, 2))  # retrained under the same name
    assert pipeline_hash(with_model) != old


def test_steps_built_in_python_refuse_bad_fields_with_a_geoseg_error() -> None:
    """They raised pydantic's ValidationError, which `except GeosegError` (the README's advice) does not catch."""
    from geoseg import steps
    from geoseg.errors import GeosegError

    with pytest.raises(GeosegError, match=r"^graph_cut: field 'smoothness': Input should be a valid number"):
        steps.GraphCut(smoothness="abc")
    with pytest.raises(ConfigError, match=r"^graph_cut: field 'smoothnes': unknown field \(got 2\)"):
        steps.GraphCut(smoothnes=2)
    assert steps.GraphCut(smoothness=3).smoothness == 3
