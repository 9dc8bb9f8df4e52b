"""Tiles with halos, and stitching of per-tile road networks into one topology.

A scene is cut into a grid of **cores** (aligned to the file's internal blocks) that cover it
exactly once; each tile is read with a **halo** of extra pixels on every side (clipped at the
scene border) so that every core pixel sees the neighbourhood its steps need. Raster results
are cropped to the core; vector results are clipped to the core and then stitched across
core borders (shared end points merged, degree-2 nodes dissolved), so a line crossing three
tiles comes out as one edge.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx
import numpy as np
import shapely
from scipy.spatial import cKDTree
from shapely.geometry import LineString, box

from geoseg.errors import ConfigError
from geoseg.road.network import EDGE_MEANS

__all__ = ["Tile", "tile_grid", "tile_size_for_memory", "parse_memory", "clip_to_core", "stitch_pieces", "canonical", "drop_clip_vertices"]


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


def parse_memory(value: int | str) -> int:
    """Bytes from ``512MB``, ``2 GiB``, ``1e9`` or an int.

    Examples
    --------
    >>> parse_memory("512MB"), parse_memory("1GiB"), parse_memory(1000)
    (536870912, 1073741824, 1000)
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

    The window is ``core + 2 * halo`` on a side and costs ``bytes_per_pixel`` per pixel.
    """
    window = math.isqrt(max(1, max_memory // max(1, bytes_per_pixel)))
    core = window - 2 * halo_px
    return max(block, (core // block) * block)


def tile_grid(height: int, width: int, tile_px: int, halo_px: int) -> list[Tile]:
    """Cores of ``tile_px`` (the last ones smaller) covering the scene, with their windows."""
    tiles = []
    for r in range(0, height, tile_px):
        for c in range(0, width, tile_px):
            h, w = min(tile_px, height - r), min(tile_px, width - c)
            wr, wc = max(0, r - halo_px), max(0, c - halo_px)
            tiles.append(
                Tile(len(tiles), r, c, h, w, wr, wc, min(height, r + h + halo_px) - wr, min(width, c + w + halo_px) - wc)
            )
    return tiles


def clip_to_core(graph: nx.MultiGraph, tile: Tile) -> list[tuple[LineString, dict[str, float]]]:
    """Edges of a tile's network (scene pixel space) clipped to the tile's core.

    Returns ``(piece, means)`` pairs, ``means`` holding the edge's raster means
    (:data:`geoseg.road.network.EDGE_MEANS`: saliency, confidence); an edge leaving and re-entering the core gives
    several pieces. Core sides lie on pixel edges, where no centerline runs (its vertices
    are pixel centres), so each stretch belongs to exactly one tile; the vertices that
    clipping adds are removed again by :func:`drop_clip_vertices` after stitching.
    """
    core = tile.core_box()
    pieces: list[tuple[LineString, dict[str, float]]] = []
    for _, _, data in graph.edges(data=True):
        geom = data["geometry"]
        means = {name: float(data[name]) for name in EDGE_MEANS if name in data}
        if core.contains(geom):
            pieces.append((geom, means))
            continue
        clipped = shapely.intersection(geom, core)
        parts = shapely.get_parts(shapely.line_merge(clipped)) if not clipped.is_empty else []
        pieces += [(p, means) for p in parts if isinstance(p, LineString) and p.length > 0]
    return pieces


def drop_clip_vertices(graph: nx.MultiGraph) -> nx.MultiGraph:
    """Remove the interior vertices that clipping at tile borders added.

    Traced centerlines have their interior vertices at pixel centres (``k + 0.5``); a
    vertex with an integer coordinate lies on a pixel edge, where only clipping puts one,
    and it is collinear with its neighbours. Removing it gives back the untiled line.
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
