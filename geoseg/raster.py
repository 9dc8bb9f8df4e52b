"""Reading and writing georeferenced rasters with rasterio.

A scene is read into a :class:`Raster`: the pixel array (``[band, row, col]``), its valid-data
mask, and its :class:`GeoInfo` (CRS, affine transform, nodata, ground sample distance in
metres). Input without georeferencing keeps rasterio's identity transform (x = column,
y = row) and emits :class:`~geoseg.errors.NotGeoreferencedWarning`.

Rasters are written as Cloud Optimized GeoTIFFs (tiled, compressed, with internal overviews),
atomically (see :mod:`geoseg.atomic`). Scenes are read from local files, GDAL virtual paths
and URLs (see :mod:`geoseg.inputs`).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import urllib.parse
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
import shapely
from affine import Affine
from pyproj import CRS as ProjCRS
from pyproj import Geod, Transformer
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning as RioNotGeoreferencedWarning
from rasterio.errors import RasterioError

from geoseg.atomic import atomic_path
from geoseg.errors import NotGeoreferencedWarning, OutputWriteError, RasterReadError

__all__ = [
    "GeoInfo",
    "Raster",
    "read_raster",
    "read_geoinfo",
    "write_raster",
    "read_dataset_window",
    "RasterTileWriter",
    "ground_sample_distance",
    "DEFAULT_ASSUMED_GSD_M",
    "not_georeferenced_message",
    "open_dataset",
    "read_problem",
]

#: GSD assumed for scenes without georeferencing unless the pipeline sets ``assume_gsd_m``.
DEFAULT_ASSUMED_GSD_M = 0.3

_GEOD = Geod(ellps="WGS84")


@dataclass(frozen=True)
class GeoInfo:
    """Where a raster lies on the ground.

    Attributes
    ----------
    width, height : int
        Size in pixels.
    crs : rasterio.crs.CRS or None
        Coordinate reference system; ``None`` when the file has none.
    transform : affine.Affine
        Pixel space to CRS coordinates (identity when not georeferenced).
    gsd_xy_m : tuple of float
        Ground size of one pixel along x (columns) and y (rows), in metres.
    georeferenced : bool
        False when the input had no CRS/transform and pixel coordinates are used.
    nodata : float or None
        The nodata value of the source, if any.
    """

    width: int
    height: int
    crs: CRS | None
    transform: Affine
    gsd_xy_m: tuple[float, float]
    georeferenced: bool
    nodata: float | None = None

    @property
    def height_width(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return self.height, self.width

    @property
    def gsd_m(self) -> float:
        """Ground sample distance in metres (geometric mean of x and y)."""
        return math.sqrt(self.gsd_xy_m[0] * self.gsd_xy_m[1])

    def metres_to_pixels(self, metres: float) -> float:
        """Convert a ground distance in metres to pixels of this raster."""
        return metres / self.gsd_m

    def window(self, row_off: int, col_off: int, height: int, width: int) -> GeoInfo:
        """The GeoInfo of a sub-window (same CRS and GSD, shifted transform)."""
        return replace(self, width=width, height=height, transform=self.transform @ Affine.translation(col_off, row_off))

    def coarsened(self, factor: int) -> GeoInfo:
        """The grid of ``factor`` × ``factor`` blocks of this one (a partial block at the right and bottom edges).

        Examples
        --------
        >>> g = GeoInfo(10, 7, None, Affine.identity(), (0.5, 0.5), False).coarsened(4)
        >>> (g.width, g.height, g.gsd_xy_m, g.transform.a)
        (3, 2, (2.0, 2.0), 4.0)
        """
        if factor == 1:
            return self
        gsd = (self.gsd_xy_m[0] * factor, self.gsd_xy_m[1] * factor)
        return replace(self, width=-(-self.width // factor), height=-(-self.height // factor), transform=self.transform @ Affine.scale(factor), gsd_xy_m=gsd)

    def resized(self, height: int, width: int) -> GeoInfo:
        """The same ground covered by a grid of ``height`` x ``width`` cells (coarser or finer).

        Examples
        --------
        >>> g = GeoInfo(10, 7, None, Affine.identity(), (0.5, 0.5), False).resized(4, 5)
        >>> (g.width, g.height, g.gsd_xy_m, g.transform.a, g.transform.e)
        (5, 4, (1.0, 0.875), 2.0, 1.75)
        """
        sx, sy = self.width / width, self.height / height
        gsd = (self.gsd_xy_m[0] * sx, self.gsd_xy_m[1] * sy)
        return replace(self, width=width, height=height, transform=self.transform @ Affine.scale(sx, sy), gsd_xy_m=gsd)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` in the CRS (pixel coordinates without georeferencing)."""
        corners = [self.transform @ (x, y) for x, y in ((0, 0), (self.width, 0), (0, self.height), (self.width, self.height))]
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        return float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))

    def to_pixels(self, geometry: shapely.Geometry) -> shapely.Geometry:
        """A geometry in CRS coordinates mapped to this raster's pixel space (x = column, y = row)."""
        inverse = ~self.transform
        return shapely.transform(geometry, lambda xy: np.column_stack(inverse @ (xy[:, 0], xy[:, 1])))


@dataclass
class Raster:
    """A raster in memory.

    Attributes
    ----------
    array : numpy.ndarray
        Pixel values, shape ``(bands, rows, cols)``.
    geo : GeoInfo
        Georeferencing.
    valid : numpy.ndarray
        Boolean ``(rows, cols)``: True where every band has data.
    source : str
        Path (or description) of where the raster came from, for messages.
    """

    array: np.ndarray
    geo: GeoInfo
    valid: np.ndarray
    source: str = "<memory>"
    band_names: tuple[str, ...] = field(default=())

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``."""
        return int(self.array.shape[-2]), int(self.array.shape[-1])

    @property
    def count(self) -> int:
        """Number of bands."""
        return int(self.array.shape[0])


def ground_sample_distance(crs: CRS | None, transform: Affine, width: int, height: int) -> tuple[float, float]:
    """Ground size of one pixel, in metres, at the centre of a raster.

    Distances are geodesic (WGS84 ellipsoid), so the result is right for geographic CRSs
    (degrees are not metres) and for projected CRSs with scale distortion (Web Mercator).

    Parameters
    ----------
    crs : CRS or None
        The raster's CRS. ``None`` returns the transform's pixel size unchanged.
    transform : Affine
        Pixel space to CRS.
    width, height : int
        Raster size in pixels.

    Returns
    -------
    tuple of float
        ``(gsd_x, gsd_y)``: metres per pixel along columns and along rows.

    Examples
    --------
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> gx, gy = ground_sample_distance(CRS.from_epsg(32633), Affine(0.5, 0, 500000, 0, -0.5, 0), 100, 100)
    >>> round(gx, 3), round(gy, 3)
    (0.5, 0.5)
    """
    if crs is None:
        return abs(transform.a), abs(transform.e)
    cx, cy = width / 2.0, height / 2.0
    pts = [transform @ (cx, cy), transform @ (cx + 1, cy), transform @ (cx, cy + 1)]
    proj = ProjCRS.from_user_input(crs.to_wkt())
    geodetic = proj.geodetic_crs
    to_geo = Transformer.from_crs(proj, geodetic, always_xy=True)
    (lon0, lat0), (lon1, lat1), (lon2, lat2) = (to_geo.transform(x, y) for x, y in pts)
    _, _, dx = _GEOD.inv(lon0, lat0, lon1, lat1)
    _, _, dy = _GEOD.inv(lon0, lat0, lon2, lat2)
    return float(dx), float(dy)


def _is_identity(transform: Affine) -> bool:
    return transform.almost_equals(Affine.identity())


#: GDAL's HTTP settings for scenes behind URLs, unless the environment sets them: retries on
#: the errors that pass (429, 502, 503, 504) and time limits that turn a server that stopped
#: answering into an error. They are set in the process environment when the first remote
#: scene is opened (GDAL reads them at every request; they do not affect local files).
REMOTE_HTTP_OPTIONS = {
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "GDAL_HTTP_CONNECTTIMEOUT": "30",
    "GDAL_HTTP_TIMEOUT": "300",
}


def open_dataset(path: str | os.PathLike[str]) -> rasterio.DatasetReader:
    """Open a raster for reading, with one-line errors that name it; use it as a context manager.

    Local files are checked first (missing, a folder, empty). GDAL virtual paths and URLs
    (see :func:`geoseg.inputs.is_remote`) go to GDAL as given, opened without a directory
    listing to look for sidecar files (it costs a request and finds nothing on object
    storage; ``GDAL_DISABLE_READDIR_ON_OPEN`` in the environment wins), and HTTP failures (not
    found, access denied, time-out) are said in words. Only the opening is wrapped: an
    ``rasterio.Env`` around every read would make rasterio reset GDAL's block cache size on
    exit, which flushes the blocks that tiles share.

    Parameters
    ----------
    path : path-like
        A local file, a GDAL virtual path or a URL.

    Returns
    -------
    rasterio.DatasetReader
        The open dataset; the caller closes it.

    Raises
    ------
    RasterReadError
        The raster cannot be opened: a local file is missing, a folder or empty, or GDAL
        cannot open it (the message says why for URLs).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     open_dataset(f"{d}/missing.tif")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    geoseg.errors.RasterReadError: .../missing.tif: no such file
    """
    from geoseg.inputs import is_remote

    name = os.fspath(path)
    remote = is_remote(name)
    if remote:
        for key, value in REMOTE_HTTP_OPTIONS.items():
            os.environ.setdefault(key, value)
    else:
        p = Path(name)
        if not p.exists():
            raise RasterReadError(f"{p}: no such file")
        if p.is_dir():
            raise RasterReadError(f"{p}: is a directory, not a raster file")
        if p.stat().st_size == 0:
            raise RasterReadError(f"{p}: the file is empty (0 bytes)")
    listing = {} if not remote or "GDAL_DISABLE_READDIR_ON_OPEN" in os.environ else {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
    try:
        with warnings.catch_warnings(), rasterio.Env(**listing) if listing else contextlib.nullcontext():
            warnings.simplefilter("ignore", RioNotGeoreferencedWarning)
            return rasterio.open(name)
    except RasterioError as exc:
        from geoseg.inputs import redact

        raise RasterReadError(redact(f"{name}: {_remote_problem(name, exc) if remote else 'not a readable raster'} ({_short(exc)})")) from exc


#: GDAL's words for HTTP failures, and ours.
_HTTP_PROBLEMS = (
    (re.compile(r"HTTP\D{0,20}404\b|does not exist in the file system|No such file"), "not found on the server (HTTP 404)"),
    (
        re.compile(r"HTTP\D{0,20}40[13]\b|Access Denied|AccessDenied|Forbidden|InvalidAccessKeyId|credentials", re.IGNORECASE),
        "access denied (check the URL's signature or your credentials)",
    ),
    (re.compile(r"timed? ?out|Timeout", re.IGNORECASE), "the server did not answer in time (GDAL_HTTP_TIMEOUT)"),
    (re.compile(r"Could not resolve|Couldn't connect|Connection refused|Failed to connect", re.IGNORECASE), "cannot reach the server"),
    (re.compile(r"HTTP\D{0,20}5\d\d\b"), "the server failed (HTTP 5xx)"),
)


#: Seconds the check of a remote raster after a failed read may take.
_PROBE_TIMEOUT_S = 15.0


def read_problem(name: str, exc: BaseException) -> str:
    """The one-line error for pixels of ``name`` that cannot be read (``exc``: the read's error).

    GDAL reports a failed HTTP range request during a read only as a block it could not
    decode, so for an http(s) raster the server is asked again (one byte) to say why.

    Parameters
    ----------
    name : str
        The raster, as the user named it.
    exc : BaseException
        The error of the read (rasterio's; GDAL's message behind it is shown).

    Returns
    -------
    str
        ``"<name>: cannot read pixels, ..."``, URL secrets hidden.

    Examples
    --------
    >>> read_problem("a.tif", OSError("TIFFReadEncodedTile() failed."))
    'a.tif: cannot read pixels, file truncated or corrupt (TIFFReadEncodedTile() failed.)'
    """
    from geoseg.inputs import is_remote, redact

    if not is_remote(name):
        return f"{name}: cannot read pixels, file truncated or corrupt ({_short(exc)})"
    problem = _remote_problem(name, exc, "")
    if not problem and _NETWORK.search(name):
        problem = _probe_http(name) or "the server sent no data or broken data for a block (a network failure, or the file changed)"
    return redact(f"{name}: cannot read pixels: {problem or 'the data is truncated or corrupt'} ({_short(exc)})")


def _probe_http(name: str) -> str | None:
    """Why an http(s) raster cannot be read now, asking the server for its first byte; None if it answers."""
    import base64
    import urllib.error
    import urllib.request

    url = re.sub(r"^/vsicurl(_streaming)?/", "", name)
    if not re.match(r"https?://", url, re.IGNORECASE):
        return None  # object storage (/vsis3/, s3://, ...): its own signing, not repeated here
    parts = urllib.parse.urlsplit(url)
    headers = {"Range": "bytes=0-0"}
    if parts.username is not None:  # user:password@ goes in a header, as curl sends it
        login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
        url = urllib.parse.urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))
    # GDAL may reach the server differently (its own proxy, headers, authentication, TLS
    # settings): then a refusal or a failure to connect here says nothing about GDAL's request.
    own_access = any(os.environ.get(key) for key in _GDAL_HTTP_ACCESS)
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=_PROBE_TIMEOUT_S):  # noqa: S310 - http(s) only
            return None
    except urllib.error.HTTPError as exc:
        return None if own_access and exc.code in (401, 403, 407) else _status_problem(exc.code)
    except (urllib.error.URLError, TimeoutError, OSError):
        return None if own_access else "cannot reach the server"


#: GDAL settings by which its HTTP requests differ from a plain one.
_GDAL_HTTP_ACCESS = (
    "GDAL_HTTP_PROXY", "GDAL_HTTPS_PROXY", "GDAL_HTTP_HEADERS", "GDAL_HTTP_HEADER_FILE", "GDAL_HTTP_AUTH", "GDAL_HTTP_USERPWD",
    "GDAL_HTTP_BEARER", "GDAL_HTTP_COOKIE", "GDAL_HTTP_COOKIEFILE", "GDAL_HTTP_NETRC", "GDAL_HTTP_UNSAFESSL", "CURL_CA_BUNDLE",
)  # fmt: skip


def _status_problem(code: int) -> str:
    """Our words for an HTTP status that is an error."""
    if code == 404:
        return "not found on the server (HTTP 404)"
    if code in (401, 403):
        return f"access denied (HTTP {code}; check the URL's signature or your credentials)"
    if code >= 500:
        return f"the server failed (HTTP {code})"
    return f"the server refused it (HTTP {code})"


#: URLs and virtual paths in GDAL's messages.
_NAMES_IN_MESSAGE = re.compile(r"/vsi[a-z0-9_]+/\S*|[A-Za-z][A-Za-z0-9+.-]*://\S*")

#: Virtual file systems and URL schemes that reach a server.
_NETWORK = re.compile(r"/vsi(curl|s3|gs|az|adls|oss|swift|webhdfs|hdfs)|^(https?|s3|gs|az|oss|ftp|webhdfs)://", re.IGNORECASE)


def _remote_problem(name: str, exc: BaseException, otherwise: str = "not a readable raster") -> str:
    """What went wrong opening a raster behind a URL or virtual path, from GDAL's message.

    The names in the message (the URL, the file name) are left out before it is read, so that
    a file called ``timeout_500.tif`` is not taken for a time-out or a server failure.
    """
    text = " ".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None)
    file_name = urllib.parse.unquote(name.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0])
    text = _NAMES_IN_MESSAGE.sub(" ", text)
    for own in {file_name, urllib.parse.quote(file_name)} - {""}:  # whole names only: "4" leaves "404" alone
        text = re.sub(rf"(?<![\w.-]){re.escape(own)}(?![\w.-])", " ", text)
    if not _NETWORK.search(name):  # /vsizip/, /vsitar/, ... of local files
        missing = re.search(r"does not exist in the file system|No such file", text)
        return "no such file (or no such member of the archive)" if missing else otherwise
    for pattern, words in _HTTP_PROBLEMS:
        if pattern.search(text):
            return words
    return otherwise


def _short(exc: BaseException) -> str:
    # rasterio's read errors say "See previous exception for details": GDAL's own message
    # (which block failed, and why) is the cause; show that instead.
    cause = exc.__cause__ or exc.__context__
    if cause is not None and "previous exception" in str(exc) and str(cause).strip():
        exc = cause
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def not_georeferenced_message(source: str, assumed_gsd_m: float | None, how_to_set: str = "", *, pixel_outputs: bool = True) -> str:
    """The warning for data without georeferencing, worded for the command that reads it.

    Parameters
    ----------
    source : str
        What is not georeferenced (a file, or a list of files).
    assumed_gsd_m : float or None
        The GSD assumed for it; ``None`` when the user gave it (then nothing is said about it).
    how_to_set : str, default ""
        How the user sets the GSD, e.g. ``--gsd-m`` or ``--set assume_gsd_m=VALUE``.
    pixel_outputs : bool, default True
        Whether the outputs are in pixel coordinates (False where nothing is written in the
        input's coordinates, e.g. training).

    Returns
    -------
    str
        One line: ``"<source>: no georeferencing; ..."``.

    Examples
    --------
    >>> not_georeferenced_message("tile.png", 0.3, "--gsd-m", pixel_outputs=False)
    'tile.png: no georeferencing; a GSD of 0.3 m is assumed (set it with --gsd-m)'
    >>> not_georeferenced_message("tile.png", 0.3, pixel_outputs=False)
    'tile.png: no georeferencing; a GSD of 0.3 m is assumed'
    >>> not_georeferenced_message("tile.png", None)
    'tile.png: no georeferencing; output coordinates are pixel coordinates (x = column, y = row)'
    """
    parts = ["output coordinates are pixel coordinates (x = column, y = row)"] if pixel_outputs else []
    if assumed_gsd_m is not None:
        parts.append(f"a GSD of {assumed_gsd_m:g} m is assumed" + (f" (set it with {how_to_set})" if how_to_set else ""))
    return f"{source}: no georeferencing; " + (" and ".join(parts) or "pixel coordinates are used")


def _geoinfo(ds: rasterio.DatasetReader, source: str, assume_gsd_m: float) -> GeoInfo:
    georeferenced = ds.crs is not None and not _is_identity(ds.transform)
    if georeferenced:
        gsd = ground_sample_distance(ds.crs, ds.transform, ds.width, ds.height)
        transform, crs = ds.transform, ds.crs
    else:
        warnings.warn(not_georeferenced_message(source, assume_gsd_m, "assume_gsd_m"), NotGeoreferencedWarning, stacklevel=3)
        gsd = (assume_gsd_m, assume_gsd_m)
        transform, crs = Affine.identity(), None
    nodata = ds.nodata
    return GeoInfo(
        width=ds.width,
        height=ds.height,
        crs=crs,
        transform=transform,
        gsd_xy_m=gsd,
        georeferenced=georeferenced,
        nodata=None if nodata is None else float(nodata),
    )


def _band_names(ds: rasterio.DatasetReader, indexes: Iterable[int]) -> tuple[str, ...]:
    """Each band's description, else ``alpha`` for an alpha band, else ``band<i>``."""
    return tuple(ds.descriptions[i - 1] or ("alpha" if ds.colorinterp[i - 1] == ColorInterp.alpha else f"band{i}") for i in indexes)


def read_geoinfo(path: str | os.PathLike[str], *, assume_gsd_m: float = DEFAULT_ASSUMED_GSD_M) -> tuple[GeoInfo, dict]:
    """Read a raster's georeferencing and a summary of its bands without reading pixels.

    Parameters
    ----------
    path : path-like
        A local file, a GDAL virtual path or a URL (see :func:`open_dataset`).
    assume_gsd_m : float, default DEFAULT_ASSUMED_GSD_M
        Ground sample distance to assume when the file has no georeferencing.

    Returns
    -------
    GeoInfo, dict
        The georeferencing and ``{"count", "dtypes", "driver", "block_shapes", "descriptions",
        "band_names"}``. A band's name is its description, else ``alpha`` for an alpha band,
        else ``band<i>`` (1-based).

    Raises
    ------
    RasterReadError
        The raster cannot be opened.

    Warns
    -----
    NotGeoreferencedWarning
        The raster has no CRS or an identity transform: pixel coordinates and
        ``assume_gsd_m`` are used.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> t = Affine(0.5, 0, 500000, 0, -0.5, 5000000)
    >>> geo = GeoInfo(4, 3, CRS.from_epsg(32633), t, (0.5, 0.5), True)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_raster(f"{d}/p.tif", np.zeros((2, 3, 4), np.float32), geo, nodata=-1)
    ...     info, summary = read_geoinfo(path)
    >>> info.width, info.height, info.crs.to_string(), info.nodata, round(info.gsd_m, 3)
    (4, 3, 'EPSG:32633', -1.0, 0.5)
    >>> summary["count"], summary["dtypes"], summary["band_names"]
    (2, ['float32', 'float32'], ['band1', 'band2'])
    """
    with open_dataset(path) as ds:
        geo = _geoinfo(ds, str(path), assume_gsd_m)
        summary = {
            "count": ds.count,
            "dtypes": list(ds.dtypes),
            "driver": ds.driver,
            "block_shapes": [list(b) for b in ds.block_shapes],
            "descriptions": list(ds.descriptions),
            "band_names": list(_band_names(ds, range(1, ds.count + 1))),
        }
    return geo, summary


def read_raster(
    path: str | os.PathLike[str],
    *,
    bands: list[int] | None = None,
    assume_gsd_m: float = DEFAULT_ASSUMED_GSD_M,
) -> Raster:
    """Read a GDAL raster (GeoTIFF, PNG, JPEG, ...) with its georeferencing.

    Parameters
    ----------
    path : path-like
        The raster file.
    bands : list of int, optional
        1-based band indexes to read; all bands by default. An alpha band is read like any
        other band but also marks pixels where it is 0 as invalid.
    assume_gsd_m : float, default DEFAULT_ASSUMED_GSD_M
        Ground sample distance to assume when the file has no georeferencing.

    Returns
    -------
    Raster
        The pixels, their valid-data mask and georeferencing (see
        :func:`read_dataset_window`).

    Raises
    ------
    RasterReadError
        The file is missing, empty, a directory, not a raster, or truncated/corrupt, or
        ``bands`` names a band the file does not have.

    Warns
    -----
    NotGeoreferencedWarning
        The raster has no CRS or an identity transform: pixel coordinates and
        ``assume_gsd_m`` are used.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> t = Affine(0.5, 0, 500000, 0, -0.5, 5000000)
    >>> geo = GeoInfo(4, 3, CRS.from_epsg(32633), t, (0.5, 0.5), True)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_raster(f"{d}/mask.tif", np.eye(3, 4, dtype=bool), geo)
    ...     r = read_raster(path)
    >>> r.array.dtype.name, r.array[0].tolist(), int(r.valid.sum()), r.band_names
    ('uint8', [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], 12, ('band1',))
    """
    source = str(path)
    with open_dataset(path) as ds:
        geo = _geoinfo(ds, source, assume_gsd_m)
        indexes = bands if bands is not None else list(range(1, ds.count + 1))
        bad = [b for b in indexes if not 1 <= b <= ds.count]
        if bad:
            raise RasterReadError(f"{source}: band(s) {bad} do not exist (the file has {ds.count})")
        return read_dataset_window(ds, source, geo, 0, 0, ds.height, ds.width, bands=indexes)


def write_raster(
    path: str | os.PathLike[str],
    array: np.ndarray,
    geo: GeoInfo,
    *,
    nodata: float | None = None,
    compress: str = "deflate",
) -> Path:
    """Write an array as a Cloud Optimized GeoTIFF on the grid of ``geo``, atomically.

    Parameters
    ----------
    path : path-like
        Destination ``.tif``.
    array : numpy.ndarray
        ``(rows, cols)`` or ``(bands, rows, cols)``; bool is written as uint8 0/1.
    geo : GeoInfo
        Grid and CRS (the input scene's: outputs are never reprojected).
    nodata : float, optional
        Nodata value to record.
    compress : str, default "deflate"
        GDAL compression.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    OutputWriteError
        The folder cannot be written to, or GDAL cannot write the Cloud Optimized GeoTIFF.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import rasterio
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> t = Affine(0.5, 0, 500000, 0, -0.5, 5000000)
    >>> geo = GeoInfo(4, 3, CRS.from_epsg(32633), t, (0.5, 0.5), True)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     path = write_raster(f"{d}/mask.tif", np.eye(3, 4, dtype=bool), geo, nodata=255)
    ...     with rasterio.open(path) as ds:
    ...         ds.dtypes, ds.nodata, ds.crs.to_string(), ds.transform.c, ds.read(1).tolist()
    (('uint8',), 255.0, 'EPSG:32633', 500000.0, [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]])
    """
    data = np.asarray(array)
    data = data[None] if data.ndim == 2 else data
    if data.dtype == bool:
        data = data.astype(np.uint8)
    with RasterTileWriter(path, geo, data.shape[0], data.dtype.name, nodata=nodata, compress=compress) as writer:
        writer.write(data, 0, 0)
    return Path(path)


def read_dataset_window(
    ds: rasterio.DatasetReader,
    source: str,
    geo: GeoInfo,
    row_off: int,
    col_off: int,
    height: int,
    width: int,
    *,
    bands: list[int] | None = None,
    decimation: int = 1,
) -> Raster:
    """Read a window of an open dataset whose :class:`GeoInfo` is already known (see :func:`read_geoinfo`).

    ``source`` names the raster in errors. Pixels where any band's mask is 0 (nodata, alpha)
    or a float value is not finite are invalid. With ``decimation`` k > 1, the window is read
    on a grid k times coarser (``ceil(height / k)`` x ``ceil(width / k)`` cells spread evenly
    over it, averaged: GDAL takes them from the file's overviews when it has them); the
    returned GeoInfo is that grid's.

    Parameters
    ----------
    ds : rasterio.DatasetReader
        The open dataset (see :func:`open_dataset`).
    source : str
        The raster's name, for messages.
    geo : GeoInfo
        The georeferencing of the whole dataset.
    row_off, col_off : int
        The window's first row and column.
    height, width : int
        The window's size in pixels.
    bands : list of int, optional
        1-based band indexes to read; all bands by default.
    decimation : int, default 1
        Read on a grid this many times coarser.

    Returns
    -------
    Raster
        The window's pixels ``(bands, rows, cols)``, valid mask, GeoInfo and band names.

    Raises
    ------
    RasterReadError
        The pixels cannot be read.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from affine import Affine
    >>> from rasterio.crs import CRS
    >>> t = Affine(0.5, 0, 500000, 0, -0.5, 5000000)
    >>> geo = GeoInfo(4, 4, CRS.from_epsg(32633), t, (0.5, 0.5), True)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     ramp = np.arange(16, dtype=np.float32).reshape(4, 4)
    ...     path = write_raster(f"{d}/ramp.tif", ramp, geo)
    ...     with open_dataset(path) as ds:
    ...         rows = read_dataset_window(ds, str(path), geo, 2, 1, 2, 3)
    ...         coarse = read_dataset_window(ds, str(path), geo, 0, 0, 4, 4, decimation=2)
    >>> rows.array.tolist(), rows.geo.transform.c, rows.geo.transform.f
    ([[[9.0, 10.0, 11.0], [13.0, 14.0, 15.0]]], 500000.5, 4999999.0)
    >>> coarse.array.tolist(), coarse.geo.gsd_xy_m
    ([[[2.5, 4.5], [10.5, 12.5]]], (1.0, 1.0))
    """
    window = rasterio.windows.Window(col_off, row_off, width, height)
    indexes = bands if bands is not None else list(range(1, ds.count + 1))
    out_geo = geo.window(row_off, col_off, height, width)
    shape: dict[str, Any] = {}
    if decimation > 1:
        rows, cols = -(-height // decimation), -(-width // decimation)
        out_geo = out_geo.resized(rows, cols)
        shape = {"out_shape": (len(indexes), rows, cols)}
    try:
        array = ds.read(indexes, window=window, resampling=Resampling.average, **shape)
        masks = ds.read_masks(indexes, window=window, resampling=Resampling.nearest, **shape)
    except RasterioError as exc:
        raise RasterReadError(read_problem(source, exc)) from exc
    names = _band_names(ds, indexes)
    valid = np.all(masks > 0, axis=0)
    if np.issubdtype(array.dtype, np.floating):
        valid &= np.all(np.isfinite(array), axis=0)
    return Raster(array=array, geo=out_geo, valid=valid, source=source, band_names=names)


#: Side of the internal tiles of written rasters (the COG driver's default).
COG_BLOCK_PX = 512


class RasterTileWriter:
    """Write a scene-sized raster window by window as a Cloud Optimized GeoTIFF, atomically.

    The windows go into a tiled GeoTIFF beside the destination; when the block exits without
    error, GDAL's COG driver copies it into the final layout (internal overviews, headers
    first, tiles in the order readers fetch them: see :data:`COG_BLOCK_PX`), and the file
    appears under its final name. Overviews of float layers (probabilities) are averages,
    those of integer layers (masks, classes) nearest values, so a mask stays a mask.
    Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], geo: GeoInfo, count: int, dtype: str, *, nodata: float | None = None, compress: str = "deflate") -> None:
        self.path = Path(path)
        self.geo = geo
        self.profile: dict[str, Any] = {
            "driver": "GTiff",
            "width": geo.width,
            "height": geo.height,
            "count": count,
            "dtype": dtype,
            "compress": compress,
            "tiled": True,
            "blockxsize": COG_BLOCK_PX,
            "blockysize": COG_BLOCK_PX,
            "BIGTIFF": "IF_SAFER",
        }
        floating = np.dtype(dtype).kind == "f"
        if floating:
            self.profile["predictor"] = 3
        if nodata is not None:
            self.profile["nodata"] = nodata
        if geo.georeferenced:
            self.profile.update(crs=geo.crs, transform=geo.transform)
        self.cog_options = {
            "COMPRESS": compress.upper(),
            "BLOCKSIZE": str(COG_BLOCK_PX),
            "OVERVIEWS": "IGNORE_EXISTING",
            "RESAMPLING": "AVERAGE" if floating else "NEAREST",
            "PREDICTOR": "YES" if floating else "NO",
            "BIGTIFF": "IF_SAFER",
        }

    def __enter__(self) -> RasterTileWriter:
        self._atomic = atomic_path(self.path)
        self._final = self._atomic.__enter__()
        # not named after the output, so that only the COG is moved into place
        self._staging = self._final.with_name(".staging-" + self._final.name)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RioNotGeoreferencedWarning)
                self._dst = rasterio.open(self._staging, "w", **self.profile)
        except RasterioError as error:  # nothing is left behind: the atomic write is abandoned
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise OutputWriteError(f"{self.path}: cannot write output ({_short(error)})") from error
        return self

    def write(self, array: np.ndarray, row_off: int, col_off: int) -> None:
        """Write ``array`` (``(rows, cols)`` or ``(bands, rows, cols)``) at the given offset.

        Raises
        ------
        OutputWriteError
            GDAL cannot write it (a full disk, say); the output is abandoned on leaving the
            ``with`` block.
        """
        data = array[None] if array.ndim == 2 else array
        window = rasterio.windows.Window(col_off, row_off, data.shape[2], data.shape[1])
        try:
            self._dst.write(data.astype(self.profile["dtype"], copy=False), window=window)
        except RasterioError as error:
            raise OutputWriteError(f"{self.path}: cannot write output ({_short(error)})") from error

    def __exit__(self, exc_type, exc, tb) -> bool | None:  # noqa: ANN001
        self._dst.close()
        if exc_type is None:
            try:
                import rasterio.shutil

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RioNotGeoreferencedWarning)
                    rasterio.shutil.copy(self._staging, self._final, driver="COG", **self.cog_options)
            except BaseException as error:  # noqa: BLE001 - the atomic write is abandoned, then it propagates
                self._atomic.__exit__(type(error), error, error.__traceback__)
                if isinstance(error, RasterioError):
                    raise OutputWriteError(f"{self.path}: cannot write the Cloud Optimized GeoTIFF ({_short(error)})") from error
                raise
            finally:
                self._staging.unlink(missing_ok=True)
        return self._atomic.__exit__(exc_type, exc, tb)
