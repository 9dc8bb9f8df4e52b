"""Tests of geoseg.metrics.topology (TOPO, junctions, connected components) on graphs built by hand."""

from __future__ import annotations

import math
from collections.abc import Sequence

import networkx as nx
import pytest
from shapely.geometry import LineString

from geoseg.errors import ConfigError
from geoseg.metrics import graph_metrics, junction_scores, topo_scores

Coords = Sequence[tuple[float, float]]

#: A T: a 200 m road along x with a 100 m branch up from its middle (lengths multiples of 5 m,
#: so that holes and marbles of equal graphs fall on the same points).
T_ROADS = [[(0, 0), (100, 0)], [(100, 0), (200, 0)], [(100, 0), (100, 100)]]


def _graph(polylines: Sequence[Coords], shift: float = 0.0) -> nx.MultiGraph:
    """The polylines as a road graph, moved ``shift`` metres diagonally (away from every road)."""
    g = nx.MultiGraph()
    d = shift / math.sqrt(2)
    for coords in polylines:
        pts = [(float(x) + d, float(y) + d) for x, y in coords]
        for node in (pts[0], pts[-1]):
            g.add_node(node, x=node[0], y=node[1])
        g.add_edge(pts[0], pts[-1], geometry=LineString(pts))
    return g


def test_a_network_scored_against_itself_is_perfect():
    m = graph_metrics(_graph(T_ROADS), _graph(T_ROADS))
    assert (m.topo_precision, m.topo_recall, m.topo_f1) == (1.0, 1.0, 1.0)
    assert (m.junction_precision, m.junction_recall, m.junction_f1) == (1.0, 1.0, 1.0)
    assert (m.truth_junctions, m.proposal_junctions, m.component_ratio) == (1, 1, 1.0)
    assert m.topo_seeds == 4  # 400 m of road: one seed per 100 m (every 20th sample of 5 m)


def test_a_missing_branch_costs_recall_only():
    p, r, f1, _ = topo_scores(_graph(T_ROADS), _graph(T_ROADS[:2]))
    assert p == 1.0  # every marble lies on a truth road
    assert 0.4 < r < 0.9 and f1 == pytest.approx(2 * r / (1 + r))
    jp, jr, jf1, nt, npr, matched = junction_scores(_graph(T_ROADS), _graph(T_ROADS[:2]))
    assert (nt, npr, matched) == (1, 0, 0) and math.isnan(jp) and jr == 0.0 and jf1 == 0.0


def test_a_spurious_branch_costs_precision_only():
    spur = [[(0, 0), (50, 0)], [(50, 0), (100, 0)], *T_ROADS[1:], [(50, 0), (50, 100)]]
    p, r, _, _ = topo_scores(_graph(T_ROADS), _graph(spur))
    assert r == 1.0 and 0.4 < p < 0.95
    jp, jr, jf1, nt, npr, matched = junction_scores(_graph(T_ROADS), _graph(spur))
    assert (jp, jr, nt, npr, matched) == (0.5, 1.0, 1, 2, 1) and jf1 == pytest.approx(2 / 3)


@pytest.mark.parametrize(("offset", "expected"), [(3.0, 1.0), (8.0, 0.0)])
def test_offsets_within_the_matching_distance_are_forgiven(offset: float, expected: float):
    m = graph_metrics(_graph(T_ROADS), _graph(T_ROADS, shift=offset), junction_radius_m=5.0)
    assert (m.topo_precision, m.topo_recall, m.junction_f1) == (expected, expected, expected)


def test_a_gap_breaks_paths_and_adds_a_component():
    broken = [T_ROADS[0], [(110, 0), (200, 0)], T_ROADS[2]]  # the right arm no longer joins the junction
    m = graph_metrics(_graph(T_ROADS), _graph(broken))
    assert (m.truth_components, m.proposal_components, m.component_ratio) == (1, 2, 2.0)
    assert m.topo_recall < 0.9 and m.topo_precision == 1.0
    assert m.junction_recall == 0.0  # the T became an L


def test_empty_graphs_and_bad_parameters():
    empty = nx.MultiGraph()
    m = graph_metrics(_graph(T_ROADS), empty)
    assert math.isnan(m.topo_precision) and (m.topo_recall, m.topo_f1, m.proposal_components) == (0.0, 0.0, 0)  # nothing proposed: as correctness
    assert m.component_ratio == 0.0 and m.junction_recall == 0.0
    m = graph_metrics(empty, empty)
    assert math.isnan(m.topo_f1) and math.isnan(m.junction_f1) and math.isnan(m.component_ratio)
    with pytest.raises(ConfigError, match="radius_m must be > 0"):
        topo_scores(empty, empty, radius_m=0)
    assert graph_metrics(_graph(T_ROADS), _graph(T_ROADS)).to_dict()["truth_junctions"] == 1
