"""The supervised training mode of the raster classifiers (``mode: supervised``).

With ``data.work_gsd_m`` the scenes are first resampled to that working GSD
(:mod:`geoseg.nn.resample`) and the model records it, so that inference resamples every scene
the same way. One epoch is ``iterations_per_epoch`` batches of random augmented crops
(:func:`geoseg.nn.data.sample_batch`); the optimizer is AdamW with linear warm-up then a
poly/cosine/constant schedule. After each epoch the model is scored on the validation scenes
(road IoU of ``p(road) > 0.5`` on labelled pixels, by tiled inference), the best model is kept
(and written to ``best_path``) and a checkpoint is written to ``checkpoint_path``. Seeding,
the schedule, best-keeping and resuming are :func:`geoseg.nn.fit.fit`'s.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from geoseg.nn.data import sample_batch
from geoseg.nn.fit import FitPlan, fit
from geoseg.nn.fitting import (
    TrainingRun,
    TrainResult,
    batch_losses,
    epoch_writer,
    evaluate_iou,
    loss_weights,
    lr_schedule,
    optimizer_factory,
    release,
    start_model,
    training_scenes,
)
from geoseg.nn.modelfile import save_nn_model

__all__ = ["run_supervised"]

log = logging.getLogger("geoseg.nn")

MODE = "supervised"


def run_supervised(run: TrainingRun) -> TrainResult:
    """Supervised training of ``run`` (``mode: supervised`` of :func:`geoseg.nn.train.train`)."""
    config, train_data, val_data, bands, device = run.config, run.train, run.val, run.bands, run.device
    checkpoint_path, best_path, progress = run.checkpoint_path, run.best_path, run.progress
    model, ck = start_model(run, MODE)
    optimizer = optimizer_factory(config)(model.module)
    if ck is not None:
        ck.load_optimizer("model", optimizer)
    run.place(model.module)
    model.training = {"config": config.model_dump(mode="json"), "scenes": [s.source for s in train_data]}
    scenes = training_scenes(config, train_data, bands, np.asarray(model.band_mean), np.asarray(model.band_std))
    aug = config.data.augment.augmentation()
    weights = loss_weights(config.loss)
    class_weights = torch.tensor(config.data.class_weights, dtype=torch.float32, device=device)

    def step(it: int, gen: torch.Generator) -> dict[str, float]:
        batch = sample_batch(scenes, config.data.batch_size, config.data.crop_px, aug, gen)
        with run.forward_precision():
            terms = batch_losses(model.module(run.images(batch.image)), batch, config, weights, class_weights, device)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        return {f"loss_{k}": float(v.detach()) for k, v in terms.items()}

    total = config.epochs * config.iterations_per_epoch
    state = fit(
        step, FitPlan(total, config.iterations_per_epoch, config.seed, progress=progress), tracked=model.module,
        schedule=(optimizer, lr_schedule(config.optimizer, total)),
        validate=(lambda: evaluate_iou(model, val_data, device)) if val_data else None, state=ck.state if ck else None,
        on_epoch_end=epoch_writer(MODE, model, best_path=best_path, checkpoint_path=checkpoint_path, validated=bool(val_data), optimizers={"model": optimizer}),
    )  # fmt: skip
    release(model.module)
    if best_path is not None:
        save_nn_model(best_path, model)
    return TrainResult(model=model, history=state.history, best_epoch=state.best_epoch, best_iou=state.best_score if val_data else float("nan"))
