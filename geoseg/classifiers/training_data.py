"""Training data for road classifiers: image/mask pairs, or labelled vector samples over a scene."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rasterio.features import rasterize

from geoseg.errors import InputMismatchError
from geoseg.raster import Raster, read_raster
from geoseg.vector import read_lines

__all__ = ["UNLABELLED", "pair_by_stem", "mask_labels", "sample_labels"]

log = logging.getLogger("geoseg.training")

#: Label value of pixels that are neither road nor background.
UNLABELLED = 255


def pair_by_stem(images: Sequence[Path], masks: Sequence[Path]) -> list[tuple[Path, Path]]:
    """Match images and masks by file stem (a mask may add ``_mask`` to the image's stem).

    Raises
    ------
    InputMismatchError
        An image has no mask, or nothing matched.
    """
    by_stem = {}
    for m in masks:
        by_stem[m.stem] = m
        if m.stem.endswith("_mask"):
            by_stem.setdefault(m.stem[: -len("_mask")], m)
    pairs, missing = [], []
    for im in images:
        if im.stem in by_stem and by_stem[im.stem] != im:
            pairs.append((im, by_stem[im.stem]))
        else:
            missing.append(str(im))
    if missing:
        raise InputMismatchError(f"no mask with the same file stem for: {', '.join(missing)}")
    if not pairs:
        raise InputMismatchError("no image/mask pairs: give --images and --masks globs that match files")
    return pairs


def mask_labels(image: Raster, mask_path: str | os.PathLike[str]) -> np.ndarray:
    """Labels from a road mask on the image's grid: 1 road (> 0), 0 background, 255 no data."""
    mask = read_raster(mask_path, bands=[1])
    if mask.shape != image.shape:
        raise InputMismatchError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} px but {image.source} is {image.shape[1]}x{image.shape[0]}")
    labels = (mask.array[0] > 0).astype(np.uint8)
    labels[~(mask.valid & image.valid)] = UNLABELLED
    return labels


def sample_labels(image: Raster, samples_path: str | os.PathLike[str], class_field: str, *, line_width_m: float = 2.0) -> np.ndarray:
    """Labels from vector samples drawn over a scene (polygons, lines or points).

    The class field holds 1 (road) or 0 (background); other values are ignored. Lines are
    buffered to ``line_width_m`` so that a road drawn as a line labels its surface core.
    Samples in another CRS are transformed to the scene's (and this is logged).
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
    classes = frame[class_field].astype(float)
    labels = np.full(image.shape, UNLABELLED, dtype=np.uint8)
    width = line_width_m if not image.geo.georeferenced else line_width_m / image.geo.gsd_m * abs(image.geo.transform.a)
    for value in (0, 1):
        geoms = frame.geometry[classes == value]
        shapes = [g.buffer(width / 2) if g.geom_type in ("LineString", "MultiLineString", "Point") else g for g in geoms if g is not None]
        if shapes:
            burned = rasterize(shapes, out_shape=image.shape, transform=image.geo.transform, fill=0, default_value=1, all_touched=True, dtype=np.uint8)
            labels[burned > 0] = value
    labels[~image.valid] = UNLABELLED
    if not (labels == 1).any() or not (labels == 0).any():
        raise InputMismatchError(f"{samples_path}: samples must label both road (1) and background (0) pixels inside {image.source}")
    return labels
