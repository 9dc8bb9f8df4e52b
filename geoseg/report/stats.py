"""Per-scene numbers for reports: road length, junctions and dead ends, truth matching.

Node degrees are counted from the edges' end points (two ends at the same coordinates, to
1e-6 CRS units, are one node; a self-loop adds 2 to its node), so any file of lines works,
not only geoseg's own outputs with their ``node_u``/``node_v`` attributes.
"""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.evaluate import VECTOR_SUFFIXES
from geoseg.vector import read_lines

__all__ = [
    "NetworkStats",
    "read_network",
    "network_nodes",
    "network_stats",
    "truth_candidates",
    "match_truth",
    "TRUTH_SUFFIX",
]

#: A truth file may be named ``<stem>_centerlines.<ext>`` as well as ``<stem>.<ext>``.
TRUTH_SUFFIX = "_centerlines"

_NODE_DECIMALS = 6


@dataclass(frozen=True)
class NetworkStats:
    """Size and topology of one road network.

    Attributes
    ----------
    road_km : float
        Total length of the edges in kilometres (from ``length_m``; NaN when unknown).
    edges : int
        Number of edges (lines).
    junctions : int
        Nodes of degree 3 or more.
    dead_ends : int
        Nodes of degree 1.
    mean_confidence : float
        Length-weighted mean of the edges' ``confidence`` (0-1; NaN when there is none).
    """

    road_km: float
    edges: int
    junctions: int
    dead_ends: int
    mean_confidence: float


def read_network(path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """Read a network's edges: the ``edges`` layer of a GeoPackage, else the file's only layer.

    Parameters
    ----------
    path : path-like
        The network file (a GeoPackage as geoseg writes it, or any vector file of lines).

    Returns
    -------
    geopandas.GeoDataFrame
        The edges, in the file's CRS. For a GeoPackage without an ``edges`` layer, its first
        layer.

    Raises
    ------
    geoseg.errors.VectorReadError
        If the file is missing or not a readable vector file.
    geoseg.errors.InputMismatchError
        If the file holds geometries other than lines.

    Examples
    --------
    >>> import tempfile
    >>> from shapely.geometry import LineString, Point
    >>> d = tempfile.TemporaryDirectory()
    >>> path = f"{d.name}/net.gpkg"
    >>> gpd.GeoDataFrame(geometry=[Point(0, 0)], crs="EPSG:32618").to_file(path, layer="nodes")
    >>> lines = [LineString([(0, 0), (10, 0)]), LineString([(10, 0), (10, 5)])]
    >>> gpd.GeoDataFrame(geometry=lines, crs="EPSG:32618").to_file(path, layer="edges")
    >>> read_network(path).geometry.length.tolist()
    [10.0, 5.0]
    >>> d.cleanup()
    """
    p = Path(path)
    frame = read_lines(p)
    types = set(frame.geometry.dropna().geom_type) - {"LineString", "MultiLineString"}
    if types:
        raise InputMismatchError(f"{p}: expected a road network of lines, found {', '.join(sorted(types))}")
    return frame


def _line_parts(frame: gpd.GeoDataFrame) -> np.ndarray:
    geoms = frame.geometry.dropna()
    geoms = geoms[~geoms.is_empty]
    return shapely.force_2d(geoms.explode(index_parts=False).to_numpy()) if len(geoms) else np.array([], dtype=object)


def network_nodes(edges: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The nodes of a network of lines and their degrees.

    Parameters
    ----------
    edges : geopandas.GeoDataFrame
        Lines (multi-lines are split into their parts).

    Returns
    -------
    xy : numpy.ndarray
        ``(n, 2)`` node coordinates in the CRS of ``edges``.
    degree : numpy.ndarray
        ``(n,)`` number of edge ends at each node.

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> lines = [LineString([(0, 0), (10, 0)]), LineString([(10, 0), (15, 0)]), LineString([(10, 0), (10, 5)])]
    >>> data = {"length_m": [10.0, 5.0, 5.0], "confidence": [1.0, 0.4, float("nan")]}
    >>> edges = gpd.GeoDataFrame(data, geometry=lines, crs="EPSG:32618")
    >>> xy, degree = network_nodes(edges)
    >>> xy.tolist(), degree.tolist()
    ([[0.0, 0.0], [10.0, 0.0], [10.0, 5.0], [15.0, 0.0]], [1, 3, 1, 1])
    """
    parts = _line_parts(edges)
    if len(parts) == 0:
        return np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    ends = np.concatenate([shapely.get_coordinates(shapely.get_point(parts, 0)), shapely.get_coordinates(shapely.get_point(parts, -1))])
    _, first, degree = np.unique(np.round(ends, _NODE_DECIMALS), axis=0, return_index=True, return_counts=True)
    return ends[first], degree.astype(np.int64)


def network_stats(edges: gpd.GeoDataFrame) -> NetworkStats:
    """Road length, edge count, junctions (degree >= 3) and dead ends (degree 1) of a network.

    The length is the sum of the ``length_m`` attribute (geodesic, as geoseg writes it); for
    lines without it, they are measured in a local UTM zone (NaN without a CRS).

    Parameters
    ----------
    edges : geopandas.GeoDataFrame
        The network's lines, with optional ``length_m`` and ``confidence`` columns.

    Returns
    -------
    NetworkStats
        The totals; ``mean_confidence`` is the length-weighted mean of the known
        confidences (NaN when none is known).

    Examples
    --------
    >>> from shapely.geometry import LineString
    >>> lines = [LineString([(0, 0), (10, 0)]), LineString([(10, 0), (15, 0)]), LineString([(10, 0), (10, 5)])]
    >>> data = {"length_m": [10.0, 5.0, 5.0], "confidence": [1.0, 0.4, float("nan")]}
    >>> edges = gpd.GeoDataFrame(data, geometry=lines, crs="EPSG:32618")
    >>> network_stats(edges)
    NetworkStats(road_km=0.02, edges=3, junctions=1, dead_ends=3, mean_confidence=0.8)
    """
    _, degree = network_nodes(edges)
    if "length_m" in edges.columns:
        lengths = edges["length_m"].to_numpy(dtype=float)
    elif edges.crs is not None and len(edges):
        lengths = edges.geometry.to_crs(edges.estimate_utm_crs()).length.to_numpy()
    else:
        lengths = np.full(len(edges), np.nan)
    confidence = edges["confidence"].to_numpy(dtype=float) if "confidence" in edges.columns else np.full(len(edges), np.nan)
    known = np.isfinite(confidence) & np.isfinite(lengths) & (lengths > 0)
    mean_confidence = float(np.average(confidence[known], weights=lengths[known])) if known.any() else math.nan
    return NetworkStats(
        road_km=float(np.sum(lengths)) / 1000.0 if len(edges) else 0.0,
        edges=len(edges),
        junctions=int(np.sum(degree >= 3)),
        dead_ends=int(np.sum(degree == 1)),
        mean_confidence=mean_confidence,
    )


def truth_candidates(spec: str | os.PathLike[str]) -> list[Path]:
    """The vector files a ``--truth`` value names: every vector file in a folder, or a glob's matches.

    Parameters
    ----------
    spec : path-like
        A folder, a glob pattern (``**`` recurses) or a single vector file.

    Returns
    -------
    list of pathlib.Path
        The vector files (by suffix, :data:`geoseg.evaluate.VECTOR_SUFFIXES`), sorted.

    Raises
    ------
    geoseg.errors.ConfigError
        If ``spec`` names no vector file.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.TemporaryDirectory()
    >>> for name in ["a.shp", "b.geojson", "notes.txt"]:
    ...     (Path(d.name) / name).touch()
    >>> [p.name for p in truth_candidates(d.name)], [p.name for p in truth_candidates(f"{d.name}/*.shp")]
    (['a.shp', 'b.geojson'], ['a.shp'])
    >>> d.cleanup()
    """
    text = str(spec)
    if Path(text).is_dir():
        found = sorted(p for p in Path(text).iterdir() if p.is_file() and p.suffix.lower() in VECTOR_SUFFIXES)
    elif glob.has_magic(text):
        found = sorted(Path(m) for m in glob.glob(text, recursive=True) if Path(m).suffix.lower() in VECTOR_SUFFIXES)
    else:
        found = [Path(text)] if Path(text).is_file() and Path(text).suffix.lower() in VECTOR_SUFFIXES else []
    if not found:
        raise ConfigError(f"--truth {text}: names no vector file ({', '.join(VECTOR_SUFFIXES)}); give a folder or a quoted glob")
    return found


def match_truth(stem: str, candidates: list[Path]) -> tuple[Path | None, list[Path]]:
    """The truth file for a scene: ``<stem>.<ext>``, else ``<stem>_centerlines.<ext>``.

    Parameters
    ----------
    stem : str
        The scene's stem.
    candidates : list of pathlib.Path
        The truth files (e.g. from :func:`truth_candidates`, which sorts them).

    Returns
    -------
    path : pathlib.Path or None
        The chosen file (the first in ``candidates`` when several share the best name).
    others : list of pathlib.Path
        Other files that matched equally well (for a warning).

    Examples
    --------
    >>> path, others = match_truth("a", [Path("t/a.gpkg"), Path("t/a.shp"), Path("t/a_centerlines.shp")])
    >>> path.name, [p.name for p in others]
    ('a.gpkg', ['a.shp'])
    >>> match_truth("a", [Path("t/a_centerlines.shp"), Path("t/b.shp")])[0].name
    'a_centerlines.shp'
    >>> match_truth("c", [Path("t/a.shp")])
    (None, [])
    """
    for name in (stem, stem + TRUTH_SUFFIX):
        hits = [p for p in candidates if p.stem == name]
        if hits:
            return hits[0], hits[1:]
    return None, []
