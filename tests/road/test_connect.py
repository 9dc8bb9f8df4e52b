"""Tests of geoseg.road.connect: spurs, junction fitting, gap connection, duplicates."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from shapely.geometry import LineString

from geoseg.errors import ConfigError
from geoseg.road.connect import (
    clean_network,
    connect_gaps,
    fit_end_direction,
    merge_junctions,
    merge_parallel,
    prune_spurs,
    remove_small_components,
)
from geoseg.road.network import skeleton_to_graph
from geoseg.road.skeleton import skeletonize_mask
from tests.road.test_network import assert_graph_invariants, degrees


def graph_from_lines(lines: list[list[tuple[float, float]]]) -> nx.MultiGraph:
    """Graph with one edge per polyline; nodes keyed by end coordinates."""
    G = nx.MultiGraph()
    ids: dict[tuple[float, float], int] = {}
    for pts in lines:
        ends = []
        for p in (pts[0], pts[-1]):
            if p not in ids:
                ids[p] = len(ids)
                G.add_node(ids[p], x=float(p[0]), y=float(p[1]))
            ends.append(ids[p])
        G.add_edge(ends[0], ends[1], geometry=LineString(pts))
    return G


def test_fit_end_direction_points_outwards() -> None:
    c = np.array([(10.0, 0.0), (5.0, 0.0), (0.0, 0.0)])
    anchor, d = fit_end_direction(c, 6.0)
    assert d == pytest.approx([1.0, 0.0])
    assert anchor[1] == pytest.approx(0.0)


def test_fit_end_direction_is_the_principal_axis_of_the_end() -> None:
    rng = np.random.default_rng(3)
    for angle in np.radians([0.0, 30.0, 90.0, 135.0, 200.0, 333.0]):
        t = np.linspace(0.0, 40.0, 21)
        coords = np.column_stack([t * np.cos(angle), t * np.sin(angle)]) + rng.normal(0, 0.3, (21, 2))
        coords = coords[::-1]  # from the end at t = 40 inwards
        anchor, d = fit_end_direction(coords, 12.0, 2.0)
        line = LineString(coords)
        samples = np.array([line.interpolate(s).coords[0] for s in np.linspace(2.0, 14.0, 13)])
        axis = np.linalg.svd(samples - samples.mean(axis=0))[2][0]
        assert anchor == pytest.approx(samples.mean(axis=0))
        assert abs(np.dot(d, axis)) == pytest.approx(1.0, abs=1e-9)
        assert np.dot(d, [np.cos(angle), np.sin(angle)]) > 0.99  # outwards, along the road


def test_has_crossings_only_away_from_ends() -> None:
    from geoseg.road.connect import _has_crossings

    def lines(*coords: list[tuple[float, float]]) -> np.ndarray:
        return np.array([LineString(c) for c in coords], dtype=object)

    assert _has_crossings(lines([(0, 5), (10, 5)], [(5, 0), (5, 10)]))  # an X
    assert not _has_crossings(lines([(0, 5), (10, 5)], [(10, 5), (10, 10)]))  # joined at their ends
    assert not _has_crossings(lines([(0, 5), (10, 5)], [(5, 5), (5, 10)]))  # a T: one end on the other line
    assert _has_crossings(lines([(0, 0), (10, 0)], [(5, 0), (15, 0)]))  # overlapping
    assert not _has_crossings(lines([(0, 0), (10, 0)], [(0, 1), (10, 1)]))  # apart
    assert _has_crossings(lines([(0, 0), (10, 0)], [(0, 3), (5, 0), (10, 3)]))  # touching away from the ends


def test_spur_pruned_when_short_kept_when_long() -> None:
    base = [[(0.0, 0.0), (50.0, 0.0)], [(50.0, 0.0), (100.0, 0.0)]]
    short = graph_from_lines(base + [[(50.0, 0.0), (50.0, 8.0)]])
    H = prune_spurs(short, 15.0)
    assert degrees(H) == [1, 1]
    (g,) = [d["geometry"] for _, _, d in H.edges(data=True)]
    assert g.length == pytest.approx(100.0)
    assert_graph_invariants(H)
    long = graph_from_lines(base + [[(50.0, 0.0), (50.0, 30.0)]])
    assert degrees(prune_spurs(long, 15.0)) == [1, 1, 1, 3]


def test_two_three_way_nodes_merge_into_one_four_way() -> None:
    # A crossing that thinning split into two junctions 6 px apart, with bent branch ends.
    G = graph_from_lines(
        [
            [(47.0, 50.0), (53.0, 50.0)],
            [(0.0, 50.0), (40.0, 50.0), (47.0, 50.0)],
            [(47.0, 50.0), (48.0, 40.0), (50.0, 0.0)],
            [(53.0, 50.0), (100.0, 50.0)],
            [(53.0, 50.0), (52.0, 60.0), (50.0, 100.0)],
        ]
    )
    H = merge_junctions(G, radius_px=10.0, fit_length_px=30.0, skip_px=10.0)
    assert degrees(H) == [1, 1, 1, 1, 4]
    (c,) = [n for n, d in H.degree() if d == 4]
    assert (H.nodes[c]["x"], H.nodes[c]["y"]) == pytest.approx((50.0, 50.0), abs=0.5)
    assert_graph_invariants(H)


def plus_mask() -> np.ndarray:
    m = np.zeros((121, 121), bool)
    m[53:68, 10:111] = True
    m[10:111, 53:68] = True
    return m


def test_plus_mask_gives_one_degree4_node_at_centre() -> None:
    m = plus_mask()
    G = skeleton_to_graph(skeletonize_mask(m))
    H = clean_network(G, road_width_px=15.0, max_gap_px=20.0, shape=m.shape)
    assert_graph_invariants(H)
    assert degrees(H) == [1, 1, 1, 1, 4]
    (c,) = [n for n, d in H.degree() if d == 4]
    assert (H.nodes[c]["x"], H.nodes[c]["y"]) == pytest.approx((60.5, 60.5), abs=1.5)


def test_collinear_gap_closed() -> None:
    G = graph_from_lines([[(0.0, 10.0), (40.0, 10.5)], [(50.0, 10.5), (90.0, 11.0)]])
    H = connect_gaps(G, max_gap_px=20.0, max_angle_deg=30.0)
    assert nx.is_connected(H)
    assert_graph_invariants(H)
    assert degrees(H) == [1, 1, 2, 2]


def test_gap_longer_than_max_not_closed() -> None:
    G = graph_from_lines([[(0.0, 10.0), (40.0, 10.0)], [(70.0, 10.0), (110.0, 10.0)]])
    assert not nx.is_connected(connect_gaps(G, max_gap_px=20.0))


def test_perpendicular_stubs_not_joined() -> None:
    # Two stubs 10 px apart whose ends point across each other, not along the gap.
    G = graph_from_lines([[(0.0, 0.0), (40.0, 0.0)], [(48.0, 40.0), (48.0, 6.0)]])
    H = connect_gaps(G, max_gap_px=20.0, max_angle_deg=30.0)
    assert not nx.is_connected(H)


def test_end_joins_edge_as_t() -> None:
    G = graph_from_lines([[(0.0, 0.0), (100.0, 0.0)], [(50.0, 60.0), (50.0, 10.0)]])
    H = connect_gaps(G, max_gap_px=20.0)
    assert nx.is_connected(H)
    assert degrees(H) == [1, 1, 1, 2, 3]  # the joined end keeps its node (degree 2)
    (t,) = [n for n, d in H.degree() if d == 3]
    assert (H.nodes[t]["x"], H.nodes[t]["y"]) == pytest.approx((50.0, 0.0))
    assert_graph_invariants(H)


def test_end_extended_to_border() -> None:
    G = graph_from_lines([[(10.5, 50.0), (90.0, 50.0)]])
    H = connect_gaps(G, max_gap_px=20.0, shape=(100, 100))
    xs = sorted(d["x"] for _, d in H.nodes(data=True))
    assert xs == pytest.approx([0.5, 99.5])
    assert_graph_invariants(H)
    short = connect_gaps(G, max_gap_px=5.0, shape=(100, 100))
    assert sorted(d["x"] for _, d in short.nodes(data=True)) == pytest.approx([10.5, 90.0])


def test_merge_parallel_drops_duplicate() -> None:
    G = graph_from_lines(
        [[(0.0, 0.0), (50.0, 0.0), (100.0, 0.0)], [(0.0, 0.0), (50.0, 3.0), (100.0, 0.0)]]
    )
    G.edges[0, 1, 0]["saliency"] = 2.0
    G.edges[0, 1, 1]["saliency"] = 1.0
    H = merge_parallel(G, 5.0)
    assert H.number_of_edges() == 1
    (d,) = [d for _, _, d in H.edges(data=True)]
    assert d["saliency"] == 2.0
    # 3 px apart: both kept (two parallel edges between degree-2 nodes dissolve to a ring).
    kept = merge_parallel(G, 2.0)
    assert sum(d["geometry"].length for _, _, d in kept.edges(data=True)) > 200.0


def test_small_components_removed() -> None:
    G = graph_from_lines([[(0.0, 0.0), (100.0, 0.0)], [(0.0, 50.0), (5.0, 50.0)]])
    assert remove_small_components(G, 10.0).number_of_edges() == 1


def test_negative_parameter_raises() -> None:
    with pytest.raises(ConfigError):
        prune_spurs(nx.MultiGraph(), -1.0)


def test_node_crossings_puts_a_node_where_edges_cross():
    from geoseg.road.connect import node_crossings

    G = nx.MultiGraph()
    for n, (x, y) in enumerate([(0, 5), (10, 5), (5, 0), (5, 10)]):
        G.add_node(n, x=float(x), y=float(y))
    G.add_edge(0, 1, geometry=LineString([(0, 5), (10, 5)]), saliency=1.0)
    G.add_edge(2, 3, geometry=LineString([(5, 0), (5, 10)]), saliency=2.0)
    H = node_crossings(G)
    assert sorted(d for _, d in H.degree()) == [1, 1, 1, 1, 4]
    assert sorted(d["saliency"] for _, _, d in H.edges(data=True)) == [1.0, 1.0, 2.0, 2.0]
    T = nx.MultiGraph()
    for n, (x, y) in enumerate([(0, 5), (10, 5), (5, 5), (5, 10)]):
        T.add_node(n, x=float(x), y=float(y))
    T.add_edge(0, 2, geometry=LineString([(0, 5), (5, 5)]))
    T.add_edge(2, 1, geometry=LineString([(5, 5), (10, 5)]))
    T.add_edge(2, 3, geometry=LineString([(5, 5), (5, 10)]))
    assert node_crossings(T) is T  # already noded: unchanged


def test_two_sides_of_one_road_become_its_centre_line() -> None:
    # two lines 6 px apart between the same junctions (the two edges of an 8 px road)
    G = graph_from_lines([[(0.0, 0.0), (50.0, -3.0), (100.0, 0.0)], [(0.0, 0.0), (50.0, 3.0), (100.0, 0.0)], [(0.0, 0.0), (-50.0, 0.0)]])
    H = merge_parallel(G, 4.0, same_nodes_distance_px=8.0)
    assert H.number_of_edges() == 1
    (line,) = [d["geometry"] for _, _, d in H.edges(data=True)]
    assert line.hausdorff_distance(LineString([(-50.0, 0.0), (0.0, 0.0), (100.0, 0.0)])) < 0.01  # the mean: y = 0
    assert merge_parallel(G, 4.0).number_of_edges() == 2  # farther apart than distance_px, kept by default


def test_lines_crossing_near_a_junction_leave_one_junction() -> None:
    # an X whose crossing road comes as two pieces, fitted from either side, that overshoot
    # each other: three crossings a few px apart
    across = [(0.0, 50.0), (100.0, 50.0)]
    lower, upper = [(50.0, 0.0), (53.0, 60.0)], [(47.0, 40.0), (50.0, 100.0)]
    H = clean_network(graph_from_lines([across, lower, upper]), road_width_px=10.0, max_gap_px=20.0)
    assert sorted(d for _, d in H.degree()) == [1, 1, 1, 1, 4]
    assert min(d["geometry"].length for _, _, d in H.edges(data=True)) > 10.0
    assert_graph_invariants(H)
