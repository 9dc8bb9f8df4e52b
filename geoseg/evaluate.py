"""Scoring an extracted road network against a reference, from files.

Either side may be a vector file of lines (any OGR format) or a centerline raster (non-zero =
centerline). Two rasters on the same grid are compared pixel by pixel with a slack in pixels;
otherwise both sides become lines, measured in metres: georeferenced data in a local UTM
zone (for measuring only; nothing is written), non-georeferenced data in pixels times the
GSD. APLS is computed on graphs built from the lines.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS as ProjCRS

from geoseg.errors import InputMismatchError, NotGeoreferencedWarning
from geoseg.metrics import apls, raster_buffer_scores, vector_buffer_scores
from geoseg.raster import GeoInfo, Raster, read_raster
from geoseg.road.network import graph_to_lines, lines_to_graph, skeleton_to_graph
from geoseg.vector import read_lines

__all__ = ["Evaluation", "evaluate_files", "VECTOR_SUFFIXES"]

VECTOR_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json", ".fgb", ".gml", ".kml")


@dataclass
class Evaluation:
    """Scores of a prediction against a reference."""

    completeness: float
    correctness: float
    quality: float
    apls: float
    tolerance: float
    tolerance_unit: str
    mode: str
    pred_length_m: float
    truth_length_m: float

    def to_dict(self) -> dict[str, float | str]:
        """JSON-ready form."""
        return dict(self.__dict__)


@dataclass
class _Side:
    path: str
    lines: np.ndarray  # shapely geometries in the side's CRS (pixel space for rasters without CRS)
    crs: ProjCRS | None
    raster: Raster | None = None


def _load(path: str | os.PathLike[str], assume_gsd_m: float) -> _Side:
    p = Path(path)
    if p.suffix.lower() in VECTOR_SUFFIXES:
        frame = read_lines(p)
        geoms = shapely.force_2d(frame.geometry.explode(index_parts=False).to_numpy()) if len(frame) else np.array([], dtype=object)
        kinds = set(shapely.get_type_id(geoms).tolist()) if len(geoms) else set()
        if kinds - {1}:
            raise InputMismatchError(f"{p}: expected lines, found geometry types {sorted(kinds)} (1 = LineString)")
        return _Side(str(p), geoms, ProjCRS.from_user_input(frame.crs) if frame.crs else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        raster = read_raster(p, bands=[1], assume_gsd_m=assume_gsd_m)
    thin = (raster.array[0] > 0) & raster.valid
    graph = skeleton_to_graph(thin)
    lines = np.array(graph_to_lines(graph), dtype=object)
    t = raster.geo.transform
    if raster.geo.georeferenced and len(lines):
        lines = shapely.transform(lines, lambda xy: xy @ np.array([[t.a, t.d], [t.b, t.e]]) + np.array([t.c, t.f]))
    crs = ProjCRS.from_user_input(raster.geo.crs.to_wkt()) if raster.geo.georeferenced else None
    return _Side(str(p), lines, crs, raster)


def _same_grid(a: GeoInfo, b: GeoInfo) -> bool:
    return a.height_width == b.height_width and a.transform.almost_equals(b.transform)


def _to_metres(pred: _Side, truth: _Side, gsd_m: float) -> tuple[np.ndarray, np.ndarray]:
    if (pred.crs is None) != (truth.crs is None):
        georef = pred.path if pred.crs is not None else truth.path
        raise InputMismatchError(f"{georef} is georeferenced but the other input is not; they cannot be compared")
    if truth.crs is None:
        return (shapely.transform(pred.lines, lambda xy: xy * gsd_m), shapely.transform(truth.lines, lambda xy: xy * gsd_m))
    both = [*truth.lines, *pred.lines]
    if not both:
        return pred.lines, truth.lines
    truth_frame = gpd.GeoSeries(list(truth.lines), crs=truth.crs)
    pred_frame = gpd.GeoSeries(list(pred.lines), crs=pred.crs).to_crs(truth.crs)
    utm = gpd.GeoSeries(both, crs=truth.crs if truth.lines.size else pred.crs).estimate_utm_crs()
    return pred_frame.to_crs(utm).to_numpy(), truth_frame.to_crs(utm).to_numpy()


def evaluate_files(
    pred: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    *,
    buffer_m: float | None = None,
    slack_px: float | None = None,
    assume_gsd_m: float = 0.3,
    apls_snap_m: float = 4.0,
) -> Evaluation:
    """Completeness, correctness, quality (Wiedemann) and APLS of ``pred`` against ``truth``.

    Parameters
    ----------
    pred, truth : path
        Vector files of lines or centerline rasters.
    buffer_m : float, optional
        Buffer half-width in metres (default 2 m, or ``slack_px`` pixels for two rasters).
    slack_px : float, optional
        Pixel slack; only for two rasters on the same grid (default 3 px there).
    assume_gsd_m : float
        GSD for data without georeferencing.
    apls_snap_m : float
        APLS maximum snapping distance in metres.
    """
    p, t = _load(pred, assume_gsd_m), _load(truth, assume_gsd_m)
    gsd = assume_gsd_m
    if t.raster is not None:
        gsd = t.raster.geo.gsd_m
    elif p.raster is not None:
        gsd = p.raster.geo.gsd_m
    pm, tm = _to_metres(p, t, gsd)
    if p.raster is not None and t.raster is not None and _same_grid(p.raster.geo, t.raster.geo) and buffer_m is None:
        slack = 3.0 if slack_px is None else slack_px
        scores = raster_buffer_scores(p.raster.array[0] > 0, t.raster.array[0] > 0, slack)
        tolerance, unit, mode = slack, "px", "raster"
    else:
        if slack_px is not None and buffer_m is None:
            raise InputMismatchError(f"--slack-px needs two centerline rasters on the same grid ({p.path}, {t.path}); use --buffer-m")
        tolerance = 2.0 if buffer_m is None else buffer_m
        scores = vector_buffer_scores(pm, tm, tolerance)
        unit, mode = "m", "vector"
    result = apls(lines_to_graph(tm, snap_tol=0.5), lines_to_graph(pm, snap_tol=0.5), max_snap_dist_m=apls_snap_m)
    return Evaluation(
        completeness=float(scores.completeness),
        correctness=float(scores.correctness),
        quality=float(scores.quality),
        apls=float(result.apls),
        tolerance=float(tolerance),
        tolerance_unit=unit,
        mode=mode,
        pred_length_m=float(np.sum(shapely.length(pm))) if len(pm) else 0.0,
        truth_length_m=float(np.sum(shapely.length(tm))) if len(tm) else 0.0,
    )

