"""Pieces shared by the training modes of ``geoseg train nn`` (:mod:`geoseg.nn.train`): the
scenes as given (:class:`SceneData`), the run as a mode receives it (:class:`TrainingRun`), the
result (:class:`TrainResult`), the model a run starts from (fresh or resumed), optimizer,
learning-rate schedule, losses and validation score, what is written after each epoch (best
model, checkpoint), the scenes prepared for sampling (resampled to the working GSD), and the
torch settings a training runs under (:func:`torch_settings`). The loop itself is
:func:`geoseg.nn.fit.fit`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.metrics import binary_scores
from geoseg.nn.arrays import IGNORE_INDEX, band_statistics, normalise
from geoseg.nn.checkpoint import Checkpoint, read_checkpoint, save_checkpoint
from geoseg.nn.config import LossConfig, OptimizerConfig, TrainConfig, matching_pattern
from geoseg.nn.data import Batch, TrainingScene, centerline_target
from geoseg.nn.fit import ADAPTIVE_THREADS, FitState, LrSchedule
from geoseg.nn.inference import predict_scene
from geoseg.nn.losses import LossWeights, segmentation_losses
from geoseg.nn.modelfile import NNModel, build_nn_model, model_payload, save_nn_model
from geoseg.nn.models import build_model
from geoseg.nn.resample import GSD_EXACT, resample_any, resample_bands, resample_labels, working_zoom, zoomed_shape
from geoseg.scene_checks import TrainingScenes, data_bands

__all__ = [
    "SceneData",
    "TrainResult",
    "TrainingRun",
    "batch_losses",
    "describe_training_scenes",
    "evaluate_iou",
    "loss_weights",
    "release",
    "epoch_writer",
    "lr_schedule",
    "new_model",
    "optimizer_factory",
    "resolve_device",
    "start_model",
    "torch_settings",
    "training_scenes",
]

log = logging.getLogger("geoseg.nn")


@dataclass
class SceneData:
    """A raw training or validation scene.

    Attributes
    ----------
    image : numpy.ndarray
        Raw ``(bands, rows, cols)`` pixel values (all bands of the file).
    labels : numpy.ndarray
        ``(rows, cols)`` uint8: 1 road, 0 background, 255 unlabelled.
    gsd_m : float
        Ground sample distance, metres.
    source : str
        Where it came from (for messages and the model's provenance).
    edges : numpy.ndarray, optional
        ``(rows, cols)`` edge ground truth (non-zero = edge).
    centerlines : numpy.ndarray, optional
        ``(rows, cols)`` 1-px centerline ground truth (non-zero = centerline).
    band_names : tuple of str
        Names of the image's bands (``alpha`` bands are no data bands); empty when unknown.
    """

    image: np.ndarray
    labels: np.ndarray
    gsd_m: float
    source: str = "<memory>"
    edges: np.ndarray | None = None
    centerlines: np.ndarray | None = None
    band_names: tuple[str, ...] = ()


@dataclass
class TrainResult:
    """Outcome of :func:`train`: the best model, per-epoch history and timings."""

    model: NNModel
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_iou: float = float("nan")


@dataclass
class TrainingRun:
    """One ``geoseg train nn`` run as a mode receives it (see :data:`geoseg.nn.train.MODES`).

    Attributes
    ----------
    config : TrainConfig
    train, val, unlabeled : list of SceneData
        Labelled training scenes, validation scenes (may be empty), unlabelled scenes.
    bands : list of int
        The 1-based bands read.
    device : str
        Torch device (resolved).
    checkpoint_path, resume, best_path : path-like or None
        Where the checkpoint and the model go, and the checkpoint to continue from.
    progress : bool
        Show progress bars.
    precision : str
        The training arithmetic, ``fp32`` or ``bf16``: ``config.precision`` resolved on
        ``device`` once (:func:`resolve_precision`).
    """

    config: TrainConfig
    train: list[SceneData]
    val: list[SceneData]
    unlabeled: list[SceneData]
    bands: list[int]
    device: str
    checkpoint_path: str | os.PathLike[str] | None
    resume: str | os.PathLike[str] | None
    best_path: str | os.PathLike[str] | None
    progress: bool
    precision: str = field(init=False)

    def __post_init__(self) -> None:
        self.precision = resolve_precision(self.config.precision, self.device)

    def forward_precision(self) -> AbstractContextManager[Any]:
        """The context of a training step's forward pass and loss: ``config.precision`` on ``device``.

        bf16 autocasts convolutions and matrix products to bfloat16 (mixed precision); the
        weights, their gradients and the optimizer stay float32. The backward pass runs
        outside the context (in the dtypes the forward pass chose), as torch advises.
        """
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)

    def place(self, module: nn.Module) -> nn.Module:
        """``module`` on the run's device, in the memory layout of :meth:`images`."""
        return module.to(self.device, memory_format=self._layout())  # type: ignore[call-overload]  # accepted at run time, absent from the stubs

    def images(self, batch: Tensor) -> Tensor:
        """A batch of images (N, C, H, W) on the run's device, channels-last under bf16.

        oneDNN's bf16 convolutions compute in that layout: given it, they skip a reordering of
        every layer's input and output, and a step of the shipped ``road_decouple`` takes 7-9 %
        less time (docs/DEEP.md, ``benchmarks/bench_train_layout.py``). float32 runs keep the
        default layout: torch 2.13's CPU backward pass aborts on channels-last float32 networks
        narrower than 12 channels.
        """
        return batch.to(self.device, memory_format=self._layout())

    def _layout(self) -> torch.memory_format:
        return torch.channels_last if self.precision == "bf16" else torch.contiguous_format


def release(module: nn.Module) -> nn.Module:
    """A trained ``module`` back on the CPU in the default (contiguous) layout, in eval mode: as saved and used for inference."""
    return module.to("cpu", memory_format=torch.contiguous_format).eval()  # type: ignore[call-overload]  # as in TrainingRun.place


def resolve_device(device: str) -> str:
    """``cpu``, ``cuda`` (refused when unavailable) or ``auto`` (CUDA when available).

    Parameters
    ----------
    device : str
        The configured device: ``cpu``, ``cuda`` or ``auto``; other names pass unchecked.

    Returns
    -------
    str
        The torch device to use: ``auto`` becomes ``cuda`` or ``cpu``, the rest is unchanged.

    Raises
    ------
    ConfigError
        ``cuda`` was asked for and torch sees no CUDA device.

    Examples
    --------
    >>> resolve_device("cpu")
    'cpu'
    """
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA device")
    return device


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 natively (CPU: oneDNN with AVX-512 BF16 or AMX; CUDA: compute capability 8 and up).

    Examples
    --------
    >>> isinstance(native_bf16("cpu"), bool)
    True
    """
    if torch.device(device).type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
    try:  # a private oneDNN query (torch 1.12 and later); without it, assume no native bf16
        return torch.backends.mkldnn.is_available() and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str) -> str:
    """``fp32`` or ``bf16``: the training arithmetic of a config's ``precision`` on ``device``.

    ``auto`` is ``bf16`` where the device computes it natively (:func:`native_bf16`), else
    ``fp32``. An explicit ``bf16`` is kept even where it is emulated (slower, same numbers).

    Examples
    --------
    >>> resolve_precision("fp32", "cpu"), resolve_precision("bf16", "cpu")
    ('fp32', 'bf16')
    >>> resolve_precision("auto", "cpu") == ("bf16" if native_bf16("cpu") else "fp32")
    True
    """
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def lr_schedule(optimizer: OptimizerConfig, total: int, peak: float | None = None) -> LrSchedule:
    """The learning-rate schedule of an ``optimizer`` config over ``total`` iterations (peak rate ``peak`` or its ``lr``).

    Parameters
    ----------
    optimizer : OptimizerConfig
        The config's ``optimizer`` section: peak rate, warm-up and kind of decay.
    total : int
        Iterations of the whole run (warm-up included).
    peak : float, optional
        Peak rate in place of ``optimizer.lr`` (e.g. the scaled rate of self-training rounds).

    Returns
    -------
    LrSchedule

    Examples
    --------
    >>> from geoseg.nn.config import OptimizerConfig
    >>> schedule = lr_schedule(OptimizerConfig(lr=0.01, warmup_iterations=10), total=100)
    >>> schedule.rate(0), schedule.rate(10)
    (0.001, 0.01)
    >>> lr_schedule(OptimizerConfig(lr=0.01, warmup_iterations=10), 100, peak=0.002).rate(10)
    0.002
    """
    return LrSchedule(optimizer.lr if peak is None else peak, total=total, warmup=optimizer.warmup_iterations, kind=optimizer.schedule)


def _hyper(config: TrainConfig, bands: list[int]) -> dict[str, Any]:
    """The constructor arguments of the network ``config`` describes, reading ``bands``."""
    hyper: dict[str, Any] = {"in_channels": len(bands), "num_classes": 2, "width": config.model.width, "centerline_head": config.model.centerline_head}
    if config.model.encoder != "residual":
        hyper["encoder"] = config.model.encoder
    return hyper


def start_model(run: TrainingRun, mode: str) -> tuple[NNModel, Checkpoint | None]:
    """The model a run starts from: a fresh one, or that of the checkpoint it resumes (same mode and bands).

    Parameters
    ----------
    run : TrainingRun
        The run; a fresh model (:func:`new_model`) is made unless ``run.resume`` is set.
    mode : str
        The training mode; a checkpoint of another mode is refused.

    Returns
    -------
    model : NNModel
        The fresh model, or the checkpoint's.
    checkpoint : Checkpoint or None
        The checkpoint resumed (optimizer and training state), or None for a fresh model.

    Raises
    ------
    ModelFileError
        ``run.resume`` is not a checkpoint of ``mode``, or its weights do not fit its
        architecture.
    InputMismatchError
        The checkpoint's model reads other bands than this run, or is another network (its
        architecture or a constructor argument differs from the config's).
    ConfigError
        A fresh model cannot load its ImageNet weights (``model.pretrained``).
    """
    if run.resume is None:
        return new_model(run.config, run.train, run.bands), None
    ck = read_checkpoint(run.resume, mode)
    model = build_nn_model(ck.path, ck.arrays, ck.metadata)
    if model.bands != run.bands:
        raise InputMismatchError(f"{run.resume}: checkpoint reads bands {model.bands}, this run reads {run.bands}")
    wanted = {"architecture": run.config.model.architecture, **_hyper(run.config, run.bands)}
    found = {"architecture": model.architecture, **model.hyper}
    differ = [f"{k} {found.get(k)!r} (the config: {v!r})" for k, v in wanted.items() if found.get(k) != v]
    if differ:
        raise InputMismatchError(
            f"{run.resume}: the checkpoint's network differs from this run's config: {', '.join(differ)}; resume with the config it was trained with"
        )
    log.info("resuming from %s after epoch %d", run.resume, ck.state.epoch)
    return model, ck


def epoch_writer(
    mode: str,
    model: NNModel,
    *,
    best_path: str | os.PathLike[str] | None,
    checkpoint_path: str | os.PathLike[str] | None,
    validated: bool,
    modules: Mapping[str, torch.nn.Module] | None = None,
    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
    extra: Callable[[], dict[str, Any]] | None = None,
) -> Callable[[FitState], None]:
    """What a training mode writes after each epoch: ``model`` (its module being the tracked one)
    to ``best_path`` when the epoch is the best so far, and a checkpoint of the mode to
    ``checkpoint_path``; the model's training summary is brought up to date first.

    Parameters
    ----------
    mode : str
        The training mode, recorded in the checkpoint.
    model : NNModel
        The model saved; its module must be the module the training updates.
    best_path : str or path-like, optional
        Where the best model goes (None: not written).
    checkpoint_path : str or path-like, optional
        Where the checkpoint goes after every epoch (None: not written).
    validated : bool
        Whether epochs are scored on validation scenes; without, the summary records no
        best validation IoU.
    modules : mapping of str to torch.nn.Module, optional
        Further modules whose weights the checkpoint keeps (e.g. a teacher).
    optimizers : mapping of str to torch.optim.Optimizer, optional
        Optimizers whose state the checkpoint keeps.
    extra : callable, optional
        Called at each write for more JSON-serialisable state of the mode.

    Returns
    -------
    callable
        ``write(state)`` for :func:`geoseg.nn.fit.fit`, called with the
        :class:`~geoseg.nn.fit.FitState` after each epoch; it raises
        :class:`~geoseg.errors.OutputWriteError` when a file cannot be written.
    """

    def write(state: FitState) -> None:
        model.training.update(history=list(state.history), best_epoch=state.best_epoch, best_val_iou=state.best_score if validated else None)
        if state.improved and best_path is not None:
            save_nn_model(best_path, model)
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, mode, state, model=model_payload(model), modules=modules, optimizers=optimizers, extra=extra() if extra else None)

    return write


def batch_losses(
    outputs: dict[str, torch.Tensor], batch: Batch, config: TrainConfig, weights: LossWeights, class_weights: torch.Tensor, device: str
) -> dict[str, torch.Tensor]:
    """The supervised loss terms of a training batch (its targets moved to ``device``).

    Parameters
    ----------
    outputs : dict of str to torch.Tensor
        The model's logits for ``batch.image`` (``seg`` and optionally ``body``, ``edge``,
        ``centerline``).
    batch : Batch
        The batch, with its labels and optional edge and centerline targets.
    config : TrainConfig
        The run's config (its ``data.edge_radius_px``).
    weights : LossWeights
        Weights of the loss terms (:func:`loss_weights`).
    class_weights : torch.Tensor
        ``(K,)`` cross-entropy class weights, on ``device``.
    device : str
        Torch device of ``outputs``.

    Returns
    -------
    dict of str to torch.Tensor
        As :func:`geoseg.nn.losses.segmentation_losses`: the terms and their weighted sum
        ``total``.

    Examples
    --------
    >>> from geoseg.nn.config import TrainConfig
    >>> batch = Batch(torch.zeros(1, 3, 2, 2), torch.ones(1, 2, 2, dtype=torch.long), None, None)
    >>> outputs = {"seg": torch.zeros(1, 2, 2, 2)}
    >>> batch_losses(outputs, batch, TrainConfig(), LossWeights(), torch.ones(2), "cpu")
    {'seg': tensor(0.6931), 'total': tensor(0.6931)}
    """
    return segmentation_losses(
        outputs, batch.labels.to(device),
        edges=None if batch.edges is None else batch.edges.to(device),
        centerlines=None if batch.centerlines is None else batch.centerlines.to(device),
        weights=weights, class_weights=class_weights, edge_radius_px=config.data.edge_radius_px,
    )  # fmt: skip


def optimizer_factory(config: TrainConfig) -> Callable[[torch.nn.Module], torch.optim.Optimizer]:
    """A function making the AdamW optimizer of ``config.optimizer`` for a module.

    Parameters
    ----------
    config : TrainConfig
        The run's config (its ``optimizer.lr`` and ``optimizer.weight_decay``).

    Returns
    -------
    callable
        Takes a ``torch.nn.Module`` and returns an AdamW optimizer of all its parameters.

    Examples
    --------
    >>> from geoseg.nn.config import TrainConfig
    >>> optimizer = optimizer_factory(TrainConfig())(torch.nn.Linear(2, 1))
    >>> type(optimizer).__name__, optimizer.defaults["lr"], optimizer.defaults["weight_decay"]
    ('AdamW', 0.002, 0.0001)
    """

    def make(module: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(module.parameters(), lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay)

    return make


def evaluate_iou(model: NNModel, scenes: Sequence[SceneData], device: str = "cpu") -> float:
    """Road IoU (``p(road) > 0.5`` on labelled pixels, on each scene's grid) over all ``scenes`` pooled.

    A model trained at a working GSD classifies each scene resampled to it, as at inference
    (without test-time augmentation, to keep validation cheap).

    Parameters
    ----------
    model : NNModel
        The model scored.
    scenes : sequence of SceneData
        Raw validation scenes (normalised here with the model's statistics).
    device : str
        Torch device.

    Returns
    -------
    float
        ``tp / (tp + fp + fn)`` over the labelled pixels of all scenes; 1.0 when no pixel is
        road in either the labels or the prediction.

    Raises
    ------
    InputMismatchError
        A scene lacks the model's bands.
    """
    tp = fp = fn = 0.0
    for scene in scenes:
        x = normalise(model.select_bands(scene.image, scene.source, band_names=scene.band_names), model.band_mean, model.band_std)
        prob = predict_scene(model, x, working_zoom(model, scene.gsd_m), device=device)[1]
        labelled = scene.labels != IGNORE_INDEX
        s = binary_scores((prob > 0.5) & labelled, (scene.labels == 1) & labelled)
        tp, fp, fn = tp + s["tp"], fp + s["fp"], fn + s["fn"]
    return tp / (tp + fp + fn) if tp + fp + fn else 1.0


def describe_training_scenes(train_data: Sequence[SceneData], bands: list[int]) -> TrainingScenes:
    """What a model records about its training scenes: data type and value range of ``bands``.

    Their data band count and band names are recorded when the scenes' band names are known
    (``SceneData.band_names``): without names, alpha bands cannot be told from data bands.
    Band names and data band count are those of the first scene.

    Parameters
    ----------
    train_data : sequence of SceneData
        The raw training scenes (at least one).
    bands : list of int
        The 1-based bands the model reads.

    Returns
    -------
    TrainingScenes

    Examples
    --------
    >>> image = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    >>> names = ("red", "green", "alpha")
    >>> scene = SceneData(image, np.ones((2, 2), np.uint8), 0.3, band_names=names)
    >>> described = describe_training_scenes([scene], [1, 2])
    >>> described.dtype, described.scene_bands, described.minimum, described.maximum
    ('uint8', 2, (0.0, 4.0), (3.0, 7.0))
    """
    names = train_data[0].band_names
    scene_bands = len(data_bands(train_data[0].image.shape[0], names)) if names else None
    return TrainingScenes.measure([s.image for s in train_data], bands, scene_bands=scene_bands, band_names=names)


def new_model(config: TrainConfig, train_data: Sequence[SceneData], bands: list[int]) -> NNModel:
    """A freshly initialised model (seeded by ``config.seed``) normalised by the training scenes' band statistics.

    Its GSD is ``data.work_gsd_m`` when set (the model then resamples scenes to it), else the
    training scenes' mean GSD; its tiling defaults are the config's ``inference`` section.

    Parameters
    ----------
    config : TrainConfig
        The run's config (its ``model``, ``data`` and ``inference`` sections and ``seed``).
    train_data : sequence of SceneData
        The raw training scenes (at least one).
    bands : list of int
        The 1-based bands the model reads.

    Returns
    -------
    NNModel

    Raises
    ------
    ConfigError
        ``model.pretrained`` is set and the ImageNet weights cannot be loaded (not installed,
        or the model does not read 3 bands).

    Examples
    --------
    >>> from geoseg.nn.config import TrainConfig
    >>> image = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    >>> scene = SceneData(image, np.ones((2, 2), np.uint8), 0.3)
    >>> model = new_model(TrainConfig(model={"width": 4}), [scene], [1, 2])
    >>> model.architecture, model.bands, model.band_mean, model.train_gsd_m, model.resample
    ('decouple', [1, 2], [1.5, 5.5], 0.3, False)
    """
    mean, std = band_statistics([s.image[[b - 1 for b in bands]] for s in train_data])
    torch.manual_seed(config.seed)
    hyper = _hyper(config, bands)
    module = build_model(config.model.architecture, **hyper)
    if config.model.pretrained:
        from geoseg.nn.efficientnet import imagenet_lite0_state

        module.get_submodule("encoder").load_state_dict(imagenet_lite0_state(len(bands)), strict=True)
    return NNModel(
        module=module,
        architecture=config.model.architecture,
        hyper=hyper,
        bands=bands,
        band_mean=[float(v) for v in mean],
        band_std=[float(v) for v in std],
        train_gsd_m=config.data.work_gsd_m or float(np.mean([s.gsd_m for s in train_data])),
        tile_px=config.inference.tile_px,
        overlap_px=config.inference.overlap_px,
        resample=config.data.work_gsd_m is not None,
        tta=config.inference.tta,
        trained_on=describe_training_scenes(train_data, bands),
    )


def loss_weights(loss: LossConfig) -> LossWeights:
    """The loss settings of a config's ``loss`` section, as :func:`geoseg.nn.losses.segmentation_losses` takes them.

    Parameters
    ----------
    loss : LossConfig
        The config's ``loss`` section.

    Returns
    -------
    LossWeights

    Examples
    --------
    >>> from geoseg.nn.config import LossConfig
    >>> weights = loss_weights(LossConfig(edge=5.0, ohem_min_kept_fraction=0.25))
    >>> weights.edge, weights.min_kept_fraction, weights.body
    (5.0, 0.25, 1.0)
    """
    return LossWeights(
        ohem_threshold=loss.ohem_threshold, min_kept_fraction=loss.ohem_min_kept_fraction, body=loss.body, edge=loss.edge,
        edge_attention=loss.edge_attention, edge_attention_threshold=loss.edge_attention_threshold, centerline=loss.centerline,
    )  # fmt: skip


def source_groups(sources: Sequence[str], patterns: Sequence[str]) -> list[str | None]:
    """The first of ``patterns`` that matches each of ``sources`` (None: none matches).

    Raises
    ------
    ConfigError
        A pattern matches no source (``data.source_weights``: a typo would otherwise be
        ignored silently).
    """
    groups = [matching_pattern(s, patterns) for s in sources]
    if unused := [p for p in patterns if p not in groups]:
        raise ConfigError(
            f"data.source_weights: no training scene matches {', '.join(map(repr, unused))} "
            f"(patterns are globs on the path or the file name; e.g. {sources[0]!r})"
        )
    return groups


def crop_weights(sources: Sequence[str], source_weights: Mapping[str, float]) -> list[float]:
    """How often crops are drawn from each scene, from ``data.source_weights``.

    A scene belongs to the first glob of ``source_weights`` that matches its path (or file
    name); scenes that match none form one more source of weight 1. Each source gets its
    weight's share of the crops, split equally among its scenes.

    Parameters
    ----------
    sources : sequence of str
        The scenes' paths (:attr:`SceneData.source`).
    source_weights : mapping of str to float
        Glob -> relative weight of the scenes it matches.

    Returns
    -------
    list of float
        One weight per scene, summing to 1.

    Raises
    ------
    ConfigError
        A glob matches no scene (a typo would otherwise be ignored silently).

    Examples
    --------
    >>> crop_weights(["ot/a.png", "ma/b.png", "ma/c.png", "ma/d.png"], {"ot/*": 1, "ma/*": 1})
    [0.5, 0.16666666666666666, 0.16666666666666666, 0.16666666666666666]
    >>> crop_weights(["a.png", "b.png"], {})
    [0.5, 0.5]
    """
    groups = source_groups(sources, list(source_weights))
    weight: dict[str | None, float] = {None: 1.0, **{p: float(w) for p, w in source_weights.items()}}
    count = {g: groups.count(g) for g in set(groups)}
    total = sum(weight[g] for g in count)
    if source_weights:
        shares = ", ".join(f"{100 * weight[g] / total:.0f} % from {count[g]} scene(s) {'matching ' + repr(g) if g else 'matching none'}" for g in count)
        log.info("training crops: %s", shares)
    return [weight[g] / count[g] / total for g in groups]


def training_scenes(config: TrainConfig, data: Sequence[SceneData], bands: list[int], mean: np.ndarray, std: np.ndarray) -> list[TrainingScene]:
    """Normalised training scenes with their edge and centerline targets.

    Each scene is reduced to ``bands`` and normalised; with ``data.work_gsd_m``, a scene at
    another GSD is resampled to it (:mod:`geoseg.nn.resample`). Crop weights come from
    ``data.source_weights``.

    Parameters
    ----------
    config : TrainConfig
        The run's config (its ``data`` and ``model`` sections).
    data : sequence of SceneData
        The raw training scenes.
    bands : list of int
        The 1-based bands the model reads.
    mean, std : numpy.ndarray
        Per-band normalisation statistics of ``bands`` (the model's).

    Returns
    -------
    list of TrainingScene
        One per scene, in the order of ``data``.

    Raises
    ------
    InputMismatchError
        A scene lacks a band or (with ``model.centerline_head``) a centerline raster, or edge
        rasters were given for some scenes only.
    ConfigError
        A glob of ``data.source_weights`` matches no scene.

    Examples
    --------
    >>> from geoseg.nn.config import TrainConfig
    >>> image = np.arange(12, dtype=np.uint8).reshape(3, 2, 2)
    >>> scene = SceneData(image, np.ones((2, 2), np.uint8), 0.3)
    >>> mean, std = np.array([1.5, 5.5]), np.array([1.0, 1.0])
    >>> prepared = training_scenes(TrainConfig(), [scene], [1, 2], mean, std)
    >>> prepared[0].image.tolist(), prepared[0].weight
    ([[[-1.5, -0.5], [0.5, 1.5]], [[-1.5, -0.5], [0.5, 1.5]]], 1.0)
    >>> training_scenes(TrainConfig(), [scene], [1, 4], np.zeros(2), np.ones(2))
    Traceback (most recent call last):
    ...
    geoseg.errors.InputMismatchError: <memory>: has 3 band(s), training reads bands [1, 4]
    """
    if config.model.centerline_head and any(s.centerlines is None for s in data):
        raise InputMismatchError(
            "model.centerline_head needs a centerline raster for every training scene (--centerlines / data.centerlines; or set model.centerline_head=false)"
        )
    if any(s.edges is not None for s in data) and any(s.edges is None for s in data):
        raise InputMismatchError("edge rasters were given for some training scenes but not all")
    out = []
    for s, weight in zip(data, crop_weights([s.source for s in data], config.data.source_weights)):
        if s.image.shape[0] < max(bands):
            raise InputMismatchError(f"{s.source}: has {s.image.shape[0]} band(s), training reads bands {bands}")
        image = normalise(s.image[[b - 1 for b in bands]], mean, std)
        labels = np.asarray(s.labels, np.uint8)
        lines = None
        if config.model.centerline_head and s.centerlines is not None:
            lines = centerline_target(s.centerlines, config.data.centerline_buffer_m / s.gsd_m)
        edges = None if s.edges is None else (np.asarray(s.edges) > 0).astype(np.uint8)
        work = config.data.work_gsd_m
        if work is not None and abs(s.gsd_m / work - 1.0) >= GSD_EXACT:
            size = zoomed_shape(image.shape, s.gsd_m / work)
            log.info("%s: resampled from %.3g m to the working GSD %.3g m (%dx%d px)", s.source, s.gsd_m, work, size[1], size[0])
            image, labels = resample_bands(image, size), resample_labels(labels, size)
            edges = None if edges is None else resample_any(edges, size)
            lines = None if lines is None else resample_bands(lines, size)
        out.append(TrainingScene(image, labels, edges, lines, weight))
    return out


@contextmanager
def torch_settings(threads: int | Literal["auto"] | None, *, deterministic: bool = True) -> Iterator[None]:
    """Run the body with ``threads`` torch threads (all cores when None or 0) and, unless
    ``deterministic`` is False, deterministic algorithms on; the previous settings come back
    afterwards. Every training loop of geoseg runs under it.

    ``"auto"`` starts with all cores and lets :func:`~geoseg.nn.fit.fit` tune the count as it
    runs (:data:`~geoseg.nn.fit.ADAPTIVE_THREADS`): fewer threads while other processes hold
    cores. A run's float sums then depend on the load (the thread count changes their order), so
    it is not bit-reproducible; a fixed count is.

    Deterministic mode also fills every new tensor with NaN, a debugging aid for reads of
    uninitialised memory that no op here does: it is switched off (7 % of a step: 0.58 -> 0.54 s
    per step of the shipped road_decouple config on the 6 Ottawa tiles, 2 cores).

    Parameters
    ----------
    threads : int, "auto" or None
        Torch CPU threads in the body (None or 0: ``os.cpu_count()``; ``"auto"``: tuned).
    deterministic : bool
        Turn torch's deterministic algorithms on in the body (warnings only where an op has
        no deterministic version).

    Yields
    ------
    None

    Examples
    --------
    >>> before = torch.get_num_threads()
    >>> with torch_settings(1):
    ...     inside = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    >>> inside, torch.get_num_threads() == before
    ((1, True), True)
    """
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]  # a runtime module property, absent from the stubs
    torch.set_num_threads((threads if isinstance(threads, int) else 0) or os.cpu_count() or 1)
    adaptive = ADAPTIVE_THREADS.set(threads == "auto")
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]  # a runtime module property, absent from the stubs
    try:
        yield
    finally:
        ADAPTIVE_THREADS.reset(adaptive)
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill  # type: ignore[attr-defined]  # a runtime module property, absent from the stubs
