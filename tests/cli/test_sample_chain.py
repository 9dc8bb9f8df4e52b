"""End to end on sample_data: train MJCR, segment, extract centerlines, evaluate (CLI and API)."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.crs import CRS

import geoseg
from tests.cli.test_cli_basics import geoseg as cli
from tests.conftest import REPO, SAMPLE_DATA

MODEL = SAMPLE_DATA / "roads.mjcr.npz"


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    return float((pred & truth).sum() / (pred | truth).sum())


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "roads.mjcr.npz"
    res = cli("train", "mjcr", "--images", "sample_data/scene_b.tif", "--masks", "sample_data/scene_b_*.tif", "-o", out)
    assert res.returncode == 0, res.stderr
    return out


def test_trained_model_equals_the_committed_sample_model(trained_model):
    # Training is deterministic: the CLI reproduces sample_data/roads.mjcr.npz (to float
    # round-off: multi-threaded BLAS may sum in another order).
    from geoseg.modelfile import load_model

    (new_arrays, new_meta), (ref_arrays, ref_meta) = load_model(trained_model), load_model(MODEL)
    new_intercept, ref_intercept = new_meta["mjcr"].pop("calib_intercept"), ref_meta["mjcr"].pop("calib_intercept")
    assert new_intercept == pytest.approx(ref_intercept, rel=1e-6)
    assert new_meta == ref_meta and new_arrays.keys() == ref_arrays.keys()
    for name, ref in ref_arrays.items():
        np.testing.assert_allclose(new_arrays[name], ref, rtol=1e-6, atol=1e-9, err_msg=name)


def test_road_segmentation_writes_a_mask_on_the_scene_grid(trained_model, tmp_path):
    res = cli("run", "pipelines/road_segmentation.yaml", "sample_data/scene_a.tif", "-o", tmp_path, "--set", f"model={trained_model}")
    assert res.returncode == 0, res.stderr
    with rasterio.open(tmp_path / "scene_a.tif") as out, rasterio.open(SAMPLE_DATA / "scene_a_mask.tif") as truth:
        assert out.crs == truth.crs and out.transform == truth.transform and out.shape == truth.shape
        pred = out.read(1)
        assert set(np.unique(pred)) <= {0, 255}
        assert _iou(pred > 0, truth.read(1) > 0) > 0.65


def test_road_segmentation_on_a_png_tile(tmp_path):
    res = cli("run", "road_segmentation", "sample_data/tile_c.png", "-o", tmp_path, "--set", f"model={MODEL}")
    assert res.returncode == 0, res.stderr
    assert "no georeferencing" in res.stderr
    with rasterio.open(tmp_path / "tile_c.tif") as out:
        pred = out.read(1) > 0
        assert out.crs is None
    truth = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(SAMPLE_DATA / "tile_c_mask.png")) > 0
    assert _iou(pred, truth) > 0.5


def test_full_chain_cli_writes_a_clean_network_in_the_scene_crs(tmp_path):
    res = cli("run", "road_centerlines", "sample_data/scene_a.tif", "-o", tmp_path, "--set", f"model={MODEL}")
    assert res.returncode == 0, res.stderr
    lines = gpd.read_file(tmp_path / "scene_a.shp")
    assert CRS.from_user_input(lines.crs) == CRS.from_epsg(32633)
    assert {"length_m", "degree_u", "degree_v", "saliency", "confidence", "node_u", "node_v"} <= set(lines.columns)
    assert lines["confidence"].notna().all() and lines["confidence"].between(0, 1).all()  # one scale, every edge
    nodes = gpd.read_file(tmp_path / "scene_a_nodes.shp")
    assert (nodes["degree"] >= 3).sum() >= 2  # the X-crossing and the T-junctions
    scores = json.loads(cli("eval", tmp_path / "scene_a.shp", "sample_data/scene_a_centerlines.geojson", "--buffer-m", "1.5", "--json").stdout)
    assert scores["quality"] > 0.55 and scores["apls"] > 0.5


def test_python_api_gives_the_same_network_as_the_cli(tmp_path):
    cli("run", "road_centerlines", "sample_data/scene_a.tif", "-o", tmp_path, "--format", "gpkg", "--set", f"model={MODEL}")
    from_cli = gpd.read_file(tmp_path / "scene_a.gpkg", layer="edges")
    result = geoseg.run(REPO / "pipelines" / "road_centerlines.yaml", SAMPLE_DATA / "scene_a.tif", {"model": str(MODEL)})
    assert len(result.lines) == len(from_cli)
    assert shapely.hausdorff_distance(result.lines.union_all(), from_cli.union_all()) < 1e-6


def test_mask_to_centerlines_on_the_sample_mask_follows_the_truth(tmp_path):
    res = cli("run", "mask_to_centerlines", "sample_data/scene_a_mask.tif", "-o", tmp_path)
    assert res.returncode == 0, res.stderr
    scores = json.loads(cli("eval", tmp_path / "scene_a_mask.shp", "sample_data/scene_a_centerlines.geojson", "--buffer-m", "1.5", "--json").stdout)
    assert scores["completeness"] > 0.95 and scores["correctness"] > 0.95


def test_train_from_labelled_vector_samples(tmp_path):
    truth = gpd.read_file(SAMPLE_DATA / "scene_b_centerlines.geojson")
    with rasterio.open(SAMPLE_DATA / "scene_b.tif") as ds:
        bounds = shapely.box(*ds.bounds)
    road = truth.geometry.buffer(1.0)  # a 2 m strip along each road: surely road
    background = bounds.difference(truth.geometry.buffer(truth["width_m"] / 2 + 6).union_all()).buffer(-3)
    samples = gpd.GeoDataFrame({"class": [1] * len(road) + [0]}, geometry=[*road, background], crs=truth.crs)
    samples.to_file(tmp_path / "samples.gpkg")
    model = tmp_path / "from_samples.npz"
    res = cli("train", "mjcr", "--image", "sample_data/scene_b.tif", "--samples", tmp_path / "samples.gpkg", "--class-field", "class", "-o", model)
    assert res.returncode == 0, res.stderr
    result = geoseg.run(REPO / "pipelines" / "road_segmentation.yaml", SAMPLE_DATA / "scene_a.tif", {"model": str(model)})
    with rasterio.open(SAMPLE_DATA / "scene_a_mask.tif") as ds:
        assert _iou(result.layers["mask"], ds.read(1) > 0) > 0.55


def test_model_of_other_bands_is_refused_with_a_clear_message(tmp_path):
    res = cli("run", "road_segmentation", "sample_data/scene_a_mask.tif", "-o", tmp_path, "--set", f"model={MODEL}")
    assert res.returncode == 1
    assert "scene_a_mask.tif" in res.stderr and "band" in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [".geoseg-batch.lock", "geoseg-manifest.json"]


def test_corrupt_model_file_is_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a model")
    res = cli("run", "road_centerlines", "sample_data/scene_a.tif", "-o", tmp_path / "out", "--set", f"model={bad}")
    assert res.returncode == 1 and "bad.npz" in res.stderr
    assert not (tmp_path / "out" / "scene_a.shp").exists()
