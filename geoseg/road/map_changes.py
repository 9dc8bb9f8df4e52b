"""Map updating: what an extracted road network says is different from an existing road map.

Cheng et al. (arXiv 1508.06163) name road map *generation and updating* as the purpose of
centerline extraction but give no comparison method; this module supplies one, built from the
buffer matching of the classical road-extraction measures (Wiedemann, Heipke, Mayer & Jamet,
"Empirical evaluation of automatically extracted road axes", 1998: a line is *matched* where
it lies within a tolerance of the other network) with two changes made for change detection:

- the result is **per stretch**, not a single score: each line is cut along its length into
  stretches that are matched and stretches that are not, so a map editor gets the geometry of
  every candidate addition (``new``: extracted road with no map road near it), candidate removal
  or hidden road (``missing``: map road with no extracted road near it), and of every agreeing
  stretch with its offset (``matched``: a map to realign);
- a stretch inside the tolerance of the other network counts as matched only if the two run
  the same way there (directions within ``max_angle_deg``): a road that *crosses* another is
  not matched by it over the crossing, so a missing road stays one stretch across the roads it
  crosses. The test is made along each stretch inside the zone, every quarter of the
  tolerance, with directions taken over half the tolerance either side (which smooths the
  pixel steps of a traced centerline). A matched stretch between unmatched ones counts as
  unmatched unless it is longer than ``min_length_px`` plus one tolerance (a zone reaches a
  tolerance beyond the end of its line: a short touch is no match), and unmatched stretches
  shorter than ``min_length_px`` are not reported (a few metres of difference where two
  networks end or turn are noise, not change).

:func:`link_changes` adds the **connectivity** changes that matter to routing, with the
shortest-path machinery of APLS (Van Etten et al., arXiv 1807.01232): map nodes (junctions and
ends) are snapped onto the extracted network within the tolerance, and

- a *broken link* is a map edge (between consecutive map nodes) whose two ends are on the
  extracted network but have no path through it, or only one longer than ``detour_ratio`` times
  the map edge;
- a *new link* is a pair of map nodes closer than ``radius_px`` whose path through the
  extracted network is shorter than ``shortcut_ratio`` times their path in the map (or that the
  map does not connect), through extracted road the map does not have. Pairs whose shortcut
  runs through the same new roads are one link (the shortest is kept).

Everything is in one planar coordinate system (pixel space in pipelines; any projected
coordinates work): distances and lengths come back in its units.

Examples
--------
>>> from shapely.geometry import LineString
>>> extracted = [LineString([(0, 0), (100, 0)]), LineString([(50, 0), (50, 80)])]
>>> road_map = [LineString([(0, 2), (100, 2)]), LineString([(0, 60), (100, 60)])]
>>> result = compare_lines(extracted, road_map, tolerance_px=5)
>>> [round(g.length, 1) for g in result.new.geometry]  # the road crossing the map's roads does not run along them
[80.0]
>>> [round(g.length, 1) for g in result.missing.geometry], [round(g.length, 1) for g in result.matched.geometry]
([100.0], [100.0])
>>> float(result.matched.offset_mean_px[0])
2.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import shapely
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial import cKDTree
from shapely.geometry import LineString
from shapely.ops import substring

from geoseg.errors import ConfigError
from geoseg.road.network import dissolve_degree2, lines_to_graph

__all__ = ["Stretches", "MapComparison", "Links", "compare_lines", "link_changes", "line_parts", "chain_lines"]

#: Entries of the distance and predecessor matrices of one block of shortest-path searches (about 160 MB).
_PATH_BLOCK_ENTRIES = 10_000_000

#: Samples along a matched stretch at which its offset is measured: at most this many, a quarter of the tolerance apart (1 unit at least).
_MAX_OFFSET_SAMPLES = 2000


@dataclass(frozen=True)
class Stretches:
    """Stretches of one class of change, in the lines' coordinates.

    Attributes
    ----------
    geometry : numpy.ndarray of LineString
        The stretches.
    source : numpy.ndarray of int
        Index of the line each comes from (an extracted line for ``new``, a map line otherwise).
    start, end : numpy.ndarray of float
        Where along that line the stretch begins and ends.
    confidence : numpy.ndarray of float
        0-1 confidence of the extracted road it comes from or matches (NaN where unknown).
    offset_mean_px, offset_max_px : numpy.ndarray of float
        Matched stretches: mean and largest distance from the stretch to the extracted road
        matching it (NaN for the other classes).
    """

    geometry: np.ndarray
    source: np.ndarray
    start: np.ndarray
    end: np.ndarray
    confidence: np.ndarray
    offset_mean_px: np.ndarray
    offset_max_px: np.ndarray

    def __len__(self) -> int:
        return len(self.geometry)

    @property
    def lengths(self) -> np.ndarray:
        """Length of each stretch."""
        return shapely.length(self.geometry) if len(self.geometry) else np.zeros(0)


@dataclass(frozen=True)
class MapComparison:
    """An extracted network compared with a road map (see :func:`compare_lines`).

    Attributes
    ----------
    new : Stretches
        Extracted road with no map road near it.
    missing : Stretches
        Map road with no extracted road near it.
    matched : Stretches
        Map road with extracted road near it, with the offset between the two.
    """

    new: Stretches
    missing: Stretches
    matched: Stretches


@dataclass(frozen=True)
class Links:
    """Connectivity changes between map nodes (see :func:`link_changes`).

    Attributes
    ----------
    geometry : numpy.ndarray of LineString or MultiLineString
        A new link's path through the extracted network; a broken link's map edge.
    kind : numpy.ndarray of str
        ``"new_link"`` or ``"broken_link"``.
    map_length : numpy.ndarray of float
        Shortest path between the two map nodes in the map (NaN: the map does not connect them
        within the search distance).
    image_length : numpy.ndarray of float
        Shortest path between them through the extracted network (NaN: none).
    """

    geometry: np.ndarray
    kind: np.ndarray
    map_length: np.ndarray
    image_length: np.ndarray

    def __len__(self) -> int:
        return len(self.geometry)


def line_parts(geometries: Sequence[shapely.Geometry | None]) -> tuple[np.ndarray, np.ndarray]:
    """The LineStrings of ``geometries`` (multi-part lines split, empty and zero-length parts dropped), and the index each came from.

    Parameters
    ----------
    geometries : sequence of shapely geometry or None
        Geometries of any type; parts that are not lines (points, polygons) and ``None`` are
        dropped. A LinearRing part becomes a LineString.

    Returns
    -------
    lines : numpy.ndarray of LineString
        The line parts, in input order.
    index : numpy.ndarray of int
        For each part, the index in ``geometries`` of the geometry it came from.

    Examples
    --------
    >>> from shapely.geometry import MultiLineString, Point
    >>> parts, index = line_parts([MultiLineString([[(0, 0), (1, 0)], [(2, 0), (3, 0)]]), Point(0, 0), None])
    >>> len(parts), index.tolist()
    (2, [0, 0])
    """
    geoms = np.asarray([g if g is not None else shapely.LineString() for g in geometries], dtype=object)
    if not len(geoms):
        return np.zeros(0, dtype=object), np.zeros(0, dtype=np.intp)
    parts, index = shapely.get_parts(geoms, return_index=True)
    keep = np.isin(shapely.get_type_id(parts), (1, 2)) & (shapely.length(parts) > 0)
    lines = np.asarray([p if isinstance(p, LineString) else LineString(p.coords) for p in parts[keep]], dtype=object)
    return lines, index[keep]


def chain_lines(lines: Sequence[LineString] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lines joined end to end where exactly two of them meet (a road drawn as several ways is one line), and the first input line of each.

    Chains stop at junctions (three or more line ends at a point) and where lines cross.

    Parameters
    ----------
    lines : sequence of LineString or numpy.ndarray of LineString
        The lines to chain.

    Returns
    -------
    chains : numpy.ndarray of LineString
        The merged lines (:func:`shapely.line_merge`).
    first : numpy.ndarray of int
        For each chain, the index of an input line nearest to the chain's first point.

    Examples
    --------
    >>> chains, first = chain_lines([LineString([(0, 0), (5, 0)]), LineString([(5, 0), (9, 0)])])
    >>> [c.length for c in chains], first.tolist()
    ([9.0], [0])
    """
    parts = np.asarray(list(lines), dtype=object)
    if not len(parts):
        return parts, np.zeros(0, dtype=np.intp)
    merged = shapely.get_parts(shapely.line_merge(shapely.MultiLineString(list(parts))))
    tree = shapely.STRtree(parts)
    first = np.asarray([int(tree.query_nearest(shapely.Point(m.coords[0]))[0]) for m in merged], dtype=np.intp)
    return np.asarray(list(merged), dtype=object), first


def compare_lines(
    extracted: Sequence[LineString] | np.ndarray,
    map_lines: Sequence[LineString] | np.ndarray,
    *,
    tolerance_px: float,
    max_angle_deg: float = 30.0,
    min_length_px: float | None = None,
    extracted_confidence: Sequence[float] | None = None,
    area: shapely.Geometry | None = None,
) -> MapComparison:
    """Cut an extracted network and a road map into new, missing and matched stretches.

    Parameters
    ----------
    extracted : sequence of LineString or numpy.ndarray of LineString
        The extracted network's edges.
    map_lines : sequence of LineString or numpy.ndarray of LineString
        The map's roads (already clipped to the area compared).
    tolerance_px : float
        How far apart two lines may be and still be the same road.
    max_angle_deg : float, default 30.0
        How far their directions may differ where they are matched.
    min_length_px : float, optional
        Shortest stretch reported (default: twice the tolerance).
    extracted_confidence : sequence of float, optional
        0-1 confidence of each extracted line.
    area : shapely geometry, optional
        Where changes are reported: stretches are cut to it (and new and missing pieces shorter
        than ``min_length_px`` left out). The lines are matched beyond it, so give the map
        within ``tolerance_px`` of the area: a road at its edge then finds its match outside.

    Returns
    -------
    MapComparison
        The ``new`` stretches (of extracted lines), and the ``missing`` and ``matched``
        stretches (of map lines).

    Raises
    ------
    geoseg.errors.ConfigError
        If ``tolerance_px`` is not positive, ``max_angle_deg`` is not in (0, 90], or
        ``min_length_px`` is negative.

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> extracted = [LineString([(0, 0), (100, 0)]), LineString([(0, 50), (60, 50)])]
    >>> road_map = [LineString([(0, 1), (100, 1)]), LineString([(0, -60), (100, -60)])]
    >>> c = compare_lines(extracted, road_map, tolerance_px=3)
    >>> c.new.lengths.tolist(), c.missing.lengths.tolist(), c.matched.lengths.tolist()
    ([60.0], [100.0], [100.0])
    >>> c.matched.offset_mean_px.tolist(), c.missing.source.tolist()
    ([1.0], [1])
    """
    if not tolerance_px > 0:
        raise ConfigError(f"the matching tolerance must be positive (got {tolerance_px})")
    if not 0 < max_angle_deg <= 90:
        raise ConfigError(f"max_angle_deg must be in (0, 90] (got {max_angle_deg})")
    min_length = 2 * tolerance_px if min_length_px is None else float(min_length_px)
    if min_length < 0:
        raise ConfigError(f"the shortest stretch cannot be negative (got {min_length_px})")
    ext = np.asarray(list(extracted), dtype=object)
    ref = np.asarray(list(map_lines), dtype=object)
    conf = np.full(len(ext), np.nan) if extracted_confidence is None else np.asarray(extracted_confidence, dtype=float)
    cos_max = math.cos(math.radians(max_angle_deg))
    ext, ext_status = _classify_all(ext, ref, tolerance_px, cos_max, min_length)
    ref, ref_status = _classify_all(ref, ext, tolerance_px, cos_max, min_length)
    new = _within(_stretches(ext, [(i, s, e) for i, runs in enumerate(ext_status) for s, e, ok in runs if not ok], conf), ext, area, min_length)
    missing = _within(_stretches(ref, [(i, s, e) for i, runs in enumerate(ref_status) for s, e, ok in runs if not ok], None), ref, area, min_length)
    matched = _within(_stretches(ref, [(i, s, e) for i, runs in enumerate(ref_status) for s, e, ok in runs if ok], None), ref, area, 0.0)
    if len(matched):
        tree = shapely.STRtree(ext)
        spacing = max(1.0, tolerance_px / 4)
        found = [_offsets(g, ext, tree.query(g, predicate="dwithin", distance=tolerance_px), cos_max, spacing) for g in matched.geometry]
        confidence = np.array([_mean_confidence(conf, partners) for _, _, partners in found])
        mean, largest = np.array([f[0] for f in found]), np.array([f[1] for f in found])
        matched = Stretches(matched.geometry, matched.source, matched.start, matched.end, confidence, mean, largest)
    return MapComparison(new, missing, matched)


#: One stretch of a line: (start, end, matched).
_Run = tuple[float, float, bool]


def _classify_all(lines: np.ndarray, others: np.ndarray, tol: float, cos_max: float, min_length: float) -> tuple[np.ndarray, list[list[_Run]]]:
    """The runs of every line; closed lines come back rotated to begin where their status changes (so no run is cut at the ring's seam)."""
    tree = shapely.STRtree(others)
    zones = shapely.buffer(others, tol, quad_segs=16) if len(others) else others
    used = lines.copy()
    runs = []
    for i, line in enumerate(lines):
        raw = _classify(line, others, zones, tree, tol, cos_max)
        if line.is_closed and len(raw) > 1 and raw[0][2] == raw[-1][2]:
            used[i] = _rotated(line, raw[0][1])
            raw = _classify(used[i], others, zones, tree, tol, cos_max)
        runs.append(_clean(raw, min_length, min_length + tol))
    return used, runs


def _rotated(ring: LineString, at: float) -> LineString:
    """The closed line ``ring`` beginning (and ending) at distance ``at`` along it."""
    first, second = substring(ring, at, ring.length), substring(ring, 0, at)
    return LineString(np.vstack([np.asarray(first.coords), np.asarray(second.coords)[1:]]))


def _classify(line: LineString, others: np.ndarray, zones: np.ndarray, tree: shapely.STRtree, tol: float, cos_max: float) -> list[_Run]:
    """Stretches of ``line`` inside the other network's tolerance zones (``zones``: its lines' buffers) and running its way, and the rest."""
    length = line.length
    candidates = tree.query(line, predicate="dwithin", distance=tol)
    if not len(candidates):
        return [(0.0, length, False)]
    pieces = shapely.get_parts(shapely.intersection(line, zones[candidates]))
    pieces = pieces[(shapely.get_type_id(pieces) == 1) & (shapely.length(pieces) > 0)]
    # where each piece lies along the line, from its middle (its ends are ambiguous on a closed line)
    middle = shapely.line_locate_point(line, shapely.line_interpolate_point(pieces, 0.5, normalized=True)) if len(pieces) else np.zeros(0)
    half = shapely.length(pieces) / 2 if len(pieces) else np.zeros(0)
    along = np.column_stack([np.clip(middle - half, 0, length), np.clip(middle + half, 0, length)])
    runs: list[_Run] = []
    for a, b in _union(along):
        runs += _aligned_runs(line, a, b, others, candidates, tol, cos_max)
    out: list[_Run] = []
    at = 0.0
    for a, b, ok in runs:
        if a > at:
            out.append((at, a, False))
        out.append((a, b, ok))
        at = b
    if at < length:
        out.append((at, length, False))
    return [r for r in out if r[1] > r[0]]


def _union(intervals: np.ndarray) -> list[tuple[float, float]]:
    """The union of 1-D intervals ``(n, 2)`` as disjoint sorted intervals (touching ones joined)."""
    merged: list[tuple[float, float]] = []
    for a, b in sorted(map(tuple, intervals.tolist())):
        if b <= a:
            continue
        if merged and a <= merged[-1][1] + 1e-9:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _aligned_runs(line: LineString, a: float, b: float, others: np.ndarray, candidates: np.ndarray, tol: float, cos_max: float) -> list[_Run]:
    """Split the stretch ``[a, b]`` of ``line`` (inside the tolerance zone) where a line of ``others`` within ``tol`` runs its way and where none does.

    Tested at the middles of pieces at most a quarter of the tolerance (1 unit at least) long.
    """
    spacing = max(1.0, tol / 4)
    n = max(1, math.ceil((b - a) / spacing))
    edges = np.linspace(a, b, n + 1)
    at = (edges[:-1] + edges[1:]) / 2
    points = shapely.line_interpolate_point(line, at)
    own = _tangents(line, at, tol / 2)
    ok = np.zeros((len(candidates), n), dtype=bool)
    for k, j in enumerate(candidates):
        other = others[j]
        near = shapely.distance(other, points) <= tol * (1 + 1e-9)
        if near.any():
            theirs = _tangents(other, shapely.line_locate_point(other, points), tol / 2)
            ok[k] = near & (np.abs(np.sum(own * theirs, axis=1)) >= cos_max)
    matched: np.ndarray = np.asarray(ok.any(axis=0))
    runs: list[_Run] = []
    start = 0
    for i in range(1, n + 1):
        if i == n or matched[i] != matched[start]:
            runs.append((float(edges[start]), float(edges[i]), bool(matched[start])))
            start = i
    return runs


def _clean(runs: list[_Run], min_length: float, min_match: float) -> list[_Run]:
    """Merge neighbouring runs of one status; matched runs shorter than ``min_match`` between unmatched ones become unmatched.

    Unmatched runs shorter than ``min_length`` are then left out.
    """
    merged = _merge(runs)
    changed = True
    while changed and len(merged) > 1:
        changed = False
        for k, (a, b, ok) in enumerate(merged):
            beside = [merged[j][2] for j in (k - 1, k + 1) if 0 <= j < len(merged)]
            if ok and b - a < min_match and beside and not any(beside):
                merged[k] = (a, b, False)
                changed = True
        merged = _merge(merged)
    return [r for r in merged if r[2] or r[1] - r[0] >= min_length]


def _merge(runs: list[_Run]) -> list[_Run]:
    out: list[_Run] = []
    for run in runs:
        if out and out[-1][2] == run[2] and abs(out[-1][1] - run[0]) < 1e-9:
            out[-1] = (out[-1][0], run[1], run[2])
        else:
            out.append(run)
    return out


def _stretches(lines: np.ndarray, runs: Sequence[tuple[int, float, float]], conf: np.ndarray | None) -> Stretches:
    """The stretches ``(line, start, end)`` of ``lines``, with the confidence of their line when ``conf`` gives one."""
    geoms = np.asarray([_substring(lines[i], s, e) for i, s, e in runs], dtype=object)
    source = np.asarray([i for i, _, _ in runs], dtype=np.intp)
    confidence = conf[source] if conf is not None and len(source) else np.full(len(runs), np.nan)
    nan = np.full(len(runs), np.nan)
    return Stretches(
        geoms, source, np.asarray([s for _, s, _ in runs], dtype=float), np.asarray([e for _, _, e in runs], dtype=float), confidence, nan, nan.copy()
    )


def _within(stretches: Stretches, lines: np.ndarray, area: shapely.Geometry | None, min_length: float) -> Stretches:
    """The parts of ``stretches`` inside ``area`` at least ``min_length`` long (all of them without an area)."""
    if area is None or not len(stretches):
        return stretches
    parts, index = shapely.get_parts(shapely.intersection(stretches.geometry, area), return_index=True)
    keep = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) > 0) & (shapely.length(parts) >= min_length)
    parts, index = parts[keep], index[keep]
    source = stretches.source[index]
    middle = np.asarray([lines[i].project(p.interpolate(0.5, normalized=True)) for i, p in zip(source, parts)], dtype=float)
    half = shapely.length(parts) / 2 if len(parts) else np.zeros(0)
    return Stretches(
        np.asarray(list(parts), dtype=object), source, middle - half, middle + half, stretches.confidence[index],
        stretches.offset_mean_px[index], stretches.offset_max_px[index],
    )  # fmt: skip


def _substring(line: LineString, start: float, end: float) -> LineString:
    if start <= 0 and end >= line.length:
        return line
    piece = substring(line, start, end)
    return piece if isinstance(piece, LineString) else LineString([piece.coords[0], piece.coords[0]])


def _offsets(stretch: LineString, others: np.ndarray, candidates: np.ndarray, cos_max: float, spacing: float) -> tuple[float, float, frozenset[int]]:
    """Mean and largest distance from points ``spacing`` apart along ``stretch`` to the nearest line of ``others`` running its way there, and those lines.

    Where no candidate runs its way (a stretch kept matched across a crossing), the nearest
    candidate is taken.
    """
    if not len(candidates):
        return math.nan, math.nan, frozenset()
    n = int(min(_MAX_OFFSET_SAMPLES, max(2, math.ceil(stretch.length / spacing) + 1)))
    at = np.linspace(0, stretch.length, n)
    points = shapely.line_interpolate_point(stretch, at)
    own = _tangents(stretch, at, 2 * spacing)
    distance = np.full((len(candidates), n), np.inf)
    aligned = np.zeros((len(candidates), n), dtype=bool)
    for k, j in enumerate(candidates):
        other = others[j]
        distance[k] = shapely.distance(other, points)
        theirs = _tangents(other, shapely.line_locate_point(other, points), 2 * spacing)
        aligned[k] = np.abs(np.sum(own * theirs, axis=1)) >= cos_max
    nearest = np.where(aligned, distance, np.inf).min(axis=0)
    nearest = np.where(np.isfinite(nearest), nearest, distance.min(axis=0))
    used = frozenset(int(j) for k, j in enumerate(candidates) if aligned[k].any())
    return float(nearest.mean()), float(nearest.max()), used


def _tangents(line: LineString, at: np.ndarray, reach: float) -> np.ndarray:
    """Unit directions of ``line`` at the distances ``at`` along it, from ``reach`` before to ``reach`` after (within the line), shape ``(n, 2)``.

    A reach of half the tolerance smooths the pixel steps of a traced centerline away.
    """
    length = line.length
    h = min(reach, length / 2)
    a, b = np.clip(at - h, 0, length), np.clip(at + h, 0, length)
    p = shapely.get_coordinates(shapely.line_interpolate_point(line, a))
    q = shapely.get_coordinates(shapely.line_interpolate_point(line, b))
    v = q - p
    norm = np.hypot(v[:, 0], v[:, 1])
    return np.divide(v, norm[:, None], out=np.zeros_like(v), where=norm[:, None] > 0)


def _mean_confidence(conf: np.ndarray, partners: frozenset[int]) -> float:
    values = conf[sorted(partners)] if partners else np.zeros(0)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


# --------------------------------------------------------------------------- connectivity


@dataclass
class _Snapped:
    """Map nodes placed on the extracted network: which edge, where along its geometry (from its first coordinate)."""

    node: np.ndarray  # map node ids
    xy: np.ndarray
    edge: np.ndarray  # index into the extracted edge list
    at: np.ndarray


def link_changes(
    network: nx.MultiGraph,
    map_lines: Sequence[LineString] | np.ndarray,
    *,
    tolerance_px: float,
    radius_px: float,
    new_edges: set[int] | frozenset[int] = frozenset(),
    shortcut_ratio: float = 0.5,
    detour_ratio: float = 2.0,
) -> Links:
    """Routing changes between the nodes of a road map that the extracted network shows.

    Parameters
    ----------
    network : networkx.MultiGraph
        The extracted network (node ``x``/``y``, edge ``geometry``), in the map lines' coordinates.
    map_lines : sequence of LineString
        The map's roads.
    tolerance_px : float
        How far a map node may be from the extracted network and still be on it.
    radius_px : float
        New links are looked for between map nodes at most this far apart (straight line).
    new_edges : set of int or frozenset of int, default empty
        Indices (in ``network.edges(keys=True)`` order) of the extracted edges that are not on
        the map (from :func:`compare_lines`); a new link must use one of them.
    shortcut_ratio : float, default 0.5
        A pair's path through the extracted network must be shorter than this times its map
        path to be a new link.
    detour_ratio : float, default 2.0
        A map edge is a broken link when the extracted network connects its ends only by a path
        longer than this times the edge (or not at all).

    Returns
    -------
    Links
        The broken links, then the new links (shortest path through the network first).
        For a broken link, ``map_length`` is the length of the map edge.

    Raises
    ------
    geoseg.errors.ConfigError
        If ``tolerance_px`` or ``radius_px`` is not positive, ``shortcut_ratio`` is not in
        (0, 1], or ``detour_ratio`` is below 1.

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> from geoseg.road.network import lines_to_graph
    >>> road_map = [LineString([(0, 0), (0, 100), (100, 100), (100, 0)])]
    >>> extracted = lines_to_graph([*road_map, LineString([(0, 0), (100, 0)])])
    >>> new_edges = set(compare_lines([d["geometry"] for *_, d in extracted.edges(keys=True, data=True)], road_map, tolerance_px=3).new.source.tolist())
    >>> links = link_changes(extracted, road_map, tolerance_px=3, radius_px=150, new_edges=new_edges)
    >>> links.kind.tolist(), links.map_length.round(1).tolist(), links.image_length.round(1).tolist()
    (['new_link'], [300.0], [100.0])
    """
    if not (tolerance_px > 0 and radius_px > 0 and 0 < shortcut_ratio <= 1 and detour_ratio >= 1):
        raise ConfigError(
            f"link search: tolerance and radius must be positive, shortcut_ratio in (0, 1], detour_ratio >= 1 "
            f"(got {tolerance_px}, {radius_px}, {shortcut_ratio}, {detour_ratio})"
        )
    road_map = dissolve_degree2(lines_to_graph(map_lines, snap_tol=1e-6 * max(1.0, tolerance_px)))
    edges = list(network.edges(keys=True, data=True))
    empty = Links(np.zeros(0, dtype=object), np.zeros(0, dtype=object), np.zeros(0), np.zeros(0))
    if not edges or road_map.number_of_nodes() < 2:
        return empty
    snapped = _snap_nodes(road_map, edges, tolerance_px)
    if len(snapped.node) < 2:
        return empty
    graph, owner = _image_graph(network, edges, snapped)
    n_base = network.number_of_nodes()
    sources = n_base + np.arange(len(snapped.node))
    map_edge_lengths = [d["geometry"].length for _, _, d in road_map.edges(data=True)]
    limit = max(detour_ratio * max(map_edge_lengths), 3 * radius_px)
    map_index = {n: i for i, n in enumerate(road_map.nodes)}
    map_graph = _weighted(road_map, map_index)
    on_map = [map_index[n] for n in snapped.node]
    where = {int(n): k for k, n in enumerate(snapped.node)}
    map_edges = [(where[u], where[v], d["geometry"]) for u, v, d in road_map.edges(data=True) if u != v and u in where and v in where]
    pairs = sorted(cKDTree(snapped.xy).query_pairs(radius_px))
    rows: list[tuple[shapely.Geometry, str, float, float]] = []
    best: dict[frozenset[int], tuple[float, int, int, shapely.Geometry, float]] = {}
    # shortest paths from a block of map nodes at a time: memory bounded by _PATH_BLOCK_ENTRIES, not the square of the node count
    block = max(1, _PATH_BLOCK_ENTRIES // graph.shape[0])
    for start in range(0, len(sources), block):
        stop = min(start + block, len(sources))
        image_dist, pred = dijkstra(graph, indices=sources[start:stop], limit=limit, return_predecessors=True)
        image = image_dist[:, sources]
        map_dist = dijkstra(map_graph, indices=on_map[start:stop], limit=3 * radius_px / shortcut_ratio)[:, on_map]
        for a, b, geometry in map_edges:
            if start <= a < stop and not image[a - start, b] <= detour_ratio * geometry.length:
                rows.append((geometry, "broken_link", geometry.length, image[a - start, b]))
        for a, b in pairs:
            if not start <= a < stop:
                continue
            straight = float(np.hypot(*(snapped.xy[a] - snapped.xy[b])))
            through, by_map = image[a - start, b], map_dist[a - start, b]
            if straight < 2 * tolerance_px or not np.isfinite(through) or not through < shortcut_ratio * by_map:
                continue
            key = frozenset(_path_edges(pred[a - start], sources[a], sources[b], owner) & set(new_edges))
            if key and (key not in best or through < best[key][0]):
                path = _path_geometry(pred[a - start], sources[a], sources[b], owner, edges, snapped, n_base)
                best[key] = (through, a, b, path, float(by_map))
    for through, _, _, path, by_map in sorted(best.values(), key=lambda item: item[:3]):
        rows.append((path, "new_link", by_map, through))
    if not rows:
        return empty

    def finite(values: list[float]) -> np.ndarray:
        out = np.asarray(values, dtype=float)
        out[~np.isfinite(out)] = np.nan
        return out

    return Links(
        np.asarray([r[0] for r in rows], dtype=object),
        np.asarray([r[1] for r in rows], dtype=object),
        finite([r[2] for r in rows]),
        finite([r[3] for r in rows]),
    )


def _snap_nodes(road_map: nx.MultiGraph, edges: list[tuple], tol: float) -> _Snapped:
    geoms = np.asarray([d["geometry"] for *_, d in edges], dtype=object)
    nodes = np.asarray(list(road_map.nodes))
    xy = np.array([[road_map.nodes[n]["x"], road_map.nodes[n]["y"]] for n in nodes], dtype=float)
    points = shapely.points(xy)
    pairs = shapely.STRtree(geoms).query_nearest(points, max_distance=tol, all_matches=False)
    which, edge = pairs[0], pairs[1]
    at = shapely.line_locate_point(geoms[edge], points[which]) if len(which) else np.zeros(0)
    return _Snapped(nodes[which], xy[which], edge.astype(np.intp), np.asarray(at, dtype=float))


def _starts_at(data: dict, network: nx.MultiGraph, u: object) -> bool:
    """Whether the edge's geometry begins at node ``u``."""
    x, y = data["geometry"].coords[0][:2]
    return bool(math.hypot(x - network.nodes[u]["x"], y - network.nodes[u]["y"]) < 1e-6 * max(1.0, data["geometry"].length))


def _image_graph(network: nx.MultiGraph, edges: list[tuple], snapped: _Snapped) -> tuple[csr_matrix, dict[tuple[int, int], tuple[int, float, float]]]:
    """Sparse graph of the extracted network with one extra node per snapped map node.

    ``owner`` maps each directed pair of graph nodes to (extracted edge, position along its
    geometry at the first node, at the second), for rebuilding paths.
    """
    index = {n: i for i, n in enumerate(network.nodes)}
    n_base = len(index)
    best: dict[tuple[int, int], tuple[float, tuple[int, float, float]]] = {}

    def link(p: int, q: int, weight: float, piece: tuple[int, float, float]) -> None:
        for key, span in (((p, q), piece), ((q, p), (piece[0], piece[2], piece[1]))):
            if key not in best or weight < best[key][0]:
                best[key] = (weight, span)

    for k, (u, v, _, data) in enumerate(edges):
        length = data["geometry"].length
        first, last = (u, v) if _starts_at(data, network, u) else (v, u)
        link(index[first], index[last], length, (k, 0.0, length))
    on_edge: dict[int, list[int]] = {}
    for s, (edge, at) in enumerate(zip(snapped.edge, snapped.at)):
        u, v, _, data = edges[edge]
        length = data["geometry"].length
        first, last = (u, v) if _starts_at(data, network, u) else (v, u)
        me = n_base + s
        link(me, index[first], at, (int(edge), at, 0.0))
        link(me, index[last], length - at, (int(edge), at, length))
        for other in on_edge.get(int(edge), []):
            link(me, n_base + other, abs(at - snapped.at[other]), (int(edge), at, float(snapped.at[other])))
        on_edge.setdefault(int(edge), []).append(s)
    size = n_base + len(snapped.node)
    keys = list(best)
    rows = np.array([p for p, _ in keys], dtype=np.intp)
    cols = np.array([q for _, q in keys], dtype=np.intp)
    # a zero weight is "no edge" in a sparse matrix: keep coincident points a hair apart
    weights = np.array([max(best[k][0], 1e-9) for k in keys], dtype=float)
    return coo_matrix((weights, (rows, cols)), shape=(size, size)).tocsr(), {k: best[k][1] for k in keys}


def _weighted(graph: nx.MultiGraph, index: dict[object, int]) -> object:
    best: dict[tuple[int, int], float] = {}
    for u, v, data in graph.edges(data=True):
        length = max(data["geometry"].length, 1e-9)
        for key in ((index[u], index[v]), (index[v], index[u])):
            best[key] = min(best.get(key, math.inf), length)
    size = len(index)
    keys = list(best)
    return coo_matrix(([best[k] for k in keys], ([p for p, _ in keys], [q for _, q in keys])), shape=(size, size)).tocsr()


def _path_nodes(pred: np.ndarray, source: int, target: int) -> list[int]:
    path = [int(target)]
    while path[-1] != source:
        path.append(int(pred[path[-1]]))
    return path[::-1]


def _path_edges(pred: np.ndarray, source: int, target: int, owner: dict[tuple[int, int], tuple[int, float, float]]) -> set[int]:
    nodes = _path_nodes(pred, source, target)
    return {owner[(p, q)][0] for p, q in zip(nodes[:-1], nodes[1:])}


def _path_geometry(
    pred: np.ndarray, source: int, target: int, owner: dict[tuple[int, int], tuple[int, float, float]], edges: list[tuple], snapped: _Snapped, n_base: int
) -> shapely.Geometry:
    nodes = _path_nodes(pred, source, target)
    pieces = []
    for p, q in zip(nodes[:-1], nodes[1:]):
        edge, a, b = owner[(p, q)]
        geom = edges[edge][3]["geometry"]
        piece = _substring(geom, min(a, b), max(a, b))
        pieces.append(piece if a <= b else shapely.reverse(piece))
    return shapely.line_merge(shapely.MultiLineString(pieces)) if len(pieces) > 1 else pieces[0]
