"""Tiles with halos, and stitching of per-tile road networks into one topology.

A scene is cut into a grid of **cores** (aligned to the file's internal blocks) that cover it
exactly once; each tile is read with a **halo** of extra pixels on every side (clipped at the
scene border) so that every core pixel sees the neighbourhood its steps need. Raster results
are cropped to the core; vector results are clipped to the core and then stitched across
core borders (shared end points merged, degree-2 nodes dissolved), so a line crossing three
tiles comes out as one edge. With a processing extent, the cores cover a :class:`Region` of
the scene instead (their halos still reach outside it), and the stitched network is clipped to
the extent (:func:`clip_network`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import networkx as nx
import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import LineString, box

from geoseg.errors import ConfigError
from geoseg.road.network import EDGE_MEANS

__all__ = [
    "Region",
    "Tile",
    "tile_grid",
    "read_ratio",
    "tile_size_for_memory",
    "parse_memory",
    "clip_to_core",
    "clip_network",
    "stitch_pieces",
    "canonical",
    "drop_clip_vertices",
]


@dataclass(frozen=True)
class Region:
    """A rectangle of whole pixels: rows ``[row0, row1)`` and columns ``[col0, col1)``."""

    row0: int
    col0: int
    row1: int
    col1: int

    @property
    def height(self) -> int:
        """Number of rows."""
        return self.row1 - self.row0

    @property
    def width(self) -> int:
        """Number of columns."""
        return self.col1 - self.col0

    def grow(self, px: int, within: Region) -> Region:
        """This region with ``px`` more pixels on every side, clipped to ``within``."""
        return Region(max(within.row0, self.row0 - px), max(within.col0, self.col0 - px), min(within.row1, self.row1 + px), min(within.col1, self.col1 + px))

    def contains(self, other: Region) -> bool:
        """Whether ``other`` lies inside this region."""
        return self.row0 <= other.row0 and self.col0 <= other.col0 and other.row1 <= self.row1 and other.col1 <= self.col1

    def shift(self, drow: int, dcol: int) -> Region:
        """The region moved by ``drow`` rows and ``dcol`` columns."""
        return Region(self.row0 + drow, self.col0 + dcol, self.row1 + drow, self.col1 + dcol)


@dataclass(frozen=True)
class Tile:
    """One tile: its core (written) and its window (read, core plus halo).

    All offsets are in scene pixels. ``core_in_window`` slices the core out of an array
    read for the window.
    """

    index: int
    row_off: int
    col_off: int
    height: int
    width: int
    win_row_off: int
    win_col_off: int
    win_height: int
    win_width: int

    @property
    def core_in_window(self) -> tuple[slice, slice]:
        """Slices of the core inside the window's arrays."""
        r0 = self.row_off - self.win_row_off
        c0 = self.col_off - self.win_col_off
        return slice(r0, r0 + self.height), slice(c0, c0 + self.width)

    def core_box(self) -> shapely.Polygon:
        """The core in scene pixel space; its sides lie on pixel edges (integers)."""
        return box(self.col_off, self.row_off, self.col_off + self.width, self.row_off + self.height)

    def shifted(self, drow: int, dcol: int) -> Tile:
        """The same tile with its core and window moved by ``drow`` rows and ``dcol`` columns."""
        return replace(self, row_off=self.row_off + drow, col_off=self.col_off + dcol, win_row_off=self.win_row_off + drow, win_col_off=self.win_col_off + dcol)

    def _core_part(self, region: Region) -> Region | None:
        part = Region(
            max(self.row_off, region.row0),
            max(self.col_off, region.col0),
            min(self.row_off + self.height, region.row1),
            min(self.col_off + self.width, region.col1),
        )
        return part if part.height > 0 and part.width > 0 else None

    def part_in_window(self, region: Region) -> tuple[slice, slice] | None:
        """Slices, in the window's arrays, of the part of the core inside ``region`` (None: no part)."""
        part = self._core_part(region)
        if part is None:
            return None
        return slice(part.row0 - self.win_row_off, part.row1 - self.win_row_off), slice(part.col0 - self.win_col_off, part.col1 - self.win_col_off)

    def crop(self, region: Region) -> tuple[tuple[slice, slice], Tile] | None:
        """The part of the core inside ``region`` (None: no part).

        Returns its slices in the core's arrays, and that part as a tile (without halo) in
        the coordinates of ``region``, whose origin becomes (0, 0).
        """
        part = self._core_part(region)
        if part is None:
            return None
        rows = slice(part.row0 - self.row_off, part.row1 - self.row_off)
        cols = slice(part.col0 - self.col_off, part.col1 - self.col_off)
        r, c = part.row0 - region.row0, part.col0 - region.col0
        return (rows, cols), Tile(self.index, r, c, part.height, part.width, r, c, part.height, part.width)


def parse_memory(value: int | str) -> int:
    """Bytes from ``512MB``, ``2 GiB``, ``1e9`` or an int.

    The units K, M, G and T are powers of 1024, with or without ``i`` and ``B`` (``512MB`` is
    ``512MiB``); case and blanks do not matter.

    Parameters
    ----------
    value : int or str
        A number of bytes, or a text of a number and an optional unit.

    Returns
    -------
    int
        The number of bytes (rounded down).

    Raises
    ------
    ConfigError
        ``value`` is a text that is not a number with an optional unit.

    Examples
    --------
    >>> parse_memory("512MB"), parse_memory("1GiB"), parse_memory(1000)
    (536870912, 1073741824, 1000)
    >>> parse_memory("2 gb"), parse_memory("1e9"), parse_memory("1.5k")
    (2147483648, 1000000000, 1536)
    >>> parse_memory("lots")
    Traceback (most recent call last):
        ...
    geoseg.errors.ConfigError: max_memory: cannot read 'lots' (examples: 512MB, 2GB, 1073741824)
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([KMGT]?)(i?B?)\s*", str(value), flags=re.IGNORECASE)
    if not match:
        raise ConfigError(f"max_memory: cannot read {value!r} (examples: 512MB, 2GB, 1073741824)")
    number, unit = float(match.group(1)), match.group(2).upper()
    return int(number * 1024 ** " KMGT".index(unit or " "))


def tile_size_for_memory(max_memory: int, bytes_per_pixel: int, halo_px: int, block: int = 256) -> int:
    """Largest core side (a multiple of ``block``) whose window fits ``max_memory``.

    The window is ``core + 2 * halo`` on a side and costs ``bytes_per_pixel`` per pixel. The
    side is never less than ``block``, even when that window does not fit ``max_memory``.

    Parameters
    ----------
    max_memory : int
        Bytes a window may take.
    bytes_per_pixel : int
        Bytes one pixel of a window costs.
    halo_px : int
        Halo on each side of the core, in pixels.
    block : int, default 256
        The core side is a multiple of it (the file's internal block size).

    Returns
    -------
    int
        Core side in pixels.

    Examples
    --------
    >>> tile_size_for_memory(64 * 2**20, 4, 64)  # a 4096-pixel window: 3968 of core
    3840
    >>> tile_size_for_memory(1000, 4, 64)  # too little memory: one block
    256
    """
    window = math.isqrt(max(1, max_memory // max(1, bytes_per_pixel)))
    core = window - 2 * halo_px
    return max(block, (core // block) * block)


def tile_grid(height: int, width: int, tile_px: int, halo_px: int, region: Region | None = None, *, phase: tuple[int, int] | None = None) -> list[Tile]:
    """Cores of ``tile_px`` covering ``region``, with their windows.

    ``region`` defaults to the whole scene of ``height`` x ``width`` pixels; windows reach
    ``halo_px`` beyond the cores, also outside ``region``, as far as the scene has pixels.
    Cores start at the region's corner (the last ones smaller); with ``phase``, they are cut
    where ``row + phase[0]`` and ``col + phase[1]`` are multiples of ``tile_px`` instead, so
    that they line up with a file's internal tiles (``tile_px`` a multiple of their size,
    ``phase`` where the scene's pixel 0 lies in the file).

    Parameters
    ----------
    height, width : int
        Scene size in pixels.
    tile_px : int
        Core side in pixels (the last cores of a row or column are smaller).
    halo_px : int
        Pixels read beyond the core on every side, as far as the scene reaches.
    region : Region, optional
        The part of the scene the cores cover; the whole scene by default.
    phase : tuple of int, optional
        ``(row, col)`` shift of the cuts: cores start where ``row + phase[0]`` and
        ``col + phase[1]`` are multiples of ``tile_px``. By default they start at the
        region's corner.

    Returns
    -------
    list of Tile
        The tiles, row by row, numbered from 0 in that order.

    Examples
    --------
    >>> [(t.row_off, t.height) for t in tile_grid(100, 10, 40, 0, Region(10, 0, 100, 10))]
    [(10, 40), (50, 40), (90, 10)]
    >>> [(t.row_off, t.height) for t in tile_grid(100, 10, 40, 0, Region(10, 0, 100, 10), phase=(0, 0))]
    [(10, 30), (40, 40), (80, 20)]
    """
    area = region if region is not None else Region(0, 0, height, width)
    tiles: list[Tile] = []
    for r, h in _cuts(area.row0, area.row1, tile_px, None if phase is None else phase[0]):
        for c, w in _cuts(area.col0, area.col1, tile_px, None if phase is None else phase[1]):
            wr, wc = max(0, r - halo_px), max(0, c - halo_px)
            tiles.append(Tile(len(tiles), r, c, h, w, wr, wc, min(height, r + h + halo_px) - wr, min(width, c + w + halo_px) - wc))
    return tiles


def _cuts(start: int, stop: int, step: int, phase: int | None) -> list[tuple[int, int]]:
    """``(offset, length)`` of the pieces of ``[start, stop)``: every ``step`` from ``start``, or
    where ``x + phase`` is a multiple of ``step``."""
    if phase is None:
        return [(x, min(step, stop - x)) for x in range(start, stop, step)]
    first = (start + phase) // step * step + step - phase
    bounds = [start, *range(first, stop, step), stop]
    return [(a, b - a) for a, b in zip(bounds, bounds[1:]) if b > a]


def read_ratio(tiles: list[Tile]) -> float:
    """Pixels the tiles' windows read over the pixels of their cores (1: no halo).

    Parameters
    ----------
    tiles : list of Tile
        The tiles of a grid (see :func:`tile_grid`).

    Returns
    -------
    float
        The ratio; 1.0 when the cores have no pixel.

    Examples
    --------
    >>> round(read_ratio(tile_grid(1024, 1024, 512, 64)), 3)
    1.266
    """
    core = sum(t.height * t.width for t in tiles)
    return sum(t.win_height * t.win_width for t in tiles) / core if core else 1.0


def _pieces_inside(line: LineString, area: shapely.Geometry) -> list[LineString]:
    """The stretches of ``line`` inside ``area``, each a non-empty LineString."""
    clipped = shapely.intersection(line, area)
    parts = shapely.get_parts(shapely.line_merge(clipped)) if not clipped.is_empty else []
    return [p for p in parts if isinstance(p, LineString) and p.length > 0]


def clip_to_core(graph: nx.MultiGraph, tile: Tile) -> list[tuple[LineString, dict[str, float]]]:
    """Edges of a tile's network (scene pixel space) clipped to the tile's core.

    Returns ``(piece, means)`` pairs, ``means`` holding the edge's raster means
    (:data:`geoseg.road.network.EDGE_MEANS`: saliency, confidence); an edge leaving and
    re-entering the core gives several pieces. Core sides lie on pixel edges, where no
    centerline runs (its vertices are pixel centres), so each stretch belongs to exactly one
    tile; the vertices that clipping adds are removed again by :func:`drop_clip_vertices`
    after stitching.

    Parameters
    ----------
    graph : networkx.MultiGraph
        The tile's road network, in scene pixel space (edge ``geometry``, optional raster
        means).
    tile : Tile
        The tile whose core clips the edges.

    Returns
    -------
    list of tuple of (shapely.LineString, dict of str to float)
        The pieces inside the core, each with its edge's raster means.

    Examples
    --------
    >>> import networkx as nx
    >>> from shapely.geometry import LineString
    >>> G = nx.MultiGraph()
    >>> G.add_edge(0, 1, geometry=LineString([(5.5, 5.5), (15.5, 5.5)]), saliency=0.8)
    0
    >>> left, right = tile_grid(20, 20, 10, 4)[:2]
    >>> [(p.wkt, m) for p, m in clip_to_core(G, left)]
    [('LINESTRING (5.5 5.5, 10 5.5)', {'saliency': 0.8})]
    >>> [p.wkt for p, _ in clip_to_core(G, right)]
    ['LINESTRING (10 5.5, 15.5 5.5)']
    """
    core = tile.core_box()
    pieces: list[tuple[LineString, dict[str, float]]] = []
    for _, _, data in graph.edges(data=True):
        geom = data["geometry"]
        means = {name: float(data[name]) for name in EDGE_MEANS if name in data}
        if core.contains(geom):
            pieces.append((geom, means))
            continue
        pieces += [(p, means) for p in _pieces_inside(geom, core)]
    return pieces


def drop_clip_vertices(graph: nx.MultiGraph) -> nx.MultiGraph:
    """Remove the interior vertices that clipping at tile borders added.

    Traced centerlines have their interior vertices at pixel centres (``k + 0.5``); a
    vertex with an integer coordinate lies on a pixel edge, where only clipping puts one,
    and it is collinear with its neighbours. Removing it gives back the untiled line.

    Parameters
    ----------
    graph : networkx.MultiGraph
        Stitched network in scene pixel space (not modified).

    Returns
    -------
    networkx.MultiGraph
        A copy whose edge geometries have no interior vertex with an integer coordinate.

    Examples
    --------
    >>> import networkx as nx
    >>> from shapely.geometry import LineString
    >>> G = nx.MultiGraph([(0, 1, {"geometry": LineString([(5.5, 5.5), (10, 5.5), (15.5, 5.5)])})])
    >>> [d["geometry"].wkt for _, _, d in drop_clip_vertices(G).edges(data=True)]
    ['LINESTRING (5.5 5.5, 15.5 5.5)']
    """
    out = graph.copy()
    for _, _, data in out.edges(data=True):
        xy = np.asarray(data["geometry"].coords)[:, :2]
        if len(xy) <= 2:
            continue
        interior = xy[1:-1]
        on_edge = (interior == np.floor(interior)).any(axis=1)
        if on_edge.any():
            data["geometry"] = LineString(np.vstack([xy[:1], interior[~on_edge], xy[-1:]]))
    return out


def canonical(graph: nx.MultiGraph) -> nx.MultiGraph:
    """The same network with nodes numbered by position and edges in a fixed order.

    The clean-up algorithms visit nodes and edges in graph order; a canonical order makes
    their result independent of how the network was assembled (one tile or many).

    Parameters
    ----------
    graph : networkx.MultiGraph
        Road network (node ``x``/``y``, edge ``geometry``); not modified.

    Returns
    -------
    networkx.MultiGraph
        A new graph: nodes numbered 0, 1, ... by ``(y, x)``, keeping their attributes; each
        edge from its lower-numbered node, its geometry starting there, edges sorted by their
        nodes and coordinates.

    Examples
    --------
    >>> import networkx as nx
    >>> from shapely.geometry import LineString
    >>> G = nx.MultiGraph()
    >>> G.add_node("b", x=3.0, y=2.0)
    >>> G.add_node("a", x=1.0, y=2.0)
    >>> G.add_edge("b", "a", geometry=LineString([(3, 2), (1, 2)]))
    0
    >>> H = canonical(G)
    >>> list(H.nodes(data=True)), [(u, v, d["geometry"].wkt) for u, v, d in H.edges(data=True)]
    ([(0, {'x': 1.0, 'y': 2.0}), (1, {'x': 3.0, 'y': 2.0})], [(0, 1, 'LINESTRING (1 2, 3 2)')])
    """
    order = sorted(graph.nodes, key=lambda n: (graph.nodes[n]["y"], graph.nodes[n]["x"]))
    new_id = {n: i for i, n in enumerate(order)}
    out = nx.MultiGraph()
    for n in order:
        out.add_node(new_id[n], **graph.nodes[n])
    edges = []
    for u, v, data in graph.edges(data=True):
        a, b = sorted((new_id[u], new_id[v]))
        geom = data["geometry"]
        start = (graph.nodes[order[a]]["x"], graph.nodes[order[a]]["y"])
        if geom.coords[0][:2] != start:
            geom = shapely.reverse(geom)
        edges.append((a, b, tuple(np.round(np.asarray(geom.coords)[:, :2], 6).ravel()), {**data, "geometry": geom}))
    for a, b, _, data in sorted(edges, key=lambda e: e[:3]):
        out.add_edge(a, b, **data)
    return out


def stitch_pieces(pieces: Iterable[tuple[LineString, dict[str, float]]], snap_px: float = 1e-6) -> nx.MultiGraph:
    """Road network from line pieces whose end points meet (within ``snap_px``).

    End points closer than ``snap_px`` become one node (at their mean); each piece becomes
    an edge ending exactly at its nodes. Dissolving the degree-2 nodes left at tile borders
    is the caller's business (:func:`geoseg.road.network.dissolve_degree2`).

    Parameters
    ----------
    pieces : iterable of tuple of (shapely.LineString, dict of str to float)
        Line pieces in scene pixel space with the attributes their edges get (the raster
        means, see :func:`clip_to_core`). Pieces of zero length are dropped.
    snap_px : float, default 1e-6
        Distance within which end points are one node. Chains of such end points become one
        node too, even where its ends lie farther apart.

    Returns
    -------
    networkx.MultiGraph
        Nodes numbered from 0 with ``x`` and ``y``; one edge per piece, with ``geometry`` and
        the piece's attributes.

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> a = LineString([(5.5, 5.5), (10, 5.5)])
    >>> b = LineString([(10, 5.5), (15.5, 5.5)])
    >>> G = stitch_pieces([(b, {"saliency": 0.8}), (a, {"saliency": 0.6})])
    >>> list(G.nodes(data="x")), dict(G.degree)
    ([(0, 5.5), (1, 10.0), (2, 15.5)], {0: 1, 1: 2, 2: 1})
    """
    items = sorted(((g, s) for g, s in pieces if g.length > 0), key=lambda p: tuple(np.round(np.asarray(p[0].coords)[:, :2], 6).ravel()))
    graph = nx.MultiGraph()
    if not items:
        return graph
    ends = np.array([[*g.coords[0][:2]] for g, _ in items] + [[*g.coords[-1][:2]] for g, _ in items])
    n = len(items)
    labels = np.arange(2 * n)
    for i, j in sorted(cKDTree(ends).query_pairs(snap_px)):
        a, b = labels[i], labels[j]
        if a != b:
            labels[labels == max(a, b)] = min(a, b)
    _, node_of = np.unique(labels, return_inverse=True)
    for node in np.unique(node_of):
        x, y = ends[node_of == node].mean(axis=0)
        graph.add_node(int(node), x=float(x), y=float(y))
    for k, (geom, means) in enumerate(items):
        u, v = int(node_of[k]), int(node_of[k + n])
        coords = np.asarray(geom.coords)[:, :2].copy()
        coords[0] = (graph.nodes[u]["x"], graph.nodes[u]["y"])
        coords[-1] = (graph.nodes[v]["x"], graph.nodes[v]["y"])
        graph.add_edge(u, v, geometry=LineString(coords), **means)
    return graph


def clip_network(graph: nx.MultiGraph, area: shapely.Geometry, tolerance: float = 1e-6) -> nx.MultiGraph:
    """The part of a pixel-space network inside ``area`` (a polygon in the same pixel space).

    Edges crossing the boundary are cut there, and each cut end becomes a new node (x, y
    only); nodes outside ``area`` and edges wholly outside are dropped. The other nodes and
    every kept piece keep their attributes (an edge's raster means stay those of the whole
    traced edge). Node names of cut ends are ``("cut", k)``: :func:`canonical` renumbers.

    Parameters
    ----------
    graph : networkx.MultiGraph
        Road network in pixel space (node ``x``/``y``, edge ``geometry``); not modified.
    area : shapely.Geometry
        The polygon to keep, in the same pixel space.
    tolerance : float, default 1e-6
        A cut end this close to a kept end node of its edge is joined to that node instead of
        becoming a new one.

    Returns
    -------
    networkx.MultiGraph
        The network inside ``area``.

    Examples
    --------
    >>> import networkx as nx
    >>> from shapely.geometry import LineString, box
    >>> G = nx.MultiGraph()
    >>> G.add_nodes_from([(0, {"x": 0.0, "y": 0.0}), (1, {"x": 10.0, "y": 0.0})])
    >>> G.add_edge(0, 1, geometry=LineString([(0, 0), (10, 0)]), saliency=0.5)
    0
    >>> H = clip_network(G, box(-1, -1, 4, 1))
    >>> list(H.nodes(data="x")), [(u, v, d["geometry"].wkt) for u, v, d in H.edges(data=True)]
    ([(0, 0.0), (('cut', 1), 4.0)], [(0, ('cut', 1), 'LINESTRING (0 0, 4 0)')])
    """
    shapely.prepare(area)
    inside = {n for n, d in graph.nodes(data=True) if area.covers(shapely.Point(d["x"], d["y"]))}
    out = nx.MultiGraph()
    out.add_nodes_from((n, graph.nodes[n]) for n in inside)
    cuts = 0

    def node_at(xy: tuple[float, ...], candidates: tuple[object, object]) -> object:
        nonlocal cuts
        for n in candidates:
            if n in inside and math.dist(xy[:2], (graph.nodes[n]["x"], graph.nodes[n]["y"])) <= tolerance:
                return n
        cuts += 1
        out.add_node(("cut", cuts), x=float(xy[0]), y=float(xy[1]))
        return ("cut", cuts)

    for u, v, data in graph.edges(data=True):
        geom = data["geometry"]
        if u in inside and v in inside and area.covers(geom):
            out.add_edge(u, v, **data)
            continue
        for part in _pieces_inside(geom, area):
            out.add_edge(node_at(part.coords[0], (u, v)), node_at(part.coords[-1], (u, v)), **{**data, "geometry": part})
    return out
