"""The supervised training loop of the raster classifiers (``mode: supervised``): seeded,
resumable, best-checkpoint keeping.

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
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from geoseg.errors import InputMismatchError
from geoseg.nn.config import TrainConfig
from geoseg.nn.data import sample_batch
from geoseg.nn.fitting import (
    SceneData,
    TrainResult,
    batch_losses,
    evaluate_iou,
    loss_weights,
    new_model,
    optimizer_factory,
    set_learning_rate,
    training_scenes,
)
from geoseg.nn.modelfile import NNModel, load_checkpoint, save_nn_model

__all__ = ["run_supervised"]

log = logging.getLogger("geoseg.nn")


def run_supervised(
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
