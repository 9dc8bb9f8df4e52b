"""Reading image sequences: a folder of frames, a list of files, a band stack, an animated GIF.

Inputs (:func:`read_frames`):

- **a folder**: its raster files (``.tif``, ``.tiff``, ``.png``, ``.jpg``, ``.jpeg``) in
  *natural* order (``frame2`` before ``frame10``);
- **files or globs**: in the order given (globs sorted naturally);
- **a multi-band time stack**: one raster whose bands are consecutive groups of
  ``bands_per_frame`` bands, one group per frame (frame *k* = bands ``k*n+1 .. k*n+n``,
  1-based). It is used when one file is given with ``bands_per_frame`` set, or when its band
  count is a multiple (> 1) of ``bands_per_frame``;
- **an animated GIF** (read with Pillow, a geoseg dependency): one frame per GIF frame.
  Video files (MP4, AVI, ...) are not supported: no installed library of geoseg's
  dependencies decodes them (OpenCV and imageio's FFmpeg/PyAV back-ends are absent); extract
  the frames to PNG/GeoTIFF first (e.g. ``ffmpeg -i video.mp4 frames/%05d.png``).

Georeferencing is kept per frame (each frame's transform and CRS, :class:`geoseg.raster.GeoInfo`);
frames without it use pixel coordinates (x = column, y = row) and emit
:class:`~geoseg.errors.NotGeoreferencedWarning`. All frames of a sequence must have the same
size and CRS.

Time: a frame's ``time`` is its acquisition tag when the file has one (GDAL metadata
``ACQUISITIONDATETIME``, ``ACQUISITION_DATETIME``, ``TIFFTAG_DATETIME``, ``DATETIME`` or
``TIME``; for a band stack, the same keys on the first band of each group), else ``None``.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning as RioNotGeoreferencedWarning

from geoseg.errors import InputMismatchError, NotGeoreferencedWarning, RasterReadError
from geoseg.inputs import is_glob
from geoseg.raster import DEFAULT_ASSUMED_GSD_M, GeoInfo, read_raster

__all__ = ["FRAME_SUFFIXES", "Frame", "frame_files", "natural_key", "read_frames", "write_frames"]

#: File suffixes taken from a folder of frames.
FRAME_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".gif")
_TIME_KEYS = ("ACQUISITIONDATETIME", "ACQUISITION_DATETIME", "TIFFTAG_DATETIME", "DATETIME", "TIME")


@dataclass
class Frame:
    """One frame of a sequence.

    Attributes
    ----------
    array : numpy.ndarray
        ``(bands, H, W)`` pixels.
    geo : GeoInfo
        Georeferencing of the frame.
    source : str
        File (and band group or GIF frame) it came from.
    index : int
        Position in the sequence (0-based).
    time : str or None
        Acquisition time tag, if the file has one.
    """

    array: np.ndarray
    geo: GeoInfo
    source: str
    index: int
    time: str | None = None


def natural_key(name: str) -> list:
    """Sort key putting ``frame2`` before ``frame10``."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def frame_files(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Expand folders (natural order) and globs; keep files in the order given.

    Raises
    ------
    RasterReadError
        An input that does not exist, or a folder without frames.
    """
    files: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        if is_glob(text):
            matches = sorted(glob.glob(text), key=natural_key)
            if not matches:
                raise RasterReadError(f"{text}: no file matches")
            files += [Path(f) for f in matches]
            continue
        p = Path(text)
        if p.is_dir():
            found = sorted((f for f in p.iterdir() if f.suffix.lower() in FRAME_SUFFIXES and f.is_file()), key=lambda f: natural_key(f.name))
            if not found:
                raise RasterReadError(f"{p}: folder holds no frames ({', '.join(FRAME_SUFFIXES)})")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise RasterReadError(f"{p}: no such file or folder")
    return files


def _time_tag(tags: dict) -> str | None:
    upper = {str(k).upper(): v for k, v in tags.items()}
    for key in _TIME_KEYS:
        if upper.get(key):
            return str(upper[key])
    return None


def _gif_frames(path: Path, start: int, assume_gsd_m: float) -> list[Frame]:
    from PIL import Image, ImageSequence

    try:
        with Image.open(path) as im:
            arrays = [np.asarray(fr.convert("RGB")).transpose(2, 0, 1).copy() for fr in ImageSequence.Iterator(im)]
    except OSError as exc:
        raise RasterReadError(f"{path}: not a readable GIF ({exc})") from exc
    warnings.warn(f"{path}: no georeferencing; output coordinates are pixel coordinates (x = column, y = row)", NotGeoreferencedWarning, stacklevel=3)
    h, w = arrays[0].shape[1:]
    geo = GeoInfo(width=w, height=h, crs=None, transform=Affine.identity(), gsd_xy_m=(assume_gsd_m, assume_gsd_m), georeferenced=False)
    return [Frame(a, geo, f"{path}#{k}", start + k) for k, a in enumerate(arrays)]


def _file_frames(path: Path, start: int, bands_per_frame: int | None, single: bool, assume_gsd_m: float) -> list[Frame]:
    if path.suffix.lower() == ".gif":
        return _gif_frames(path, start, assume_gsd_m)
    raster = read_raster(path, assume_gsd_m=assume_gsd_m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RioNotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            file_time = _time_tag(ds.tags())
            band_times = [_time_tag(ds.tags(b)) for b in range(1, ds.count + 1)]
    n = raster.count
    stack = bands_per_frame is not None and n % bands_per_frame == 0 and (n > bands_per_frame or single)
    if bands_per_frame is None or not stack or n == bands_per_frame:
        return [Frame(raster.array, raster.geo, str(path), start, file_time or band_times[0])]
    frames = []
    for k in range(n // bands_per_frame):
        lo = k * bands_per_frame
        frames.append(
            Frame(raster.array[lo : lo + bands_per_frame], raster.geo, f"{path}[bands {lo + 1}-{lo + bands_per_frame}]", start + k, band_times[lo] or file_time)
        )
    return frames


def read_frames(
    inputs: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    bands_per_frame: int | None = None,
    assume_gsd_m: float = DEFAULT_ASSUMED_GSD_M,
) -> list[Frame]:
    """Read a sequence of frames (see module docstring for the accepted inputs).

    Parameters
    ----------
    inputs : path, or list of paths/globs
        Folder(s), files, globs.
    bands_per_frame : int, optional
        Bands of one frame in a multi-band time stack.
    assume_gsd_m : float
        GSD assumed for frames without georeferencing.

    Returns
    -------
    list of Frame
        In sequence order.

    Raises
    ------
    RasterReadError
        A missing or unreadable input.
    InputMismatchError
        Frames of different sizes or CRSs, or fewer than one frame.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    files = frame_files(list(inputs))
    frames: list[Frame] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NotGeoreferencedWarning)
        for f in files:
            frames += _file_frames(f, len(frames), bands_per_frame, len(files) == 1, assume_gsd_m)
    plain = [w for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
    for w in caught:
        if not issubclass(w.category, NotGeoreferencedWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if plain:  # one warning per sequence, not one per frame
        warnings.warn(
            f"{len(plain)} of {len(files)} frame file(s) without georeferencing (first: {plain[0].message}); "
            "polygons are in pixel coordinates (x = column, y = row)",
            NotGeoreferencedWarning,
            stacklevel=2,
        )
    if not frames:
        raise InputMismatchError("no frames in the inputs")
    first = frames[0]
    for fr in frames[1:]:
        if fr.array.shape[1:] != first.array.shape[1:]:
            raise InputMismatchError(f"{fr.source}: frame size {fr.array.shape[1:]} differs from {first.source} {first.array.shape[1:]}")
        if fr.geo.crs != first.geo.crs:
            raise InputMismatchError(f"{fr.source}: CRS {fr.geo.crs} differs from {first.source} ({first.geo.crs})")
        if fr.array.shape[0] != first.array.shape[0]:
            raise InputMismatchError(f"{fr.source}: {fr.array.shape[0]} band(s), {first.source} has {first.array.shape[0]}")
    return frames


def write_frames(
    frames: np.ndarray,
    folder: str | Path,
    *,
    crs: str | None = None,
    transform: Affine | None = None,
    times: list[str] | None = None,
    fmt: str = "tif",
    prefix: str = "frame_",
) -> list[Path]:
    """Write ``(frames, bands, H, W)`` uint8 frames as numbered files (atomically, one per frame).

    Parameters
    ----------
    frames : numpy.ndarray
        The frames.
    folder : path-like
        Destination folder (created).
    crs, transform : optional
        Georeferencing of every frame (GeoTIFF only).
    times : list of str, optional
        ``ACQUISITIONDATETIME`` tag of each frame (GeoTIFF only).
    fmt : {"tif", "png"}
        File format.
    prefix : str
        File name prefix; files are ``<prefix><k>.<fmt>`` (k not zero-padded, so natural
        sorting matters).

    Returns
    -------
    list of Path
        The files, in frame order.
    """
    from geoseg.atomic import atomic_path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, arr in enumerate(np.asarray(frames)):
        path = folder / f"{prefix}{k}.{fmt}"
        profile: dict = {"count": arr.shape[0], "height": arr.shape[1], "width": arr.shape[2], "dtype": arr.dtype.name}
        if fmt == "png":
            profile["driver"] = "PNG"
        else:
            profile.update(driver="GTiff", compress="deflate")
            if crs is not None and transform is not None:
                profile.update(crs=crs, transform=transform)
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore", RioNotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **profile) as ds:
                ds.write(arr)
                if times is not None and fmt != "png":
                    ds.update_tags(ACQUISITIONDATETIME=times[k])
        out.append(path)
    return out
