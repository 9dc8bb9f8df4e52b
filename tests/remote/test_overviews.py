"""A pass at the deep classifier's working GSD reads the COG's overviews (issue 26, item 3)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil

import geoseg.steps.deep as deep
from geoseg.nn.config import load_train_config
from geoseg.nn.train import train
from geoseg.pipeline.batch import run_batch
from geoseg.pipeline.decimate import coarse_slices, pass_decimation, to_window
from geoseg.pipeline.pipeline import load_pipeline
from geoseg.raster import read_raster
from tests.conftest import SAMPLE_DATA
from tests.nn.conftest import TINY, scene_b
from tests.remote.cog_check import cog_problems

PIPELINE = """schema_version: 1
description: road probability from a deep classifier
params:
  model: null
steps:
  - type: nn_classify
    model: ${model}
outputs: [probability]
"""


@pytest.fixture(scope="module")
def working_gsd_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DecoupleSegNet trained at a working GSD of 0.6 m (twice the sample scenes' 0.3 m)."""
    path = tmp_path_factory.mktemp("nn") / "tiny06.nn.npz"
    train(load_train_config(None, [*TINY, "data.work_gsd_m=0.6"]), [scene_b()], best_path=path, progress=False)
    return path


@pytest.fixture(scope="module")
def cog_with_overviews(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sample scene A mirrored into 1024 px, as a COG of 256 px tiles with averaged overviews."""
    folder = tmp_path_factory.mktemp("served")
    scene = read_raster(SAMPLE_DATA / "scene_a.tif")
    a = scene.array
    mosaic = np.concatenate([np.concatenate([a, a[:, :, ::-1]], 2), np.concatenate([a[:, ::-1], a[:, ::-1, ::-1]], 2)], 1)
    plain = folder.parent / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=1024, height=1024, count=3, dtype="uint8",
                       crs=scene.geo.crs, transform=scene.geo.transform) as dst:  # fmt: skip
        dst.write(mosaic)
    rasterio.shutil.copy(plain, folder / "scene.tif", driver="COG", BLOCKSIZE="256", COMPRESS="DEFLATE", RESAMPLING="AVERAGE")
    return folder


def test_the_classifier_pass_fetches_the_overview_and_gives_the_full_resolution_result(
    working_gsd_model, cog_with_overviews, range_server, tmp_path, monkeypatch
):
    (tmp_path / "nn_prob.yaml").write_text(PIPELINE)
    pipe = load_pipeline(str(tmp_path / "nn_prob.yaml"), [f"model={working_gsd_model}"])
    server = range_server(cog_with_overviews)
    shutil.copy(cog_with_overviews / "scene.tif", cog_with_overviews / "full.tif")  # another URL: GDAL caches per URL
    [decimated] = run_batch(pipe, ["/vsicurl/" + server.url("scene.tif")], tmp_path / "decimated")
    monkeypatch.setattr(deep.NNClassify, "image_decimation", lambda self, geo: 1)
    [full] = run_batch(pipe, ["/vsicurl/" + server.url("full.tif")], tmp_path / "full")
    assert decimated.status == full.status == "done", (decimated.error, full.error)
    fetched, fetched_full = server.bytes_sent("scene.tif"), server.bytes_sent("full.tif")
    assert fetched <= 0.4 * fetched_full, f"overviews: {fetched} bytes, full resolution: {fetched_full}"
    with rasterio.open(tmp_path / "decimated" / "scene.tif") as a, rasterio.open(tmp_path / "full" / "full.tif") as b:
        assert a.shape == b.shape == (1024, 1024) and a.transform == b.transform
        p, q = a.read(1), b.read(1)
    assert np.abs(p - q).mean() < 0.01 and np.corrcoef(p.ravel(), q.ravel())[0, 1] > 0.99
    assert cog_problems(tmp_path / "decimated" / "scene.tif") == []


def test_a_pass_decimates_only_when_all_its_steps_use_only_the_image_and_agree(working_gsd_model):
    geo = read_raster(SAMPLE_DATA / "scene_a.tif").geo
    nn = load_pipeline("deep_road_centerlines", [f"model={working_gsd_model}"]).steps
    classify, graph_cut = nn[0], nn[1]
    assert classify.image_decimation(geo) == 2 and graph_cut.image_decimation(geo) == 1
    assert pass_decimation([classify], [], geo, has_vectorizer=False, reads_layers=False) == 2
    assert pass_decimation([], [classify], geo, has_vectorizer=False, reads_layers=False) == 2
    assert pass_decimation([classify, graph_cut], [], geo, has_vectorizer=False, reads_layers=False) == 1  # graph cut: full resolution
    assert pass_decimation([classify], [graph_cut], geo, has_vectorizer=False, reads_layers=False) == 1  # its statistics too
    assert pass_decimation([classify], [], geo, has_vectorizer=True, reads_layers=False) == 1
    assert pass_decimation([classify], [], geo, has_vectorizer=False, reads_layers=True) == 1


def test_coarse_cells_and_back():
    assert coarse_slices((slice(10, 30), slice(0, 20)), (40, 20), (10, 5)) == (slice(2, 8), slice(0, 5))
    assert coarse_slices((slice(3, 7), slice(None)), (9, 4), (5, 2)) == (slice(1, 4), slice(0, 2))
    ramp = np.arange(4, dtype=np.float32)[None, :].repeat(2, 0)  # cell centres at 0.5, 1.5, ... of a 2x coarser grid
    back = to_window(ramp, (4, 8))
    assert back.shape == (4, 8) and back.dtype == np.float32
    np.testing.assert_allclose(back[0], [0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3])
    mask = np.array([[True, False], [False, True]])
    np.testing.assert_array_equal(to_window(mask, (4, 4)), np.kron(mask, np.ones((2, 2), bool)))
    np.testing.assert_array_equal(to_window(np.ones((3, 2, 2), np.float32), (4, 4)), np.ones((3, 4, 4)))
