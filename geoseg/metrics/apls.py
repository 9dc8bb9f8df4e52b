"""APLS, the Average Path Length Similarity of two road networks.

Source: A. Van Etten, D. Lindenbaum, T. M. Bacastow, "SpaceNet: A Remote Sensing Dataset and
Challenge Series", arXiv:1807.01232, 2018 (the metric of the SpaceNet 3 road challenge).
Written from the paper's description, not from the reference code (``CosmiQ/apls``).

APLS compares the lengths of shortest paths between the same places in the two networks:

1. *Control points* are added along every edge of both graphs, one every
   ``linestring_interval_m`` metres; every node of the resulting graphs that has an edge is a
   control point (original nodes included).
2. Scoring graph A onto graph B: every control point of A is snapped onto B, at the nearest
   point of B's edges if that is within ``max_snap_dist_m`` (a node is inserted into B there);
   otherwise it is *missing*.
3. For every pair (a, b) of A's control points joined by a path in A, with shortest-path length
   ``L_A > 0`` (Dijkstra, edge weight = edge length), the path score is
   ``1 − min(1, |L_A − L_B| / L_A)``, where ``L_B`` is the shortest-path length between the
   snapped points in B; it is 0 when a or b is missing or when B has no path between them.
   APLS(A→B) is the mean path score.
4. APLS = harmonic mean of APLS(truth→proposal) and APLS(proposal→truth). The first penalises
   missing roads and broken connections, the second spurious roads and false connections.

Where this differs from the paper and from the reference implementation:

- Cost control: when a graph has more than ``max_control_points`` control points, a uniform
  random subset of that many (drawn with a fixed seed, so results are reproducible) is used as
  the path end points of that direction; the other control points stay in the graph. APLS is
  then an unbiased estimate of the mean over all pairs, from up to
  ``max_control_points·(max_control_points − 1)/2`` pairs.
- Pairs with no path in the source graph are left out of the mean (they carry no information
  about path lengths); pairs of distinct control points at the same place (``L_A = 0``) too.
- A snapped point that falls within 1e-6 CRS units of an existing node of the target graph
  uses that node instead of inserting a new one; this makes a graph scored against itself
  exactly 1.0.
- Not reproduced: the travel-time variant (SpaceNet 5), any cleaning of the graphs before
  scoring (removal of short dangling edges or small subgraphs), and the reference code's
  special handling of control points near intersections.
- Empty graphs, which the paper does not discuss: a direction whose source graph has no pair
  of connected control points is undefined (``nan``); two such graphs score 1.0 in both
  directions and overall; if only one graph is empty, APLS is 0.0 (the defined direction is
  necessarily 0, since nothing can snap onto an empty graph).

Graphs follow the project's road network convention (``docs/CONVENTIONS.md``): node
attributes ``x``, ``y`` and edge attribute ``geometry`` (a ``LineString`` whose ends are the
nodes), here in a projected CRS in metres. Edges without ``geometry`` are taken as straight
segments between their nodes; edge directions, if any, are ignored.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import asdict, dataclass

import networkx as nx
import numpy as np
import shapely

from geoseg.errors import ConfigError, InputMismatchError

__all__ = ["AplsResult", "apls"]

#: Distance (CRS units) under which two points on an edge are treated as the same node.
_SAME_POINT_TOL = 1e-6


@dataclass(frozen=True)
class AplsResult:
    """APLS of a proposal against a ground truth, with the counts behind it.

    Attributes
    ----------
    apls : float
        Harmonic mean of the two directions (the SpaceNet APLS).
    apls_gt_onto_prop : float
        Mean path score with paths taken in the ground truth and looked up in the proposal.
    apls_prop_onto_gt : float
        Mean path score with paths taken in the proposal and looked up in the ground truth.
    gt_control_points, prop_control_points : int
        Control points of each graph (nodes after inserting points every interval).
    gt_control_points_used, prop_control_points_used : int
        Control points used as path end points (fewer after subsampling).
    gt_snapped, prop_snapped : int
        Used control points of each graph that snapped onto the other graph.
    gt_pairs, prop_pairs : int
        Pairs of control points scored in each direction.
    """

    apls: float
    apls_gt_onto_prop: float
    apls_prop_onto_gt: float
    gt_control_points: int
    prop_control_points: int
    gt_control_points_used: int
    prop_control_points_used: int
    gt_snapped: int
    prop_snapped: int
    gt_pairs: int
    prop_pairs: int

    def to_dict(self) -> dict[str, float | int]:
        """Return the fields as a plain ``dict``."""
        return asdict(self)


@dataclass(frozen=True)
class _Network:
    """Edges of a graph with geometries oriented from ``start`` to ``end`` node index."""

    xy: np.ndarray  # (n, 2) node coordinates
    start: np.ndarray  # (m,) int
    end: np.ndarray  # (m,) int
    geoms: np.ndarray  # (m,) LineStrings, oriented start -> end
    lengths: np.ndarray  # (m,)


@dataclass(frozen=True)
class _Direction:
    """Result of scoring one graph onto the other."""

    score: float
    control_points: int
    used: int
    snapped: int
    pairs: int


def apls(
    truth_graph: nx.Graph,
    proposal_graph: nx.Graph,
    *,
    linestring_interval_m: float = 50.0,
    max_snap_dist_m: float = 4.0,
    max_control_points: int | None = 500,
    seed: int = 0,
) -> AplsResult:
    """Average Path Length Similarity of a proposed road graph against a ground-truth graph.

    Parameters
    ----------
    truth_graph : networkx.Graph
        Ground-truth road network (``Graph`` or ``MultiGraph``) with node attributes ``x``,
        ``y`` and edge attribute ``geometry``, in a projected CRS in metres.
    proposal_graph : networkx.Graph
        Proposed road network, same conventions and CRS.
    linestring_interval_m : float, optional
        Spacing of the control points inserted along edges (> 0), metres. Default 50.
    max_snap_dist_m : float, optional
        Largest distance (> 0) at which a control point snaps onto the other graph. Default 4.
    max_control_points : int or None, optional
        Largest number of control points (>= 2) used as path end points per direction; more
        are subsampled uniformly with ``seed``. ``None`` uses all (cost grows with the square
        of their number). Default 500.
    seed : int, optional
        Seed of the subsampling. Default 0.

    Returns
    -------
    AplsResult
        ``apls`` is 1.0 for a graph scored against itself, 0.0 for an empty proposal against a
        non-empty truth, and 1.0 when both are empty (see the module docstring).

    Raises
    ------
    ConfigError
        When a parameter is out of range.
    InputMismatchError
        When a node lacks ``x`` or ``y``.
    """
    if not (np.isfinite(linestring_interval_m) and linestring_interval_m > 0):
        raise ConfigError(f"linestring_interval_m must be > 0, got {linestring_interval_m!r}")
    if not (np.isfinite(max_snap_dist_m) and max_snap_dist_m > 0):
        raise ConfigError(f"max_snap_dist_m must be > 0, got {max_snap_dist_m!r}")
    if max_control_points is not None and max_control_points < 2:
        raise ConfigError(f"max_control_points must be >= 2 or None, got {max_control_points!r}")

    truth = _to_network(truth_graph)
    proposal = _to_network(proposal_graph)
    options = (linestring_interval_m, max_snap_dist_m, max_control_points, seed)
    gt_dir = _score_direction(truth, proposal, *options)
    prop_dir = _score_direction(proposal, truth, *options)

    gt_score, prop_score = gt_dir.score, prop_dir.score
    if np.isnan(gt_score) and np.isnan(prop_score):
        gt_score = prop_score = total = 1.0
    elif np.isnan(gt_score) or np.isnan(prop_score):
        total = 0.0
    elif gt_score + prop_score > 0:
        total = 2.0 * gt_score * prop_score / (gt_score + prop_score)
    else:
        total = 0.0
    return AplsResult(
        apls=float(total),
        apls_gt_onto_prop=float(gt_score),
        apls_prop_onto_gt=float(prop_score),
        gt_control_points=gt_dir.control_points,
        prop_control_points=prop_dir.control_points,
        gt_control_points_used=gt_dir.used,
        prop_control_points_used=prop_dir.used,
        gt_snapped=gt_dir.snapped,
        prop_snapped=prop_dir.snapped,
        gt_pairs=gt_dir.pairs,
        prop_pairs=prop_dir.pairs,
    )


def _to_network(graph: nx.Graph) -> _Network:
    """Node coordinates and oriented edge geometries of a road graph."""
    index = {node: i for i, node in enumerate(graph.nodes)}
    try:
        xy = np.array(
            [(float(d["x"]), float(d["y"])) for _, d in graph.nodes(data=True)], dtype=float
        ).reshape(-1, 2)
    except KeyError as exc:
        raise InputMismatchError("every node of a road graph needs 'x' and 'y' attributes") from exc
    edges = list(graph.edges(data=True))
    u = np.array([index[a] for a, _, _ in edges], dtype=np.intp)
    v = np.array([index[b] for _, b, _ in edges], dtype=np.intp)
    geoms = np.empty(len(edges), dtype=object)
    for i, (_, _, data) in enumerate(edges):
        geom = data.get("geometry")
        geoms[i] = geom if geom is not None else shapely.linestrings([xy[u[i]], xy[v[i]]])
    first = shapely.get_coordinates(shapely.get_point(geoms, 0)).reshape(-1, 2)
    flip = np.hypot(*(first - xy[u]).T) > np.hypot(*(first - xy[v]).T)
    return _Network(
        xy=xy,
        start=np.where(flip, v, u),
        end=np.where(flip, u, v),
        geoms=geoms,
        lengths=shapely.length(geoms).astype(float),
    )


def _injection(net: _Network, interval: float) -> tuple[np.ndarray, np.ndarray]:
    """Edge index and distance from the edge start of the control points inserted every
    ``interval``, excluding the edge ends."""
    counts = np.maximum(np.ceil((net.lengths - _SAME_POINT_TOL) / interval).astype(np.intp) - 1, 0)
    edge = np.repeat(np.arange(len(counts)), counts)
    rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return edge, (rank + 1) * interval


def _split_positions(
    length: float, cuts: np.ndarray, snaps: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Points along one edge after inserting ``cuts`` and ``snaps``.

    Returns the sorted distances from the edge start of all its points, ends included, and for
    each snap the index of its point. A snap within ``_SAME_POINT_TOL`` of an end, of a cut or
    of an earlier snap reuses that point.
    """
    points = [0.0, *cuts.tolist(), float(length)]
    placed = np.empty(len(snaps), dtype=float)
    for k, s in enumerate(snaps.tolist()):
        j = bisect_left(points, s)
        near = [c for c in (j - 1, j) if 0 <= c < len(points)]
        best = min(near, key=lambda c: abs(points[c] - s))
        if abs(points[best] - s) <= _SAME_POINT_TOL:
            placed[k] = points[best]
        else:
            insort(points, s)
            placed[k] = s
    positions = np.array(points)
    return positions, np.searchsorted(positions, placed)


def _working_graph(
    net: _Network,
    cut_edge: np.ndarray,
    cut_pos: np.ndarray,
    snap_edge: np.ndarray,
    snap_pos: np.ndarray,
) -> tuple[nx.Graph, np.ndarray, np.ndarray]:
    """Weighted simple graph of ``net`` with nodes inserted at the cuts and snaps.

    Returns the graph (nodes are integers, original nodes keep their index, edge attribute
    ``weight`` = length, the shortest of parallel edges), the coordinates of all its nodes, and
    the node of each snap.
    """
    n = len(net.xy)
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    snap_nodes = np.empty(len(snap_edge), dtype=np.intp)
    cut_bounds = np.searchsorted(cut_edge, np.arange(len(net.lengths) + 1))
    snap_order = np.argsort(snap_edge, kind="stable")
    snap_bounds = np.searchsorted(snap_edge[snap_order], np.arange(len(net.lengths) + 1))
    new_edge: list[int] = []
    new_pos: list[np.ndarray] = []
    next_id = n
    for i, length in enumerate(net.lengths.tolist()):
        snaps_here = snap_order[snap_bounds[i] : snap_bounds[i + 1]]
        positions, snap_idx = _split_positions(
            length, cut_pos[cut_bounds[i] : cut_bounds[i + 1]], snap_pos[snaps_here]
        )
        interior = len(positions) - 2
        chain = np.concatenate(
            ([net.start[i]], np.arange(next_id, next_id + interior), [net.end[i]])
        )
        next_id += interior
        new_edge.extend([i] * interior)
        new_pos.append(positions[1:-1])
        snap_nodes[snaps_here] = chain[snap_idx]
        for a, b, w in zip(chain[:-1].tolist(), chain[1:].tolist(), np.diff(positions).tolist()):
            if a == b:
                continue
            if not graph.has_edge(a, b) or graph[a][b]["weight"] > w:
                graph.add_edge(a, b, weight=w)
    added = np.concatenate(new_pos) if new_pos else np.empty(0)
    added_xy = shapely.get_coordinates(
        shapely.line_interpolate_point(net.geoms[np.array(new_edge, dtype=np.intp)], added)
    ).reshape(-1, 2)
    return graph, np.vstack([net.xy, added_xy]), snap_nodes


def _score_direction(
    source: _Network,
    target: _Network,
    interval: float,
    max_snap: float,
    max_points: int | None,
    seed: int,
) -> _Direction:
    """Mean path score of ``source``'s control-point pairs looked up in ``target``."""
    src_graph, src_xy, _ = _working_graph(source, *_injection(source, interval), *_no_snaps())
    control = np.array([node for node, deg in src_graph.degree if deg > 0], dtype=np.intp)
    n_control = len(control)
    if max_points is not None and n_control > max_points:
        rng = np.random.default_rng(seed)
        control = np.sort(rng.choice(control, size=max_points, replace=False))

    points = shapely.points(src_xy[control])
    snapped = np.full(len(control), -1, dtype=np.intp)
    if len(target.geoms) and len(control):
        hit_point, hit_edge = shapely.STRtree(target.geoms).query_nearest(
            points, max_distance=max_snap, all_matches=False
        )
        hit_pos = shapely.line_locate_point(target.geoms[hit_edge], points[hit_point])
        tgt_graph, _, hit_nodes = _working_graph(
            target, *_injection(target, interval), hit_edge, hit_pos
        )
        snapped[hit_point] = hit_nodes
    else:
        tgt_graph = nx.Graph()

    total = 0.0
    pairs = 0
    for i in range(len(control) - 1):
        from_src = nx.single_source_dijkstra_path_length(src_graph, control[i], weight="weight")
        len_src = np.array([from_src.get(t, np.nan) for t in control[i + 1 :].tolist()])
        valid = len_src > 0  # False for nan (no path) and for coincident points
        if not valid.any():
            continue
        len_src = len_src[valid]
        pairs += len(len_src)
        if snapped[i] < 0:
            continue
        from_tgt = nx.single_source_dijkstra_path_length(
            tgt_graph, snapped[i], cutoff=2.0 * len_src.max(), weight="weight"
        )
        len_tgt = np.array(
            [from_tgt.get(t, np.inf) for t in snapped[i + 1 :][valid].tolist()]
        )  # unsnapped targets (-1) are not graph nodes, hence inf
        total += float(np.sum(1.0 - np.minimum(1.0, np.abs(len_src - len_tgt) / len_src)))
    return _Direction(
        score=total / pairs if pairs else np.nan,
        control_points=n_control,
        used=len(control),
        snapped=int(np.count_nonzero(snapped >= 0)),
        pairs=pairs,
    )


def _no_snaps() -> tuple[np.ndarray, np.ndarray]:
    """Empty snap edge and position arrays."""
    return np.empty(0, dtype=np.intp), np.empty(0, dtype=float)
