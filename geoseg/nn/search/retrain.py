"""Training a derived (searched) network from scratch, as in GAS's final training stage.

The same recipe as :mod:`geoseg.nn.supervised` (random augmented crops, OHEM cross-entropy,
AdamW with linear warm-up then a poly/cosine/constant schedule, per-epoch validation road IoU
and best-epoch keeping, all through :func:`geoseg.nn.fit.fit`), for a module that is not built
from a training config.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from geoseg.nn.checkpoint import Checkpoint, save_checkpoint
from geoseg.nn.data import TrainingScene, sample_batch
from geoseg.nn.fit import FitPlan, FitState, fit
from geoseg.nn.fitting import SceneData, evaluate_iou, loss_weights, lr_schedule
from geoseg.nn.losses import segmentation_losses
from geoseg.nn.modelfile import NNModel, build_nn_model, model_payload
from geoseg.nn.search.config import SearchConfig
from geoseg.nn.search.search import MODE

__all__ = ["retrain"]


def retrain(
    config: SearchConfig,
    model: NNModel,
    scenes: Sequence[TrainingScene],
    val_data: Sequence[SceneData] = (),
    *,
    device: str = "cpu",
    progress: bool = False,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: Checkpoint | None = None,
    extra: dict[str, Any] | None = None,
) -> tuple[list[dict[str, float]], int, float]:
    """Train ``model.module`` in place (best epoch by validation IoU, else the last one is kept).

    Parameters
    ----------
    config : SearchConfig
        ``retrain`` (epochs, iterations, optimizer), ``data`` (crops, augmentation), ``loss``, ``seed``.
    model : NNModel
        The derived network with its metadata (statistics for validation).
    scenes : sequence of TrainingScene
        Normalised training scenes.
    val_data : sequence of SceneData
        Raw validation scenes (optional).
    device : str
        Torch device.
    progress : bool
        Progress bar on stderr.
    checkpoint_path : path-like, optional
        Checkpoint (phase ``retrain``: the model as it stands, its optimizer and ``extra``) written after every epoch.
    resume : Checkpoint, optional
        A ``retrain`` checkpoint of this network to continue from.
    extra : dict, optional
        Further JSON state the checkpoint carries.

    Returns
    -------
    history : list of dict
        Per epoch: seconds, mean loss, validation IoU when validating.
    best_epoch : int
    best_iou : float
        NaN without validation data.
    """
    r = config.retrain
    module = model.module.to(device)
    opt = torch.optim.AdamW(module.parameters(), lr=r.optimizer.lr, weight_decay=r.optimizer.weight_decay)
    aug = config.data.augment.augmentation()
    lw = loss_weights(config.loss)
    cw = torch.tensor(config.data.class_weights, dtype=torch.float32, device=device)

    def step(it: int, gen: torch.Generator) -> dict[str, float]:
        batch = sample_batch(scenes, config.data.batch_size, config.data.crop_px, aug, gen)
        loss = segmentation_losses(module(batch.image.to(device)), batch.labels.to(device), weights=lw, class_weights=cw)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss_total": float(loss.detach())}

    if resume is not None:
        module.load_state_dict(build_nn_model(resume.path, resume.arrays, resume.metadata).module.state_dict())
        resume.load_optimizer("weights", opt)

    def write(state: FitState) -> None:
        assert checkpoint_path is not None
        save_checkpoint(checkpoint_path, MODE, state, model=model_payload(model), optimizers={"weights": opt}, extra={"phase": "retrain", **(extra or {})})

    total = r.epochs * r.iterations_per_epoch
    state = fit(
        step, FitPlan(total, r.iterations_per_epoch, config.seed, desc="retrain", progress=progress, generator_offset=7919), tracked=module,
        schedule=(opt, lr_schedule(r.optimizer, total)), validate=(lambda: evaluate_iou(model, val_data, device)) if val_data else None,
        state=resume.state if resume else None, on_epoch_end=write if checkpoint_path is not None else None,
    )  # fmt: skip
    module.to("cpu").eval()
    return state.history, state.best_epoch, state.best_score if val_data else float("nan")
