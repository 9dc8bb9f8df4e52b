"""Map-updating results drawn over their scene: new, missing and matched roads in colour, with their totals.

The change layers are those ``compare_network`` (pipeline ``update_map``) and ``geoseg compare``
write: ``<stem>_new``, ``_missing``, ``_matched``, ``_links`` beside the network, or layers of
one GeoPackage. Matched map roads are drawn thin and light, missing ones magenta, new ones
green, links thin (new: yellow, broken: orange); the legend gives each class's total length.
Without a scene (vectors only) the roads are drawn on a dark canvas over their extent.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from PIL import Image, ImageDraw

from geoseg.raster import GeoInfo
from geoseg.report.overlay import _font, read_preview
from geoseg.steps.compare import CHANGE_LAYERS
from geoseg.vector import layer_names

__all__ = ["CHANGE_COLOURS", "find_changes", "read_changes", "changes_of_outputs", "render_changes", "change_legend_text"]

#: Colours of the change classes (and of the two kinds of link).
CHANGE_COLOURS: dict[str, tuple[int, int, int]] = {
    "matched": (230, 230, 230),
    "missing": (255, 40, 200),
    "new": (40, 225, 90),
    "new_link": (255, 235, 0),
    "broken_link": (255, 130, 0),
}
_HALO = (0, 0, 0)
_CANVAS = (45, 45, 50)


def find_changes(outputs: list[Path], stem: str) -> dict[str, tuple[Path, str | None]]:
    """Where a scene's change layers are among its output files: layer name -> (file, layer in it or None).

    They are ``<stem>_<layer>.<ext>`` files, or layers of the scene's GeoPackage ``<stem>.gpkg``.

    Parameters
    ----------
    outputs : list of pathlib.Path
        The scene's output files.
    stem : str
        The scene's output stem (the network's file name without its extension).

    Returns
    -------
    dict of str to (pathlib.Path, str or None)
        For each change layer found (``new``, ``missing``, ``matched``, ``links``): its file,
        and its layer name in a GeoPackage (None for a file of its own).

    Examples
    --------
    >>> sorted(find_changes([Path("out/a.shp"), Path("out/a_new.shp"), Path("out/a_missing.shp")], "a"))
    ['missing', 'new']
    >>> find_changes([Path("out/roads_new.shp"), Path("out/roads_new_nodes.shp")], "roads_new")
    {}
    """
    found: dict[str, tuple[Path, str | None]] = {}
    for path in outputs:
        if path.suffix.lower() == ".gpkg" and path.stem == stem and path.exists():
            names = layer_names(path)
            found.update({n: (path, n) for n in CHANGE_LAYERS if n in names})
            continue
        for name in CHANGE_LAYERS:
            if path.stem == f"{stem}_{name}":
                found[name] = (path, None)
    return found


def read_changes(where: dict[str, tuple[Path, str | None]]) -> dict[str, gpd.GeoDataFrame]:
    """Read the change layers found by :func:`find_changes`.

    Parameters
    ----------
    where : dict of str to (pathlib.Path, str or None)
        Change layer name -> (file, layer in it or None), as :func:`find_changes` gives it.

    Returns
    -------
    dict of str to geopandas.GeoDataFrame
        The layers by name.

    Raises
    ------
    geoseg.errors.VectorReadError
        If a layer cannot be read.
    """
    from geoseg.vector import read_lines

    return {name: read_lines(path, layer=layer) for name, (path, layer) in where.items()}


def change_legend_text(changes: dict[str, gpd.GeoDataFrame]) -> dict[str, str]:
    """Per class, its total as the legend and the report show it ("0.092 km in 2", ...); per kind of link, how many.

    Parameters
    ----------
    changes : dict of str to geopandas.GeoDataFrame
        Change layers by name, with a ``length_m`` column (``matched`` also ``offset_m``,
        ``links`` also ``kind``); see :func:`geoseg.map_update.change_totals`.

    Returns
    -------
    dict of str to str
        Legend text per class present (the ``matched`` text adds the mean offset when it is
        known) and, when ``links`` is present, the ``new_link`` and ``broken_link`` counts.

    Examples
    --------
    >>> import pandas as pd
    >>> change_legend_text({
    ...     "new": pd.DataFrame({"length_m": [10.0, 82.0]}),
    ...     "matched": pd.DataFrame({"length_m": [30.0, 10.0], "offset_m": [1.0, 3.0]}),
    ...     "links": pd.DataFrame({"length_m": [4.0, 6.0], "kind": ["new_link", "new_link"]}),
    ... })  # doctest: +NORMALIZE_WHITESPACE
    {'new': '0.092 km in 2', 'matched': '0.040 km in 2, offset 1.50 m',
     'new_link': '2', 'broken_link': '0'}
    """
    from geoseg.map_update import change_totals

    out = {}
    for name, total in change_totals(changes).items():
        if name == "links":
            out["new_link"], out["broken_link"] = f"{int(total['new_link'])}", f"{int(total['broken_link'])}"
            continue
        out[name] = f"{total['length_m'] / 1000:.3f} km in {int(total['count'])}"
        if name == "matched" and math.isfinite(total.get("offset_m", math.nan)):
            out[name] += f", offset {total['offset_m']:.2f} m"
    return out


def render_changes(
    scene: str | os.PathLike[str] | None,
    changes: dict[str, gpd.GeoDataFrame],
    *,
    max_size: int | None = None,
    line_width: int | None = None,
    legend: bool = True,
) -> Image.Image:
    """Draw the change layers over their scene (or, with ``scene=None``, on a canvas over their extent).

    Parameters
    ----------
    scene : path-like or None
        The scene the changes are in (same CRS: nothing is reprojected).
    changes : dict
        Change layers by name (``new``, ``missing``, ``matched``, ``links``), GeoDataFrames.
    max_size : int, optional
        Longest side in pixels (the scene is read decimated; a canvas defaults to 768).
    line_width : int, optional
        Width of the new and missing lines (default from the image size).
    legend : bool, default True
        Add a strip below with each class's colour and total.

    Returns
    -------
    PIL.Image.Image
        The RGB drawing (with the legend strip below it when ``legend``).

    Raises
    ------
    geoseg.errors.RasterReadError
        If the scene cannot be read.
    geoseg.errors.InputMismatchError
        If a layer is not in the scene's CRS.

    Examples
    --------
    >>> from geoseg.report.changes import find_changes, read_changes, render_changes
    >>> layers = read_changes(find_changes([Path("out/scene_a_new.shp"), Path("out/scene_a_missing.shp")], "scene_a"))  # doctest: +SKIP
    >>> render_changes("sample_data/scene_a.tif", layers, max_size=512).save("changes.png")  # doctest: +SKIP
    """
    if scene is not None:
        preview = read_preview(scene, max_size=max_size)
        _check_crs(changes, preview.geo, str(scene))
        image = Image.fromarray(preview.rgb, "RGB")
        geo, (sx, sy) = preview.geo, preview.scale
    else:
        geo = _canvas_grid(changes, max_size or 768)
        image = Image.new("RGB", (geo.width, geo.height), _CANVAS)
        sx = sy = 1.0
    rows, cols = image.height, image.width
    width = line_width if line_width is not None else int(np.clip(round(max(rows, cols) / 170), 2, 6))
    inv = ~geo.transform

    def to_image(xy: np.ndarray) -> list[tuple[float, float]]:
        c = inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c
        r = inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f
        return [tuple(p) for p in np.column_stack([c * sx - 0.5, r * sy - 0.5]).tolist()]

    draw = ImageDraw.Draw(image)
    plan = [("matched", max(1, width - 1)), ("missing", width), ("new", width)]
    for name, w in plan:
        frame = changes.get(name)
        for geom in frame.geometry if frame is not None else ():
            for part in shapely.get_parts(geom) if geom is not None else ():
                points = to_image(shapely.get_coordinates(part))
                draw.line(points, fill=_HALO, width=w + 2, joint="curve")
                draw.line(points, fill=CHANGE_COLOURS[name], width=w, joint="curve")
    links = changes.get("links")
    if links is not None:
        for geom, kind in zip(links.geometry, links["kind"] if len(links) else []):
            for part in shapely.get_parts(geom) if geom is not None else ():
                draw.line(to_image(shapely.get_coordinates(part)), fill=CHANGE_COLOURS.get(str(kind), (255, 255, 255)), width=max(1, width // 2))
    if not legend:
        return image
    strip = _legend(cols, change_legend_text(changes))
    framed = Image.new("RGB", (cols, rows + strip.height))
    framed.paste(image, (0, 0))
    framed.paste(strip, (0, rows))
    return framed


def _check_crs(changes: dict[str, gpd.GeoDataFrame], geo: GeoInfo, scene: str) -> None:
    from geoseg.errors import InputMismatchError

    for name, frame in changes.items():
        if frame.crs is not None and geo.georeferenced and geo.crs is not None and frame.crs != geo.crs:
            raise InputMismatchError(f"{scene}: the {name} layer is in {frame.crs.to_string()}, not in the scene's CRS ({geo.crs}); nothing is reprojected")


def _canvas_grid(changes: dict[str, gpd.GeoDataFrame], size: int) -> GeoInfo:
    """A grid of at most ``size`` pixels a side over the layers' extent (5 % margin)."""
    from affine import Affine

    frames = [f for f in changes.values() if len(f)]
    if not frames:
        return GeoInfo(size, size, None, Affine.identity(), (1.0, 1.0), False)
    bounds = np.array([f.total_bounds for f in frames])
    minx, miny = bounds[:, 0].min(), bounds[:, 1].min()
    maxx, maxy = bounds[:, 2].max(), bounds[:, 3].max()
    margin = 0.05 * max(maxx - minx, maxy - miny, 1e-9)
    minx, miny, maxx, maxy = minx - margin, miny - margin, maxx + margin, maxy + margin
    step = max(maxx - minx, maxy - miny) / size
    width, height = max(1, math.ceil((maxx - minx) / step)), max(1, math.ceil((maxy - miny) / step))
    return GeoInfo(width, height, None, Affine(step, 0, minx, 0, -step, maxy), (1.0, 1.0), False)


def _legend(width: int, texts: dict[str, str]) -> Image.Image:
    font = _font(12)
    pad, row_h = 10, 24
    items = [(name, f"{name.replace('_', ' ')}s: {text}" if name.endswith("_link") else f"{name}: {text}") for name, text in texts.items()]
    layout, x, rows = [], pad, 1
    for name, text in items:
        item_w = 30 + round(font.getlength(text))
        if x + item_w > width - pad and x > pad:
            rows, x = rows + 1, pad
        layout.append((x, (rows - 1) * row_h, name, text))
        x += item_w + pad
    strip = Image.new("RGB", (width, rows * row_h + 4), (250, 250, 250))
    draw = ImageDraw.Draw(strip)
    for x, y, name, text in layout:
        mid = y + row_h // 2 + 2
        colour = CHANGE_COLOURS.get(name, CHANGE_COLOURS["new_link"])
        draw.line([(x, mid), (x + 22, mid)], fill=_HALO, width=6)
        draw.line([(x, mid), (x + 22, mid)], fill=colour, width=4)
        draw.text((x + 28, mid), text, fill=(30, 30, 30), font=font, anchor="lm")
    return strip


def changes_of_outputs(outputs: list[Path], stem: str) -> dict[str, gpd.GeoDataFrame] | None:
    """The change layers among a scene's output files, read; None when there are none.

    Parameters
    ----------
    outputs : list of pathlib.Path
        The scene's output files.
    stem : str
        The scene's output stem (see :func:`find_changes`).

    Returns
    -------
    dict of str to geopandas.GeoDataFrame or None
        The change layers by name (:func:`read_changes`), or None when none is found.

    Raises
    ------
    geoseg.errors.VectorReadError
        If a change layer cannot be read.

    Examples
    --------
    >>> print(changes_of_outputs([Path("out/a.shp"), Path("out/a_nodes.shp")], "a"))
    None
    """
    where = find_changes(outputs, stem)
    return read_changes(where) if where else None
