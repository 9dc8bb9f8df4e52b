"""Declarative training configuration of the raster classifiers (``geoseg train nn CONFIG.yaml``).

A YAML file validated by pydantic models with ``extra="forbid"``: a misspelt key is an
error that names the field. ``--set key.sub=value`` overrides any field (the value is parsed
as YAML). See ``pipelines/training/road_decouple.yaml`` for a documented example.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from geoseg.errors import ConfigError

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "InferenceConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "TrainConfig",
    "apply_overrides",
    "load_train_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AugmentConfig(_Strict):
    """Random transforms of the training crops."""

    flips: bool = Field(True, description="random horizontal/vertical flips")
    rotations: bool = Field(True, description="random multiples of 90 degrees")
    colour_jitter: float = Field(0.1, ge=0, le=1, description="per-band gain and offset range (in band standard deviations)")
    scale: tuple[float, float] = Field((0.8, 1.25), description="range of the random zoom factor")

    @field_validator("scale")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("scale must be [low, high] with 0 < low <= high")
        return value


class DataConfig(_Strict):
    """Where the training data is and how crops are drawn from it."""

    images: list[str] = Field(default_factory=list, description="training scenes (files or globs)")
    masks: list[str] = Field(default_factory=list, description="road masks (non-zero = road), paired with images by file stem")
    edges: list[str] = Field(default_factory=list, description="optional edge rasters (non-zero = road edge); default: derived from the masks")
    centerlines: list[str] = Field(default_factory=list, description="optional 1-px centerline rasters for the centerline head")
    val_images: list[str] = Field(default_factory=list, description="validation scenes (road IoU per epoch, best checkpoint)")
    val_masks: list[str] = Field(default_factory=list, description="validation masks, paired by file stem")
    bands: list[int] | None = Field(None, description="1-based bands to read (default: the first three, or all when fewer)")
    gsd_m: float = Field(0.3, gt=0, description="GSD assumed for training files without georeferencing")
    crop_px: int = Field(256, ge=32, description="side of the training crops (a multiple of 16)")
    batch_size: int = Field(8, ge=1, description="crops per batch")
    class_weights: tuple[float, float] = Field((1.0, 1.0), description="cross-entropy weights of background and road")
    edge_radius_px: int = Field(2, ge=1, description="half-width of the boundary band derived from the masks")
    centerline_buffer_m: float = Field(1.0, gt=0, description="buffer radius of the centerline rasters")
    augment: AugmentConfig = Field(default_factory=AugmentConfig)

    @field_validator("images", "masks", "edges", "centerlines", "val_images", "val_masks", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("crop_px")
    @classmethod
    def _stride(cls, value: int) -> int:
        if value % 16:
            raise ValueError("crop_px must be a multiple of 16")
        return value


class ModelConfig(_Strict):
    """Architecture and its hyper-parameters."""

    architecture: Literal["baseline", "decouple"] = Field("decouple", description="baseline encoder-decoder or DecoupleSegNet")
    width: int = Field(16, ge=4, le=128, description="channels of the first encoder stage (then x2, x4, x8)")
    centerline_head: bool = Field(False, description="add the auxiliary centerline head (needs data.centerlines)")


class OptimizerConfig(_Strict):
    """AdamW with a learning-rate schedule over all iterations."""

    lr: float = Field(2e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["poly", "cosine", "constant"] = Field("poly", description="decay after warm-up (poly: power 0.9)")
    warmup_iterations: int = Field(20, ge=0, description="linear warm-up iterations")


class LossConfig(_Strict):
    """Loss weights (DecoupleSegNet's terms; the baseline uses ``ohem_*`` only)."""

    ohem_threshold: float = Field(0.7, gt=0, le=1, description="OHEM keeps pixels whose true-class probability is below this")
    ohem_min_kept_fraction: float = Field(1.0 / 16, gt=0, le=1, description="...and at least this fraction of labelled pixels")
    body: float = Field(1.0, ge=0, description="weight of the body loss")
    edge: float = Field(20.0, ge=0, description="weight of the class-balanced edge BCE")
    edge_attention: float = Field(1.0, ge=0, description="weight of the edge-attention loss")
    edge_attention_threshold: float = Field(0.8, gt=0, lt=1, description="predicted-edge probability above which it applies")
    centerline: float = Field(1.0, ge=0, description="weight of the centerline loss")


class InferenceConfig(_Strict):
    """Tiling defaults stored in the model file (the step may override them)."""

    tile_px: int = Field(256, ge=32, description="tile side")
    overlap_px: int = Field(64, ge=0, description="overlap of neighbouring tiles")


class TrainConfig(_Strict):
    """A full training run."""

    schema_version: Literal[1] = 1
    description: str = ""
    seed: int = Field(0, description="seed of weights, crops and augmentations")
    epochs: int = Field(10, ge=1)
    iterations_per_epoch: int = Field(30, ge=1, description="batches per epoch")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="auto = CUDA when available")
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)

    @model_validator(mode="after")
    def _centerlines(self) -> TrainConfig:
        if self.model.centerline_head and not self.data.centerlines:
            raise ValueError("model.centerline_head needs data.centerlines")
        return self


def _format(exc: ValidationError, source: str) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{where}: {msg}")
    return f"{source}: " + "; ".join(parts)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML) to a raw config dict.

    Raises
    ------
    ConfigError
        An override without ``=`` or that descends into a non-mapping.
    """
    out = dict(raw)
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"--set {text!r}: expected KEY=VALUE")
        key, value = text.split("=", 1)
        path = key.strip().split(".")
        node = out
        for part in path[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {} if child is None else child
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
            node[part] = child
            node = child
        node[path[-1]] = yaml.safe_load(value)
    return out


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read and validate a training config (``None``: the defaults), with ``--set`` overrides.

    Raises
    ------
    ConfigError
        Unreadable YAML, a misspelt or invalid field (the message names it).
    """
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read training config ({exc.strerror or exc})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{source}: invalid YAML ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: a training config is a mapping of keys")
    raw = apply_overrides(raw, list(overrides))
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None
