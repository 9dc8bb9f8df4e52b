"""Training labels from a road map: road centerlines as vectors, drawn at their width in metres.

A user with a road map (OpenStreetMap, a national road layer, lines drawn in QGIS) trains on it
instead of hand-made masks. Each scene takes the lines that cross it, reprojected from the
map's CRS to the scene's (and this is logged), and labels:

- **road** (1): pixels within ``width/2 - ignore_m`` of a line (and every pixel a line passes
  through);
- **unlabelled** (255, left out of every loss): the *ignore band*, pixels within ``ignore_m`` of a
  road's edge on either side, where a map's uniform width is least to be trusted; pixels
  outside the labelled area (``labelled_within_m`` of a line, or the ``labelled_area`` polygons:
  a map that covers only part of a scene); pixels without data;
- **background** (0): everything else.

The width of each line is ``width_field`` (metres), or ``lanes_field`` × ``lane_width_m``, or
``width_m`` where those are missing or not positive numbers. Distances are measured in pixel
space with the scene's GSD, so a scene in a geographic CRS (degrees) is labelled in metres too.

Examples
--------
>>> import geopandas as gpd, numpy as np
>>> from affine import Affine
>>> from rasterio.crs import CRS
>>> from shapely.geometry import LineString
>>> from geoseg.raster import GeoInfo, Raster
>>> geo = GeoInfo(40, 40, CRS.from_epsg(32611), Affine(0.5, 0, 500000, 0, -0.5, 4000000), (0.5, 0.5), True)
>>> scene = Raster(np.zeros((3, 40, 40), np.uint8), geo, np.ones((40, 40), bool), "scene.tif")
>>> roads = gpd.GeoDataFrame(geometry=[LineString([(500000, 3999990), (500020, 3999990)])], crs=32611)
>>> labels = road_map_labels(scene, roads, "roads.gpkg", RoadMapSettings(width_m=6, ignore_m=1))
>>> labels[8:32, 20].tolist()  # 0.5 m pixels across the road: 4 m road, 2 m ignore band (1 m each side of the edge)
[0, 0, 0, 0, 255, 255, 255, 255, 1, 1, 1, 1, 1, 1, 1, 1, 255, 255, 255, 255, 0, 0, 0, 0]
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import shapely
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rasterio.features import rasterize

from geoseg.errors import InputMismatchError
from geoseg.raster import Raster
from geoseg.vector import check_degrees, keep_lines, read_lines, to_scene_crs

if TYPE_CHECKING:
    import geopandas as gpd

__all__ = ["RoadMap", "RoadMapSettings", "read_road_map", "road_map_labels"]

log = logging.getLogger("geoseg.training")

#: Label values (as :data:`geoseg.classifiers.training_data.UNLABELLED`).
_ROAD, _BACKGROUND, _UNLABELLED = 1, 0, 255


class RoadMapSettings(BaseModel):
    """How a road map becomes labels (all distances in metres; the ``data.road_map`` section of a training config).

    Attributes
    ----------
    width_m : float
        Road width where no attribute gives one.
    width_field : str, optional
        Attribute holding each road's width in metres.
    lanes_field : str, optional
        Attribute holding each road's lane count (width = lanes × ``lane_width_m``).
    lane_width_m : float
        Width of one lane.
    ignore_m : float
        Width of the unlabelled band on either side of each road's edge.
    labelled_within_m : float, optional
        Only pixels within this distance of a road are labelled (the map covers only the
        surroundings of its lines); None: the whole scene.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    width_m: float = Field(6.0, gt=0, description="road width where no attribute gives one (metres)")
    width_field: str | None = Field(None, description="attribute holding each road's width in metres")
    lanes_field: str | None = Field(None, description="attribute holding each road's lane count (width = lanes x lane_width_m)")
    lane_width_m: float = Field(3.5, gt=0, description="width of one lane (metres)")
    ignore_m: float = Field(1.0, ge=0, description="unlabelled band on either side of each road's edge (metres)")
    labelled_within_m: float | None = Field(None, gt=0, description="label only pixels this near a road (a map of part of a scene); null: all")

    @model_validator(mode="after")
    def _one_width_source(self) -> RoadMapSettings:
        if self.width_field and self.lanes_field:
            raise ValueError("give width_field or lanes_field, not both")
        return self


@dataclass
class RoadMap:
    """A road map read once, labelling each training scene it is given (:meth:`labels`).

    Attributes
    ----------
    path : str
        The map file.
    roads : geopandas.GeoDataFrame
        Its lines.
    settings : RoadMapSettings
    area : geopandas.GeoDataFrame, optional
        Polygons outside which nothing is labelled.
    area_path : str, optional
        The file of ``area``.
    """

    path: str
    roads: gpd.GeoDataFrame
    settings: RoadMapSettings
    area: gpd.GeoDataFrame | None = None
    area_path: str | None = None
    #: The lines and area reprojected to each scene CRS met so far (a map is reprojected once per CRS, not per scene).
    _projected: dict[str, tuple[gpd.GeoDataFrame, gpd.GeoDataFrame | None]] = field(default_factory=dict, repr=False)

    @classmethod
    def read(cls, path: str | os.PathLike[str], settings: RoadMapSettings, area: str | os.PathLike[str] | None = None) -> RoadMap:
        """Read the map (and the labelled-area polygons) once.

        Raises
        ------
        VectorReadError, InputMismatchError
            A file that cannot be read, a map without lines or without the named fields.
        """
        polygons = read_lines(area) if area is not None else None
        return cls(str(path), read_road_map(path, settings), settings, polygons, None if area is None else str(area))

    @property
    def partial(self) -> bool:
        """Whether the map labels only part of each scene (a labelled distance or area is set)."""
        return self.settings.labelled_within_m is not None or self.area is not None

    def labels(self, image: Raster) -> np.ndarray:
        """The scene's labels (:func:`road_map_labels`); a scene the map has no road in is said so in the log."""
        key = str(image.geo.crs) if image.geo.georeferenced else ""
        if key not in self._projected:
            area = _in_scene_crs(self.area, image, self.area_path or self.path, "the labelled area") if self.area is not None else None
            self._projected[key] = (_in_scene_crs(self.roads, image, self.path), area)
        roads, area = self._projected[key]
        labels = road_map_labels(image, roads, self.path, self.settings, area)
        if not (labels == _ROAD).any():
            if area is not None and (road_map_labels(image, roads, self.path, self.settings) == _ROAD).any():
                log.warning("warning: %s: the labelled area %s leaves none of this scene's roads; it trains as background only", image.source, self.area_path)
            else:
                log.warning("warning: %s: no road of %s crosses this scene; it trains as background only", image.source, self.path)
        return labels


def read_road_map(path: str | os.PathLike[str], settings: RoadMapSettings | None = None) -> gpd.GeoDataFrame:
    """Read a road map (any OGR vector format) and keep its lines.

    Parameters
    ----------
    path : path-like
        The map file.
    settings : RoadMapSettings, optional
        Its ``width_field`` and ``lanes_field``, when set, must be fields of the map; None:
        no field is checked.

    Returns
    -------
    geopandas.GeoDataFrame
        The line features, in the map's CRS (features that are not lines are left out, and
        this is logged).

    Raises
    ------
    VectorReadError
        Not a readable vector file.
    InputMismatchError
        No line in it, or a width or lanes field it does not have; the message names the file.
    """
    frame = read_lines(path)
    lines = keep_lines(frame, path, "a road map")
    check_degrees(path, lines.geometry.to_numpy(), lines.crs)  # projected coordinates in a GeoJSON without its CRS
    for name in (settings.width_field, settings.lanes_field) if settings else ():
        if name and name not in lines.columns:
            raise InputMismatchError(f"{path}: no field {name!r} (fields: {', '.join(c for c in lines.columns if c != 'geometry')})")
    if len(lines) < len(frame):
        log.info("%s: %d feature(s) that are not lines are left out", path, len(frame) - len(lines))
    return lines


def _widths_m(roads: gpd.GeoDataFrame, source: str, settings: RoadMapSettings) -> np.ndarray:
    """Each road's width in metres (the default where the attribute is missing or not a positive number)."""
    field = settings.width_field or settings.lanes_field
    if field is None:
        return np.full(len(roads), settings.width_m)
    import pandas as pd

    values = pd.to_numeric(roads[field], errors="coerce").to_numpy(dtype=float)
    if settings.lanes_field:
        values = values * settings.lane_width_m
    bad = ~(values > 0)
    if bad.any():
        log.info("%s: %d road(s) without a usable %r get the default width %g m", source, int(bad.sum()), field, settings.width_m)
    return np.where(bad, settings.width_m, values)


def road_map_labels(
    image: Raster, roads: gpd.GeoDataFrame, source: str, settings: RoadMapSettings, labelled_area: gpd.GeoDataFrame | None = None
) -> np.ndarray:
    """Labels of one scene from a road map (see the module docstring).

    Parameters
    ----------
    image : Raster
        The scene (its grid, CRS and valid-data mask are used).
    roads : geopandas.GeoDataFrame
        Road centerlines (:func:`read_road_map`), in any CRS.
    source : str
        The map's name, for messages.
    settings : RoadMapSettings
        Road widths and the ignore band, in metres.
    labelled_area : geopandas.GeoDataFrame, optional
        Polygons outside which nothing is labelled, in any CRS.

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` uint8: 1 road, 0 background, 255 unlabelled.

    Raises
    ------
    InputMismatchError
        A map without CRS over a georeferenced scene, or a map with one over a scene without
        georeferencing.
    """
    roads = _in_scene_crs(roads, image, source)
    if labelled_area is not None:
        labelled_area = _in_scene_crs(labelled_area, image, source)
    px = image.geo.gsd_m
    inverse = ~image.geo.transform
    to_pixels = [inverse.a, inverse.b, inverse.d, inverse.e, inverse.xoff, inverse.yoff]
    rows, cols = image.shape
    widths = _widths_m(roads, source, settings) / px
    lines = np.array([shapely.affinity.affine_transform(g, to_pixels) for g in roads.geometry], dtype=object)
    reach = widths / 2 + settings.ignore_m / px
    frame = shapely.box(0, 0, cols, rows)
    near = shapely.intersects(shapely.buffer(lines, reach), frame) if len(lines) else np.zeros(0, bool)
    lines, widths, reach = lines[near], widths[near], reach[near]
    labels = np.zeros((rows, cols), np.uint8)
    if len(lines):
        core = shapely.buffer(lines, np.maximum(widths / 2 - settings.ignore_m / px, 0.0))
        outer = _burn(shapely.buffer(lines, reach), (rows, cols), all_touched=True)
        road = _burn(core, (rows, cols)) | _burn(lines, (rows, cols))
        labels[outer] = _UNLABELLED
        labels[road] = _ROAD
    if settings.labelled_within_m is not None:
        within = _burn(shapely.buffer(lines, settings.labelled_within_m / px), (rows, cols), all_touched=True) if len(lines) else np.zeros_like(labels, bool)
        labels[~within] = _UNLABELLED
    if labelled_area is not None:
        polygons = [shapely.affinity.affine_transform(g, to_pixels) for g in labelled_area.geometry if g is not None]
        labels[~_burn(np.array(polygons, dtype=object), (rows, cols))] = _UNLABELLED
    labels[~image.valid] = _UNLABELLED
    return labels


def _burn(shapes: np.ndarray, shape: tuple[int, int], *, all_touched: bool = False) -> np.ndarray:
    """Pixels covered by ``shapes`` (pixel-space geometries) as a boolean raster."""
    shapes = shapes[~shapely.is_empty(shapes)] if len(shapes) else shapes
    if not len(shapes):
        return np.zeros(shape, bool)
    return rasterize(list(shapes), out_shape=shape, fill=0, default_value=1, all_touched=all_touched, dtype=np.uint8).astype(bool)


def _in_scene_crs(frame: gpd.GeoDataFrame, image: Raster, source: str, what: str = "the map") -> gpd.GeoDataFrame:
    placed, note = to_scene_crs(frame, image.geo, image.source, source, what)
    if note:
        log.info("%s", note)
    return placed
