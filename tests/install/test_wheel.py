"""geoseg as users install it: the wheel in a fresh venv, run from a folder holding only their files.

Every shipped pipeline and training config is run by name through the venv's ``geoseg``
executable, with no access to the repository (no ``sample_data/``, no ``pipelines/`` folder).
"""

from __future__ import annotations

import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio

import geoseg
from geoseg.shipped import shipped_names

from .conftest import REPO, WheelVenv

pytestmark = [pytest.mark.install, pytest.mark.slow]

SAMPLE = REPO / "sample_data"
#: CPU-seconds settings for every nn training config (the configs' own values stay otherwise).
TINY_NN = ["threads=1", "model.width=4", "epochs=1", "iterations_per_epoch=2", "data.batch_size=2", "data.crop_px=64",
           "optimizer.warmup_iterations=1", "inference.tile_px=128", "inference.overlap_px=32", "inference.tta=false"]  # fmt: skip
TINY_MODE = {"road_uda": ["uda.rampup_iterations=1", "uda.teacher_passes=1"], "road_ssl": ["ssl.rounds=1", "ssl.epochs_per_round=1"]}
TINY_GAS = ["threads=1", "space.width=8", "search.epochs=1", "search.iterations_per_epoch=2", "search.warmup_iterations=1",
            "search.crop_px=64", "search.batch_size=2", "latency.tile_px=64", "latency.repeats=1", "latency.warmup=0",
            "latency.rounds=1", "retrain.epochs=1", "retrain.iterations_per_epoch=2", "data.crop_px=64", "data.batch_size=2",
            "inference.tile_px=128", "inference.overlap_px=32"]  # fmt: skip
TINY_SEQUENCE = ["iterations=2", "frame_size=32", "n_sequences=1", "n_frames=3", "widths=[4,4,4]"]


def user_folder(root: Path, *files: Path) -> Path:
    """An empty folder holding copies of ``files`` only (a user's working folder)."""
    folder = root / "work"
    folder.mkdir()
    for f in files:
        (shutil.copytree if f.is_dir() else shutil.copy)(f, folder / f.name)
    return folder


def sets(values: list[str]) -> list[str]:
    return [arg for v in values for arg in ("--set", v)]


@pytest.fixture(scope="module")
def trained(wheel_venv: WheelVenv, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model from every shipped training config, trained by name through the venv."""
    folder = user_folder(tmp_path_factory.mktemp("train"), SAMPLE / "scene_b.tif", SAMPLE / "scene_b_mask.tif", SAMPLE / "scene_a.tif")
    labelled = ["--images", "scene_b.tif", "--masks", "scene_b_mask.tif"]
    models: dict[str, Path] = {}
    for name in ("road_baseline", "road_decouple", "road_uda", "road_ssl"):
        unlabeled = ["--unlabeled", "scene_a.tif"] if name in TINY_MODE else []
        wheel_venv.run("train", "nn", name, *labelled, *unlabeled, "-o", f"{name}.nn.npz", "--no-progress", *sets(TINY_NN + TINY_MODE.get(name, [])), cwd=folder)
        models[name] = folder / f"{name}.nn.npz"
    wheel_venv.run("search", "arch", "road_gas", *labelled, "--target-ms", "50", "-o", "road_gas.nn.npz", "--no-progress", *sets(TINY_GAS), cwd=folder)
    models["road_gas"] = folder / "road_gas.nn.npz"
    wheel_venv.run("train", "sequence", "sequence_ovs", "-o", "sequence_ovs.ovs.npz", *sets(TINY_SEQUENCE), cwd=folder)
    models["sequence_ovs"] = folder / "sequence_ovs.ovs.npz"
    return models


def test_wheel_and_sdist_carry_the_shipped_files_and_one_version(wheel_venv: WheelVenv, tmp_path: Path) -> None:
    wheel = next(wheel_venv.dist.glob("geoseg-*.whl"))
    sdist = next(wheel_venv.dist.glob("geoseg-*.tar.gz"))
    assert wheel.name.startswith(f"geoseg-{geoseg.__version__}-py3-none-any") and sdist.name == f"geoseg-{geoseg.__version__}.tar.gz"
    shipped = {p.relative_to(REPO / "pipelines").as_posix() for p in (REPO / "pipelines").rglob("*.yaml")}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {f"geoseg/pipelines/{s}" for s in shipped} <= names
        assert archive.read("geoseg/pipelines/road_centerlines.yaml") == (REPO / "pipelines" / "road_centerlines.yaml").read_bytes()
        assert not [n for n in names if n.startswith(("sample_data/", "tests/", "pipelines/"))]
    with tarfile.open(sdist) as archive:
        assert {f"geoseg-{geoseg.__version__}/pipelines/{s}" for s in shipped} <= set(archive.getnames())
    assert wheel_venv.run("--version", cwd=tmp_path).stdout.strip() == f"geoseg, version {geoseg.__version__}"


def test_the_venv_runs_the_installed_wheel_not_the_checkout(wheel_venv: WheelVenv, tmp_path: Path) -> None:
    import subprocess

    code = "import geoseg, geoseg.shipped as s; print(geoseg.__file__); print(s.shipped_path('road_centerlines', 'pipeline'))"
    out = subprocess.run([str(wheel_venv.python), "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
    site = str(wheel_venv.venv.resolve())
    assert all(str(Path(p).resolve()).startswith(site) for p in out), out


def test_readme_main_job_by_name_from_a_folder_with_a_scene_and_a_model(wheel_venv: WheelVenv, tmp_path: Path) -> None:
    folder = user_folder(tmp_path, SAMPLE / "scene_a.tif", SAMPLE / "roads.mjcr.npz")
    wheel_venv.run("run", "road_centerlines", "scene_a.tif", "-o", "out/", "--set", "model=roads.mjcr.npz", cwd=folder)
    lines = gpd.read_file(folder / "out" / "scene_a.shp")
    nodes = gpd.read_file(folder / "out" / "scene_a_nodes.shp")
    assert lines.crs.to_epsg() == 32633 and nodes.crs.to_epsg() == 32633
    # the wheel computes exactly what the development install computes
    expected = geoseg.run("road_centerlines", SAMPLE / "scene_a.tif", {"model": str(SAMPLE / "roads.mjcr.npz")}).lines
    assert len(lines) == len(expected) > 5
    np.testing.assert_allclose(np.sort(lines.geometry.length.to_numpy()), np.sort(expected.geometry.length.to_numpy()), rtol=1e-9)
    assert 300 < lines["length_m"].sum() < 700  # scene A holds about 480 m of roads
    manifest = json.loads((folder / "out" / "geoseg-manifest.json").read_text())
    assert "road_centerlines" in json.dumps(manifest)


@pytest.mark.parametrize(
    ("pipeline", "scene", "written"),
    [
        ("mask_to_centerlines", "scene_a_mask.tif", "scene_a_mask.shp"),
        ("mask_to_centerlines_skeleton", "scene_a_mask.tif", "scene_a_mask.shp"),
        ("road_segmentation", "scene_a.tif", "scene_a.tif"),
    ],
)
def test_shipped_pipeline_by_name(wheel_venv: WheelVenv, tmp_path: Path, pipeline: str, scene: str, written: str) -> None:
    folder = user_folder(tmp_path, SAMPLE / scene, SAMPLE / "roads.mjcr.npz")
    wheel_venv.run("run", pipeline, scene, "-o", "out", "--set", "model=roads.mjcr.npz" if pipeline == "road_segmentation" else "max_memory=1GB", cwd=folder)
    out = folder / "out" / written
    if out.suffix == ".tif":
        with rasterio.open(out) as mask, rasterio.open(SAMPLE / "scene_a_mask.tif") as truth:
            predicted, actual = mask.read(1) > 0, truth.read(1) > 0
            assert mask.crs.to_epsg() == 32633 and (predicted & actual).sum() / (predicted | actual).sum() > 0.3
    else:
        lines = gpd.read_file(out)
        assert lines.crs.to_epsg() == 32633 and 350 < lines["length_m"].sum() < 650


@pytest.mark.parametrize("name", ["road_baseline", "road_decouple", "road_uda", "road_ssl", "road_gas"])
def test_training_config_by_name_gives_a_model_deep_road_centerlines_runs(wheel_venv: WheelVenv, trained: dict[str, Path], tmp_path: Path, name: str) -> None:
    info = json.loads(wheel_venv.run("model", "info", trained[name], "--json", cwd=tmp_path).stdout)
    assert "nn" in json.dumps(info)
    folder = user_folder(tmp_path, SAMPLE / "scene_a.tif", trained[name])
    wheel_venv.run("run", "deep_road_centerlines", "scene_a.tif", "-o", "out", "--set", f"model={trained[name].name}", "--set", "nn_classify.threads=1", cwd=folder)
    lines = gpd.read_file(folder / "out" / "scene_a.shp")
    assert lines.crs.to_epsg() == 32633  # a seconds-trained model: the network itself may be anything


def test_road_general_without_the_pretrained_extra_says_what_to_install(wheel_venv: WheelVenv, tmp_path: Path) -> None:
    """The wheel without extras: road_general (ImageNet encoder) names the extra before reading any scene."""
    folder = user_folder(tmp_path, SAMPLE / "scene_b.tif", SAMPLE / "scene_b_mask.tif")
    result = wheel_venv.run("train", "nn", "road_general", "--images", "missing.tif", "--masks", "scene_b_mask.tif", "-o", "g.nn.npz", cwd=folder, check=False)
    assert result.returncode == 1 and 'pip install "geoseg[pretrained]"' in result.stderr
    assert not (folder / "g.nn.npz").exists()


def test_sequence_config_and_pipeline_by_name(wheel_venv: WheelVenv, trained: dict[str, Path], tmp_path: Path) -> None:
    folder = user_folder(tmp_path, SAMPLE / "sequence" / "frames", trained["sequence_ovs"])
    wheel_venv.run("run", "sequence_objects", "frames", "-o", "out", "--set", f"model={trained['sequence_ovs'].name}", cwd=folder)
    objects = gpd.read_file(folder / "out" / "frames.gpkg")
    assert {"track_id", "frame"} <= set(objects.columns)


def test_update_map_and_compare_by_name(wheel_venv: WheelVenv, tmp_path: Path) -> None:
    """Map updating as a user runs it: the shipped pipeline on a scene with a stale map (one road deleted), then geoseg compare."""
    truth = gpd.read_file(SAMPLE / "scene_a_centerlines.geojson")
    folder = user_folder(tmp_path, SAMPLE / "scene_a.tif", SAMPLE / "roads.mjcr.npz")
    truth.drop(index=[6]).to_crs(4326).to_file(folder / "osm.geojson")  # road 6 (72 m) is not on the map
    wheel_venv.run("run", "update_map", "scene_a.tif", "-o", "out", "--set", "model=roads.mjcr.npz", "--set", "map=osm.geojson", cwd=folder)
    new = gpd.read_file(folder / "out" / "scene_a_new.shp")
    assert new.crs.to_epsg() == 32633 and new["length_m"].max() == pytest.approx(truth.length[6], abs=5)
    report = json.loads(wheel_venv.run("compare", "out/scene_a.shp", "osm.geojson", "-o", "cmp", "--image", "scene_a.tif", "--json", cwd=folder).stdout)
    assert report["totals"]["new"]["length_m"] == pytest.approx(new["length_m"].sum(), abs=15)  # 7 m tolerance here, the measured road width there


def test_every_shipped_file_is_exercised_above() -> None:
    pipelines = {
        "road_centerlines", "mask_to_centerlines", "mask_to_centerlines_skeleton", "road_segmentation", "deep_road_centerlines", "sequence_objects",
        "update_map",
    }  # fmt: skip
    training = {"road_baseline", "road_decouple", "road_general", "road_uda", "road_ssl", "road_gas", "sequence_ovs"}
    assert set(shipped_names("pipeline")) == pipelines and set(shipped_names("training")) == training


def test_copy_a_shipped_pipeline_edit_it_and_run_it(wheel_venv: WheelVenv, tmp_path: Path) -> None:
    folder = user_folder(tmp_path, SAMPLE / "scene_a_mask.tif")
    listing = wheel_venv.run("pipelines", cwd=folder).stdout
    assert all(f"\n  {n}" in listing for n in shipped_names("pipeline") + shipped_names("training"))
    text = wheel_venv.run("pipelines", "show", "mask_to_centerlines", cwd=folder).stdout
    (folder / "mine.yaml").write_text(text.replace("max_gap_m: null", "max_gap_m: 0"))
    wheel_venv.run("validate", "mine.yaml", cwd=folder)
    wheel_venv.run("run", "mine.yaml", "scene_a_mask.tif", "-o", "out", cwd=folder)
    assert len(gpd.read_file(folder / "out" / "scene_a_mask.shp")) > 3
