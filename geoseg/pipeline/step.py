"""The step contract: what every pipeline step declares and implements.

A step is a frozen pydantic model (its parameters, validated with ``extra="forbid"``) with:

- ``type_name``: the name used as ``type:`` in pipeline YAML and in the ``geoseg.steps``
  entry-point group;
- ``inputs()`` / ``outputs()``: the named layers it takes and gives (see :data:`LAYER_KINDS`),
  and ``uses_if_present``: optional layers it uses when available; a step that gives a layer
  geoseg does not know declares its kind in ``new_layers`` (``{"buildings": "raster"}``): the
  engine then tiles, stitches and writes it like geoseg's own layers of that kind;
- ``halo_px(geo)``: how many pixels of neighbourhood an output pixel depends on, so that the
  engine can process scenes in overlapping tiles;
- ``apply(layers, ctx)``: the work, on in-memory layers.

Steps whose result depends on **scene-wide statistics** (a road width measured on the whole
mask, a saliency percentile, channel means) declare ``stats_inputs``; the engine then calls
``tile_statistics`` on every tile (over its core) and ``fit`` once with all the partial
results, and runs the fitted copy. Untiled runs go through the same path with one tile, so
tiled and untiled results agree.

Steps that turn rasters into a network are **vectorizers**: the engine clips each tile's
network to the tile's core, stitches the pieces, and calls ``finalize`` once on the whole
network. Steps that take the network run once, on the stitched network.

Steps never open files, never reproject and never know about tiles or Dask: the engine does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, PrivateAttr

from geoseg.errors import ConfigError, GeosegError
from geoseg.raster import GeoInfo

__all__ = ["Step", "StepContext", "LAYER_KINDS", "DECLARABLE_KINDS", "layer_kind", "register_layer", "writes_vectors"]

#: Layer names steps take or give, and their kind: the road chain's own layers here, and those
#: that steps declare in ``Step.new_layers`` added when their class is defined. ``image`` is the
#: input scene.
LAYER_KINDS: dict[str, str] = {
    "image": "raster",
    "probability": "raster",
    "mask": "raster",
    "saliency": "raster",
    "orientation": "raster",
    "centerline": "raster",
    "confidence": "raster",
    "centerline_offset": "raster",
    "occlusion": "raster",
    "network": "vector",
}

#: Kinds a step may declare: ``raster`` (an array per scene, tiled and stitched by the engine,
#: written as ``<stem>_<layer>.tif``) or ``features`` (a GeoDataFrame in the scene's CRS, written
#: as its own vector file or GeoPackage layer; from a raster step, each tile keeps the features
#: whose representative point is in its core, so ``halo_px`` must cover the largest feature). The
#: ``vector`` kind is the road network's alone (its tiles are stitched into one graph).
DECLARABLE_KINDS = ("raster", "features")


def register_layer(name: str, kind: str) -> None:
    """Declare the kind of a layer name, so that pipelines can give, tile and write it.

    Steps declare theirs in ``new_layers``; this is what runs when such a class is defined.
    Declaring a layer again with the same kind does nothing.

    Parameters
    ----------
    name : str
        The layer name.
    kind : str
        ``"raster"`` or ``"features"`` (:data:`DECLARABLE_KINDS`).

    Raises
    ------
    ConfigError
        ``kind`` is not one of :data:`DECLARABLE_KINDS`, or ``name`` already has another kind.

    Examples
    --------
    >>> register_layer("tree_crowns", "raster")
    >>> layer_kind("tree_crowns")
    'raster'
    >>> register_layer("network", "features")
    Traceback (most recent call last):
        ...
    geoseg.errors.ConfigError: layer 'network' is already a vector layer; it cannot also be a features layer
    """
    if kind not in DECLARABLE_KINDS:
        raise ConfigError(f"layer {name!r}: kind {kind!r} cannot be declared (choose from {list(DECLARABLE_KINDS)})")
    known = "vector" if name == "nodes" else LAYER_KINDS.get(name, kind)
    if known != kind:
        raise ConfigError(f"layer {name!r} is already a {known} layer; it cannot also be a {kind} layer")
    LAYER_KINDS[name] = kind


def layer_kind(name: str) -> str:
    """Kind of a layer name: ``raster``, ``vector`` (the network; ``nodes`` is its nodes) or ``features``.

    Features layers are GeoDataFrames in the scene's CRS that steps give (e.g. the changes found
    by ``compare_network``); each is written to its own file or GeoPackage layer.

    Parameters
    ----------
    name : str
        The layer name.

    Returns
    -------
    str
        ``"raster"``, ``"vector"`` or ``"features"``.

    Raises
    ------
    ConfigError
        No step declared the layer.

    Examples
    --------
    >>> layer_kind("mask"), layer_kind("nodes")
    ('raster', 'vector')
    """
    if name == "nodes":
        return "vector"
    if name not in LAYER_KINDS:
        raise ConfigError(
            f"layer {name!r} has no declared kind: the step that gives it declares it, e.g. new_layers = {{{name!r}: 'raster'}} "
            f"(known layers: {sorted(LAYER_KINDS)})"
        )
    return LAYER_KINDS[name]


def writes_vectors(outputs: Sequence[str]) -> bool:
    """Whether any of the layers ``outputs`` is a network or features layer (written as vectors, not rasters).

    Examples
    --------
    >>> writes_vectors(["mask"]), writes_vectors(["mask", "network"])
    (False, True)
    """
    return any(layer_kind(name) != "raster" for name in outputs)


def phase_error(steps: Sequence[Step | type[Step]]) -> tuple[int, str] | None:
    """The first step that breaks the engine's phases (raster steps, one vectorizer, then network steps), and why.

    ``steps`` may hold step classes in place of steps (a pipeline checks steps whose
    parameters are not set yet). None when the order is sound.

    Examples
    --------
    >>> from geoseg.pipeline.registry import get_step_class
    >>> index, why = phase_error([get_step_class(t) for t in ("threshold_mask", "skeletonize", "road_network", "tensor_voting")])
    >>> index, why[:62]
    (3, "gives raster layer(s) ['saliency', 'orientation'] after step 3")
    """
    vectorizers = [i for i, step in enumerate(steps) if step.vectorizer]
    if len(vectorizers) > 1:
        return vectorizers[1], f"turns rasters into a network again, after step {vectorizers[0] + 1}; a pipeline does it once"
    for j in range(vectorizers[0] + 1, len(steps)) if vectorizers else ():
        step = steps[j]
        gives = step.outputs() if isinstance(step, Step) else step.gives
        rasters = [n for n in gives if n in LAYER_KINDS and layer_kind(n) == "raster"]
        if rasters:
            return j, (
                f"gives raster layer(s) {rasters} after step {vectorizers[0] + 1} turned the rasters into a network; "
                "steps after it work on the network only: move it before"
            )
    return None


@dataclass
class StepContext:
    """What a step may know about the scene it runs on.

    Attributes
    ----------
    geo : GeoInfo
        Georeferencing of the arrays (their grid, CRS and GSD).
    valid : numpy.ndarray or None
        Boolean ``(rows, cols)``: where the scene has data (None for network steps, which
        run on the whole scene's network).
    core : tuple of slice
        The part of the arrays that this tile owns (the rest is halo); everything for an
        untiled scene.
    source : str
        The scene's path, for messages.
    band_names : tuple of str
        Names of the image bands.
    warnings : list of str
        Messages steps add for the user (shown in logs and reports).
    coarsening : int
        Scene pixels per side of one array cell: above 1 when the run works on blocks of the
        scene (:mod:`geoseg.pipeline.coarsen`), whose image values are then block means.
    threads : int
        Threads a step may use for its numerical work on this tile (e.g. FFT workers): the
        usable cores when tiles run one at a time in this process, 1 on Dask workers.
    shared : dict
        Quantities derived from a tile's layers that several steps of a pass use (e.g. the road
        width histogram), computed by the first and reused by the others; one dict per tile.
    area : shapely geometry or None
        Network steps: the part of the grid the results cover (an extent's area, pixel space);
        steps that give features layers report only within it. None: the whole grid.
    """

    geo: GeoInfo
    valid: np.ndarray | None
    core: tuple[slice, slice] = (slice(None), slice(None))
    source: str = "<memory>"
    band_names: tuple[str, ...] = ()
    warnings: list[str] = field(default_factory=list)
    coarsening: int = 1
    threads: int = 1
    shared: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)
    area: Any = None

    def px(self, metres: float) -> float:
        """Metres to pixels of this scene."""
        return self.geo.metres_to_pixels(metres)

    def halo_sides(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """Pixels of halo (context around :attr:`core`) above, below, left and right of the core, in arrays of ``shape``.

        Zero on a side where the tile ends at the scene's (or extent's) edge.

        Examples
        --------
        >>> from affine import Affine
        >>> from geoseg.raster import GeoInfo
        >>> geo = GeoInfo(width=100, height=100, crs=None, transform=Affine.identity(), gsd_xy_m=(1.0, 1.0), georeferenced=False)
        >>> StepContext(geo=geo, valid=None, core=(slice(0, 60), slice(20, 80))).halo_sides((100, 100))
        (0, 40, 20, 20)
        """
        rows, cols = (axis.indices(n) for axis, n in zip(self.core, shape[-2:]))
        return rows[0], shape[-2] - rows[1], cols[0], shape[-1] - cols[1]

    def raster_valid(self, step_label: str) -> np.ndarray:
        """The tile's valid-data mask, which the engine gives every raster step.

        Raises
        ------
        GeosegError
            No mask: the step runs in a network step's context.
        """
        if self.valid is None:
            raise GeosegError(f"step {step_label} runs on raster tiles: its context needs the valid-data mask")
        return self.valid


if TYPE_CHECKING:
    from pydantic._internal._model_construction import ModelMetaclass as _ModelType
else:
    _ModelType = type(BaseModel)  # pydantic's model metaclass, without importing its private module


class _StepType(_ModelType):
    """Steps built in Python (``steps.GraphCut(smoothness="abc")``) refuse bad fields with a
    :class:`~geoseg.errors.ConfigError` naming the step, as pipeline files do; pipelines build
    theirs with ``model_validate``, which reports the file and step itself."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        from pydantic import ValidationError

        from geoseg.configfile import validation_message

        try:
            return super().__call__(*args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, f"{getattr(cls, 'type_name', '') or cls.__name__}: ") or str(exc)) from None


class Step(BaseModel, metaclass=_StepType):
    """Base class of pipeline steps (subclass it, declare fields, implement :meth:`apply`).

    Building one with bad fields raises :class:`~geoseg.errors.ConfigError`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    type_name: ClassVar[str] = ""
    takes: ClassVar[tuple[str, ...]] = ()
    gives: ClassVar[tuple[str, ...]] = ()
    uses_if_present: ClassVar[tuple[str, ...]] = ()
    """Layers passed to :meth:`apply` when an earlier step gave them (optional inputs)."""
    stats_inputs: ClassVar[tuple[str, ...]] = ()
    """Layers whose scene-wide statistics the step needs before it can run (see :meth:`fit`)."""
    vectorizer: ClassVar[bool] = False
    """True for steps that turn raster layers into the network (tiled, then stitched)."""
    bytes_per_pixel: ClassVar[int] = 16
    """Rough peak memory of the step per pixel of a tile, for choosing the tile size."""
    stats_bytes_per_pixel: ClassVar[int | None] = None
    """Rough peak memory of :meth:`tile_statistics` per pixel (default: ``bytes_per_pixel``)."""
    new_layers: ClassVar[dict[str, str]] = {}
    """Layers this step gives that geoseg does not know, with their kind (:data:`DECLARABLE_KINDS`)."""
    concurrent_tiles: ClassVar[bool] = True
    """True when two tiles may run the step at once in threads of one process (False for steps
    that change process-wide state while they run, such as torch's thread count)."""

    _fitted: dict[str, Any] | None = PrivateAttr(default=None)

    name: str | None = None
    """Optional label of this step, used by ``--set NAME.FIELD=VALUE``."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Declare the layers of ``new_layers`` when a step class is defined."""
        super().__pydantic_init_subclass__(**kwargs)
        for layer, kind in cls.new_layers.items():
            register_layer(layer, kind)

    def inputs(self) -> tuple[str, ...]:
        """Layers this step reads."""
        return self.takes

    def outputs(self) -> tuple[str, ...]:
        """Layers this step writes."""
        return self.gives

    def halo_px(self, geo: GeoInfo) -> int:
        """Neighbourhood radius in pixels that an output pixel depends on."""
        return 0

    def check_bands(self, band_names: tuple[str, ...], source: str) -> None:
        """Refuse, from its header alone, a scene whose bands (their names, one per band) the step cannot use; nothing by default.

        Dry runs call it; a run finds the same when it reads the scene.
        """

    def check_files(self) -> None:
        """Read the files the step needs besides the scene (a model), so that a bad one stops a batch before its first scene.

        Raises the file's error (e.g. :class:`~geoseg.errors.ModelFileError`); nothing to
        check by default.
        """

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Compute this step's output layers from the input layers."""
        raise NotImplementedError

    def statistics_inputs(self) -> tuple[str, ...]:
        """Layers whose scene-wide statistics :meth:`fit` needs (default: ``stats_inputs``)."""
        return self.stats_inputs

    def statistics_bytes_per_pixel(self) -> int:
        """Rough peak memory per pixel of measuring this step's statistics on a tile."""
        return self.bytes_per_pixel if self.stats_bytes_per_pixel is None else self.stats_bytes_per_pixel

    def stats_halo_px(self, geo: GeoInfo) -> int:
        """Neighbourhood (pixels) that :meth:`tile_statistics` needs around the core."""
        return 0

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> Any:
        """Partial statistics of one tile, over ``ctx.core`` (steps with ``stats_inputs``)."""
        raise NotImplementedError

    def fit(self, partials: list[Any]) -> Step:
        """A copy of the step with the statistics reduced from the tiles' ``partials``."""
        raise NotImplementedError

    def image_decimation(self, geo: GeoInfo) -> int:
        """Steps that take the image: how many times coarser than ``geo`` it may be read.

        Above 1 for a step that works on a coarser grid anyway (a classifier at its working
        GSD): a pass whose steps all agree reads the image from the file's overviews and runs
        on that grid, its raster outputs brought back to the scene's (see
        :mod:`geoseg.pipeline.decimate`). Default 1: full resolution.
        """
        return 1

    def wants_coarsening(self) -> bool:
        """First steps only: whether the run may work on blocks of the scene, sized by :meth:`coarsening`.

        Such a step is fitted on the scene at full resolution before the run
        (:mod:`geoseg.pipeline.coarsen`); default: no.
        """
        return False

    def coarsening(self) -> int:
        """Fitted first steps that :meth:`wants_coarsening`: the block size (scene pixels per side) to work on."""
        return 1

    def expected_coarsening(self, geo: GeoInfo) -> int:
        """First steps that :meth:`wants_coarsening`: the block size a dry run expects on a scene of ``geo``, before measuring."""
        return 1

    def coarsening_reason(self) -> str:
        """Why :meth:`coarsening` chose its block size, for the log."""
        return ""

    def block_values(self, image: np.ndarray) -> np.ndarray:
        """Fitted first steps that :meth:`wants_coarsening`: the per-pixel values whose block means the run works on.

        ``image`` is ``(bands, rows, cols)`` at the scene's resolution; default: the image itself
        (each block holds the mean of each band). A step may reduce it first, e.g. to a 0/1 road
        indicator, so that a block holds its road share.
        """
        return image

    def with_fitted(self, **values: Any) -> Step:
        """A copy carrying fitted values (read back with :meth:`fitted`)."""
        copy = self.model_copy()
        copy._fitted = values
        return copy

    def fitted(self, key: str) -> Any:
        """A value set by :meth:`fit`; the engine fits every step that declares ``stats_inputs``."""
        if self._fitted is None:
            raise GeosegError(f"step {self.label} needs scene statistics: run it through a Pipeline")
        return self._fitted[key]

    def finalize(self, network: Any, ctx: StepContext) -> Any:
        """Vectorizers: last touches on the stitched network (default: none)."""
        return network

    @property
    def label(self) -> str:
        """How the step is named in messages and overrides."""
        return self.name or self.type_name

    def to_spec(self) -> dict[str, Any]:
        """The step as a pipeline YAML entry (``type`` plus non-default parameters)."""
        return {"type": self.type_name, **self.model_dump(mode="json", exclude_defaults=True)}


def ceil_px(value: float) -> int:
    """Round a pixel distance up to a whole number of pixels."""
    return int(math.ceil(value))
