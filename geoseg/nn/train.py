"""Training loop of the raster classifiers: seeded, resumable, best-checkpoint keeping.

With ``data.work_gsd_m`` the scenes are first resampled to that working GSD
(:mod:`geoseg.nn.resample`) and the model records it, so that inference resamples every scene
the same way. One epoch is ``iterations_per_epoch`` batches of random augmented crops
(:func:`geoseg.nn.data.sample_batch`); the optimizer is AdamW with linear warm-up then a
poly/cosine/constant schedule computed from the global iteration (so resuming needs no
scheduler state). After each epoch the model is scored on the validation scenes (road IoU of
``p(road) > 0.5`` on labelled pixels, by tiled inference), the best model is kept (and
written to ``best_path``) and a checkpoint with the optimizer state is written to
``checkpoint_path``.

Determinism: weights are initialised after ``torch.manual_seed(seed)``; the crops of epoch
``e`` come from a generator seeded with ``(seed, e)``, so a run resumed from the checkpoint
of epoch ``e`` continues exactly as the uninterrupted run; deterministic algorithms are
switched on for the duration of training. Files are written only through
:mod:`geoseg.nn.modelfile`.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from geoseg.errors import ConfigError, InputMismatchError
from geoseg.metrics import binary_scores
from geoseg.nn.config import TrainConfig
from geoseg.nn.data import Batch, TrainingScene, band_statistics, centerline_target, normalise, sample_batch
from geoseg.nn.inference import predict_scene
from geoseg.nn.losses import IGNORE_INDEX, LossWeights, segmentation_losses
from geoseg.nn.modelfile import NNModel, load_checkpoint, save_nn_model
from geoseg.nn.models import build_model
from geoseg.nn.resample import resample_any, resample_bands, resample_labels, zoomed_shape
from geoseg.scene_checks import TrainingScenes, data_bands

__all__ = [
    "SceneData",
    "TrainResult",
    "batch_losses",
    "describe_training_scenes",
    "evaluate_iou",
    "loss_weights",
    "lr_factor",
    "new_model",
    "optimizer_factory",
    "resolve_device",
    "set_learning_rate",
    "train",
    "training_scenes",
    "working_zoom",
]

log = logging.getLogger("geoseg.nn")

#: Relative GSD difference under which a scene counts as being at the working GSD already.
GSD_EXACT = 0.01


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


def resolve_device(device: str) -> str:
    """``cpu``, ``cuda`` (refused when unavailable) or ``auto`` (CUDA when available)."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was asked for but torch sees no CUDA device")
    return device


def lr_factor(it: int, total: int, warmup: int, schedule: str) -> float:
    """Learning-rate multiplier at iteration ``it`` of ``total``: linear warm-up, then ``poly``, ``cosine`` or ``constant``."""
    if it < warmup:
        return (it + 1) / warmup
    progress = (it - warmup) / max(total - warmup, 1)
    if schedule == "poly":
        return (1.0 - progress) ** 0.9
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def set_learning_rate(optimizer: torch.optim.Optimizer, peak_lr: float, it: int, total: int, config: TrainConfig) -> None:
    """Set every parameter group's rate to ``peak_lr`` times :func:`lr_factor` of ``config.optimizer``."""
    rate = peak_lr * lr_factor(it, total, config.optimizer.warmup_iterations, config.optimizer.schedule)
    for group in optimizer.param_groups:
        group["lr"] = rate


def batch_losses(
    outputs: dict[str, torch.Tensor], batch: Batch, config: TrainConfig, weights: LossWeights, class_weights: torch.Tensor, device: str
) -> dict[str, torch.Tensor]:
    """The supervised loss terms of a training batch (its targets moved to ``device``)."""
    return segmentation_losses(
        outputs, batch.labels.to(device),
        edges=None if batch.edges is None else batch.edges.to(device),
        centerlines=None if batch.centerlines is None else batch.centerlines.to(device),
        weights=weights, class_weights=class_weights, edge_radius_px=config.data.edge_radius_px,
    )  # fmt: skip


def optimizer_factory(config: TrainConfig) -> Callable[[torch.nn.Module], torch.optim.Optimizer]:
    """A function making the AdamW optimizer of ``config.optimizer`` for a module."""
    def make(module: torch.nn.Module) -> torch.optim.Optimizer:
        return torch.optim.AdamW(module.parameters(), lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay)

    return make


def evaluate_iou(model: NNModel, scenes: Sequence[SceneData], device: str = "cpu") -> float:
    """Road IoU (``p(road) > 0.5`` on labelled pixels, on each scene's grid) over all ``scenes`` pooled.

    A model trained at a working GSD classifies each scene resampled to it, as at inference
    (without test-time augmentation, to keep validation cheap).
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
    """
    names = train_data[0].band_names
    scene_bands = len(data_bands(train_data[0].image.shape[0], names)) if names else None
    return TrainingScenes.measure([s.image for s in train_data], bands, scene_bands=scene_bands, band_names=names)


def new_model(config: TrainConfig, train_data: Sequence[SceneData], bands: list[int]) -> NNModel:
    """A freshly initialised model (seeded by ``config.seed``) normalised by the training scenes' band statistics."""
    mean, std = band_statistics([s.image[[b - 1 for b in bands]] for s in train_data])
    torch.manual_seed(config.seed)
    module = build_model(
        config.model.architecture, in_channels=len(bands), num_classes=2, width=config.model.width, centerline_head=config.model.centerline_head
    )
    return NNModel(
        module=module,
        architecture=config.model.architecture,
        hyper={"in_channels": len(bands), "num_classes": 2, "width": config.model.width, "centerline_head": config.model.centerline_head},
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


def working_zoom(model: NNModel, gsd_m: float) -> float:
    """Scale factor from a scene at ``gsd_m`` to the grid of a model that resamples (else 1)."""
    if not model.resample or not np.isfinite(model.train_gsd_m) or abs(gsd_m / model.train_gsd_m - 1.0) < GSD_EXACT:
        return 1.0
    return gsd_m / model.train_gsd_m


def loss_weights(config: TrainConfig) -> LossWeights:
    """The supervised loss settings of ``config.loss``."""
    return LossWeights(
        ohem_threshold=config.loss.ohem_threshold, min_kept_fraction=config.loss.ohem_min_kept_fraction, body=config.loss.body,
        edge=config.loss.edge, edge_attention=config.loss.edge_attention,
        edge_attention_threshold=config.loss.edge_attention_threshold, centerline=config.loss.centerline,
    )  # fmt: skip


def training_scenes(config: TrainConfig, data: Sequence[SceneData], bands: list[int], mean: np.ndarray, std: np.ndarray) -> list[TrainingScene]:
    """Normalised training scenes with their edge and centerline targets.

    Raises
    ------
    InputMismatchError
        A scene lacks a band or (with ``model.centerline_head``) a centerline raster, or edge
        rasters were given for some scenes only.
    """
    if config.model.centerline_head and any(s.centerlines is None for s in data):
        raise InputMismatchError(
            "model.centerline_head needs a centerline raster for every training scene (--centerlines / data.centerlines; "
            "or set model.centerline_head=false)"
        )
    if any(s.edges is not None for s in data) and any(s.edges is None for s in data):
        raise InputMismatchError("edge rasters were given for some training scenes but not all")
    out = []
    for s in data:
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
        out.append(TrainingScene(image, labels, edges, lines))
    return out


def train(
    config: TrainConfig,
    train_data: Sequence[SceneData],
    val_data: Sequence[SceneData] = (),
    *,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
    best_path: str | os.PathLike[str] | None = None,
    progress: bool = True,
    unlabeled_data: Sequence[SceneData] = (),
) -> TrainResult:
    """Train a raster classifier.

    Parameters
    ----------
    config : TrainConfig
        The run's settings (``config.data`` paths are not read here).
    train_data : sequence of SceneData
        Training scenes, all with the same bands.
    val_data : sequence of SceneData
        Validation scenes; without them the last epoch is the best.
    checkpoint_path : path-like, optional
        Checkpoint written after every epoch (model + optimizer + training state).
    resume : path-like, optional
        Checkpoint to continue from (its epoch count, weights and optimizer state).
    best_path : path-like, optional
        The best model so far is written there whenever it improves.
    progress : bool
        Show a progress bar on stderr.
    unlabeled_data : sequence of SceneData
        Unlabelled scenes for ``config.mode`` ``uda`` (target domain, :mod:`geoseg.nn.uda`) or
        ``ssl`` (:mod:`geoseg.nn.selftrain`); their ``labels`` are used only to report
        pseudo-label IoU (all 255 when unknown). These modes write no checkpoint and cannot resume.

    Returns
    -------
    TrainResult
    """
    if not train_data:
        raise InputMismatchError("training needs at least one scene")
    if config.mode != "supervised":
        if resume is not None or checkpoint_path is not None:
            raise ConfigError(f"mode {config.mode}: checkpoints and resuming are only supported for mode supervised")
        if not unlabeled_data:
            raise InputMismatchError(f"mode {config.mode} needs unlabelled scenes (--unlabeled or data.unlabeled)")
    n_bands = train_data[0].image.shape[0]
    bands = list(config.data.bands) if config.data.bands else list(range(1, min(3, n_bands) + 1))
    device = resolve_device(config.device)
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    prev_fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]  # a runtime module property, absent from the stubs
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    # Deterministic mode also fills every new tensor with NaN, a debugging aid for reads of
    # uninitialised memory that no op here does: it costs 7 % of a step (0.58 -> 0.54 s per
    # step of the shipped road_decouple config on the 6 Ottawa tiles, 2 cores).
    torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]  # a runtime module property, absent from the stubs
    try:
        if config.mode == "uda":
            from geoseg.nn.uda import run_uda

            return run_uda(config, train_data, unlabeled_data, val_data, bands, device, best_path, progress)
        if config.mode == "ssl":
            from geoseg.nn.selftrain import run_selftraining

            return run_selftraining(config, train_data, unlabeled_data, val_data, bands, device, best_path, progress)
        return _run(config, train_data, val_data, bands, device, checkpoint_path, resume, best_path, progress)
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)
        torch.utils.deterministic.fill_uninitialized_memory = prev_fill  # type: ignore[attr-defined]  # a runtime module property, absent from the stubs


def _run(
    config: TrainConfig,
    train_data: Sequence[SceneData],
    val_data: Sequence[SceneData],
    bands: list[int],
    device: str,
    checkpoint_path: str | os.PathLike[str] | None,
    resume: str | os.PathLike[str] | None,
    best_path: str | os.PathLike[str] | None,
    progress: bool,
) -> TrainResult:
    make_optimizer = optimizer_factory(config)
    start_epoch, best_iou, best_epoch, history = 0, -1.0, 0, []
    if resume is not None:
        model, optimizer, state, best_state = load_checkpoint(resume, make_optimizer)
        if model.bands != bands:
            raise InputMismatchError(f"{resume}: checkpoint reads bands {model.bands}, this run reads {bands}")
        start_epoch, best_iou, best_epoch = int(state["epoch"]), float(state["best_iou"]), int(state["best_epoch"])
        history = list(state["history"])
        log.info("resuming from %s after epoch %d", resume, start_epoch)
    else:
        model = new_model(config, train_data, bands)
        module = model.module
        optimizer = make_optimizer(module)
        best_state = copy.deepcopy(module.state_dict())
    model.module.to(device)
    model.training = {"config": config.model_dump(mode="json"), "scenes": [s.source for s in train_data]}
    scenes = training_scenes(config, train_data, bands, np.asarray(model.band_mean), np.asarray(model.band_std))
    aug = config.data.augment.augmentation()
    weights = loss_weights(config)
    class_weights = torch.tensor(config.data.class_weights, dtype=torch.float32, device=device)
    total_its = config.epochs * config.iterations_per_epoch
    for epoch in range(start_epoch, config.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch)
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        model.module.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        bar = tqdm(range(config.iterations_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not progress or None)
        for i in bar:
            it = epoch * config.iterations_per_epoch + i
            set_learning_rate(optimizer, config.optimizer.lr, it, total_its, config)
            batch = sample_batch(scenes, config.data.batch_size, config.data.crop_px, aug, gen)
            terms = batch_losses(model.module(batch.image.to(device)), batch, config, weights, class_weights, device)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{sums['total'] / (i + 1):.3f}")
        bar.close()
        seconds = time.perf_counter() - t0
        record = {"epoch": epoch + 1, "seconds": seconds, **{f"loss_{k}": v / config.iterations_per_epoch for k, v in sums.items()}}
        if val_data:
            record["val_iou"] = evaluate_iou(model, val_data, device)
            model.module.train()
        score = record.get("val_iou", float(epoch))
        improved = score > best_iou
        if improved:
            best_iou, best_epoch = score, epoch + 1
            best_state = copy.deepcopy(model.module.state_dict())
        history.append(record)
        log.info(
            "epoch %d/%d: loss %.4f%s (%.1f s)%s", epoch + 1, config.epochs, record["loss_total"],
            f", val road IoU {record['val_iou']:.4f}" if "val_iou" in record else "", seconds, " *best*" if improved and val_data else "",
        )  # fmt: skip
        model.training.update(history=history, best_epoch=best_epoch, best_val_iou=best_iou if val_data else None)
        if improved and best_path is not None:
            _save_state(best_path, model, best_state)
        if checkpoint_path is not None:
            state = {"epoch": epoch + 1, "best_iou": best_iou, "best_epoch": best_epoch, "history": history}
            save_nn_model(checkpoint_path, model, optimizer=optimizer, checkpoint=state, best_state=best_state)
    model.module.load_state_dict(best_state)
    model.module.to("cpu").eval()
    if best_path is not None:
        save_nn_model(best_path, model)
    return TrainResult(model=model, history=history, best_epoch=best_epoch, best_iou=best_iou if val_data else float("nan"))


def _save_state(path: str | os.PathLike[str], model: NNModel, state: dict[str, Any]) -> Path:
    """Write ``model`` with the weights ``state`` (the live weights are left as they are)."""
    live = copy.deepcopy(model.module.state_dict())
    model.module.load_state_dict(state)
    try:
        return save_nn_model(path, model)
    finally:
        model.module.load_state_dict(live)
