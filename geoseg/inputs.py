"""Where scenes come from: local files and globs, GDAL virtual paths, URLs and STAC items.

A scene is named by the user as

* a local file (``scenes/a.tif``), or a glob of them (``"scenes/*.tif"``, expanded here
  also when the shell did not);
* a GDAL virtual path (``/vsicurl/https://host/a.tif``, ``/vsis3/bucket/a.tif``,
  ``/vsizip//data/s.zip/a.tif``, ...) or a URL (``https://``, ``http://``, ``s3://``,
  ``gs://``, ``az://``, ...) that rasterio maps to one: passed to GDAL as given, never
  normalised nor looked for on the local disk, never expanded as a glob (a URL's ``?`` is a
  query, not a wildcard);
* a STAC Item (a ``.json`` file, local or behind an http(s) URL): the raster is the item's
  visual asset (or the one ``--asset`` names), its outputs are named after the item's id,
  and the item is recorded in the batch manifest.

:class:`SceneInput` carries the name as given (the batch's key for resuming), what GDAL
opens, and the stem of the outputs.

Examples
--------
>>> s = scene_input("/vsicurl/https://example.com/tiles/scene_a.tif?sig=abc")
>>> s.remote, s.stem, s.raster
(True, 'scene_a', '/vsicurl/https://example.com/tiles/scene_a.tif?sig=abc')
>>> scene_input("s3://bucket/area/b.tif").stem
'b'
"""

from __future__ import annotations

import glob
import json
import os
import posixpath
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from geoseg.errors import RasterReadError

__all__ = [
    "is_glob",
    "SceneInput",
    "StacAsset",
    "expand_scenes",
    "is_remote",
    "is_stac_name",
    "item_stem",
    "raster_stem",
    "read_stac_item",
    "redact",
    "scene_input",
]

#: GDAL virtual file system prefixes (``/vsicurl/``, ``/vsis3/``, ``/vsizip/``, ...).
_VSI = re.compile(r"^/vsi[a-z0-9_]+(/|\?|$)")
#: A URL scheme (``https://``, ``s3://``, ``zip+https://``, ...); not a Windows drive letter.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")

#: Asset keys taken, in this order, when ``--asset`` is not given.
DEFAULT_ASSET_KEYS = ("visual", "rgb", "image", "data")

#: Seconds to wait for a STAC item served over HTTP.
STAC_TIMEOUT_S = 60.0

#: Characters kept in an output stem made from a STAC item id.
_UNSAFE_STEM = re.compile(r"[^A-Za-z0-9._-]+")

#: The query string (``?a=1&b=2``) of a URL or GDAL virtual path in a text (``/vsis3/b/k.tif?x=1``,
#: ``/vsicurl?url=...``), up to a blank, quote or closing bracket.
_URL_QUERY = re.compile(r"(?P<url>(?:[A-Za-z][A-Za-z0-9+.-]*://|/vsi[a-z0-9_]+)[^\s'\"?<>]*)\?(?P<query>[^\s'\"<>()]+)")

#: A URL's user and password (``https://user:password@host/``).
_URL_USER = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@'\"]+@")

#: The last path segments of a STAC API item URL (``.../collections/C/items/ID``).
_STAC_API_ITEM = re.compile(r"/collections/[^/]+/items/[^/]+/?$")

#: File extensions of STAC items.
_JSON_EXTENSIONS = (".json", ".geojson")

#: File extensions of rasters, which a STAC API URL never has.
_RASTER_EXTENSIONS = (".tif", ".tiff", ".jp2", ".vrt", ".img", ".png", ".jpg", ".jpeg", ".nc", ".hdf")


def redact(text: str) -> str:
    """``text`` with the values of every URL query string in it, and URL passwords, hidden.

    Signed URLs (S3 presigned, Azure SAS, Planetary Computer, ...) carry their credentials in
    the query string, other URLs in ``user:password@``: they must not end up in manifests,
    reports or logs. The keys stay, so
    that two URLs that differ only in their signature have the same redacted name (a rerun
    with a fresh signature resumes the batch).

    Parameters
    ----------
    text : str
        Any text: a name, a message.

    Returns
    -------
    str
        ``text`` with query values and ``user:password@`` replaced by ``***``.

    Examples
    --------
    >>> redact("https://h/a.tif?sig=abc&se=2026 failed")
    'https://h/a.tif?sig=***&se=*** failed'
    >>> redact("ftp://me:pw@h/a.tif"), redact("/vsis3/b/k.tif?tok3n")
    ('ftp://***@h/a.tif', '/vsis3/b/k.tif?***')
    >>> redact("/vsicurl/https://h/a.tif"), redact("data/a.tif")
    ('/vsicurl/https://h/a.tif', 'data/a.tif')
    """

    def hide(match: re.Match[str]) -> str:
        parts = [part.split("=", 1)[0] + "=***" if "=" in part else "***" for part in match["query"].split("&") if part]
        return match["url"] + "?" + "&".join(parts)

    return _URL_USER.sub(r"\g<scheme>***@", _URL_QUERY.sub(hide, text))


def is_remote(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` is a GDAL virtual path or a URL rather than a local file path.

    Parameters
    ----------
    name : str or path-like
        A scene's name. A Windows drive letter (``C:/``) is not a URL scheme.

    Returns
    -------
    bool

    Examples
    --------
    >>> [is_remote(n) for n in ("/vsizip//d/s.zip/a.tif", "https://h/a.tif", "data/a.tif", "C:/a.tif")]
    [True, True, False, False]
    """
    text = os.fspath(name)
    return bool(_VSI.match(text) or _URL.match(text))


@dataclass(frozen=True)
class StacAsset:
    """The STAC item a scene comes from.

    Attributes
    ----------
    item : str
        The item's ``id``.
    asset : str
        The key of the asset processed.
    href : str
        The asset's raster, resolved against the item's location.
    bbox : list of float or None
        The item's ``bbox`` (WGS84 longitude/latitude).
    geometry : dict or None
        The item's footprint (GeoJSON geometry, WGS84).
    crs : str or None
        The CRS the item declares for its assets (``proj:code``, ``proj:epsg`` or
        ``proj:wkt2``), checked against the raster's own.
    """

    item: str
    asset: str
    href: str
    bbox: list[float] | None = None
    geometry: dict[str, Any] | None = None
    crs: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """What the manifest records of it (the href with its query string values hidden: see :func:`redact`)."""
        return {"item": self.item, "asset": self.asset, "href": redact(self.href), "bbox": self.bbox, "geometry": self.geometry, "crs": self.crs}


@dataclass(frozen=True)
class SceneInput:
    """One scene of a batch: how the user named it, what GDAL opens, and its outputs' stem.

    ``str(scene)`` is the name with any query string values hidden (:func:`redact`): the
    batch manifest's key and the name in messages.

    Attributes
    ----------
    name : str
        The input exactly as given (a path, virtual path, URL or STAC item).
    raster : str
        What rasterio opens (``name``, or a STAC item's asset).
    stem : str
        The stem of its outputs (``OUTDIR/<stem>.<ext>``).
    remote : bool
        ``raster`` is a virtual path or URL (not checked on the local disk).
    stac : StacAsset or None
        The STAC item and asset, for a scene given as an item.
    problem : str or None
        Why the scene cannot be processed, found before processing (a STAC item that cannot
        be read or lacks the asset): the batch reports the scene as failed with it and goes on.
    """

    name: str
    raster: str
    stem: str
    remote: bool = False
    stac: StacAsset | None = field(default=None)
    problem: str | None = None

    def __str__(self) -> str:
        return redact(self.name)

    @property
    def folder(self) -> PurePosixPath | Path:
        """The folder it lies in: the local folder (absolute), or ``/<host>/<path>`` of a URL.

        A URL's folder leaves out its user, password, port and query string.
        """
        if not is_remote(self.name):
            return Path(os.path.abspath(self.name)).parent
        return PurePosixPath("/", *_remote_parts(self.name)).parent

    def exists(self) -> bool:
        """False only for a local file that is missing (remote scenes are not checked here)."""
        return is_remote(self.name) or Path(self.name).exists()

    def fingerprint(self) -> dict[str, int] | None:
        """Size and modification time (ns) of a local raster, to tell a replaced file; None for a remote scene or a file that cannot be read."""
        if self.remote:
            return None
        try:
            stat = os.stat(self.raster)
        except OSError:
            return None
        return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _remote_parts(name: str) -> list[str]:
    """The host and path components of a URL or virtual path, without prefix, credentials, port or query.

    ``..`` is resolved, and ``:`` (not allowed in Windows folder names) becomes ``_``.
    """
    text = _VSI.sub("", name, count=1) if _VSI.match(name) else name
    host, path = "", text.split("?", 1)[0]
    if _URL.match(text):
        try:
            parsed = urllib.parse.urlsplit(text)
            host, path = parsed.hostname or "", parsed.path
        except ValueError:  # not a valid URL for urllib (e.g. brackets in the host): its text
            path = text.split("://", 1)[1].split("?", 1)[0]
    parts = posixpath.normpath("/" + path).split("/")
    return [p.replace(":", "_") for p in (host, *parts) if p and p not in (".", "..")]


def raster_stem(name: str) -> str:
    """The output stem of a raster path, virtual path or URL: its file name without the extension.

    Parameters
    ----------
    name : str
        A local path, GDAL virtual path or URL (its query string is ignored).

    Returns
    -------
    str
        The stem; ``scene`` for a URL without a path.

    Examples
    --------
    >>> raster_stem("https://h/a/scene.tif?token=x"), raster_stem("data/b.tif")
    ('scene', 'b')
    """
    if not is_remote(name):
        return Path(name).stem
    parts = _remote_parts(name)
    return PurePosixPath(parts[-1]).stem if parts else "scene"


def item_stem(item_id: str) -> str:
    """The output stem of a STAC item: its id, with characters unsafe in file names replaced.

    Each run of characters other than letters, digits, ``.``, ``_`` and ``-`` becomes one
    ``_``; leading and trailing ``.`` and ``_`` are dropped.

    Parameters
    ----------
    item_id : str
        The item's ``id``.

    Returns
    -------
    str
        The stem; ``item`` when nothing is left.

    Examples
    --------
    >>> item_stem("S2A_MSIL2A/2024:01")
    'S2A_MSIL2A_2024_01'
    >>> item_stem(" .hidden item. "), item_stem("///")
    ('hidden_item', 'item')
    """
    return _UNSAFE_STEM.sub("_", item_id).strip("._") or "item"


def is_stac_name(name: str) -> bool:
    """Whether ``name`` names a STAC item: a ``.json`` file or URL, or a STAC API item URL.

    ``.geojson`` counts as ``.json``. A STAC API item URL is an http(s) URL whose path ends
    in ``/collections/<id>/items/<id>`` and has no raster extension.

    Parameters
    ----------
    name : str
        A scene's name.

    Returns
    -------
    bool

    Examples
    --------
    >>> [is_stac_name(n) for n in ("a/item.json", "https://h/api/collections/s2/items/T32_2024", "https://h/a.tif")]
    [True, True, False]
    """
    if _URL.match(name):
        path = urllib.parse.urlsplit(name).path
        if path.lower().endswith(_JSON_EXTENSIONS):
            return True
        api = urllib.parse.urlsplit(name).scheme.lower() in ("http", "https") and _STAC_API_ITEM.search(path)
        return bool(api) and not path.lower().endswith(_RASTER_EXTENSIONS)
    return name.split("?", 1)[0].lower().endswith(_JSON_EXTENSIONS)  # a virtual path too: told to download it


def scene_input(name: str | os.PathLike[str] | SceneInput, *, asset: str | None = None, strict: bool = True) -> SceneInput:
    """The :class:`SceneInput` of one name (a STAC item's JSON is read now).

    Parameters
    ----------
    name : str, path-like or SceneInput
        A raster path, GDAL virtual path, URL, or a STAC item (see :func:`is_stac_name`).
        Give virtual paths as strings: ``pathlib.Path`` folds their double slashes.
    asset : str, optional
        The asset of a STAC item to process (default: its visual asset, see
        :func:`read_stac_item`).
    strict : bool
        Raise when a STAC item cannot be used; with ``False``, the scene carries the reason
        in :attr:`SceneInput.problem` instead (a batch then fails that scene only).

    Returns
    -------
    SceneInput
        The scene; ``name`` itself when it is one already (``asset`` and ``strict`` are then
        ignored). A local path is spelled as :class:`pathlib.Path` spells it (``./a.tif`` is
        ``a.tif``).

    Raises
    ------
    RasterReadError
        With ``strict``: a STAC item that cannot be read, is not an item, or lacks the asset.

    Examples
    --------
    >>> s = scene_input("./data/a.tif")
    >>> s.name, s.raster, s.stem, s.remote, s.stac
    ('data/a.tif', 'data/a.tif', 'a', False, None)
    >>> import json, tempfile
    >>> item = {"type": "Feature", "id": "S2B 2024/05", "assets": {"visual": {"href": "tci.tif"}}}
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = open(f"{d}/item.json", "w").write(json.dumps(item))
    ...     s = scene_input(f"{d}/item.json")
    ...     bad = scene_input(f"{d}/item.json", asset="nir", strict=False)
    ...     s.raster == f"{d}/tci.tif"
    True
    >>> s.stem, s.stac.asset, bad.problem.split(": ", 1)[1]
    ('S2B_2024_05', 'visual', "the item has no asset 'nir' (its assets: visual)")
    """
    if isinstance(name, SceneInput):
        return name
    text = os.fspath(name)
    remote = is_remote(text)
    if is_stac_name(text):
        try:
            stac = read_stac_item(text, asset=asset)
        except RasterReadError as exc:
            if strict:
                raise
            stem = raster_stem(text) if not _STAC_API_ITEM.search(text) else item_stem(_remote_parts(text)[-1])
            return SceneInput(text, text, stem, remote, problem=redact(str(exc)))
        return SceneInput(text, stac.href, item_stem(stac.item), is_remote(stac.href), stac)
    name = text if remote else str(Path(text))  # local paths as pathlib spells them (./a.tif is a.tif), as manifests always had them
    return SceneInput(name, name, raster_stem(name), remote)


def expand_scenes(patterns: Iterable[str], *, asset: str | None = None) -> list[SceneInput]:
    """The scenes of a command line: local globs expanded, everything else as given.

    A STAC item that cannot be used (unreadable, not an item, without the asset) does not
    stop the others: its scene carries the reason (:attr:`SceneInput.problem`) and fails
    alone when the batch runs.

    Parameters
    ----------
    patterns : iterable of str
        Paths, globs (of local files), virtual paths, URLs, STAC items.
    asset : str, optional
        The asset of the STAC items to process.

    Returns
    -------
    list of SceneInput

    Raises
    ------
    RasterReadError
        A glob matches no file, or ``asset`` was given without a STAC item among the inputs.

    Examples
    --------
    >>> [s.stem for s in expand_scenes(["/vsicurl/http://h/a.tif", "https://h/b.tif?x=1"])]
    ['a', 'b']
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     for name in ("b.tif", "a.tif", "notes.txt"):
    ...         pathlib.Path(d, name).touch()
    ...     [s.stem for s in expand_scenes([f"{d}/*.tif"])]
    ['a', 'b']
    """
    scenes: list[SceneInput] = []
    for pattern in patterns:
        if not is_remote(pattern) and is_glob(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise RasterReadError(f"{pattern}: no file matches this pattern")
            scenes += [scene_input(m, asset=asset, strict=False) for m in matches]
        else:
            scenes.append(scene_input(pattern, asset=asset, strict=False))
    if asset is not None and not any(is_stac_name(s.name) for s in scenes):
        raise RasterReadError(f"--asset {asset}: picks an asset of STAC items (item.json), and no input is one")
    return scenes


def is_glob(name: str) -> bool:
    """Whether ``name`` is a glob pattern: it has ``*``, ``?`` or ``[``, and is no existing file.

    A file whose name holds those characters (``mask [a].tif``, as QGIS users name layers) is
    taken as it is.

    Examples
    --------
    >>> is_glob("tiles/*.tif"), is_glob("tiles/a.tif")
    (True, False)
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     pathlib.Path(d, "mask [a].tif").touch()
    ...     is_glob(f"{d}/mask [a].tif")
    False
    """
    return glob.has_magic(name) and not os.path.lexists(name)


def _read_json(name: str) -> Any:
    """The JSON document at a local path or http(s) URL.

    Raises
    ------
    RasterReadError
        It cannot be fetched or read, or it is not JSON.
    """
    scheme = urllib.parse.urlsplit(name).scheme.lower() if _URL.match(name) else ""
    if scheme not in ("", "http", "https") or _VSI.match(name):
        raise RasterReadError(f"{redact(name)}: STAC items are read from local files or http(s) URLs; download it first")
    try:
        if scheme:
            request = urllib.request.Request(name, headers={"Accept": "application/geo+json, application/json"})
            with urllib.request.urlopen(request, timeout=STAC_TIMEOUT_S) as answer:  # noqa: S310 - http(s) only
                text = answer.read().decode("utf-8")
        else:
            text = Path(name).read_text(encoding="utf-8")
    except urllib.error.HTTPError as exc:
        raise RasterReadError(f"{redact(name)}: the server answered HTTP {exc.code} ({exc.reason})") from None
    except urllib.error.URLError as exc:
        raise RasterReadError(f"{redact(name)}: cannot reach the server ({exc.reason})") from None
    except TimeoutError:
        raise RasterReadError(f"{redact(name)}: the server did not answer within {STAC_TIMEOUT_S:g} s") from None
    except FileNotFoundError:
        raise RasterReadError(f"{redact(name)}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RasterReadError(f"{redact(name)}: cannot read it ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RasterReadError(f"{redact(name)}: not JSON ({exc.msg} at line {exc.lineno}); a STAC item is a GeoJSON Feature") from None


def _resolve_href(href: str, item: str) -> str:
    """An asset's href made absolute against the item's location (URL or local folder).

    Examples
    --------
    >>> _resolve_href("/data/a.tif", "https://h/stac/item.json")
    'https://h/data/a.tif'
    >>> _resolve_href("../a.tif", "https://h/stac/items/item.json")
    'https://h/stac/a.tif'
    """
    if is_remote(href):
        return href
    if _URL.match(item):  # relative or root-relative: on the item's server
        return urllib.parse.urljoin(item, href)
    if os.path.isabs(href):
        return href
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(item)), href))


def _declared_crs(item: dict[str, Any], asset: dict[str, Any]) -> str | None:
    """The CRS an item (or its asset) declares with the projection extension, if any."""
    for where in (asset, item.get("properties") or {}):
        if where.get("proj:code"):
            return str(where["proj:code"])
        if where.get("proj:epsg"):
            return f"EPSG:{int(where['proj:epsg'])}"
        if where.get("proj:wkt2"):
            return str(where["proj:wkt2"])
    return None


def _pick_asset(assets: dict[str, Any], asset: str | None, name: str) -> str:
    """The key of the asset to process: ``asset``, else the visual one (see :data:`DEFAULT_ASSET_KEYS`)."""
    keys = ", ".join(assets) or "none"
    if asset is not None:
        if asset not in assets:
            raise RasterReadError(f"{redact(name)}: the item has no asset {asset!r} (its assets: {keys})")
        return asset
    for key in DEFAULT_ASSET_KEYS:
        if key in assets:
            return key
    visual = [k for k, a in assets.items() if "visual" in (a.get("roles") or [])]
    if visual:
        return visual[0]
    rasters = [k for k, a in assets.items() if "image/tiff" in str(a.get("type", "")) and "data" in (a.get("roles") or ["data"])]
    if len(rasters) == 1:
        return rasters[0]
    raise RasterReadError(f"{redact(name)}: the item has no visual asset; choose one with --asset KEY (its assets: {keys})")


def read_stac_item(name: str, *, asset: str | None = None) -> StacAsset:
    """The asset of a STAC Item to process, with the item's id, footprint and declared CRS.

    The asset is ``asset`` if given; otherwise the first of :data:`DEFAULT_ASSET_KEYS` the
    item has, else the asset whose roles include ``visual``, else its only GeoTIFF data
    asset. Relative hrefs are resolved against the item's location.

    Parameters
    ----------
    name : str
        The item: a local ``.json`` file or an http(s) URL.
    asset : str, optional
        The asset key.

    Returns
    -------
    StacAsset

    Raises
    ------
    RasterReadError
        The item cannot be read, is not a STAC Item (a GeoJSON Feature with assets), or has no
        such asset, or the asset has no href.

    Examples
    --------
    >>> import json, tempfile
    >>> item = {
    ...     "type": "Feature",
    ...     "id": "S2B_20240501",
    ...     "bbox": [13, 52, 14, 53],
    ...     "properties": {"proj:epsg": 32633},
    ...     "assets": {"thumbnail": {"href": "thumb.png"}, "visual": {"href": "tci.tif"}},
    ... }
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = open(f"{d}/item.json", "w").write(json.dumps(item))
    ...     a = read_stac_item(f"{d}/item.json")
    ...     a.href == f"{d}/tci.tif"
    True
    >>> a.item, a.asset, a.crs, a.bbox
    ('S2B_20240501', 'visual', 'EPSG:32633', [13.0, 52.0, 14.0, 53.0])
    """
    item = _read_json(name)
    if not isinstance(item, dict) or item.get("type") != "Feature" or not isinstance(item.get("assets"), dict):
        kind = item.get("type") if isinstance(item, dict) else type(item).__name__
        features = item.get("features") if isinstance(item, dict) and isinstance(item.get("features"), list) else [item]
        if kind in ("FeatureCollection", "Feature") and features and not any(isinstance(f, dict) and "assets" in f for f in features):
            raise RasterReadError(f"{redact(name)}: a vector file (GeoJSON {kind} without STAC assets), not a raster scene or a STAC Item")
        hint = "; give one item of the collection" if kind in ("FeatureCollection", "Collection", "Catalog") else ""
        raise RasterReadError(f"{redact(name)}: not a STAC Item (a GeoJSON Feature with assets; this is a {kind}){hint}")
    try:
        assets: dict[str, Any] = item["assets"]
        key = _pick_asset(assets, asset, name)
        entry = assets[key]
        href = entry.get("href") if isinstance(entry, dict) else None
        if not isinstance(href, str) or not href:
            raise RasterReadError(f"{redact(name)}: the asset {key!r} has no href")
        item_id = str(item.get("id") or Path(urllib.parse.urlsplit(name).path).stem)
        bbox = item.get("bbox")
        return StacAsset(
            item=item_id,
            asset=key,
            href=_resolve_href(href, name),
            bbox=[float(v) for v in bbox] if isinstance(bbox, list) else None,
            geometry=item.get("geometry") if isinstance(item.get("geometry"), dict) else None,
            crs=_declared_crs(item, entry),
        )
    except (AttributeError, TypeError, ValueError) as exc:  # a field of the wrong type (an asset that is not an object, a bbox of words)
        raise RasterReadError(f"{redact(name)}: malformed STAC Item ({exc})") from None
