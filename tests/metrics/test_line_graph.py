"""Tests of geoseg.metrics.graph_from_lines (road graphs built as the SpaceNet APLS reference does)."""

from __future__ import annotations

import pytest
from shapely.geometry import LineString, MultiLineString

from geoseg.errors import ConfigError
from geoseg.metrics import graph_from_lines


def _degrees(g) -> list[int]:
    return sorted(d for _, d in g.degree)


def test_lines_join_only_at_shared_vertices() -> None:
    road = LineString([(0, 0), (50, 0), (100, 0)])
    side = LineString([(50, 0), (50, 80)])
    crossing = LineString([(75, -40), (75, 40)])  # crosses the road without a shared vertex
    g = graph_from_lines([road, side, crossing])
    assert _degrees(g) == [1, 1, 1, 1, 1, 3]
    assert g.number_of_edges() == 4 and sum(d["geometry"].length for *_, d in g.edges(data=True)) == pytest.approx(260)


def test_vertices_inside_a_line_merge_but_line_ends_stay_nodes() -> None:
    # one line of 4 vertices -> one edge; two lines meeting end to end -> a degree-2 node
    g = graph_from_lines([LineString([(0, 0), (10, 0), (20, 5), (30, 5)])])
    assert g.number_of_nodes() == 2 and list(g.edges(data="geometry"))[0][2].length == pytest.approx(10 + 125 ** 0.5 + 10)
    g2 = graph_from_lines([LineString([(0, 0), (10, 0)]), LineString([(10, 0), (20, 0)])])
    assert _degrees(g2) == [1, 1, 2]


def test_ring_without_nodes_keeps_its_vertices_and_multilines_are_split() -> None:
    ring = LineString([(0, 0), (10, 0), (10, 10), (0, 10), (0, 0)])
    assert graph_from_lines([ring]).number_of_nodes() == 4
    parts = MultiLineString([[(0, 0), (10, 0)], [(20, 0), (30, 0)]])
    assert graph_from_lines([parts]).number_of_edges() == 2


def test_small_parts_are_dropped_and_duplicate_segments_count_once() -> None:
    road = LineString([(0, 0), (100, 0)])
    stub = LineString([(0, 50), (4, 50)])  # a 4 m part alone
    g = graph_from_lines([road, stub, LineString([(100, 0), (0, 0)])])
    assert g.number_of_edges() == 1
    assert graph_from_lines([road, stub], min_component_m=3).number_of_edges() == 2


def test_join_ends_moves_an_end_onto_the_nearby_line() -> None:
    road = LineString([(0, 0), (100, 0)])
    side = LineString([(40, 0.3), (40, 50)])  # ends 0.3 m from the road
    assert _degrees(graph_from_lines([road, side])) == [1, 1, 1, 1]
    joined = graph_from_lines([road, side], join_ends_m=0.5)
    assert _degrees(joined) == [1, 1, 1, 3]
    node = next(n for n, d in joined.degree if d == 3)
    assert (joined.nodes[node]["x"], joined.nodes[node]["y"]) == pytest.approx((40.0, 0.0))
    with pytest.raises(ConfigError):
        graph_from_lines([road], join_ends_m=-1)
