"""The schema of pipeline files: engine settings, pipeline kinds, the top level, and steps built from their specs.

YAML reading, ``--set`` parsing, ``${NAME}`` templating and validation messages come from
:mod:`geoseg.configfile`, as for every geoseg config.

A pipeline file looks like::

    schema_version: 1
    kind: scene              # the default; "sequence": the steps run once over all frames
    description: Road centerlines from a road mask.
    params:                  # template parameters, overridable with --set NAME=VALUE
      buffer_m: 15
    engine:                  # engine settings, also overridable with --set
      assume_gsd_m: 0.3
    steps:
      - type: threshold_mask
      - type: connect_gaps
        max_gap_m: ${buffer_m}
    outputs: [network, nodes]

A step field whose value is ``${NAME}`` takes the parameter's value (typed); ``${NAME}``
inside a longer string is replaced textually. A parameter set to ``null`` leaves optional
fields at the step's default and must be given (``--set NAME=VALUE``) for required ones. Every error names the file, the step and the
field.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, ValidationError, field_validator, model_serializer, model_validator
from pyproj import CRS as ProjCRS
from pyproj.exceptions import CRSError

from geoseg.configfile import resolve_refs, validation_message
from geoseg.errors import ConfigError
from geoseg.pipeline.registry import get_step_class
from geoseg.pipeline.step import Step
from geoseg.tiling import parse_memory

__all__ = [
    "SCHEMA_VERSION",
    "EngineSettings",
    "Extent",
    "PIPELINE_KINDS",
    "kind_input",
    "PipelineFile",
    "build_step",
]

SCHEMA_VERSION = 1

_BARE_NUMBER = re.compile(r"\s*[0-9]*\.?[0-9]+(?:[eE][0-9]+)?\s*")


class Extent(BaseModel):
    """The part of each scene to process (engine setting ``extent``, ``geoseg run --bbox/--aoi``).

    Either ``bbox``, ``[xmin, ymin, xmax, ymax]`` in ``crs`` (default: each scene's own CRS,
    pixel coordinates x = column, y = row for scenes without georeferencing), or ``aoi``, a
    vector file whose polygons (their union, in the file's CRS) are the extent.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    bbox: list[float] | None = Field(None, min_length=4, max_length=4, description="[xmin, ymin, xmax, ymax]")
    crs: str | None = Field(None, description="CRS of bbox (EPSG:4326, WKT, PROJ); default: each scene's CRS")
    aoi: str | None = Field(None, description="vector file whose polygons (their union) are the extent")

    @model_validator(mode="after")
    def _one_extent(self) -> Extent:
        if (self.bbox is None) == (self.aoi is None):
            raise ValueError("give either bbox: [xmin, ymin, xmax, ymax] or aoi: FILE")
        if self.aoi is not None and self.crs is not None:
            raise ValueError("crs goes with bbox; an aoi file carries its own CRS")
        if self.bbox is not None:
            xmin, ymin, xmax, ymax = self.bbox
            if not all(math.isfinite(v) for v in self.bbox) or xmin >= xmax or ymin >= ymax:
                raise ValueError(f"bbox [xmin, ymin, xmax, ymax] needs finite values, xmin < xmax and ymin < ymax (got {self.bbox})")
        if self.crs is not None:
            try:
                ProjCRS.from_user_input(self.crs)
            except CRSError:
                raise ValueError(f"unknown CRS {self.crs!r} (e.g. EPSG:4326, a WKT or PROJ string)") from None
        return self

    def describe(self) -> str:
        """The extent in words, for messages."""
        if self.aoi is not None:
            return f"the AOI {self.aoi}"
        return f"the bbox {' '.join(f'{v:.10g}' for v in self.bbox or [])}" + (f" in {self.crs}" if self.crs else "")


class EngineSettings(BaseModel):
    """Settings of the engine that every pipeline accepts (``engine:`` or ``--set``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    assume_gsd_m: float = Field(0.3, gt=0, description="GSD (m) assumed for scenes without georeferencing")
    max_memory: int | str = Field("1GB", description="memory the tiles in flight may use together (e.g. 512MB, 2GB); chooses the tile size")
    tile_px: int | None = Field(None, ge=64, description="force the tile core size in pixels (default: from max_memory)")
    max_pixels: int = Field(
        4_000_000_000,
        ge=1,
        description="largest scene (width x height) processed; bigger ones are refused before any pixel is read",
    )
    extent: Extent | None = Field(
        None,
        description="process only this part of each scene: [xmin, ymin, xmax, ymax] in the scene's CRS, "
        "{bbox: [...], crs: EPSG:4326}, or a vector file (aoi: FILE) whose polygons are the extent",
    )
    bands_per_frame: int | None = Field(
        None,
        ge=1,
        description="sequence pipelines: bands of one frame when one multi-band file holds the whole sequence",
    )
    name: str | None = Field(None, description="sequence pipelines: output file name (default: the input folder's name or the first frame's stem)")

    @field_validator("extent", mode="before")
    @classmethod
    def _extent_shorthand(cls, value: Any) -> Any:
        # [xmin, ymin, xmax, ymax] is a bbox in the scene's CRS; a string is an AOI file
        if isinstance(value, (list, tuple)):
            return {"bbox": list(value)}
        return {"aoi": os.fspath(value)} if isinstance(value, (str, os.PathLike)) else value

    @field_validator("max_memory")
    @classmethod
    def _readable_memory(cls, value: int | str) -> int | str:
        if parse_memory(value) < 16 * 1024 * 1024:
            bare = _BARE_NUMBER.fullmatch(str(value)) is not None
            units = "a bare number is bytes; give a unit, e.g. 512MB or 2GB" if bare else "e.g. 512MB or 2GB"
            raise ValueError(f"max_memory {value!r} is below 16 MB ({units})")
        return value

    @model_serializer(mode="wrap")
    def _leave_default_gsd_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # Copies are made from the dump (Pipeline.with_overrides): leaving out a default
        # assume_gsd_m keeps it unset there, so that assume_gsd_m_given stays true to the user.
        data = handler(self)
        if not self.assume_gsd_m_given:
            data.pop("assume_gsd_m", None)
        return data

    @property
    def assume_gsd_m_given(self) -> bool:
        """Whether ``assume_gsd_m`` was set (in the pipeline file or with ``--set``) rather than left at its default."""
        return "assume_gsd_m" in self.model_fields_set

    @property
    def max_memory_bytes(self) -> int:
        """``max_memory`` in bytes."""
        return parse_memory(self.max_memory)


#: What each pipeline kind runs over: its input layer, and the engine settings its runner reads.
#: ``scene`` pipelines run on one raster scene at a time, tile by tile (:mod:`geoseg.pipeline.engine`);
#: ``sequence`` pipelines run once over all their frames (:mod:`geoseg.pipeline.sequence`).
PIPELINE_KINDS: dict[str, tuple[str, frozenset[str]]] = {
    "scene": ("image", frozenset({"assume_gsd_m", "max_memory", "tile_px", "max_pixels", "extent"})),
    "sequence": ("frames", frozenset({"assume_gsd_m", "bands_per_frame", "name"})),
}


def kind_input(kind: str, source: str) -> tuple[str, frozenset[str]]:
    """The input layer and engine settings of a pipeline kind.

    Parameters
    ----------
    kind : str
        The pipeline kind (``"scene"`` or ``"sequence"``, see :data:`PIPELINE_KINDS`).
    source : str
        The pipeline file's name, for messages.

    Returns
    -------
    input : str
        The layer the pipeline's first step reads (``"image"`` or ``"frames"``).
    settings : frozenset of str
        The engine settings the kind's runner reads.

    Raises
    ------
    ConfigError
        An unknown kind.

    Examples
    --------
    >>> kind_input("sequence", "p.yaml")[0]
    'frames'
    >>> sorted(kind_input("scene", "p.yaml")[1])
    ['assume_gsd_m', 'extent', 'max_memory', 'max_pixels', 'tile_px']
    """
    if kind not in PIPELINE_KINDS:
        raise ConfigError(f"{source}: unknown pipeline kind {kind!r} (known: {', '.join(PIPELINE_KINDS)})")
    return PIPELINE_KINDS[kind]


class PipelineFile(BaseModel):
    """The top level of a pipeline YAML file."""

    model_config = ConfigDict(extra="forbid")

    schema_version: int
    kind: str = "scene"
    description: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    engine: dict[str, Any] = Field(default_factory=dict)
    steps: list[dict[str, Any]]
    outputs: list[str] | None = None

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != SCHEMA_VERSION:
            raise ValueError(f"unsupported schema_version {value} (this geoseg reads {SCHEMA_VERSION})")
        return value

    @field_validator("steps")
    @classmethod
    def _not_empty(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not value:
            raise ValueError("a pipeline needs at least one step")
        return value


def build_step(spec: dict[str, Any], params: dict[str, Any], where: str, *, allow_unset: bool) -> Step | None:
    """Validate one step spec and build the step.

    Parameters
    ----------
    spec : dict
        The YAML entry (``type`` plus parameters, possibly with ``${NAME}`` references).
    params : dict
        Pipeline parameters (``None`` = not set).
    where : str
        Prefix for messages, e.g. ``"pipe.yaml: step 2 (graph_cut): "``.
    allow_unset : bool
        When True, fields that reference unset parameters are not reported as missing and
        ``None`` is returned instead of a step (used by ``geoseg validate``).

    Returns
    -------
    Step or None
        The step; None (only with ``allow_unset``) when a required field references an unset
        parameter. An optional field that references one keeps the step's default.

    Raises
    ------
    StepNotFoundError
        Unknown step type.
    ConfigError
        Unknown field, wrong type, or missing value.

    Examples
    --------
    >>> spec = {"type": "threshold_mask", "threshold": "${T}"}
    >>> build_step(spec, {"T": 0.5}, "p.yaml: ", allow_unset=False).threshold
    0.5
    >>> build_step({"type": "no_such_step"}, {}, "p.yaml: ", allow_unset=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    geoseg.errors.StepNotFoundError: p.yaml: unknown step type 'no_such_step' (known: ...)
    """
    if not isinstance(spec, dict) or "type" not in spec:
        raise ConfigError(f"{where}each step needs a 'type' (got {spec!r})")
    bad = [k for k in spec if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{where}field names must be names, not {bad[0]!r}")
    try:
        cls = get_step_class(str(spec["type"]))
    except ConfigError as exc:
        raise type(exc)(f"{where}{exc}") from None
    fields: dict[str, Any] = {}
    unset_fields: set[str] = set()
    for key, raw in spec.items():
        if key == "type":
            continue
        try:
            value, unset = resolve_refs(raw, params)
        except ConfigError as exc:
            raise ConfigError(f"{where}field '{key}': {exc}") from None
        if unset:
            field_info = cls.model_fields.get(key)
            if field_info is not None and not field_info.is_required():
                continue  # an unset parameter leaves an optional field at the step's default
            unset_fields.add(key)
            if not allow_unset:
                names = ", ".join(sorted(unset))
                raise ConfigError(f"{where}field '{key}': pipeline parameter {names} is not set (use --set {sorted(unset)[0]}=VALUE)")
            continue
        fields[key] = value
    try:
        step = cls.model_validate(fields)
    except ValidationError as exc:
        message = validation_message(exc, where, frozenset(unset_fields) if allow_unset else frozenset())
        if message:
            raise ConfigError(message) from None
        return None
    return None if unset_fields else step
