"""The 0-1 edge confidence: from the NMS's scene scale, kept through tiling, merges and bridges."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely

import geoseg
from geoseg.road.connect import connect_gaps
from geoseg.road.network import dissolve_degree2, skeleton_to_graph
from rasterio.crs import CRS

from tests.conftest import UTM_TRANSFORM, plus_mask, write_tif


def test_edges_average_the_confidence_raster_and_merges_weight_by_length() -> None:
    skel = np.zeros((5, 21), bool)
    skel[2, 1:20] = True
    conf = np.zeros((5, 21))
    conf[2, :10] = 0.2
    conf[2, 10:] = 0.8
    graph = skeleton_to_graph(skel, confidence=conf)
    (_, _, data), = graph.edges(data=True)
    assert data["confidence"] == pytest.approx(np.mean(conf[2, 1:20]))
    assert "saliency" not in data
    # two edges through a degree-2 node merge into their length-weighted mean
    g = skeleton_to_graph(skel, confidence=conf)
    u, v = list(g.nodes)
    mid = max(g.nodes) + 1
    g.add_node(mid, x=30.5, y=2.5)
    g.add_edge(v, mid, geometry=shapely.LineString([(g.nodes[v]["x"], 2.5), (30.5, 2.5)]), confidence=0.0)
    merged = dissolve_degree2(g)
    (_, _, m), = merged.edges(data=True)
    la, lb = data["geometry"].length, abs(30.5 - g.nodes[v]["x"])
    assert m["confidence"] == pytest.approx(data["confidence"] * la / (la + lb))


def test_bridges_get_zero_confidence_only_when_the_network_has_one() -> None:
    skel = np.zeros((5, 60), bool)
    skel[2, 2:25] = True
    skel[2, 35:58] = True
    with_conf = connect_gaps(skeleton_to_graph(skel, confidence=np.full(skel.shape, 0.7)), max_gap_px=15)
    values = sorted(d["confidence"] for _, _, d in with_conf.edges(data=True))
    assert len(values) == 3 and values[0] == 0.0 and values[1:] == [pytest.approx(0.7)] * 2
    without = connect_gaps(skeleton_to_graph(skel), max_gap_px=15)
    assert all("confidence" not in d for _, _, d in without.edges(data=True))


def test_written_network_has_a_0_1_confidence_tiled_or_not(tmp_path: Path) -> None:
    scene = write_tif(tmp_path / "plus.tif", plus_mask(240, 14), CRS.from_epsg(32633), UTM_TRANSFORM)
    whole = geoseg.load_pipeline("mask_to_centerlines")
    tiled = whole.with_overrides(["tile_px=96"])
    for pipe, out in ((whole, "a"), (tiled, "b")):
        pipe.run_batch([scene], tmp_path / out)
    a, b = (gpd.read_file(tmp_path / o / "plus.shp") for o in ("a", "b"))
    assert a["confidence"].between(0, 1).all() and a["confidence"].max() > 0.3
    # a tile's edge averages its whole local trace, halo included: tiled means differ slightly
    assert len(a) == len(b) and np.allclose(np.sort(a["confidence"]), np.sort(b["confidence"]), atol=0.05)
