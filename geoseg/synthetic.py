"""Synthetic very-high-resolution aerial scenes with exact road ground truth.

No third-party imagery may go into the project, so its sample data, tests and benchmarks use
scenes rendered here. A scene is laid out as vector geometry first (roads, trees, cars,
buildings, all in pixel space) and then rasterised with vectorized numpy:

- background: agricultural field and meadow patches (a jittered-grid Voronoi partition), crop
  rows in some fields, several octaves of hash-based value noise and per-pixel noise;
- roads: asphalt or concrete, 4-14 m wide, edge-to-edge "through" roads (roughly horizontal
  ones cross roughly vertical ones: X-junctions) and curved branch roads that start on a road
  (T-junction) and end on the next road they meet (T-junction), at the frame or in a dead end;
  dashed centre lines on roads of 6 m and more, edge lines on roads of 9 m and more;
- cars aligned with their lane, buildings with gable or flat roofs away from the roads, tree
  crowns (rows along roads that partly hide them, clumps and single trees), and the shadows of
  trees, cars and buildings for one sun position.

Ground truth is the road itself, including the parts hidden by trees and cars. A pixel is road
when its centre lies within ``width / 2`` of the centreline of its road (the buffer sampled at
pixel centres). Roads that run off the frame are rendered from their full centreline, so within
``width / 2`` of the frame the mask also holds the road's continuation beyond the clipped
:attr:`SyntheticScene.centerlines`; elsewhere the mask is exactly the union of their buffers.

Memory stays at the output arrays (3 bytes of image and 2 of masks per pixel), 5 bytes per
pixel of scratch and the sparse pixel lists of the objects (processed in batches); the
background is rendered in independent blocks of rows on a thread pool. Everything is
deterministic for a given seed. A 10000 x 10000 scene takes about 15 s and 2.2 GB on two
CPU cores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, box
from shapely.ops import substring

from geoseg.errors import ConfigError

__all__ = ["SyntheticScene", "render_scene"]

_ROW_BLOCK = 128  # rows of background rendered at once (one thread task)
_BATCH = 4_000_000  # window pixels evaluated at once for sparse objects
_KEY_SCALE = 1024.0  # road key: ceil(edge distance * scale) << 8 | road index
_KEY_LIMIT = (int(0.5 * _KEY_SCALE) + 1) << 8  # keys below: anti-aliased road edge or inside
_MAX_ROADS = 256
_THROUGH_WIDTH_M = (7.0, 14.0)
_BRANCH_WIDTH_M = (4.0, 8.5)
_CENTRE_LINE_MIN_M = 6.0
_EDGE_LINE_MIN_M = 9.0
_MARK_WIDTH_M = 0.2
_DASH_M = (3.0, 6.0)  # dash length, gap length
_SIMPLIFY_PX = 0.25  # tolerance of the centreline polylines

# (R, G, B) means of land covers and their probability; the last value is the crop-row amplitude
_LAND_COVERS = np.array(
    [
        # R, G, B, probability, rows
        [92, 118, 58, 0.30, 0.0],  # meadow
        [76, 108, 50, 0.15, 0.0],  # lush grass
        [148, 142, 92, 0.15, 0.0],  # dry grass
        [128, 102, 76, 0.15, 0.10],  # ploughed soil
        [104, 124, 66, 0.20, 0.12],  # crop field
        [158, 150, 128, 0.05, 0.0],  # bare ground
    ],
    dtype=np.float32,
)
_ASPHALT = np.array(
    [[78, 80, 84], [96, 97, 100], [112, 112, 114], [128, 127, 125], [158, 156, 150]],
    dtype=np.float32,
)
_CAR_COLOURS = np.array(
    [[225, 225, 222], [190, 192, 195], [40, 40, 44], [150, 30, 30], [40, 60, 130], [90, 92, 96], [200, 180, 60], [110, 20, 25]],
    dtype=np.float32,
)
_ROOF_COLOURS = np.array(
    [[168, 82, 60], [142, 70, 55], [88, 88, 92], [120, 96, 80], [182, 180, 172]],
    dtype=np.float32,
)
_SHADOW_RGB = np.array([0.5, 0.53, 0.62], dtype=np.float32)  # shadowed / lit ground


@dataclass(frozen=True)
class SyntheticScene:
    """A rendered scene and its road ground truth.

    Attributes
    ----------
    image : numpy.ndarray
        RGB image, uint8, shape ``(3, height, width)``.
    road_mask : numpy.ndarray
        Road surface, bool ``(height, width)``, including road hidden by trees and cars.
    centerline_raster : numpy.ndarray
        Rasterised centerlines, bool ``(height, width)``, 1 pixel wide and 8-connected.
    centerlines : list of shapely.LineString
        Road centerlines in pixel space (``x = col + 0.5`` at pixel centres), clipped to the
        frame ``[0, width] x [0, height]``; one entry per connected piece of a road.
    road_width_m : numpy.ndarray
        Width in metres of the road of each entry of `centerlines`, float64.
    gsd_m : float
        Ground sampling distance in metres per pixel.
    """

    image: np.ndarray
    road_mask: np.ndarray
    centerline_raster: np.ndarray
    centerlines: list[LineString]
    road_width_m: np.ndarray
    gsd_m: float


@dataclass(frozen=True)
class _Road:
    """A road of the layout: full centreline in pixel space (may leave the frame)."""

    line: LineString
    width_m: float


@dataclass(frozen=True)
class _Sun:
    """Sun direction: unit vector to the sun (pixel x, pixel y, up) and shadow offset."""

    vector: np.ndarray
    shadow_offset: np.ndarray  # (dx, dy) ground metres of shadow offset per metre of height


def render_scene(
    height: int,
    width: int,
    *,
    gsd_m: float = 0.3,
    seed: int = 0,
    n_through: tuple[int, int] | None = None,
    n_branches: int | None = None,
    tree_density: float = 1.0,
    car_density: float = 1.0,
    building_density: float = 1.0,
    sun_azimuth_deg: float = 150.0,
    sun_elevation_deg: float = 55.0,
) -> SyntheticScene:
    """Render a synthetic aerial scene with roads and their ground truth.

    Parameters
    ----------
    height, width : int
        Size of the scene in pixels (at least 32 each).
    gsd_m : float, default 0.3
        Ground sampling distance in metres per pixel (0.05 to 2).
    seed : int, default 0
        Seed of all random choices; the same arguments give the same scene.
    n_through : tuple of int, optional
        Numbers of roughly horizontal and roughly vertical roads that cross the whole frame.
        Every horizontal one crosses every vertical one once inside the frame (an X-junction).
        Default: one of each per 300 m of frame extent, at least one of each.
    n_branches : int, optional
        Number of branch roads: each starts on an existing road (a T-junction) and ends on
        the first road it meets (another T-junction), beyond the frame or in a dead end.
        Default: one per 8 ha plus one. Fewer are placed when no valid position is found.
    tree_density, car_density, building_density : float, default 1.0
        Multipliers of the default numbers of trees, cars and buildings (0 for none).
    sun_azimuth_deg, sun_elevation_deg : float
        Sun position (azimuth clockwise from north, which is up); sets shading and shadows.

    Returns
    -------
    SyntheticScene
        Image and ground truth.

    Raises
    ------
    ConfigError
        If a size, the GSD, a count or a density is out of range.

    Examples
    --------
    >>> scene = render_scene(256, 256, seed=1, n_through=(1, 1))
    >>> scene.image.shape, scene.road_mask.dtype
    ((3, 256, 256), dtype('bool'))
    """
    _check_arguments(height, width, gsd_m, n_through, n_branches, (tree_density, car_density, building_density), sun_elevation_deg)
    layout_seq, texture_seq = np.random.SeedSequence(seed).spawn(2)
    layout_rng = np.random.default_rng(layout_seq)
    texture_rng = np.random.default_rng(texture_seq)
    salt = int(texture_seq.generate_state(1)[0])
    area_ha = height * width * gsd_m**2 / 1e4
    if n_through is None:
        n_through = (max(1, round(height * gsd_m / 300.0)), max(1, round(width * gsd_m / 300.0)))
    if n_branches is None:
        n_branches = round(area_ha / 8.0) + 1
    if sum(n_through) + n_branches > _MAX_ROADS:
        raise ConfigError(f"at most {_MAX_ROADS} roads per scene, got {sum(n_through) + n_branches}")
    sun = _make_sun(sun_azimuth_deg, sun_elevation_deg)

    roads = _through_roads(layout_rng, height, width, gsd_m, *n_through)
    roads += _branch_roads(layout_rng, roads, height, width, gsd_m, n_branches)
    index = _RoadIndex(roads, gsd_m)
    buildings = _place_buildings(layout_rng, index, height, width, gsd_m, area_ha * building_density)
    trees = _place_trees(layout_rng, roads, index, buildings, height, width, gsd_m, area_ha, tree_density)
    cars = _place_cars(layout_rng, roads, gsd_m, car_density)

    image = np.empty((3, height, width), dtype=np.uint8)
    _render_background(image, texture_rng, salt, gsd_m)
    scratch = np.empty(height * width, dtype=np.int32)
    road_mask = _render_roads(image, scratch, roads, gsd_m, texture_rng, salt)
    _render_cars(image, scratch, cars, sun)
    _render_shadows(image, scratch, trees, cars, buildings, gsd_m, sun)
    _render_buildings(image, buildings, gsd_m, sun, salt)
    _render_trees(image, scratch, trees, sun, texture_rng, salt)
    del scratch

    frame = box(0.0, 0.0, float(width), float(height))
    centerlines: list[LineString] = []
    widths: list[float] = []
    for road in roads:
        parts = shapely.get_parts(shapely.line_merge(road.line.intersection(frame)))
        for part in parts:
            if isinstance(part, LineString) and part.length > 0.0:
                centerlines.append(part)
                widths.append(road.width_m)
    return SyntheticScene(
        image=image,
        road_mask=road_mask,
        centerline_raster=_rasterize_centerlines(centerlines, height, width),
        centerlines=centerlines,
        road_width_m=np.asarray(widths, dtype=np.float64),
        gsd_m=float(gsd_m),
    )


def _check_arguments(
    height: int,
    width: int,
    gsd_m: float,
    n_through: tuple[int, int] | None,
    n_branches: int | None,
    densities: tuple[float, float, float],
    sun_elevation_deg: float,
) -> None:
    """Raise :class:`ConfigError` for arguments out of range."""
    if height < 32 or width < 32:
        raise ConfigError(f"scene must be at least 32 x 32 pixels, got {height} x {width}")
    if not 0.05 <= gsd_m <= 2.0:
        raise ConfigError(f"gsd_m must be in [0.05, 2], got {gsd_m}")
    if n_through is not None and (len(n_through) != 2 or min(n_through) < 0 or sum(n_through) < 1):
        raise ConfigError(f"n_through must be two counts >= 0 with at least one road, got {n_through}")
    if n_branches is not None and n_branches < 0:
        raise ConfigError(f"n_branches must be >= 0, got {n_branches}")
    if min(densities) < 0:
        raise ConfigError(f"densities must be >= 0, got {densities}")
    if not 5.0 <= sun_elevation_deg <= 90.0:
        raise ConfigError(f"sun_elevation_deg must be in [5, 90], got {sun_elevation_deg}")


def _make_sun(azimuth_deg: float, elevation_deg: float) -> _Sun:
    """Sun vector in pixel space (y points south) and shadow offset per metre of height."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    vector = np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])
    shadow = -vector[:2] / max(np.linalg.norm(vector[:2]), 1e-9) / np.tan(el)
    return _Sun(vector=vector, shadow_offset=shadow)


# ----------------------------------------------------------------------------- layout: roads


def _through_roads(rng: np.random.Generator, height: int, width: int, gsd: float, n_h: int, n_v: int) -> list[_Road]:
    """Gently curved roads crossing the frame, each the graph of a function of x (or y).

    The deviation of each road from its stratified offset stays within the frame and within
    a fifth of the spacing of its family, so two roads of a family never meet while every
    horizontal road crosses every vertical one exactly once, inside the frame.
    """
    roads: list[_Road] = []
    margin = _THROUGH_WIDTH_M[1] / gsd
    for horizontal, count in ((True, n_h), (False, n_v)):
        along, across = (width, height) if horizontal else (height, width)
        u = np.arange(-margin, along + margin + 1.0, 1.0)
        for i in range(count):
            offset = (i + rng.uniform(0.3, 0.7)) / count * across
            cap = min(0.2 * across / count, offset - 0.06 * across, 0.94 * across - offset)
            dev = rng.uniform(-0.15, 0.15) * (u - along / 2.0)
            for _ in range(2):
                wavelength = rng.uniform(150.0, 600.0) / gsd
                amplitude = rng.uniform(0.0, 0.12) * wavelength / (2.0 * np.pi)
                dev += amplitude * np.sin(2.0 * np.pi * u / wavelength + rng.uniform(0, 2 * np.pi))
            peak = np.abs(dev).max()
            if peak > cap:
                dev *= max(cap, 0.0) / peak
            v = offset + dev
            xy = np.column_stack((u, v) if horizontal else (v, u))
            line = LineString(xy).simplify(_SIMPLIFY_PX)
            roads.append(_Road(line=line, width_m=float(rng.uniform(*_THROUGH_WIDTH_M))))
    return roads


def _branch_roads(
    rng: np.random.Generator,
    roads: list[_Road],
    height: int,
    width: int,
    gsd: float,
    count: int,
) -> list[_Road]:
    """Curved roads starting perpendicular on a road and ending on the next road they meet.

    Candidates that come closer than 3 m (edge to edge) to any other road away from their two
    junctions, meet a road at a shallow angle, intersect themselves or are shorter than 25 m
    are drawn again (up to 30 tries per road).
    """
    branches: list[_Road] = []
    outer = box(-20.0 / gsd, -20.0 / gsd, width + 20.0 / gsd, height + 20.0 / gsd)
    inner = box(0.08 * width, 0.08 * height, 0.92 * width, 0.92 * height)
    gap = 3.0 / gsd
    for _ in range(count):
        for _attempt in range(30):
            branch = _branch_candidate(rng, roads + branches, outer, inner, gsd, gap)
            if branch is not None:
                branches.append(branch)
                break
    return branches


def _branch_candidate(
    rng: np.random.Generator,
    roads: list[_Road],
    outer: shapely.Polygon,
    inner: shapely.Polygon,
    gsd: float,
    gap: float,
) -> _Road | None:
    """One random branch road, or None if it violates the layout rules."""
    parent = roads[int(rng.integers(len(roads)))]
    visible = parent.line.intersection(inner)
    if visible.is_empty or visible.length < 1.0:
        return None
    start = visible.interpolate(rng.uniform(0.0, visible.length))
    s_parent = parent.line.project(start)
    p0 = np.asarray(parent.line.interpolate(s_parent - 1.0).coords[0])
    p1 = np.asarray(parent.line.interpolate(s_parent + 1.0).coords[0])
    heading0 = np.arctan2(p1[1] - p0[1], p1[0] - p0[0]) + rng.choice([-1.0, 1.0]) * np.pi / 2
    heading0 += rng.uniform(-0.25, 0.25)

    width_m = float(rng.uniform(*_BRANCH_WIDTH_M))
    half = width_m / 2.0 / gsd
    length = rng.uniform(150.0, 400.0) / gsd
    s = np.arange(0.0, length, 1.0)
    wavelength = rng.uniform(80.0, 250.0) / gsd
    curvature = (rng.uniform(-1.0, 1.0) / 150.0 + rng.uniform(0.0, 1.0 / 60.0) * np.sin(2 * np.pi * s / wavelength + rng.uniform(0, 2 * np.pi))) * gsd
    heading = heading0 + np.cumsum(curvature)
    xy = np.asarray(start.coords[0]) + np.concatenate(([[0.0, 0.0]], np.cumsum(np.column_stack((np.cos(heading), np.sin(heading))), axis=0)))
    inside = shapely.contains_xy(outer, xy[:, 0], xy[:, 1])
    n_in = int(np.argmin(inside)) if not inside.all() else len(xy)
    if n_in < 3:
        return None
    line = LineString(xy[:n_in])

    # cut at the first crossing with another road, away from the start junction
    start_zone = {id(r): (r.width_m / 2.0 / gsd + half + 2.0 / gsd) for r in roads}
    end_road: _Road | None = None
    cut = line.length
    for road in roads:
        hits = shapely.points(shapely.get_coordinates(line.intersection(road.line)))
        for along in shapely.line_locate_point(line, hits):
            if start_zone[id(road)] < along < cut:
                cut, end_road = float(along), road
    line = substring(line, 0.0, cut).simplify(_SIMPLIFY_PX)
    if line.length < 25.0 / gsd or not line.is_simple:
        return None

    # clearance from every road away from the two junctions
    head = 1.5 * start_zone[id(parent)]
    tail = 1.5 * start_zone[id(end_road)] if end_road is not None else 0.0
    if line.length <= head + tail + 1.0:
        return None
    core = substring(line, head, line.length - tail)
    for road in roads:
        if core.distance(road.line) < half + road.width_m / 2.0 / gsd + gap:
            return None
        if road is not parent and start.distance(road.line) < half + road.width_m / 2.0 / gsd + 10.0 / gsd:
            return None
    return _Road(line=line, width_m=width_m)


class _RoadIndex:
    """Edge clearance of points from the road network (distance to centreline minus half width)."""

    def __init__(self, roads: list[_Road], gsd: float) -> None:
        pieces, owner = [], []
        for k, road in enumerate(roads):
            coords = np.asarray(road.line.coords)
            for i in range(0, len(coords) - 1, 16):
                pieces.append(LineString(coords[i : i + 17]))
                owner.append(k)
        self._pieces = np.array(pieces, dtype=object)
        self._half = np.array([roads[k].width_m / 2.0 / gsd for k in owner])
        self._tree = shapely.STRtree(self._pieces)

    def clearance(self, xy: np.ndarray, reach: float) -> np.ndarray:
        """Edge clearance of each point of ``xy`` (n, 2), capped at ``reach`` pixels."""
        out = np.full(len(xy), float(reach))
        if len(xy) == 0:
            return out
        points = shapely.points(xy)
        pi, ri = self._tree.query(points, predicate="dwithin", distance=reach + float(self._half.max()))
        dist = shapely.distance(points[pi], self._pieces[ri]) - self._half[ri]
        np.minimum.at(out, pi, dist)
        return out


# ----------------------------------------------------------------------------- layout: objects


@dataclass(frozen=True)
class _Boxes:
    """Oriented boxes: centre (n, 2), half length and half width (n,) in px, heading (n,)."""

    centre: np.ndarray
    half_length: np.ndarray
    half_width: np.ndarray
    heading: np.ndarray
    colour: np.ndarray  # (n, 3)
    height_m: np.ndarray
    kind: np.ndarray  # buildings: 0 gable roof, 1 flat roof; cars: unused zeros

    def __len__(self) -> int:
        return len(self.centre)


@dataclass(frozen=True)
class _Trees:
    """Tree crowns: centre (n, 2) and radius (n,) in px, height in m, colour, outline phases."""

    centre: np.ndarray
    radius: np.ndarray
    height_m: np.ndarray
    colour: np.ndarray
    phases: np.ndarray  # (n, 3) phases of the 3-, 4- and 5-lobed outline terms

    def __len__(self) -> int:
        return len(self.centre)


def _place_buildings(
    rng: np.random.Generator,
    index: _RoadIndex,
    height: int,
    width: int,
    gsd: float,
    expected: float,
) -> _Boxes:
    """Rectangular buildings at least 4 m from roads and from each other."""
    n = int(rng.poisson(expected))
    centre = rng.uniform((0.0, 0.0), (width, height), size=(4 * n, 2))
    half_length = rng.uniform(4.0, 12.0, 4 * n) / gsd
    half_width = np.minimum(rng.uniform(3.0, 7.0, 4 * n) / gsd, half_length)
    radius = np.hypot(half_length, half_width)
    ok = index.clearance(centre, reach=1e9 if n == 0 else float(radius.max()) + 5.0 / gsd) > radius + 4.0 / gsd
    sel = np.zeros(0, dtype=np.int64)
    for i in np.flatnonzero(ok):
        if len(sel) == n:
            break
        if np.all(np.hypot(*(centre[sel] - centre[i]).T) > radius[sel] + radius[i] + 4.0 / gsd):
            sel = np.append(sel, i)
    return _Boxes(
        centre=centre[sel],
        half_length=half_length[sel],
        half_width=half_width[sel],
        heading=rng.uniform(0.0, np.pi, len(sel)),
        colour=_ROOF_COLOURS[rng.integers(len(_ROOF_COLOURS), size=len(sel))] * rng.uniform(0.9, 1.1, (len(sel), 1)),
        height_m=rng.uniform(4.0, 10.0, len(sel)),
        kind=(rng.random(len(sel)) < 0.25).astype(np.int8),
    )


def _place_trees(
    rng: np.random.Generator,
    roads: list[_Road],
    index: _RoadIndex,
    buildings: _Boxes,
    height: int,
    width: int,
    gsd: float,
    area_ha: float,
    density: float,
) -> _Trees:
    """Tree rows along roads (crowns over the road edges), clumps and single trees."""
    centres, radii, rows = [], [], []
    for road in roads:
        half = road.width_m / 2.0 / gsd
        for side in (-1.0, 1.0):
            if rng.random() > 0.5 * min(density, 1.0):
                continue
            s = np.arange(rng.uniform(0, 10.0 / gsd), road.line.length, rng.uniform(7.0, 12.0) / gsd)
            s = s[rng.random(len(s)) < 0.7]
            r = rng.uniform(2.0, 4.5, len(s)) / gsd
            p = shapely.get_coordinates(shapely.line_interpolate_point(road.line, s))
            q = shapely.get_coordinates(shapely.line_interpolate_point(road.line, s + 1.0))
            t = q - p
            t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
            offset = half + r * rng.uniform(-0.5, 0.6, len(s))
            centres.append(p + side * offset[:, None] * np.column_stack((-t[:, 1], t[:, 0])))
            radii.append(r)
            rows.append(np.ones(len(s), dtype=bool))
    n_clumps = int(rng.poisson(area_ha * 0.5 * density))
    clump_centre = rng.uniform((0.0, 0.0), (width, height), size=(n_clumps, 2))
    per_clump = rng.poisson(12, n_clumps)
    spread = np.repeat(rng.uniform(8.0, 25.0, n_clumps) / gsd, per_clump)
    n_single = int(rng.poisson(area_ha * 2.0 * density))
    loose = np.concatenate(
        (
            np.repeat(clump_centre, per_clump, axis=0) + rng.standard_normal((per_clump.sum(), 2)) * spread[:, None],
            rng.uniform((0.0, 0.0), (width, height), size=(n_single, 2)),
        )
    )
    centres.append(loose)
    radii.append(rng.uniform(2.0, 6.0, len(loose)) / gsd)
    rows.append(np.zeros(len(loose), dtype=bool))
    centre, radius, row = np.concatenate(centres), np.concatenate(radii), np.concatenate(rows)

    # rows may overhang their road by half a crown, other trees by a fifth
    clearance = index.clearance(centre, reach=float(radius.max(initial=1.0)))
    keep = clearance > np.where(row, -0.55, -0.2) * radius
    keep &= (centre[:, 0] > -radius) & (centre[:, 0] < width + radius)
    keep &= (centre[:, 1] > -radius) & (centre[:, 1] < height + radius)
    for c, hl, hw in zip(buildings.centre, buildings.half_length, buildings.half_width):
        keep &= np.hypot(*(centre - c).T) > min(hl, hw)
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(radius[kept], kind="stable")]  # small (low) trees are drawn first
    n = len(kept)
    base = np.array([[52, 78, 38], [38, 66, 36], [64, 86, 44], [46, 70, 50]], dtype=np.float32)
    return _Trees(
        centre=centre[kept],
        radius=radius[kept],
        height_m=radius[kept] * gsd * rng.uniform(2.2, 3.2, n),
        colour=base[rng.integers(len(base), size=n)] * rng.uniform(0.85, 1.15, (n, 1)),
        phases=rng.uniform(0.0, 2 * np.pi, (n, 3)),
    )


def _place_cars(rng: np.random.Generator, roads: list[_Road], gsd: float, density: float) -> _Boxes:
    """Cars in the lanes of the roads (two lanes from 6 m), at least 8 m apart in a lane."""
    centre, heading = [], []
    for road in roads:
        n = int(rng.poisson(road.line.length * gsd / 50.0 * density))
        s = np.sort(rng.uniform(0.0, road.line.length, n))
        lane = rng.integers(0, 2, n) if road.width_m >= _CENTRE_LINE_MIN_M else np.zeros(n, int)
        keep = np.ones(n, dtype=bool)
        for k in (0, 1):
            idx = np.flatnonzero(lane == k)
            keep[idx[1:]] &= np.diff(s[idx]) > 8.0 / gsd
        s, lane = s[keep], lane[keep]
        p = shapely.get_coordinates(shapely.line_interpolate_point(road.line, s))
        q = shapely.get_coordinates(shapely.line_interpolate_point(road.line, s + 1.0))
        t = q - p
        t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
        normal = np.column_stack((-t[:, 1], t[:, 0]))
        shift = np.where(road.width_m >= _CENTRE_LINE_MIN_M, road.width_m / 4.0 / gsd, 0.0)
        sign = np.where(lane == 0, 1.0, -1.0)
        centre.append(p + (sign * shift)[:, None] * normal)
        heading.append(np.arctan2(t[:, 1], t[:, 0]) + np.where(lane == 0, 0.0, np.pi))
    c, h = np.concatenate(centre), np.concatenate(heading)
    n = len(c)
    return _Boxes(
        centre=c,
        half_length=np.full(n, 2.25 / gsd),
        half_width=np.full(n, 0.9 / gsd),
        heading=h,
        colour=_CAR_COLOURS[rng.integers(len(_CAR_COLOURS), size=n)],
        height_m=np.full(n, 1.5),
        kind=np.zeros(n, dtype=np.int8),
    )


# ----------------------------------------------------------------------------- noise


def _hash01(i: np.ndarray, j: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random values in [-1, 1] of integer lattice points (murmur3 mix)."""
    h = (i.astype(np.uint32) * np.uint32(0x27D4EB2D)) ^ (j.astype(np.uint32) * np.uint32(0x165667B1))
    h ^= np.uint32(salt & 0xFFFFFFFF)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(2.0 / (1 << 24)) - np.float32(1.0)


def _noise_rows(r0: int, r1: int, width: int, spacing: float, salt: int) -> np.ndarray:
    """Value noise on a lattice of ``spacing`` px, bilinear, for rows ``r0:r1`` (float32)."""
    pr = (np.arange(r0, r1) + 0.5) / spacing
    pc = (np.arange(width) + 0.5) / spacing
    i0, j0 = np.floor(pr).astype(np.int64), np.floor(pc).astype(np.int64)
    fr, fc = (pr - i0).astype(np.float32), (pc - j0).astype(np.float32)
    li = np.arange(i0[0], i0[-1] + 2)
    lj = np.arange(j0[0], j0[-1] + 2)
    lattice = _hash01(li[:, None], lj[None, :], salt)
    rows = lattice[i0 - li[0]] * (1 - fr)[:, None] + lattice[i0 - li[0] + 1] * fr[:, None]
    return rows[:, j0 - lj[0]] * (1 - fc) + rows[:, j0 - lj[0] + 1] * fc


def _noise_at(x: np.ndarray, y: np.ndarray, spacing: float, salt: int) -> np.ndarray:
    """Value noise of :func:`_noise_rows` sampled at pixel-space points."""
    px, py = x / spacing, y / spacing
    i0, j0 = np.floor(py).astype(np.int64), np.floor(px).astype(np.int64)
    fr, fc = (py - i0).astype(np.float32), (px - j0).astype(np.float32)
    top = _hash01(i0, j0, salt) * (1 - fc) + _hash01(i0, j0 + 1, salt) * fc
    bottom = _hash01(i0 + 1, j0, salt) * (1 - fc) + _hash01(i0 + 1, j0 + 1, salt) * fc
    return top * (1 - fr) + bottom * fr


def _white(rng: np.random.Generator, n: int | tuple[int, ...]) -> np.ndarray:
    """Uniform white noise in [-1, 1], float32, from random bytes (fast)."""
    shape = (n,) if isinstance(n, int) else n
    raw = np.frombuffer(rng.bytes(int(np.prod(shape))), dtype=np.uint8).reshape(shape)
    return raw.astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)


# ----------------------------------------------------------------------------- background


def _render_background(image: np.ndarray, rng: np.random.Generator, salt: int, gsd: float) -> None:
    """Fill ``image`` with field patches, crop rows and textured noise, block by block."""
    _, height, width = image.shape
    cell = max(1.0, 1.5 / gsd)  # colour lattice spacing (px)
    spacing = 50.0 / gsd / cell  # Voronoi seed spacing in lattice cells
    gh, gw = int(np.ceil(height / cell)) + 2, int(np.ceil(width / cell)) + 2
    sh, sw = int(np.ceil(gh / spacing)) + 2, int(np.ceil(gw / spacing)) + 2
    seeds = (np.stack(np.meshgrid(np.arange(sh), np.arange(sw), indexing="ij"), -1) + rng.uniform(0.0, 1.0, (sh, sw, 2))) * spacing
    cover = rng.choice(len(_LAND_COVERS), size=(sh, sw), p=_LAND_COVERS[:, 3])
    tint = rng.uniform(0.88, 1.12, (sh, sw, 1)) * rng.uniform(0.96, 1.04, (sh, sw, 3))
    seed_rgb = (_LAND_COVERS[cover, :3] * tint).astype(np.float32)
    orientation = rng.integers(0, 2, (sh, sw))
    seed_rows = _LAND_COVERS[cover, 4]

    gi, gj = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
    ci, cj = np.floor(gi / spacing).astype(np.int64), np.floor(gj / spacing).astype(np.int64)
    best = np.full((gh, gw), np.inf)
    label_i, label_j = np.zeros((gh, gw), np.int64), np.zeros((gh, gw), np.int64)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            ni, nj = np.clip(ci + di, 0, sh - 1), np.clip(cj + dj, 0, sw - 1)
            d = (seeds[ni, nj, 0] - gi) ** 2 + (seeds[ni, nj, 1] - gj) ** 2
            closer = d < best
            best[closer], label_i[closer], label_j[closer] = d[closer], ni[closer], nj[closer]
    colour = np.moveaxis(seed_rgb[label_i, label_j], -1, 0)  # (3, gh, gw)
    rows_amp = seed_rows[label_i, label_j]
    row_amps = np.stack([rows_amp * (orientation[label_i, label_j] == k) for k in (0, 1)])

    theta = rng.uniform(0.0, np.pi)
    period = rng.uniform(1.5, 2.5, 2) / gsd
    x = np.arange(width) + 0.5
    freq = [(2 * np.pi / period[k] * np.cos(theta + k * np.pi / 2), 2 * np.pi / period[k] * np.sin(theta + k * np.pi / 2)) for k in (0, 1)]
    sx = [np.sin(a * x).astype(np.float32) for a, _ in freq]
    cx = [np.cos(a * x).astype(np.float32) for a, _ in freq]
    octaves = [(40.0, 0.08), (10.0, 0.07), (2.5, 0.07), (0.9, 0.06)]

    def block(r0: int) -> None:
        r1 = min(height, r0 + _ROW_BLOCK)
        y = np.arange(r0, r1) + 0.5
        lum = 1.0 + 0.07 * _white(np.random.default_rng([salt, r0]), (r1 - r0, width))
        for k, (spacing_m, amplitude) in enumerate(octaves):
            lum += amplitude * _noise_rows(r0, r1, width, max(spacing_m / gsd, 1.0), salt + k)
        for k, (_, b) in enumerate(freq):
            amp = _upsample_rows(row_amps[k], cell, r0, r1, width)
            stripes = np.cos(b * y).astype(np.float32)[:, None] * sx[k] + np.sin(b * y).astype(np.float32)[:, None] * cx[k]
            lum += amp * stripes
        # yellowish / bluish-green tint variation of the vegetation
        chroma = _noise_rows(r0, r1, width, max(8.0 / gsd, 1.0), salt + 7) + 0.5 * _noise_rows(r0, r1, width, max(2.0 / gsd, 1.0), salt + 8)
        for band, tint in enumerate((0.09, 0.0, -0.06)):
            rgb = _upsample_rows(colour[band], cell, r0, r1, width) * lum
            if tint:
                rgb *= 1.0 + tint * chroma
            image[band, r0:r1] = np.clip(rgb, 0, 255).astype(np.uint8)

    # blocks are independent (own noise generator), so threads keep the result deterministic
    with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8)) as pool:
        list(pool.map(block, range(0, height, _ROW_BLOCK)))


def _upsample_rows(grid: np.ndarray, cell: float, r0: int, r1: int, width: int) -> np.ndarray:
    """Bilinear interpolation of a lattice of spacing ``cell`` px for rows ``r0:r1``."""
    pr = (np.arange(r0, r1) + 0.5) / cell
    pc = (np.arange(width) + 0.5) / cell
    i0, j0 = np.floor(pr).astype(np.int64), np.floor(pc).astype(np.int64)
    fr, fc = (pr - i0).astype(np.float32), (pc - j0).astype(np.float32)
    g = grid.astype(np.float32, copy=False)
    rows = g[i0] * (1 - fr)[:, None] + g[i0 + 1] * fr[:, None]
    return rows[:, j0] * (1 - fc) + rows[:, j0 + 1] * fc


# ----------------------------------------------------------------------------- sparse rendering


def _batches(sizes: np.ndarray) -> Iterator[slice]:
    """Consecutive slices of objects whose summed ``sizes`` stay near :data:`_BATCH`."""
    ends = np.cumsum(sizes)
    start = 0
    while start < len(sizes):
        done = int(ends[start - 1]) if start else 0
        stop = min(max(int(np.searchsorted(ends, done + _BATCH, side="right")), start + 1), len(sizes))
        yield slice(start, stop)
        start = stop


def _spans(obj: np.ndarray, row: np.ndarray, c0: np.ndarray, c1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expand row spans ``[c0, c1)`` of objects into one ``(obj, row, col)`` entry per pixel."""
    n = np.maximum(c1 - c0, 0)
    first = np.cumsum(n) - n
    span = np.repeat(np.arange(len(n)), n)
    col = c0[span] + np.arange(len(span)) - first[span]
    return obj[span], row[span], col


def _windows(x0: np.ndarray, y0: np.ndarray, x1: np.ndarray, y1: np.ndarray, height: int, width: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pixels of axis-aligned boxes (pixel space) clipped to the frame, in batches.

    Yields ``(obj, row, col)``: the box index and the pixel of every covered pixel.
    """
    c0 = np.clip(np.floor(x0), 0, width).astype(np.int64)
    c1 = np.clip(np.ceil(x1), 0, width).astype(np.int64)
    r0 = np.clip(np.floor(y0), 0, height).astype(np.int64)
    r1 = np.clip(np.ceil(y1), 0, height).astype(np.int64)
    n_rows = np.maximum(r1 - r0, 0)
    for part in _batches(n_rows * np.maximum(c1 - c0, 0)):
        objs = np.arange(len(n_rows))[part]
        obj = np.repeat(objs, n_rows[part])
        row = r0[obj] + np.arange(len(obj)) - np.repeat(np.cumsum(n_rows[part]) - n_rows[part], n_rows[part])
        yield _spans(obj, row, c0[obj], c1[obj])


def _capsules(p: np.ndarray, q: np.ndarray, radius: np.ndarray, height: int, width: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pixels whose centres lie within ``radius`` of segments ``p``-``q`` (n, 2), in batches.

    Each row of a capsule (a segment swept by a disc) is one span, the union of the spans of
    its rectangle and its two end discs, so no pixel farther than ``radius`` is enumerated.
    Yields ``(obj, row, col)`` like :func:`_windows`.
    """
    r0 = np.clip(np.ceil(np.minimum(p[:, 1], q[:, 1]) - radius - 0.5), 0, height).astype(np.int64)
    r1 = np.clip(np.floor(np.maximum(p[:, 1], q[:, 1]) + radius - 0.5) + 1, 0, height)
    n_rows = np.maximum(r1.astype(np.int64) - r0, 0)
    d = q - p
    normal = np.column_stack((-d[:, 1], d[:, 0]))
    normal *= (radius / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12))[:, None]
    corners = np.stack((p + normal, q + normal, q - normal, p - normal), axis=1)
    est = n_rows * (np.abs(d[:, 0]) + 2 * radius + 2)
    for part in _batches(est):
        objs = np.arange(len(n_rows))[part]
        obj = np.repeat(objs, n_rows[part])
        row = r0[obj] + np.arange(len(obj)) - np.repeat(np.cumsum(n_rows[part]) - n_rows[part], n_rows[part])
        yc = row + 0.5
        left = np.full(len(obj), np.inf)
        right = np.full(len(obj), -np.inf)
        for centre in (p, q):
            h2 = radius[obj] ** 2 - (yc - centre[obj, 1]) ** 2
            half = np.sqrt(np.maximum(h2, 0.0))
            left = np.where(h2 >= 0, np.minimum(left, centre[obj, 0] - half), left)
            right = np.where(h2 >= 0, np.maximum(right, centre[obj, 0] + half), right)
        for k in range(4):
            a, b = corners[obj, k], corners[obj, (k + 1) % 4]
            dy = b[:, 1] - a[:, 1]
            cross = ((yc - a[:, 1]) * (yc - b[:, 1]) <= 0) & (dy != 0)
            x = a[:, 0] + (yc - a[:, 1]) / np.where(dy != 0, dy, 1.0) * (b[:, 0] - a[:, 0])
            left = np.where(cross, np.minimum(left, x), left)
            right = np.where(cross, np.maximum(right, x), right)
        c0 = np.clip(np.ceil(left - 0.5), 0, width)
        c1 = np.clip(np.floor(right - 0.5) + 1, 0, width)
        ok = c1 > c0
        yield _spans(obj[ok], row[ok], c0[ok].astype(np.int64), c1[ok].astype(np.int64))


def _topmost(flat: np.ndarray, z: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """Mask of the entries that are highest (largest ``z``) at their pixel, one per pixel."""
    fbuf = scratch.view(np.float32)
    fbuf[flat] = -np.inf
    np.maximum.at(fbuf, flat, z.astype(np.float32))
    top = np.flatnonzero(fbuf[flat] == z.astype(np.float32))
    scratch[flat[top]] = np.arange(len(top), dtype=np.int32)  # ties: one claim survives
    keep = np.zeros(len(flat), dtype=bool)
    keep[top[scratch[flat[top]] == np.arange(len(top), dtype=np.int32)]] = True
    return keep


def _over(image: np.ndarray, flat: np.ndarray, alpha: np.ndarray, rgb: np.ndarray) -> None:
    """Alpha-composite colours ``rgb`` (3, n) over the pixels ``flat`` (unique) of ``image``."""
    for band in range(3):
        view = image[band].reshape(-1)
        old = view[flat].astype(np.float32)
        view[flat] = np.clip(old + (rgb[band] - old) * alpha + 0.5, 0, 255).astype(np.uint8)


def _render_roads(
    image: np.ndarray,
    scratch: np.ndarray,
    roads: list[_Road],
    gsd: float,
    rng: np.random.Generator,
    salt: int,
) -> np.ndarray:
    """Draw roads with markings; return the road mask.

    Every pixel within reach of a road segment gets the key ``ceil(e * 1024) << 8 | road``
    where ``e`` is its distance to the centreline minus the half width; the minimum over all
    segments gives the signed edge distance to the road network and the road on top.
    """
    _, height, width = image.shape
    scratch.fill(np.iinfo(np.int32).max)
    marks = np.zeros(height * width, dtype=np.uint8)
    half = np.array([r.width_m / 2.0 / gsd for r in roads])
    allowed = [_marking_allowed(k, roads, gsd) for k in range(len(roads))]
    allowed_offset = np.concatenate(([0], np.cumsum([len(a) for a in allowed])))
    allowed_all = np.concatenate(allowed)

    seg_p, seg_q, seg_road, seg_s = [], [], [], []
    for k, r in enumerate(roads):
        line = shapely.segmentize(r.line, max(2.0 * half[k] + 2.0, 8.0))
        xy = np.asarray(line.coords)
        lengths = np.hypot(*np.diff(xy, axis=0).T)
        seg_p.append(xy[:-1])
        seg_q.append(xy[1:])
        seg_road.append(np.full(len(xy) - 1, k))
        seg_s.append(np.concatenate(([0.0], np.cumsum(lengths)[:-1])))
    p, q = np.concatenate(seg_p), np.concatenate(seg_q)
    road_of, s0 = np.concatenate(seg_road), np.concatenate(seg_s)
    reach = half[road_of] + 0.5
    dash = np.array(_DASH_M) / gsd
    mark_half = _MARK_WIDTH_M / 2.0 / gsd
    for obj, row, col in _capsules(p, q, reach, height, width):
        px, py = col + 0.5, row + 0.5
        d = q[obj] - p[obj]
        seg_len2 = np.maximum((d**2).sum(axis=1), 1e-12)
        t = np.clip(((px - p[obj, 0]) * d[:, 0] + (py - p[obj, 1]) * d[:, 1]) / seg_len2, 0, 1)
        dist = np.hypot(px - p[obj, 0] - t * d[:, 0], py - p[obj, 1] - t * d[:, 1])
        road = road_of[obj]
        edge = dist - half[road]
        near = edge < 0.5
        flat = (row * width + col)[near]
        key = (np.ceil(edge[near] * _KEY_SCALE).astype(np.int32) << 8) | road[near].astype(np.int32)
        np.minimum.at(scratch, flat, key)

        # dashed centre lines, off near junctions
        s = (s0[obj] + t * np.sqrt(seg_len2))[near]
        road, dist = road[near], dist[near]
        s_idx = np.minimum(s.astype(np.int64), allowed_offset[road + 1] - allowed_offset[road] - 1)
        cover = np.clip(mark_half + 0.5 - dist, 0.0, min(2 * mark_half, 1.0))
        on = ((s % dash.sum()) < dash[0]) & allowed_all[allowed_offset[road] + s_idx] & (cover > 0)
        np.maximum.at(marks, flat[on], (cover[on] * 255).astype(np.uint8))

    flat = np.flatnonzero(scratch < _KEY_LIMIT)
    key = scratch[flat]
    edge = (key >> 8).astype(np.float32) / np.float32(_KEY_SCALE)
    road = key & 0xFF
    road_mask = np.zeros((height, width), dtype=bool)
    road_mask.reshape(-1)[flat[edge <= 0]] = True

    alpha = np.clip(0.5 - edge, 0.0, 1.0)
    # one surface for the scene, slightly varied per road (junctions show no seams)
    base = _ASPHALT[rng.integers(len(_ASPHALT))] * rng.uniform(0.96, 1.04, (len(roads), 1))
    x, y = (flat % width + 0.5).astype(np.float32), (flat // width + 0.5).astype(np.float32)
    texture = 1.0 + 0.05 * _noise_at(x, y, 4.0 / gsd, salt + 11) + 0.04 * _noise_at(x, y, 0.6 / gsd, salt + 12) + 0.05 * _white(rng, len(flat))
    wide = np.array([r.width_m >= _EDGE_LINE_MIN_M for r in roads])[road]
    edge_cover = np.clip(mark_half + 0.5 - np.abs(edge + 0.5 / gsd), 0.0, min(2 * mark_half, 1.0))
    paint = np.maximum(marks[flat].astype(np.float32) / 255.0, np.where(wide, edge_cover, 0.0))
    rgb = base[road].T * texture
    rgb += (np.float32(215.0) - rgb) * paint * np.float32(0.9)
    _over(image, flat, alpha, rgb)
    return road_mask


def _marking_allowed(k: int, roads: list[_Road], gsd: float) -> np.ndarray:
    """Where road ``k`` may carry a centre line: per pixel of arc length, off at junctions."""
    line = roads[k].line
    allowed = np.full(int(np.ceil(line.length)) + 1, roads[k].width_m >= _CENTRE_LINE_MIN_M)
    if not allowed.any():
        return allowed
    s = np.arange(len(allowed), dtype=np.float64)
    for other in roads:
        if other is roads[k]:
            continue
        hits = shapely.points(shapely.get_coordinates(line.intersection(other.line)))
        for s_j in shapely.line_locate_point(line, hits):
            allowed &= np.abs(s - s_j) > other.width_m / 2.0 / gsd + 3.0 / gsd
    return allowed


def _local(obj: np.ndarray, row: np.ndarray, col: np.ndarray, centre: np.ndarray, heading: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of pixel centres along (u) and across (v) the heading of their object."""
    dx, dy = col + 0.5 - centre[obj, 0], row + 0.5 - centre[obj, 1]
    c, s = np.cos(heading[obj]), np.sin(heading[obj])
    return dx * c + dy * s, -dx * s + dy * c


def _box_windows(boxes: _Boxes, shift: np.ndarray, pad: float, height: int, width: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pixel windows around boxes whose centres are moved by ``shift`` (n, 2) px."""
    radius = np.hypot(boxes.half_length, boxes.half_width) + pad
    c = boxes.centre + shift
    return _windows(c[:, 0] - radius, c[:, 1] - radius, c[:, 0] + radius, c[:, 1] + radius, height, width)


def _render_cars(image: np.ndarray, scratch: np.ndarray, cars: _Boxes, sun: _Sun) -> None:
    """Draw cars as rounded boxes with dark windscreen and rear window, shaded across."""
    _, height, width = image.shape
    for obj, row, col in _box_windows(cars, np.zeros((len(cars), 2)), 1.0, height, width):
        u, v = _local(obj, row, col, cars.centre, cars.heading)
        a, b = cars.half_length[obj], cars.half_width[obj]
        rho = ((u / a) ** 4 + (v / b) ** 4) ** 0.25
        alpha = np.clip(0.5 - (rho - 1.0) * b, 0.0, 1.0)
        inside = alpha > 0
        obj, row, col, u, v, alpha = obj[inside], row[inside], col[inside], u[inside], v[inside], alpha[inside]
        flat = row * width + col
        keep = _topmost(flat, obj.astype(np.float32), scratch)
        ua = u[keep] / cars.half_length[obj[keep]]
        vb = v[keep] / cars.half_width[obj[keep]]
        glass = ((ua > 0.15) & (ua < 0.5)) | ((ua > -0.8) & (ua < -0.55))
        factor = np.where(glass, 0.3, np.where(np.abs(ua) < 0.55, 1.08, 1.0))
        factor = factor * (1.0 - 0.3 * vb**4) * (0.8 + 0.25 * sun.vector[2])
        rgb = cars.colour[obj[keep]].T * factor.astype(np.float32)
        _over(image, flat[keep], alpha[keep], rgb)


def _render_shadows(
    image: np.ndarray,
    scratch: np.ndarray,
    trees: _Trees,
    cars: _Boxes,
    buildings: _Boxes,
    gsd: float,
    sun: _Sun,
) -> None:
    """Darken (and tint blue) the ground in the shadows of trees, cars and buildings."""
    _, height, width = image.shape
    strength = scratch.view(np.float32)
    strength.fill(0.0)
    offset_px = sun.shadow_offset / gsd  # px of offset per metre of height

    # tree crowns: capsules from the shadow of the crown bottom to that of the crown top
    top = trees.height_m[:, None] * offset_px
    bottom = np.maximum(trees.height_m - 1.8 * trees.radius * gsd, 0.5)[:, None] * offset_px
    p, q = trees.centre + bottom, trees.centre + top
    for obj, row, col in _capsules(p, q, 0.9 * trees.radius + 1.0, height, width):
        px, py = col + 0.5, row + 0.5
        d = q[obj] - p[obj]
        t = np.clip(((px - p[obj, 0]) * d[:, 0] + (py - p[obj, 1]) * d[:, 1]) / np.maximum((d**2).sum(axis=1), 1e-12), 0.0, 1.0)
        dist = np.hypot(px - p[obj, 0] - t * d[:, 0], py - p[obj, 1] - t * d[:, 1])
        s = np.clip((0.9 * trees.radius[obj] - dist) / 2.0 + 0.5, 0.0, 1.0)
        np.maximum.at(strength, row * width + col, s.astype(np.float32))

    # cars and buildings: the box swept along its shadow (convex hull), minus the box itself
    for boxes in (cars, buildings):
        if len(boxes) == 0:
            continue
        shift = boxes.height_m[:, None] * offset_px
        corners = _box_corners(boxes)
        hulls = shapely.convex_hull(shapely.multipoints(np.concatenate((corners, corners + shift[:, None, :]), axis=1)))
        normals, offsets = _convex_halfplanes(hulls)
        for obj, row, col in _box_windows(boxes, shift / 2.0, float(np.abs(shift).max()) / 2.0 + 2.0, height, width):
            px, py = col + 0.5, row + 0.5
            sd = np.full(len(obj), -np.inf)
            for k in range(normals.shape[1]):
                sd = np.maximum(sd, normals[obj, k, 0] * px + normals[obj, k, 1] * py - offsets[obj, k])
            u, v = _local(obj, row, col, boxes.centre, boxes.heading)
            own = np.maximum(np.abs(u) - boxes.half_length[obj], np.abs(v) - boxes.half_width[obj])
            s = np.clip(0.5 - sd, 0.0, 1.0) * np.clip(own + 0.5, 0.0, 1.0)
            np.maximum.at(strength, row * width + col, s.astype(np.float32))

    flat = np.flatnonzero(strength > 0)
    s = strength[flat]
    for band in range(3):
        view = image[band].reshape(-1)
        view[flat] = (view[flat] * (1.0 - s * (1.0 - _SHADOW_RGB[band])) + 0.5).astype(np.uint8)


def _box_corners(boxes: _Boxes) -> np.ndarray:
    """Corners (n, 4, 2) of oriented boxes, counter-clockwise in pixel space."""
    c, s = np.cos(boxes.heading), np.sin(boxes.heading)
    along = np.stack((c, s), -1) * boxes.half_length[:, None]
    across = np.stack((-s, c), -1) * boxes.half_width[:, None]
    signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float64)
    return boxes.centre[:, None, :] + signs[None, :, 0, None] * along[:, None, :] + signs[None, :, 1, None] * across[:, None, :]


def _convex_halfplanes(hulls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outward unit normals (n, k, 2) and offsets (n, k) of the edges of convex polygons.

    Polygons with fewer than ``k`` edges repeat their first edge (a duplicate half-plane).
    """
    rings = [np.asarray(h.exterior.coords) for h in hulls]
    k = max(len(r) - 1 for r in rings)
    normals = np.zeros((len(rings), k, 2))
    offsets = np.zeros((len(rings), k))
    for i, ring in enumerate(rings):
        ring = ring if shapely.LinearRing(ring).is_ccw else ring[::-1]
        edge = np.diff(ring, axis=0)
        n = np.column_stack((edge[:, 1], -edge[:, 0]))  # outward for counter-clockwise (y up)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        n = np.concatenate((n, np.repeat(n[:1], k - len(n), axis=0)))
        start = np.concatenate((ring[:-1], np.repeat(ring[:1], k - len(edge), axis=0)))
        normals[i], offsets[i] = n, (n * start).sum(axis=1)
    return normals, offsets


def _render_buildings(image: np.ndarray, buildings: _Boxes, gsd: float, sun: _Sun, salt: int) -> None:
    """Draw gable roofs (two shaded halves, lighter ridge) and flat roofs (darker parapet)."""
    _, height, width = image.shape
    pitch = np.radians(35.0)
    for obj, row, col in _box_windows(buildings, np.zeros((len(buildings), 2)), 1.0, height, width):
        u, v = _local(obj, row, col, buildings.centre, buildings.heading)
        a, b = buildings.half_length[obj], buildings.half_width[obj]
        sd = np.maximum(np.abs(u) - a, np.abs(v) - b)
        alpha = np.clip(0.5 - sd, 0.0, 1.0)
        inside = alpha > 0
        obj, row, col, v, sd, alpha = obj[inside], row[inside], col[inside], v[inside], sd[inside], alpha[inside]
        flat = row * width + col
        heading = buildings.heading[obj]
        side = np.sign(v) + (v == 0)
        normal_x = -np.sin(heading) * side * np.sin(pitch)
        normal_y = np.cos(heading) * side * np.sin(pitch)
        gable_light = np.clip(normal_x * sun.vector[0] + normal_y * sun.vector[1] + np.cos(pitch) * sun.vector[2], 0.0, 1.0)
        gable = 0.45 + 0.65 * gable_light + 0.12 * (np.abs(v) < 0.15 / gsd)
        flat_roof = (0.6 + 0.45 * sun.vector[2]) * np.where(sd > -0.6 / gsd, 0.8, 1.0)
        light = np.where(buildings.kind[obj] == 1, flat_roof, gable)
        x, y = (col + 0.5).astype(np.float32), (row + 0.5).astype(np.float32)
        light = light * (1.0 + 0.06 * _noise_at(x, y, 0.6 / gsd, salt + 21))
        rgb = buildings.colour[obj].T * light.astype(np.float32)
        _over(image, flat, alpha, rgb)


def _render_trees(
    image: np.ndarray,
    scratch: np.ndarray,
    trees: _Trees,
    sun: _Sun,
    rng: np.random.Generator,
    salt: int,
) -> None:
    """Draw tree crowns: lobed outlines, dome shading from the sun, leafy texture.

    Within a batch the highest crown surface wins at each pixel; batches are drawn in order
    of crown size (the order of ``trees``), so larger crowns end up on top.
    """
    _, height, width = image.shape
    r_out = trees.radius * 1.2 + 1.0
    c = trees.centre
    for obj, row, col in _windows(c[:, 0] - r_out, c[:, 1] - r_out, c[:, 0] + r_out, c[:, 1] + r_out, height, width):
        dx, dy = col + 0.5 - c[obj, 0], row + 0.5 - c[obj, 1]
        angle = np.arctan2(dy, dx)
        ph = trees.phases[obj]
        lobes = 1.0 + 0.07 * (np.cos(3 * angle + ph[:, 0]) + np.cos(4 * angle + ph[:, 1]) + np.cos(5 * angle + ph[:, 2]))
        radius = trees.radius[obj] * lobes
        dist = np.hypot(dx, dy)
        alpha = np.clip(radius - dist + 0.5, 0.0, 1.0)
        inside = alpha > 0
        obj, row, col, dx, dy, radius, alpha = (obj[inside], row[inside], col[inside], dx[inside], dy[inside], radius[inside], alpha[inside])
        nx, ny = dx / radius, dy / radius
        nz = np.sqrt(np.clip(1.0 - nx**2 - ny**2, 0.0, 1.0))
        flat = row * width + col
        keep = _topmost(flat, trees.height_m[obj] - trees.radius[obj] * (1.0 - nz) * 0.3 + obj * 1e-4, scratch)
        obj, row, col, nx, ny, nz, alpha = (obj[keep], row[keep], col[keep], nx[keep], ny[keep], nz[keep], alpha[keep])
        light = np.clip(nx * sun.vector[0] + ny * sun.vector[1] + nz * sun.vector[2], 0.0, 1.0)
        x, y = (col + 0.5).astype(np.float32), (row + 0.5).astype(np.float32)
        leaves = 0.16 * _noise_at(x, y, 2.0, salt + 31) + 0.12 * _white(rng, len(obj)) + 0.1 * _noise_at(x, y, 5.0, salt + 32)
        shade = (0.45 + 0.8 * light) * (1.0 + leaves)
        rgb = trees.colour[obj].T * shade.astype(np.float32)
        _over(image, row * width + col, alpha, rgb)


# ----------------------------------------------------------------------------- centerline raster


def _rasterize_centerlines(lines: list[LineString], height: int, width: int) -> np.ndarray:
    """Rasterise lines as 1-pixel, 8-connected chains (DDA, then corner pixels removed)."""
    raster = np.zeros((height, width), dtype=bool)
    for line in lines:
        rc = _line_pixels(np.asarray(line.coords), height, width)
        raster[rc[:, 0], rc[:, 1]] = True
    return raster


def _line_pixels(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Ordered (row, col) pixels of a polyline: 8-connected, no redundant corner pixels."""
    p = xy[:-1] - 0.5
    d = np.diff(xy, axis=0)
    steps = np.maximum(np.ceil(np.abs(d).max(axis=1)).astype(np.int64), 1)
    seg = np.repeat(np.arange(len(d)), steps)
    j = np.arange(len(seg)) - np.repeat(np.cumsum(steps) - steps, steps)
    t = (j / steps[seg])[:, None]
    pts = np.concatenate((p[seg] + t * d[seg], xy[-1:] - 0.5))
    rc = np.column_stack((np.clip(np.rint(pts[:, 1]), 0, height - 1), np.clip(np.rint(pts[:, 0]), 0, width - 1))).astype(np.int64)
    rc = rc[np.concatenate(([True], np.any(rc[1:] != rc[:-1], axis=1)))]
    while len(rc) > 2:
        # a pixel whose neighbours in the chain touch each other is a redundant corner
        corner = np.abs(rc[2:] - rc[:-2]).max(axis=1) <= 1
        if not corner.any():
            break
        first = corner & ~np.concatenate(([False], corner[:-1]))  # first of each run
        keep = np.ones(len(rc), dtype=bool)
        keep[1:-1] = ~first
        rc = rc[keep]
    return rc
