"""A road network drawn over its scene, as a PNG a person can look at.

The scene is read at a reduced resolution when ``max_size`` is given: rasterio reads it
straight into an array of the output size (``out_shape``), so GDAL uses the file's overviews
when it has them and never hands over the full-resolution array. Lines are mapped from the
scene CRS to pixels by the scene's inverse affine transform (pixel centres at +0.5, see
``docs/CONVENTIONS.md``); nothing is reprojected, and a network in another CRS than its scene
is refused.

Edges are coloured by their ``confidence`` (0-1, the same scale for every scene and batch:
see :class:`geoseg.steps.NonMaxSuppression`) on a red → yellow → cyan ramp over a dark halo;
edges without a confidence (networks written by geoseg before it had one, thinning pipelines)
are light grey.
Junctions (degree >= 3) are white discs, dead ends (degree 1) black squares with a white rim.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from PIL import Image, ImageDraw, ImageFont
from pyproj import CRS as ProjCRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning as RioNotGeoreferencedWarning
from rasterio.errors import RasterioError

from geoseg.atomic import atomic_path
from geoseg.errors import InputMismatchError, RasterReadError
from geoseg.raster import GeoInfo, open_dataset, read_geoinfo, read_problem
from geoseg.report.stats import network_nodes, read_network

__all__ = [
    "ScenePreview",
    "read_preview",
    "render_overlay",
    "save_overlay",
    "confidence_colour",
    "RAMP",
    "NO_CONFIDENCE_COLOUR",
]

#: Colour ramp for the edge confidence, 0 to 1: (confidence, RGB).
RAMP: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.0, (230, 30, 40)),
    (0.35, (255, 150, 30)),
    (0.65, (255, 240, 60)),
    (1.0, (40, 230, 255)),
)
#: Colour of edges without a confidence value.
NO_CONFIDENCE_COLOUR = (205, 205, 205)
_HALO = (0, 0, 0)
_JUNCTION = (255, 255, 255)
_DEAD_END = (0, 0, 0)
_NODATA = (64, 64, 64)
#: GDAL block cache (MiB) while reading a preview: a decimated read of a scene without
#: overviews streams every block through the cache, which must not grow to the scene's size.
_READ_CACHE_BYTES = 64 * 2**20  # bytes: rasterio passes an integer to GDALSetCacheMax64 as is


@dataclass
class ScenePreview:
    """A scene read for display.

    Attributes
    ----------
    rgb : numpy.ndarray
        ``(rows, cols, 3)`` uint8 display image (grey scenes repeat their band).
    geo : GeoInfo
        The full-resolution scene's georeferencing.
    scale : tuple of float
        ``(x, y)`` display pixels per scene pixel.
    """

    rgb: np.ndarray
    geo: GeoInfo
    scale: tuple[float, float]


def _display_shape(height: int, width: int, max_size: int | None) -> tuple[int, int]:
    if max_size is None or max(height, width) <= max_size:
        return height, width
    factor = max_size / max(height, width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def _to_uint8(array: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """uint8 as it is; any other type stretched per band between its 2nd and 98th percentiles."""
    if array.dtype == np.uint8:
        return array
    out = np.zeros(array.shape, dtype=np.uint8)
    for i, band in enumerate(array.astype(np.float64)):
        values = band[valid & np.isfinite(band)]
        if values.size == 0:
            continue
        lo, hi = np.percentile(values, [2.0, 98.0])
        span = hi - lo if hi > lo else 1.0
        out[i] = np.clip(np.nan_to_num((band - lo) / span * 255.0), 0, 255).astype(np.uint8)
    return out


def read_preview(scene: str | os.PathLike[str], *, max_size: int | None = None) -> ScenePreview:
    """Read a scene for display, at most ``max_size`` pixels on its longer side.

    One band is shown grey, three or more as RGB from the first three; 16-bit and float
    bands are stretched by percentiles. Pixels without data are dark grey. With
    ``max_size``, the file is read decimated (overviews when present, average resampling)
    through a GDAL block cache of 64 MiB: the full-resolution array is never in memory.

    Parameters
    ----------
    scene : path-like
        The scene raster.
    max_size : int, optional
        Longest side of the preview in pixels (never enlarged); full resolution when not given.

    Returns
    -------
    ScenePreview
        The display image, the scene's georeferencing and the display scale.

    Raises
    ------
    geoseg.errors.RasterReadError
        If the scene cannot be opened or read.

    Examples
    --------
    >>> import tempfile
    >>> import rasterio
    >>> d = tempfile.TemporaryDirectory()
    >>> tif = f"{d.name}/scene.tif"
    >>> with rasterio.open(tif, "w", driver="GTiff", width=6, height=4, count=1, dtype="uint8",
    ...                    crs="EPSG:32618", transform=rasterio.Affine(10, 0, 0, 0, -10, 40)) as ds:
    ...     ds.write(np.arange(24, dtype=np.uint8).reshape(1, 4, 6) * 10)
    >>> p = read_preview(tif, max_size=3)
    >>> p.rgb.shape, p.scale
    ((2, 3, 3), (0.5, 0.5))
    >>> read_preview(tif).rgb[0, :, 0].tolist()  # 8-bit bands are shown as they are
    [0, 10, 20, 30, 40, 50]
    >>> d.cleanup()
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the caller hears about georeferencing separately
        geo, summary = read_geoinfo(scene)
    rows, cols = _display_shape(geo.height, geo.width, max_size)
    indexes = [1, 2, 3] if summary["count"] >= 3 else [1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RioNotGeoreferencedWarning)
            with rasterio.Env(GDAL_CACHEMAX=_READ_CACHE_BYTES), open_dataset(scene) as ds:
                shape = (len(indexes), rows, cols)
                array = ds.read(indexes, out_shape=shape, resampling=Resampling.average)
                valid = np.ones((rows, cols), dtype=bool)
                if any(MaskFlags.all_valid not in ds.mask_flag_enums[i - 1] for i in indexes):
                    valid = np.all(ds.read_masks(indexes, out_shape=shape, resampling=Resampling.nearest) > 0, axis=0)
    except RasterioError as exc:
        raise RasterReadError(read_problem(str(scene), exc)) from exc
    data = _to_uint8(array, valid)
    rgb = np.repeat(data, 3, axis=0) if len(indexes) == 1 else data
    rgb = np.ascontiguousarray(np.moveaxis(rgb, 0, -1))
    rgb[~valid] = _NODATA
    return ScenePreview(rgb=rgb, geo=geo, scale=(cols / geo.width, rows / geo.height))


def confidence_colour(value: float) -> tuple[int, int, int]:
    """The ramp colour of a confidence in [0, 1] (clipped); :data:`NO_CONFIDENCE_COLOUR` for NaN.

    Parameters
    ----------
    value : float
        The confidence.

    Returns
    -------
    (int, int, int)
        RGB colour, interpolated linearly between the stops of :data:`RAMP`.

    Examples
    --------
    >>> confidence_colour(0.0), confidence_colour(1.0), confidence_colour(float("nan"))
    ((230, 30, 40), (40, 230, 255), (205, 205, 205))
    """
    if not math.isfinite(value):
        return NO_CONFIDENCE_COLOUR
    t = min(1.0, max(0.0, value))
    for (t0, c0), (t1, c1) in zip(RAMP, RAMP[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            return tuple(round(a + f * (b - a)) for a, b in zip(c0, c1))  # type: ignore[return-value]
    return RAMP[-1][1]


def _same_crs(edges: gpd.GeoDataFrame, geo: GeoInfo) -> bool:
    if not geo.georeferenced or geo.crs is None or edges.crs is None:
        return not geo.georeferenced and edges.crs is None
    scene = ProjCRS.from_user_input(geo.crs.to_wkt())
    if edges.crs.equals(scene, ignore_axis_order=True):
        return True
    a, b = edges.crs.to_epsg(), scene.to_epsg()
    return a is not None and a == b


def _check_crs(edges: gpd.GeoDataFrame, geo: GeoInfo, scene: str, network: str) -> None:
    if _same_crs(edges, geo):
        return
    scene_crs = geo.crs.to_string() if geo.georeferenced and geo.crs is not None else "none (pixel coordinates)"
    net_crs = edges.crs.to_string() if edges.crs is not None else "none (pixel coordinates)"
    raise InputMismatchError(
        f"{network}: its CRS ({net_crs}) is not the CRS of the scene {scene} ({scene_crs}); "
        "geoseg draws a network only over the scene it was extracted from and does not reproject "
        "(reproject the network to the scene's CRS first, e.g. with ogr2ogr -t_srs)"
    )


def _load_network(network: str | os.PathLike[str] | gpd.GeoDataFrame | None) -> tuple[gpd.GeoDataFrame | None, str]:
    if network is None:
        return None, "<none>"
    if isinstance(network, gpd.GeoDataFrame):
        return network, "<GeoDataFrame>"
    return read_network(network), str(network)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _draw_legend(width: int, marker: int) -> Image.Image:
    """A strip ``width`` pixels wide: the confidence colour bar, the no-confidence swatch, the node markers."""
    font = _font(12)
    pad, bar_w, row_h = 10, 120, 26
    label_w = round(font.getlength("confidence")) + 6
    items = [(label_w + bar_w, "bar"), (28 + round(font.getlength("n/a")), "n/a")]
    items += [(20 + round(font.getlength(kind)), kind) for kind in ("junction", "dead end")]
    rows, x, layout = 1, pad, []
    for item_w, kind in items:
        if x + item_w > width - pad and x > pad:
            rows, x = rows + 1, pad
        layout.append((x, (rows - 1) * row_h, kind))
        x += item_w + pad
    strip = Image.new("RGB", (width, rows * row_h + 4), (250, 250, 250))
    draw = ImageDraw.Draw(strip)
    for x, y, kind in layout:
        mid = y + row_h // 2 + 2
        if kind == "bar":
            draw.text((x, mid), "confidence", fill=(30, 30, 30), font=font, anchor="lm")
            x0 = x + label_w
            for i in range(bar_w):
                draw.line([(x0 + i, mid - 5), (x0 + i, mid + 5)], fill=confidence_colour(i / (bar_w - 1)))
            draw.text((x0, mid + 6), "0", fill=(30, 30, 30), font=_font(9), anchor="lt")
            draw.text((x0 + bar_w, mid + 6), "1", fill=(30, 30, 30), font=_font(9), anchor="rt")
        elif kind == "n/a":
            draw.line([(x, mid), (x + 22, mid)], fill=_HALO, width=6)
            draw.line([(x, mid), (x + 22, mid)], fill=NO_CONFIDENCE_COLOUR, width=4)
            draw.text((x + 28, mid), "n/a", fill=(30, 30, 30), font=font, anchor="lm")
        else:
            _draw_node(draw, x + 8, mid, marker, junction=kind == "junction")
            draw.text((x + 20, mid), kind, fill=(30, 30, 30), font=font, anchor="lm")
    return strip


def _draw_node(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, *, junction: bool) -> None:
    box = [x - r, y - r, x + r, y + r]
    if junction:
        draw.ellipse(box, fill=_JUNCTION, outline=_HALO, width=max(1, round(r / 3)))
    else:
        draw.rectangle(box, fill=_DEAD_END, outline=_JUNCTION, width=max(1, round(r / 3)))


def render_overlay(
    scene: str | os.PathLike[str],
    network: str | os.PathLike[str] | gpd.GeoDataFrame | None,
    *,
    max_size: int | None = None,
    line_width: int | None = None,
    legend: bool = True,
) -> Image.Image:
    """Draw a road network over its scene.

    Parameters
    ----------
    scene : path-like
        The scene raster (GeoTIFF, PNG, ...).
    network : path-like, GeoDataFrame or None
        The network's lines in the scene's CRS (a GeoPackage's ``edges`` layer); edges
        coloured by their ``confidence`` column (0-1) when present. ``None`` draws the scene alone.
    max_size : int, optional
        Longest side of the drawn scene in pixels; the scene is read decimated to it (never
        enlarged). Full resolution when not given.
    line_width : int, optional
        Width of the coloured lines in pixels (default from the image size: 3 at 512 px, 2 to 6).
    legend : bool, default True
        Add a legend strip below the scene (the scene keeps its pixel grid at the top).

    Returns
    -------
    PIL.Image.Image
        RGB image: the scene (``max_size`` on its longer side at most) and the legend below it.

    Raises
    ------
    geoseg.errors.RasterReadError, geoseg.errors.VectorReadError
        If the scene or the network cannot be read.
    geoseg.errors.InputMismatchError
        If the network's CRS is not the scene's.

    Examples
    --------
    >>> from geoseg.report import render_overlay
    >>> render_overlay("sample_data/scene_a.tif", "out/scene_a.shp", max_size=256).save("a.png")  # doctest: +SKIP
    """
    edges, network_name = _load_network(network)
    preview = read_preview(scene, max_size=max_size)
    image = Image.fromarray(preview.rgb, "RGB")
    rows, cols = preview.rgb.shape[:2]
    width = line_width if line_width is not None else int(np.clip(round(max(rows, cols) / 170), 2, 6))
    marker = width + 2
    if edges is not None:
        _check_crs(edges, preview.geo, str(scene), network_name)
        confidence = edges["confidence"].to_numpy(dtype=float) if "confidence" in edges.columns else np.full(len(edges), np.nan)
        _draw_network(image, edges, confidence, preview, width, marker)
    if not legend:
        return image
    strip = _draw_legend(cols, marker)
    framed = Image.new("RGB", (cols, rows + strip.height))
    framed.paste(image, (0, 0))
    framed.paste(strip, (0, rows))
    return framed


def _draw_network(
    image: Image.Image,
    edges: gpd.GeoDataFrame,
    confidence: np.ndarray,
    preview: ScenePreview,
    width: int,
    marker: int,
) -> None:
    inv = ~preview.geo.transform
    sx, sy = preview.scale

    def to_image(xy: np.ndarray) -> np.ndarray:
        cols = inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c
        rows = inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f
        return np.column_stack([cols * sx - 0.5, rows * sy - 0.5])

    draw = ImageDraw.Draw(image)
    paths: list[tuple[list[tuple[float, float]], tuple[int, int, int]]] = []
    order = np.argsort(np.nan_to_num(confidence, nan=-np.inf), kind="stable")  # confident edges on top
    for i in order:
        geom = edges.geometry.iloc[i]
        if geom is None or geom.is_empty:
            continue
        colour = confidence_colour(float(confidence[i]))
        for part in shapely.get_parts(geom):
            xy = to_image(shapely.get_coordinates(part))
            paths.append(([tuple(p) for p in xy.tolist()], colour))
    for points, _ in paths:
        draw.line(points, fill=_HALO, width=width + 2, joint="curve")
    for points, colour in paths:
        draw.line(points, fill=colour, width=width, joint="curve")
    nodes, degree = network_nodes(edges)
    if len(nodes):
        for (x, y), d in zip(to_image(nodes).tolist(), degree.tolist()):
            if d == 1 or d >= 3:
                _draw_node(draw, x, y, marker, junction=d >= 3)


def save_overlay(
    scene: str | os.PathLike[str],
    network: str | os.PathLike[str] | gpd.GeoDataFrame | None,
    path: str | os.PathLike[str],
    **options: object,
) -> Path:
    """:func:`render_overlay` written as a PNG file, atomically.

    Parameters
    ----------
    scene, network
        As for :func:`render_overlay`.
    path : path-like
        The PNG to write (its folder is created if needed).
    **options
        Keyword options of :func:`render_overlay` (``max_size``,
        ``line_width``, ``legend``).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    geoseg.errors.RasterReadError, geoseg.errors.VectorReadError
        If the scene or the network cannot be read.
    geoseg.errors.InputMismatchError
        If the network's CRS is not the scene's.
    geoseg.errors.OutputWriteError
        If the PNG cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> import rasterio
    >>> d = tempfile.TemporaryDirectory()
    >>> tif = f"{d.name}/scene.tif"
    >>> with rasterio.open(tif, "w", driver="GTiff", width=6, height=4, count=1, dtype="uint8",
    ...                    crs="EPSG:32618", transform=rasterio.Affine(10, 0, 0, 0, -10, 40)) as ds:
    ...     ds.write(np.arange(24, dtype=np.uint8).reshape(1, 4, 6) * 10)
    >>> from PIL import Image
    >>> png = save_overlay(tif, None, Path(d.name) / "sub" / "a.png", legend=False)
    >>> png.name, Image.open(png).size
    ('a.png', (6, 4))
    >>> d.cleanup()
    """
    image = render_overlay(scene, network, **options)  # type: ignore[arg-type]
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)
