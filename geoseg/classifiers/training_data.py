"""Training data for road classifiers: image/mask pairs, or labelled vector samples over a scene."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rasterio.features import rasterize

from geoseg.errors import InputMismatchError, NotGeoreferencedWarning, RasterReadError
from geoseg.raster import Raster, read_raster
from geoseg.scene_checks import MASK_SHAPE, ValueSummary
from geoseg.vector import read_lines

__all__ = ["UNLABELLED", "pair_by_stem", "mask_labels", "class_labels", "sample_labels"]

log = logging.getLogger("geoseg.training")

#: Label value of pixels that are neither road nor background.
UNLABELLED = 255


def pair_by_stem(images: Sequence[Path], masks: Sequence[Path], what: str = "mask") -> list[tuple[Path, Path]]:
    """Match images and masks by file stem (a mask may add ``_mask`` to the image's stem).

    Parameters
    ----------
    images : sequence of pathlib.Path
        The image files.
    masks : sequence of pathlib.Path
        The mask files. A mask named exactly as its image's stem wins over one that adds
        ``_mask``; a file is never paired with itself.
    what : str, default "mask"
        What the second files are, for the message (``"edge raster (--edges)"``).

    Returns
    -------
    list of tuple of (pathlib.Path, pathlib.Path)
        ``(image, mask)`` pairs, in the order of ``images``.

    Raises
    ------
    RasterReadError
        An image without a mask is not an existing file either.
    InputMismatchError
        An image has no mask, or nothing matched.

    Examples
    --------
    >>> from pathlib import Path
    >>> images, masks = [Path("a.tif"), Path("b.tif")], [Path("m/b.tif"), Path("m/a_mask.tif")]
    >>> pairs = pair_by_stem(images, masks)
    >>> [(image.name, str(mask)) for image, mask in pairs]
    [('a.tif', 'm/a_mask.tif'), ('b.tif', 'm/b.tif')]
    >>> both = [Path("s/a.tif"), Path("s/a_mask.tif")]  # --images "s/*.tif" --masks "s/*_mask.tif"
    >>> [(image.name, mask.name) for image, mask in pair_by_stem(both, both[1:])]
    [('a.tif', 'a_mask.tif')]
    """
    by_stem = {}
    for m in masks:
        by_stem[m.stem] = m
        if m.stem.endswith("_mask"):
            by_stem.setdefault(m.stem[: -len("_mask")], m)
    mask_files = {str(m) for m in masks}
    pairs, missing = [], []
    for im in (im for im in images if str(im) not in mask_files):  # a file both globs match is a mask ("*.tif" and "*_mask.tif")
        if im.stem in by_stem and by_stem[im.stem] != im:
            pairs.append((im, by_stem[im.stem]))
        else:
            missing.append(str(im))
    gone = [name for name in missing if not Path(name).exists()]  # a mistyped image name has no mask either
    if gone:
        raise RasterReadError(f"{', '.join(gone)}: no such file")
    if missing:
        raise InputMismatchError(f"no {what} with the same file stem for: {', '.join(missing)}")
    if not pairs:
        raise InputMismatchError("no image/mask pairs: give --images and --masks globs that match files")
    return pairs


def mask_labels(image: Raster, mask_path: str | os.PathLike[str]) -> np.ndarray:
    """Labels from a road mask on the image's grid: 1 road (> 0), 0 background, 255 no data.

    Parameters
    ----------
    image : Raster
        The scene (its grid and valid-data mask are used).
    mask_path : path-like
        A raster whose first band is the mask. When both it and the image are georeferenced,
        they must lie on the same grid (CRS and pixel corners within a tenth of a pixel).

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` uint8 labels; 255 where the mask or the image has no data.

    Raises
    ------
    RasterReadError
        The mask cannot be read.
    InputMismatchError
        The mask's size or grid differs from the image's, or it does not look like a road mask
        (an image given as the mask: many grey levels).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # only the mask's grid counts, not its GSD
        mask = read_raster(mask_path)  # every band: a mask has one, and an image given as one says so
    if mask.shape != image.shape:
        raise InputMismatchError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} px but {image.source} is {image.shape[1]}x{image.shape[0]}")
    _check_same_grid(image, mask, mask_path)
    summary = ValueSummary.of(mask.array[:1], mask.valid, str(mask_path), mask.array.shape[0])
    if not summary.looks_like_mask():
        raise InputMismatchError(f"{mask_path}: {summary.describe()}: this is not a road mask ({MASK_SHAPE}); pair {image.source} with its road mask")
    labels = (mask.array[0] > 0).astype(np.uint8)
    labels[~(mask.valid & image.valid)] = UNLABELLED
    return labels


def _check_same_grid(image: Raster, mask: Raster, mask_path: str | os.PathLike[str]) -> None:
    """Refuse a georeferenced mask that lies elsewhere than its georeferenced image (another CRS or place)."""
    a, b = image.geo, mask.geo
    if not (a.georeferenced and b.georeferenced and a.crs is not None and b.crs is not None):
        return
    if a.crs != b.crs:
        raise InputMismatchError(
            f"{mask_path}: the mask is in {b.crs.to_string()}, its image {image.source} in {a.crs.to_string()}; pair each image with its own mask"
        )
    corners = np.array([a.transform * (0, 0), a.transform * (a.width, a.height)]) - np.array([b.transform * (0, 0), b.transform * (b.width, b.height)])
    if np.abs(corners).max() > 0.1 * min(abs(a.transform.a), abs(a.transform.e)):
        x, y = b.transform * (0, 0)
        raise InputMismatchError(
            f"{mask_path}: the mask lies elsewhere than its image {image.source} (its corner at {x:.1f}, {y:.1f}, "
            f"{np.abs(corners).max():.1f} CRS units away); pair each image with its own mask"
        )


def _as_number(value: Any) -> float | None:
    """``value`` as a number (``1``, ``1.0`` and ``"1"`` alike), or None for text and booleans."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, float, np.number)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _same_class(value: Any, wanted: str | float) -> bool:
    """Whether a class field's value is ``wanted``: numbers compared as numbers, text exactly."""
    if value is None or pd.isna(value):
        return False
    number, target = _as_number(value), _as_number(wanted)
    if number is not None and target is not None:
        return number == target
    return str(value).strip() == str(wanted).strip()


def _show_value(value: Any) -> str:
    """One field value for a message: ``1``, ``'road'`` or ``empty``."""
    if value is None or pd.isna(value):
        return "empty"
    if isinstance(value, str) or _as_number(value) is None:
        return repr(str(value))
    return f"{float(value):g}"


def _show_values(values: Sequence[Any], limit: int = 10) -> str:
    """The distinct values of a field, for a message: ``'bg', 'road'`` or ``0, 1, 2``."""
    shown = sorted({_show_value(v) for v in values})
    return ", ".join(shown[:limit]) + (f", ... ({len(shown)} values)" if len(shown) > limit else "")


def class_labels(values: Sequence[Any], source: str, class_field: str, road_value: str | float = 1, background_value: str | float = 0) -> np.ndarray:
    """Label of each sample from its class field: 1 road, 0 background, 255 other values.

    Numbers are compared as numbers (``1``, ``1.0`` and ``"1"`` alike) and text exactly, spaces
    at either end aside. Samples with other values are logged.

    Parameters
    ----------
    values : sequence
        The class field's value of each sample.
    source : str
        The samples' file, for messages.
    class_field : str
        The class field's name, for messages.
    road_value : str or float, default 1
        The value of road samples.
    background_value : str or float, default 0
        The value of background samples.

    Returns
    -------
    numpy.ndarray
        uint8 label of each sample, in the order of ``values``.

    Raises
    ------
    InputMismatchError
        No sample has the road value, or none the background value: the message names the
        file, the field and the values it holds.

    Examples
    --------
    >>> class_labels([1, "0", 1.0, 2, None], "samples.gpkg", "class").tolist()
    [1, 0, 1, 255, 255]
    >>> class_labels(["road", "bg"], "samples.gpkg", "kind", "road", "bg").tolist()
    [1, 0]
    """
    labels = np.full(len(values), UNLABELLED, dtype=np.uint8)
    labels[[_same_class(v, background_value) for v in values]] = 0
    labels[[_same_class(v, road_value) for v in values]] = 1
    if not (labels == 1).any() or not (labels == 0).any():
        raise InputMismatchError(
            f"{source}: field {class_field!r} holds {_show_values(values) or 'no values'}; it must hold {road_value} for road and "
            f"{background_value} for background, or name its values with --road-value and --background-value (e.g. --road-value road --background-value bg)"
        )
    other = [v for v, lab in zip(values, labels) if lab == UNLABELLED]
    if other:
        log.warning("warning: %s: %d sample(s) whose field %r is neither road (= %s) nor background (= %s) are left unlabelled (values: %s)",
                    source, len(other), class_field, road_value, background_value, _show_values(other))  # fmt: skip
    return labels


def sample_labels(
    image: Raster,
    samples_path: str | os.PathLike[str],
    class_field: str,
    *,
    road_value: str | float = 1,
    background_value: str | float = 0,
    line_width_m: float = 2.0,
) -> np.ndarray:
    """Labels from vector samples drawn over a scene (polygons, lines or points).

    The class field holds ``road_value`` (default 1) for road and ``background_value``
    (default 0) for background; samples with other values are left unlabelled (and this is
    logged). Lines and points are buffered to ``line_width_m`` so that a road drawn as a line
    labels its surface core. Samples in another CRS are transformed to the scene's (and this
    is logged). Road samples are drawn over background ones where they overlap.

    Parameters
    ----------
    image : Raster
        The scene (its grid, CRS and valid-data mask are used).
    samples_path : path-like
        The vector file of samples (any OGR format).
    class_field : str
        The field holding each sample's class.
    road_value : str or float, default 1
        The class value of road samples.
    background_value : str or float, default 0
        The class value of background samples.
    line_width_m : float, default 2.0
        Width lines and points are drawn at, in metres (on a scene without georeferencing,
        its assumed GSD turns it into pixels).

    Returns
    -------
    numpy.ndarray
        ``(rows, cols)`` uint8: 1 road, 0 background, 255 unlabelled (no sample, or no data).

    Raises
    ------
    VectorReadError
        The samples file cannot be read.
    InputMismatchError
        No such field, no road or no background sample, samples without CRS over a
        georeferenced scene, or no labelled pixel of one class inside the scene.
    """
    frame = read_lines(samples_path)
    if class_field not in frame.columns:
        raise InputMismatchError(f"{samples_path}: no field {class_field!r} (fields: {', '.join(c for c in frame.columns if c != 'geometry')})")
    if image.geo.georeferenced:
        if frame.crs is None:
            raise InputMismatchError(f"{samples_path}: samples have no CRS but {image.source} is georeferenced")
        if frame.crs != image.geo.crs:
            log.info("%s: samples transformed from %s to the scene CRS %s", samples_path, frame.crs, image.geo.crs)
            frame = frame.to_crs(image.geo.crs)
    classes = class_labels(frame[class_field].tolist(), str(samples_path), class_field, road_value, background_value)
    labels = np.full(image.shape, UNLABELLED, dtype=np.uint8)
    width = line_width_m / image.geo.gsd_m * abs(image.geo.transform.a)  # metres in the samples' units: pixels on a scene without georeferencing
    for value in (0, 1):
        geoms = frame.geometry[classes == value]
        shapes = [g.buffer(width / 2) if g.geom_type in ("LineString", "MultiLineString", "Point") else g for g in geoms if g is not None]
        if shapes:
            burned = rasterize(shapes, out_shape=image.shape, transform=image.geo.transform, fill=0, default_value=1, all_touched=True, dtype=np.uint8)
            labels[burned > 0] = value
    labels[~image.valid] = UNLABELLED
    if not (labels == 1).any() or not (labels == 0).any():
        raise InputMismatchError(
            f"{samples_path}: samples must label both road ({road_value}) and background ({background_value}) pixels inside {image.source}"
        )
    return labels
