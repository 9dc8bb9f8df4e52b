"""Map updating from files: an extracted network (vector file) compared with a road map (vector file).

The file-reading side of ``geoseg compare`` (the comparison itself is
:meth:`geoseg.steps.compare.CompareNetwork.compare`, the same one a pipeline's
``compare_network`` step runs). The two files may be in different CRSs: the map is
reprojected to the network's (and the result says so). The roads compared are those inside a
footprint: the valid-data area of ``image`` (the scene the network comes from), polygons given
as ``footprint``, or else the bounding box of the network.

Examples
--------
>>> summary = compare_files("out/scene_a.shp", "osm_roads.gpkg", "changes/", image="scene_a.tif")  # doctest: +SKIP
>>> summary.totals["missing"]["length_m"]  # doctest: +SKIP
58.3
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
import shapely.geometry
from affine import Affine
from pydantic import ValidationError

from geoseg.atomic import remove_outputs
from geoseg.errors import ConfigError, InputMismatchError, NotGeoreferencedWarning, OutputWriteError
from geoseg.pipeline.engine import read_aoi
from geoseg.raster import DEFAULT_ASSUMED_GSD_M, GeoInfo, ground_sample_distance, not_georeferenced_message, read_geoinfo
from geoseg.road.network import graph_to_lines
from geoseg.steps.compare import CHANGE_LAYERS, CompareNetwork, map_in_scene
from geoseg.vector import check_degrees, crs_name, keep_lines, layer_paths, read_lines, to_scene_crs, vector_format, write_layers

__all__ = ["ComparisonSummary", "compare_files", "change_totals"]

log = logging.getLogger("geoseg.compare")

#: Longest side (pixels) at which an image's valid-data mask is read to outline its footprint.
FOOTPRINT_READ_PX = 2048


@dataclass
class ComparisonSummary:
    """What ``geoseg compare`` wrote and found.

    Attributes
    ----------
    outputs : list of Path
        The files written.
    totals : dict
        Per layer: ``count`` and ``length_m``; for ``matched`` also ``offset_m`` (length-weighted
        mean offset); for ``links`` the counts ``new_link`` and ``broken_link``.
    tolerance_m : float
        The matching tolerance used.
    notes : list of str
        What the user should know (reprojections, the footprint used).
    """

    outputs: list[Path]
    totals: dict[str, dict[str, float]]
    tolerance_m: float
    notes: list[str] = field(default_factory=list)


def change_totals(layers: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Counts and lengths of the change layers (GeoDataFrames as ``compare_network`` gives them).

    Parameters
    ----------
    layers : dict
        Layers by name; those of :data:`~geoseg.steps.compare.CHANGE_LAYERS` are counted, the
        others ignored. Each has a ``length_m`` column; ``matched`` also ``offset_m``, ``links``
        also ``kind``.

    Returns
    -------
    dict of str to dict
        Per change layer present: ``count`` and ``length_m`` (total, metres); for ``matched``
        also ``offset_m`` (length-weighted mean offset, NaN without length); for ``links`` the
        counts ``new_link`` and ``broken_link``.

    Examples
    --------
    >>> import pandas as pd
    >>> layers = {
    ...     "new": pd.DataFrame({"length_m": [10.0, 5.5]}),
    ...     "matched": pd.DataFrame({"length_m": [30.0, 10.0], "offset_m": [1.0, 3.0]}),
    ...     "links": pd.DataFrame({"length_m": [4.0, 6.0], "kind": ["new_link", "broken_link"]}),
    ... }
    >>> totals = change_totals(layers)
    >>> totals["new"], totals["matched"]
    ({'count': 2, 'length_m': 15.5}, {'count': 2, 'length_m': 40.0, 'offset_m': 1.5})
    >>> totals["links"]
    {'count': 2, 'length_m': 10.0, 'new_link': 1, 'broken_link': 1}
    """
    totals: dict[str, dict[str, float]] = {}
    for name in CHANGE_LAYERS:
        frame = layers.get(name)
        if frame is None:
            continue
        entry = {"count": int(len(frame)), "length_m": round(float(frame["length_m"].sum()), 3) if len(frame) else 0.0}
        if name == "matched":
            weights = frame["length_m"].to_numpy(float) if len(frame) else np.zeros(0)
            entry["offset_m"] = round(float(np.average(frame["offset_m"], weights=weights)), 3) if weights.sum() > 0 else math.nan
        if name == "links":
            kinds = frame["kind"].tolist() if len(frame) else []
            entry.update(new_link=kinds.count("new_link"), broken_link=kinds.count("broken_link"))
        totals[name] = entry
    return totals


def compare_files(
    network: str | os.PathLike[str],
    road_map: str | os.PathLike[str],
    outdir: str | os.PathLike[str],
    *,
    image: str | os.PathLike[str] | None = None,
    footprint: str | os.PathLike[str] | None = None,
    network_layer: str | None = None,
    map_layer: str | None = None,
    fmt: str = "shp",
    road_width_m: float = 7.0,
    assume_gsd_m: float | None = None,
    **settings: Any,
) -> ComparisonSummary:
    """Compare the network file with the road map file and write the change layers into ``outdir``.

    Parameters
    ----------
    network, road_map : str or path-like
        Vector files of lines (any OGR format).
    outdir : str or path-like
        Folder of the outputs: ``<stem>_new``, ``_missing``, ``_matched``, ``_links`` (Shapefile or
        GeoJSON), or one ``<stem>_changes.gpkg`` with those layers; ``<stem>`` is the network's.
    image : str or path-like, optional
        The scene the network was extracted from: its valid-data area is the footprint, and
        the network must be in its CRS (or is reprojected to it, said in the notes).
    footprint : str or path-like, optional
        Polygons (any vector format and CRS) within which the roads are compared.
    network_layer, map_layer : str, optional
        Layers of the two files (default: their first).
    fmt : str, default "shp"
        ``shp``, ``gpkg`` or ``geojson``.
    road_width_m : float, default 7.0
        The typical road width: the tolerance is ``tolerance_factor`` times it unless
        ``tolerance_m`` is given.
    assume_gsd_m : float, optional
        The GSD of an ``image`` without georeferencing (default 0.3 m, said in the notes).
    **settings
        Fields of :class:`~geoseg.steps.compare.CompareNetwork` (``tolerance_m``,
        ``max_angle_deg``, ``min_length_m``, ``link_radius_m``, ...).

    Returns
    -------
    ComparisonSummary
        The files written, the totals of each change layer (:func:`change_totals`), the
        tolerance used and the notes.

    Raises
    ------
    VectorReadError, InputMismatchError, ConfigError
        A file that cannot be read, holds no lines, or cannot be placed in the other's CRS; a
        footprint or image the network does not lie in; a setting out of range or an
        unknown format.
    RasterReadError
        ``image`` cannot be read.
    OutputWriteError
        The outputs cannot be written (none of them is left).
    """
    try:
        step = CompareNetwork(map=str(road_map), map_layer=map_layer, road_width_m=road_width_m, **settings)
    except ValidationError as exc:
        raise ConfigError("; ".join(f"{e['loc'][0] if e['loc'] else 'settings'}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors())) from None
    spec = vector_format(fmt)
    out = Path(outdir)
    target = out / (f"{Path(str(network)).stem}_changes{spec.ext}" if spec.name == "gpkg" else f"{Path(str(network)).stem}{spec.ext}")
    names = list(CHANGE_LAYERS)
    _check_outputs(out, layer_paths(names, target, spec))
    notes: list[str] = []
    lines = _lines(network, network_layer)
    if image is None and lines.empty:
        raise InputMismatchError(f"{network}: the network has no lines; give --image (the scene it comes from) to report the map's roads in it as missing")
    if image is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # said in the notes, with the option that sets it
            geo, _ = read_geoinfo(image, assume_gsd_m=DEFAULT_ASSUMED_GSD_M if assume_gsd_m is None else assume_gsd_m)
        if not geo.georeferenced:
            how = "--gsd-m" if assume_gsd_m is None else ""
            notes.append(not_georeferenced_message(str(image), geo.gsd_m, how, pixel_outputs=False))
        lines, note = to_scene_crs(lines, geo, str(image), str(network), "the network")
        notes += [note] if note else []
        area = _image_footprint(image, geo)
        place = str(image)
    else:
        geo = _grid_around(lines, str(network))
        area = None
        place = f"the extent of {network}"
    if footprint is not None:
        outline, crs = read_aoi(footprint)
        polygons, note = to_scene_crs(gpd.GeoDataFrame(geometry=[outline], crs=crs), geo, place, str(footprint), "the footprint")
        notes += [note] if note else []
        drawn = geo.to_pixels(polygons.geometry.iloc[0])
        area = drawn if area is None else shapely.intersection(area, drawn)
        if area.is_empty:
            raise InputMismatchError(f"{footprint}: the footprint does not overlap {place}")
    elif image is None:
        notes.append(f"{network}: no --image or --footprint given: map roads are compared within the network's bounding box")
    graph = _network_graph(lines, geo)
    if area is not None and graph.number_of_edges() and not shapely.intersects(shapely.MultiLineString(graph_to_lines(graph)), area):
        raise InputMismatchError(f"{network}: no line of the network lies in {'the footprint' if footprint is not None else place}")
    roads = map_in_scene(str(road_map), map_layer, geo)
    if roads.reprojected:
        notes.append(f"{road_map}: reprojected from {roads.crs} to the CRS of {place} ({crs_name(lines.crs)})")
    tolerance_m = step.tolerance_factor * road_width_m if step.tolerance_m is None else step.tolerance_m
    layers, found = step.compare(graph, roads, geo, tolerance_m, area=area, scene=place)
    notes += found
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    try:
        written = write_layers({name: layers[name] for name in names}, target, fmt=spec)
    except BaseException:
        with contextlib.suppress(OSError):  # the failure that stopped the writing is the one to report
            remove_outputs(layer_paths(names, target, spec))  # the four files are one result: leave none of them
        raise
    for text in notes:
        log.warning("note: %s", text)
    return ComparisonSummary(written, change_totals(layers), round(tolerance_m, 3), notes)


def _check_outputs(out: Path, paths: list[Path]) -> None:
    """Refuse, before the comparison, an output folder that cannot be one and a folder in the way of an output file."""
    above = next((p for p in (out, *out.parents) if p.exists()), None)
    if above is not None and not above.is_dir():
        raise OutputWriteError(f"-o {out}: cannot create the output folder ({above} is a file, not a folder)")
    for path in paths:
        if path.is_dir():
            raise OutputWriteError(f"{path}: a folder is in the way of this output; move it or choose another -o")


def _lines(path: str | os.PathLike[str], layer: str | None) -> Any:
    """The network file's lines (the ``edges`` layer of a GeoPackage that has one, unless ``layer`` says otherwise); no lines is an empty network."""
    lines = keep_lines(read_lines(path, layer=layer, layer_option="--network-layer NAME"), path, "a road network", allow_empty=True)
    check_degrees(path, lines.geometry.to_numpy(), lines.crs)
    return lines


def _grid_around(lines: Any, source: str) -> GeoInfo:
    """A pixel grid (about 1 m) over the network's bounding box, in its CRS, to compare in."""
    from rasterio.crs import CRS

    minx, miny, maxx, maxy = (float(v) for v in lines.total_bounds)
    if lines.crs is None:
        raise InputMismatchError(f"{source}: the network has no CRS; give --image (the scene it comes from) to place it")
    crs = CRS.from_wkt(lines.crs.to_wkt())
    if lines.crs.is_geographic:  # about 1.1 m, square on the ground at the network's latitude
        size_y = 1e-5
        size_x = size_y / max(math.cos(math.radians((miny + maxy) / 2)), 1e-3)
    else:
        size_x = size_y = 1.0 / (lines.crs.axis_info[0].unit_conversion_factor or 1.0)
    width, height = max(1, math.ceil((maxx - minx) / size_x)), max(1, math.ceil((maxy - miny) / size_y))
    transform = Affine(size_x, 0.0, minx, 0.0, -size_y, maxy)
    return GeoInfo(width, height, crs, transform, ground_sample_distance(crs, transform, width, height), True)


def _image_footprint(image: str | os.PathLike[str], geo: GeoInfo) -> shapely.Geometry:
    """The image's valid-data area in its pixel space, outlined on its mask read at most :data:`FOOTPRINT_READ_PX` wide."""
    from rasterio.features import shapes

    from geoseg.raster import open_dataset

    factor = max(1, math.ceil(max(geo.width, geo.height) / FOOTPRINT_READ_PX))
    with open_dataset(image) as ds:
        mask = ds.dataset_mask(out_shape=(math.ceil(geo.height / factor), math.ceil(geo.width / factor)))
    if mask.all():
        return shapely.box(0, 0, geo.width, geo.height)
    polygons = [shapely.geometry.shape(g) for g, v in shapes((mask > 0).astype(np.uint8), mask=mask > 0) if v]
    scale_x, scale_y = geo.width / mask.shape[1], geo.height / mask.shape[0]
    outline = shapely.union_all(polygons) if polygons else shapely.Polygon()
    return shapely.transform(outline, lambda xy: xy * (scale_x, scale_y))


def _network_graph(lines: Any, geo: GeoInfo) -> Any:
    """The network's lines in pixel space as a graph (noded where they share vertices or cross), each edge with its line's ``confidence``."""
    from geoseg.road.map_changes import line_parts
    from geoseg.road.network import lines_to_graph

    parts, index = line_parts(lines.geometry.to_numpy())
    inverse = ~geo.transform
    pixels = shapely.transform(parts, lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1])))
    graph = lines_to_graph(list(pixels))
    if "confidence" not in lines.columns or not graph.number_of_edges():
        return graph
    confidence = lines["confidence"].to_numpy(float)[index]
    tree = shapely.STRtree(pixels)
    for _, _, data in graph.edges(data=True):
        nearest = tree.nearest(data["geometry"].interpolate(0.5, normalized=True))
        data["confidence"] = float(confidence[nearest])
    return graph
