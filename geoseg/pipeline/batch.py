"""Batches: many scenes through one pipeline, resumable, in-process or on Dask.

Each scene is one unit of work (:func:`geoseg.pipeline.scene.process_scene`) writing
``OUTDIR/<input stem>.<ext>`` atomically. A scene that fails is reported and the others go
on. The process that drives the batch keeps a manifest, ``OUTDIR/geoseg-manifest.json``,
rewritten atomically after every change of a scene's status; rerunning the same batch skips
the scenes it records as done (see :func:`run_batch` for the exact rules) and redoes the
others, so a batch that was killed can simply be started again.

The manifest::

    {"format": "geoseg-manifest", "version": 1,
     "pipeline": "road_centerlines",          # as given
     "pipeline_hash": "<sha256 hex>",         # of the pipeline after --set overrides
     "format_ext": "shp",
     "scenes": [{"input": "a.tif", "status": "done",   # or "failed", "running"
                 "outputs": ["out/a.shp", "out/a_nodes.shp"], "seconds": 1.23,
                 "error": null, "warnings": []}, ...]}
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg.atomic import TEMP_PREFIX, atomic_path
from geoseg.errors import ConfigError, GeosegError, ManifestError, OutputWriteError
from geoseg.pipeline.outputs import output_paths

if TYPE_CHECKING:
    from distributed import Client

    from geoseg.pipeline.pipeline import Pipeline

__all__ = [
    "TileProgressCallback",
    "MANIFEST_NAME",
    "ProgressCallback",
    "SceneReport",
    "pending_scenes",
    "pipeline_hash",
    "read_manifest",
    "run_batch",
]

log = logging.getLogger("geoseg.batch")

#: File name of the manifest inside the output folder.
MANIFEST_NAME = "geoseg-manifest.json"
MANIFEST_FORMAT = "geoseg-manifest"
MANIFEST_VERSION = 1

#: Lock file held (``flock``) while a batch writes to a folder; released by the kernel
#: when the process dies, so it never goes stale.
LOCK_NAME = ".geoseg-batch.lock"

#: Called after each scene with (scenes done, scenes total, the scene's report).
ProgressCallback = Callable[[int, int, "SceneReport"], None]

#: Called with (scene, tiles done, tiles total) while a scene runs in this process.
TileProgressCallback = Callable[[str, int, int], None]

_ENTRY_KEYS = ("input", "status", "outputs", "seconds", "error", "warnings")


@dataclass
class SceneReport:
    """What happened to one scene of a batch.

    Attributes
    ----------
    input : str
        The scene path as given.
    status : {"done", "failed"}
    outputs : list of str
        Files written (``OUTDIR/<stem>...``).
    seconds : float
        Processing time of the scene (of the earlier run for a skipped scene).
    error : str or None
        The error message of a failed scene.
    warnings : list of str
        Warnings raised while processing it.
    skipped : bool
        Done by an earlier run of the batch (found in the manifest), not redone.
    """

    input: str
    status: str
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: bool = False

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)

    def manifest_entry(self) -> dict[str, Any]:
        """The scene's entry in the manifest."""
        return {key: getattr(self, key) for key in _ENTRY_KEYS}


def pipeline_hash(pipeline: Pipeline) -> str:
    """SHA-256 (hex) of the canonical JSON of ``pipeline.to_dict()``.

    Two pipelines with the same steps, parameters (after ``--set`` overrides), engine
    settings and outputs have the same hash, wherever they were loaded from.
    """
    canonical = json.dumps(pipeline.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read_manifest(outdir: str | Path) -> dict[str, Any]:
    """The manifest of a batch output folder, as a mapping.

    Raises
    ------
    ManifestError
        The folder has no manifest, or it is not a geoseg manifest of a known version.
    """
    path = Path(outdir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest (written by `geoseg run`)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT or data.get("version") != MANIFEST_VERSION:
        raise ManifestError(f"{path}: not a {MANIFEST_FORMAT} file of version {MANIFEST_VERSION}")
    if not isinstance(data.get("scenes"), list):
        raise ManifestError(f"{path}: the manifest has no list of scenes")
    return data


class _Manifest:
    """The manifest of one batch run: the entries of earlier runs still valid, plus this run's."""

    def __init__(self, outdir: Path, name: str, digest: str, fmt: str, entries: dict[str, dict[str, Any]]) -> None:
        self.outdir = outdir
        self.header = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "pipeline": name, "pipeline_hash": digest, "format_ext": fmt}
        self.entries = entries
        #: Why earlier results are not reused (logged by :func:`run_batch`).
        self.notes: list[str] = []

    @classmethod
    def resume(cls, outdir: Path, name: str, digest: str, fmt: str, *, overwrite: bool) -> _Manifest:
        """Start from the folder's manifest, keeping its entries only if they are still valid."""
        fresh = cls(outdir, name, digest, fmt, {})
        if overwrite or not (outdir / MANIFEST_NAME).exists():
            return fresh
        try:
            old = read_manifest(outdir)
        except ManifestError as exc:
            fresh.notes.append(f"{exc}; redoing every scene")
            return fresh
        if old.get("pipeline_hash") != digest:
            fresh.notes.append(f"the pipeline or its --set values changed since {outdir / MANIFEST_NAME} was written: redoing every scene")
            return fresh
        if old.get("format_ext") != fmt:
            fresh.notes.append(f"the output format changed ({old.get('format_ext')} -> {fmt}): redoing every scene")
            return fresh
        entries = {e["input"]: e for e in old["scenes"] if isinstance(e, dict) and isinstance(e.get("input"), str)}
        return cls(outdir, name, digest, fmt, entries)

    def done_report(self, scene: str) -> SceneReport | None:
        """The earlier report of ``scene`` if it is done and all its outputs exist, else None."""
        entry = self.entries.get(scene)
        if entry is None or entry.get("status") != "done" or not entry.get("outputs"):
            return None
        if not all((self.outdir / Path(o).name).is_file() for o in entry["outputs"]):
            self.notes.append(f"{scene}: an output recorded in the manifest is missing; redoing the scene")
            return None
        report = SceneReport(**{k: entry.get(k) for k in _ENTRY_KEYS})
        report.skipped = True
        return report

    def set(self, entry: dict[str, Any]) -> None:
        """Record a scene's entry and rewrite the manifest."""
        self.entries[entry["input"]] = entry
        self.write()

    def write(self) -> None:
        """Write the manifest atomically (temporary file, then rename)."""
        data = {**self.header, "scenes": list(self.entries.values())}
        with atomic_path(self.outdir / MANIFEST_NAME) as tmp:
            tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def _check_stems(inputs: Sequence[Path]) -> None:
    counts = Counter(p.stem for p in inputs)
    clashes = sorted(stem for stem, n in counts.items() if n > 1)
    if clashes:
        detail = "; ".join(f"{stem}: " + ", ".join(str(p) for p in inputs if p.stem == stem) for stem in clashes)
        raise ConfigError(f"inputs would write the same output name ({detail}); rename them or run them in separate batches")


@contextmanager
def _folder_lock(outdir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``outdir`` for the batch (POSIX ``flock``; no lock elsewhere)."""
    try:
        import fcntl
    except ImportError:  # Windows: one batch per folder is then the user's job
        yield
        return
    try:
        handle = open(outdir / LOCK_NAME, "a")  # noqa: SIM115 - held for the whole batch
    except OSError as exc:
        raise OutputWriteError(f"{outdir}: cannot write output here ({exc.strerror or exc})") from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputWriteError(f"{outdir}: another geoseg batch is writing to this folder; wait for it or choose another -o") from None
        yield


def _remove_stale_temporaries(outdir: Path) -> None:
    """Remove the temporary files and folders a killed run left in ``outdir``."""
    stale = sorted(outdir.glob(TEMP_PREFIX + "*"))
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary item(s) left in %s by an interrupted run", len(stale), outdir)


def _scene_task(
    pipeline: Pipeline | dict[str, Any],
    source: str,
    scene: str,
    outdir: str,
    fmt: str,
    on_tile: Callable[[int, int], None] | None = None,
    client: Client | None = None,
) -> tuple[SceneReport, str | None]:
    """Process one scene; never raises: errors come back in the report.

    ``pipeline`` is a :class:`Pipeline`, or its ``to_dict()`` (sent to Dask workers).
    Returns the report and, for an unexpected error, its traceback text.
    """
    start = time.perf_counter()
    trace = None
    try:
        from geoseg.pipeline.pipeline import Pipeline
        from geoseg.pipeline.scene import process_scene

        pipe = pipeline if isinstance(pipeline, Pipeline) else Pipeline.from_dict(pipeline, source)
        done = process_scene(pipe, scene, outdir, stem=Path(scene).stem, fmt=fmt, on_tile=on_tile, client=client)
        report = SceneReport(scene, "done", [str(p) for p in done.outputs], warnings=list(done.warnings))
    except GeosegError as exc:
        report = SceneReport(scene, "failed", error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a batch must go on; the error is reported
        report = SceneReport(scene, "failed", error=f"{scene}: unexpected {type(exc).__name__}: {exc}")
        trace = traceback.format_exc()
    report.seconds = round(time.perf_counter() - start, 3)
    return report, trace


def _run_here(
    pipeline: Pipeline,
    scenes: Sequence[Path],
    outdir: Path,
    fmt: str,
    on_start: Callable[[Path], None],
    tile_progress: TileProgressCallback | None,
    client: Client | None = None,
) -> Iterator[tuple[SceneReport, str | None]]:
    """Scenes one after the other, driven from this process (tiles on ``client`` when given)."""
    for scene in scenes:
        on_start(scene)
        on_tile = None if tile_progress is None else partial(tile_progress, str(scene))
        yield _scene_task(pipeline, pipeline.source, str(scene), str(outdir), fmt, on_tile, client)


def _run_on_dask(
    client: Client, pipeline: Pipeline, scenes: Sequence[Path], outdir: Path, fmt: str, on_start: Callable[[Path], None]
) -> Iterator[tuple[SceneReport, str | None]]:
    """Scenes as Dask tasks, as many at a time as the cluster has threads, yielded as they complete."""
    from distributed import as_completed

    spec = pipeline.to_dict()
    queue = deque(scenes)
    running: dict[Any, Path] = {}
    completed = as_completed()

    def fill() -> None:
        slots = max(1, sum(client.nthreads().values()))
        while queue and len(running) < slots:
            scene = queue.popleft()
            on_start(scene)
            future = client.submit(_scene_task, spec, pipeline.source, str(scene), str(outdir), fmt, pure=False)
            running[future] = scene
            completed.add(future)

    fill()
    for future in completed:
        scene = running.pop(future)
        try:
            result = future.result()
        except Exception as exc:  # noqa: BLE001 - the worker died or Dask failed: report, go on
            kind = "the Dask worker running it died (out of memory or crashed)" if type(exc).__name__ == "KilledWorker" else "the Dask task failed"
            result = (SceneReport(str(scene), "failed", error=f"{scene}: {kind}: {type(exc).__name__}: {exc}"), None)
        future.release()
        fill()
        yield result


def pending_scenes(
    pipeline: Pipeline, inputs: Sequence[str | Path], outdir: str | Path, *, fmt: str = "shp", overwrite: bool = False
) -> list[Path]:
    """The inputs that :func:`run_batch` would process (the others are done already).

    Reads the manifest of ``outdir`` without changing anything.
    """
    paths = [Path(p) for p in inputs]
    if overwrite:
        return paths
    out = Path(outdir)
    manifest = _Manifest.resume(out, pipeline.source, pipeline_hash(pipeline), fmt, overwrite=False)
    return [p for p in paths if manifest.done_report(str(p)) is None]


def run_batch(
    pipeline: Pipeline,
    inputs: Sequence[str | Path],
    outdir: str | Path,
    *,
    fmt: str = "shp",
    progress: ProgressCallback | None = None,
    client: Client | None = None,
    overwrite: bool = False,
    pipeline_name: str | None = None,
    tile_progress: TileProgressCallback | None = None,
) -> list[SceneReport]:
    """Run ``pipeline`` on every input and write ``OUTDIR/<input stem>.<ext>``, resumably.

    A scene that fails is reported (``status="failed"`` with the error message) and the
    batch goes on with the others; nothing partial is left for it. The manifest
    ``OUTDIR/geoseg-manifest.json`` records each scene's status, outputs, time and error;
    it is rewritten atomically whenever a scene starts (``"running"``) or ends.

    A scene is **skipped** (reported done with ``skipped=True``) when the manifest records it
    as ``"done"``, the manifest's pipeline hash (:func:`pipeline_hash`) and output format are
    the current ones, and all its recorded outputs exist; otherwise (failed, interrupted
    while running, pipeline or ``--set`` values changed, output deleted) it is redone.
    Temporary files left in ``OUTDIR`` by a killed run are removed first. Only one batch
    at a time may write to a folder (a lock file, ``.geoseg-batch.lock``, enforces it).

    Parameters
    ----------
    pipeline : Pipeline
        A bound pipeline (all parameters set).
    inputs : sequence of path
        Scene files; their stems must differ.
    outdir : path
        Output folder (created if needed).
    fmt : {"shp", "gpkg", "geojson"}
        Vector output format.
    tile_progress : callable, optional
        Called with (scene, tiles done, tiles total) as a scene processed in this process
        advances (scenes on Dask workers report per scene only).
    progress : callable, optional
        Called after each scene (skipped scenes first), with (count, total, report).
    client : distributed.Client, optional
        Run the scenes as tasks on this Dask cluster (as many at once as it has worker
        threads); the client is not closed. Without one, scenes run here, one by one.
    overwrite : bool
        Redo every scene, whatever the manifest says.
    pipeline_name : str, optional
        The pipeline as the user named it, for the manifest (default: ``pipeline.source``).

    Returns
    -------
    list of SceneReport
        One per input, in input order.

    Raises
    ------
    ConfigError
        Two inputs have the same stem, the format is unknown, or a parameter is unset.
    OutputWriteError
        ``outdir`` cannot be written, or another batch is writing to it.
    """
    paths = [Path(p) for p in inputs]
    _check_stems(paths)
    out = Path(outdir)
    pipeline.steps  # noqa: B018 - validates everything before the first scene
    output_paths(pipeline.output_layers(), out, "x", fmt)  # fails early on a bad format
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    with _folder_lock(out):
        _remove_stale_temporaries(out)
        manifest = _Manifest.resume(out, pipeline_name or pipeline.source, pipeline_hash(pipeline), fmt, overwrite=overwrite)
        reports: dict[str, SceneReport] = {}
        todo: list[Path] = []
        for path in paths:
            earlier = manifest.done_report(str(path))
            if earlier is None:
                todo.append(path)
            else:
                reports[str(path)] = earlier
        for note in manifest.notes:
            log.info("%s", note)
        manifest.write()
        if reports:
            log.info("%d of %d scene(s) already done in %s (use --overwrite to redo them)", len(reports), len(paths), out)
        if progress is not None:
            for count, report in enumerate(reports.values(), start=1):
                progress(count, len(paths), report)

        def on_start(scene: Path) -> None:
            manifest.set({"input": str(scene), "status": "running", "outputs": [], "seconds": 0.0, "error": None, "warnings": []})

        if client is None or len(todo) == 1:
            # One scene on a cluster: its tiles, not the scene, become the Dask tasks.
            runner = _run_here(pipeline, todo, out, fmt, on_start, tile_progress, client)
        else:
            runner = _run_on_dask(client, pipeline, todo, out, fmt, on_start)
        for report, trace in runner:
            if report.status == "failed":
                log.error("%s", report.error)
                if trace:
                    log.debug("%s", trace)
            manifest.set(report.manifest_entry())
            reports[report.input] = report
            if progress is not None:
                progress(len(reports), len(paths), report)
    return [reports[str(p)] for p in paths]
