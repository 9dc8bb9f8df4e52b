"""Vector output and input: road networks as GeoDataFrames, written atomically with pyogrio.

Networks are kept in pixel space while steps work on them (see ``docs/CONVENTIONS.md``) and
are mapped to the scene's CRS by its affine transform only when they become GeoDataFrames.
Outputs are in the input's CRS (or in pixel coordinates for inputs without georeferencing);
they are reprojected only on request (:class:`VectorFormat` ``dst_crs``, ``geoseg run
--dst-crs`` / ``--rfc7946``).
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from geoseg.atomic import atomic_path
from geoseg.errors import ConfigError, InputMismatchError, OutputWriteError, VectorReadError

if TYPE_CHECKING:
    import geopandas as gpd
    import networkx as nx
    import numpy as np
    from pyproj import CRS as ProjCRS
    from pyproj import Geod

    from geoseg.raster import GeoInfo

__all__ = [
    "FORMATS",
    "VectorFormat",
    "vector_format",
    "network_to_frames",
    "write_vector",
    "write_network",
    "write_layers",
    "layer_paths",
    "read_lines",
    "to_scene_crs",
    "check_degrees",
    "keep_lines",
    "layer_names",
    "crs_name",
    "lengths_m",
    "to_crs_coords",
    "import_vector_libraries",
]

#: Output formats: name -> (file extension, OGR driver).
FORMATS: dict[str, tuple[str, str]] = {
    "shp": (".shp", "ESRI Shapefile"),
    "gpkg": (".gpkg", "GPKG"),
    "geojson": (".geojson", "GeoJSON"),
}

#: ``last_change`` written into GeoPackages, so that outputs are reproducible byte for byte.
GPKG_TIMESTAMP = "2000-01-01T00:00:00.000Z"

#: The layer of a network's lines in geoseg's GeoPackages (``nodes`` holds its nodes).
NETWORK_LAYER = "edges"

#: RFC 7946 GeoJSON: WGS84 longitude/latitude, and its recommended coordinate precision.
RFC7946_CRS = "EPSG:4326"
RFC7946_PRECISION = 7


@dataclass(frozen=True)
class VectorFormat:
    """How vector outputs are written: a format of :data:`FORMATS`, reprojected only on request.

    Attributes
    ----------
    name : {"shp", "gpkg", "geojson"}
        The format.
    dst_crs : str or None
        Reproject the features to this CRS (EPSG code, WKT or PROJ string); None keeps the
        input's CRS.
    precision : int or None
        Decimals of GeoJSON coordinates (GDAL's ``COORDINATE_PRECISION``); None: GDAL's default
        (15 significant digits, or 7 decimals for RFC 7946).
    rfc7946 : bool
        GeoJSON per RFC 7946: WGS84 longitude/latitude (``dst_crs`` is ``EPSG:4326``), no
        ``crs`` member, 7 decimals unless ``precision`` says otherwise.

    Raises
    ------
    ConfigError
        An unknown format or CRS, a precision outside 0-15 or for another format than GeoJSON,
        or RFC 7946 with another format or CRS.
    """

    name: str = "shp"
    dst_crs: str | None = None
    precision: int | None = None
    rfc7946: bool = False

    def __post_init__(self) -> None:
        _driver(self.name)
        if self.rfc7946 and self.name != "geojson":
            raise ConfigError(f"--rfc7946 writes GeoJSON, not {self.name}; drop --format {self.name} (or use --dst-crs {RFC7946_CRS} for {self.name})")
        if self.rfc7946 and self.dst_crs is not None and _crs(self.dst_crs) != _crs(RFC7946_CRS):
            raise ConfigError(f"--dst-crs {self.dst_crs}: RFC 7946 GeoJSON is always in {RFC7946_CRS} (WGS84 longitude/latitude); drop --dst-crs or --rfc7946")
        if self.precision is not None and self.name != "geojson":
            raise ConfigError(
                f"--precision {self.precision}: sets the decimals of GeoJSON coordinates; {self.name} stores full precision (drop it, or use --format geojson)"
            )
        if self.precision is not None and not 0 <= self.precision <= 15:
            raise ConfigError(f"--precision {self.precision}: give 0 to 15 decimals (7 is about 1 cm in degrees, 3 is 1 mm in metres)")
        if self.dst_crs is not None:
            _crs(self.dst_crs)

    @property
    def ext(self) -> str:
        """File extension of the main output (``.shp``, ``.gpkg``, ``.geojson``)."""
        return FORMATS[self.name][0]

    @property
    def target_crs(self) -> str | None:
        """The CRS the features are written in when it is not the input's (RFC 7946: EPSG:4326)."""
        return RFC7946_CRS if self.rfc7946 else self.dst_crs

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (what the batch manifest records)."""
        return {"name": self.name, "dst_crs": self.target_crs, "precision": self.precision, "rfc7946": self.rfc7946}

    def layer_options(self) -> dict[str, str]:
        """GDAL layer-creation options of the format."""
        if self.name != "geojson":
            return {}
        options = {"RFC7946": "YES" if self.rfc7946 else "NO", "WRITE_NAME": "NO"}
        if self.precision is not None:
            options["COORDINATE_PRECISION"] = str(self.precision)
        return options


def vector_format(fmt: str | VectorFormat) -> VectorFormat:
    """``fmt`` as a :class:`VectorFormat` (a plain name keeps the input's CRS).

    Parameters
    ----------
    fmt : str or VectorFormat
        A name of :data:`FORMATS`, or a format (returned as it is).

    Returns
    -------
    VectorFormat

    Raises
    ------
    ConfigError
        ``fmt`` is a name not in :data:`FORMATS`.

    Examples
    --------
    >>> spec = vector_format("geojson")
    >>> spec.ext, spec.target_crs, spec.layer_options()
    ('.geojson', None, {'RFC7946': 'NO', 'WRITE_NAME': 'NO'})
    >>> vector_format("kml")
    Traceback (most recent call last):
        ...
    geoseg.errors.ConfigError: unknown vector format 'kml'; choose one of shp, gpkg, geojson
    """
    return fmt if isinstance(fmt, VectorFormat) else VectorFormat(fmt)


def _crs(text: str) -> ProjCRS:
    from pyproj import CRS as ProjCRS
    from pyproj.exceptions import CRSError

    try:
        return ProjCRS.from_user_input(text)
    except CRSError:
        raise ConfigError(f"--dst-crs {text}: not a CRS (give an EPSG code such as EPSG:4326, a WKT or a PROJ string)") from None


def _reprojected(frame: gpd.GeoDataFrame, fmt: VectorFormat) -> gpd.GeoDataFrame:
    """The features in the CRS ``fmt`` asks for (unchanged when it asks for none)."""
    target = fmt.target_crs
    if target is None:
        return frame
    if frame.crs is None:
        raise InputMismatchError(
            f"the features are in pixel coordinates (the input has no georeferencing) and cannot be reprojected to {target}; "
            "drop --dst-crs/--rfc7946 for this input, or georeference it first"
        )
    return frame.to_crs(target)


def _affine(geoms: np.ndarray, a: float, b: float, c: float, d: float, e: float, f: float) -> np.ndarray:
    """Apply ``x' = a x + b y + c, y' = d x + e y + f`` to every coordinate of ``geoms``."""
    import numpy as np
    import shapely

    matrix = np.array([[a, d], [b, e]])
    offset = np.array([c, f])
    return shapely.transform(geoms, lambda xy: xy @ matrix + offset)


def to_crs_coords(geoms: np.ndarray, geo: GeoInfo) -> np.ndarray:
    """Geometries in ``geo``'s pixel space (x = column, y = row) mapped to its CRS by its transform.

    Parameters
    ----------
    geoms : numpy.ndarray
        Shapely geometries in pixel coordinates.
    geo : GeoInfo
        The scene's georeferencing (identity transform without georeferencing).

    Returns
    -------
    numpy.ndarray
        The geometries in the CRS coordinates of ``geo``.

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> from shapely.geometry import LineString
    >>> from geoseg.raster import GeoInfo
    >>> t = Affine(0.5, 0, 500000, 0, -0.5, 5000000)
    >>> geo = GeoInfo(400, 400, CRS.from_epsg(32633), t, (0.5, 0.5), True)
    >>> to_crs_coords(np.array([LineString([(0, 0), (200, 10)])]), geo)[0].wkt
    'LINESTRING (500000 5000000, 500100 4999995)'
    """
    t = geo.transform
    return _affine(geoms, t.a, t.b, t.c, t.d, t.e, t.f)


@cache
def _wgs84() -> Geod:
    """The WGS84 ellipsoid, for geodesic lengths (pyproj is imported on first use)."""
    from pyproj import Geod

    return Geod(ellps="WGS84")


def lengths_m(geoms: np.ndarray, geo: GeoInfo) -> np.ndarray:
    """Lengths in metres of lines given in the CRS of ``geo``.

    Georeferenced lines are measured geodesically on the WGS84 ellipsoid (right for
    geographic and projected CRSs alike); lines of non-georeferenced scenes are in the scene's
    pixels and scaled by the assumed GSD (on a grid of pixel blocks, whose transform maps
    blocks to the scene's pixels, by the GSD of one scene pixel).

    Parameters
    ----------
    geoms : numpy.ndarray
        Shapely LineStrings in the CRS of ``geo`` (in pixels without georeferencing).
    geo : GeoInfo
        The scene's georeferencing.

    Returns
    -------
    numpy.ndarray
        One float length in metres per line.

    Examples
    --------
    >>> import numpy as np
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> from shapely.geometry import LineString
    >>> from geoseg.raster import GeoInfo
    >>> pixels = GeoInfo(10, 10, None, Affine.identity(), (0.5, 0.5), False)
    >>> lengths_m(np.array([LineString([(0, 0), (3, 4)])]), pixels).tolist()
    [2.5]
    >>> blocks = GeoInfo(5, 5, None, Affine.scale(2), (1.0, 1.0), False)  # 2 x 2 px blocks of the same scene
    >>> lengths_m(np.array([LineString([(0, 0), (3, 4)])]), blocks).tolist()
    [2.5]
    >>> t = Affine(1, 0, 500000, 0, -1, 5000000)
    >>> utm = GeoInfo(10, 10, CRS.from_epsg(32633), t, (1.0, 1.0), True)
    >>> line = LineString([(500000, 5000000), (500100, 5000000)])  # 100 m on the UTM grid
    >>> lengths_m(np.array([line]), utm).round(2).tolist()  # on the ground (scale 0.9996)
    [100.04]
    """
    import numpy as np
    import shapely
    from pyproj import CRS as ProjCRS
    from pyproj import Transformer

    geoms = np.asarray(geoms, dtype=object)
    if len(geoms) == 0:
        return np.zeros(0)
    if not geo.georeferenced or geo.crs is None:
        t = geo.transform
        sx, sy = geo.gsd_xy_m[0] / np.hypot(t.a, t.d), geo.gsd_xy_m[1] / np.hypot(t.b, t.e)
        return shapely.length(_affine(geoms, sx, 0.0, 0.0, 0.0, sy, 0.0))
    proj = ProjCRS.from_user_input(geo.crs.to_wkt())
    to_geo = Transformer.from_crs(proj, proj.geodetic_crs, always_xy=True)
    out = np.empty(len(geoms))
    for i, g in enumerate(geoms):
        total = 0.0
        for part in shapely.get_parts(g):  # the parts of a multi-line, not the jumps between them
            xy = shapely.get_coordinates(part)
            lon, lat = to_geo.transform(xy[:, 0], xy[:, 1])
            total += _wgs84().line_length(lon, lat)
        out[i] = total
    return out


#: The libraries behind vector layers, imported on first use (about 0.3 s together here).
VECTOR_LIBRARIES = ("geopandas", "pyogrio")


def import_vector_libraries() -> None:
    """Import the libraries that make, read and write vector layers, if not yet imported.

    They load only when first needed, so that commands without vectors start quickly; a run
    that ends in vectors imports them early, while other threads compute its tiles
    (:func:`geoseg.pipeline.engine.execute`).

    Examples
    --------
    >>> import sys
    >>> import_vector_libraries()
    >>> "geopandas" in sys.modules
    True
    """
    for name in VECTOR_LIBRARIES:
        importlib.import_module(name)


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
    import geopandas as gpd
    import numpy as np
    import shapely

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
        edge_rows.append(
            (a, b, first, geom, u if node_ids[u] == a else v, v if node_ids[u] == a else u, data.get("saliency", np.nan), data.get("confidence", np.nan))
        )
    edge_rows.sort(key=lambda r: (r[0], r[1], r[2]))
    geoms = np.array([r[3] for r in edge_rows], dtype=object)
    geoms = to_crs_coords(geoms, geo) if len(geoms) else geoms
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
    ordered = sorted(node_ids, key=node_ids.__getitem__)
    pts = shapely.points([[graph.nodes[n]["x"], graph.nodes[n]["y"]] for n in ordered]) if ordered else np.array([], dtype=object)
    pts = to_crs_coords(np.asarray(pts, dtype=object), geo) if len(ordered) else pts
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


def write_vector(frame: gpd.GeoDataFrame, path: str | os.PathLike[str], *, fmt: str | VectorFormat = "shp", layer: str | None = None) -> Path:
    """Write a GeoDataFrame atomically (all sidecar files included).

    In its own CRS, unless ``fmt`` (a :class:`VectorFormat`) asks for another one.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The features.
    path : path-like
        Destination file; its extension should be the format's.
    fmt : str or VectorFormat, default "shp"
        Format name of :data:`FORMATS`, or a format with reprojection and precision.
    layer : str, optional
        Layer name (for formats with named layers, such as GeoPackage).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ConfigError
        ``fmt`` is an unknown format name.
    InputMismatchError
        A reprojection is asked for and the frame has no CRS (pixel coordinates).
    OutputWriteError
        The folder cannot be written to, or the written file reads back incomplete.
    """
    spec = vector_format(fmt)
    frame = _reprojected(frame, spec)
    with atomic_path(path) as tmp:
        _write_frame(frame, tmp, spec, layer)
    return Path(path)


def _write_frame(frame: gpd.GeoDataFrame, path: Path, fmt: VectorFormat, layer: str | None, empty_type: str | None = None) -> None:
    """Write one layer; an empty frame is written with the geometry type ``empty_type`` when given (it has none of its own)."""
    driver = FORMATS[fmt.name][1]
    kwargs: dict[str, str] = {"layer": layer} if layer else {}
    kwargs.update(fmt.layer_options())
    if not len(frame) and empty_type:
        kwargs["geometry_type"] = empty_type
    if driver == "GPKG":
        # GeoPackages record the time of writing (gpkg_contents.last_change); a fixed one keeps
        # outputs byte-identical run to run (SOURCE_DATE_EPOCH-style reproducibility).
        import pyogrio

        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_TIMESTAMP})
    from pyogrio.errors import DataLayerError, DataSourceError, FeatureError, FieldError, GeometryError

    with warnings.catch_warnings():
        # Scenes without georeferencing give frames without CRS on purpose (pixel coordinates).
        warnings.filterwarnings("ignore", message="'crs' was not provided")
        try:
            frame.to_file(path, driver=driver, engine="pyogrio", **kwargs)
        except (DataSourceError, DataLayerError, FeatureError, FieldError, GeometryError) as exc:  # GDAL refused: a full disk, a bad field
            raise OutputWriteError(f"{path.name}: cannot write output ({str(exc).splitlines()[0][:200]})") from exc
    _verify_written(frame, path, layer)


def _keeps_schema(path: Path) -> bool:
    """Whether the format of ``path`` records the fields of a layer without features (GeoJSON does not)."""
    return path.suffix.lower() not in (".geojson", ".json")


def _verify_written(frame: gpd.GeoDataFrame, path: Path, layer: str | None) -> None:
    """Read back what was written: GDAL's drivers do not all report failed writes.

    The shapefile driver ignores short writes (a full disk, a file size limit) and leaves a
    ``.dbf`` that reads back without its attribute columns; checking the fields, the feature
    count and the last record turns that into an error instead of a silently wrong output.
    """
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        info = pyogrio.read_info(path, layer=layer)
        fields = set(info["fields"])
        # an empty GeoJSON file keeps no field list: there is nothing of the fields to check
        missing = [c for c in frame.columns if c != frame.geometry.name and c not in fields] if len(frame) or _keeps_schema(path) else []
        if info["features"] != len(frame) or missing:
            raise OutputWriteError(
                f"{path.name}: the written file is incomplete ({info['features']} of {len(frame)} features, missing fields {missing}); is the disk full?"
            )
        if len(frame):
            last = pyogrio.read_dataframe(path, layer=layer, skip_features=len(frame) - 1, max_features=1)
            if len(last) != 1:
                raise OutputWriteError(f"{path.name}: the written file is incomplete (its last feature is unreadable); is the disk full?")
    except (DataSourceError, DataLayerError) as exc:
        raise OutputWriteError(f"{path.name}: the written file cannot be read back ({str(exc).splitlines()[0][:200]}); is the disk full?") from exc


def write_network(
    edges: gpd.GeoDataFrame,
    nodes: gpd.GeoDataFrame | None,
    path: str | os.PathLike[str],
    *,
    fmt: str | VectorFormat = "shp",
) -> list[Path]:
    """Write a network's lines (and optionally its nodes) atomically.

    GeoPackage output holds two layers (``edges``, ``nodes``) in one file; Shapefile and
    GeoJSON output write the nodes beside the lines as ``<stem>_nodes.<ext>``. Both are in
    the frames' CRS unless ``fmt`` (a :class:`VectorFormat`) asks for another one.

    Parameters
    ----------
    edges : geopandas.GeoDataFrame
        The lines (see :func:`network_to_frames`).
    nodes : geopandas.GeoDataFrame or None
        The nodes; None writes the lines only.
    path : path-like
        The main file (the lines, or the GeoPackage).
    fmt : str or VectorFormat, default "shp"
        Format name of :data:`FORMATS`, or a format with reprojection and precision.

    Returns
    -------
    list of pathlib.Path
        The files written (main file first).

    Raises
    ------
    ConfigError
        ``fmt`` is an unknown format name.
    InputMismatchError
        A reprojection is asked for and the frames have no CRS (pixel coordinates).
    OutputWriteError
        The folder cannot be written to, or a written file reads back incomplete.
    """
    return write_layers({NETWORK_LAYER: edges, **({"nodes": nodes} if nodes is not None else {})}, path, fmt=fmt)


def layer_paths(names: list[str], path: str | os.PathLike[str], fmt: str | VectorFormat) -> list[Path]:
    """The files :func:`write_layers` writes ``names`` to (``edges`` is the main file ``path``).

    Parameters
    ----------
    names : list of str
        Layer names.
    path : path-like
        The main file.
    fmt : str or VectorFormat
        Format name of :data:`FORMATS`, or a format.

    Returns
    -------
    list of pathlib.Path
        One file per name; for GeoPackage, ``path`` alone (no file without names).

    Raises
    ------
    ConfigError
        ``fmt`` is an unknown format name.

    Examples
    --------
    >>> [p.name for p in layer_paths(["edges", "nodes", "missing"], "out/a.shp", "shp")]
    ['a.shp', 'a_nodes.shp', 'a_missing.shp']
    >>> [p.name for p in layer_paths(["edges", "nodes", "missing"], "out/a.gpkg", "gpkg")]
    ['a.gpkg']
    """
    spec = vector_format(fmt)
    final = Path(path)
    if spec.name == "gpkg":
        return [final] if names else []
    return [final if name == "edges" else final.with_name(final.stem + f"_{name}" + spec.ext) for name in names]


def write_layers(frames: dict[str, gpd.GeoDataFrame], path: str | os.PathLike[str], *, fmt: str | VectorFormat = "shp") -> list[Path]:
    """Write named layers atomically: as layers of one GeoPackage, or as ``<stem>_<name>.<ext>`` files beside ``path``.

    The layer ``edges`` (a network's lines) is the file ``path`` itself in every format. Frames
    are written in their CRS unless ``fmt`` (a :class:`VectorFormat`) asks for another one.
    Each file appears whole under its name; with several files, the main file comes last.

    Parameters
    ----------
    frames : dict of str to geopandas.GeoDataFrame
        The layers by name. Empty layers named ``nodes`` are written as points, others as
        lines.
    path : path-like
        The main file (the layer ``edges``, or the GeoPackage).
    fmt : str or VectorFormat, default "shp"
        Format name of :data:`FORMATS`, or a format with reprojection and precision.

    Returns
    -------
    list of pathlib.Path
        The files written, in the order of ``frames`` (see :func:`layer_paths`).

    Raises
    ------
    ConfigError
        ``fmt`` is an unknown format name.
    InputMismatchError
        A reprojection is asked for and a frame has no CRS (pixel coordinates).
    OutputWriteError
        The folder cannot be written to, or a written file reads back incomplete.
    """
    spec = vector_format(fmt)
    projected = {name: _reprojected(frame, spec) for name, frame in frames.items()}
    paths = layer_paths(list(projected), path, spec)
    if spec.name == "gpkg":
        if projected:
            with atomic_path(paths[0]) as tmp:
                for name, frame in projected.items():
                    _write_frame(frame, tmp, spec, name, "Point" if name == "nodes" else "LineString")
        return paths
    for (name, frame), target in sorted(zip(projected.items(), paths), key=lambda item: item[0][0] == "edges"):
        with atomic_path(target) as tmp:  # the main file last: its presence means the scene is complete
            _write_frame(frame, tmp, spec, None, "Point" if name == "nodes" else "LineString")
    return paths


def read_lines(path: str | os.PathLike[str], *, layer: str | None = None, layer_option: str | None = None) -> gpd.GeoDataFrame:
    """Read a vector file of lines (any OGR format) into a GeoDataFrame.

    The geometries are not checked here: see :func:`keep_lines`.

    Parameters
    ----------
    path : path-like
        The vector file.
    layer : str, optional
        The layer to read. By default the file's only layer, or the ``edges`` layer (the
        network of geoseg's GeoPackages) of a file with several.
    layer_option : str, optional
        How the caller's user names a layer (``"--network-layer NAME"``), for the message
        that refuses a file of several layers without ``edges``.

    Returns
    -------
    geopandas.GeoDataFrame
        The features, in the file's CRS.

    Raises
    ------
    VectorReadError
        The file is missing or not a readable vector data set.
    InputMismatchError
        ``layer`` is not one of the file's layers, or no layer is given for a file of
        several layers without ``edges``.

    Examples
    --------
    >>> import tempfile, geopandas as gpd
    >>> from shapely.geometry import LineString, Point
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = f"{tmp}/network.gpkg"
    ...     gpd.GeoDataFrame(geometry=[Point(0, 0)], crs=32633).to_file(path, layer="nodes")
    ...     gpd.GeoDataFrame(geometry=[LineString([(0, 0), (5, 0)])], crs=32633).to_file(path, layer="edges")
    ...     read_lines(path).geom_type.tolist()
    ['LineString']
    """
    import geopandas as gpd
    from pyogrio.errors import DataLayerError, DataSourceError

    from geoseg.inputs import is_remote

    p: str | Path = os.fspath(path) if is_remote(path) else Path(path)  # a GDAL virtual path or URL as given
    if isinstance(p, Path) and not p.exists():
        raise VectorReadError(f"{p}: no such file")
    layers = layer_names(p)
    if layer is not None and layers and layer not in layers:
        raise InputMismatchError(f"{p}: no layer {layer!r} (layers: {', '.join(layers)})")
    if layer is None and len(layers) > 1:
        if NETWORK_LAYER not in layers:
            how = f"choose one with {layer_option}" if layer_option else f"give a file of one layer, or geoseg's GeoPackage (lines in layer {NETWORK_LAYER!r})"
            raise InputMismatchError(f"{p}: the file has several layers ({', '.join(layers)}); {how}")
        layer = NETWORK_LAYER
    try:
        return gpd.read_file(p, layer=layer, engine="pyogrio")
    except (DataSourceError, DataLayerError, ValueError) as exc:
        raise VectorReadError(f"{p}: not a readable vector file ({str(exc).splitlines()[0][:200]})") from exc


def to_scene_crs(frame: gpd.GeoDataFrame, geo: GeoInfo, scene: str, source: str, what: str = "the vectors") -> tuple[gpd.GeoDataFrame, str | None]:
    """Vectors of the file ``source`` (named ``what`` in messages) placed in the CRS of the scene ``scene`` (of georeferencing ``geo``).

    Returns the frame (reprojected when its CRS differs from the scene's) and a note saying so,
    for the user (None when nothing was reprojected): vectors are never reprojected silently.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The vectors.
    geo : GeoInfo
        The scene's georeferencing.
    scene : str
        The scene's name, for messages.
    source : str
        The vector file's name, for messages.
    what : str, default "the vectors"
        What the vectors are, for messages (``"the network"``, ``"the map"``).

    Returns
    -------
    frame : geopandas.GeoDataFrame
        The vectors in the scene's CRS (``frame`` itself when nothing was reprojected).
    note : str or None
        What was reprojected from which CRS, or None.

    Raises
    ------
    InputMismatchError
        One side has a CRS and the other has none, so the vectors cannot be placed.
    """
    if not geo.georeferenced:
        if frame.crs is not None:
            raise InputMismatchError(
                f"{source}: {what} is in {frame.crs.to_string()} but {scene} has no georeferencing, so {what} cannot be placed on it; "
                f"use a georeferenced scene (GeoTIFF) or {what} in the image's pixel coordinates (no CRS)"
            )
        return frame, None
    if frame.crs is None:
        raise InputMismatchError(f"{source}: {what} has no CRS but {scene} is georeferenced ({geo.crs}); set its CRS")
    if frame.crs == geo.crs:
        return frame, None
    note = f"{source}: reprojected from {frame.crs.to_string()} to the CRS of {scene} ({geo.crs})"
    return frame.to_crs(geo.crs), note


def crs_name(crs: ProjCRS | None) -> str:
    """A CRS as users know it (``EPSG:32633``, else its name); ``no CRS`` for pixel coordinates.

    Parameters
    ----------
    crs : pyproj.CRS or None
        The CRS; None for pixel coordinates.

    Returns
    -------
    str

    Examples
    --------
    >>> from pyproj import CRS
    >>> crs_name(CRS.from_user_input("EPSG:32633")), crs_name(None)
    ('EPSG:32633', 'no CRS (pixel coordinates)')
    """
    if crs is None:
        return "no CRS (pixel coordinates)"
    authority = crs.to_authority()
    return ":".join(authority) if authority else crs.name


def check_degrees(path: str | os.PathLike[str], lines: np.ndarray, crs: ProjCRS | None) -> None:
    """Refuse lines in a geographic CRS whose coordinates are not longitudes and latitudes.

    GDAL reads every GeoJSON file as EPSG:4326, so lines in pixel or projected coordinates
    written as GeoJSON without a CRS arrive as degrees out of range.
    Longitudes up to 360 (the 0-360 convention) are accepted.

    Parameters
    ----------
    path : path-like
        The file the lines come from, for the message.
    lines : numpy.ndarray
        The shapely geometries.
    crs : pyproj.CRS or None
        Their CRS; nothing is checked when it is None or projected, or without lines.

    Raises
    ------
    InputMismatchError
        Coordinates out of the range of degrees; the message names the file.

    Examples
    --------
    >>> import numpy as np
    >>> from pyproj import CRS
    >>> from shapely.geometry import LineString
    >>> wgs84 = CRS.from_user_input("EPSG:4326")
    >>> check_degrees("roads.geojson", np.array([LineString([(13.4, 52.5), (13.5, 52.6)])]), wgs84)
    >>> pixels = np.array([LineString([(0.5, 0.5), (640.5, 0.5)])])
    >>> check_degrees("roads.geojson", pixels, wgs84)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    geoseg.errors.InputMismatchError: roads.geojson: coordinates x 0.5..640.5, y 0.5..0.5 are not ...
    """
    import shapely

    if crs is None or not crs.is_geographic or not len(lines):
        return
    x0, y0, x1, y1 = shapely.total_bounds(lines)
    if x0 < -180 or x1 > 360 or y0 < -90 or y1 > 90:
        raise InputMismatchError(
            f"{path}: coordinates x {x0:g}..{x1:g}, y {y0:g}..{y1:g} are not longitudes and latitudes of {crs_name(crs)}; "
            "a GeoJSON file is always read as EPSG:4326: write projected coordinates as .gpkg or .shp with their CRS, "
            "and lines in pixel coordinates as .shp or .gpkg without a CRS"
        )


def keep_lines(frame: gpd.GeoDataFrame, path: str | os.PathLike[str], what: str, *, allow_empty: bool = False) -> gpd.GeoDataFrame:
    """The features of ``frame`` (read from ``path``) that are lines.

    Features without geometry and of other types (points, polygons) are left out.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The features read.
    path : path-like
        The file they were read from, for the message.
    what : str
        What the file should hold, for the message (``"a road map"``).
    allow_empty : bool, default False
        Accept a file without any feature (an empty frame is returned).

    Returns
    -------
    geopandas.GeoDataFrame
        The LineString and MultiLineString features, with their original index.

    Raises
    ------
    InputMismatchError
        The file has features but no line (or no feature at all, unless ``allow_empty``); the
        message names the file, what it should hold (``what``: "a road map") and what it holds.
    """
    lines = frame[frame.geometry.notna() & frame.geometry.geom_type.isin(["LineString", "MultiLineString"])]
    if lines.empty and (len(frame) or not allow_empty):
        kinds = ", ".join(sorted(set(frame.geometry.geom_type.dropna()))) or "no geometry"
        raise InputMismatchError(f"{path}: {what} needs lines (road centerlines), this file has {kinds}")
    return lines


def layer_names(path: str | os.PathLike[str]) -> list[str]:
    """The layers of a vector file (empty when it cannot be listed: reading it then says why).

    Parameters
    ----------
    path : path-like
        The vector file.

    Returns
    -------
    list of str
        The layer names, in the file's order.
    """
    import pyogrio
    from pyogrio.errors import DataLayerError, DataSourceError

    try:
        return [str(name) for name, _ in pyogrio.list_layers(path)]
    except (DataSourceError, DataLayerError):
        return []
