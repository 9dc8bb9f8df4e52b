"""Sequence pipelines: a YAML file with ``kind: sequence``, run over all inputs as ONE sequence.

The scene engine of :mod:`geoseg.pipeline` maps one scene to layers; a sequence pipeline maps
a whole sequence of frames to one layer of per-frame object polygons, so it has its own
runner. ``geoseg run`` recognises the top-level ``kind: sequence`` and calls
:func:`run_sequence_to_dir`; every FRAMES argument (folders, files, globs, a band stack) forms
one sequence, in order. The file format::

    schema_version: 1
    kind: sequence
    description: ...
    params: {model: null, score_threshold: 0.3, ...}   # see DEFAULT_PARAMS; --set NAME=VALUE

Output: ``OUTDIR/<name>.gpkg`` (layer ``objects``; ``.shp`` or ``.geojson`` with
``geoseg run --format``), one row per object and frame with ``frame`` (0-based position),
``track_id``, ``time`` (only when some frame carries an acquisition tag), ``score``,
``area_px``, ``source`` and a (Multi)Polygon in the frames' CRS (pixel coordinates when they
have none; reprojected only with ``--dst-crs``/``--rfc7946``). ``name`` defaults to the
input folder's name, or the first frame file's stem.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import geopandas as gpd
import numpy as np
import rasterio.features
from shapely.geometry import MultiPolygon, shape

from geoseg.configfile import parse_override, pipeline_kind, read_yaml_mapping
from geoseg.errors import ConfigError, InputMismatchError
from geoseg.sequence.io import Frame, read_frames
from geoseg.sequence.track import TrackingParams

if TYPE_CHECKING:  # torch is imported only when a sequence is run
    from geoseg.sequence.infer import InferenceParams
    from geoseg.sequence.modelfile import SequenceModel
    from geoseg.vector import VectorFormat

__all__ = ["DEFAULT_PARAMS", "SequencePipeline", "is_sequence_pipeline", "load_sequence_pipeline", "masks_to_frame", "run_sequence", "run_sequence_to_dir"]

log = logging.getLogger("geoseg.sequence")

KIND = "sequence"
#: Parameters of a sequence pipeline and their defaults.
DEFAULT_PARAMS: dict[str, Any] = {
    "model": None,
    "first_masks": None,
    "bands_per_frame": None,
    "assume_gsd_m": 0.3,
    "score_threshold": 0.3,
    "mask_threshold": 0.5,
    "min_area_px": 8,
    "max_coast": 2,
    "discover": True,
    "memory_frames": 30,
    "reid_similarity": 0.6,
    "gate_px": 24.0,
    "name": None,
}
_TOP_KEYS = {"schema_version", "kind", "description", "params", "outputs"}


@dataclass
class SequencePipeline:
    """A loaded sequence pipeline: where it came from and its parameters (defaults filled)."""

    source: str
    description: str = ""
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))

    def with_params(self, overrides: Iterable[str] | Mapping[str, Any]) -> SequencePipeline:
        """A copy with ``NAME=VALUE`` strings (values parsed as YAML) or a mapping applied.

        Raises
        ------
        ConfigError
            An unknown parameter name or a string without ``=``.
        """
        items = list(overrides.items()) if isinstance(overrides, Mapping) else [parse_override(text) for text in overrides]
        params = dict(self.params)
        for key, value in items:
            if key not in DEFAULT_PARAMS:
                raise ConfigError(f"{self.source}: unknown parameter {key!r} of a sequence pipeline (known: {', '.join(DEFAULT_PARAMS)})")
            params[key] = value
        return SequencePipeline(self.source, self.description, params)


def _resolve(name: str | os.PathLike[str]) -> Path:
    from geoseg.pipeline.pipeline import resolve_pipeline_path

    return resolve_pipeline_path(name)


def is_sequence_pipeline(name: str | os.PathLike[str]) -> bool:
    """True when ``name`` resolves to a readable YAML pipeline with ``kind: sequence``."""
    return pipeline_kind(name) == KIND


def load_sequence_pipeline(name: str | os.PathLike[str], overrides: Iterable[str] | Mapping[str, Any] = ()) -> SequencePipeline:
    """Load a sequence pipeline file (or shipped name) and apply overrides.

    Raises
    ------
    ConfigError
        Not a sequence pipeline, unknown keys or parameters.
    """
    path = _resolve(name)
    raw = read_yaml_mapping(path, "pipeline")
    if raw.get("kind") != KIND:
        raise ConfigError(f"{path}: not a sequence pipeline (needs 'kind: {KIND}')")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {unknown} (known: {sorted(_TOP_KEYS)})")
    if raw.get("outputs", ["objects"]) != ["objects"]:
        raise ConfigError(f"{path}: a sequence pipeline has the single output 'objects'")
    pipe = SequencePipeline(str(path), str(raw.get("description", "")).strip())
    pipe = pipe.with_params(raw.get("params") or {})
    return pipe.with_params(overrides) if overrides else pipe


def _inference_params(p: dict[str, Any]) -> InferenceParams:
    from geoseg.sequence.infer import InferenceParams

    try:
        return InferenceParams(
            score_threshold=float(p["score_threshold"]),
            mask_threshold=float(p["mask_threshold"]),
            min_area_px=int(p["min_area_px"]),
            max_coast=int(p["max_coast"]),
            discover=bool(p["discover"]),
            tracking=TrackingParams(memory_frames=int(p["memory_frames"]), reid_similarity=float(p["reid_similarity"]), gate_px=float(p["gate_px"])),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"sequence pipeline: invalid parameter value ({exc})") from None


def _polygon(mask: np.ndarray, transform: Any) -> MultiPolygon:
    polys = [shape(geom) for geom, value in rasterio.features.shapes(mask.astype(np.uint8), mask=mask, transform=transform) if value]
    return MultiPolygon(polys)


def masks_to_frame(results: list, frames: Sequence[Frame]) -> gpd.GeoDataFrame:
    """Per-frame object masks (:func:`geoseg.sequence.infer.segment_sequence`) as polygons in the frames' CRS."""
    with_time = any(fr.time for fr in frames)
    rows = []
    for objs, fr in zip(results, frames):
        for o in objs:
            row: dict[str, Any] = {"frame": int(fr.index), "track_id": int(o.track_id)}
            if with_time:
                row["time"] = fr.time or ""
            row.update(score=round(float(o.score), 4), area_px=int(o.mask.sum()), source=fr.source, geometry=_polygon(o.mask, fr.geo.transform))
            rows.append(row)
    columns = ["frame", "track_id", *(["time"] if with_time else []), "score", "area_px", "source", "geometry"]
    crs = frames[0].geo.crs if frames and frames[0].geo.georeferenced else None
    frame = (
        gpd.GeoDataFrame(rows, columns=columns, geometry="geometry", crs=crs)
        if rows
        else gpd.GeoDataFrame({c: [] for c in columns[:-1]}, geometry=gpd.GeoSeries([], crs=crs), crs=crs)
    )
    return frame.astype({"frame": "int64", "track_id": "int64", "area_px": "int64"})


def _first_masks(path: Any, frames: Sequence[Frame]) -> np.ndarray | None:
    if path in (None, ""):
        return None
    from geoseg.raster import read_raster

    arr = read_raster(path).array[0]
    if arr.shape != frames[0].array.shape[1:]:
        raise InputMismatchError(f"{path}: first-frame masks {arr.shape} do not match the frame size {frames[0].array.shape[1:]}")
    return arr.astype(np.int64)


def run_sequence(
    pipeline_or_path: SequencePipeline | str | os.PathLike[str],
    frames: Sequence[Frame] | Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    *,
    model: SequenceModel | None = None,
) -> gpd.GeoDataFrame:
    """Run a sequence pipeline and return its per-frame object polygons.

    Parameters
    ----------
    pipeline_or_path : SequencePipeline or path
        The pipeline (or its file / shipped name, e.g. ``"sequence_objects"``).
    frames : list of Frame, or paths
        The sequence (paths as for :func:`geoseg.sequence.io.read_frames`).
    params : mapping, optional
        Parameter overrides (e.g. ``{"model": "cars.ovs.npz"}``).
    model : SequenceModel, optional
        An already loaded model (``params["model"]`` is then not read).

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``frame``, ``track_id``, [``time``], ``score``, ``area_px``, ``source``,
        geometry; in the frames' CRS.

    Raises
    ------
    ConfigError
        No model given.
    """
    from geoseg.sequence.infer import segment_sequence
    from geoseg.sequence.modelfile import load_sequence_model

    pipe = pipeline_or_path if isinstance(pipeline_or_path, SequencePipeline) else load_sequence_pipeline(pipeline_or_path)
    if params:
        pipe = pipe.with_params(params)
    p = pipe.params
    if model is None:
        if not p["model"]:
            raise ConfigError(f"{pipe.source}: parameter 'model' is not set (--set model=FILE; train one with `geoseg train sequence`)")
        model = load_sequence_model(p["model"])
    if isinstance(frames, (str, os.PathLike)) or (frames and not isinstance(frames[0], Frame)):
        paths = [frames] if isinstance(frames, (str, os.PathLike)) else cast("Sequence[str | os.PathLike[str]]", frames)  # items are not Frames
        sequence = read_frames(paths, bands_per_frame=p["bands_per_frame"], assume_gsd_m=float(p["assume_gsd_m"]))
    else:
        sequence = list(cast("Sequence[Frame]", frames))  # empty, or its items are Frames
    start = time.perf_counter()
    results = segment_sequence(model, [fr.array for fr in sequence], first_masks=_first_masks(p["first_masks"], sequence), params=_inference_params(p))
    log.info("%d frame(s) segmented in %.2f s", len(sequence), time.perf_counter() - start)
    return masks_to_frame(results, sequence)


def _default_name(inputs: Sequence[str | os.PathLike[str]]) -> str:
    first = Path(str(inputs[0]))
    if first.is_dir():
        return first.resolve().name or "sequence"
    return first.stem.split("*")[0].rstrip("_-. ") or "sequence"


def run_sequence_to_dir(
    pipeline: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]],
    outdir: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    *,
    fmt: str | VectorFormat = "gpkg",
) -> Path:
    """``geoseg run`` for sequence pipelines: all ``inputs`` are one sequence; write ``OUTDIR/<name>.<ext>``.

    Parameters
    ----------
    fmt : {"gpkg", "shp", "geojson"} or VectorFormat
        The output format (GeoPackage by default), and how to reproject it (see
        :class:`~geoseg.vector.VectorFormat`).

    Returns
    -------
    Path
        The file written (atomically).

    Raises
    ------
    InputMismatchError
        A reprojection is asked for and the frames have no georeferencing.
    """
    from geoseg.vector import vector_format, write_vector

    spec = vector_format(fmt)
    pipe = load_sequence_pipeline(pipeline, overrides)
    frames: list[Any] = list(inputs)
    if spec.target_crs is not None:  # refuse before inference what cannot be reprojected
        frames = read_frames(frames, bands_per_frame=pipe.params["bands_per_frame"], assume_gsd_m=float(pipe.params["assume_gsd_m"]))
        if frames and not frames[0].geo.georeferenced:
            raise InputMismatchError(
                f"{frames[0].source}: the frames have no georeferencing (pixel coordinates), so the objects cannot be "
                f"reprojected to {spec.target_crs}; drop --dst-crs/--rfc7946"
            )
    frame = run_sequence(pipe, frames)
    name = pipe.params["name"] or _default_name(list(inputs))
    out = Path(outdir) / f"{name}{spec.ext}"
    Path(outdir).mkdir(parents=True, exist_ok=True)
    write_vector(frame, out, fmt=spec, layer="objects" if spec.name == "gpkg" else None)
    n_tracks = frame["track_id"].nunique() if len(frame) else 0
    log.info("%s: %d object polygon(s), %d track(s)", out, len(frame), n_tracks)
    return out
