"""Map updating steps: the extracted network compared with an existing road map, and where roads are hidden.

``compare_network`` runs after the network steps (:mod:`geoseg.road.map_changes`); the map is
read once per process, placed in the scene's CRS (the reprojection is reported with the
scene's warnings) and clipped to the scene. While the tiles are processed it samples, along the
map's roads, where the scene has data, the road probability (or mask) and the
``occlusion`` layer when the pipeline has one, so that ``missing`` stretches are cut to the
scene's valid-data footprint and carry a confidence and the share of them under trees or in
shadow.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pydantic import Field, ValidationInfo, field_validator
from shapely.ops import substring

from geoseg.errors import GeosegError, InputMismatchError
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo
from geoseg.road.centerlines import width_from_histogram
from geoseg.road.map_changes import compare_lines, line_parts, link_changes
from geoseg.steps.road_width import WIDTH_STATS_BYTES_PER_PIXEL, width_partial, width_stats_halo_px

__all__ = ["CompareNetwork", "OcclusionMask", "CHANGE_LAYERS"]

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


@lru_cache(maxsize=4)
def _read_lines(path: str, layer: str | None, stamp: tuple[int, int]) -> Any:
    """The map's lines as in the file, with ``map_id`` = feature order (read once while the file is unchanged)."""
    from geoseg.classifiers.road_map import read_road_map
    from geoseg.vector import check_degrees

    frame = read_road_map(path) if layer is None else _read_layer(path, layer)
    check_degrees(path, frame.geometry.to_numpy(), frame.crs)
    return frame.assign(map_id=np.arange(len(frame), dtype=np.int64)) if "map_id" not in frame.columns else frame


@lru_cache(maxsize=4)
def _read_map(path: str, layer: str | None, stamp: tuple[int, int], crs_wkt: str | None) -> tuple[Any, str | None]:
    """The map's lines in the CRS ``crs_wkt`` (None: a scene without georeferencing), and the reprojection note."""
    from affine import Affine
    from rasterio.crs import CRS

    from geoseg.vector import to_scene_crs

    frame = _read_lines(path, layer, stamp)
    geo = GeoInfo(1, 1, CRS.from_wkt(crs_wkt) if crs_wkt else None, Affine.identity(), (1.0, 1.0), crs_wkt is not None)
    placed, note = to_scene_crs(frame, geo, "the scene", path, "the map")
    return placed.reset_index(drop=True), note


def _stamp(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        from geoseg.errors import VectorReadError

        raise VectorReadError(f"{path}: no such file (the road map to compare with)") from None
    return st.st_mtime_ns, st.st_size


def _read_layer(path: str, layer: str) -> Any:
    """The lines of one layer of a map file."""
    import pyogrio
    from pyogrio.errors import DataSourceError

    from geoseg.vector import read_lines

    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
    except DataSourceError:
        layers = []
    if layers and layer not in layers:
        raise InputMismatchError(f"{path}: no layer {layer!r} (layers: {', '.join(layers)})")
    frame = read_lines(path, layer=layer)
    lines = frame[frame.geometry.notna() & frame.geometry.geom_type.isin(["LineString", "MultiLineString"])]
    if lines.empty:
        raise InputMismatchError(f"{path}: layer {layer!r} holds no lines (road centerlines)")
    return lines


def map_in_scene(path: str, layer: str | None, geo: GeoInfo) -> tuple[Any, str | None]:
    """The map file's lines in the CRS of ``geo`` (read and reprojected once per process while the file is unchanged).

    Raises
    ------
    VectorReadError, InputMismatchError
        No such file, not a vector file, no lines, or a CRS that cannot be matched with the scene's.
    """
    crs = geo.crs.to_wkt() if geo.georeferenced and geo.crs is not None else None
    return _read_map(str(Path(path)), layer, _stamp(path), crs)


class CompareNetwork(Step):
    """Compare the extracted network with a road map: ``new``, ``missing`` and ``matched`` stretches, and routing ``links``.

    Two roads match where they run within ``tolerance_m`` of each other in about the same
    direction (see :mod:`geoseg.road.map_changes`). The tolerance follows the road width
    (``tolerance_factor`` times the width measured on the road mask, or ``road_width_m``)
    unless ``tolerance_m`` is set. Layers, in the scene's CRS:

    - ``new`` (extracted road, no map road near it): ``length_m``, ``confidence`` (the
      extraction's, 0-1);
    - ``missing`` (map road in the scene's valid-data area, no extracted road near it):
      ``length_m``, ``confidence`` (1 minus the mean road probability along it: high where the
      classifier is sure there is no road), ``occluded`` (share under trees or in shadow, when
      the pipeline has an ``occlusion`` layer), ``map_id`` (feature number in the map file);
    - ``matched`` (map road with extracted road near it): ``length_m``, ``offset_m`` and
      ``offset_max`` (mean and largest distance between the two, metres), ``confidence``,
      ``map_id``;
    - ``links``: ``kind`` (``new_link`` or ``broken_link``), ``map_m`` and ``image_m`` (path
      lengths between the two map nodes in the map and through the extracted network),
      ``ratio`` (``image_m / map_m``).
    """

    type_name = "compare_network"
    takes = ("network",)
    gives = CHANGE_LAYERS
    bytes_per_pixel = 8
    stats_bytes_per_pixel = WIDTH_STATS_BYTES_PER_PIXEL

    map_layer: str | None = Field(None, description="layer of the map file (default: its first)")
    map: str = Field(description="road map to compare with (any OGR vector format, any CRS: reprojected to the scene's, and said so)")
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
            _read_lines(str(Path(path)), info.data.get("map_layer"), _stamp(path))
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
        frame, _ = map_in_scene(self.map, self.map_layer, ctx.geo)
        rows, cols = ctx.core
        r0, r1, c0, c1 = rows.start or 0, rows.stop or ctx.geo.height, cols.start or 0, cols.stop or ctx.geo.width
        inverse = ~ctx.geo.transform
        lines, _ = line_parts(frame.geometry.to_numpy())
        if not len(lines):
            return _Samples.concat([])
        in_pixels = shapely.transform(lines, lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1])))
        clipped, _ = line_parts(shapely.clip_by_rect(in_pixels, c0, r0, c1, r1))
        if not len(clipped):
            return _Samples.concat([])
        counts = np.maximum(1, np.round(shapely.length(clipped)).astype(np.int64))
        which = np.repeat(np.arange(len(clipped)), counts)
        along = (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + 0.5) / np.repeat(counts, counts)
        points = shapely.line_interpolate_point(clipped[which], along, normalized=True)
        xy = shapely.get_coordinates(points)
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

    def _tolerance_px(self, ctx: StepContext) -> float:
        if self.tolerance_m is not None:
            return ctx.px(self.tolerance_m)
        if self.road_width_m is not None:
            return self.tolerance_factor * ctx.px(self.road_width_m)
        width = width_from_histogram(self.fitted("histograms"), ctx.px(self.fallback_road_width_m), ctx.px(self.max_road_width_m))
        return self.tolerance_factor * width

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Compare the network with the map (scene-wide, once)."""
        frame, note = map_in_scene(self.map, self.map_layer, ctx.geo)
        if note:
            ctx.warnings.append(note)
        samples = self.fitted("samples") if self._fitted is not None else None
        return self.compare(layers["network"], frame, ctx.geo, self._tolerance_px(ctx), samples=samples)

    def compare(self, network: Any, frame: Any, geo: GeoInfo, tolerance_px: float, *, area: Any = None, samples: _Samples | None = None) -> dict[str, Any]:
        """The change layers of ``network`` (pixel space of ``geo``) against the map lines ``frame`` (CRS of ``geo``, column ``map_id``).

        The map is clipped to ``area`` (a polygon in pixel space; default: the grid of ``geo``);
        ``samples`` along the map cut missing stretches to the valid-data area and give their
        confidence and occluded share.
        """
        min_length = 2 * tolerance_px if self.min_length_m is None else geo.metres_to_pixels(self.min_length_m)
        lines, index = line_parts(frame.geometry.to_numpy())
        map_ids = frame["map_id"].to_numpy()[index] if len(index) else np.zeros(0, np.int64)
        inverse = ~geo.transform
        in_pixels = shapely.transform(lines, lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1]))) if len(lines) else lines
        if area is None:
            clipped, kept = line_parts(shapely.clip_by_rect(in_pixels, 0, 0, geo.width, geo.height)) if len(lines) else (lines, index)
        else:
            clipped, kept = line_parts(shapely.intersection(in_pixels, area)) if len(lines) else (lines, index)
        map_ids = map_ids[kept] if len(kept) else np.zeros(0, np.int64)
        edges = list(network.edges(keys=True, data=True))
        extracted = [d["geometry"] for *_, d in edges]
        confidence = [d.get("confidence", math.nan) for *_, d in edges]
        result = compare_lines(
            extracted, clipped, tolerance_px=tolerance_px, max_angle_deg=self.max_angle_deg, min_length_px=min_length, extracted_confidence=confidence
        )
        missing = _cut_to_footprint(result.missing, samples if samples is not None else _Samples.concat([]), geo, min_length)
        out: dict[str, Any] = {
            "new": _frame(geo, result.new.geometry, confidence=result.new.confidence),
            "missing": _frame(geo, missing[0], confidence=missing[1], occluded=missing[2], map_id=map_ids[missing[3]]),
            "matched": _frame(
                geo,
                result.matched.geometry,
                offset_m=result.matched.offset_mean_px * geo.gsd_m,
                offset_max=result.matched.offset_max_px * geo.gsd_m,
                confidence=result.matched.confidence,
                map_id=map_ids[result.matched.source],
            ),  # fmt: skip
        }
        empty = np.zeros(0)
        links_found = (
            link_changes(
                network,
                clipped,
                tolerance_px=tolerance_px,
                radius_px=geo.metres_to_pixels(self.link_radius_m),
                new_edges=set(result.new.source.tolist()),
                shortcut_ratio=self.shortcut_ratio,
                detour_ratio=self.detour_ratio,
            )  # fmt: skip
            if self.link_radius_m > 0 and edges and len(clipped)
            else None
        )
        if links_found is None or not len(links_found):
            out["links"] = _frame(geo, np.zeros(0, dtype=object), kind=np.zeros(0, dtype=str), map_m=empty, image_m=empty, ratio=empty)
            return out
        map_m, image_m = links_found.map_length * geo.gsd_m, links_found.image_length * geo.gsd_m
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = image_m / map_m
        out["links"] = _frame(geo, links_found.geometry, kind=links_found.kind.astype(str), map_m=map_m, image_m=image_m, ratio=ratio)
        return out


def _cut_to_footprint(missing: Any, samples: _Samples, geo: GeoInfo, min_length: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Missing stretches cut to where the scene has data, with 1 - mean road value and the occluded share along each.

    Returns geometries, confidences, occluded shares and the index of the map line of each.
    """
    geoms, conf, occluded, source = [], [], [], []
    if len(samples.x):
        inverse = ~geo.transform
        px, py = inverse @ (samples.x, samples.y)
        points = shapely.points(np.column_stack([px, py]))
        tree = shapely.STRtree(points)
    for stretch, line in zip(missing.geometry, missing.source):
        idx = tree.query(stretch, predicate="dwithin", distance=1e-3) if len(samples.x) else np.zeros(0, np.intp)
        if not len(idx):
            geoms.append(stretch)
            conf.append(math.nan)
            occluded.append(math.nan)
            source.append(line)
            continue
        at = shapely.line_locate_point(stretch, points[idx])
        order = np.argsort(at)
        idx, at = idx[order], at[order]
        ok = samples.valid[idx]
        for run in _runs(ok):
            start, end = max(0.0, at[run[0]] - 0.5), min(stretch.length, at[run[-1]] + 0.5)
            if run[0] == 0:
                start = 0.0
            if run[-1] == len(idx) - 1:
                end = stretch.length
            if end - start < min_length:
                continue
            piece = stretch if start <= 0 and end >= stretch.length else substring(stretch, start, end)
            geoms.append(piece)
            road, occ = samples.road[idx[run]], samples.occluded[idx[run]]
            conf.append(float(1 - np.nanmean(road)) if np.isfinite(road).any() else math.nan)
            occluded.append(float(np.nanmean(occ)) if np.isfinite(occ).any() else math.nan)
            source.append(line)
    return (
        np.asarray(geoms, dtype=object), np.asarray(conf, dtype=float), np.asarray(occluded, dtype=float), np.asarray(source, dtype=np.intp)
    )  # fmt: skip


def _runs(flags: np.ndarray) -> list[np.ndarray]:
    """Index runs of consecutive True values."""
    idx = np.flatnonzero(flags)
    if not len(idx):
        return []
    return np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)


def _frame(geo: GeoInfo, geometry: np.ndarray, **columns: np.ndarray) -> Any:
    """Features from pixel space to the scene's CRS, with ``length_m`` and the given columns (floats rounded)."""
    import geopandas as gpd

    from geoseg.vector import lengths_m, to_crs_coords

    geoms = to_crs_coords(np.asarray(geometry, dtype=object), geo) if len(geometry) else np.asarray(geometry, dtype=object)
    data: dict[str, Any] = {"length_m": np.round(lengths_m(geoms, geo), 3) if len(geoms) else np.zeros(0)}
    for name, values in columns.items():
        values = np.asarray(values)
        data[name] = np.round(values.astype(float), 4) if values.dtype.kind == "f" else values
    crs = geo.crs if geo.georeferenced else None
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(list(geoms), crs=crs), crs=crs)


class OcclusionMask(Step):
    """Where roads may be hidden from above: tree crowns and shadows, from the image's colours.

    Tree crowns: *dark* vegetation, excess green ``(2G - R - B) / (R + G + B)`` above
    ``vegetation_index`` (Woebbecke et al. 1995, chromatic coordinates), or NDVI above ``ndvi``
    when the scene has a band named ``nir``, where the brightness (mean of bands 1-3) is below
    ``crown_fraction`` times the scene's median brightness: lit lawns and crops are brighter than
    crowns, which shade themselves. Shadows: brightness below ``shadow_fraction`` times the
    median. The median is measured over all tiles. Patches thinner than ``min_size_m`` (crop
    rows, dark cars) are removed by a morphological opening. Needs bands 1-3 to be red, green
    and blue (with fewer bands: shadows only). A colour rule, not a classifier: it tells
    crowns and shadows from lit ground in typical summer imagery, not in every scene.
    """

    type_name = "occlusion_mask"
    takes = ("image",)
    gives = ("occlusion",)
    stats_inputs = ("image",)
    bytes_per_pixel = 24

    vegetation_index: float = Field(0.1, description="excess green above which a pixel is vegetation")
    ndvi: float = Field(0.3, description="NDVI above which a pixel is vegetation (scenes with a band named nir)")
    crown_fraction: float = Field(0.8, gt=0, le=1, description="vegetation darker than this share of the scene median is tree crown")
    shadow_fraction: float = Field(0.5, gt=0, lt=1, description="brightness below this share of the scene median is shadow")
    min_size_m: float = Field(1.0, ge=0, description="radius (metres) of the opening that removes thinner patches")

    def halo_px(self, geo: GeoInfo) -> int:
        """The opening looks as far as its radius."""
        return int(math.ceil(geo.metres_to_pixels(self.min_size_m))) + 1

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> np.ndarray:
        """Histogram of log2 brightness over the tile's core (40 bins per octave, 2^-20 to 2^20)."""
        rows, cols = ctx.core
        bright = _brightness(layers["image"])[rows, cols]
        valid = ctx.raster_valid(self.label)[rows, cols] & (bright > 0)
        return np.histogram(np.log2(bright[valid]), bins=_LOG_BINS)[0]

    def fit(self, partials: list[Any]) -> Step:
        """The scene's median brightness."""
        counts = np.sum(partials, axis=0) if partials else np.zeros(len(_LOG_BINS) - 1)
        if counts.sum() == 0:
            return self.with_fitted(median=math.nan)
        k = int(np.searchsorted(np.cumsum(counts), counts.sum() / 2))
        return self.with_fitted(median=float(2 ** ((_LOG_BINS[k] + _LOG_BINS[k + 1]) / 2)))

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """The occlusion mask of the tile (False where the scene has no data)."""
        from scipy import ndimage as ndi

        image = layers["image"]
        valid = ctx.raster_valid(self.label)
        median = self.fitted("median")
        if not math.isfinite(median):
            return {"occlusion": np.zeros(valid.shape, bool)}
        bright = _brightness(image)
        names = [n.lower() for n in ctx.band_names]
        with np.errstate(invalid="ignore", divide="ignore"):
            if "nir" in names and image.shape[0] >= 3:
                nir, red = image[names.index("nir")].astype(np.float32), image[0].astype(np.float32)
                green = (nir - red) / (nir + red) > self.ndvi
            elif image.shape[0] >= 3:
                r, g, b = (image[i].astype(np.float32) for i in range(3))
                green = (2 * g - r - b) / (r + g + b) > self.vegetation_index
            else:
                green = np.zeros(valid.shape, bool)
        hidden = (green & (bright < self.crown_fraction * median)) | (bright < self.shadow_fraction * median)
        radius = int(round(ctx.px(self.min_size_m)))
        if radius > 0:
            yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
            hidden = ndi.binary_opening(hidden, structure=xx**2 + yy**2 <= radius**2)
        return {"occlusion": hidden & valid}


def _brightness(image: np.ndarray) -> np.ndarray:
    """Mean of bands 1-3 (or of all bands, with fewer)."""
    return image[: min(3, image.shape[0])].astype(np.float32).mean(axis=0)


#: Bin edges of the log2-brightness histogram of :class:`OcclusionMask`.
_LOG_BINS = np.linspace(-20.0, 20.0, 1601)
