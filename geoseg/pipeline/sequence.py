"""The runner of sequence pipelines: a :class:`~geoseg.pipeline.pipeline.Pipeline` of ``kind: sequence`` over all its frames at once.

A scene pipeline maps one raster scene to layers, tile by tile (:mod:`geoseg.pipeline.engine`);
a sequence pipeline's steps start from the ``frames`` layer, the whole sequence in order, and
give features layers (``segment_sequence`` gives ``objects``: per-frame object polygons with
track ids). Both are the same :class:`Pipeline` object: loaded, overridden (``--set``),
validated and listed the same way; only the runner differs. The file format::

    schema_version: 1
    kind: sequence
    params: {model: null, score_threshold: 0.3}   # --set NAME=VALUE
    engine: {assume_gsd_m: 0.3}                   # and bands_per_frame, name
    steps:
      - type: segment_sequence
        model: ${model}
        score_threshold: ${score_threshold}
    outputs: [objects]

``geoseg run`` hands such a pipeline to :func:`run_sequence_to_dir`: every FRAMES argument
(folders, files, globs, a band stack) forms one sequence, in order, written to
``OUTDIR/<name>.gpkg`` (``.shp`` or ``.geojson`` with ``--format``; reprojected only with
``--dst-crs``/``--rfc7946``). ``name`` defaults to the input folder's name, or the first
frame file's stem.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.pipeline.pipeline import Pipeline, load_pipeline
from geoseg.pipeline.step import StepContext
from geoseg.sequence.io import Frame, read_frames

if TYPE_CHECKING:
    import geopandas as gpd

    from geoseg.sequence.modelfile import SequenceModel
    from geoseg.vector import VectorFormat

__all__ = ["run_sequence", "run_sequence_to_dir", "sequence_frames"]

log = logging.getLogger("geoseg.sequence")


def _sequence_pipeline(pipeline: Pipeline | str | os.PathLike[str]) -> Pipeline:
    pipe = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(pipeline)
    if pipe.kind != "sequence":
        raise ConfigError(f"{pipe.source}: not a sequence pipeline (it runs on scenes: geoseg run, or Pipeline.run)")
    return pipe


def sequence_frames(pipeline: Pipeline, frames: Sequence[Frame] | Sequence[str | os.PathLike[str]] | str | os.PathLike[str]) -> list[Frame]:
    """The frames of a sequence: read from paths, or the :class:`Frame` objects given.

    Paths are read with :func:`~geoseg.sequence.io.read_frames`, with the pipeline's
    ``bands_per_frame`` and ``assume_gsd_m``.

    Parameters
    ----------
    pipeline : Pipeline
        The sequence pipeline (its engine settings are used).
    frames : sequence of Frame, sequence of str or path-like, str or path-like
        Frames, or the folders, files and globs to read them from.

    Returns
    -------
    list of Frame
        The frames, in order (an empty list when ``frames`` is empty).

    Raises
    ------
    RasterReadError
        A missing or unreadable input.
    InputMismatchError
        Frames of different sizes or CRSs, or no frame in the paths given.
    """
    if isinstance(frames, (str, os.PathLike)):
        frames = [frames]
    if frames and not isinstance(frames[0], Frame):
        paths = cast("Sequence[str | os.PathLike[str]]", frames)  # items are not Frames
        return read_frames(paths, bands_per_frame=pipeline.engine.bands_per_frame, assume_gsd_m=pipeline.engine.assume_gsd_m)
    return list(cast("Sequence[Frame]", frames))


def run_sequence(
    pipeline: Pipeline | str | os.PathLike[str],
    frames: Sequence[Frame] | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    *,
    model: SequenceModel | None = None,
) -> gpd.GeoDataFrame:
    """Run a sequence pipeline over its frames and return its first output layer (``objects``).

    Parameters
    ----------
    pipeline : Pipeline, str or path-like
        A pipeline of ``kind: sequence`` (or its file / shipped name, e.g. ``"sequence_objects"``).
    frames : sequence of Frame, sequence of str or path-like, str or path-like
        The sequence (paths as for :func:`geoseg.sequence.io.read_frames`).
    params : mapping, optional
        Overrides, as with ``--set`` (e.g. ``{"model": "cars.ovs.npz"}``).
    model : SequenceModel, optional
        An already loaded model, run by every ``segment_sequence`` step (the ``model``
        parameter is then not needed).

    Returns
    -------
    geopandas.GeoDataFrame
        For ``sequence_objects``: columns ``frame``, ``track_id``, [``time``], ``score``,
        ``area_px``, ``source`` and geometry, in the frames' CRS.

    Raises
    ------
    ConfigError
        Not a sequence pipeline; a required parameter (``model``) not set.
    InputMismatchError
        No frames, or frames of different sizes or CRSs.
    RasterReadError
        A frame path that is missing or unreadable.

    Examples
    --------
    >>> run_sequence("mask_to_centerlines", [])
    Traceback (most recent call last):
    ...
    geoseg.errors.ConfigError: ...mask_to_centerlines.yaml: not a sequence pipeline (it runs on scenes: geoseg run, or Pipeline.run)
    """
    return _run_layers(pipeline, frames, params, model)[0][1]


def _run_layers(
    pipeline: Pipeline | str | os.PathLike[str],
    frames: Sequence[Frame] | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    params: Mapping[str, Any] | None,
    model: SequenceModel | None,
) -> list[tuple[str, gpd.GeoDataFrame]]:
    from geoseg.steps.sequence import SegmentSequence

    pipe = _sequence_pipeline(pipeline)
    if model is not None and pipe.params.get("model", "") is None:
        pipe = pipe.with_overrides({"model": "<model given in memory>"})
    if params:
        pipe = pipe.with_overrides(params)
    steps = pipe.steps  # a missing parameter fails before any frame is read
    if model is not None:
        steps = [s.with_model(model) if isinstance(s, SegmentSequence) else s for s in steps]
    sequence = sequence_frames(pipe, frames)
    if not sequence:
        raise InputMismatchError(f"{pipe.source}: the sequence has no frames")
    ctx = StepContext(geo=sequence[0].geo, valid=None, source=sequence[0].source)
    layers: dict[str, Any] = {"frames": sequence}
    start = time.perf_counter()
    for step in steps:
        layers.update(step.apply({name: layers[name] for name in step.inputs()}, ctx))
    log.info("%d frame(s) through %s in %.2f s", len(sequence), " -> ".join(s.label for s in steps), time.perf_counter() - start)
    for message in ctx.warnings:
        log.warning("%s", message)
    return [(name, layers[name]) for name in pipe.output_layers()]


def _default_name(inputs: Sequence[str | os.PathLike[str]]) -> str:
    first = Path(str(inputs[0]))
    if first.is_dir():
        return first.resolve().name or "sequence"
    return first.stem.split("*")[0].rstrip("_-. ") or "sequence"


def run_sequence_to_dir(
    pipeline: Pipeline | str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    outdir: str | os.PathLike[str],
    *,
    fmt: str | VectorFormat = "gpkg",
) -> list[Path]:
    """``geoseg run`` for sequence pipelines: all ``inputs`` are one sequence; write ``OUTDIR/<name>.<ext>``.

    The first output layer goes to ``<name>.<ext>`` (layer ``objects`` of a GeoPackage), any
    further one to ``<name>_<layer>.<ext>``; each file is written atomically.

    The name is the engine setting ``name``, else the stem of the first input (up to a glob's
    ``*``) or the name of its folder.

    Parameters
    ----------
    pipeline : Pipeline, str or path-like
        A pipeline of ``kind: sequence`` (or its file / shipped name).
    inputs : sequence of str or path-like
        The frames' folders, files or globs (as for :func:`geoseg.sequence.io.read_frames`).
    outdir : str or path-like
        Output folder (created if needed).
    fmt : str or VectorFormat, default "gpkg"
        The output format (``"gpkg"``, ``"shp"``, ``"geojson"``), and how to reproject it
        (see :class:`~geoseg.vector.VectorFormat`).

    Returns
    -------
    list of pathlib.Path
        The files written.

    Raises
    ------
    ConfigError
        Not a sequence pipeline, a required parameter not set, or an invalid format.
    InputMismatchError
        A reprojection is asked for and the frames have no georeferencing (checked before
        any frame is segmented); frames of different sizes or CRSs.
    RasterReadError
        A missing or unreadable input.
    OutputWriteError
        An output cannot be written.
    """
    from geoseg.pipeline.outputs import check_geojson_crs, check_stem
    from geoseg.vector import vector_format, write_vector

    spec = vector_format(fmt)
    pipe = _sequence_pipeline(pipeline)
    pipe.steps  # noqa: B018 - a missing parameter fails before any frame is read
    name = pipe.engine.name or _default_name(list(inputs))
    check_stem(name, Path(outdir))
    frames = sequence_frames(pipe, list(inputs))
    if frames:
        check_geojson_crs(frames[0].source, frames[0].geo.crs, spec)
    if spec.target_crs is not None and frames and not frames[0].geo.georeferenced:
        raise InputMismatchError(
            f"{frames[0].source}: the frames have no georeferencing (pixel coordinates), so the objects cannot be "
            f"reprojected to {spec.target_crs}; drop --dst-crs/--rfc7946"
        )
    written = []
    for i, (layer, frame) in enumerate(_run_layers(pipe, frames, None, None)):
        out = Path(outdir) / (f"{name}{spec.ext}" if i == 0 else f"{name}_{layer}{spec.ext}")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_vector(frame, out, fmt=spec, layer=layer if spec.name == "gpkg" else None)
        log.info("%s: %d feature(s) in layer %s", out, len(frame), layer)
        written.append(out)
    return written
