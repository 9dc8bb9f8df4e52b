"""Tests of geoseg.road.network and geoseg.road.skeleton: skeleton to graph and back."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from shapely.geometry import LineString
from skimage.draw import circle_perimeter
from skimage.morphology import skeletonize

from geoseg.errors import InputMismatchError
from geoseg.road.network import (
    dissolve_degree2,
    graph_to_lines,
    lines_to_graph,
    rasterize_lines,
    simplify_graph,
    skeleton_to_graph,
)
from geoseg.road.skeleton import estimate_road_width, skeletonize_mask


def assert_graph_invariants(G: nx.MultiGraph) -> None:
    """Every edge geometry starts and ends at its two nodes' coordinates."""
    for u, v, d in G.edges(data=True):
        c = np.asarray(d["geometry"].coords)
        pu = (G.nodes[u]["x"], G.nodes[u]["y"])
        pv = (G.nodes[v]["x"], G.nodes[v]["y"])
        ends = {tuple(np.round(c[0], 9)), tuple(np.round(c[-1], 9))}
        assert ends == {tuple(np.round(pu, 9)), tuple(np.round(pv, 9))}, (u, v)


def degrees(G: nx.MultiGraph) -> list[int]:
    return sorted(d for _, d in G.degree())


def plus_skeleton() -> np.ndarray:
    s = np.zeros((21, 21), bool)
    s[10, 2:19] = True
    s[2:19, 10] = True
    return s


def test_plus_gives_one_degree4_node_and_four_ends() -> None:
    G = skeleton_to_graph(plus_skeleton())
    assert degrees(G) == [1, 1, 1, 1, 4]
    centre = [n for n, d in G.degree() if d == 4][0]
    assert (G.nodes[centre]["x"], G.nodes[centre]["y"]) == (10.5, 10.5)
    assert_graph_invariants(G)
    assert sum(ln.length for ln in graph_to_lines(G)) == pytest.approx(32.0)


def test_t_gives_one_degree3_node() -> None:
    s = np.zeros((20, 20), bool)
    s[3, 2:18] = True
    s[3:17, 9] = True
    G = skeleton_to_graph(s)
    assert degrees(G) == [1, 1, 1, 3]
    assert_graph_invariants(G)


def test_isolated_ring_is_self_loop_and_single_pixel_dropped() -> None:
    s = np.zeros((30, 30), bool)
    rr, cc = circle_perimeter(12, 12, 8)
    s[rr, cc] = True
    s = skeletonize(s)
    s[27, 27] = True
    G = skeleton_to_graph(s)
    assert G.number_of_nodes() == 1
    n = next(iter(G.nodes))
    assert G.number_of_edges(n, n) == 1
    ring = G.edges[n, n, 0]["geometry"]
    assert ring.is_closed and ring.length == pytest.approx(2 * np.pi * 8, rel=0.15)
    assert_graph_invariants(G)


def test_ring_attached_to_line() -> None:
    s = np.zeros((30, 40), bool)
    rr, cc = circle_perimeter(12, 12, 8)
    s[rr, cc] = True
    s[12, 20:38] = True
    G = skeleton_to_graph(skeletonize(s))
    loops = list(nx.selfloop_edges(G))
    assert len(loops) == 1
    assert degrees(G) == [1, 3]
    assert_graph_invariants(G)


def test_saliency_is_mean_along_edge() -> None:
    s = np.zeros((5, 12), bool)
    s[2, 1:11] = True
    sal = np.zeros((5, 12))
    sal[2, 1:11] = np.arange(10)
    G = skeleton_to_graph(s, saliency=sal)
    (d,) = [d for _, _, d in G.edges(data=True)]
    assert d["saliency"] == pytest.approx(4.5)


def test_bad_shapes_raise() -> None:
    with pytest.raises(InputMismatchError):
        skeleton_to_graph(np.zeros((3, 3, 3), bool))
    with pytest.raises(InputMismatchError):
        skeleton_to_graph(np.zeros((3, 3), bool), saliency=np.zeros((4, 4)))


def test_dissolve_and_simplify_keep_ends() -> None:
    G = nx.MultiGraph()
    for n, (x, y) in enumerate([(0, 0), (5, 0.2), (10, 0)]):
        G.add_node(n, x=x, y=y)
    G.add_edge(0, 1, geometry=LineString([(0, 0), (2, 0.1), (5, 0.2)]), saliency=1.0)
    G.add_edge(2, 1, geometry=LineString([(10, 0), (5, 0.2)]), saliency=3.0)
    H = dissolve_degree2(G)
    assert degrees(H) == [1, 1]
    (d,) = [d for _, _, d in H.edges(data=True)]
    assert d["saliency"] == pytest.approx((1.0 * 5.004 + 3.0 * 5.004) / 10.008, rel=1e-3)
    S = simplify_graph(H, 0.5)
    (g,) = graph_to_lines(S)
    assert len(g.coords) == 2
    assert_graph_invariants(H)
    assert_graph_invariants(S)


def test_lines_to_graph_crossing_gives_degree4() -> None:
    G = lines_to_graph([LineString([(0, 5), (10, 5)]), LineString([(5, 0), (5, 10)])])
    assert degrees(G) == [1, 1, 1, 1, 4]
    centre = [n for n, d in G.degree() if d == 4][0]
    assert (G.nodes[centre]["x"], G.nodes[centre]["y"]) == pytest.approx((5.0, 5.0))
    assert_graph_invariants(G)


def test_lines_to_graph_snaps_ends() -> None:
    lines = [
        LineString([(0, 0), (10, 0)]),
        LineString([(10.3, 0.2), (20, 0)]),  # end-to-end, 0.36 apart
        LineString([(5, 0.4), (5, 10)]),  # T onto the first line
    ]
    G = lines_to_graph(lines, snap_tol=0.5)
    assert degrees(G) == [1, 1, 1, 2, 3]
    assert nx.is_connected(G)
    assert_graph_invariants(G)
    assert degrees(lines_to_graph(lines)) == [1] * 6


def test_rasterize_lines_pixel_space() -> None:
    lines = [LineString([(0.5, 2.5), (4.5, 2.5)]), LineString([(2.5, 0.5), (2.5, 9)])]
    r = rasterize_lines(lines, (6, 6))
    assert r[2, 0:5].all() and r[:, 2].all()
    assert r.sum() == 5 + 6 - 1


def test_skeleton_raster_roundtrip() -> None:
    s = plus_skeleton()
    assert (rasterize_lines(graph_to_lines(skeleton_to_graph(s)), s.shape) == s).all()


def test_skeletonize_mask_fills_pinholes_and_width() -> None:
    m = np.zeros((40, 80), bool)
    m[10:25, 5:75] = True
    m[17, 40] = False  # pinhole: would make a ring
    sk = skeletonize_mask(m)
    G = skeleton_to_graph(sk)
    assert not list(nx.selfloop_edges(G))
    assert estimate_road_width(m) == pytest.approx(15.0, abs=1.0)


def test_skeleton_to_graph_traces_a_large_grid() -> None:
    s = np.zeros((1024, 1024), bool)
    s[::16, :] = True
    s[:, ::16] = True
    G = skeleton_to_graph(s)
    assert max(d for _, d in G.degree()) == 4
    # 64 x 64 crossings; those off the first row and column have four arms (lines run on to the border)
    assert sum(1 for _, d in G.degree() if d == 4) == 63 * 63


@pytest.mark.parametrize("radius", [1, 2, 3])
def test_mask_smoothing_equals_scipys_binary_morphology(radius: int) -> None:
    """The shifted-copy erosion and dilation of skeletonize_mask are scipy's (border False), opening then closing included."""
    from scipy import ndimage
    from skimage.morphology import disk

    from geoseg.road.skeleton import _dilate, _erode

    footprint = disk(radius)
    offsets = np.argwhere(footprint) - radius
    rng = np.random.default_rng(radius)
    for _ in range(150):
        mask = rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 30)))) < rng.random()
        np.testing.assert_array_equal(_erode(mask, offsets), ndimage.binary_erosion(mask, structure=footprint))
        np.testing.assert_array_equal(_dilate(mask, offsets), ndimage.binary_dilation(mask, structure=footprint))
        smoothed = ndimage.binary_closing(ndimage.binary_opening(mask, structure=footprint), structure=footprint)
        np.testing.assert_array_equal(_erode(_dilate(_dilate(_erode(mask, offsets), offsets), offsets), offsets), smoothed)
