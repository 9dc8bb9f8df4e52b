"""APLS, the Average Path Length Similarity of two road networks, as the SpaceNet challenges score it.

Source: A. Van Etten, D. Lindenbaum, T. M. Bacastow, "SpaceNet: A Remote Sensing Dataset and
Challenge Series", arXiv:1807.01232, 2018 (the metric of the SpaceNet 3 road challenge), and
the behaviour of its reference implementation (CosmiQ Works ``apls``, length-weighted, its
command-line defaults). The code here is written anew from that behaviour; none is copied.
Agreement is tested on real SpaceNet pairs against values the reference computed
(``../shared/reference/apls_cosmiq.json``; ``tests/metrics/test_apls_reference.py``).

Scoring graph A onto graph B (one *direction*):

1. *Control points* of A: every node of A after inserting points along its long edges: an edge
   of length ``L`` gets none if ``L < 0.75·interval``, its midpoint if ``L <= interval``, and
   otherwise ``ceil(L / interval) - 1`` points evenly spaced along it (interval 50 m).
2. Each control point of A is inserted into B (B without its own control points) at the
   nearest point of B's edges, if that is within ``max_snap_dist_m`` (4 m); otherwise it is
   *missing*. The points are inserted one after the other, in A's node order; a point whose
   nearest point of B is an existing node of B (an end of an edge, or where an earlier point
   was inserted) takes that node over, and an earlier control point held there is then
   missing too (the reference renames the node).
3. For every ordered pair (a, b) of A's control points with a path in A, of length
   ``L_A >= min_path_length_m``: if a is missing, the pair scores 0 (whatever ``L_A``);
   otherwise it scores ``1 − min(1, |L_A − L_B| / L_A)`` where ``L_B`` is the shortest-path
   length between the inserted points in B, and 0 when b is missing or B has no path.
   The direction's score is the mean pair score.
4. APLS is the harmonic mean of truth→proposal and proposal→truth, 0 if either is 0.

For large truths (more than ``large_graph_nodes`` nodes) the reference skips step 1 and uses
``max_control_points`` nodes drawn at random from each graph; here they are drawn with a fixed
``seed``, so results are reproducible (the reference's are not).

The graphs themselves matter as much as the scoring: the reference builds them from lines with
nodes where lines share a vertex, merges chains of vertices into edges where a vertex joins
exactly two segments of one line, and drops connected parts shorter than 5 m; use
:func:`geoseg.metrics.graph_from_lines` to build graphs the same way (``geoseg eval`` does).

Where this differs from the reference:

- Empty graphs: the reference scores 0 when either graph is empty; here two empty graphs score
  1.0 (nothing to find, nothing found) and a direction without any pair of connected control
  points is undefined (``nan``): 1.0 overall when both are, 0.0 when only one is.
- A control point is inserted onto its nearest edge of B as found on B's original edges;
  the reference searches the edges as split so far, which differs only where two edges of B
  are at exactly the same distance (overlapping edges).
- Node coincidence is decided within 1e-6 m along an edge, not by exact float equality.
- Not reproduced: the travel-time variant (SpaceNet 5).

Graphs follow the project's road network convention (``docs/CONVENTIONS.md``): node
attributes ``x``, ``y`` and edge attribute ``geometry`` (a ``LineString`` whose ends are the
nodes), in a projected CRS in metres. Edges without ``geometry`` are straight segments between
their nodes; edge directions, if any, are ignored.

Examples
--------
>>> from shapely.geometry import LineString
>>> from geoseg.metrics import graph_from_lines
>>> truth = graph_from_lines([LineString([(0, 0), (100, 0), (200, 0)]), LineString([(100, 0), (100, 100)])])
>>> apls(truth, truth).apls
1.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import networkx as nx
import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from geoseg.errors import ConfigError, InputMismatchError

__all__ = ["AplsResult", "apls"]

#: Distance (metres along an edge) under which a point is at an existing node.
_SAME_POINT_TOL = 1e-6


@dataclass(frozen=True)
class AplsResult:
    """APLS of a proposal against a ground truth, with the counts behind it.

    Attributes
    ----------
    apls : float
        Harmonic mean of the two directions (the SpaceNet APLS).
    apls_gt_onto_prop : float
        Mean pair score with paths taken in the ground truth and looked up in the proposal.
    apls_prop_onto_gt : float
        Mean pair score with paths taken in the proposal and looked up in the ground truth.
    gt_control_points, prop_control_points : int
        Control points of each graph (its nodes after inserting points along long edges, or
        the nodes drawn for a large graph).
    gt_snapped, prop_snapped : int
        Control points of each graph that hold a node of the other graph at the end.
    gt_routes, prop_routes : int
        Ordered pairs of control points scored in each direction (the reference's routes).
    """

    apls: float
    apls_gt_onto_prop: float
    apls_prop_onto_gt: float
    gt_control_points: int
    prop_control_points: int
    gt_snapped: int
    prop_snapped: int
    gt_routes: int
    prop_routes: int

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
    snapped: int
    routes: int


@dataclass
class _SplitGraph:
    """A network with extra nodes inserted along its edges.

    Node ``i < len(net.xy)`` is an original node; the others are the inserted points, in the
    order given. ``weights`` is a sparse symmetric matrix of piece lengths.
    """

    n_nodes: int
    weights: coo_matrix


def apls(
    truth_graph: nx.Graph,
    proposal_graph: nx.Graph,
    *,
    linestring_interval_m: float = 50.0,
    max_snap_dist_m: float = 4.0,
    min_path_length_m: float = 0.001,
    large_graph_nodes: int = 500,
    max_control_points: int = 1000,
    seed: int = 0,
) -> AplsResult:
    """Average Path Length Similarity of a proposed road graph against a ground-truth graph.

    Parameters
    ----------
    truth_graph : networkx.Graph
        Ground-truth road network (``Graph`` or ``MultiGraph``) with node attributes ``x``,
        ``y`` and edge attribute ``geometry``, in a projected CRS in metres; build it from
        lines with :func:`geoseg.metrics.graph_from_lines` to match the reference.
    proposal_graph : networkx.Graph
        Proposed road network, same conventions and CRS.
    linestring_interval_m : float, optional
        Spacing of the control points inserted along edges (> 0), metres. Default 50.
    max_snap_dist_m : float, optional
        Largest distance (> 0) at which a control point is inserted into the other graph.
        Default 4.
    min_path_length_m : float, optional
        Pairs closer than this along the source graph are not scored. Default 0.001.
    large_graph_nodes : int, optional
        A truth with more nodes than this is *large*: no points are inserted along edges and
        at most ``max_control_points`` nodes of each graph are drawn. Default 500.
    max_control_points : int, optional
        Control points drawn from each graph when the truth is large (>= 2). Default 1000.
    seed : int, optional
        Seed of that draw. Default 0.

    Returns
    -------
    AplsResult
        ``apls`` is 1.0 for a graph scored against itself, 0.0 for an empty proposal against a
        non-empty truth, and 1.0 when both are empty (see the module docstring).

    Raises
    ------
    geoseg.errors.ConfigError
        If ``linestring_interval_m`` or ``max_snap_dist_m`` is not a finite positive number,
        ``min_path_length_m`` is negative or not finite, or ``max_control_points`` is below 2.
    geoseg.errors.InputMismatchError
        If a node lacks ``x`` or ``y``.

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> from geoseg.metrics import graph_from_lines
    >>> truth = graph_from_lines([LineString([(0, 0), (300, 0)])])
    >>> shorter = graph_from_lines([LineString([(0, 0), (240, 0)])])
    >>> r = apls(truth, shorter)  # 5 of 7 truth points snap: 20 of 42 routes kept
    >>> round(r.apls_gt_onto_prop, 3), r.apls_prop_onto_gt, round(r.apls, 3)
    (0.476, 1.0, 0.645)
    """
    for name, value in (("linestring_interval_m", linestring_interval_m), ("max_snap_dist_m", max_snap_dist_m)):
        if not (np.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be > 0, got {value!r}")
    if not (np.isfinite(min_path_length_m) and min_path_length_m >= 0):
        raise ConfigError(f"min_path_length_m must be >= 0, got {min_path_length_m!r}")
    if max_control_points < 2:
        raise ConfigError(f"max_control_points must be >= 2, got {max_control_points!r}")

    truth = _to_network(truth_graph)
    proposal = _to_network(proposal_graph)
    large = len(truth.xy) > large_graph_nodes
    interval = None if large else linestring_interval_m
    limit = max_control_points if large else None
    rng = np.random.default_rng(seed)
    gt_dir = _score_direction(truth, proposal, interval, max_snap_dist_m, min_path_length_m, limit, rng)
    prop_dir = _score_direction(proposal, truth, interval, max_snap_dist_m, min_path_length_m, limit, rng)

    gt_score, prop_score = gt_dir.score, prop_dir.score
    if np.isnan(gt_score) and np.isnan(prop_score):
        gt_score = prop_score = total = 1.0
    elif np.isnan(gt_score) or np.isnan(prop_score) or gt_score <= 0 or prop_score <= 0:
        total = 0.0
    else:
        total = 2.0 * gt_score * prop_score / (gt_score + prop_score)
    return AplsResult(
        apls=float(total),
        apls_gt_onto_prop=float(gt_score),
        apls_prop_onto_gt=float(prop_score),
        gt_control_points=gt_dir.control_points,
        prop_control_points=prop_dir.control_points,
        gt_snapped=gt_dir.snapped,
        prop_snapped=prop_dir.snapped,
        gt_routes=gt_dir.routes,
        prop_routes=prop_dir.routes,
    )


def _to_network(graph: nx.Graph) -> _Network:
    """Node coordinates and oriented edge geometries of a road graph."""
    index = {node: i for i, node in enumerate(graph.nodes)}
    try:
        xy = np.array([(float(d["x"]), float(d["y"])) for _, d in graph.nodes(data=True)], dtype=float).reshape(-1, 2)
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


def _midpoints(net: _Network, interval: float) -> tuple[np.ndarray, np.ndarray]:
    """Edge index and distance from the edge start of the points inserted along long edges.

    None on an edge shorter than ``0.75·interval``, its midpoint up to ``interval``, else
    ``ceil(L / interval) - 1`` points dividing it evenly.
    """
    lengths = net.lengths
    pieces = np.where(lengths <= interval, 2, np.ceil(lengths / interval).astype(np.intp))
    counts = np.where(lengths < 0.75 * interval, 0, pieces - 1)
    edge = np.repeat(np.arange(len(lengths)), counts)
    rank = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 1
    return edge, lengths[edge] * rank / pieces[edge]


def _split(net: _Network, edge: np.ndarray, pos: np.ndarray) -> _SplitGraph:
    """``net`` with a node inserted at each ``(edge, pos)``; node ``len(net.xy) + k`` is point k.

    Points must be strictly inside their edge and distinct along it.
    """
    n0 = len(net.xy)
    ids = n0 + np.arange(len(edge))
    order = np.lexsort((pos, edge))
    bounds = np.searchsorted(edge[order], np.arange(len(net.lengths) + 1))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for i, length in enumerate(net.lengths.tolist()):
        here = order[bounds[i] : bounds[i + 1]]
        chain = np.concatenate(([net.start[i]], ids[here], [net.end[i]]))
        positions = np.concatenate(([0.0], pos[here], [length]))
        rows.append(chain[:-1])
        cols.append(chain[1:])
        weights.append(np.diff(positions))
    n = n0 + len(edge)
    if not rows:
        return _SplitGraph(n, coo_matrix((n, n)))
    r, c, w = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    keep = r != c  # self-loops carry no path
    r, c, w = r[keep], c[keep], np.maximum(w[keep], 1e-12)  # 0 would read as "no edge"
    # one entry per node pair, the shortest of parallel pieces (a sparse matrix would sum them)
    a, b = np.minimum(r, c), np.maximum(r, c)
    key = a.astype(np.int64) * n + b
    order2 = np.lexsort((w, key))
    first = np.ones(len(key), dtype=bool)
    first[1:] = key[order2][1:] != key[order2][:-1]
    sel = order2[first]
    a, b, w = a[sel], b[sel], w[sel]
    return _SplitGraph(n, coo_matrix((np.concatenate((w, w)), (np.concatenate((a, b)), np.concatenate((b, a)))), shape=(n, n)))


def _snap(target: _Network, points: np.ndarray, max_snap: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Insert ``points`` (in order) into ``target`` the way the reference does.

    Returns the inserted points' edge and position (strictly inside edges) and, for each
    point, the node of the split target graph it holds at the end, or -1 (too far, or taken
    over by a later point at the same node).
    """
    holder = np.full(len(points), -1, dtype=np.intp)
    if not len(target.geoms) or not len(points):
        return np.empty(0, np.intp), np.empty(0), holder
    hit_point, hit_edge = shapely.STRtree(target.geoms).query_nearest(shapely.points(points), max_distance=max_snap, all_matches=False)
    hit_pos = shapely.line_locate_point(target.geoms[hit_edge], shapely.points(points[hit_point]))
    n0 = len(target.xy)
    owner: dict[int, int] = {}  # node of the split graph -> point index holding it
    inserted: dict[int, list[tuple[float, int]]] = {}  # edge -> (position, node) of the points inserted on it
    new_edge: list[int] = []
    new_pos: list[float] = []
    for p, e, s in zip(hit_point.tolist(), hit_edge.tolist(), hit_pos.tolist()):
        if s <= _SAME_POINT_TOL:
            node = int(target.start[e])
        elif s >= float(target.lengths[e]) - _SAME_POINT_TOL:
            node = int(target.end[e])
        else:
            node = next((n for t, n in inserted.get(e, []) if abs(t - s) <= _SAME_POINT_TOL), -1)
            if node < 0:
                node = n0 + len(new_edge)
                inserted.setdefault(e, []).append((s, node))
                new_edge.append(e)
                new_pos.append(s)
        owner[node] = p  # a later point at the same node takes it over
    for node, p in owner.items():
        holder[p] = node
    return np.array(new_edge, dtype=np.intp), np.array(new_pos, dtype=float), holder


def _score_direction(
    source: _Network,
    target: _Network,
    interval: float | None,
    max_snap: float,
    min_path: float,
    limit: int | None,
    rng: np.random.Generator,
) -> _Direction:
    """Mean pair score of ``source``'s control points looked up in ``target``."""
    if interval is None:
        mid_edge, mid_pos = np.empty(0, np.intp), np.empty(0)
    else:
        mid_edge, mid_pos = _midpoints(source, interval)
    src = _split(source, mid_edge, mid_pos)
    control = np.arange(src.n_nodes)
    if limit is not None and len(control) > limit:
        control = np.sort(rng.choice(control, size=limit, replace=False))
    xy = np.vstack([source.xy, shapely.get_coordinates(shapely.line_interpolate_point(source.geoms[mid_edge], mid_pos)).reshape(-1, 2)])[control]
    if not len(control):
        return _Direction(np.nan, 0, 0, 0)

    len_src = dijkstra(src.weights.tocsr(), directed=False, indices=control)[:, control]
    snap_edge, snap_pos, holder = _snap(target, xy, max_snap)
    held = holder >= 0
    len_tgt = np.full(len_src.shape, np.inf)
    if held.any():
        tgt = _split(target, snap_edge, snap_pos)
        len_tgt[held] = dijkstra(tgt.weights.tocsr(), directed=False, indices=holder[held])[:, np.maximum(holder, 0)]
        len_tgt[:, ~held] = np.inf

    connected = np.isfinite(len_src)
    np.fill_diagonal(connected, False)
    scored = connected & (len_src >= min_path)
    scored[~held] = connected[~held]  # a missing start scores 0 on every route, short ones too
    diffs = np.ones(len_src.shape)
    ok = scored & np.isfinite(len_tgt) & held[:, None]
    diffs[ok] = np.minimum(1.0, np.abs(len_src[ok] - len_tgt[ok]) / len_src[ok])
    routes = int(scored.sum())
    score = 1.0 - float(diffs[scored].sum()) / routes if routes else np.nan
    return _Direction(score=score, control_points=len(control), snapped=int(held.sum()), routes=routes)
