"""Tests of geoseg.metrics.apls (SpaceNet APLS), on graphs built by hand (agreement with the
reference implementation on real pairs: test_apls_reference.py)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import networkx as nx
import pytest
from shapely.geometry import LineString

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.metrics import AplsResult, apls

Coords = Sequence[tuple[float, float]]


def _graph(polylines: Sequence[Coords]) -> nx.MultiGraph:
    """Road graph (conventions of docs/CONVENTIONS.md) with one edge per polyline; nodes at
    the polyline ends, identified by their coordinates."""
    g = nx.MultiGraph()
    for coords in polylines:
        a, b = tuple(map(float, coords[0])), tuple(map(float, coords[-1]))
        for node in (a, b):
            g.add_node(node, x=node[0], y=node[1])
        g.add_edge(a, b, geometry=LineString(coords))
    return g


def _two_blocks(with_bridge: bool = True, drop: tuple | None = None) -> nx.MultiGraph:
    """Two 3x3 grids of 100 m blocks, 300 m apart, joined by one 300 m bridge edge."""
    lines = []
    for x0 in (0.0, 500.0):
        for i in range(3):
            for j in range(3):
                x, y = x0 + 100.0 * i, 100.0 * j
                if i < 2:
                    lines.append([(x, y), (x + 100.0, y)])
                if j < 2:
                    lines.append([(x, y), (x, y + 100.0)])
    if with_bridge:
        lines.append([(200.0, 100.0), (500.0, 100.0)])
    if drop is not None:
        lines.remove(list(drop))
    return _graph(lines)


def test_identical_graphs_score_exactly_one() -> None:
    g = _two_blocks()
    r = apls(g, g)
    assert r.apls == 1.0
    assert r.apls_gt_onto_prop == 1.0 and r.apls_prop_onto_gt == 1.0
    assert r.gt_snapped == r.gt_control_points
    # 24 grid edges of 100 m get a midpoint each, the 300 m bridge 5 points: 18 nodes + 24 + 5
    assert r.gt_control_points == 18 + 24 + 5
    assert r.gt_routes == r.prop_routes == 47 * 46  # ordered pairs, all connected


def test_relabelled_and_reversed_copy_scores_one() -> None:
    g = _two_blocks()
    h = nx.MultiGraph()
    for n, d in g.nodes(data=True):
        h.add_node(str(n), **d)
    for u, v, d in g.edges(data=True):  # store every edge as (v, u), geometry still u -> v
        h.add_edge(str(v), str(u), geometry=d["geometry"])
    assert apls(g, h).apls == pytest.approx(1.0, abs=1e-12)


def test_empty_graphs() -> None:
    g = _graph([[(0, 0), (200, 0)]])
    empty = nx.MultiGraph()
    r = apls(g, empty)
    assert r.apls == 0.0 and r.apls_gt_onto_prop == 0.0 and math.isnan(r.apls_prop_onto_gt)
    assert apls(empty, g).apls == 0.0
    both = apls(empty, empty)
    assert (both.apls, both.apls_gt_onto_prop, both.apls_prop_onto_gt) == (1.0, 1.0, 1.0)
    isolated = nx.MultiGraph()
    isolated.add_node(0, x=0.0, y=0.0)
    assert apls(g, isolated).apls == 0.0


def test_gap_in_straight_line_hand_computed() -> None:
    truth = _graph([[(0, 0), (200, 0)]])
    proposal = _graph([[(0, 0), (95, 0)], [(105, 0), (200, 0)]])
    r = apls(truth, proposal)
    # truth control points at x = 0, 200 and 50, 100, 150; x = 100 is 5 m from the proposal
    # and does not snap. Of the 20 ordered pairs only (0, 50) and (150, 200), both ways, keep
    # their path.
    assert r.gt_snapped == 4 and r.gt_routes == 20
    assert r.apls_gt_onto_prop == pytest.approx(4 / 20)
    # proposal control points 0, 95, 47.5 | 105, 200, 152.5 all lie on the truth; the 6 ordered
    # pairs within each piece have the same length in the truth; pairs across the gap have no
    # path in the proposal and are not scored.
    assert r.prop_control_points == 6 and r.prop_routes == 12
    assert r.apls_prop_onto_gt == pytest.approx(1.0)
    assert r.apls == pytest.approx(2 * 0.2 * 1.0 / 1.2)


def test_detour_one_and_a_half_times_longer_scores_half() -> None:
    truth = _graph([[(0, 0), (40, 0)]])
    proposal = _graph([[(0, 0), (0, 10), (40, 10), (40, 0)]])  # 60 m between the same ends
    r = apls(truth, proposal, linestring_interval_m=100)
    assert r.gt_routes == 2 and r.prop_routes == 2  # both under 0.75 x 100 m: no midpoint
    assert r.apls_gt_onto_prop == pytest.approx(1 - 20 / 40)  # 0.5
    assert r.apls_prop_onto_gt == pytest.approx(1 - 20 / 60)
    assert r.apls == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_path_twice_as_long_or_more_scores_zero() -> None:
    truth = _graph([[(0, 0), (40, 0)]])
    proposal = _graph([[(0, 0), (0, 20), (40, 20), (40, 0)]])  # 80 m
    assert apls(truth, proposal, linestring_interval_m=100).apls_gt_onto_prop == 0.0


def test_snapping_distance() -> None:
    truth = _graph([[(0, 0), (200, 0)]])
    near = _graph([[(0, 3), (200, 3)]])
    far = _graph([[(0, 5), (200, 5)]])
    r_near = apls(truth, near)
    assert r_near.gt_snapped == 5
    assert r_near.apls == pytest.approx(1.0)
    assert apls(truth, far).apls == 0.0
    assert apls(truth, far, max_snap_dist_m=6).apls == pytest.approx(1.0)


def test_snapped_point_inserted_mid_edge() -> None:
    # The proposal has a single 200 m edge; truth control points at 50, 100, 150 must be
    # inserted into it for the paths between them to be measured.
    truth = _graph([[(0, 0), (100, 0)], [(100, 0), (200, 0)]])
    proposal = _graph([[(200, 1), (0, 1)]])
    r = apls(truth, proposal)
    assert r.gt_snapped == 5
    assert r.apls_gt_onto_prop == pytest.approx(1.0)


def test_edge_length_is_geometry_length_not_chord() -> None:
    # A curved truth road (zig-zag) against a straight proposal between the same end nodes.
    zigzag = [(0.0, 0.0), (10.0, 3.0), (20.0, 0.0), (30.0, 3.0), (40.0, 0.0)]
    truth = _graph([zigzag])
    straight = _graph([[(0, 0), (40, 0)]])
    r = apls(truth, straight, linestring_interval_m=100)
    length = LineString(zigzag).length
    assert r.apls_gt_onto_prop == pytest.approx(1 - (length - 40) / length)


def test_removed_bridge_much_worse_than_removed_grid_edge() -> None:
    truth = _two_blocks()
    no_bridge = _two_blocks(with_bridge=False)
    no_grid_edge = _two_blocks(drop=((0.0, 100.0), (100.0, 100.0)))
    r_bridge = apls(truth, no_bridge)
    r_grid = apls(truth, no_grid_edge)
    assert r_bridge.apls < 0.7
    assert 0.85 < r_grid.apls < 1.0
    # every proposal path exists with the same length in the truth
    assert r_bridge.apls_prop_onto_gt == pytest.approx(1.0)


def test_midpoints_follow_the_reference_spacing() -> None:
    # under 37.5 m: none; 37.5 to 50 m: the midpoint; longer: ceil(L / 50) - 1 even points
    for length, extra in ((37.0, 0), (40.0, 1), (50.0, 1), (101.0, 2), (150.0, 2), (151.0, 3)):
        g = _graph([[(0, 0), (length, 0)]])
        assert apls(g, g).gt_control_points == 2 + extra, length


def test_later_point_takes_over_a_node_and_the_earlier_one_is_missing() -> None:
    # Truth A=(0,0) and B=(2,0) both reach C=(1,30); A and B are nearest to the proposal's
    # dead end (3,0). A is inserted first, B takes the node over (the reference renames it),
    # so A is missing: A->B, A->C, B->A, C->A score 0; B->C and C->B nearly 1.
    truth = _graph([[(0, 0), (1, 30)], [(2, 0), (1, 30)]])
    proposal = _graph([[(3, 0), (3, 40)]])
    r = apls(truth, proposal)
    assert r.gt_control_points == 3 and r.gt_snapped == 2 and r.gt_routes == 6
    diff = (30.0 ** 2 + 1) ** 0.5 - 30.0
    assert r.apls_gt_onto_prop == pytest.approx(1 - (4 + 2 * diff / (30.0 + diff)) / 6)


def test_large_graphs_draw_control_points_deterministically() -> None:
    truth = _two_blocks()
    proposal = _two_blocks(drop=((0.0, 100.0), (100.0, 100.0)))
    a = apls(truth, proposal, large_graph_nodes=10, max_control_points=10, seed=3)
    b = apls(truth, proposal, large_graph_nodes=10, max_control_points=10, seed=3)
    assert a == b
    # large: no midpoints, 10 of the 18 nodes, all connected: 90 ordered pairs
    assert a.gt_control_points == 10 and a.gt_routes == 90
    full = apls(truth, proposal)
    assert abs(a.apls - full.apls) < 0.05


def test_edges_without_geometry_are_straight() -> None:
    g = nx.Graph()
    g.add_node("a", x=0.0, y=0.0)
    g.add_node("b", x=100.0, y=0.0)
    g.add_edge("a", "b")
    assert apls(g, _graph([[(0, 0), (100, 0)]])).apls == pytest.approx(1.0)


def test_result_dict_and_errors() -> None:
    g = _graph([[(0, 0), (100, 0)]])
    d = apls(g, g).to_dict()
    assert d["apls"] == 1.0 and set(d) == set(AplsResult.__dataclass_fields__)
    with pytest.raises(ConfigError):
        apls(g, g, linestring_interval_m=0)
    with pytest.raises(ConfigError):
        apls(g, g, max_snap_dist_m=-1)
    with pytest.raises(ConfigError):
        apls(g, g, max_control_points=1)
    bad = nx.Graph()
    bad.add_node(0, x=1.0)
    with pytest.raises(InputMismatchError):
        apls(bad, g)
