"""Map updating: the extracted network compared with an existing road map (``compare_network``).

``compare_network`` runs after the network steps (:mod:`geoseg.road.map_changes`). The map is
read once per process while its file is unchanged, placed in the scene's CRS (the
reprojection is reported with the scene's warnings) and taken within the scene (or the
extent) plus the matching tolerance, so that a road at the scene's edge finds its match just
outside. The comparison is made on the pixel grid scaled to metres along each axis, so a scene
in degrees (non-square pixels) is compared in metres too. While the tiles are processed the
step samples, along the map's roads, where the scene has data, the road probability (or mask)
and the ``occlusion`` layer when the pipeline has one, so that ``missing`` stretches are cut to
the scene's valid-data footprint and carry a confidence and the share of them under trees or in
shadow.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pydantic import Field, ValidationInfo, field_validator
from shapely.ops import substring

from geoseg.errors import GeosegError, VectorReadError
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo
from geoseg.road.centerlines import width_from_histogram
from geoseg.road.map_changes import chain_lines, compare_lines, line_parts, link_changes
from geoseg.steps.road_width import WIDTH_STATS_BYTES_PER_PIXEL, width_partial, width_stats_halo_px

__all__ = ["CompareNetwork", "RoadMapLines", "CHANGE_LAYERS", "map_in_scene"]

log = logging.getLogger("geoseg.compare")

#: The layers ``compare_network`` gives.
CHANGE_LAYERS = ("new", "missing", "matched", "links")


@dataclass(frozen=True)
class _Samples:
    """Values measured at points along the map's roads (CRS coordinates): one entry per point."""

    x: np.ndarray
    y: np.ndarray
    valid: np.ndarray
    road: np.ndarray  # road probability or mask share (NaN: the pipeline has neither)
    occluded: np.ndarray  # 1 under trees or shadow, 0 not, NaN: no occlusion layer

    @classmethod
    def concat(cls, parts: list[_Samples]) -> _Samples:
        if not parts:
            return cls(*(np.zeros(0) for _ in range(5)))
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("x", "y", "valid", "road", "occluded")))


@dataclass(frozen=True)
class RoadMapLines:
    """A road map's lines in a scene's CRS, ready to compare.

    Attributes
    ----------
    path : str
        The map file.
    parts : numpy.ndarray of LineString
        Its lines (multi-part lines split), in the scene's CRS.
    ids : numpy.ndarray of int
        For each part, the feature number in the file (from 0, all features counted).
    tree : shapely.STRtree
        Spatial index of ``parts``.
    crs : str or None
        The file's own CRS (``EPSG:4326``), None without one.
    reprojected : bool
        Whether ``parts`` were reprojected from it.
    """

    path: str
    parts: np.ndarray
    ids: np.ndarray
    tree: shapely.STRtree
    crs: str | None
    reprojected: bool

    def near(self, area: shapely.Geometry) -> tuple[np.ndarray, np.ndarray]:
        """The parts whose bounding boxes meet ``area`` (CRS coordinates), and their feature numbers."""
        hits = np.sort(self.tree.query(area))
        return self.parts[hits], self.ids[hits]


def _stamp(path: str) -> tuple[int, int]:
    """The file's modification time and size (caches key on them); (0, 0) for GDAL virtual paths and URLs."""
    from geoseg.inputs import is_remote

    if is_remote(path):
        return 0, 0
    try:
        st = os.stat(path)
    except OSError:
        raise VectorReadError(f"{path}: no such file (the road map to compare with)") from None
    return st.st_mtime_ns, st.st_size


@lru_cache(maxsize=2)
def _read_lines(path: str, layer: str | None, stamp: tuple[int, int]) -> Any:
    """The map's lines as in the file, with ``map_id`` = feature number (all features counted), read once while the file is unchanged.

    Raises
    ------
    VectorReadError, InputMismatchError
        Not a vector file, no such layer, several layers and none chosen, features but no lines,
        degrees out of range.
    """
    from geoseg.vector import check_degrees, keep_lines, read_lines

    frame = read_lines(path, layer=layer, layer_option="--map-layer NAME (geoseg compare), or --set compare_network.map_layer=NAME (pipelines)")
    frame = frame.assign(map_id=np.arange(len(frame), dtype=np.int64))
    lines = keep_lines(frame, path, "a road map", allow_empty=True)
    check_degrees(path, lines.geometry.to_numpy(), lines.crs)
    return lines


@lru_cache(maxsize=2)
def _map_lines(path: str, layer: str | None, stamp: tuple[int, int], crs_wkt: str | None) -> RoadMapLines:
    from affine import Affine
    from rasterio.crs import CRS

    from geoseg.vector import crs_name, to_scene_crs

    frame = _read_lines(path, layer, stamp)
    geo = GeoInfo(1, 1, CRS.from_wkt(crs_wkt) if crs_wkt else None, Affine.identity(), (1.0, 1.0), crs_wkt is not None)
    placed, note = to_scene_crs(frame, geo, "the scene", path, "the map")
    parts, index = line_parts(placed.geometry.to_numpy())
    ids = placed["map_id"].to_numpy()[index] if len(index) else np.zeros(0, np.int64)
    own = crs_name(frame.crs) if frame.crs is not None else None
    return RoadMapLines(path, parts, ids, shapely.STRtree(parts), own, note is not None)


def map_in_scene(path: str, layer: str | None, geo: GeoInfo) -> RoadMapLines:
    """The road map file's lines in the CRS of ``geo`` (read and reprojected once per process while the file is unchanged).

    Parameters
    ----------
    path : str
        The road map (any OGR vector format, GDAL virtual path or URL).
    layer : str or None
        The layer to read; None: the file's only layer.
    geo : GeoInfo
        The scene's georeferencing (only its CRS is used).

    Returns
    -------
    RoadMapLines
        The map's lines cut into simple parts, in the scene's CRS, with the number of the map
        feature each part comes from and a spatial index.

    Raises
    ------
    VectorReadError
        No such file, or not a readable vector file.
    InputMismatchError
        No such layer, several layers and none chosen, features but no lines, coordinates
        out of the range of degrees, or a CRS that cannot be matched with the scene's.
    """
    crs = geo.crs.to_wkt() if geo.georeferenced and geo.crs is not None else None
    return _map_lines(path, layer, _stamp(path), crs)


class CompareNetwork(Step):
    """Compare the extracted network with a road map: ``new``, ``missing`` and ``matched`` stretches, and routing ``links``.

    Two roads match where they run within the tolerance of each other in about the same
    direction (see :mod:`geoseg.road.map_changes`). The tolerance is ``tolerance_m``, else
    ``tolerance_factor`` times the road width (``road_width_m``, else measured on the road
    mask). Ways of the map that meet end to end are compared as one road. Layers, in the
    scene's CRS, each feature's ``confidence`` (0-1) being that of what its layer says:

    - ``new`` (extracted road, no map road near it): ``length_m``, ``confidence`` (the
      extraction's);
    - ``missing`` (map road in the scene's valid-data area, no extracted road near it):
      ``length_m``, ``confidence`` (that the road is absent: 1 minus the mean road probability
      along it), ``occluded`` (share under trees or in shadow, when the pipeline has an
      ``occlusion`` layer), ``map_id`` (number of the map feature under the stretch's middle,
      counted from 0 in the file);
    - ``matched`` (map road with extracted road near it): ``length_m``, ``offset_m`` and
      ``offset_max`` (mean and largest distance between the two, metres), ``confidence`` (of
      the extracted road), ``map_id``;
    - ``links``: ``kind`` (``new_link`` or ``broken_link``), ``map_m`` and ``image_m`` (path
      lengths between the two map nodes in the map and through the extracted network),
      ``ratio`` (``image_m / map_m``).
    """

    type_name = "compare_network"
    takes = ("network",)
    gives = CHANGE_LAYERS
    new_layers = dict.fromkeys(CHANGE_LAYERS, "features")
    bytes_per_pixel = 8
    stats_bytes_per_pixel = WIDTH_STATS_BYTES_PER_PIXEL

    map_layer: str | None = Field(None, description="layer of the map file (needed when it has several)")
    map: str = Field(description="road map to compare with (any OGR vector format, GDAL virtual path or URL, any CRS: reprojected to the scene's, and said so)")
    tolerance_m: float | None = Field(None, gt=0, description="how far apart two lines may be and be the same road; default: tolerance_factor x road width")
    tolerance_factor: float = Field(1.0, gt=0, description="tolerance as a multiple of the road width (when tolerance_m is not set)")
    road_width_m: float | None = Field(None, gt=0, description="typical road width in metres; default: measured on the mask")
    fallback_road_width_m: float = Field(7.0, gt=0, description="road width used when there is no mask to measure it on")
    max_road_width_m: float = Field(40.0, gt=0, description="upper bound of the measured road width")
    max_angle_deg: float = Field(30.0, gt=0, le=90, description="how far the directions of two matched roads may differ")
    min_length_m: float | None = Field(None, ge=0, description="shortest new or missing stretch reported; default: twice the tolerance")
    link_radius_m: float = Field(250.0, ge=0, description="new links are looked for between map nodes up to this far apart (0: no link search)")
    shortcut_ratio: float = Field(0.5, gt=0, le=1, description="a new link's path must be shorter than this times the map's path")
    detour_ratio: float = Field(2.0, ge=1, description="a map edge is broken when the network joins its ends only by a path this many times longer, or not")

    @field_validator("map")
    @classmethod
    def _map_readable(cls, path: str, info: ValidationInfo) -> str:
        """Read the map when the step is built, so that a missing or unreadable map stops a batch before any scene runs."""
        try:
            _read_lines(path, info.data.get("map_layer"), _stamp(path))
        except GeosegError as exc:
            raise ValueError(str(exc)) from None
        return path

    def statistics_inputs(self) -> tuple[str, ...]:
        """The road mask or probability (width, confidence) and the occlusion layer, sampled along the map."""
        return ("mask", "probability", "occlusion")

    def stats_halo_px(self, geo: GeoInfo) -> int:
        """Measuring the road width sees half the widest road around each pixel."""
        return width_stats_halo_px(geo, self.max_road_width_m) if self._measures_width else 0

    @property
    def _measures_width(self) -> bool:
        return self.tolerance_m is None and self.road_width_m is None

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> tuple[np.ndarray | None, _Samples]:
        """The road-width histogram of the tile's core, and the values along the map's roads in it."""
        width = width_partial(layers, ctx) if self._measures_width else None
        return width, self._samples(layers, ctx)

    def _samples(self, layers: dict[str, Any], ctx: StepContext) -> _Samples:
        """One point per pixel along the map's roads in the tile's core, with the values there."""
        from geoseg.vector import to_crs_coords

        rows, cols = ctx.core
        r0, r1, c0, c1 = rows.start or 0, rows.stop or ctx.geo.height, cols.start or 0, cols.stop or ctx.geo.width
        core = to_crs_coords(np.asarray([shapely.box(c0, r0, c1, r1)], dtype=object), ctx.geo)[0]
        parts, _ = map_in_scene(self.map, self.map_layer, ctx.geo).near(core)
        if not len(parts):
            return _Samples.concat([])
        in_pixels = ctx.geo.to_pixels(parts)
        clipped, _ = line_parts(shapely.clip_by_rect(in_pixels, c0, r0, c1, r1))
        if not len(clipped):
            return _Samples.concat([])
        counts = np.maximum(1, np.round(shapely.length(clipped)).astype(np.int64))
        which = np.repeat(np.arange(len(clipped)), counts)
        along = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 0.5) / np.repeat(counts, counts)
        xy = shapely.get_coordinates(shapely.line_interpolate_point(clipped[which], along, normalized=True))
        r = np.clip(np.floor(xy[:, 1]).astype(np.int64), r0, r1 - 1)
        c = np.clip(np.floor(xy[:, 0]).astype(np.int64), c0, c1 - 1)
        valid = ctx.valid[r, c] if ctx.valid is not None else np.ones(len(r), bool)
        road_layer = layers.get("probability", layers.get("mask"))
        road = road_layer[r, c].astype(float) if road_layer is not None else np.full(len(r), np.nan)
        occlusion = layers.get("occlusion")
        occluded = occlusion[r, c].astype(float) if occlusion is not None else np.full(len(r), np.nan)
        x, y = ctx.geo.transform @ (xy[:, 0], xy[:, 1])
        return _Samples(np.asarray(x, float), np.asarray(y, float), valid.astype(bool), road, occluded)

    def fit(self, partials: list[Any]) -> Step:
        """Keep the road-width histograms and the samples along the map."""
        widths = [p[0] for p in partials if p[0] is not None]
        return self.with_fitted(histograms=widths, samples=_Samples.concat([p[1] for p in partials]))

    def tolerance(self, geo: GeoInfo, histograms: list[np.ndarray] | None = None) -> tuple[float, str]:
        """The matching tolerance in metres, and where it comes from (for the log)."""
        if self.tolerance_m is not None:
            return self.tolerance_m, "tolerance_m"
        if self.road_width_m is not None:
            return self.tolerance_factor * self.road_width_m, f"{self.tolerance_factor:g} x road_width_m"
        width_px = width_from_histogram(histograms or [], geo.metres_to_pixels(self.fallback_road_width_m), geo.metres_to_pixels(self.max_road_width_m))
        return self.tolerance_factor * width_px * geo.gsd_m, f"{self.tolerance_factor:g} x the road width measured on the mask"

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Compare the network with the map (scene-wide, once)."""
        roads = map_in_scene(self.map, self.map_layer, ctx.geo)
        if roads.reprojected:
            ctx.warnings.append(f"{roads.path}: reprojected from {roads.crs} to the CRS of {ctx.source} ({ctx.geo.crs})")
        tolerance, why = self.tolerance(ctx.geo, self.fitted("histograms") if self._fitted is not None else None)
        log.info("%s: compared with %s within %.2f m (%s)", ctx.source, roads.path, tolerance, why)
        samples = self.fitted("samples") if self._fitted is not None else None
        out, notes = self.compare(layers["network"], roads, ctx.geo, tolerance, area=ctx.area, samples=samples, scene=ctx.source)
        ctx.warnings.extend(notes)
        return out

    def compare(
        self,
        network: Any,
        roads: RoadMapLines,
        geo: GeoInfo,
        tolerance_m: float,
        *,
        area: shapely.Geometry | None = None,
        samples: _Samples | None = None,
        scene: str = "the scene",
    ) -> tuple[dict[str, Any], list[str]]:
        """The change layers of ``network`` (pixel space of ``geo``) against ``roads``, and notes for the user.

        Changes are reported within ``area`` (a polygon in pixel space; default: the grid of
        ``geo``); the map is matched within the tolerance around it. ``samples`` along the map
        cut missing stretches to the valid-data area and give their confidence and occluded share.
        """
        from geoseg.vector import to_crs_coords

        sx, sy = geo.gsd_xy_m
        grid = shapely.box(0, 0, geo.width, geo.height) if area is None else area
        zone = shapely.buffer(_scaled(grid, sx, sy), tolerance_m)
        near, ids = roads.near(to_crs_coords(np.asarray([_scaled(zone, 1 / sx, 1 / sy)], dtype=object), geo)[0])
        parts, kept = line_parts(shapely.intersection(_scaled(geo.to_pixels(near), sx, sy), zone)) if len(near) else (near, ids)
        ids = ids[kept] if len(kept) else np.zeros(0, np.int64)
        notes = []
        reported = _scaled(grid, sx, sy)
        if not len(parts) or not shapely.intersects(shapely.MultiLineString(list(parts)), reported):
            notes.append(f"{roads.path}: no road of the map lies in {scene}: every extracted road is new (the right map? the right CRS?)")
        roads_m, _ = chain_lines(parts)
        scaled = _scaled_graph(network, sx, sy)
        edges = list(scaled.edges(keys=True, data=True))
        extracted = np.asarray([d["geometry"] for *_, d in edges], dtype=object)
        confidence = [d.get("confidence", math.nan) for *_, d in edges]
        min_length = 2 * tolerance_m if self.min_length_m is None else self.min_length_m
        result = compare_lines(
            extracted, roads_m, tolerance_px=tolerance_m, max_angle_deg=self.max_angle_deg, min_length_px=min_length,
            extracted_confidence=confidence, area=reported,
        )  # fmt: skip
        part_tree = shapely.STRtree(parts) if len(parts) else None

        def map_ids(geoms: np.ndarray) -> np.ndarray:
            if part_tree is None or not len(geoms):
                return np.zeros(len(geoms), np.int64)
            middles = shapely.line_interpolate_point(geoms, 0.5, normalized=True)
            return ids[part_tree.query_nearest(middles, all_matches=False)[1]]

        missing = _cut_to_footprint(result.missing.geometry, samples if samples is not None else _Samples.concat([]), geo, min_length)
        back: dict[str, Any] = {"geo": geo, "sx": sx, "sy": sy}
        out: dict[str, Any] = {
            "new": _frame(result.new.geometry, **back, confidence=result.new.confidence),
            "missing": _frame(missing[0], **back, confidence=missing[1], occluded=missing[2], map_id=map_ids(missing[0])),
            "matched": _frame(
                result.matched.geometry,
                **back,
                offset_m=result.matched.offset_mean_px,
                offset_max=result.matched.offset_max_px,
                confidence=result.matched.confidence,
                map_id=map_ids(result.matched.geometry),
            ),  # fmt: skip
        }
        empty = np.zeros(0)
        found = None
        if self.link_radius_m > 0 and edges and len(roads_m):
            found = link_changes(
                scaled, roads_m, tolerance_px=tolerance_m, radius_px=self.link_radius_m,
                new_edges=set(result.new.source.tolist()), shortcut_ratio=self.shortcut_ratio, detour_ratio=self.detour_ratio,
            )  # fmt: skip
        if found is None or not len(found):
            out["links"] = _frame(np.zeros(0, dtype=object), **back, kind=np.zeros(0, dtype=str), map_m=empty, image_m=empty, ratio=empty)
            return out, notes
        inside = shapely.intersects(found.geometry, reported)
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = found.image_length / found.map_length
        out["links"] = _frame(
            found.geometry[inside], **back, kind=found.kind[inside].astype(str), map_m=found.map_length[inside], image_m=found.image_length[inside],
            ratio=ratio[inside],
        )  # fmt: skip
        return out, notes


def _scaled(geometry: Any, sx: float, sy: float) -> Any:
    """Geometries with x multiplied by ``sx`` and y by ``sy`` (pixel space to metres along each axis, and back)."""
    return shapely.transform(geometry, lambda xy: xy * (sx, sy))


def _scaled_graph(network: Any, sx: float, sy: float) -> Any:
    """A copy of a pixel-space network in metres along each axis (node ``x``/``y`` and edge geometries)."""
    graph = network.copy()
    for _, data in graph.nodes(data=True):
        data["x"], data["y"] = data["x"] * sx, data["y"] * sy
    for *_, data in graph.edges(keys=True, data=True):
        data["geometry"] = _scaled(data["geometry"], sx, sy)
    return graph


def _cut_to_footprint(missing: np.ndarray, samples: _Samples, geo: GeoInfo, min_length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Missing stretches (metres along each axis) cut to where the scene has data, with 1 - mean road value and the occluded share along each.

    Returns geometries, confidences and occluded shares.
    """
    geoms, conf, occluded = [], [], []
    if len(samples.x):
        inverse = ~geo.transform
        px, py = inverse @ (samples.x, samples.y)
        sx, sy = geo.gsd_xy_m
        points = shapely.points(np.column_stack([np.asarray(px) * sx, np.asarray(py) * sy]))
        tree = shapely.STRtree(points)
        step = max(sx, sy)  # samples lie one pixel apart
    for stretch in missing:
        idx = tree.query(stretch, predicate="dwithin", distance=1e-3 * step) if len(samples.x) else np.zeros(0, np.intp)
        if not len(idx):
            geoms.append(stretch)
            conf.append(math.nan)
            occluded.append(math.nan)
            continue
        at = shapely.line_locate_point(stretch, points[idx])
        order = np.argsort(at)
        idx, at = idx[order], at[order]
        for run in _runs(samples.valid[idx]):
            start = 0.0 if run[0] == 0 else max(0.0, at[run[0]] - step / 2)
            end = stretch.length if run[-1] == len(idx) - 1 else min(stretch.length, at[run[-1]] + step / 2)
            if end - start < min_length:
                continue
            geoms.append(stretch if start <= 0 and end >= stretch.length else substring(stretch, start, end))
            road, occ = samples.road[idx[run]], samples.occluded[idx[run]]
            conf.append(float(1 - np.nanmean(road)) if np.isfinite(road).any() else math.nan)
            occluded.append(float(np.nanmean(occ)) if np.isfinite(occ).any() else math.nan)
    return np.asarray(geoms, dtype=object), np.asarray(conf, dtype=float), np.asarray(occluded, dtype=float)


def _runs(flags: np.ndarray) -> list[np.ndarray]:
    """Index runs of consecutive True values."""
    idx = np.flatnonzero(flags)
    if not len(idx):
        return []
    return np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)


def _frame(geometry: np.ndarray, *, geo: GeoInfo, sx: float, sy: float, **columns: Any) -> Any:
    """Features from metres along the pixel axes to the scene's CRS, with ``length_m`` (geodesic) and the given columns (floats rounded)."""
    import geopandas as gpd

    from geoseg.vector import lengths_m, to_crs_coords

    geoms = np.asarray(geometry, dtype=object)
    geoms = to_crs_coords(_scaled(geoms, 1 / sx, 1 / sy), geo) if len(geoms) else geoms
    data: dict[str, Any] = {"length_m": np.round(lengths_m(geoms, geo), 3) if len(geoms) else np.zeros(0)}
    for name, values in columns.items():
        values = np.asarray(values)
        data[name] = np.round(values.astype(float), 4) if values.dtype.kind == "f" else values
    crs = geo.crs if geo.georeferenced else None
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(list(geoms), crs=crs), crs=crs)
