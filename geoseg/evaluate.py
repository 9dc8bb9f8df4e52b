"""Scoring an extracted road network against a reference, from files.

Either side may be a vector file of lines (any OGR format) or a centerline raster (non-zero =
centerline). Two rasters on the same grid are compared pixel by pixel with a slack in pixels;
otherwise both sides become lines, measured in metres: georeferenced data in a local UTM
zone (for measuring only; nothing is written), non-georeferenced data in pixels times the
GSD. A reference in another CRS than the prediction is reprojected to the prediction's CRS
(as QGIS does on the fly; the result says so), and two inputs whose extents do not overlap
are refused. APLS, TOPO, junction and connected-component scores are computed on graphs built
from the lines the way the SpaceNet APLS reference builds them
(:func:`geoseg.metrics.graph_from_lines`, ``docs/METRICS.md``). Either side may also be a
SpaceNet submission CSV (``ImageId,WKT_Pix``, pixel coordinates), georeferenced by the image
it refers to.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS as ProjCRS

from geoseg.errors import ConfigError, InputMismatchError, NotGeoreferencedWarning
from geoseg.metrics import AplsResult, GraphMetrics, apls, graph_from_lines, graph_metrics, raster_buffer_scores, vector_buffer_scores
from geoseg.metrics.line_graph import MIN_COMPONENT_M
from geoseg.raster import DEFAULT_ASSUMED_GSD_M, GeoInfo, Raster, read_geoinfo, read_raster
from geoseg.road.network import graph_to_lines, skeleton_to_graph
from geoseg.scene_checks import ValueSummary
from geoseg.spacenet_csv import image_id_for, read_wkt_pix
from geoseg.vector import check_degrees, crs_name, read_lines, to_crs_coords

__all__ = ["Evaluation", "evaluate_files", "VECTOR_SUFFIXES"]

VECTOR_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json", ".fgb", ".gml", ".kml")
#: SpaceNet proposals in CSV form lose their parts under 10 px (the reference's rule); other
#: inputs lose parts under :data:`geoseg.metrics.line_graph.MIN_COMPONENT_M`.
MIN_COMPONENT_PX = 10.0


@dataclass
class Evaluation:
    """Scores of a prediction against a reference, and how they were measured.

    ``crs`` is the CRS the two were compared in (the prediction's; None for pixel
    coordinates); ``reference_reprojected_from`` the reference's own CRS when it was
    reprojected to ``crs``; ``pixel_gsd_m`` the metres per pixel of inputs in pixel
    coordinates (None for georeferenced ones), ``gsd_assumed`` True when that is the default
    rather than a value given.

    ``apls_scores`` is APLS with its two halves and the control points and routes behind each
    (:class:`geoseg.metrics.AplsResult`); ``graph`` the TOPO, junction and connected-component
    scores (:class:`geoseg.metrics.GraphMetrics`,
    ``docs/METRICS.md``), NaN where undefined.
    """

    completeness: float
    correctness: float
    quality: float
    tolerance: float
    tolerance_unit: str
    mode: str
    pred_length_m: float
    truth_length_m: float
    apls_scores: AplsResult
    graph: GraphMetrics
    crs: str | None = None
    reference_reprojected_from: str | None = None
    pixel_gsd_m: float | None = None
    gsd_assumed: bool = False

    @property
    def apls(self) -> float:
        """APLS, the harmonic mean of its two halves."""
        return self.apls_scores.apls

    def to_dict(self) -> dict[str, float | int | str | bool | None]:
        """JSON-ready, flat form: ``apls_*`` for the APLS details, ``pred_*`` for the prediction's
        graph counts; NaN scores become None (``null``; NaN is not JSON)."""
        flat: dict[str, float | int | str | bool | None] = {k: v for k, v in self.__dict__.items() if k not in ("apls_scores", "graph")}
        flat.update({k if k.startswith("apls") else f"apls_{k}": v for k, v in self.apls_scores.to_dict().items()})
        flat.update({k.replace("proposal_", "pred_"): v for k, v in self.graph.to_dict().items()})
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in flat.items()}


@dataclass
class _Side:
    path: str
    lines: np.ndarray  # shapely geometries in the side's CRS (pixel space for rasters without CRS)
    crs: ProjCRS | None
    raster: Raster | None = None
    min_component_m: float = MIN_COMPONENT_M


def _load(path: str | os.PathLike[str], assume_gsd_m: float, image: str | os.PathLike[str] | None = None, image_id: str | None = None) -> _Side:
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return _load_wkt_pix(p, image, image_id)
    if p.suffix.lower() in VECTOR_SUFFIXES:
        frame = read_lines(p)
        geoms = shapely.force_2d(frame.geometry.explode(index_parts=False).to_numpy()) if len(frame) else np.array([], dtype=object)
        kinds = set(shapely.get_type_id(geoms).tolist()) if len(geoms) else set()
        if kinds - {1}:
            found = sorted({g.geom_type for g in geoms if g.geom_type != "LineString"})
            raise InputMismatchError(f"{p}: expected lines (road centerlines), found {', '.join(found)}")
        crs = ProjCRS.from_user_input(frame.crs) if frame.crs else None
        check_degrees(p, geoms, crs)
        return _Side(str(p), geoms, crs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        raster = read_raster(p, assume_gsd_m=assume_gsd_m)  # every band: a centerline raster has one, and an image given as one says so
    thin = (raster.array[0] > 0) & raster.valid
    _check_centerline_raster(p, raster, thin)
    graph = skeleton_to_graph(thin)
    lines = np.array(graph_to_lines(graph), dtype=object)
    if raster.geo.georeferenced and len(lines):
        lines = to_crs_coords(lines, raster.geo)
    crs = ProjCRS.from_user_input(raster.geo.crs.to_wkt()) if raster.geo.georeferenced and raster.geo.crs is not None else None
    return _Side(str(p), lines, crs, raster)


#: Share of a raster's line pixels with line pixels on all four sides above which it is no centerline raster (lines one or two pixels wide have none).
_THICK_SHARE = 0.3


def _check_centerline_raster(path: Path, raster: Raster, lines: np.ndarray) -> None:
    """Refuse an image or a road mask given where a centerline raster (lines one or two pixels wide) is expected."""
    summary = ValueSummary.of(raster.array[:1], raster.valid, str(path), raster.array.shape[0])
    if not summary.looks_like_mask():
        raise InputMismatchError(f"{path}: {summary.describe()}: this looks like an image, not a centerline raster (one band, lines 1-2 pixels wide)")
    inside = lines[1:-1, 1:-1] & lines[:-2, 1:-1] & lines[2:, 1:-1] & lines[1:-1, :-2] & lines[1:-1, 2:]
    count = int(lines.sum())
    if count and inside.sum() > _THICK_SHARE * count:
        raise InputMismatchError(
            f"{path}: its roads are areas, not lines one or two pixels wide: this looks like a road mask, not a centerline raster; "
            "trace its centerlines first (geoseg run mask_to_centerlines) and compare those"
        )


def _load_wkt_pix(path: Path, image: str | os.PathLike[str] | None, image_id: str | None) -> _Side:
    """A SpaceNet submission CSV's lines for one image, in the image's CRS.

    Parts shorter than 10 pixels are dropped here, in pixels, as the reference does.
    """
    if image is None:
        raise InputMismatchError(f"{path}: a SpaceNet CSV holds pixel coordinates; give the image they refer to with --image")
    geo, _ = read_geoinfo(image)
    if not geo.georeferenced or geo.crs is None:
        raise InputMismatchError(f"{image}: not georeferenced, so it cannot place the pixel coordinates of {path}")
    image_id, pixel_lines = read_wkt_pix(path, image_id, default_id=image_id_for(image))
    pixel_graph = graph_from_lines(pixel_lines, min_component_m=MIN_COMPONENT_PX)
    lines = to_crs_coords(np.array([g for _, _, g in pixel_graph.edges(data="geometry")], dtype=object), geo)
    return _Side(f"{path} [{image_id}]", lines, ProjCRS.from_user_input(geo.crs.to_wkt()), min_component_m=0.0)


def _no_data_area(side: _Side, crs: ProjCRS | None) -> shapely.Geometry | None:
    """The pixels of a raster side without data, as one area in ``crs`` (None: a vector side, or every pixel valid)."""
    if side.raster is None or side.raster.valid.all():
        return None
    from affine import Affine
    from rasterio.features import shapes

    geo = side.raster.geo
    transform = geo.transform if geo.georeferenced else Affine.identity()  # the side's lines are in pixels without georeferencing
    invalid = ~side.raster.valid
    area = shapely.union_all([shapely.geometry.shape(g) for g, _ in shapes(invalid.astype(np.uint8), mask=invalid, transform=transform)])
    if side.crs is None or crs is None or side.crs == crs:
        return area
    return gpd.GeoSeries([area], crs=side.crs).to_crs(crs).iloc[0]


def _outside(lines: np.ndarray, area: shapely.Geometry | None) -> np.ndarray:
    """The parts of ``lines`` outside ``area``."""
    if area is None or not len(lines):
        return lines
    parts = shapely.get_parts(shapely.difference(lines, area))
    return parts[~shapely.is_empty(parts)]


def _same_grid(a: GeoInfo, b: GeoInfo) -> bool:
    return a.height_width == b.height_width and a.transform.almost_equals(b.transform)


def _reference_in_prediction_crs(pred: _Side, truth: _Side) -> tuple[np.ndarray, str | None]:
    """The reference's lines in the prediction's CRS, and the CRS they were reprojected from (None if not)."""
    if (pred.crs is None) != (truth.crs is None):
        bare, georef = (truth, pred) if pred.crs is not None else (pred, truth)
        raise InputMismatchError(
            f"{bare.path}: has no CRS (pixel coordinates, or a file without its .prj), while {georef.path} has one; they cannot be compared"
        )
    if truth.crs is None or truth.crs == pred.crs or not len(truth.lines):
        return truth.lines, None
    moved = gpd.GeoSeries(list(truth.lines), crs=truth.crs).to_crs(pred.crs).to_numpy()
    return moved, crs_name(truth.crs)


def _place(lines: np.ndarray, crs: ProjCRS | None) -> str:
    """Where lines lie, for a message: ``near 15.443E 47.752N`` (nothing for pixel coordinates)."""
    x0, y0, x1, y1 = shapely.total_bounds(lines)
    if crs is None or not np.isfinite([x0, y0, x1, y1]).all():
        return ""
    lon, lat = gpd.GeoSeries([shapely.Point((x0 + x1) / 2, (y0 + y1) / 2)], crs=crs).to_crs(crs.geodetic_crs).iloc[0].coords[0]
    return f" near {abs(lon):.3f}{'E' if lon >= 0 else 'W'} {abs(lat):.3f}{'N' if lat >= 0 else 'S'}"


def _check_overlap(pred: _Side, truth: _Side, truth_lines: np.ndarray) -> None:
    """Refuse inputs whose extents (bounding boxes, in the prediction's CRS) share no point.

    The boxes are grown by a tenth of the largest side of either first, so that a straight
    road along an axis and its reference a metre beside it (boxes of zero height, apart) are
    compared, while another scene or a wrong CRS is still refused.
    """
    if not len(pred.lines) or not len(truth_lines):
        return
    px0, py0, px1, py1 = shapely.total_bounds(pred.lines)
    tx0, ty0, tx1, ty1 = shapely.total_bounds(truth_lines)  # non-finite where the reprojection failed
    pad = 0.1 * max(px1 - px0, py1 - py0, tx1 - tx0, ty1 - ty0)
    if px0 - pad <= tx1 and tx0 - pad <= px1 and py0 - pad <= ty1 and ty0 - pad <= py1:
        return
    raise InputMismatchError(
        f"{pred.path} ({crs_name(pred.crs)}{_place(pred.lines, pred.crs)}) and {truth.path} ({crs_name(truth.crs)}"
        f"{_place(truth.lines, truth.crs)}) do not overlap, so they cannot be compared; give the reference of the same scene"
    )


def _to_metres(pred: _Side, truth_lines: np.ndarray, gsd_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Both sides' lines in metres: pixels times ``gsd_m``, or a local UTM zone of the prediction's CRS."""
    if pred.crs is None:
        return (shapely.transform(pred.lines, lambda xy: xy * gsd_m), shapely.transform(truth_lines, lambda xy: xy * gsd_m))
    both = gpd.GeoSeries([*truth_lines, *pred.lines], crs=pred.crs)
    if both.empty:
        return pred.lines, truth_lines
    try:
        utm = both.estimate_utm_crs()
    except RuntimeError as exc:
        raise InputMismatchError(
            f"{pred.path}: cannot choose a UTM zone to measure lengths in ({exc}); reproject the inputs to a projected CRS in metres"
        ) from None
    metres = both.to_crs(utm).to_numpy()
    return metres[len(truth_lines) :], metres[: len(truth_lines)]


def evaluate_files(
    pred: str | os.PathLike[str],
    truth: str | os.PathLike[str],
    *,
    buffer_m: float | None = None,
    slack_px: float | None = None,
    assume_gsd_m: float | None = None,
    apls_snap_m: float = 4.0,
    junction_radius_m: float = 10.0,
    join_ends_m: float = 0.0,
    image: str | os.PathLike[str] | None = None,
    image_id: str | None = None,
) -> Evaluation:
    """Completeness, correctness, quality (Wiedemann), APLS and graph scores of ``pred`` against ``truth``.

    Parameters
    ----------
    pred, truth : str or path-like
        Vector files of lines, centerline rasters, or (either one) a SpaceNet submission CSV.
    buffer_m : float, optional
        Buffer half-width in metres (default 2 m, or ``slack_px`` pixels for two rasters).
    slack_px : float, optional
        Pixel slack; only for two rasters on the same grid (default 3 px there).
    assume_gsd_m : float, optional
        GSD for data without georeferencing (default 0.3 m, flagged as assumed in the result).
    apls_snap_m : float, default 4.0
        APLS maximum snapping distance in metres.
    junction_radius_m : float, default 10.0
        Largest distance in metres between a reference junction and the predicted one it
        matches (the default of :func:`geoseg.metrics.graph_metrics`).
    join_ends_m : float, default 0.0
        Join a line's end to another line passing within this distance (metres) when building
        the graphs; 0 (the default, as the SpaceNet reference) joins lines only where they
        share a vertex.
    image : str or path-like, optional
        The image a SpaceNet CSV's pixel coordinates refer to (its georeferencing).
    image_id : str, optional
        The CSV's ``ImageId`` to read (default: the only one, else the image's file name
        without a SpaceNet prefix such as ``RGB-PanSharpen_``).

    Returns
    -------
    Evaluation
        The scores, the tolerance and mode used (``"raster"`` for two rasters on one grid
        without ``buffer_m``, else ``"vector"``), both lengths, and the CRS compared in.

    Raises
    ------
    InputMismatchError
        One input is georeferenced and the other not, their extents do not overlap, lines
        are expected, ``slack_px`` is given for inputs that are not two rasters on one grid,
        or a SpaceNet CSV has no image to refer to or no row for it.
    VectorReadError
        A vector file or CSV cannot be read.
    RasterReadError
        A raster cannot be read.
    ConfigError
        ``junction_radius_m`` is not a positive number, or both ``slack_px`` and ``buffer_m``
        are given (only one of them applies to a pair of inputs).

    Examples
    --------
    >>> import tempfile, geopandas as gpd
    >>> from pathlib import Path
    >>> from shapely.geometry import LineString
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     truth, pred = Path(tmp) / "truth.geojson", Path(tmp) / "pred.geojson"
    ...     road = LineString([(500000, 4000000), (500100, 4000020)])  # about 102 m
    ...     gpd.GeoDataFrame(geometry=[road], crs=32633).to_file(truth)
    ...     half = LineString([(500000, 4000001), (500050, 4000011)])  # its first half, 1 m off
    ...     gpd.GeoDataFrame(geometry=[half], crs=32633).to_file(pred)
    ...     result = evaluate_files(pred, truth)
    >>> round(result.completeness, 2), round(result.correctness, 2), result.tolerance, result.mode
    (0.52, 1.0, 2.0, 'vector')
    """
    if slack_px is not None and buffer_m is not None:
        raise ConfigError("give either --slack-px (two rasters on one grid) or --buffer-m (lines in metres), not both")
    gsd = DEFAULT_ASSUMED_GSD_M if assume_gsd_m is None else assume_gsd_m
    p, t = _load(pred, gsd, image, image_id), _load(truth, gsd, image, image_id)
    truth_lines, reprojected_from = _reference_in_prediction_crs(p, t)
    _check_overlap(p, t, truth_lines)
    p.lines = _outside(p.lines, _no_data_area(t, p.crs))  # where one side has no data, neither side is scored
    truth_lines = _outside(truth_lines, _no_data_area(p, p.crs))
    pm, tm = _to_metres(p, truth_lines, gsd)
    if p.raster is not None and t.raster is not None and _same_grid(p.raster.geo, t.raster.geo) and buffer_m is None:
        slack = 3.0 if slack_px is None else slack_px
        both = p.raster.valid & t.raster.valid
        scores = raster_buffer_scores((p.raster.array[0] > 0) & both, (t.raster.array[0] > 0) & both, slack)
        tolerance, unit, mode = slack, "px", "raster"
    else:
        if slack_px is not None and buffer_m is None:
            raise InputMismatchError(f"--slack-px needs two centerline rasters on the same grid ({p.path}, {t.path}); use --buffer-m")
        tolerance = 2.0 if buffer_m is None else buffer_m
        scores = vector_buffer_scores(pm, tm, tolerance)
        unit, mode = "m", "vector"
    truth_graph = graph_from_lines(tm, min_component_m=t.min_component_m, join_ends_m=join_ends_m)
    pred_graph = graph_from_lines(pm, min_component_m=p.min_component_m, join_ends_m=join_ends_m)
    return Evaluation(
        completeness=float(scores.completeness),
        correctness=float(scores.correctness),
        quality=float(scores.quality),
        tolerance=float(tolerance),
        tolerance_unit=unit,
        mode=mode,
        pred_length_m=float(np.sum(shapely.length(pm))) if len(pm) else 0.0,
        truth_length_m=float(np.sum(shapely.length(tm))) if len(tm) else 0.0,
        apls_scores=apls(truth_graph, pred_graph, max_snap_dist_m=apls_snap_m),
        graph=graph_metrics(truth_graph, pred_graph, junction_radius_m=junction_radius_m),
        crs=None if p.crs is None else crs_name(p.crs),
        reference_reprojected_from=reprojected_from,
        pixel_gsd_m=gsd if p.crs is None else None,
        gsd_assumed=p.crs is None and assume_gsd_m is None,
    )
