"""Checks that a scene is the kind of input a step or a model expects.

Three mistakes users make with their inputs: an image given to a step that wants a road mask,
a scene unlike the ones a model was trained on (other bands, another bit depth or unit), and a
road mask given to a classifier. Each check here turns one of them into a one-line message
that says what the scene looks like and what to do, instead of confident garbage.

- **Bands** (count, alpha, names) are checked on every tile, before anything is computed on
  it: :func:`check_mask_bands`, :func:`select_model_bands`.
- **Values** are scene-wide: a step measures a :class:`ValueSummary` of every tile as its
  statistics (``tile_statistics``), merges them in ``fit`` and decides there, before any tile
  is processed: :func:`check_mask`, :func:`check_value_range`.
- :class:`TrainingScenes` is what a model file records about its training scenes (data type,
  band count and names, value range per band). Older model files record less; only what a
  file records is checked.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from geoseg.errors import InputMismatchError

__all__ = [
    "TrainingScenes",
    "ValueSummary",
    "band_list",
    "check_mask",
    "check_mask_bands",
    "check_value_range",
    "data_bands",
    "scaled",
    "select_model_bands",
]

#: Most distinct values a :class:`ValueSummary` keeps track of (a mask has two).
MAX_LEVELS = 3

#: Pixels counted per strip by :meth:`ValueSummary.of` on byte bands (bounds its temporaries to 8 MB).
_COUNT_STRIP_PX = 1 << 20

#: A scene whose largest value is more than this many times the training scenes' largest is refused.
TOO_HIGH = 2.0
#: A scene whose largest value is less than the training scenes' 99th percentile over this is refused.
TOO_LOW = 8.0

MASK_SHAPE = "one band, values 0/255, 0/1 or a probability in [0, 1]"
IMAGE_PIPELINES = "for images use road_centerlines (MJCR model) or deep_road_centerlines (deep model)"

#: Band names that say nothing about the band: GDAL's defaults as geoseg reports them.
_UNNAMED = re.compile(r"(band\d*|alpha)?", re.IGNORECASE)


def data_bands(count: int, band_names: Sequence[str] = ()) -> list[int]:
    """1-based indexes of the bands that hold data: every band but those named ``alpha``.

    Parameters
    ----------
    count : int
        The scene's band count.
    band_names : sequence of str, default ()
        The names of its first bands (bands without a name hold data).

    Returns
    -------
    list of int
        The data bands, ascending.

    Examples
    --------
    >>> data_bands(4, ["red", "green", "blue", "alpha"]), data_bands(2)
    ([1, 2, 3], [1, 2])
    """
    return [i for i in range(1, count + 1) if i > len(band_names) or band_names[i - 1] != "alpha"]


def band_list(bands: Sequence[int]) -> str:
    """A band list as it is typed after ``--set`` (``[1,2,3]``: no spaces, no shell quoting).

    Parameters
    ----------
    bands : sequence of int
        Band indexes.

    Returns
    -------
    str
        The list, e.g. ``[3,2,1]``.

    Examples
    --------
    >>> band_list([3, 2, 1])
    '[3,2,1]'
    """
    return "[" + ",".join(str(int(b)) for b in bands) + "]"


def scaled(values: np.ndarray, scale: float | None) -> np.ndarray:
    """``values`` times ``scale`` as float32 (unchanged without a scale).

    Parameters
    ----------
    values : numpy.ndarray
        Pixel values.
    scale : float or None
        The factor; None returns ``values`` itself.

    Returns
    -------
    numpy.ndarray
        A new float32 array, or ``values`` when ``scale`` is None.

    Examples
    --------
    >>> out = scaled(np.array([0, 1000, 4000], np.uint16), 0.25)
    >>> out.tolist(), out.dtype.name
    ([0.0, 250.0, 1000.0], 'float32')
    """
    return values if scale is None else values.astype(np.float32) * np.float32(scale)


def _levels(values: np.ndarray) -> tuple[float, ...] | None:
    """The distinct values of a 1-D array, ascending, when there are at most three; else None.

    Linear time (no sort): a scene's mask band is summarised tile by tile.
    """
    if values.size == 0:
        return ()
    low, high = values.min(), values.max()
    if low == high:
        return (float(low),)
    inner = values[(values != low) & (values != high)]
    if inner.size == 0:
        return (float(low), float(high))
    middle = inner.min()
    if (inner != middle).any():
        return None
    return (float(low), float(middle), float(high))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class ValueSummary:
    """Pixel values of some bands of a scene over its valid pixels, merged over tiles.

    Attributes
    ----------
    source : str
        The scene, for messages.
    dtype : str
        Data type of its pixels.
    scene_bands : int
        Band count of the scene (all bands, alpha included).
    count : int
        Valid pixels summarised.
    low, high : tuple of float
        Per summarised band: the smallest and largest value (inf and -inf without pixels).
    levels : tuple of float or None
        The distinct values of the first summarised band, ascending, when there are at most
        :data:`MAX_LEVELS`; None when there are more (or when they were not counted).
    """

    source: str
    dtype: str
    scene_bands: int
    count: int
    low: tuple[float, ...]
    high: tuple[float, ...]
    levels: tuple[float, ...] | None

    @classmethod
    def of(cls, bands: np.ndarray, valid: np.ndarray, source: str, scene_bands: int, *, levels: bool = True) -> ValueSummary:
        """Summarise the ``(bands, rows, cols)`` values where ``valid`` (``levels``: count the first band's distinct values)."""
        n = bands.shape[0]
        if bands.dtype in (np.uint8, np.bool_) and n == 1:
            return cls._of_bytes(bands[0], valid, source, scene_bands, levels)
        values = bands.reshape(n, -1) if valid.all() else bands[:, valid]
        if values.shape[1] == 0:
            return cls(source, bands.dtype.name, scene_bands, 0, (math.inf,) * n, (-math.inf,) * n, ())
        low = tuple(float(v) for v in values.min(axis=1))
        high = tuple(float(v) for v in values.max(axis=1))
        return cls(source, bands.dtype.name, scene_bands, int(values.shape[1]), low, high, _levels(values[0]) if levels else None)

    @classmethod
    def _of_bytes(cls, band: np.ndarray, valid: np.ndarray, source: str, scene_bands: int, levels: bool) -> ValueSummary:
        """:meth:`of` for one band of bytes, from the counts of its 256 values.

        Counted in strips of about :data:`_COUNT_STRIP_PX` pixels: ``np.bincount`` widens its
        input to 8-byte integers, and on a whole 4096² scene that first-touched temporary of
        134 MB cost 0.16 s more than the counting.
        """
        counts = np.zeros(256, dtype=np.int64)
        step = max(1, _COUNT_STRIP_PX // max(band.shape[1], 1))
        whole = bool(valid.all())
        for r in range(0, band.shape[0], step):
            strip = band[r : r + step] if whole else band[r : r + step][valid[r : r + step]]
            counts += np.bincount(strip.ravel().view(np.uint8), minlength=256)
        present = np.flatnonzero(counts)
        if present.size == 0:
            return cls(source, band.dtype.name, scene_bands, 0, (math.inf,), (-math.inf,), ())
        found = tuple(float(v) for v in present) if levels and present.size <= MAX_LEVELS else None
        return cls(source, band.dtype.name, scene_bands, int(counts.sum()), (float(present[0]),), (float(present[-1]),), found)

    @classmethod
    def merge(cls, parts: Sequence[ValueSummary]) -> ValueSummary:
        """One summary of the tiles summarised by ``parts`` (at least one)."""
        first = parts[0]
        found = set().union(*(p.levels for p in parts if p.levels is not None))
        counted = all(p.levels is not None for p in parts) and len(found) <= MAX_LEVELS
        low = tuple(min(v) for v in zip(*(p.low for p in parts)))
        high = tuple(max(v) for v in zip(*(p.high for p in parts)))
        levels = tuple(sorted(found)) if counted else None
        return cls(first.source, first.dtype, first.scene_bands, sum(p.count for p in parts), low, high, levels)

    @property
    def maximum(self) -> float:
        """The largest value over the summarised bands."""
        return max(self.high)

    @property
    def floating(self) -> bool:
        """Whether the pixels are floating point."""
        return bool(np.issubdtype(np.dtype(self.dtype), np.floating))

    def describe(self) -> str:
        """What the scene looks like, for messages: ``3 bands of uint8 with many grey levels``."""
        bands = f"{_plural(self.scene_bands, 'band')} of {self.dtype}"
        if self.count == 0:
            return f"{bands} without valid pixels"
        if self.levels is not None:
            return f"{bands} with {_plural(len(self.levels), 'level')} ({', '.join(f'{v:g}' for v in self.levels)})"
        if self.floating:
            return f"{bands} with values from {self.low[0]:g} to {self.high[0]:g}"
        return f"{bands} with many grey levels"

    def looks_like_mask(self) -> bool:
        """Whether the first band holds 0 and at most one other (positive) value, or a probability (floats in [0, 1])."""
        if self.count == 0:
            return True
        if self.levels is not None:
            others = [v for v in self.levels if v != 0]
            if len(others) <= 1 and all(v > 0 for v in others):
                return True
        return self.floating and self.low[0] >= 0 and self.high[0] <= 1


def check_mask_bands(image: np.ndarray, valid: np.ndarray, band_names: Sequence[str], source: str, label: str) -> None:
    """Refuse a scene with more than one data band where a road mask is expected (alpha bands are fine).

    Parameters
    ----------
    image : numpy.ndarray
        The scene or a tile of it, shape ``(bands, rows, cols)``.
    valid : numpy.ndarray
        Boolean, shape ``(rows, cols)``: the pixels with data.
    band_names : sequence of str
        The scene's band names (``alpha`` bands are not data bands).
    source : str
        The scene, for messages.
    label : str
        The step's label, for the ``--set`` proposed in messages.

    Raises
    ------
    InputMismatchError
        Names the scene and what its first data band looks like; a stack whose first data
        band looks like a mask (at most three levels) is told to choose its mask band
        (``--set LABEL.band=N``), anything else (an image) the pipelines for images.

    Examples
    --------
    >>> valid = np.ones((2, 2), bool)
    >>> mask = np.array([[[0, 255], [255, 0]], [[255, 255], [255, 255]]], np.uint8)
    >>> check_mask_bands(mask, valid, ["road", "alpha"], "m.tif", "threshold")
    >>> check_mask_bands(mask[[0, 0]], valid, [], "m2.tif", "threshold")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    geoseg.errors.InputMismatchError: m2.tif: 2 bands of uint8 with 2 levels (0, 255): a road mask
    has one band; choose the band that holds it with --set threshold.band=N
    >>> image = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    >>> check_mask_bands(image, valid, [], "rgb.tif", "threshold")  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    geoseg.errors.InputMismatchError: rgb.tif: 3 bands of uint8 with many grey levels:
    this looks like an image, not a road mask ...
    """
    data = data_bands(image.shape[0], band_names)
    if len(data) <= 1:
        return
    tile = ValueSummary.of(image[[data[0] - 1]], valid, source, image.shape[0])
    if tile.levels is not None and tile.looks_like_mask():
        raise InputMismatchError(f"{source}: {tile.describe()}: a road mask has one band; choose the band that holds it with --set {label}.band=N")
    raise InputMismatchError(f"{source}: {tile.describe()}: this looks like an image, not a road mask ({MASK_SHAPE}); {IMAGE_PIPELINES}")


def check_mask(summary: ValueSummary, label: str) -> None:
    """Refuse a scene whose thresholded band does not look like a road mask (see :meth:`ValueSummary.looks_like_mask`).

    Parameters
    ----------
    summary : ValueSummary
        The scene's values, merged over its tiles.
    label : str
        The step's label, for the ``--set`` proposed in messages.

    Raises
    ------
    InputMismatchError
        Names the scene, what it looks like, the pipelines for images (when it has many
        levels), and how to threshold it anyway (``--set LABEL.check_input=false``).

    Examples
    --------
    >>> valid = np.ones((2, 2), bool)
    >>> mask = ValueSummary.of(np.array([[[0, 1], [1, 0]]], np.uint8), valid, "m.tif", 1)
    >>> check_mask(mask, "threshold")
    >>> grey = ValueSummary.of(np.array([[[0, 7], [9, 200]]], np.uint8), valid, "grey.tif", 1)
    >>> check_mask(grey, "threshold")  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    geoseg.errors.InputMismatchError: grey.tif: 1 band of uint8 with many grey levels:
    this looks like an image, not a road mask ... --set threshold.check_input=false ...
    """
    if summary.looks_like_mask():
        return
    if summary.levels is None:
        verdict = f"this looks like an image, not a road mask ({MASK_SHAPE}); {IMAGE_PIPELINES}"
    else:
        verdict = f"this is not a road mask ({MASK_SHAPE})"
    raise InputMismatchError(
        f"{summary.source}: {summary.describe()}: {verdict}; to threshold it as it is, --set {label}.check_input=false (road where value > {label}.threshold)"
    )


@dataclass(frozen=True)
class TrainingScenes:
    """What the scenes a model was trained on looked like (recorded in its model file).

    Attributes
    ----------
    dtype : str or None
        Data type of their pixels.
    scene_bands : int or None
        Their data bands (alpha not counted).
    band_names : tuple of str
        Names (descriptions) of all their bands; empty when unknown.
    minimum, p01, p99, maximum : tuple of float
        Per band the model reads: smallest value, 1st and 99th percentiles, largest value
        (raw pixel values); empty when unknown.
    """

    dtype: str | None = None
    scene_bands: int | None = None
    band_names: tuple[str, ...] = ()
    minimum: tuple[float, ...] = ()
    p01: tuple[float, ...] = ()
    p99: tuple[float, ...] = ()
    maximum: tuple[float, ...] = ()

    @classmethod
    def measure(cls, images: Sequence[np.ndarray], bands: Sequence[int], *, scene_bands: int | None, band_names: Sequence[str] = ()) -> TrainingScenes:
        """Describe raw ``(bands, rows, cols)`` training scenes, of which a model reads ``bands`` (1-based)."""
        values = np.concatenate([np.asarray(im)[[b - 1 for b in bands]].reshape(len(bands), -1) for im in images], axis=1)
        low, p01, p99, high = (tuple(float(v) for v in row) for row in np.nanpercentile(values, [0, 1, 99, 100], axis=1))
        dtype = np.result_type(*(np.asarray(im).dtype for im in images)).name
        return cls(dtype, scene_bands, tuple(band_names), low, p01, p99, high)

    def to_json(self) -> dict[str, Any]:
        """The record as model-file metadata."""
        return {
            "dtype": self.dtype,
            "scene_bands": self.scene_bands,
            "band_names": list(self.band_names),
            "min": list(self.minimum),
            "p01": list(self.p01),
            "p99": list(self.p99),
            "max": list(self.maximum),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None, *, scene_bands: int | None = None) -> TrainingScenes:
        """Read :meth:`to_json`'s metadata; missing entries (older files) are unknown.

        ``scene_bands`` is the band count recorded elsewhere by older files.

        Raises
        ------
        TypeError, ValueError
            Malformed entries (the model loaders turn them into ``ModelFileError``).
        """
        data = data or {}
        bands = data.get("scene_bands", scene_bands)
        floats = {key: tuple(float(v) for v in data.get(key) or ()) for key in ("min", "p01", "p99", "max")}
        return cls(
            None if data.get("dtype") is None else str(data["dtype"]),
            None if bands is None else int(bands),
            tuple(str(n) for n in data.get("band_names") or ()),
            floats["min"],
            floats["p01"],
            floats["p99"],
            floats["max"],
        )

    def bands_by_name(self, band_names: Sequence[str], model_bands: Sequence[int]) -> list[int] | None:
        """Where a scene named ``band_names`` has the bands the model reads, by name (None: names unknown or missing)."""
        if len(self.band_names) < max(model_bands):
            return None
        wanted = [self.band_names[b - 1].lower() for b in model_bands]
        have = [n.lower() for n in band_names]
        if any(_UNNAMED.fullmatch(n) for n in wanted) or any(have.count(n) != 1 for n in wanted):
            return None
        return [have.index(n) + 1 for n in wanted]


def _trained(record: TrainingScenes, model: str, bands: Sequence[int]) -> str:
    if record.scene_bands is None:
        return f"{model} reads band(s) {list(bands)}"
    return f"{model} was trained on {record.scene_bands}-band scenes (using band(s) {list(bands)})"


def _band_mismatch(
    image: np.ndarray, band_names: Sequence[str], record: TrainingScenes, bands: list[int], source: str, model: str, label: str, valid: np.ndarray | None
) -> InputMismatchError:
    """The error for a scene whose bands are not the training scenes' (the caller found them different)."""
    count = image.shape[0]
    data = data_bands(count, band_names)
    if len(data) >= len(bands):
        choice = record.bands_by_name(band_names, bands) or (bands if max(bands) <= count else data[: len(bands)])
        return InputMismatchError(
            f"{source}: {_plural(len(data), 'data band')}, but {_trained(record, model, bands)}: "
            f"the model takes {_plural(len(bands), 'band')}: select them with --set {label}.bands={band_list(choice)}"
        )
    if valid is not None and len(data) == 1:
        tile = ValueSummary.of(image[[data[0] - 1]], valid, source, count)
        if tile.levels is not None and len(tile.levels) == 2 and tile.looks_like_mask():  # 0 and one other value
            return InputMismatchError(f"{source}: {tile.describe()}: this looks like a road mask: use mask_to_centerlines")
    alpha = f" and {count - len(data)} alpha band(s)" if count > len(data) else ""
    return InputMismatchError(f"{source}: {_trained(record, model, bands)}; this scene has {len(data)} band(s){alpha}: train a model on scenes like this one")


def _chosen_bands(count: int, chosen: Sequence[int], bands: Sequence[int], source: str, model: str, label: str) -> list[int]:
    """The user's band selection, checked against the scene and the model's input."""
    if len(chosen) != len(bands):
        raise InputMismatchError(f"{source}: {label}.bands={band_list(chosen)} selects {_plural(len(chosen), 'band')}, but {model} takes {len(bands)}")
    missing = [b for b in chosen if not 1 <= b <= count]
    if missing:
        raise InputMismatchError(f"{source}: {label}.bands={band_list(chosen)}: band(s) {missing} do not exist (the scene has {_plural(count, 'band')})")
    return list(chosen)


def select_model_bands(
    image: np.ndarray,
    band_names: Sequence[str],
    record: TrainingScenes,
    model_bands: Sequence[int],
    *,
    chosen: Sequence[int] | None,
    source: str,
    model: str,
    label: str,
    valid: np.ndarray | None = None,
) -> np.ndarray:
    """The bands a model reads, from a raw ``(bands, rows, cols)`` scene, checked against its training scenes.

    Parameters
    ----------
    image : numpy.ndarray
        The scene (or a tile of it).
    band_names : sequence of str
        The scene's band names (``alpha`` bands are not data bands).
    record : TrainingScenes
        What the model's file records about its training scenes.
    model_bands : sequence of int
        The 1-based bands of its training scenes the model reads.
    chosen : sequence of int, optional
        The user's selection (the step's ``bands``): these scene bands, in this order, are
        the model's input; band count and names are then not compared.
    source, model, label : str
        The scene, the model (``"the MJCR model roads.npz"``) and the step (``mjcr_classify``),
        for messages.
    valid : numpy.ndarray, optional
        Where the scene has data: lets the message recognise a road mask.

    Returns
    -------
    numpy.ndarray
        The bands the model reads, in its order: shape ``(len(model_bands), rows, cols)``.

    Raises
    ------
    InputMismatchError
        Another count of data bands than the training scenes (with the selection to make when
        the scene has enough bands, or the pipeline for a road mask), a band the model reads
        missing, or the model's bands at other places (by name) than in the training scenes;
        with ``chosen``, a selection of another length than ``model_bands`` or of bands the
        scene lacks.

    Examples
    --------
    >>> record = TrainingScenes(scene_bands=3, band_names=("red", "green", "blue"))
    >>> kw = dict(chosen=None, source="s.tif", model="the model m.npz", label="classify")
    >>> rgba = np.array([10, 20, 30, 255]).reshape(4, 1, 1)
    >>> out = select_model_bands(rgba, ["red", "green", "blue", "alpha"], record, [1, 2, 3], **kw)
    >>> out.ravel().tolist()
    [10, 20, 30]
    >>> bgr, bgr_names = rgba[[2, 1, 0]], ["blue", "green", "red"]
    >>> select_model_bands(bgr, bgr_names, record, [1, 2, 3], **kw)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    geoseg.errors.InputMismatchError: s.tif: the bands the model m.npz reads (red, green, blue) are
    bands [3,2,1] of this scene, not [1,2,3] as in its training scenes: select them with
    --set classify.bands=[3,2,1]
    >>> kw["chosen"] = [3, 2, 1]
    >>> select_model_bands(bgr, bgr_names, record, [1, 2, 3], **kw).ravel().tolist()
    [10, 20, 30]
    """
    count = image.shape[0]
    bands = list(model_bands)
    if chosen is not None:
        return image[[b - 1 for b in _chosen_bands(count, chosen, bands, source, model, label)]]
    data = data_bands(count, band_names)
    if (record.scene_bands is not None and len(data) != record.scene_bands) or count < max(bands):
        raise _band_mismatch(image, band_names, record, bands, source, model, label, valid)
    by_name = record.bands_by_name(band_names, bands)
    if by_name is not None and by_name != bands:
        names = [record.band_names[b - 1] for b in bands]
        raise InputMismatchError(
            f"{source}: the bands {model} reads ({', '.join(names)}) are bands {band_list(by_name)} of this scene, "
            f"not {band_list(bands)} as in its training scenes: select them with --set {label}.bands={band_list(by_name)}"
        )
    return image[[b - 1 for b in bands]]


def _full_scale(value: float, dtype: str | None) -> float:
    """The full scale of data whose largest value is ``value``: 2^bits - 1 for integers; 1 for floats up to 1 (reflectance), else the value."""
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.floating):
        return max(value, 1.0)
    return 2.0 ** math.ceil(math.log2(value + 1)) - 1


def check_value_range(summary: ValueSummary, record: TrainingScenes, *, scale: float | None, model: str, label: str) -> None:
    """Refuse a scene whose values are far outside those of the model's training scenes.

    Brightness and contrast may differ (models normalise per band, MJCR centres on the scene's
    means). A scene is refused when its largest value, times ``scale``, is more than
    :data:`TOO_HIGH` times the training scenes' largest, or less than their 99th percentile
    over :data:`TOO_LOW`: another bit depth or unit (11-bit counts for an 8-bit model,
    reflectance in [0, 1]). The message proposes the ``scale`` that fits.

    Nothing is checked when the model's file records no value range or the scene has no
    valid pixels.

    Parameters
    ----------
    summary : ValueSummary
        The scene's values (the bands the model reads), merged over its tiles.
    record : TrainingScenes
        What the model's file records about its training scenes.
    scale : float or None
        The step's ``scale``, applied to the scene's values before the model reads them.
    model : str
        The model (``"the MJCR model roads.npz"``), for messages.
    label : str
        The step's label, for the ``--set`` proposed in messages.

    Raises
    ------
    InputMismatchError
        Names the scene, its data type and largest value, the model and its training range.

    Examples
    --------
    >>> record = TrainingScenes(dtype="uint8", minimum=(0.0,), p99=(240.0,), maximum=(255.0,))
    >>> valid = np.ones((1, 2), bool)
    >>> scene = ValueSummary.of(np.array([[[100, 2047]]], np.uint16), valid, "s.tif", 1)
    >>> kw = dict(model="the model m.npz", label="classify")
    >>> check_value_range(scene, record, scale=255 / 2047, **kw)
    >>> check_value_range(scene, record, scale=None, **kw)  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    geoseg.errors.InputMismatchError: s.tif: uint16 values up to 2047, the model m.npz was trained on
    uint8 scenes (values 0-255): rescale with --set classify.scale=0.125, or train a model on scenes
    like this one
    """
    if not record.maximum or summary.count == 0:
        return
    raw = summary.maximum
    value = raw * (scale or 1.0)
    top = max(record.maximum)
    reference = max(record.p99 or record.maximum)
    if reference / TOO_LOW <= value <= TOO_HIGH * top:
        return
    after = f" ({value:g} with {label}.scale={scale:g})" if scale else ""
    advice = "train a model on scenes like this one"
    if raw > 0:
        factor = _full_scale(top, record.dtype) / _full_scale(raw, summary.dtype)
        advice = f"rescale with --set {label}.scale={factor:.3g}, or {advice}"
    trained = f"{record.dtype} scenes (values {min(record.minimum):g}-{top:g})"
    raise InputMismatchError(f"{summary.source}: {summary.dtype} values up to {raw:g}{after}, {model} was trained on {trained}: {advice}")
