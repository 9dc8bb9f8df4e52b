"""Batches: many scenes through one pipeline, resumable, in-process or on Dask.

Each scene is one unit of work (:func:`geoseg.pipeline.scene.process_scene`) writing
``OUTDIR/<input stem>.<ext>`` atomically (``OUTDIR/<input folder>/<input stem>.<ext>`` with
``keep_folders``). A scene that fails is reported and the others go on. The process that drives the batch keeps a manifest, ``OUTDIR/geoseg-manifest.json``,
rewritten atomically after every change of a scene's status; rerunning the same batch skips
the scenes it records as done (see :func:`run_batch` for the exact rules) and redoes the
others, so a batch that was killed can simply be started again. A batch stopped by Ctrl-C
(SIGINT) records its unfinished scenes as ``"interrupted"`` and raises
:class:`BatchInterrupted`. :func:`plan_batch` tells what a batch would do without reading a
pixel or writing anything (``geoseg run --dry-run``).

The manifest's format is defined in :mod:`geoseg.manifest`.

Inputs are SceneInput objects (:class:`~geoseg.inputs.SceneInput`; or paths, virtual paths, URLs and STAC
items, see :mod:`geoseg.inputs`); ``input`` is the name as given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import traceback
import warnings
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoseg.atomic import TEMP_PREFIX, remove_outputs, same_file_key
from geoseg.errors import ConfigError, GeosegError, InputMismatchError, ManifestError, OutputWriteError, RasterReadError
from geoseg.inputs import SceneInput, is_remote, redact, scene_input
from geoseg.manifest import ENTRY_KEYS, MANIFEST_NAME, read_manifest, write_manifest
from geoseg.vector import VectorFormat, vector_format

if TYPE_CHECKING:
    from distributed import Client

    from geoseg.pipeline.engine import TilePass
    from geoseg.pipeline.pipeline import Pipeline
    from geoseg.raster import GeoInfo

__all__ = [
    "TileProgressCallback",
    "BatchInterrupted",
    "LocalCluster",
    "ProgressCallback",
    "SceneReport",
    "discard_interrupted",
    "output_folders",
    "pending_scenes",
    "pipeline_hash",
    "run_batch",
]

log = logging.getLogger("geoseg.batch")


#: Lock file held (``flock``) while a batch writes to a folder; released by the kernel
#: when the process dies, so it never goes stale.
LOCK_NAME = ".geoseg-batch.lock"

#: Called after each scene with (scenes done, scenes total, the scene's report).
ProgressCallback = Callable[[int, int, "SceneReport"], None]

#: Called with (scene, tiles done, tiles total, the pass over the tiles) while a scene runs in
#: this process.
TileProgressCallback = Callable[[str, int, int, "TilePass"], None]


@dataclass
class SceneReport:
    """What happened to one scene of a batch.

    Attributes
    ----------
    input : str
        The scene path as given.
    status : {"done", "failed", "interrupted"}
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
    crs : str or None
        CRS of the outputs as written (``AUTHORITY:CODE`` or WKT; None: pixel coordinates, or
        nothing written).
    stac : dict or None
        The STAC item and asset processed, for a scene given as an item.
    source : dict or None
        Size and modification time of a local raster when it was read
        (:meth:`~geoseg.inputs.SceneInput.fingerprint`): a rerun redoes a scene whose file changed.
    """

    input: str
    status: str
    outputs: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: bool = False
    crs: str | None = None
    stac: dict[str, Any] | None = None
    source: dict[str, int] | None = None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)

    def manifest_entry(self) -> dict[str, Any]:
        """The scene's entry in the manifest."""
        return {key: getattr(self, key) for key in ENTRY_KEYS}


def pipeline_hash(pipeline: Pipeline) -> str:
    """SHA-256 (hex) of the canonical JSON of ``pipeline.to_dict()``.

    Two pipelines with the same steps, parameters (after ``--set`` overrides), engine
    settings and outputs have the same hash, wherever they were loaded from. The local files
    they name (a model, a road map, an AOI) count by their size and modification time, so that
    a file replaced under the same name (a retrained model, an edited AOI) redoes the batch.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline.

    Returns
    -------
    str
        64 lowercase hexadecimal digits.
    """
    spec = pipeline.to_dict()
    stats = {name: os.stat(name) for name in sorted(_named_files(spec))}
    files = {name: [st.st_size, st.st_mtime_ns] for name, st in stats.items()}
    canonical = json.dumps({"pipeline": spec, "files": files} if files else spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _named_files(value: Any) -> set[str]:
    """The existing local files named by the strings in a pipeline's settings (searched in depth)."""
    if isinstance(value, str):
        return {value} if not is_remote(value) and os.path.isfile(value) else set()
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return set().union(*(_named_files(v) for v in value)) if value else set()
    return set()


class _Manifest:
    """The manifest of one batch run: the entries of earlier runs still valid, plus this run's."""

    def __init__(self, outdir: Path, name: str, digest: str, fmt: VectorFormat, entries: dict[str, dict[str, Any]]) -> None:
        self.outdir = outdir
        self.header = {
            "pipeline": name,
            "pipeline_hash": digest,
            "format_ext": fmt.name,
            "vector_output": fmt.to_dict(),
        }
        self.entries = entries
        #: Why earlier results are not reused (logged by :func:`run_batch`).
        self.notes: list[str] = []
        #: Scenes done by an earlier run under other settings, whose entries this manifest drops.
        self.replaced: list[str] = []

    @classmethod
    def resume(cls, outdir: Path, name: str, digest: str, fmt: VectorFormat, *, overwrite: bool) -> _Manifest:
        """Start from the folder's manifest, keeping its entries only if they are still valid."""
        fresh = cls(outdir, name, digest, fmt, {})
        if overwrite or not (outdir / MANIFEST_NAME).exists():
            return fresh
        try:
            old = read_manifest(outdir)
        except ManifestError as exc:
            fresh.notes.append(f"{exc}; redoing every scene")
            return fresh
        entries = {e["input"]: e for e in old["scenes"] if isinstance(e, dict) and isinstance(e.get("input"), str)}
        if old.get("pipeline_hash") != digest:
            change = f"the pipeline, its --set values or a file it reads (model, map, AOI) changed since {outdir / MANIFEST_NAME} was written"
        elif old.get("format_ext") != fmt.name:
            change = f"the output format changed ({old.get('format_ext')} -> {fmt.name})"
        # manifests written before vector output options existed recorded plain formats
        elif old.get("vector_output", VectorFormat(fmt.name).to_dict()) != fmt.to_dict():
            change = "the vector output options (--dst-crs, --rfc7946, --precision) changed"
        else:
            return cls(outdir, name, digest, fmt, entries)
        fresh.notes.append(f"{change}: redoing the batch's scenes")
        fresh.replaced = [key for key, entry in entries.items() if entry.get("status") == "done"]
        return fresh

    def done_report(self, scene: SceneInput, folder: Path) -> SceneReport | None:
        """The earlier report of ``scene`` if it is done and all its outputs exist in ``folder``, else None.

        A STAC item whose asset (``--asset``) or the asset's href changed since is redone, and
        so is a local file whose size or modification time changed.
        """
        entry = self.entries.get(str(scene))
        if entry is None or entry.get("status") != "done" or not entry.get("outputs"):
            return None
        if scene.problem is not None:  # e.g. the STAC API is down now: what was done stays done
            self.notes.append(f"{scene}: cannot check it now ({scene.problem}); keeping the earlier result")
            now = before = None
        else:
            now = None if scene.stac is None else scene.stac.to_dict()
            before = entry.get("stac") if isinstance(entry.get("stac"), dict) else None
        if (now is None) != (before is None) or (now and before and (now["asset"], now["href"]) != (before.get("asset"), before.get("href"))):
            what = "its STAC asset" if now and before and now["asset"] != before.get("asset") else "the raster it reads"
            self.notes.append(f"{scene}: {what} changed since the earlier run; redoing the scene")
            return None
        recorded_source = entry.get("source")
        current = scene.fingerprint() if scene.problem is None else None  # a file since removed, or unreadable now: kept
        if isinstance(recorded_source, dict) and current is not None and recorded_source != current:
            self.notes.append(f"{scene}: the file changed since the earlier run (size or modification time); redoing the scene")
            return None
        if not all((folder / Path(o).name).is_file() for o in entry["outputs"]):
            self.notes.append(f"{scene}: an output recorded in the manifest is missing; redoing the scene")
            return None
        recorded: dict[str, Any] = {k: entry.get(k) for k in ENTRY_KEYS}
        report = SceneReport(**recorded)
        report.skipped = True
        return report

    def set(self, entry: dict[str, Any]) -> None:
        """Record a scene's entry and rewrite the manifest."""
        self.entries[entry["input"]] = entry
        self.write()

    def write(self) -> None:
        """Write the manifest atomically (temporary file, then rename)."""
        write_manifest(self.outdir, {**self.header, "scenes": list(self.entries.values())})


#: The option that mirrors input folders under OUTDIR, named in messages.
KEEP_FOLDERS_HINT = "--keep-folders (keep_folders=True from Python)"


def output_folders(inputs: Sequence[str | Path | SceneInput], outdir: str | Path, *, keep_folders: bool = False) -> dict[str, Path]:
    """The folder each input's outputs go to, by input as given.

    ``OUTDIR`` for all of them; with ``keep_folders``, ``OUTDIR/<the input's folder relative
    to the inputs' common parent folder>``, so that ``a/s1.tif`` and ``b/s1.tif`` write
    ``OUTDIR/a/s1.shp`` and ``OUTDIR/b/s1.shp`` (for URLs, the folder is the host and path:
    ``https://h/a/s1.tif`` has ``h/a``).

    Parameters
    ----------
    inputs : sequence of str, pathlib.Path or SceneInput
        The scenes.
    outdir : str or pathlib.Path
        The batch's output folder.
    keep_folders : bool, default False
        Mirror the input folders under ``outdir``.

    Returns
    -------
    dict of str to pathlib.Path
        The output folder of each input, keyed by the input as given (``str`` of its
        :class:`~geoseg.inputs.SceneInput`).

    Examples
    --------
    >>> folders = output_folders(["data/a/s1.tif", "data/b/s1.tif"], "out", keep_folders=True)
    >>> {scene: folder.as_posix() for scene, folder in folders.items()}
    {'data/a/s1.tif': 'out/a', 'data/b/s1.tif': 'out/b'}
    >>> {scene: folder.as_posix() for scene, folder in output_folders(["a/s1.tif"], "out").items()}
    {'a/s1.tif': 'out'}
    """
    out = Path(outdir)
    scenes = [scene_input(p, strict=False) for p in inputs]
    if not keep_folders or not scenes:
        return {str(s): out for s in scenes}
    # One tree for all: a local folder's parts (a Windows drive letter as a part of its own),
    # a URL's host and path; each input goes to its folder's parts after the common ones.
    parts = [_folder_parts(s) for s in scenes]
    shared = 0
    while all(len(p) > shared and os.path.normcase(p[shared]) == os.path.normcase(parts[0][shared]) for p in parts):  # as the file system compares
        shared += 1
    return {str(s): out.joinpath(*p[shared:]) for s, p in zip(scenes, parts)}


def _folder_parts(scene: SceneInput) -> tuple[str, ...]:
    """The components of a scene's folder (:attr:`SceneInput.folder`), as relative folder names.

    A local folder's drive becomes plain names (``C:`` is ``C``; ``\\\\nas\\share`` is
    ``UNC/nas/share``).
    """
    folder = scene.folder
    if not isinstance(folder, Path):  # a URL's /<host>/<path>
        return folder.parts[1:]
    drive = folder.drive
    head = ("UNC", *[p for p in re.split(r"[\\/]+", drive) if p]) if drive.startswith(("\\\\", "//")) else (drive.rstrip(":"),) if drive else ()
    return tuple(p for p in (*head, *folder.parts[1:]) if p)


def _check_stems(inputs: Sequence[SceneInput], folders: dict[str, Path], keep_folders: bool) -> None:
    """Refuse inputs that would write the same output file, or that differ only in their URL secrets.

    Scenes already known to fail (:attr:`SceneInput.problem`) write nothing and are not counted.
    """
    by_key: dict[str, set[str]] = {}
    for scene in inputs:
        by_key.setdefault(str(scene), set()).add(scene.name)
    same = sorted(key for key, names in by_key.items() if len(names) > 1)
    if same:
        raise ConfigError(
            f"inputs differ only in the values of their query strings or passwords, which geoseg never writes down: {', '.join(same)}; "
            "run them in separate batches (-o)"
        )
    inputs = [p for p in inputs if p.problem is None]
    counts = Counter((folders[str(p)], p.stem) for p in inputs)
    clashes = sorted(key for key, n in counts.items() if n > 1)
    if not clashes:
        return
    detail = "; ".join(f"{stem}: " + ", ".join(str(p) for p in inputs if (folders[str(p)], p.stem) == (folder, stem)) for folder, stem in clashes)
    if keep_folders:
        remedy = "they are in the same folder: rename them or run them in separate batches"
    else:
        remedy = f"rename them, run them in separate batches, or add {KEEP_FOLDERS_HINT} to write them into subfolders that mirror the input folders"
    raise ConfigError(f"inputs would write the same output name ({detail}); {remedy}")


def _local_inputs(inputs: Sequence[SceneInput]) -> dict[str, str]:
    """The local files of the inputs (:func:`same_file_key` to the input's name), each given once.

    Raises
    ------
    ConfigError
        One file named twice (a path and a glob that matches it): not two scenes of one stem.
    """
    local: dict[str, str] = {}
    for scene in inputs:
        if scene.remote:
            continue
        key = same_file_key(Path(scene.raster))
        if key in local:
            also = "" if local[key] == str(scene) else f" (also as {local[key]})"
            raise ConfigError(f"{scene}: the same file is given twice{also}; give each scene once")
        local[key] = str(scene)
    return local


def _check_output_files(inputs: Sequence[SceneInput], folders: dict[str, Path], pipeline: Pipeline, fmt: VectorFormat, local_inputs: dict[str, str]) -> None:
    """Refuse output files that would replace an input, or collide although their stems differ.

    Colliding stems: ``a.tif`` writes ``a_new.shp``, and ``a_new.tif`` writes ``a_new.shp``.

    An output written over an input (``geoseg run road_segmentation scenes/a.tif -o scenes/``
    writes its mask as ``scenes/a.tif``) would destroy the scene: refused before any scene runs.
    """
    from geoseg.pipeline.outputs import output_paths

    owners: dict[Path, str] = {}
    for scene in inputs:
        if scene.problem is not None:
            continue
        try:
            paths = output_paths(pipeline.output_layers(), folders[str(scene)], scene.stem, fmt)
        except GeosegError:
            continue  # a stem that is no file name: that scene fails alone, when it runs
        for path in paths:
            victim = local_inputs.get(same_file_key(path))
            if victim is not None:
                raise ConfigError(f"{scene}: its output {path} would overwrite the input {victim}; choose another output folder (-o)")
            other = owners.setdefault(path, str(scene))
            if other != str(scene):
                raise ConfigError(f"{other} and {scene} would both write {path}; rename one of them or run them in separate batches")


def check_batch(pipeline: Pipeline, inputs: Sequence[SceneInput], folders: dict[str, Path], fmt: VectorFormat, *, keep_folders: bool) -> None:
    """What a batch checks before its first scene (a run and a dry run alike).

    The pipeline's parameters and steps, the output names (no two inputs writing the same
    file, none written over an input), the vector options, and the files the steps read
    besides the scenes (their models, :meth:`~geoseg.pipeline.step.Step.check_files`).

    Raises
    ------
    ConfigError
        A clash of output names, an output over an input, an unset parameter or a vector
        option no output takes.
    ModelFileError
        A model file that no scene could use.
    """
    local_inputs = _local_inputs(inputs)
    _check_stems(inputs, folders, keep_folders)
    pipeline.steps  # noqa: B018 - validates everything before the first scene
    _check_vector_options(pipeline, fmt)
    _check_output_files(inputs, folders, pipeline, fmt, local_inputs)
    for step in pipeline.steps:
        step.check_files()


def _check_vector_options(pipeline: Pipeline, fmt: VectorFormat) -> None:
    """Refuse a reprojection that no output would get (rasters keep the scene's grid)."""
    from geoseg.pipeline.step import writes_vectors

    if fmt.target_crs is not None and not writes_vectors(pipeline.output_layers()):
        option = "--rfc7946" if fmt.rfc7946 else f"--dst-crs {fmt.dst_crs}"
        raise ConfigError(
            f"{option}: the pipeline writes only rasters ({', '.join(pipeline.output_layers())}), which stay on the scene's grid "
            "and CRS; drop the option (reproject rasters with gdalwarp)"
        )


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


def _remove_stale_temporaries(folders: Iterable[Path]) -> int:
    """Remove the temporary files and folders a killed run left in ``folders``; how many."""
    stale = sorted(path for folder in set(folders) if folder.is_dir() for path in folder.glob(TEMP_PREFIX + "*"))
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stale)


class BatchInterrupted(KeyboardInterrupt):
    """A batch stopped by Ctrl-C (SIGINT); its manifest marks the unfinished scenes ``"interrupted"``.

    Running the same batch again resumes it. A ``KeyboardInterrupt``, so code that catches
    that keeps working.

    Attributes
    ----------
    outdir : Path
        The output folder.
    done, failed, total : int
        Scenes done (also by earlier runs), failed, and in the batch.
    leftovers : list of Path
        Output files of the scenes that were running: a Dask worker may still complete them
        after the interrupt (see :func:`discard_interrupted`).
    folders : list of Path
        The batch's output folders (where temporaries may be left).
    """

    def __init__(self, outdir: Path, done: int, failed: int, total: int, leftovers: list[Path], folders: list[Path]) -> None:
        super().__init__(f"{outdir}: batch interrupted, {done} of {total} scene(s) done")
        self.outdir, self.done, self.failed, self.total = outdir, done, failed, total
        self.leftovers, self.folders = leftovers, folders


def discard_interrupted(stop: BatchInterrupted) -> None:
    """Remove what an interrupted batch's running scenes left: temporaries and unrecorded outputs.

    Call it once the processes that ran those scenes are gone (a local Dask cluster closed);
    the manifest records the scenes as ``"interrupted"``, so their outputs must not exist.
    A scene still running on a remote cluster may write again: the next run cleans up then.
    Nothing is done while another batch holds the folder, nor when it cannot be locked.

    Parameters
    ----------
    stop : BatchInterrupted
        The exception :func:`run_batch` raised; its ``outdir``, ``folders`` and ``leftovers``
        say what to clean.

    An output that cannot be removed is logged as a warning, not raised: the interrupted
    batch still exits as interrupted.
    """
    try:
        with _folder_lock(stop.outdir):
            _remove_stale_temporaries(stop.folders)
            remove_outputs(stop.leftovers)
    except OutputWriteError as exc:  # another batch holds the folder, or it cannot be locked
        log.debug("not cleaning up after the interrupt: %s", exc)
    except OSError as exc:  # an output that cannot be removed: say so, and keep the clean interrupted exit
        log.warning("%s: could not remove what the interrupted scenes left (%s); the next run of this batch removes it", stop.outdir, exc)


def _scene_checks(scene: SceneInput, pipeline: Pipeline, fmt: VectorFormat) -> str | None:
    """The checks made on a scene's header before any pixel is read; a warning, or None.

    Raises
    ------
    GeosegError
        The scene cannot be processed (see :func:`_check_reprojectable`).
    """
    if scene.problem is not None:
        raise RasterReadError(scene.problem)
    from geoseg.pipeline.step import writes_vectors

    vectors = writes_vectors(pipeline.output_layers())
    reproject = fmt.target_crs is not None and vectors
    geojson = fmt.name == "geojson" and fmt.target_crs is None and vectors
    if not (reproject or geojson) and (scene.stac is None or scene.stac.crs is None):
        return None
    from geoseg.raster import read_geoinfo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scene's own warnings come when it is processed
        geo, _ = read_geoinfo(scene.raster, assume_gsd_m=pipeline.engine.assume_gsd_m)
    if reproject:
        _check_reprojectable(scene, geo, fmt)
    if geojson:
        from geoseg.pipeline.outputs import check_geojson_crs

        check_geojson_crs(str(scene), geo.crs, fmt)
    return _stac_crs_note(scene, geo)


def _check_reprojectable(scene: SceneInput, geo: GeoInfo, fmt: VectorFormat) -> None:
    """Refuse, before any pixel is read, a scene whose network cannot be reprojected (no georeferencing)."""
    if not geo.georeferenced:
        option = "--rfc7946" if fmt.rfc7946 else "--dst-crs"
        raise InputMismatchError(
            f"{scene}: no georeferencing (pixel coordinates), so its network cannot be reprojected to {fmt.target_crs} "
            f"({option}); run it without {option}, or georeference it first"
        )


def _stac_crs_note(scene: SceneInput, geo: GeoInfo) -> str | None:
    """A warning when a STAC item declares another CRS than its asset's raster has (the raster's is used)."""
    if scene.stac is None or scene.stac.crs is None:
        return None
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        same = geo.crs is not None and CRS.from_user_input(scene.stac.crs) == CRS.from_user_input(geo.crs.to_wkt())
    except CRSError:
        same = False
    if same:
        return None
    found = geo.crs.to_string() if geo.crs is not None else "no CRS"
    note = f"{scene}: the STAC item declares {scene.stac.crs}, but its {scene.stac.asset} asset has {found}"
    log.warning("warning: %s; the raster's own georeferencing is used", note)
    return note + "; the raster's own georeferencing is used"


def _scene_task(
    pipeline: Pipeline | partial[Pipeline],
    scene: SceneInput,
    outdir: str,
    fmt: VectorFormat,
    on_tile: Callable[[int, int, TilePass], None] | None = None,
    client: Client | None = None,
) -> tuple[SceneReport, str | None]:
    """Process one scene into ``outdir``; never raises: errors come back in the report.

    ``pipeline`` is a :class:`~geoseg.pipeline.pipeline.Pipeline`, or (sent to Dask workers) a
    ``partial`` that builds it from its ``to_dict()``. Returns the report and, for an
    unexpected error, its traceback text.
    """
    start = time.perf_counter()
    trace = None
    source = scene.fingerprint()  # before reading it: a file replaced while it runs is redone next time
    try:
        from geoseg.pipeline.outputs import output_crs
        from geoseg.pipeline.scene import process_scene

        pipe = pipeline() if isinstance(pipeline, partial) else pipeline
        declared = _scene_checks(scene, pipe, fmt)
        done = process_scene(pipe, scene.raster, outdir, stem=scene.stem, fmt=fmt, on_tile=on_tile, client=client)
        crs = output_crs(done.outputs[0]) if done.outputs else None
        notes = [*([declared] if declared else []), *done.warnings]
        report = SceneReport(str(scene), "done", [str(p) for p in done.outputs], warnings=[redact(n) for n in notes], crs=crs)
    except GeosegError as exc:
        report = SceneReport(str(scene), "failed", error=_scene_error(scene, str(exc)))
    except Exception as exc:  # noqa: BLE001 - a batch must go on; the error is reported
        if _caused_by_ctrl_c(exc):
            raise  # not the scene's failure: the batch stops (see run_batch)
        report = SceneReport(str(scene), "failed", error=_scene_error(scene, f"{scene.raster}: unexpected {type(exc).__name__}: {exc}"))
        trace = traceback.format_exc()
    report.seconds = round(time.perf_counter() - start, 3)
    report.stac = None if scene.stac is None else scene.stac.to_dict()
    report.source = source
    return report, trace


def _scene_error(scene: SceneInput, message: str) -> str:
    """A scene's error as reported: naming the input as given (a STAC item, not only its asset), secrets hidden."""
    if scene.stac is not None and not message.startswith((scene.name, str(scene))):
        message = f"{scene} (asset {scene.stac.asset!r}): {message}"
    return redact(message)


def _run_here(
    pipeline: Pipeline,
    scenes: Sequence[SceneInput],
    folders: dict[str, Path],
    fmt: VectorFormat,
    on_start: Callable[[SceneInput], None],
    tile_progress: TileProgressCallback | None,
    client: Client | None = None,
) -> Generator[tuple[SceneReport, str | None], None, None]:
    """Scenes one after the other, driven from this process (tiles on ``client`` when given)."""
    for scene in scenes:
        on_start(scene)
        on_tile = None if tile_progress is None else partial(tile_progress, str(scene))
        yield _scene_task(pipeline, scene, str(folders[str(scene)]), fmt, on_tile, client)


def _run_on_dask(
    client: Client, pipeline: Pipeline, scenes: Sequence[SceneInput], folders: dict[str, Path], fmt: VectorFormat, on_start: Callable[[SceneInput], None]
) -> Generator[tuple[SceneReport, str | None], None, None]:
    """Scenes as Dask tasks, as many at a time as the cluster has threads, yielded as they complete."""
    from geoseg.pipeline.distributed import finished

    build = partial(type(pipeline).from_dict, pipeline.to_dict(), pipeline.source)  # rebuilt on the worker
    queue = deque(scenes)
    running: dict[Any, SceneInput] = {}

    def fill() -> None:
        slots = max(1, sum(client.nthreads().values()))
        while queue and len(running) < slots:
            scene = queue.popleft()
            on_start(scene)
            future = client.submit(_scene_task, build, scene, str(folders[str(scene)]), fmt, pure=False)
            running[future] = scene

    fill()
    while running:
        for future in finished(running):
            scene = running.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - the worker died or Dask failed: report, go on
                kind = "the Dask worker running it died (out of memory or crashed)" if type(exc).__name__ == "KilledWorker" else "the Dask task failed"
                result = (SceneReport(str(scene), "failed", error=redact(f"{scene}: {kind}: {type(exc).__name__}: {exc}")), None)
            future.release()
            fill()
            yield result


#: Seconds a local Dask cluster takes to start and to load geoseg in its workers (measured
#: here: 1.4 s to start, 1.7 s to import, 0.7 s to close, on 2 cores), for deciding whether
#: one pays (see :func:`_run_adaptive`).
CLUSTER_START_S = 4.0


def _scene_pixels(scene: SceneInput) -> int:
    """Pixels of a scene from its header (0 when it cannot be read: it fails quickly)."""
    from geoseg.raster import open_dataset

    if scene.problem is not None:
        return 0
    try:
        with open_dataset(scene.raster) as src:
            return src.width * src.height
    except Exception:  # noqa: BLE001 - an unreadable scene is reported when it runs
        return 0


def _run_adaptive(
    pipeline: Pipeline,
    scenes: Sequence[SceneInput],
    folders: dict[str, Path],
    fmt: VectorFormat,
    on_start: Callable[[SceneInput], None],
    tile_progress: TileProgressCallback | None,
    cluster: LocalCluster,
) -> Generator[tuple[SceneReport, str | None], None, None]:
    """Scenes here, one by one, until the time they took says that a cluster pays for the rest.

    After each scene, the rest is estimated to take ``seconds so far × pixels left / pixels
    done`` here; once a cluster of ``cluster.workers`` would save at least twice
    :data:`CLUSTER_START_S` on it, ``cluster.start()`` is entered and the remaining scenes
    run on it. Small batches never pay for starting one; slow ones start it after their
    first scene.
    """
    pixels = [_scene_pixels(s) for s in scenes]
    total_px, done_px, seconds = sum(pixels), 0, 0.0
    for i, scene in enumerate(scenes):
        rest = scenes[i:]
        if done_px and len(rest) > 1 and cluster.workers > 1:
            estimate = seconds * (total_px - done_px) / done_px
            if estimate * (1 - 1 / min(cluster.workers, len(rest))) >= 2 * CLUSTER_START_S:
                log.info("the %d scene(s) left would take about %.0f s here: starting a local Dask cluster of %d workers", len(rest), estimate, cluster.workers)
                with cluster.start() as client:
                    yield from _run_on_dask(client, pipeline, rest, folders, fmt, on_start)
                return
        report, trace = next(_run_here(pipeline, [scene], folders, fmt, on_start, tile_progress))
        done_px += pixels[i]
        seconds += report.seconds
        yield report, trace


@dataclass(frozen=True)
class LocalCluster:
    """A local Dask cluster that a batch may start when it pays (:func:`run_batch`'s ``cluster``).

    Attributes
    ----------
    workers : int
        Worker processes it would have.
    start : callable
        Starts it: a context manager giving the ``distributed.Client`` and closing the cluster
        on exit (e.g. ``partial(dask_client, None, workers)``).
    """

    workers: int
    start: Callable[[], Any]


def pending_scenes(
    pipeline: Pipeline,
    inputs: Sequence[str | Path | SceneInput],
    outdir: str | Path,
    *,
    fmt: str | VectorFormat = "shp",
    overwrite: bool = False,
    keep_folders: bool = False,
) -> list[str | Path | SceneInput]:
    """The inputs that :func:`run_batch` would process (the others are done already), as given.

    Reads the manifest of ``outdir`` without changing anything. The arguments mean what they
    mean to :func:`run_batch`.

    Parameters
    ----------
    pipeline : Pipeline
        The pipeline of the batch (its hash must match the manifest's).
    inputs : sequence of str, pathlib.Path or SceneInput
        The scenes.
    outdir : str or pathlib.Path
        The batch's output folder.
    fmt : str or VectorFormat, default "shp"
        Vector output format and options (they must match the manifest's).
    overwrite : bool, default False
        Every scene would be redone: all of ``inputs`` are returned.
    keep_folders : bool, default False
        Mirror the input folders under ``outdir`` (:func:`output_folders`).

    Returns
    -------
    list of str, pathlib.Path or SceneInput
        The inputs not done yet, as given and in their order.

    Raises
    ------
    ConfigError
        ``fmt`` is not a known format, or its options are invalid.
    """
    given = list(inputs)
    if overwrite:
        return given
    scenes = [scene_input(p, strict=False) for p in given]
    out = Path(outdir)
    folders = output_folders(scenes, out, keep_folders=keep_folders)
    manifest = _Manifest.resume(out, pipeline.source, pipeline_hash(pipeline), vector_format(fmt), overwrite=False)
    return [p for p, s in zip(given, scenes) if manifest.done_report(s, folders[str(s)]) is None]


def _entry(scene: SceneInput, status: str) -> dict[str, Any]:
    """A manifest entry of a scene without results (``running``, ``interrupted``)."""
    stac = None if scene.stac is None else scene.stac.to_dict()
    return {"input": str(scene), "status": status, "outputs": [], "seconds": 0.0, "error": None, "warnings": [], "crs": None, "stac": stac, "source": None}


def run_batch(
    pipeline: Pipeline,
    inputs: Sequence[str | os.PathLike[str] | SceneInput],
    outdir: str | os.PathLike[str],
    *,
    fmt: str | VectorFormat = "shp",
    progress: ProgressCallback | None = None,
    client: Client | None = None,
    overwrite: bool = False,
    pipeline_name: str | None = None,
    tile_progress: TileProgressCallback | None = None,
    keep_folders: bool = False,
    cluster: LocalCluster | None = None,
) -> list[SceneReport]:
    """Run ``pipeline`` on every input and write ``OUTDIR/<input stem>.<ext>``, resumably.

    A scene that fails is reported (``status="failed"`` with the error message) and the
    batch goes on with the others; nothing partial is left for it. The manifest
    ``OUTDIR/geoseg-manifest.json`` records each scene's status, outputs, output CRS, time and
    error; it is rewritten atomically whenever a scene starts (``"running"``) or ends.

    A scene is **skipped** (reported done with ``skipped=True``) when the manifest records it
    as ``"done"``, the manifest's pipeline hash (:func:`pipeline_hash`), output format and
    vector output options are the current ones, and all its recorded outputs exist;
    otherwise (failed, interrupted, pipeline or ``--set`` values changed, output deleted) it
    is redone. Temporary files left in the output folders by a killed run are removed first.
    Only one batch at a time may write to a folder (a lock file, ``.geoseg-batch.lock``,
    enforces it).

    Parameters
    ----------
    pipeline : Pipeline
        A bound pipeline (all parameters set).
    inputs : sequence of str, path-like or SceneInput
        Scene files (one path alone is one scene); their stems must differ (within each input
        folder with ``keep_folders``).
    outdir : str or path-like
        Output folder (created if needed).
    fmt : str or VectorFormat, default "shp"
        Vector output format (``"shp"``, ``"gpkg"``, ``"geojson"``); a
        :class:`~geoseg.vector.VectorFormat` also reprojects the vector outputs (``dst_crs``,
        ``rfc7946``) or sets GeoJSON's coordinate precision.
    progress : callable, optional
        Called after each scene (skipped scenes first), with (count, total, report).
    client : distributed.Client, optional
        Run the scenes as tasks on this Dask cluster (as many at once as it has worker
        threads); the client is not closed. Without one, scenes run here, one by one.
    overwrite : bool, default False
        Redo every scene, whatever the manifest says.
    pipeline_name : str, optional
        The pipeline as the user named it, for the manifest (default: ``pipeline.source``).
    tile_progress : callable, optional
        Called with (scene, tiles done, tiles total, :class:`~geoseg.pipeline.engine.TilePass`)
        as a scene processed in this process advances (scenes on Dask workers report per
        scene only).
    keep_folders : bool, default False
        Mirror the input folders under ``outdir`` (relative to the inputs' common parent
        folder, see :func:`output_folders`), so that inputs of the same name in different
        folders are all processed.
    cluster : LocalCluster, optional
        Without ``client``: a local cluster to start once the scenes run here show that the
        rest would take much longer than starting it (see :func:`_run_adaptive`); the CLI's
        default.

    Returns
    -------
    list of SceneReport
        One per input, in input order.

    Raises
    ------
    ConfigError
        Two inputs would write the same output, the format or its options are invalid, or a
        parameter is unset.
    OutputWriteError
        ``outdir`` cannot be written, or another batch is writing to it.
    BatchInterrupted
        Ctrl-C (SIGINT, ``KeyboardInterrupt``) while scenes ran: the manifest records the
        unfinished ones as ``"interrupted"``; after the Dask workers are gone,
        :func:`discard_interrupted` removes what they left.
    """
    if isinstance(inputs, (str, os.PathLike)):  # one scene, not the characters of its name
        inputs = [inputs]
    paths = [scene_input(p, strict=False) for p in inputs]
    out = Path(outdir)
    spec = vector_format(fmt)
    folders = output_folders(paths, out, keep_folders=keep_folders)
    check_batch(pipeline, paths, folders, spec, keep_folders=keep_folders)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"{out}: cannot create the output folder ({exc.strerror or exc})") from None
    with _folder_lock(out):
        stale = _remove_stale_temporaries(folders.values())
        if stale:
            log.info("removed %d temporary item(s) left in %s by an interrupted run", stale, out)
        manifest = _Manifest.resume(out, pipeline_name or pipeline.source, pipeline_hash(pipeline), spec, overwrite=overwrite)
        reports: dict[str, SceneReport] = {}
        todo: list[SceneInput] = []
        for path in paths:
            earlier = manifest.done_report(path, folders[str(path)])
            if earlier is None:
                todo.append(path)
            else:
                reports[str(path)] = earlier
        for note in manifest.notes:
            log.info("%s", note)
        in_batch = {str(p) for p in paths}
        orphans = [name for name in manifest.replaced if name not in in_batch]
        if orphans:
            shown = ", ".join(orphans[:3]) + (f" and {len(orphans) - 3} more" if len(orphans) > 3 else "")
            log.warning(
                "warning: %s holds the outputs of %d scene(s) made with the earlier settings that this batch does not redo (%s): "
                "the manifest no longer lists them; run them again with this batch, or remove their files",
                out, len(orphans), shown,
            )  # fmt: skip
        manifest.write()
        if reports:
            log.info("%d of %d scene(s) already done in %s (use --overwrite to redo them)", len(reports), len(paths), out)
        if spec.target_crs is not None:
            log.info("vector outputs are reprojected to %s, as asked", spec.target_crs)
        if progress is not None:
            for count, report in enumerate(reports.values(), start=1):
                progress(count, len(paths), report)
        started: list[SceneInput] = []

        def on_start(scene: SceneInput) -> None:
            folders[str(scene)].mkdir(parents=True, exist_ok=True)
            started.append(scene)
            manifest.set(_entry(scene, "running"))

        if client is None and cluster is not None and len(todo) > 1:
            runner = _run_adaptive(pipeline, todo, folders, spec, on_start, tile_progress, cluster)
        elif client is None or len(todo) == 1:
            # One scene on a cluster: its tiles, not the scene, become the Dask tasks.
            runner = _run_here(pipeline, todo, folders, spec, on_start, tile_progress, client)
        else:
            runner = _run_on_dask(client, pipeline, todo, folders, spec, on_start)
        by_name = {str(scene): scene for scene in todo}
        try:
            for report, trace in runner:
                if report.status == "failed":
                    log.error("%s", report.error)
                    if trace:
                        log.debug("%s", trace)
                    _note_earlier_outputs(report, by_name[report.input], folders, pipeline, spec)
                manifest.set(report.manifest_entry())
                reports[report.input] = report
                if progress is not None:
                    progress(len(reports), len(paths), report)
        except (KeyboardInterrupt, Exception) as exc:  # a Ctrl-C, or an error it caused in a library
            if not _caused_by_ctrl_c(exc):
                raise
            runner.close()  # a cluster the batch started is closed: its workers are gone
            raise _interrupted(pipeline, manifest, todo, started, reports, folders, spec, len(paths)) from None
    return [reports[str(p)] for p in paths]


def _note_earlier_outputs(report: SceneReport, scene: SceneInput, folders: dict[str, Path], pipeline: Pipeline, fmt: VectorFormat) -> None:
    """Warn, in the failed scene's report, of its outputs that an earlier run left (a failed scene writes nothing, and deletes nothing)."""
    from geoseg.pipeline.outputs import output_paths

    try:
        earlier = [p for p in output_paths(pipeline.output_layers(), folders[str(scene)], scene.stem, fmt) if p.exists()]
    except GeosegError:
        return
    if earlier:
        note = f"{scene}: the outputs of an earlier run stay in place, not made by this one: {', '.join(p.name for p in earlier)}"
        log.warning("warning: %s", note)
        report.warnings.append(note)


def _caused_by_ctrl_c(exc: BaseException) -> bool:
    """Whether ``exc`` is a Ctrl-C, or an error that a Ctrl-C caused.

    A ``KeyboardInterrupt`` raised between a lock's release and the end of its ``with`` block
    (in a library waiting on a condition) surfaces as ``RuntimeError: cannot release
    un-acquired lock``, with the interrupt as its context.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def _interrupted(
    pipeline: Pipeline,
    manifest: _Manifest,
    todo: list[SceneInput],
    started: list[SceneInput],
    reports: dict[str, SceneReport],
    folders: dict[str, Path],
    fmt: VectorFormat,
    total: int,
) -> BatchInterrupted:
    """Record the unfinished scenes as interrupted; the exception that says how far the batch got."""
    from geoseg.pipeline.outputs import output_paths

    unfinished = [scene for scene in todo if str(scene) not in reports]
    for scene in unfinished:
        manifest.entries[str(scene)] = _entry(scene, "interrupted")
    manifest.write()
    running = [scene for scene in started if str(scene) not in reports]
    leftovers = [path for scene in running for path in output_paths(pipeline.output_layers(), folders[str(scene)], scene.stem, fmt)]
    done = sum(r.status == "done" for r in reports.values())
    failed = sum(r.status == "failed" for r in reports.values())
    return BatchInterrupted(manifest.outdir, done, failed, total, leftovers, sorted(set(folders.values())))
