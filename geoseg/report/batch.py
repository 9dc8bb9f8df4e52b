"""The report of a ``geoseg run`` output folder, built from its manifest.

``geoseg run`` writes ``OUTDIR/geoseg-manifest.json`` (:mod:`geoseg.manifest`). For each
scene the report measures the network (``outputs[0]``), scores it against a truth file
matched by stem when truth is given, draws it over the scene (read decimated), and writes
``OUTDIR/report.html`` with the overlays in ``OUTDIR/report_files/`` or embedded.
"""

from __future__ import annotations

import base64
import io
import logging
import math
import os
import warnings
from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
from PIL import Image

from geoseg.atomic import atomic_path
from geoseg.errors import GeosegError, NotGeoreferencedWarning
from geoseg.evaluate import VECTOR_SUFFIXES, evaluate_files
from geoseg.inputs import is_remote
from geoseg.manifest import ManifestScene, read_manifest
from geoseg.raster import read_geoinfo
from geoseg.report.changes import change_legend_text, changes_of_outputs, find_changes, render_changes
from geoseg.report.html import SceneRow, order_rows, render_html
from geoseg.report.overlay import render_overlay
from geoseg.report.stats import match_truth, network_stats, read_network, truth_candidates

__all__ = ["REPORT_NAME", "FILES_DIR", "write_report"]

log = logging.getLogger("geoseg.report")

#: The report page written into the output folder.
REPORT_NAME = "report.html"
#: Folder beside the page for the overlay PNGs (when they are not embedded).
FILES_DIR = "report_files"
#: Longest side of the thumbnails in the summary table, in pixels.
THUMB_SIZE = 160


def _resolve_input(path: str, folder: Path) -> str:
    """A scene path as given to ``geoseg run``: relative to the current folder, else to the output folder.

    URLs and GDAL virtual paths are kept as they are.
    """
    if is_remote(path):
        return path
    p = Path(path)
    if p.is_absolute() or p.exists() or not (folder / p).exists():
        return str(p)
    return str(folder / p)


def _resolve_output(path: str, folder: Path) -> Path:
    """An output path as the manifest in ``folder`` records it, found in ``folder``.

    The manifest records outputs as ``geoseg run`` wrote them (``OUTDIR/sub/a.shp``, relative
    to the folder it ran in). A path that leads into ``folder`` is kept; otherwise (the folder
    was moved, copied or renamed, or the report runs elsewhere) the file is looked up in
    ``folder`` under the longest tail of the recorded path that exists there, so that a
    report never reads another folder's outputs of the same name.
    """
    p = Path(path)
    if p.exists() and p.resolve().is_relative_to(folder.resolve()):
        return p
    tails = [Path(*p.parts[i:]) for i in range(1 if p.is_absolute() else 0, len(p.parts))]
    return next((folder / tail for tail in tails if (folder / tail).exists()), folder / p.name)


def _described_input(entry: ManifestScene) -> str:
    """The input as the report shows it: with the STAC item and asset for a STAC scene."""
    if not entry.stac:
        return entry.input
    return f"{entry.input} (STAC item {entry.stac.get('item')}, asset {entry.stac.get('asset')}: {entry.raster})"


def _georef_warnings(scene: str, known: list[str]) -> list[str]:
    if any("georeferenc" in w for w in known):
        return []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NotGeoreferencedWarning)
        read_geoinfo(scene)
    return [str(w.message) for w in caught if issubclass(w.category, NotGeoreferencedWarning)]


def _publish(image: Image.Image, folder: Path, name: str, embed: bool) -> str:
    """The ``src`` of an image: a data URI, or ``report_files/NAME`` written beside the page."""
    if embed:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    with atomic_path(folder / FILES_DIR / name) as tmp:
        image.save(tmp, format="PNG")
    return f"{FILES_DIR}/{name}"


def _measure(entry: ManifestScene, folder: Path, truth_files: list[Path] | None, buffer_m: float) -> tuple[SceneRow, gpd.GeoDataFrame | None, str | None]:
    """The row of one scene (without its image), its network, and its scene file when readable."""
    path = _resolve_input(entry.raster, folder)
    scene: str | None = path
    row = SceneRow(name=entry.stem, input=_described_input(entry), status=entry.status, seconds=entry.seconds, error=entry.error, warnings=list(entry.warnings))
    if "***" in path:  # redacted by geoseg.inputs.redact: the manifest has no way back to the pixels
        scene = None
        row.warnings.append("no overlay: the scene's URL has a query string or password, whose values geoseg never writes down")
    else:
        try:
            row.warnings += _georef_warnings(path, row.warnings)
        except GeosegError as exc:
            scene = None
            if entry.status == "done":  # a failed scene's error already says why
                row.warnings.append(f"no overlay: {exc}")
    if entry.status != "done":
        return row, None, scene
    edges = None
    vectors = [
        o
        for o in entry.outputs
        if Path(o).suffix.lower() in VECTOR_SUFFIXES and not (Path(o).suffix.lower() != ".gpkg" and find_changes([Path(o)], entry.stem))
    ]
    if not vectors:
        row.warnings.append("no vector network among the outputs (" + ", ".join(entry.outputs) + "); nothing measured")
        return row, None, scene
    network = _resolve_output(vectors[0], folder)
    row.network = str(network)
    try:
        edges = read_network(network)
        row.stats = network_stats(edges)
    except GeosegError as exc:
        row.warnings.append(f"network not readable: {exc}")
        return row, None, scene
    if truth_files is not None:
        truth, others = match_truth(row.name, truth_files)
        if truth is None:
            row.warnings.append(f"no truth file named {row.name}.* or {row.name}_centerlines.*")
        else:
            row.truth = str(truth)
            if others:
                row.warnings.append(f"several truth files match; used {truth}, not " + ", ".join(map(str, others)))
            try:
                row.scores = evaluate_files(network, truth, buffer_m=buffer_m)
            except GeosegError as exc:
                row.warnings.append(f"evaluation failed: {exc}")
    return row, edges, scene


def _add_changes(row: SceneRow, entry: ManifestScene, folder: Path, scene: str | None, max_size: int, embed: bool) -> None:
    """Map updating outputs (``update_map``): their totals, and the classes drawn over the scene."""
    try:
        changes = changes_of_outputs([_resolve_output(o, folder) for o in entry.outputs], entry.stem)
    except GeosegError as exc:
        row.warnings.append(f"map changes not readable: {exc}")
        return
    if changes is None:
        return
    row.changes = change_legend_text(changes)
    if scene is None:
        return
    try:
        image = render_changes(scene, changes, max_size=max_size, legend=False)
    except GeosegError as exc:
        row.warnings.append(f"no map-changes overlay: {exc}")
        return
    row.changes_image = _publish(image, folder, f"{row.name}_changes.png", embed)


def write_report(
    outdir: str | os.PathLike[str],
    truth: str | os.PathLike[str] | None = None,
    *,
    buffer_m: float = 2.0,
    max_size: int = 768,
    embed: bool = False,
) -> Path:
    """Write ``OUTDIR/report.html`` for the batch that ``geoseg run`` wrote into ``outdir``.

    Parameters
    ----------
    outdir : path-like
        A ``geoseg run`` output folder (with its ``geoseg-manifest.json``).
    truth : path-like or str, optional
        Reference networks: a folder or a glob of vector files. A scene ``<stem>`` is scored
        against ``<stem>.<ext>``, else ``<stem>_centerlines.<ext>``.
    buffer_m : float, default 2.0
        Buffer half-width in metres for completeness / correctness / quality.
    max_size : int, default 768
        Longest side of the overlays in pixels; scenes are read decimated to it.
    embed : bool, default False
        Embed the overlays in the page as data URIs (one portable file) instead of writing
        them to ``OUTDIR/report_files/<stem>.png`` (and ``<stem>_thumb.png``).

    Returns
    -------
    pathlib.Path
        The report page.

    Raises
    ------
    geoseg.errors.ManifestError
        If ``outdir`` has no readable manifest.
    geoseg.errors.ConfigError
        If ``truth`` names no vector file.
    geoseg.errors.OutputWriteError
        If the page or an overlay image cannot be written.

    Examples
    --------
    >>> from geoseg.report import write_report
    >>> write_report("out/", truth="sample_data/")  # doctest: +SKIP
    PosixPath('out/report.html')
    """
    folder = Path(outdir)
    data = read_manifest(folder)
    meta = {k: v for k, v in data.items() if k != "scenes"}
    entries = [ManifestScene.from_entry(scene) for scene in data["scenes"]]
    truth_files = truth_candidates(truth) if truth is not None else None
    measured = [_measure(entry, folder, truth_files, buffer_m) for entry in entries]
    for row, edges, scene in measured:
        if scene is None:
            continue
        try:
            image = render_overlay(scene, edges, max_size=max_size, legend=False)
        except GeosegError as exc:
            row.warnings.append(f"no overlay: {exc}")
            continue
        thumb = image.copy()
        thumb.thumbnail((THUMB_SIZE, THUMB_SIZE))
        row.image = _publish(image, folder, f"{row.name}.png", embed)
        row.thumb = _publish(thumb, folder, f"{row.name}_thumb.png", embed)
        log.debug("overlay of %s drawn", row.name)
    for (row, _, scene), entry in zip(measured, entries):
        if entry.status == "done":
            _add_changes(row, entry, folder, scene, max_size, embed)
    rows = order_rows([row for row, _, _ in measured])
    failed = sum(row.status != "done" for row in rows)
    total_km = sum(row.stats.road_km for row in rows if row.stats and math.isfinite(row.stats.road_km))
    details = [
        ("pipeline", str(meta.get("pipeline", "?"))),
        ("output folder", str(folder)),
        ("scenes", f"{len(rows)} ({len(rows) - failed} done, {failed} failed)"),
        ("road length", f"{total_km:.3f} km"),
    ]
    if truth is not None:
        details.append(("truth", f"{truth} (buffer {buffer_m:g} m)"))
    details.append(("written", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")))
    page = render_html(rows, title=f"geoseg report: {folder.resolve().name}", details=details, with_truth=truth is not None)
    with atomic_path(folder / REPORT_NAME) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return folder / REPORT_NAME
