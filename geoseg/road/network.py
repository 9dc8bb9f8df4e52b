"""Road network graphs: from a thin centerline raster, from vector lines, and back.

Stage 2 of Cheng et al., "Road centerline extraction via semisupervised segmentation and
multidirection nonmaximum suppression" (arXiv 1508.06163; Neurocomputing 2016) turns the
one-pixel centerlines given by tensor voting + non-maximum suppression into road segments
that the fitting-based connection (:mod:`geoseg.road.connect`) then joins. The full text was
not available to us; the conversion here is the standard skeleton-graph reading:

* skeleton pixels with three or more 8-neighbours are junction pixels; 8-connected groups of
  them form one junction node at their centroid (the paper works on segments, not graphs);
* pixels with one neighbour are end nodes; one edge per pixel path between nodes, a closed
  ring without nodes becomes a self-loop, an isolated pixel is dropped;
* edges carry a shapely ``LineString`` in pixel space (``x = col + 0.5``, ``y = row + 0.5``)
  whose end points are the node coordinates, and the means of optional saliency and
  confidence rasters.

Graphs follow ``docs/CONVENTIONS.md``: an ``networkx.MultiGraph`` with node attributes ``x``,
``y`` and edge attributes ``geometry`` and optional ``saliency`` and ``confidence``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import networkx as nx
import numpy as np
import shapely
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from shapely.geometry import LineString, Point
from shapely.ops import substring
from skimage.draw import line as draw_line

from geoseg.errors import InputMismatchError

__all__ = [
    "EDGE_MEANS",
    "skeleton_to_graph",
    "simplify_graph",
    "dissolve_degree2",
    "graph_to_lines",
    "lines_to_graph",
    "rasterize_lines",
    "edge_lengths",
    "node_xy",
]

#: Edge attributes that are means of a raster along the edge (kept as length-weighted means
#: when edges are merged).
EDGE_MEANS = ("saliency", "confidence")

_OFFSETS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


def node_xy(G: nx.MultiGraph, n: object) -> tuple[float, float]:
    """Return the ``(x, y)`` coordinates of node ``n`` of ``G``.

    Parameters
    ----------
    G : networkx.MultiGraph
        Road graph.
    n : object
        A node of ``G``.

    Returns
    -------
    (float, float)
        The node's ``x`` and ``y`` attributes.

    Examples
    --------
    >>> G = nx.MultiGraph(); G.add_node("a", x=1, y=2.5)
    >>> node_xy(G, "a")
    (1.0, 2.5)
    """
    d = G.nodes[n]
    return (float(d["x"]), float(d["y"]))


def _neighbour_table(skel: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Pixel coordinates of the skeleton and, per pixel, the indices of its 8 neighbours (-1)."""
    rows, cols = np.nonzero(skel)
    index = np.full((skel.shape[0] + 2, skel.shape[1] + 2), -1, dtype=np.intp)
    index[rows + 1, cols + 1] = np.arange(rows.size)
    nb = np.stack([index[rows + 1 + dr, cols + 1 + dc] for dr, dc in _OFFSETS], axis=1)
    return np.stack([rows, cols], axis=1), nb


def skeleton_to_graph(
    skel: ArrayLike,
    *,
    saliency: ArrayLike | None = None,
    confidence: ArrayLike | None = None,
    offsets: ArrayLike | None = None,
) -> nx.MultiGraph:
    """Convert a 1-pixel, 8-connected centerline raster into a road network graph.

    Parameters
    ----------
    skel : array_like of bool, shape (rows, cols)
        Thin centerline raster (e.g. :func:`skimage.morphology.skeletonize` output, or
        non-maximum suppression of a saliency map). Thicker blobs are tolerated: their
        pixels with three or more neighbours merge into one junction node.
    saliency : array_like of float, shape (rows, cols), optional
        When given, each edge gets ``saliency`` = the mean of this raster over its pixels
        (both node pixels included).
    confidence : array_like of float, shape (rows, cols), optional
        The same for ``confidence`` (a 0-1 raster, e.g. the non-maximum suppression's).
    offsets : array_like of float, shape (2, rows, cols), optional
        Sub-pixel ``(dx, dy)`` shift of each pixel's centre (e.g.
        :func:`geoseg.road.nms.coverage_offsets`): path pixels and ends are placed at the
        shifted centres; junction nodes stay at the centres of their pixels.

    Returns
    -------
    networkx.MultiGraph
        Nodes ``0..n-1`` with ``x``, ``y`` in pixel space; one edge per pixel path with a
        ``geometry`` LineString from its first to its second node (as stored) and, when
        given, ``saliency`` and ``confidence``.

    Raises
    ------
    geoseg.errors.InputMismatchError
        If ``skel`` is not 2-D, ``saliency`` or ``confidence`` has another shape, or
        ``offsets`` is not of shape ``(2, rows, cols)``.

    Notes
    -----
    Neighbour counts, junction clustering and the neighbour table are vectorized; the
    tracing loop visits each skeleton pixel once, so the cost grows with the number of
    skeleton pixels, not with the image size.

    Examples
    --------
    A T of pixels: three end nodes, one junction node, three edges.

    >>> sk = np.zeros((5, 7), bool); sk[2, 1:6] = True; sk[0:2, 3] = True
    >>> G = skeleton_to_graph(sk)
    >>> G.number_of_edges(), sorted(node_xy(G, n) for n in G if G.degree(n) == 1)
    (3, [(1.5, 2.5), (3.5, 0.5), (5.5, 2.5)])
    """
    sk = np.asarray(skel).astype(bool)
    if sk.ndim != 2:
        raise InputMismatchError(f"expected a 2-D skeleton, got shape {sk.shape}")
    rasters: dict[str, np.ndarray] = {}  # edge attribute -> raster averaged along the edge
    for name, raster in (("saliency", saliency), ("confidence", confidence)):
        if raster is not None:
            rasters[name] = np.asarray(raster, dtype=np.float64)
            if rasters[name].shape != sk.shape:
                raise InputMismatchError(f"{name} shape {rasters[name].shape} != skeleton shape {sk.shape}")

    count = ndi.convolve(sk.astype(np.uint8), np.ones((3, 3), np.uint8), mode="constant") - 1
    count = np.where(sk, count, 0)
    sk = sk & (count > 0)  # isolated pixels are dropped
    coords, nb = _neighbour_table(sk)
    npix = coords.shape[0]
    G = nx.MultiGraph()
    if npix == 0:
        return G
    deg = count[coords[:, 0], coords[:, 1]]
    centres = coords[:, ::-1] + 0.5  # (x, y) of every skeleton pixel
    if offsets is not None:
        shift = np.asarray(offsets, dtype=np.float64)
        if shift.shape != (2, *sk.shape):
            raise InputMismatchError(f"offsets shape {shift.shape} != (2, *skeleton shape {sk.shape})")
        # Junctions stay at pixel centres: they have no single direction across.
        centres = centres + shift[:, coords[:, 0], coords[:, 1]].T * (deg <= 2)[:, None]

    # Node id of every node pixel (-1 for path pixels). Junction pixels are grouped by 8-conn.
    node_of = np.full(npix, -1, dtype=np.intp)
    is_junction = deg >= 3
    jlabels, n_j = ndi.label(count >= 3, structure=np.ones((3, 3), bool))
    node_of[is_junction] = jlabels[coords[is_junction, 0], coords[is_junction, 1]] - 1
    ends = np.flatnonzero(deg == 1)
    node_of[ends] = n_j + np.arange(ends.size)
    n_nodes = n_j + ends.size

    node_pix = np.flatnonzero(node_of >= 0)
    ids = node_of[node_pix]
    sums = np.zeros((n_nodes, 2))
    np.add.at(sums, ids, centres[node_pix])
    cnt = np.bincount(ids, minlength=n_nodes)[:, None]
    xy = sums / cnt
    for n in range(n_nodes):
        G.add_node(n, x=float(xy[n, 0]), y=float(xy[n, 1]))

    nbl = [[j for j in row if j >= 0] for row in nb.tolist()]
    node_list = node_of.tolist()
    pix_xy = centres.tolist()
    visited = np.zeros(npix, dtype=bool)

    def add_edge(u: int, v: int, path: list[int], first: int, last: int) -> None:
        pts = [tuple(xy[u])] + [tuple(pix_xy[p]) for p in path] + [tuple(xy[v])]
        attrs: dict[str, object] = {"geometry": LineString(pts)}
        pix = [first, *path, last]
        for name, raster in rasters.items():
            attrs[name] = float(raster[coords[pix, 0], coords[pix, 1]].mean())
        G.add_edge(u, v, **attrs)

    for start in node_pix.tolist():
        u = node_list[start]
        for j in nbl[start]:
            v = node_list[j]
            if v >= 0:
                # Two adjacent node pixels of different nodes: only possible with an end pixel.
                if v != u and start < j and (deg[start] == 1 or deg[j] == 1):
                    add_edge(u, v, [], start, j)
                continue
            if visited[j]:
                continue
            prev, cur, path = start, j, []
            while True:
                visited[cur] = True
                path.append(cur)
                # A path pixel has exactly two neighbours: the previous one and the next one.
                nxt = [k for k in nbl[cur] if k != prev]
                hit = [k for k in nxt if node_list[k] >= 0]
                if hit or not nxt:
                    break
                prev, cur = cur, nxt[0]
                if visited[cur]:
                    break
            if not hit:
                continue  # dead walk inside a malformed blob; nothing to attach
            end = hit[0]
            v = node_list[end]
            if v == u and len(path) <= 2:
                continue  # a pixel wedged inside a junction blob, not a loop
            add_edge(u, v, path, start, end)

    # Rings: path pixels never reached from a node.
    rest = np.flatnonzero(~visited & (node_of < 0))
    for start in rest.tolist():
        if visited[start]:
            continue
        prev, cur, path = -1, start, []
        while not visited[cur]:
            visited[cur] = True
            path.append(cur)
            nxt = [k for k in nbl[cur] if k != prev and not visited[k]]
            if not nxt:
                break
            prev, cur = cur, nxt[0]
        if len(path) < 3:
            continue
        n = G.number_of_nodes()
        while n in G:
            n += 1
        x0, y0 = pix_xy[path[0]]
        G.add_node(n, x=float(x0), y=float(y0))
        pts = [tuple(pix_xy[p]) for p in path] + [(x0, y0)]
        attrs = {"geometry": LineString(pts)}
        for name, raster in rasters.items():
            attrs[name] = float(raster[coords[path, 0], coords[path, 1]].mean())
        G.add_edge(n, n, **attrs)
    G.remove_nodes_from([n for n in list(G.nodes) if G.degree(n) == 0])
    return G


def oriented_coords(G: nx.MultiGraph, u: object, v: object, key: object) -> NDArray[np.float64]:
    """Coordinates of edge ``(u, v, key)`` ordered from node ``u`` to node ``v``.

    Parameters
    ----------
    G : networkx.MultiGraph
        Road graph.
    u, v, key : hashable
        The edge, with ``u`` the node the coordinates should start at.

    Returns
    -------
    numpy.ndarray, shape (n, 2)
        ``(x, y)`` vertices; for a self-loop, in stored order.
    """
    c = np.asarray(G.edges[u, v, key]["geometry"].coords, dtype=np.float64)
    if u == v:
        return c
    ux, uy = node_xy(G, u)
    d0 = (c[0, 0] - ux) ** 2 + (c[0, 1] - uy) ** 2
    d1 = (c[-1, 0] - ux) ** 2 + (c[-1, 1] - uy) ** 2
    return c if d0 <= d1 else c[::-1].copy()


def simplify_graph(G: nx.MultiGraph, tolerance_px: float) -> nx.MultiGraph:
    """Douglas–Peucker simplification of every edge geometry; end points are kept.

    Parameters
    ----------
    G : networkx.MultiGraph
        Road graph (not modified).
    tolerance_px : float
        Maximum deviation in pixels (:func:`shapely.simplify`, ``preserve_topology=False``).

    Returns
    -------
    networkx.MultiGraph
        A copy with simplified geometries. Rings that would collapse are left as they are.

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> G = lines_to_graph([LineString([(0, 0), (1, 0.1), (2, 0), (4, 0)])])
    >>> [list(d["geometry"].coords) for _, _, d in simplify_graph(G, 0.5).edges(data=True)]
    [[(0.0, 0.0), (4.0, 0.0)]]
    """
    H = G.copy()
    for u, v, _k, d in H.edges(keys=True, data=True):
        g = shapely.simplify(d["geometry"], tolerance_px, preserve_topology=False)
        if u == v and len(g.coords) < 4:
            continue
        d["geometry"] = g
    return H


def dissolve_degree2(G: nx.MultiGraph) -> nx.MultiGraph:
    """Merge the two edges through every degree-2 node into one edge.

    Parameters
    ----------
    G : networkx.MultiGraph
        Road graph (not modified).

    Returns
    -------
    networkx.MultiGraph
        A copy without degree-2 nodes except the anchor node of a self-loop ring. The merged
        edge's ``saliency`` and ``confidence`` (when both parts have one) are length-weighted means.

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> G = lines_to_graph([LineString([(0, 0), (3, 0)]), LineString([(3, 0), (3, 4)])])
    >>> [list(d["geometry"].coords) for _, _, d in dissolve_degree2(G).edges(data=True)]
    [[(0.0, 0.0), (3.0, 0.0), (3.0, 4.0)]]
    """
    H = G.copy()
    for n in list(H.nodes):
        if H.degree(n) != 2 or H.number_of_edges(n, n) > 0:
            continue
        (_, a, ka), (_, b, kb) = list(H.edges(n, keys=True))
        ca = oriented_coords(H, a, n, ka)  # a -> n
        cb = oriented_coords(H, n, b, kb)  # n -> b
        da, db = H.edges[a, n, ka], H.edges[n, b, kb]
        attrs: dict[str, object] = {"geometry": LineString(np.vstack([ca, cb[1:]]))}
        la, lb = da["geometry"].length, db["geometry"].length
        for name in EDGE_MEANS:
            if name in da and name in db:
                attrs[name] = (da[name] * la + db[name] * lb) / (la + lb) if la + lb > 0 else (da[name] + db[name]) / 2
        H.remove_node(n)
        H.add_edge(a, b, **attrs)
    return H


def graph_to_lines(G: nx.MultiGraph) -> list[LineString]:
    """Return the edge geometries of ``G`` as a list of LineStrings.

    Parameters
    ----------
    G : networkx.MultiGraph
        Road graph.

    Returns
    -------
    list of LineString
        The ``geometry`` of every edge, in edge order.

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> G = lines_to_graph([LineString([(0, 0), (3, 0)]), LineString([(0, 1), (0, 5)])])
    >>> [line.length for line in graph_to_lines(G)]
    [3.0, 4.0]
    """
    return [d["geometry"] for _, _, d in G.edges(data=True)]


def edge_lengths(G: nx.MultiGraph, gsd_m: float = 1.0) -> nx.MultiGraph:
    """Set each edge's ``length`` attribute to its geometry length times ``gsd_m``.

    Parameters
    ----------
    G : networkx.MultiGraph
        Road graph in pixel space; modified in place.
    gsd_m : float, default 1.0
        Ground sampling distance in metres per pixel (``1.0`` leaves lengths in pixels).

    Returns
    -------
    networkx.MultiGraph
        ``G`` itself, for chaining.

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> G = lines_to_graph([LineString([(0, 0), (3, 0), (3, 4)])])
    >>> [d["length"] for _, _, d in edge_lengths(G, 0.5).edges(data=True)]
    [3.5]
    """
    for _, _, d in G.edges(data=True):
        d["length"] = float(d["geometry"].length * gsd_m)
    return G


def _cluster_points(pts: NDArray[np.float64], tol: float) -> NDArray[np.intp]:
    """Label points so that points within ``tol`` of each other (transitively) share a label."""
    if len(pts) == 0:
        return np.zeros(0, dtype=np.intp)
    pairs = cKDTree(pts).query_pairs(tol, output_type="ndarray") if tol > 0 else np.zeros((0, 2))
    n = len(pts)
    adj = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(adj, directed=False)[1]


def lines_to_graph(lines: Iterable[LineString], snap_tol: float = 0.0) -> nx.MultiGraph:
    """Build a road graph from vector lines (e.g. ground-truth centerlines).

    Line ends closer than ``snap_tol`` are moved to their common centroid; a line end within
    ``snap_tol`` of another line (but of no other end) is moved onto it, making a T. The lines
    are then noded (split where they cross or share vertices, :func:`shapely.unary_union`):
    nodes lie at line ends and intersections. Crossings without a shared vertex (overpasses)
    become junctions too; vector data rarely says which crossings are grade-separated.

    Parameters
    ----------
    lines : iterable of LineString or MultiLineString
        Input lines, in any planar coordinates (pixel space or a projected CRS).
    snap_tol : float, default 0.0
        Snapping distance, in the units of the lines.

    Returns
    -------
    networkx.MultiGraph
        Graph whose node ``x``, ``y`` and edge geometries are in the lines' coordinates.

    Examples
    --------
    Two crossing lines make a junction and four edges; an end 0.3 away from a line is snapped
    onto it with ``snap_tol=0.5``:

    >>> from shapely.geometry import LineString
    >>> G = lines_to_graph([LineString([(0, 0), (4, 0)]), LineString([(2, -2), (2, 2)])])
    >>> G.number_of_edges(), [node_xy(G, n) for n in G if G.degree(n) == 4]
    (4, [(2.0, 0.0)])
    >>> T = [LineString([(0, 0), (4, 0)]), LineString([(2, 0.3), (2, 3)])]
    >>> lines_to_graph(T, snap_tol=0.5).number_of_edges()
    3
    """
    parts: list[NDArray[np.float64]] = []
    for g in lines:
        if g is None or g.is_empty:
            continue
        for p in getattr(g, "geoms", [g]):
            c = np.asarray(p.coords, dtype=np.float64)[:, :2]
            if len(c) >= 2 and p.length > 0:
                parts.append(c.copy())
    G = nx.MultiGraph()
    if not parts:
        return G
    if snap_tol > 0:
        ends = np.array([[c[0], c[-1]] for c in parts]).reshape(-1, 2)
        lab = _cluster_points(ends, snap_tol)
        sizes = np.bincount(lab)
        cent = np.zeros((lab.max() + 1, 2))
        np.add.at(cent, lab, ends)
        cent /= sizes[:, None]
        for i, c in enumerate(parts):
            c[0], c[-1] = cent[lab[2 * i]], cent[lab[2 * i + 1]]
        geoms = [LineString(c) for c in parts]
        tree = shapely.STRtree(geoms)
        for i, c in enumerate(parts):
            for e, idx in ((0, 2 * i), (-1, 2 * i + 1)):
                if sizes[lab[idx]] > 1:
                    continue
                p = Point(c[e])
                near = [j for j in tree.query(p, predicate="dwithin", distance=snap_tol) if j != i]
                if not near:
                    continue
                j = min(near, key=lambda j: geoms[j].distance(p))
                d = geoms[j].project(p)
                q = geoms[j].interpolate(d)
                c[e] = (q.x, q.y)
                geoms[i] = LineString(c)  # a later T onto this line splits it with this end kept
                # Insert the snapped point as a vertex of the target so noding sees it.
                gj = geoms[j]
                if 0 < d < gj.length:
                    a, b = substring(gj, 0, d), substring(gj, d, gj.length)
                    parts[j] = np.vstack([np.asarray(a.coords), np.asarray(b.coords)[1:]])
                    geoms[j] = LineString(parts[j])
        parts = [c for c in parts if LineString(c).length > 0]
    noded = shapely.unary_union([LineString(c) for c in parts])
    segs = [noded] if isinstance(noded, LineString) else list(getattr(noded, "geoms", []))
    ends = np.array([[s.coords[0], s.coords[-1]] for s in segs], dtype=np.float64).reshape(-1, 2)
    # Noding can leave intersection points a few ULPs apart: merge them.
    scale = max(1.0, float(np.abs(ends).max()))
    lab = _cluster_points(ends, 1e-9 * scale)
    cent = np.zeros((lab.max() + 1, 2))
    np.add.at(cent, lab, ends)
    cent /= np.bincount(lab)[:, None]
    for n, (x, y) in enumerate(cent):
        G.add_node(n, x=float(x), y=float(y))
    for i, s in enumerate(segs):
        c = np.asarray(s.coords, dtype=np.float64)
        u, v = int(lab[2 * i]), int(lab[2 * i + 1])
        c[0], c[-1] = cent[u], cent[v]
        G.add_edge(u, v, geometry=LineString(c))
    return G


def rasterize_lines(lines: Iterable[LineString], shape: Sequence[int]) -> NDArray[np.bool_]:
    """Render lines in pixel space as a 1-pixel, 8-connected raster.

    Parameters
    ----------
    lines : iterable of LineString or MultiLineString
        Lines in pixel space (``x`` = column, ``y`` = row; vertex ``(x, y)`` falls in pixel
        ``(floor(y), floor(x))``).
    shape : (int, int)
        Output ``(rows, cols)``; parts outside are clipped.

    Returns
    -------
    numpy.ndarray of bool
        The rendered raster (Bresenham per segment, :func:`skimage.draw.line`).

    Examples
    --------
    >>> rasterize_lines([LineString([(0.5, 0.5), (3.5, 2.5)])], (3, 4)).astype(int).tolist()
    [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1]]
    """
    rows, cols = int(shape[0]), int(shape[1])
    out = np.zeros((rows, cols), dtype=bool)
    for g in lines:
        if g is None or g.is_empty:
            continue
        for p in getattr(g, "geoms", [g]):
            c = np.floor(np.asarray(p.coords, dtype=np.float64)[:, :2]).astype(np.int64)
            rr_all, cc_all = [c[:1, 1]], [c[:1, 0]]
            for (x0, y0), (x1, y1) in zip(c[:-1], c[1:]):
                rr, cc = draw_line(int(y0), int(x0), int(y1), int(x1))
                rr_all.append(rr)
                cc_all.append(cc)
            rr, cc = np.concatenate(rr_all), np.concatenate(cc_all)
            ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
            out[rr[ok], cc[ok]] = True
    return out
