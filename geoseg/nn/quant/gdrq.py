"""GDRQ quantization-aware fine-tuning of a float raster classifier.

Yu et al., "Low-bit Quantization Needs Good Distribution" (GDRQ, arXiv 1908.01477): weights
and activations are reshaped by Scale-Clip, weights are quantized per group of output
filters, training uses the straight-through estimator, and the group scales are merged into
batch norm for inference (:mod:`.quantizers`, :mod:`.qat`).

Procedure here: copy the float model, replace its convolutions by :class:`.qat.QConv2d`,
calibrate the activation statistics on a few float batches, then fine-tune all weights for
``iterations`` batches of random crops with the float model's own losses and augmentations
(taken from its stored training config), AdamW with a cosine learning-rate decay.

Where geoseg differs from the paper: a short fine-tuning budget (hundreds of iterations on a
few tiles, CPU) rather than full retraining; the first convolution and the output
convolutions (at most ``num_classes`` output channels) keep ``ends_bits`` (8 by default), as
is common practice; the Scale-Clip factors are fixed per bit width; batch norm keeps
training-mode statistics during fine-tuning. ``method: minmax`` gives the plain baseline
(per-layer max-|w| weight clip, EMA of the activation maximum, one group) with the same
fine-tuning.
"""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, ValidationError, field_validator

from geoseg.configfile import load_config
from geoseg.errors import ConfigError, ModelFileError
from geoseg.nn.checkpoint import Checkpoint, read_checkpoint, save_checkpoint
from geoseg.nn.config import StrictModel, TrainConfig
from geoseg.nn.data import Augmentation, TrainingScene, sample_batch
from geoseg.nn.fit import FitPlan, FitState, LrSchedule, fit
from geoseg.nn.fitting import loss_weights, torch_settings, training_scenes
from geoseg.nn.losses import LossWeights, segmentation_losses
from geoseg.nn.modelfile import NNModel, model_payload
from geoseg.nn.quant.bitops import DEFAULT_TILE_PX, conv_macs
from geoseg.nn.quant.qat import LayerBits, convert_to_qat, quantized_layers

__all__ = [
    "QuantConfig",
    "QuantizedNN",
    "BitSearchConfig",
    "TrainingSetup",
    "calibrate",
    "layer_plan",
    "load_quant_config",
    "prepare_qat",
    "quantize_finetune",
    "resumed_checkpoint",
    "train_loop",
    "training_setup",
    "uniform_bits",
]

#: Training mode name of quantization checkpoints (phases: search, finetune).
MODE = "quantize"

log = logging.getLogger("geoseg.nn")
SUPPORTED_BITS = (2, 4, 8)


class BitSearchConfig(StrictModel):
    """BP-NAS bit-width search settings (``--search``)."""

    candidates: list[int] = Field(default_factory=lambda: [2, 4, 8], description="candidate bit widths of weights and activations")
    iterations: int = Field(100, ge=1, description="search batches")
    lr: float = Field(2e-4, gt=0, description="learning rate of the weights during the search")
    lr_arch: float = Field(0.05, gt=0, description="Adam learning rate of the bit-width logits")
    mu: float = Field(0.1, gt=0, description="weight of the soft barrier (see bpnas.barrier_penalty)")
    barrier_start: float = Field(0.9, ge=0, lt=1, description="the barrier is 0 below this fraction of the budget")
    prob1: float = Field(0.05, ge=0, description="final weight of the Prob-1 regularizer sum_l (1 - max p_l) (ramped up linearly after prob1_delay)")
    prob1_delay: float = Field(0.5, ge=0, lt=1, description="fraction of the search before the Prob-1 weight starts to ramp up")
    start_fraction: float = Field(0.8, gt=0, lt=1, description="the search starts at E[BitOPs] <= this fraction of the budget")
    margin: float = Field(1e-3, gt=0, lt=0.5, description="a step that brings E[BitOPs] above (1 - margin) * B is rejected")

    @field_validator("candidates")
    @classmethod
    def _bits(cls, value: list[int]) -> list[int]:
        if len(value) < 2 or any(b not in SUPPORTED_BITS for b in value) or len(set(value)) != len(value):
            raise ValueError(f"candidates must be two or more distinct widths from {list(SUPPORTED_BITS)}")
        return sorted(value)


class QuantConfig(StrictModel):
    """Quantization-aware fine-tuning settings (``geoseg quantize --set key=value``)."""

    seed: int = Field(0, description="seed of crops and augmentations")
    iterations: int = Field(150, ge=0, description="fine-tuning batches (0: calibration only, post-training quantization)")
    batch_size: int = Field(8, ge=1)
    crop_px: int = Field(256, ge=32, multiple_of=16, description="crop side, a multiple of 16")
    lr: float = Field(5e-4, gt=0, description="AdamW learning rate (cosine decay to 0)")
    weight_decay: float = Field(0.0, ge=0)
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores)")
    method: Literal["gdrq", "minmax"] = Field("gdrq", description="gdrq: Scale-Clip + groups; minmax: plain per-layer min-max")
    groups: int = Field(4, ge=1, description="weight groups per layer (output filters split by magnitude rank)")
    k_w: float | None = Field(None, gt=0, description="weight Scale-Clip factor (default: by bit width)")
    k_a: float | None = Field(None, gt=0, description="activation Scale-Clip factor (default: by bit width)")
    act_momentum: float = Field(0.1, gt=0, le=1, description="EMA momentum of the activation statistics")
    calibration_batches: int = Field(4, ge=1, description="float batches that initialise the activation statistics")
    ends_bits: int | None = Field(8, description="bits of the first and the output convolutions (null: like the others)")
    bitops_tile_px: int = Field(DEFAULT_TILE_PX, ge=32, description="BitOPs and MACs are counted per input tile of this side")
    data_gsd_m: float = Field(0.3, gt=0, description="GSD assumed for files without georeferencing (CLI: --gsd-m)")
    search: BitSearchConfig = Field(default_factory=BitSearchConfig)

    @field_validator("ends_bits")
    @classmethod
    def _ends(cls, value: int | None) -> int | None:
        if value is not None and value not in SUPPORTED_BITS:
            raise ValueError(f"ends_bits must be one of {list(SUPPORTED_BITS)} or null")
        return value


def load_quant_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> QuantConfig:
    """Quantization settings from an optional YAML file and ``key=value`` overrides.

    Raises
    ------
    ConfigError
        Unreadable YAML or an unknown/invalid field (the message names it).
    """
    return load_config(QuantConfig, path, overrides, "quantization config")


@dataclass
class QuantizedNN:
    """A quantization-aware-trained classifier, ready to be written by :func:`.qmodelfile.save_quantized`.

    Attributes
    ----------
    model : NNModel
        Metadata of the float model, with ``module`` the fine-tuned network (QConv2d layers, eval mode).
    bits : dict
        Conv name → :class:`.qat.LayerBits` of every quantized layer.
    macs : dict
        Conv name → MACs per ``config.bitops_tile_px``² tile (all convolutions).
    config : QuantConfig
    history : list of dict
        Loss per logged iteration.
    search : dict, optional
        BP-NAS summary (budget, expected and exact BitOPs, repairs, probabilities).
    """

    model: NNModel
    bits: dict[str, LayerBits]
    macs: dict[str, int]
    config: QuantConfig
    history: list[dict[str, float]] = field(default_factory=list)
    search: dict[str, Any] | None = None


def layer_plan(model: NNModel, tile_px: int = DEFAULT_TILE_PX) -> tuple[dict[str, int], set[str]]:
    """MACs of every convolution (execution order) and the "end" layers kept at ``ends_bits``.

    The ends are the first convolution executed (it reads the image) and every convolution
    with at most ``num_classes`` output channels (output heads, the flow field).
    """
    macs = conv_macs(model.module, len(model.bands), tile_px)
    num_classes = int(model.hyper.get("num_classes", len(model.classes)))
    convs = dict(model.module.named_modules())
    ends = {next(iter(macs))} | {n for n in macs if convs[n].out_channels <= num_classes}
    return macs, ends


def uniform_bits(macs: dict[str, int], ends: set[str], w_bits: int, a_bits: int, ends_bits: int | None) -> dict[str, LayerBits]:
    """The same widths for every layer, the ends at ``ends_bits`` (when set)."""
    for b in (w_bits, a_bits):
        if b not in SUPPORTED_BITS:
            raise ConfigError(f"bit width {b} is not supported (choose from {list(SUPPORTED_BITS)})")
    out = {}
    for name in macs:
        e = ends_bits if (ends_bits is not None and name in ends) else None
        out[name] = LayerBits(e or w_bits, e or a_bits)
    return out


@dataclass
class TrainingSetup:
    """Crops, augmentation and loss settings of a float model's training run."""

    scenes: list[TrainingScene]
    augment: Augmentation
    weights: LossWeights
    class_weights: torch.Tensor
    edge_radius_px: int


def _train_config(model: NNModel) -> TrainConfig:
    stored = model.training.get("config") if isinstance(model.training, dict) else None
    if stored:
        try:
            return TrainConfig.model_validate(stored)
        except ValidationError:
            log.warning("the model's stored training config is not valid in this version; default losses and augmentation are used")
    return TrainConfig()


def training_setup(model: NNModel, data: Sequence[Any]) -> TrainingSetup:
    """Normalised training scenes and the loss/augmentation settings the float model was trained with.

    Parameters
    ----------
    model : NNModel
        The float model (bands and normalisation statistics are taken from it).
    data : sequence of :class:`geoseg.nn.train.SceneData`
    """

    tcfg = _train_config(model)
    if tcfg.model.centerline_head != bool(model.hyper.get("centerline_head")):
        tcfg = tcfg.model_copy(update={"model": tcfg.model.model_copy(update={"centerline_head": bool(model.hyper.get("centerline_head"))})})
    scenes = training_scenes(tcfg, data, model.bands, np.asarray(model.band_mean), np.asarray(model.band_std))
    return TrainingSetup(scenes, tcfg.data.augment.augmentation(), loss_weights(tcfg.loss),
                         torch.tensor(tcfg.data.class_weights, dtype=torch.float32), tcfg.data.edge_radius_px)  # fmt: skip


def calibrate(module: torch.nn.Module, setup: TrainingSetup, cfg: QuantConfig, gen: torch.Generator) -> None:
    """Initialise the activation statistics of every QConv2d on float forward passes (BN untouched)."""
    layers = quantized_layers(module)
    module.eval()
    for q in layers.values():
        q.quantize = False
        q.train()  # observe statistics; BN stays in eval mode
    with torch.no_grad():
        for _ in range(cfg.calibration_batches):
            module(sample_batch(setup.scenes, cfg.batch_size, cfg.crop_px, setup.augment, gen).image)
    for q in layers.values():
        q.quantize = True


def train_loop(
    module: torch.nn.Module,
    setup: TrainingSetup,
    cfg: QuantConfig,
    iterations: int,
    lr: float,
    *,
    extra_loss: Callable[[int], tuple[torch.Tensor, dict[str, float]]] | None = None,
    extra_optimizer: torch.optim.Optimizer | None = None,
    after_step: Callable[[int], None] | None = None,
    progress: bool = True,
    desc: str = "quantize",
    checkpoint: Callable[[FitState, torch.optim.Optimizer], None] | None = None,
    resume: Checkpoint | None = None,
) -> list[dict[str, float]]:
    """Fine-tune ``module`` (AdamW, cosine decay) on random crops through :func:`geoseg.nn.fit.fit`; optional extra loss and optimizer.

    ``checkpoint(state, optimizer)`` is called after every block of iterations; ``resume``
    continues from such a checkpoint (its optimizer ``weights``; the caller restores the modules).

    Returns
    -------
    list of dict
        Mean loss terms per block of iterations (about 10 blocks, the epochs of the fit).
    """
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr, weight_decay=cfg.weight_decay)
    if resume is not None:
        resume.load_optimizer("weights", optimizer)

    def step(it: int, gen: torch.Generator) -> dict[str, float]:
        batch = sample_batch(setup.scenes, cfg.batch_size, cfg.crop_px, setup.augment, gen)
        terms = segmentation_losses(
            module(batch.image), batch.labels, edges=batch.edges, centerlines=batch.centerlines, weights=setup.weights,
            class_weights=setup.class_weights, edge_radius_px=setup.edge_radius_px,
        )  # fmt: skip
        loss = terms["total"]
        logs = {"loss": float(loss.detach())}
        if extra_loss is not None:
            extra, extra_logs = extra_loss(it)
            loss = loss + extra
            logs.update(extra_logs)
        optimizer.zero_grad(set_to_none=True)
        if extra_optimizer is not None:
            extra_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if extra_optimizer is not None:
            extra_optimizer.step()
        if after_step is not None:
            after_step(it)
        return logs

    plan = FitPlan(iterations, max(1, iterations // 10), cfg.seed, desc=desc, progress=progress)
    history = fit(
        step, plan, tracked=module, schedule=(optimizer, LrSchedule(lr, total=iterations, kind="cosine")), state=resume.state if resume else None,
        on_epoch_end=(lambda state: checkpoint(state, optimizer)) if checkpoint is not None else None,
    ).history  # fmt: skip
    module.eval()
    return history


def resumed_checkpoint(path: str | os.PathLike[str], model: NNModel) -> Checkpoint:
    """A quantization checkpoint of the float ``model`` (same weights), to resume a search or fine-tuning.

    Raises
    ------
    ModelFileError
        Not a quantization checkpoint, or one written for another float model.
    """
    ck = read_checkpoint(path, MODE)
    mine = model_payload(model)[0]
    theirs = {k: v for k, v in ck.arrays.items() if k in mine}
    if theirs.keys() != mine.keys() or any(not np.array_equal(theirs[k], v) for k, v in mine.items()):
        raise ModelFileError(f"{path}: a checkpoint of the quantization of another float model")
    return ck


def prepare_qat(model: NNModel, bits: dict[str, LayerBits], cfg: QuantConfig) -> torch.nn.Module:
    """A copy of the float network with the convolutions of ``bits`` replaced by QConv2d."""
    module = copy.deepcopy(model.module).cpu()
    return convert_to_qat(module, bits, groups_q=cfg.groups, method=cfg.method, k_w=cfg.k_w, k_a=cfg.k_a, momentum=cfg.act_momentum)


def quantize_finetune(
    model: NNModel,
    data: Sequence[Any],
    bits: dict[str, LayerBits],
    cfg: QuantConfig,
    *,
    macs: dict[str, int] | None = None,
    search: dict[str, Any] | None = None,
    progress: bool = True,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: Checkpoint | None = None,
) -> QuantizedNN:
    """Quantization-aware fine-tuning (GDRQ or min-max) of a float model at the given layer bits.

    Parameters
    ----------
    model : NNModel
        The float model (not modified).
    data : sequence of SceneData
        Labelled training scenes.
    bits : dict
        Conv name → LayerBits (e.g. from :func:`uniform_bits` or a BP-NAS search).
    cfg : QuantConfig
    macs : dict, optional
        Per-layer MACs (computed when not given).
    search : dict, optional
        BP-NAS summary stored with the result.
    progress : bool
        Progress bar on stderr.
    checkpoint_path : path-like, optional
        Checkpoint (phase ``finetune``) written after every tenth of the iterations.
    resume : Checkpoint, optional
        A ``finetune`` checkpoint of this model and these bits to continue from.
    """
    with torch_settings(cfg.threads, deterministic=False):
        if macs is None:
            macs, _ = layer_plan(model, cfg.bitops_tile_px)
        setup = training_setup(model, data)
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        module = prepare_qat(model, bits, cfg)
        if resume is not None:
            resume.load_module("qat", module)  # calibrated statistics included
        else:
            calibrate(module, setup, cfg, gen)

        def write(state: FitState, optimizer: torch.optim.Optimizer) -> None:
            assert checkpoint_path is not None
            extra = {"phase": "finetune", "bits": {n: [b.w_bits, b.a_bits] for n, b in bits.items()}, "search": search}
            save_checkpoint(checkpoint_path, MODE, state, model=model_payload(model), modules={"qat": module}, optimizers={"weights": optimizer}, extra=extra)

        history = train_loop(module, setup, cfg, cfg.iterations, cfg.lr, progress=progress, desc=f"{cfg.method} fine-tuning",
                             checkpoint=write if checkpoint_path is not None else None, resume=resume)  # fmt: skip
    qmodel = replace(model, module=module, training=dict(model.training))
    return QuantizedNN(qmodel, dict(bits), dict(macs), cfg, history, search)
