"""Vector output and input: road networks as GeoDataFrames, written atomically with pyogrio.

Networks are kept in pixel space while steps work on them (see ``docs/CONVENTIONS.md``) and
are mapped to the scene's CRS by its affine transform only when they become GeoDataFrames.
Nothing is reprojected: outputs are in the input's CRS (or in pixel coordinates for inputs
without georeferencing).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import geopandas as gpd
import networkx as nx
import numpy as np
import shapely
from pyogrio.errors import DataSourceError, DataLayerError
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer

from geoseg.atomic import atomic_path
from geoseg.errors import ConfigError, OutputWriteError, VectorReadError
from geoseg.raster import GeoInfo

__all__ = [
    "FORMATS",
    "network_to_frames",
    "write_vector",
    "write_network",
    "read_lines",
    "lengths_m",
]

#: Output formats: name -> (file extension, OGR driver).
FORMATS: dict[str, tuple[str, str]] = {
    "shp": (".shp", "ESRI Shapefile"),
    "gpkg": (".gpkg", "GPKG"),
    "geojson": (".geojson", "GeoJSON"),
}

_GEOD = Geod(ellps="WGS84")

#: ``last_change`` written into GeoPackages, so that outputs are reproducible byte for byte.
GPKG_TIMESTAMP = "2000-01-01T00:00:00.000Z"


def _affine(geoms: np.ndarray, a: float, b: float, c: float, d: float, e: float, f: float) -> np.ndarray:
    """Apply ``x' = a x + b y + c, y' = d x + e y + f`` to every coordinate of ``geoms``."""
    matrix = np.array([[a, d], [b, e]])
    offset = np.array([c, f])
    return shapely.transform(geoms, lambda xy: xy @ matrix + offset)


def _to_crs_coords(geoms: np.ndarray, geo: GeoInfo) -> np.ndarray:
    t = geo.transform
    return _affine(geoms, t.a, t.b, t.c, t.d, t.e, t.f)


def lengths_m(geoms: np.ndarray, geo: GeoInfo) -> np.ndarray:
    """Lengths in metres of lines given in the CRS of ``geo``.

    Georeferenced lines are measured geodesically on the WGS84 ellipsoid (right for
    geographic and projected CRSs alike); lines of non-georeferenced scenes are in pixels
    and scaled by the assumed GSD.
    """
    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return np.zeros(0)
    if not geo.georeferenced:
        sx, sy = geo.gsd_xy_m
        return shapely.length(_affine(geoms, sx, 0.0, 0.0, 0.0, sy, 0.0))
    proj = ProjCRS.from_user_input(geo.crs.to_wkt())
    to_geo = Transformer.from_crs(proj, proj.geodetic_crs, always_xy=True)
    out = np.empty(len(geoms))
    for i, g in enumerate(geoms):
        xy = shapely.get_coordinates(g)
        lon, lat = to_geo.transform(xy[:, 0], xy[:, 1])
        out[i] = _GEOD.line_length(lon, lat)
    return out


def network_to_frames(graph: nx.MultiGraph, geo: GeoInfo) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Turn a pixel-space road network into edge and node GeoDataFrames in the scene CRS.

    Parameters
    ----------
    graph : networkx.MultiGraph
        Road network per the conventions (node ``x``/``y``, edge ``geometry``, optional
        ``saliency``), in pixel space.
    geo : GeoInfo
        The scene's georeferencing.

    Returns
    -------
    edges, nodes : geopandas.GeoDataFrame
        ``edges``: one LineString per edge with ``edge_id``, ``node_u``, ``node_v``,
        ``length_m``, ``degree_u``, ``degree_v``, ``saliency``, ``confidence`` (0-1; NaN when the
        network has none). ``nodes``: one Point per node
        with ``node_id``, ``degree`` and ``kind`` (``junction``, ``end`` or ``through``).
    """
    crs = geo.crs if geo.georeferenced else None
    node_ids = {n: i for i, n in enumerate(sorted(graph.nodes, key=lambda n: (graph.nodes[n]["y"], graph.nodes[n]["x"])))}
    degree = dict(graph.degree)
    edge_rows = []
    for u, v, data in graph.edges(data=True):
        a, b = sorted((node_ids[u], node_ids[v]))
        geom = data["geometry"]
        if node_ids[u] != a:
            geom = shapely.reverse(geom)
        first = shapely.get_coordinates(geom)[0].tolist()
        edge_rows.append((a, b, first, geom, u if node_ids[u] == a else v, v if node_ids[u] == a else u, data.get("saliency", np.nan), data.get("confidence", np.nan)))
    edge_rows.sort(key=lambda r: (r[0], r[1], r[2]))
    geoms = np.array([r[3] for r in edge_rows], dtype=object)
    geoms = _to_crs_coords(geoms, geo) if len(geoms) else geoms
    edges = gpd.GeoDataFrame(
        {
            "edge_id": np.arange(len(edge_rows), dtype=np.int64),
            "node_u": np.array([r[0] for r in edge_rows], dtype=np.int64),
            "node_v": np.array([r[1] for r in edge_rows], dtype=np.int64),
            "length_m": np.round(lengths_m(geoms, geo), 3),
            "degree_u": np.array([degree[r[4]] for r in edge_rows], dtype=np.int64),
            "degree_v": np.array([degree[r[5]] for r in edge_rows], dtype=np.int64),
            "saliency": np.round(np.array([r[6] for r in edge_rows], dtype=float), 4),
            "confidence": np.round(np.array([r[7] for r in edge_rows], dtype=float), 4),
        },
        geometry=gpd.GeoSeries(list(geoms), crs=crs),
        crs=crs,
    )
    ordered = sorted(node_ids, key=node_ids.get)
    pts = shapely.points([[graph.nodes[n]["x"], graph.nodes[n]["y"]] for n in ordered]) if ordered else np.array([], dtype=object)
    pts = _to_crs_coords(np.asarray(pts, dtype=object), geo) if len(ordered) else pts
    kinds = ["end" if degree[n] == 1 else "through" if degree[n] == 2 else "junction" for n in ordered]
    nodes = gpd.GeoDataFrame(
        {
            "node_id": np.arange(len(ordered), dtype=np.int64),
            "degree": np.array([degree[n] for n in ordered], dtype=np.int64),
            "kind": kinds,
        },
        geometry=gpd.GeoSeries(list(pts), crs=crs),
        crs=crs,
    )
    return edges, nodes


def _driver(fmt: str) -> tuple[str, str]:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ConfigError(f"unknown vector format {fmt!r}; choose one of {', '.join(FORMATS)}") from None


def write_vector(frame: gpd.GeoDataFrame, path: str | os.PathLike[str], *, fmt: str = "shp", layer: str | None = None) -> Path:
    """Write a GeoDataFrame atomically (all sidecar files included), in its own CRS."""
    _, driver = _driver(fmt)
    with atomic_path(path) as tmp:
        _write_frame(frame, tmp, driver, layer)
    return Path(path)


def _write_frame(frame: gpd.GeoDataFrame, path: Path, driver: str, layer: str | None) -> None:
    kwargs = {"layer": layer} if layer else {}
    if driver == "GeoJSON":
        kwargs["RFC7946"] = "NO"
        kwargs["WRITE_NAME"] = "NO"
    if driver == "GPKG":
        # GeoPackages record the time of writing (gpkg_contents.last_change); a fixed one keeps
        # outputs byte-identical run to run (SOURCE_DATE_EPOCH-style reproducibility).
        import pyogrio

        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_TIMESTAMP})
    with warnings.catch_warnings():
        # Scenes without georeferencing give frames without CRS on purpose (pixel coordinates).
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        frame.to_file(path, driver=driver, engine="pyogrio", **kwargs)
    _verify_written(frame, path, layer)


def _verify_written(frame: gpd.GeoDataFrame, path: Path, layer: str | None) -> None:
    """Read back what was written: GDAL's drivers do not all report failed writes.

    The shapefile driver ignores short writes (a full disk, a file size limit) and leaves a
    ``.dbf`` that reads back without its attribute columns; checking the fields, the feature
    count and the last record turns that into an error instead of a silently wrong output.
    """
    import pyogrio

    try:
        info = pyogrio.read_info(path, layer=layer)
        fields = set(info["fields"])
        missing = [c for c in frame.columns if c != frame.geometry.name and c not in fields]
        if info["features"] != len(frame) or missing:
            raise OutputWriteError(
                f"{path.name}: the written file is incomplete ({info['features']} of {len(frame)} features, "
                f"missing fields {missing}); is the disk full?"
            )
        if len(frame):
            last = pyogrio.read_dataframe(path, layer=layer, skip_features=len(frame) - 1, max_features=1)
            if len(last) != 1:
                raise OutputWriteError(f"{path.name}: the written file is incomplete (its last feature is unreadable); is the disk full?")
    except (DataSourceError, DataLayerError) as exc:
        raise OutputWriteError(
            f"{path.name}: the written file cannot be read back ({str(exc).splitlines()[0][:200]}); is the disk full?"
        ) from exc


def write_network(
    edges: gpd.GeoDataFrame,
    nodes: gpd.GeoDataFrame | None,
    path: str | os.PathLike[str],
    *,
    fmt: str = "shp",
) -> list[Path]:
    """Write a network's lines (and optionally its nodes) atomically.

    GeoPackage output holds two layers (``edges``, ``nodes``) in one file; Shapefile and
    GeoJSON output write the nodes beside the lines as ``<stem>_nodes.<ext>``.

    Returns
    -------
    list of pathlib.Path
        The files written (main file first).
    """
    ext, driver = _driver(fmt)
    final = Path(path)
    if fmt == "gpkg":
        with atomic_path(final) as tmp:
            _write_frame(edges, tmp, driver, "edges")
            if nodes is not None:
                _write_frame(nodes, tmp, driver, "nodes")
        return [final]
    written = []
    if nodes is not None:
        node_path = final.with_name(final.stem + "_nodes" + ext)
        with atomic_path(node_path) as tmp:
            _write_frame(nodes, tmp, driver, None)
        written.append(node_path)
    with atomic_path(final) as tmp:
        _write_frame(edges, tmp, driver, None)
    return [final, *written]


def read_lines(path: str | os.PathLike[str], *, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a vector file of lines (any OGR format) into a GeoDataFrame.

    Raises
    ------
    VectorReadError
        The file is missing or not a readable vector data set.
    """
    p = Path(path)
    if not p.exists():
        raise VectorReadError(f"{p}: no such file")
    try:
        return gpd.read_file(p, layer=layer, engine="pyogrio")
    except (DataSourceError, DataLayerError, ValueError) as exc:
        raise VectorReadError(f"{p}: not a readable vector file ({str(exc).splitlines()[0][:200]})") from exc
