"""Unsupervised domain adaptation with an uncertainty-aware mean teacher (``mode: uda``).

After Zhou et al., "Uncertainty-aware consistency regularization for cross-domain semantic
segmentation" (arXiv 2004.08878): a *teacher* network is the exponential moving average
(EMA) of the *student*; on unlabelled target-domain crops, student and teacher see different
random perturbations and the student is pulled towards the teacher's prediction, pixel by
pixel, with pixels where the teacher is uncertain weighted down; the source domain gives the
usual supervised loss. Per iteration ``t``::

    L = L_sup(student(source crops), labels) + λ·ramp(t) · L_cons
    L_cons = Σ_pixels w · ||softmax(student(P_s(x))) − p̄_teacher||² / (number of pixels)
    p̄_teacher = mean over T passes of softmax(teacher(P_k(x)))   (flips undone)
    w = 1[H(p̄_teacher) < τ(t)],  τ(t) = (τ0 + (τ1 − τ0)·ramp(t)) · ln C
    ramp(t) = exp(−5 (1 − min(t / t_ramp, 1))²)             (sigmoid-shaped ramp-up)
    teacher ← α·teacher + (1 − α)·student                    (after each student step)

No public code of the paper exists; the specific choices above (EMA α = 0.99, predictive
entropy of the mean softmax over T stochastic passes, the threshold ramped from 0.75·ln C to
ln C, masked MSE, the sigmoid ramp) are the ones noted as inferred in the project's paper
notes and follow the uncertainty-aware mean teacher of Yu et al. (MICCAI 2019). Where geoseg
differs from the paper's setting:

- the stochastic teacher passes use independent input perturbations (noise, photometric,
  flips) rather than dropout, since geoseg's networks have no dropout layers;
- ``weighting: soft`` is an additional option: ``w = 1 − H / ln C`` instead of the hard mask;
- the masked MSE is averaged over all target pixels (not over the unmasked ones), so
  dropping uncertain pixels also lowers the consistency term's scale;
- BatchNorm running statistics are averaged into the teacher like the weights;
- the written model is the **teacher** (the EMA weights), selected on the validation scenes
  when given, else the last epoch's. ``uncertainty: false`` gives the plain mean teacher
  (``w = 1``) for the ablation, and ``consistency_weight: 0`` a source-only model trained
  and averaged the same way.

Target scenes whose GSD differs from the source (model) GSD are resampled to it as the
``nn_classify`` step does (:mod:`geoseg.nn.unlabeled`). Their optional check masks are used
only for the per-epoch report (teacher IoU on the target crops seen that epoch).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from geoseg.nn.config import TrainConfig
from geoseg.nn.data import TrainingScene, sample_batch
from geoseg.nn.fitting import SceneData, TrainResult, batch_losses, evaluate_iou, loss_weights, new_model, optimizer_factory, set_learning_rate, training_scenes
from geoseg.nn.losses import IGNORE_INDEX
from geoseg.nn.modelfile import save_nn_model
from geoseg.nn.perturb import Perturbation, apply_flips, perturb
from geoseg.nn.unlabeled import unlabeled_scenes

__all__ = [
    "consistency_loss",
    "ema_update",
    "entropy_threshold",
    "predictive_entropy",
    "run_uda",
    "sigmoid_rampup",
    "teacher_prediction",
    "uncertainty_weights",
]

log = logging.getLogger("geoseg.nn")


def sigmoid_rampup(iteration: int, length: int) -> float:
    """``exp(-5 (1 - t)^2)`` with ``t = min(iteration / length, 1)``; 1 when ``length`` is 0."""
    if length <= 0:
        return 1.0
    t = min(max(iteration / length, 0.0), 1.0)
    return float(math.exp(-5.0 * (1.0 - t) ** 2))


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float) -> None:
    """In place: every floating-point parameter and buffer ``t ← decay·t + (1 − decay)·s``; integer buffers copied."""
    t_state = teacher.state_dict()
    for name, s_val in student.state_dict().items():
        t_val = t_state[name]
        if t_val.dtype.is_floating_point:
            t_val.mul_(decay).add_(s_val.detach().to(t_val.dtype), alpha=1.0 - decay)
        else:
            t_val.copy_(s_val)


def predictive_entropy(prob: Tensor, dim: int = 1) -> Tensor:
    """Entropy ``−Σ p ln p`` (nats) of class probabilities along ``dim``."""
    return -(prob * torch.log(prob.clamp_min(1e-12))).sum(dim)


def entropy_threshold(iteration: int, start: float, end: float, rampup_iterations: int, n_classes: int) -> float:
    """Entropy threshold ``(start + (end − start)·ramp(iteration)) · ln n_classes``."""
    return (start + (end - start) * sigmoid_rampup(iteration, rampup_iterations)) * math.log(n_classes)


def uncertainty_weights(entropy: Tensor, n_classes: int, *, threshold: float | None = None, soft: bool = False) -> Tensor:
    """Per-pixel consistency weights from the teacher's predictive entropy.

    Parameters
    ----------
    entropy : Tensor
        Predictive entropy (nats), any shape.
    n_classes : int
        Number of classes (``ln n_classes`` is the maximum entropy).
    threshold : float, optional
        Hard mode: weight 1 where ``entropy < threshold``, else 0.
    soft : bool
        Soft mode instead: ``1 − entropy / ln n_classes`` (clipped to [0, 1]).

    Returns
    -------
    Tensor
        Weights in [0, 1], same shape as ``entropy``; lower where the teacher is less certain.
    """
    if soft:
        return (1.0 - entropy / math.log(n_classes)).clamp(0.0, 1.0)
    if threshold is None:
        raise ValueError("uncertainty_weights: give a threshold or soft=True")
    return (entropy < threshold).to(entropy.dtype)


def consistency_loss(student_prob: Tensor, teacher_prob: Tensor, weights: Tensor | None = None) -> Tensor:
    """Weighted squared difference of class probabilities, averaged over all pixels.

    ``Σ_pixels w · Σ_c (s_c − t_c)² / (N·H·W)`` for ``(N, C, H, W)`` probabilities and ``(N, H, W)``
    weights (all ones when None); the teacher side carries no gradient.
    """
    sq = ((student_prob - teacher_prob.detach()) ** 2).sum(1)
    if weights is not None:
        sq = sq * weights.detach()
    return sq.mean()


@torch.no_grad()
def teacher_prediction(teacher: nn.Module, x: Tensor, passes: int, settings: Perturbation, gen: torch.Generator) -> Tensor:
    """Mean class probabilities of ``passes`` independently perturbed teacher passes, flips undone."""
    total = None
    for _ in range(passes):
        xp, flips = perturb(x, settings, gen)
        prob = apply_flips(F.softmax(teacher(xp)["seg"], dim=1), flips)
        total = prob if total is None else total + prob
    assert total is not None
    return total / passes


def run_uda(
    config: TrainConfig,
    source: Sequence[SceneData],
    target: Sequence[SceneData],
    val_data: Sequence[SceneData],
    bands: list[int],
    device: str,
    best_path: str | os.PathLike[str] | None,
    progress: bool,
) -> TrainResult:
    """Mean-teacher training (called by :func:`geoseg.nn.train.train` for ``mode: uda``).

    Parameters
    ----------
    config : TrainConfig
        ``config.uda`` holds the mean-teacher settings; the budget is ``epochs`` ×
        ``iterations_per_epoch`` like supervised training.
    source : sequence of SceneData
        Labelled source-domain scenes.
    target : sequence of SceneData
        Unlabelled target-domain scenes (labels used only for the report).
    val_data : sequence of SceneData
        Validation scenes for model selection (teacher's road IoU), may be empty.
    bands : list of int
        Bands read.
    device : str
        Torch device.
    best_path : path-like or None
        Where the best teacher is written.
    progress : bool
        Show a progress bar.

    Returns
    -------
    TrainResult
    """
    cfg = config.uda
    model = new_model(config, source, bands)
    student = model.module.to(device)
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.eval()
    teacher_model = replace(model, module=teacher)
    optimizer = optimizer_factory(config)(student)
    src = training_scenes(config, source, bands, np.asarray(model.band_mean), np.asarray(model.band_std))
    tgt_raw = unlabeled_scenes(model, target)
    tgt = [TrainingScene(s.image, s.check) for s in tgt_raw]
    for s in tgt_raw:
        if s.zoom != 1.0:
            log.info("%s: target resampled by %.3f to the source GSD %.3g m", s.source, s.zoom, model.train_gsd_m)
    aug = config.data.augment.augmentation()
    weights = loss_weights(config)
    class_weights = torch.tensor(config.data.class_weights, dtype=torch.float32, device=device)
    settings = Perturbation(noise_std=cfg.noise_std, brightness=cfg.brightness, flips=cfg.flips)
    n_tgt = cfg.target_batch_size or config.data.batch_size
    total_its = config.epochs * config.iterations_per_epoch
    info: dict[str, Any] = {"config": config.model_dump(mode="json"), "scenes": [s.source for s in source], "unlabeled": [s.source for s in target]}
    history: list[dict[str, float]] = []
    best_iou, best_epoch, best_state = -1.0, 0, copy.deepcopy(teacher.state_dict())
    for epoch in range(config.epochs):
        torch.manual_seed(config.seed * 100_003 + epoch)
        gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        student.train()
        t0 = time.perf_counter()
        sums = {"total": 0.0, "supervised": 0.0, "consistency": 0.0, "weight": 0.0}
        tp = fp = fn = checked = 0
        bar = tqdm(range(config.iterations_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not progress or None)
        for i in bar:
            it = epoch * config.iterations_per_epoch + i
            set_learning_rate(optimizer, config.optimizer.lr, it, total_its, config)
            batch = sample_batch(src, config.data.batch_size, config.data.crop_px, aug, gen)
            terms = batch_losses(student(batch.image.to(device)), batch, config, weights, class_weights, device)
            loss = terms["total"]
            ramp = sigmoid_rampup(it, cfg.rampup_iterations)
            tb = sample_batch(tgt, n_tgt, config.data.crop_px, aug, gen)
            x_t = tb.image.to(device)
            t_prob = teacher_prediction(teacher, x_t, cfg.teacher_passes, settings, gen)
            if cfg.uncertainty:
                entropy = predictive_entropy(t_prob)
                if cfg.weighting == "soft":
                    w = uncertainty_weights(entropy, t_prob.shape[1], soft=True)
                else:
                    tau = entropy_threshold(it, cfg.threshold_start, cfg.threshold_end, cfg.rampup_iterations, t_prob.shape[1])
                    w = uncertainty_weights(entropy, t_prob.shape[1], threshold=tau)
            else:
                w = torch.ones_like(t_prob[:, 0])
            cons = torch.zeros((), device=device)
            if cfg.consistency_weight > 0:
                xs, flips = perturb(x_t, settings, gen)
                s_prob = apply_flips(F.softmax(student(xs)["seg"], dim=1), flips)
                cons = consistency_loss(s_prob, t_prob, w)
                loss = loss + cfg.consistency_weight * ramp * cons
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema_update(teacher, student, cfg.ema_decay)
            sums["total"] += float(loss.detach())
            sums["supervised"] += float(terms["total"].detach())
            sums["consistency"] += float(cons.detach())
            sums["weight"] += float(w.mean())
            known = tb.labels != IGNORE_INDEX
            if bool(known.any()):
                pred = (t_prob[:, 1] > 0.5).cpu() & known
                truth = (tb.labels == 1) & known
                tp, fp, fn = tp + int((pred & truth).sum()), fp + int((pred & ~truth).sum()), fn + int((~pred & truth & known).sum())
                checked += int(known.sum())
            bar.set_postfix(loss=f"{sums['total'] / (i + 1):.3f}")
        bar.close()
        n = config.iterations_per_epoch
        record: dict[str, float] = {"epoch": epoch + 1, "seconds": time.perf_counter() - t0, **{f"loss_{k}": v / n for k, v in sums.items() if k != "weight"}}
        record["consistency_ramp"] = sigmoid_rampup((epoch + 1) * n - 1, cfg.rampup_iterations)
        record["coverage"] = sums["weight"] / n
        if checked:
            record["target_iou"] = tp / (tp + fp + fn) if tp + fp + fn else 1.0
        if val_data:
            record["val_iou"] = evaluate_iou(teacher_model, val_data, device)
        score = record.get("val_iou", float(epoch))
        improved = score > best_iou
        if improved:
            best_iou, best_epoch, best_state = score, epoch + 1, copy.deepcopy(teacher.state_dict())
        history.append(record)
        log.info(
            "epoch %d/%d: loss %.4f (supervised %.4f, consistency %.4f x %.2f), teacher coverage %.3f%s%s (%.1f s)%s",
            epoch + 1, config.epochs, record["loss_total"], record["loss_supervised"], record["loss_consistency"], record["consistency_ramp"],
            record["coverage"], f", target check IoU {record['target_iou']:.4f}" if "target_iou" in record else "",
            f", val road IoU {record['val_iou']:.4f}" if "val_iou" in record else "", record["seconds"], " *best*" if improved and val_data else "",
        )  # fmt: skip
    teacher.load_state_dict(best_state)
    teacher.to("cpu").eval()
    out = replace(model, module=teacher)
    out.training = {**info, "history": history, "best_epoch": best_epoch, "best_val_iou": best_iou if val_data else None, "exported": "teacher"}
    if best_path is not None:
        save_nn_model(best_path, out)
    return TrainResult(model=out, history=history, best_epoch=best_epoch, best_iou=best_iou if val_data else float("nan"))
