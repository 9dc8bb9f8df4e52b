"""Training a derived (searched) network from scratch, as in GAS's final training stage.

The same recipe as :mod:`geoseg.nn.train` (random augmented crops, OHEM cross-entropy, AdamW
with linear warm-up then a poly/cosine/constant schedule, per-epoch validation road IoU and
best-epoch keeping), for a module that is not built from a training config. Differs from
:func:`geoseg.nn.train.train`: no checkpoints or resuming (a retraining is minutes long).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence

import torch
from tqdm import tqdm

from geoseg.nn.data import TrainingScene, sample_batch
from geoseg.nn.fitting import SceneData, evaluate_iou, lr_factor
from geoseg.nn.losses import segmentation_losses
from geoseg.nn.modelfile import NNModel
from geoseg.nn.search.config import SearchConfig
from geoseg.nn.search.search import loss_weights

__all__ = ["retrain"]

log = logging.getLogger("geoseg.nn")


def retrain(
    config: SearchConfig, model: NNModel, scenes: Sequence[TrainingScene], val_data: Sequence[SceneData] = (), *, device: str = "cpu", progress: bool = False
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
    lw = loss_weights(config)
    cw = torch.tensor(config.data.class_weights, dtype=torch.float32, device=device)
    total = r.epochs * r.iterations_per_epoch
    history: list[dict[str, float]] = []
    best_iou, best_epoch, best_state = -1.0, 0, copy.deepcopy(module.state_dict())
    for epoch in range(r.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch)
        gen = torch.Generator().manual_seed(config.seed * 100_003 + 7919 + epoch)
        module.train()
        t0 = time.perf_counter()
        loss_sum = 0.0
        bar = tqdm(range(r.iterations_per_epoch), desc=f"retrain {epoch + 1}/{r.epochs}", leave=False, disable=not progress or None)
        for i in bar:
            factor = lr_factor(epoch * r.iterations_per_epoch + i, total, r.optimizer.warmup_iterations, r.optimizer.schedule)
            for group in opt.param_groups:
                group["lr"] = r.optimizer.lr * factor
            batch = sample_batch(scenes, config.data.batch_size, config.data.crop_px, aug, gen)
            loss = segmentation_losses(module(batch.image.to(device)), batch.labels.to(device), weights=lw, class_weights=cw)["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach())
            bar.set_postfix(loss=f"{loss_sum / (i + 1):.3f}")
        bar.close()
        record = {"epoch": epoch + 1, "seconds": time.perf_counter() - t0, "loss_total": loss_sum / r.iterations_per_epoch}
        if val_data:
            record["val_iou"] = evaluate_iou(model, val_data, device)
        score = record.get("val_iou", float(epoch))
        if score > best_iou:
            best_iou, best_epoch, best_state = score, epoch + 1, copy.deepcopy(module.state_dict())
        history.append(record)
        log.info("retrain epoch %d/%d: loss %.4f%s", epoch + 1, r.epochs, record["loss_total"], f", val road IoU {record['val_iou']:.4f}" if val_data else "")
    module.load_state_dict(best_state)
    module.to("cpu").eval()
    return history, best_epoch, best_iou if val_data else float("nan")
