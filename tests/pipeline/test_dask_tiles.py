"""Tiles of one scene as Dask tasks on a real local cluster: same outputs as in-process."""

from __future__ import annotations

import geopandas as gpd
import pytest
import rasterio
import shapely
from distributed import Client, LocalCluster

import geoseg
from geoseg.pipeline.scene import process_scene
from tests.conftest import SAMPLE_DATA


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


def test_tiles_on_dask_equal_tiles_in_process(client, tmp_path):
    model = str(SAMPLE_DATA / "roads.mjcr.npz")
    pipe = geoseg.load_pipeline("road_centerlines", [f"model={model}", "tile_px=256"]).with_overrides({})
    pipe.outputs = ["network", "nodes", "mask"]
    here = process_scene(pipe, SAMPLE_DATA / "scene_a.tif", tmp_path / "here", stem="a", fmt="gpkg")
    there = process_scene(pipe, SAMPLE_DATA / "scene_a.tif", tmp_path / "dask", stem="a", fmt="gpkg", client=client)
    assert here.tiles == there.tiles == 4
    lines = [gpd.read_file(tmp_path / d / "a.gpkg", layer="edges") for d in ("here", "dask")]
    assert len(lines[0]) == len(lines[1]) > 0
    assert shapely.hausdorff_distance(lines[0].union_all(), lines[1].union_all()) < 1e-6
    masks = []
    for d in ("here", "dask"):
        with rasterio.open(tmp_path / d / "a_mask.tif") as ds:
            masks.append(ds.read(1))
    assert (masks[0] == masks[1]).all()
