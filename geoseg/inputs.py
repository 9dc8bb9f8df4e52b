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
    "SceneInput",
    "StacAsset",
    "expand_scenes",
    "is_remote",
    "item_stem",
    "raster_stem",
    "read_stac_item",
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


def is_remote(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` is a GDAL virtual path or a URL rather than a local file path.

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
        """What the manifest records of it (the geometry is left to the item itself)."""
        return {"item": self.item, "asset": self.asset, "href": self.href, "bbox": self.bbox, "crs": self.crs}


@dataclass(frozen=True)
class SceneInput:
    """One scene of a batch: how the user named it, what GDAL opens, and its outputs' stem.

    Attributes
    ----------
    name : str
        The input exactly as given (a path, virtual path, URL or STAC item): the manifest's
        key and the name in messages.
    raster : str
        What rasterio opens (``name``, or a STAC item's asset).
    stem : str
        The stem of its outputs (``OUTDIR/<stem>.<ext>``).
    remote : bool
        ``raster`` is a virtual path or URL (not checked on the local disk).
    stac : StacAsset or None
        The STAC item and asset, for a scene given as an item.
    """

    name: str
    raster: str
    stem: str
    remote: bool = False
    stac: StacAsset | None = field(default=None)

    def __str__(self) -> str:
        return self.name

    @property
    def folder(self) -> PurePosixPath | Path:
        """The folder it lies in: the local folder (absolute), or the URL's host and path."""
        if not self.remote and self.stac is None:
            return Path(os.path.abspath(self.name)).parent
        return PurePosixPath("/", *_remote_parts(self.name)).parent

    def exists(self) -> bool:
        """False only for a local file that is missing (remote scenes are not checked here)."""
        return self.remote or Path(self.name).exists()


def _remote_parts(name: str) -> list[str]:
    """The host and path components of a URL or virtual path, without query or prefix."""
    text = _VSI.sub("", name, count=1) if _VSI.match(name) else name
    parsed = urllib.parse.urlsplit(text if _URL.match(text) else "file://" + text.lstrip("/"))
    return [p for p in (parsed.netloc, *parsed.path.split("/")) if p]


def raster_stem(name: str) -> str:
    """The output stem of a raster path, virtual path or URL: its file name without the extension.

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

    Examples
    --------
    >>> item_stem("S2A_MSIL2A/2024:01")
    'S2A_MSIL2A_2024_01'
    """
    return _UNSAFE_STEM.sub("_", item_id).strip("._") or "item"


def _is_stac_name(name: str) -> bool:
    """Whether ``name`` names a JSON document (a STAC item), by its extension."""
    path = urllib.parse.urlsplit(name).path if _URL.match(name) else name
    return path.lower().endswith(".json")


def scene_input(name: str | os.PathLike[str] | SceneInput, *, asset: str | None = None) -> SceneInput:
    """The :class:`SceneInput` of one name (a STAC item's JSON is read now).

    Parameters
    ----------
    name : str, path-like or SceneInput
        A raster path, GDAL virtual path, URL, or a STAC item (``.json``). Give virtual paths
        as strings: ``pathlib.Path`` folds their double slashes.
    asset : str, optional
        The asset of a STAC item to process (default: its visual asset, see
        :func:`read_stac_item`); an error for other inputs.

    Raises
    ------
    RasterReadError
        A STAC item that cannot be read, is not an item, or lacks the asset.
    """
    if isinstance(name, SceneInput):
        return name
    text = os.fspath(name)
    remote = is_remote(text)
    if _is_stac_name(text):
        stac = read_stac_item(text, asset=asset)
        return SceneInput(text, stac.href, item_stem(stac.item), is_remote(stac.href), stac)
    name = text if remote else str(Path(text))  # local paths as pathlib spells them (./a.tif is a.tif), as manifests always had them
    return SceneInput(name, name, raster_stem(name), remote)


def expand_scenes(patterns: Iterable[str], *, asset: str | None = None) -> list[SceneInput]:
    """The scenes of a command line: local globs expanded, everything else as given.

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
        A glob matches no file, a STAC item cannot be used, or ``asset`` was given without a
        STAC item among the inputs.

    Examples
    --------
    >>> [s.stem for s in expand_scenes(["/vsicurl/http://h/a.tif", "https://h/b.tif?x=1"])]
    ['a', 'b']
    """
    scenes: list[SceneInput] = []
    for pattern in patterns:
        if not is_remote(pattern) and glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise RasterReadError(f"{pattern}: no file matches this pattern")
            scenes += [scene_input(m, asset=asset) for m in matches]
        else:
            scenes.append(scene_input(pattern, asset=asset))
    if asset is not None and not any(s.stac for s in scenes):
        raise RasterReadError(f"--asset {asset}: picks an asset of STAC items (item.json), and no input is one")
    return scenes


def _read_json(name: str) -> Any:
    """The JSON document at a local path or http(s) URL.

    Raises
    ------
    RasterReadError
        It cannot be fetched or read, or it is not JSON.
    """
    scheme = urllib.parse.urlsplit(name).scheme.lower() if _URL.match(name) else ""
    try:
        if scheme in ("http", "https"):
            request = urllib.request.Request(name, headers={"Accept": "application/geo+json, application/json"})
            with urllib.request.urlopen(request, timeout=STAC_TIMEOUT_S) as answer:  # noqa: S310 - http(s) only
                text = answer.read().decode("utf-8")
        elif scheme or _VSI.match(name):
            raise RasterReadError(f"{name}: STAC items are read from local files or http(s) URLs; download it first")
        else:
            text = Path(name).read_text(encoding="utf-8")
    except urllib.error.HTTPError as exc:
        raise RasterReadError(f"{name}: the server answered HTTP {exc.code} ({exc.reason})") from None
    except urllib.error.URLError as exc:
        raise RasterReadError(f"{name}: cannot reach the server ({exc.reason})") from None
    except TimeoutError:
        raise RasterReadError(f"{name}: the server did not answer within {STAC_TIMEOUT_S:g} s") from None
    except FileNotFoundError:
        raise RasterReadError(f"{name}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RasterReadError(f"{name}: cannot read it ({exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RasterReadError(f"{name}: not JSON ({exc.msg} at line {exc.lineno}); a STAC item is a GeoJSON Feature") from None


def _resolve_href(href: str, item: str) -> str:
    """An asset's href made absolute against the item's location (URL or local folder)."""
    if is_remote(href) or os.path.isabs(href):
        return href
    if _URL.match(item):
        return urllib.parse.urljoin(item, href)
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
            raise RasterReadError(f"{name}: the item has no asset {asset!r} (its assets: {keys})")
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
    raise RasterReadError(f"{name}: the item has no visual asset; choose one with --asset KEY (its assets: {keys})")


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
        such asset.
    """
    item = _read_json(name)
    if not isinstance(item, dict) or item.get("type") != "Feature" or not isinstance(item.get("assets"), dict):
        kind = item.get("type") if isinstance(item, dict) else type(item).__name__
        hint = "; give one item of the collection" if kind in ("FeatureCollection", "Collection", "Catalog") else ""
        raise RasterReadError(f"{name}: not a STAC Item (a GeoJSON Feature with assets; this is a {kind}){hint}")
    assets: dict[str, Any] = item["assets"]
    key = _pick_asset(assets, asset, name)
    entry = assets[key]
    href = entry.get("href") if isinstance(entry, dict) else None
    if not isinstance(href, str) or not href:
        raise RasterReadError(f"{name}: the asset {key!r} has no href")
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
