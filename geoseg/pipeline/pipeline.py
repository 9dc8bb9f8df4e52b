"""The :class:`Pipeline`: a list of steps plus parameters, one object for YAML and Python."""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from geoseg.configfile import parse_override, parse_yaml_mapping, read_yaml_mapping, resolve_refs, validation_message
from geoseg.errors import ConfigError
from geoseg.pipeline.batch import ProgressCallback, SceneReport, run_batch
from geoseg.pipeline.coarsen import working_source
from geoseg.pipeline.config import (
    SCHEMA_VERSION,
    EngineSettings,
    Extent,
    PipelineFile,
    build_step,
    kind_input,
)
from geoseg.pipeline.engine import FileSource, MemorySource, RunResult, execute, open_source
from geoseg.pipeline.registry import get_step_class
from geoseg.pipeline.step import Step, layer_kind, phase_error
from geoseg.raster import Raster
from geoseg.shipped import resolve_file

__all__ = ["Pipeline", "load_pipeline"]


class Pipeline:
    """A chain of steps, built from Python or loaded from a YAML file.

    Parameters
    ----------
    steps : sequence of Step or dict
        Step objects, or YAML-style specs (``{"type": ..., field: value}``) that may
        reference parameters as ``${NAME}``.
    params : mapping, optional
        Template parameters and their defaults (``None`` = must be set before running).
    engine : mapping or EngineSettings, optional
        Engine settings.
    outputs : list of str, optional
        Layers to write (default: the last step's first output; ``nodes`` adds the network's
        nodes).
    description : str
        Free text.
    source : str
        Where the pipeline came from (a file), for messages.
    kind : {"scene", "sequence"}
        What the pipeline runs over: one raster scene at a time (its steps start from the
        ``image`` layer), or all the frames of a sequence at once (from the ``frames`` layer;
        run with :func:`geoseg.pipeline.sequence.run_sequence`).

    Examples
    --------
    >>> from geoseg import Pipeline, steps
    >>> pipe = Pipeline([steps.ThresholdMask(), steps.Skeletonize(), steps.RoadNetwork()])
    >>> [s.type_name for s in pipe.steps]
    ['threshold_mask', 'skeletonize', 'road_network']
    >>> Pipeline.from_yaml_text(pipe.to_yaml()) == pipe
    True
    """

    def __init__(
        self,
        steps: Sequence[Step | Mapping[str, Any]],
        *,
        params: Mapping[str, Any] | None = None,
        engine: Mapping[str, Any] | EngineSettings | None = None,
        outputs: Sequence[str] | None = None,
        description: str = "",
        source: str = "<python>",
        kind: str = "scene",
    ) -> None:
        self.source = source
        self.kind = kind
        self.input_layer, self.settings_names = kind_input(kind, source)
        self.description = description
        self.params: dict[str, Any] = dict(params or {})
        if isinstance(steps, (Step, Mapping, str)):
            raise ConfigError(f"{source}: steps: a list of steps (got one {type(steps).__name__}; write [step, ...])")
        if isinstance(outputs, str):
            raise ConfigError(f"{source}: outputs: a list of layer names (got the text {outputs!r}; write [{outputs!r}])")
        self.specs: list[dict[str, Any]] = [s.to_spec() if isinstance(s, Step) else dict(s) for s in steps]
        if isinstance(engine, EngineSettings):
            self.engine = engine
        else:
            try:
                self.engine = EngineSettings(**dict(engine or {}))
            except ValidationError as exc:
                raise ConfigError(validation_message(exc, f"{source}: engine: ")) from None
        foreign = sorted(self.engine.model_fields_set - self.settings_names)
        if foreign:
            known = ", ".join(sorted(self.settings_names))
            raise ConfigError(f"{source}: engine: {', '.join(foreign)} is no setting of a {kind} pipeline (its settings: {known})")
        self.outputs = list(outputs) if outputs is not None else None
        self._validate()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> Pipeline:
        """Build from the mapping of a pipeline file."""
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"{source}: keys must be names, not {bad[0]!r}")
        if data.get("kind") == "sequence" and "steps" not in data:  # the format before sequence pipelines had steps
            raise ConfigError(
                f"{source}: a sequence pipeline lists its steps, e.g. steps: [{{type: segment_sequence, model: ${{model}}}}], "
                "and its reading settings (assume_gsd_m, bands_per_frame, name) under engine: see the shipped sequence_objects pipeline"
            )
        try:
            top = PipelineFile(**data)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, f"{source}: ")) from None
        return cls(
            top.steps,
            params=top.params,
            engine=top.engine,
            outputs=top.outputs,
            description=top.description,
            source=source,
            kind=top.kind,
        )

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<yaml>") -> Pipeline:
        """Build from YAML text."""
        return cls.from_dict(parse_yaml_mapping(text, source, "pipeline file"), source)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Pipeline:
        """Load a pipeline YAML file."""
        return cls.from_dict(read_yaml_mapping(path, "pipeline file"), str(path))

    # ------------------------------------------------------------------ views
    def to_dict(self) -> dict[str, Any]:
        """The pipeline as the mapping of a YAML file."""
        data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        if self.kind != "scene":
            data["kind"] = self.kind
        if self.description:
            data["description"] = self.description
        if self.params:
            data["params"] = copy.deepcopy(self.params)
        engine = self.engine.model_dump(exclude_defaults=True)
        if engine:
            data["engine"] = engine
        data["steps"] = copy.deepcopy(self.specs)
        if self.outputs is not None:
            data["outputs"] = list(self.outputs)
        return data

    def to_yaml(self, path: str | os.PathLike[str] | None = None) -> str:
        """The pipeline as YAML text; also written to ``path`` when given."""
        text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pipeline) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        kind = "" if self.kind == "scene" else f", kind={self.kind!r}"
        return f"Pipeline({[s.get('type') for s in self.specs]}, source={self.source!r}{kind})"

    # ------------------------------------------------------------------ validation
    def _where(self, index: int) -> str:
        spec = self.specs[index]
        label = spec.get("name") or spec.get("type", "?") if isinstance(spec, dict) else "?"
        return f"{self.source}: step {index + 1} ({label}): "

    def _build(self, *, allow_unset: bool) -> list[Step | None]:
        return [build_step(spec, self.params, self._where(i), allow_unset=allow_unset) for i, spec in enumerate(self.specs)]

    def _validate(self) -> None:
        built = self._build(allow_unset=True)
        available = {self.input_layer}
        tiled_features: set[str] = set()  # features layers of raster steps: gathered from the tiles, then written
        for i, (spec, step) in enumerate(zip(self.specs, built)):
            cls = get_step_class(spec["type"])
            needs = step.inputs() if step is not None else cls.takes
            missing = [n for n in needs if n not in available]
            if missing:
                raise ConfigError(f"{self._where(i)}needs layer(s) {missing}, which no earlier step gives (available: {sorted(available)})")
            gathered = sorted(tiled_features.intersection(needs))
            if gathered:
                raise ConfigError(
                    f"{self._where(i)}takes {gathered}, features that a raster step gives tile by tile: they are outputs, which no later step can take"
                )
            gives = step.outputs() if step is not None else cls.gives
            for name in gives:
                try:
                    kind = layer_kind(name)
                except ConfigError as exc:
                    raise ConfigError(f"{self._where(i)}{exc}") from None
                if kind == "features" and self.kind == "scene" and "network" not in needs:
                    tiled_features.add(name)
            available |= set(gives)
        problem = phase_error([step or get_step_class(spec["type"]) for spec, step in zip(self.specs, built)]) if self.kind == "scene" else None
        if problem is not None:
            raise ConfigError(f"{self._where(problem[0])}{problem[1]}")
        outputs = self.output_layers(built)
        if not outputs:
            raise ConfigError(f"{self.source}: outputs: is empty: name the layers to write, or leave outputs out to write the last step's")
        if self.input_layer in outputs:
            raise ConfigError(f"{self.source}: outputs: layer {self.input_layer!r} is the scene itself, which geoseg does not write again")
        if "nodes" in outputs and "network" not in outputs:
            raise ConfigError(f"{self.source}: outputs: nodes are written beside the network (<stem>_nodes); add network to the outputs")
        for name in outputs:
            if name == "nodes" and "network" in available:
                continue
            if name not in available:
                choices = sorted(available | ({"nodes"} if "network" in available else set()))
                raise ConfigError(f"{self.source}: outputs: layer {name!r} is given by no step (available: {choices})")

    def output_layers(self, built: list[Step | None] | None = None) -> list[str]:
        """The layers written for each scene."""
        if self.outputs is not None:
            return list(self.outputs)
        last_spec = self.specs[-1]
        step = (built or self._build(allow_unset=True))[-1]
        gives = step.outputs() if step is not None else get_step_class(last_spec["type"]).gives
        return [gives[0]]

    @property
    def steps(self) -> list[Step]:
        """The bound steps (raises ConfigError if a parameter without default is unset)."""
        return [s for s in self._build(allow_unset=False) if s is not None]

    def unset_params(self) -> list[str]:
        """Parameters still without a value."""
        return sorted(k for k, v in self.params.items() if v is None)

    def unused_params(self) -> list[str]:
        """Parameters that no step refers to (no ``${NAME}`` in any step): setting them changes nothing.

        Examples
        --------
        >>> load_pipeline("mask_to_centerlines").unused_params()
        []
        """
        unset = dict.fromkeys(self.params)
        used: set[str] = set()
        for spec in self.specs:
            used |= resolve_refs({k: v for k, v in spec.items() if k != "type"}, unset)[1]
        return sorted(set(self.params) - used)

    def required_params(self) -> list[str]:
        """Unset parameters that a required step field needs (``model``); the other unset
        parameters leave their fields at the step's own default.

        Examples
        --------
        >>> load_pipeline("road_centerlines").required_params()
        ['model']
        """
        required: set[str] = set()
        for spec in self.specs:
            fields = get_step_class(str(spec["type"])).model_fields
            for key, raw in spec.items():
                info = fields.get(key)
                if key != "type" and info is not None and info.is_required():
                    required |= resolve_refs(raw, self.params)[1]
        return sorted(required)

    # ------------------------------------------------------------------ overrides
    def _find_step(self, label: str, key: str) -> int:
        if label.isdigit():
            index = int(label) - 1
            if not 0 <= index < len(self.specs):
                raise ConfigError(f"--set {key}: there is no step {label} (the pipeline has {len(self.specs)})")
            return index
        named = [i for i, s in enumerate(self.specs) if s.get("name") == label]
        typed = [i for i, s in enumerate(self.specs) if s.get("type") == label]  # a named step answers to its type too
        hits = named or typed
        if not hits:
            labels = ", ".join(s.get("name") or s["type"] for s in self.specs)
            raise ConfigError(f"--set {key}: no step named {label!r} (steps: {labels})")
        if len(hits) > 1:
            raise ConfigError(f"--set {key}: {len(hits)} steps are called {label!r}; use the step number (e.g. --set {hits[0] + 1}.FIELD=...)")
        return hits[0]

    def with_overrides(self, overrides: Iterable[str] | Mapping[str, Any]) -> Pipeline:
        """A copy with ``NAME=VALUE`` overrides applied.

        ``NAME`` is a pipeline parameter (``model``), an engine setting (``assume_gsd_m``),
        or ``STEP.FIELD`` where STEP is a step's ``name``, its type, or its 1-based number.
        """
        if isinstance(overrides, str):  # one NAME=VALUE text, not its characters
            overrides = [overrides]
        items = list(overrides.items() if isinstance(overrides, Mapping) else (parse_override(o) for o in overrides))
        try:
            return self._overridden(items)
        except ConfigError as exc:
            raise self._named_override(items, exc) from None

    def _named_override(self, items: list[tuple[str, Any]], exc: ConfigError) -> ConfigError:
        """``exc`` said of the ``--set`` that causes it: the first override that fails alone (``exc`` when only their combination fails).

        An error that the override makes in the pipeline's steps (a wrong type) names the
        override, not the pipeline's file, which the user did not write.
        """
        prefix = f"{self.source}: "
        for key, value in items:
            try:
                self._overridden([(key, value)])
            except ConfigError as alone:
                text = str(alone)
                return ConfigError(f"--set {key}={value}: {text.removeprefix(prefix)}") if text.startswith(prefix) else alone
        return exc

    def _overridden(self, items: list[tuple[str, Any]]) -> Pipeline:
        """:meth:`with_overrides` of parsed ``(NAME, VALUE)`` items; errors name the pipeline's file."""
        params = copy.deepcopy(self.params)
        engine = self.engine.model_dump(exclude_unset=True)
        specs = copy.deepcopy(self.specs)
        unused = set(self.unused_params())
        for key, value in items:
            if key in unused:
                raise ConfigError(
                    f"--set {key}: parameter {key!r} is used by no step of {self.source} (no ${{{key}}} in its steps), so setting it "
                    "would change nothing; refer to it in a step, or set the step's field with --set STEP.FIELD=VALUE"
                )
            if key in params:
                params[key] = value
            elif key in self.settings_names:
                engine[key] = value
            elif "." in key:
                label, _, field_name = key.partition(".")
                index = self._find_step(label, key)
                cls = get_step_class(specs[index]["type"])
                if field_name not in cls.model_fields:
                    fields = ", ".join(f for f in cls.model_fields)
                    raise ConfigError(f"--set {key}: step {label!r} ({cls.type_name}) has no field {field_name!r} (fields: {fields})")
                specs[index][field_name] = value
            else:
                names = ", ".join([*params, *sorted(self.settings_names)]) or "none"
                raise ConfigError(f"--set {key}: no pipeline parameter or engine setting {key!r} (known: {names}); for a step field use STEP.FIELD")
        return Pipeline(specs, params=params, engine=engine, outputs=self.outputs, description=self.description, source=self.source, kind=self.kind)

    # ------------------------------------------------------------------ running
    def _needs_scene_kind(self, method: str) -> None:
        if self.kind != "scene":
            raise ConfigError(
                f"{self.source}: a {self.kind} pipeline runs once over all its frames, not scene by scene: "
                f"use geoseg.pipeline.sequence.run_sequence (or run_sequence_to_dir), not Pipeline.{method}"
            )

    def run(
        self,
        scene: str | os.PathLike[str] | Raster,
        *,
        extent: Extent | Sequence[float] | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        _steps: list[Step] | None = None,
    ) -> RunResult:
        """Run the pipeline on one scene and keep every layer in memory.

        The scene is still processed tile by tile (``max_memory``), and tiled and untiled
        runs agree; the result holds whole-scene arrays, so use :meth:`run_batch` (which
        writes tile by tile) for scenes that do not fit in memory.

        Parameters
        ----------
        scene : path or Raster
            A raster file, or a :class:`~geoseg.raster.Raster` already in memory.
        extent : optional
            Process only this part of the scene (default: the engine setting ``extent``):
            ``[xmin, ymin, xmax, ymax]`` in the scene's CRS, ``{"bbox": [...], "crs":
            "EPSG:4326"}``, a vector file whose polygons are the area of interest, or an
            :class:`~geoseg.pipeline.config.Extent`. Raster layers then cover the extent's
            window of whole pixels (``result.geo``), the network is clipped to the extent,
            and statistics are measured over the window only.

        Returns
        -------
        RunResult
            Layers (``result.graph``, ``result.lines``, ``result.layers["mask"]``, ...).
        """
        self._needs_scene_kind("run")
        if not isinstance(scene, (str, os.PathLike, Raster)):
            raise ConfigError(
                f"scene: a raster file (path) or a geoseg.raster.Raster, got {type(scene).__name__}; "
                "an array becomes one with Raster(array, GeoInfo(...), valid)"
            )
        steps = _steps if _steps is not None else self.steps
        engine = self.engine if extent is None else self.with_overrides({"extent": extent}).engine
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            source = MemorySource(scene) if isinstance(scene, Raster) else open_source(scene, engine.assume_gsd_m, engine.max_pixels)
        try:
            work = working_source(steps, source, engine.extent)
            result = execute(work.steps, work.source, max_memory=engine.max_memory_bytes, tile_px=engine.tile_px, extent=work.extent)
        finally:
            if isinstance(source, FileSource):
                source.close()
        result.warnings[:0] = [str(w.message) for w in caught]
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return result

    def run_batch(
        self,
        inputs: Sequence[str | os.PathLike[str]],
        outdir: str | os.PathLike[str],
        *,
        fmt: str = "shp",
        progress: ProgressCallback | None = None,
        client: Any = None,
        overwrite: bool = False,
        pipeline_name: str | None = None,
        keep_folders: bool = False,
    ) -> list[SceneReport]:
        """Run on many scenes, writing ``OUTDIR/<stem>.<ext>`` and a resumable manifest.

        ``client`` is a ``dask.distributed.Client`` to run the scenes on (default: one by one
        in this process); ``keep_folders`` writes each scene's outputs under its folder's path
        (``--keep-folders``: scenes of one name in several folders). See
        :func:`geoseg.pipeline.batch.run_batch`.
        """
        self._needs_scene_kind("run_batch")
        return run_batch(
            self, inputs, outdir, fmt=fmt, progress=progress, client=client, overwrite=overwrite, pipeline_name=pipeline_name, keep_folders=keep_folders
        )


def resolve_pipeline_path(name: str | os.PathLike[str]) -> Path:
    """A pipeline file path, or the name of a shipped pipeline (``road_centerlines``).

    See :func:`geoseg.shipped.resolve_file`.
    """
    return resolve_file(name, "pipeline")


def load_pipeline(path: str | os.PathLike[str], overrides: Iterable[str] | Mapping[str, Any] = ()) -> Pipeline:
    """Load a pipeline file (or a shipped pipeline by name) and apply ``--set``-style overrides.

    Parameters
    ----------
    path : path-like
        A pipeline YAML file, or the name of a shipped pipeline (``road_centerlines``).
    overrides : iterable of str or mapping, default ()
        ``NAME=VALUE`` strings, or a mapping of names to values (see
        :meth:`Pipeline.with_overrides`).

    Returns
    -------
    Pipeline
        The pipeline, with the overrides applied.

    Raises
    ------
    ConfigError
        A file that cannot be read or is not a valid pipeline, a bare name that is no shipped
        pipeline, or an override naming no parameter, engine setting or step field.

    Examples
    --------
    >>> load_pipeline("road_centerlines", ["smoothness=2"]).params["smoothness"]
    2
    >>> load_pipeline("road_centerlines", {"smoothness": 2.5}).params["smoothness"]
    2.5
    """
    pipe = Pipeline.from_yaml(resolve_pipeline_path(path))
    return pipe.with_overrides(overrides) if overrides else pipe
