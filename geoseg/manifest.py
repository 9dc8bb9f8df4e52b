"""The manifest of a ``geoseg run`` output folder: ``OUTDIR/geoseg-manifest.json``.

One definition of the format, written by the batch runner (:mod:`geoseg.pipeline.batch`, after
every change of a scene's status) and read by it to resume, and by the report
(:mod:`geoseg.report`)::

    {"format": "geoseg-manifest", "version": 1,
     "pipeline": "road_centerlines",          # as given
     "pipeline_hash": "<sha256 hex>",         # of the pipeline after --set overrides
     "format_ext": "shp",
     "vector_output": {"name": "shp", "dst_crs": null, "precision": null, "rfc7946": false},
     "scenes": [{"input": "a.tif", "status": "done",   # or "failed", "running", "interrupted"
                 "outputs": ["out/a.shp", "out/a_nodes.shp"], "seconds": 1.23,
                 "error": null, "warnings": [], "crs": "EPSG:32633",
                 "stac": null,        # for a STAC item: {"item", "asset", "href", "bbox", "geometry", "crs"}
                 "source": {"size": 123456, "mtime_ns": 1700000000000000000}}, ...]}  # a local raster as it was read

Examples
--------
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as out:
...     write_manifest(out, {"pipeline": "p", "scenes": [{"input": "a.tif", "status": "done"}]})
...     print([ManifestScene.from_entry(s).stem for s in read_manifest(out)["scenes"]])
['a']
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoseg.atomic import atomic_path
from geoseg.errors import ManifestError
from geoseg.inputs import item_stem, raster_stem

__all__ = ["MANIFEST_NAME", "MANIFEST_FORMAT", "MANIFEST_VERSION", "ENTRY_KEYS", "ManifestScene", "read_manifest", "write_manifest"]

#: File name of the manifest inside the output folder.
MANIFEST_NAME = "geoseg-manifest.json"
MANIFEST_FORMAT = "geoseg-manifest"
MANIFEST_VERSION = 1
#: The fields of a scene's entry.
ENTRY_KEYS = ("input", "status", "outputs", "seconds", "error", "warnings", "crs", "stac", "source")


@dataclass
class ManifestScene:
    """One scene of a manifest, as recorded (``status`` ``"done"``, ``"failed"``, or
    ``"running"``/``"interrupted"`` for a scene of an interrupted batch, with an ``error`` saying so)."""

    input: str
    status: str
    outputs: list[str] = field(default_factory=list)
    seconds: float = math.nan
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    stac: dict | None = None

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> ManifestScene:
        """A scene from its entry in a manifest read by :func:`read_manifest`."""
        seconds = entry.get("seconds")
        status = entry["status"]
        unfinished = None if status in ("done", "failed") else f"not finished (status {status!r}): the batch was interrupted"
        return cls(
            input=entry["input"],
            status=status,
            outputs=[str(o) for o in entry.get("outputs") or []],
            seconds=float(seconds) if isinstance(seconds, (int, float)) else math.nan,
            error=entry.get("error") or unfinished,
            warnings=[str(w) for w in entry.get("warnings") or []],
            stac=entry.get("stac") if isinstance(entry.get("stac"), dict) else None,
        )

    @property
    def raster(self) -> str:
        """What was processed: the input, or the asset of a STAC item."""
        return str(self.stac["href"]) if self.stac and self.stac.get("href") else self.input

    @property
    def stem(self) -> str:
        """The stem of the scene's outputs."""
        return item_stem(str(self.stac["item"])) if self.stac and self.stac.get("item") else raster_stem(self.input)


def read_manifest(outdir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of an output folder, checked: a mapping whose ``scenes`` are entries with
    an ``input`` and a ``status`` (see the module docstring).

    Parameters
    ----------
    outdir : path-like
        The output folder, which holds :data:`MANIFEST_NAME`.

    Returns
    -------
    dict of str to Any
        The manifest, as read (``format``, ``version``, ``scenes`` and the other fields).

    Raises
    ------
    ManifestError
        The folder or its manifest is missing, not JSON, or not a geoseg manifest of a known
        version, or a scene lacks its ``input`` or ``status``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_manifest(tmp, {"pipeline": "p", "scenes": [{"input": "a.tif", "status": "done"}]})
    ...     manifest = read_manifest(tmp)
    ...     path = pathlib.Path(tmp) / MANIFEST_NAME
    ...     _ = path.write_text('{"format": "geoseg-manifest", "version": 2}')
    ...     try:
    ...         read_manifest(tmp)
    ...     except ManifestError as exc:
    ...         print(str(exc).replace(tmp, "TMP"))
    TMP/geoseg-manifest.json: manifest version 2 is not supported (this geoseg reads version 1)
    >>> manifest["version"], manifest["pipeline"], manifest["scenes"][0]["status"]
    (1, 'p', 'done')
    """
    folder = Path(outdir)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ManifestError(f"{folder}: no such output folder")
    if not path.is_file():
        raise ManifestError(
            f"{folder}: no {MANIFEST_NAME} in this folder; it is written by `geoseg run ... -o {folder}`, "
            "so use a folder that geoseg run wrote (or rerun the batch)"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise ManifestError(f'{path}: not a geoseg manifest (expected "format": "{MANIFEST_FORMAT}")')
    if data.get("version") != MANIFEST_VERSION:
        raise ManifestError(f"{path}: manifest version {data.get('version')!r} is not supported (this geoseg reads version {MANIFEST_VERSION})")
    scenes = data.get("scenes")
    if not isinstance(scenes, list):
        raise ManifestError(f'{path}: "scenes" must be a list')
    for i, scene in enumerate(scenes):
        if not isinstance(scene, dict) or not isinstance(scene.get("input"), str) or not isinstance(scene.get("status"), str):
            raise ManifestError(f'{path}: scene {i + 1} needs an "input" path and a "status"')
    return data


def write_manifest(outdir: str | os.PathLike[str], data: dict[str, Any]) -> None:
    """Write ``data`` (top-level fields and ``scenes``) as the folder's manifest, atomically.

    ``format`` and ``version`` are added here, first; a ``format`` or ``version`` key in
    ``data`` replaces them.

    Parameters
    ----------
    outdir : path-like
        The output folder (created if missing).
    data : dict of str to Any
        The manifest's fields, JSON-serialisable.

    Raises
    ------
    OutputWriteError
        The manifest cannot be written.
    TypeError
        ``data`` is not JSON-serialisable (nothing is written).

    Examples
    --------
    >>> import pathlib, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_manifest(pathlib.Path(tmp) / "out", {"pipeline": "p", "scenes": []})
    ...     text = (pathlib.Path(tmp) / "out" / MANIFEST_NAME).read_text(encoding="utf-8")
    >>> print(text, end="")
    {
     "format": "geoseg-manifest",
     "version": 1,
     "pipeline": "p",
     "scenes": []
    }
    """
    content = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, **data}
    with atomic_path(Path(outdir) / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(content, indent=1) + "\n", encoding="utf-8")
