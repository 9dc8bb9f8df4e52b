"""Deep raster classifier step: road (or centerline) probability from a torch model file.

Interchangeable with :class:`geoseg.steps.classify.MJCRClassify`: takes ``image``, gives
``probability``. The model file (``geoseg train nn``) says which bands to read, how to
normalise them, the GSD it was trained at and its tiling defaults, and what its training
scenes looked like: a scene unlike them (other data bands, another bit depth or unit) is
refused with the ``bands`` or ``scale`` setting that fits it, before any tile is classified.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from geoseg.errors import ConfigError, InputMismatchError, ModelFileError
from geoseg.pipeline.step import Step, StepContext
from geoseg.raster import GeoInfo
from geoseg.scene_checks import ValueSummary, scaled
from geoseg.steps.model_cache import load_cached
from geoseg.steps.model_input import ModelInputStep

if TYPE_CHECKING:
    from geoseg.nn.modelfile import NNModel

# torch is imported when a model is used, not when the step registry is listed

__all__ = ["NNClassify", "load_nn_classifier"]


def load_nn_classifier(path: str, backend: str = "auto", threads: int | None = None) -> NNModel:
    """Load (and cache while the file is unchanged) a deep classifier: an ``nn`` model file, or an ONNX file of ``geoseg model export``.

    ``backend`` ``torch`` runs model files in torch; ``onnx`` runs either kind through
    onnxruntime (a model file is converted in memory, once per process); ``auto`` runs ONNX
    files in onnxruntime, and model files too when the extra ``geoseg[onnx]`` is installed
    (:data:`AUTO_BACKEND_REASON`; a quantized model runs as its int8 QDQ graph), else in torch.

    Parameters
    ----------
    path : str
        The model file (``.onnx`` for an ONNX file).
    backend : str, default "auto"
        ``"auto"``, ``"torch"`` or ``"onnx"``.
    threads : int, optional
        Threads onnxruntime may use; None: its default. Not used by torch.

    Returns
    -------
    NNModel
        The model, ready to run.

    Raises
    ------
    ModelFileError, ConfigError
        Not a model or ONNX file (or no such file); an ONNX file with backend torch;
        onnxruntime missing for the onnx backend.
    """
    from geoseg.nn.modelfile import load_nn_model

    if path.lower().endswith(".onnx"):
        if backend == "torch":
            raise ConfigError(f"{path}: an ONNX file runs with backend onnx or auto (nn_classify.backend), not torch")
        return _in_onnxruntime(path, _mtime(path), threads)
    if backend == "onnx" or (backend == "auto" and _onnx_available()):
        return _in_onnxruntime(path, _mtime(path), threads)
    model: NNModel = load_cached(path, load_nn_model)
    return model


#: Why ``backend: auto`` prefers onnxruntime when the extra is installed (benchmarks/bench_inference.py, docs/RESULTS.md).
AUTO_BACKEND_REASON = (
    "onnxruntime ran geoseg's tiled inference 1.4-1.9x faster than torch float32 on this project's CPUs, with equal output, "
    "and a W8A8 model as int8 1.6-1.8x faster than torch float32 at 1 thread (about 2x faster than torch's simulation of its integers)"
)


def _onnx_available() -> bool:
    """Whether the extra geoseg[onnx] (onnxruntime and onnx) is installed."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def _mtime(path: str) -> float:
    """The model file's modification time (the caches key on it)."""
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such model file")
    return os.stat(path).st_mtime


@lru_cache(maxsize=4)
def _in_onnxruntime(path: str, mtime: float, threads: int | None) -> NNModel:
    """An ONNX file, or a model file's network converted to ONNX, loaded in onnxruntime (cached while the file is unchanged).

    The conversion (about a second: exporting, and importing the ``onnx`` package) is kept in
    geoseg's cache folder (:mod:`geoseg.cache`), so later runs of the same model file load it
    without torch (:mod:`geoseg.nn.onnx_runtime`).
    """
    from geoseg.cache import cached_bytes, forget
    from geoseg.nn.onnx_runtime import conversion_key, load_onnx_model

    if path.lower().endswith(".onnx"):
        return load_onnx_model(path, threads)

    def convert() -> bytes:
        from geoseg.nn.modelfile import load_nn_model
        from geoseg.nn.onnx import onnx_graph_bytes

        return onnx_graph_bytes(load_cached(path, load_nn_model))

    key = conversion_key(path)
    try:
        return load_onnx_model(f"{path} (as ONNX)", threads, data=cached_bytes("onnx", key, convert))
    except ModelFileError:  # an unusable cache entry: convert again (a fresh conversion loads)
        forget("onnx", key)
        return load_onnx_model(f"{path} (as ONNX)", threads, data=cached_bytes("onnx", key, convert))


class NNClassify(ModelInputStep):
    """Road probability from a deep raster classifier (baseline encoder-decoder or DecoupleSegNet)."""

    type_name = "nn_classify"
    takes = ("image",)
    gives = ("probability",)
    stats_inputs = ("image",)
    concurrent_tiles = False  # sets torch's process-wide thread count while it runs; uses the cores itself

    model: str = Field(description="model file from `geoseg train nn` (or `geoseg quantize`), or an ONNX file from `geoseg model export`")
    backend: Literal["torch", "onnx", "auto"] = Field(
        "auto",
        description="torch, or onnx (onnxruntime, the extra geoseg[onnx]; a model file is converted in memory); "
        "auto: onnxruntime when installed (1.4-1.9x faster on CPUs; quantized models run there as int8), else torch",
    )
    output: Literal["road", "centerline", "auto"] = Field(
        "road", description="which head writes `probability`: road surface, the centerline head, or auto (the centerline head when the model has one)"
    )
    tile_px: int | None = Field(None, ge=32, description="inference tile side (default: the model's)")
    max_tile_px: int | None = Field(
        None, ge=32, description="largest inference tile side (default: 5/4 of tile_px): tiles grow up to it where fewer, larger tiles classify fewer pixels"
    )
    overlap_px: int | None = Field(None, ge=0, description="overlap of neighbouring tiles, blended smoothly (default: the model's)")
    batch_size: int = Field(4, ge=1, description="tiles per forward pass")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="torch device; auto = CUDA when available")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")
    gsd_tolerance: float = Field(0.25, ge=0, description="relative GSD difference from the model's training GSD that is accepted as is")
    resample: bool | None = Field(
        None,
        description="resample scenes whose GSD differs from the model's to its GSD (and the probability back); "
        "default: the model's choice (models trained at a working GSD, data.work_gsd_m, always resample)",
    )
    tta: bool | None = Field(None, description="test-time augmentation: average the 8 orientations of each tile (8x slower); default: the model's choice")

    def _classifier(self) -> NNModel:
        """The model as this step runs it (backend and threads)."""
        return load_nn_classifier(self.model, self.backend, self.threads)

    def check_files(self) -> None:
        """Load the model as the step runs it (kept in the cache for the scenes)."""
        self._classifier()

    def check_bands(self, band_names: tuple[str, ...], source: str) -> None:
        """The model's band checks on a one-pixel scene of these bands."""
        pixel = np.zeros((len(band_names), 1, 1), np.uint8)
        self._classifier().select_bands(pixel, source, self.model, band_names=band_names, bands=self.bands, label=self.label)

    def halo_px(self, geo: GeoInfo) -> int:
        """The tile overlap, in scene pixels: context beyond it barely changes a pixel's probability."""
        model = self._classifier()
        overlap = self.overlap_px if self.overlap_px is not None else model.overlap_px
        if self._resamples(model) and np.isfinite(model.train_gsd_m):
            return int(np.ceil(overlap * model.train_gsd_m / geo.gsd_m))
        return int(overlap)

    def image_decimation(self, geo: GeoInfo) -> int:
        """The whole times the model's GSD is coarser than the scene's, when it resamples scenes to it (else 1).

        Rounded down, except within 2 %: 0.6 m over 0.3001 m is 2 (the model then sees cells of
        0.6002 m, as close to its GSD as its own resampling would make them).
        """
        model = self._classifier()
        if not self._resamples(model) or not np.isfinite(model.train_gsd_m):
            return 1
        return max(1, int(model.train_gsd_m / geo.gsd_m * 1.02))

    def _selected(self, model: NNModel, layers: dict[str, Any], ctx: StepContext) -> np.ndarray:
        """The model's bands of the tile (raw values), checked against its training scenes."""
        valid = ctx.raster_valid(self.label)
        return model.select_bands(layers["image"], ctx.source, self.model, band_names=ctx.band_names, bands=self.bands, label=self.label, valid=valid)

    def tile_statistics(self, layers: dict[str, Any], ctx: StepContext) -> ValueSummary:
        """A summary of the model's bands over the tile's core (bands checked first)."""
        selected = self._selected(self._classifier(), layers, ctx)
        rows, cols = ctx.core
        return ValueSummary.of(selected[:, rows, cols], ctx.raster_valid(self.label)[rows, cols], ctx.source, layers["image"].shape[0], levels=False)

    def fit(self, partials: list[Any]) -> Step:
        """Refuse the scene when its values are far outside the model's training scenes'."""
        summary = ValueSummary.merge(partials)
        self._classifier().check_values(summary, self.model, scale=self.scale, label=self.label)
        return self.with_fitted(values=summary)

    def apply(self, layers: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Classify the scene by tiled inference (pixels without data get probability 0)."""
        from geoseg.nn.arrays import normalise
        from geoseg.nn.inference import predict_scene

        model = self._classifier()
        in_onnxruntime = getattr(model.module, "gives_probabilities", False)
        if in_onnxruntime and self.device == "cuda":
            raise ConfigError(f"{self.model}: the onnx backend runs on the CPU; use backend torch for device cuda")
        heads = model.heads
        wanted = self.output if self.output != "auto" else ("centerline" if "centerline" in heads else "road")
        if wanted not in heads:
            raise ConfigError(f"{self.model}: the model has no {wanted} output (outputs: {', '.join(heads)})")
        valid = ctx.raster_valid(self.label)
        x = normalise(scaled(self._selected(model, layers, ctx), self.scale), model.band_mean, model.band_std)
        x = np.where(valid[None], x, np.float32(0))
        zoom = self._zoom(model, ctx)
        tta = model.tta if self.tta is None else self.tta
        if in_onnxruntime:  # its threads are the session's (load_nn_classifier)
            probs = predict_scene(
                model, x, zoom, tile_px=self.tile_px, overlap_px=self.overlap_px, max_tile_px=self.max_tile_px, batch_size=self.batch_size, tta=tta
            )
        else:
            probs = self._in_torch(model, x, zoom, tta)
        prob = probs[heads.index(wanted)]
        return {"probability": np.where(valid, prob, np.float32(0)).astype(np.float32)}

    def _in_torch(self, model: NNModel, x: np.ndarray, zoom: float, tta: bool) -> np.ndarray:
        """:func:`~geoseg.nn.inference.predict_scene` of a torch classifier, on the step's device and threads (restored after)."""
        import torch

        from geoseg.nn.fitting import resolve_device
        from geoseg.nn.inference import predict_scene

        prev = torch.get_num_threads()
        torch.set_num_threads(self.threads or os.cpu_count() or 1)
        try:
            device = resolve_device(self.device)
            model.module.to(device)
            return predict_scene(
                model,
                x,
                zoom,
                tile_px=self.tile_px,
                overlap_px=self.overlap_px,
                max_tile_px=self.max_tile_px,
                batch_size=self.batch_size,
                device=device,
                tta=tta,
            )
        finally:
            model.module.to("cpu")
            torch.set_num_threads(prev)

    def _resamples(self, model: NNModel) -> bool:
        """Whether scenes at another GSD are resampled: the step's setting, else the model's."""
        return model.resample if self.resample is None else self.resample

    def _zoom(self, model: NNModel, ctx: StepContext) -> float:
        """Scale factor to the model's GSD (1 when within tolerance), or an error.

        A model trained at a working GSD is always brought to it (unless ``resample`` is
        false), however close the scene's GSD is: it was trained on resampled pixels.
        """
        from geoseg.nn.resample import working_zoom

        train_gsd, gsd = model.train_gsd_m, ctx.geo.gsd_m
        resample = self._resamples(model)
        if resample and model.resample:
            return working_zoom(model, gsd)
        if not np.isfinite(train_gsd) or abs(gsd / train_gsd - 1.0) <= self.gsd_tolerance:
            return 1.0
        if resample:
            return gsd / train_gsd
        msg = (
            f"{ctx.source}: GSD {gsd:.3g} m differs from the {train_gsd:.3g} m the model {self.model} was trained at "
            f"by more than {self.gsd_tolerance:.0%}; set resample: true ({self.label}.resample=true) to resample the scene"
        )
        if ctx.geo.georeferenced:
            raise InputMismatchError(msg)
        ctx.warnings.append(msg + " (the scene is not georeferenced, so its GSD is only assumed: set it with --set assume_gsd_m=VALUE)")
        return 1.0
