"""One node per real junction on the sample scenes, through both shipped chains (issue 21).

The truth is ``sample_data/scene_*_centerlines.geojson`` (scene A: an X and two Ts; scene B: two
Ts); junctions are matched within 8 m, the sample roads' typical width. No edge shorter than
that may join two junctions or bends, and no two edges between the same nodes may lie within
a road width of each other (the two sides of one road).
"""

from __future__ import annotations

import itertools

import geopandas as gpd
import numpy as np
import pytest
import shapely

from geoseg.metrics import junction_scores
from geoseg.pipeline import load_pipeline
from geoseg.road.network import lines_to_graph
from tests.conftest import SAMPLE_DATA

ROAD_WIDTH_M = 8.0
CHAINS = {
    "road_centerlines": ("{scene}.tif", [f"model={SAMPLE_DATA / 'roads.mjcr.npz'}"]),
    "mask_to_centerlines": ("{scene}_mask.tif", []),
}


def _graph(lines: gpd.GeoSeries):
    return lines_to_graph([g for g in shapely.get_parts(np.asarray(list(lines), dtype=object)) if not g.is_empty], snap_tol=0.5)


@pytest.mark.parametrize(
    ("chain", "scene"),
    [
        ("road_centerlines", "scene_a"),
        ("mask_to_centerlines", "scene_a"),
        pytest.param(
            "road_centerlines", "scene_b",
            marks=pytest.mark.xfail(strict=True, reason="the MJCR model loses about 20 m of a branch under the trees: its T is a bend"),
        ),
        ("mask_to_centerlines", "scene_b"),
    ],
)  # fmt: skip
def test_one_node_per_junction(chain: str, scene: str) -> None:
    name, settings = CHAINS[chain]
    found = _graph(load_pipeline(chain, settings).run(SAMPLE_DATA / name.format(scene=scene)).lines.geometry)
    truth = _graph(gpd.read_file(SAMPLE_DATA / f"{scene}_centerlines.geojson").geometry)
    *_, f1, truth_count, found_count, matched = junction_scores(truth, found, radius_m=ROAD_WIDTH_M)
    assert (truth_count, found_count, matched) == ({"scene_a": 3, "scene_b": 2}[scene],) * 3


@pytest.mark.parametrize(("chain", "scene"), list(itertools.product(CHAINS, ["scene_a", "scene_b"])))
def test_no_stubs_between_junctions_and_no_doubled_roads(chain: str, scene: str) -> None:
    name, settings = CHAINS[chain]
    found = _graph(load_pipeline(chain, settings).run(SAMPLE_DATA / name.format(scene=scene)).lines.geometry)
    stubs = [d["geometry"].length for u, v, d in found.edges(data=True) if d["geometry"].length < ROAD_WIDTH_M and min(found.degree(u), found.degree(v)) > 1]
    assert stubs == []
    by_nodes: dict[frozenset, list] = {}
    for u, v, d in found.edges(data=True):
        by_nodes.setdefault(frozenset((u, v)), []).append(d["geometry"])
    doubled = [a.hausdorff_distance(b) for lines in by_nodes.values() for a, b in itertools.combinations(lines, 2)]
    assert all(h > ROAD_WIDTH_M for h in doubled), doubled
