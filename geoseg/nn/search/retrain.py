"""Training a derived (searched) network from scratch, as in GAS's final training stage.

The same recipe as :mod:`geoseg.nn.supervised` (random augmented crops, OHEM cross-entropy,
AdamW with linear warm-up then a poly/cosine/constant schedule, per-epoch validation road IoU
and best-epoch keeping, all through :func:`geoseg.nn.fit.fit`), for a module that is not built
from a training config.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from geoseg.nn.data import TrainingScene, sample_batch
from geoseg.nn.fit import FitPlan, fit
from geoseg.nn.fitting import SceneData, evaluate_iou, loss_weights, lr_schedule
from geoseg.nn.losses import segmentation_losses
from geoseg.nn.modelfile import NNModel
from geoseg.nn.search.config import SearchConfig

__all__ = ["retrain"]


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
    lw = loss_weights(config.loss)
    cw = torch.tensor(config.data.class_weights, dtype=torch.float32, device=device)

    def step(it: int, gen: torch.Generator) -> dict[str, float]:
        batch = sample_batch(scenes, config.data.batch_size, config.data.crop_px, aug, gen)
        loss = segmentation_losses(module(batch.image.to(device)), batch.labels.to(device), weights=lw, class_weights=cw)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss_total": float(loss.detach())}

    total = r.epochs * r.iterations_per_epoch
    state = fit(
        step, FitPlan(total, r.iterations_per_epoch, config.seed, desc="retrain", progress=progress, generator_offset=7919), tracked=module,
        schedule=(opt, lr_schedule(r.optimizer, total)), validate=(lambda: evaluate_iou(model, val_data, device)) if val_data else None,
    )  # fmt: skip
    module.to("cpu").eval()
    return state.history, state.best_epoch, state.best_score if val_data else float("nan")
