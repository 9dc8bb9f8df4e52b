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

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoseg.nn.arrays import IGNORE_INDEX
from geoseg.nn.data import TrainingScene, sample_batch
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

MODE = "uda"


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


def run_uda(run: TrainingRun) -> TrainResult:
    """Mean-teacher training of ``run`` (``mode: uda`` of :func:`geoseg.nn.train.train`).

    ``config.uda`` holds the mean-teacher settings; the budget is ``epochs`` ×
    ``iterations_per_epoch`` like supervised training. ``run.train`` is the labelled source
    domain, ``run.unlabeled`` the target domain (labels used only for the report); validation
    scores the teacher, which is the model written. A checkpoint holds the teacher, the student
    and its optimizer.
    """
    config, source, target, val_data, bands, device = run.config, run.train, run.unlabeled, run.val, run.bands, run.device
    checkpoint_path, best_path, progress = run.checkpoint_path, run.best_path, run.progress
    cfg = config.uda
    model, ck = start_model(run, MODE)
    teacher = run.place(model.module)  # the model written is the teacher
    student = copy.deepcopy(teacher)
    optimizer = optimizer_factory(config)(student)
    if ck is not None:
        ck.load_module("student", student)
        ck.load_optimizer("student", optimizer)
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.eval()
    src = training_scenes(config, source, bands, np.asarray(model.band_mean), np.asarray(model.band_std))
    tgt_raw = unlabeled_scenes(model, target)
    tgt = [TrainingScene(s.image, s.check) for s in tgt_raw]
    for s in tgt_raw:
        if s.zoom != 1.0:
            log.info("%s: target resampled by %.3f to the source GSD %.3g m", s.source, s.zoom, model.train_gsd_m)
    aug = config.data.augment.augmentation()
    weights = loss_weights(config.loss)
    class_weights = torch.tensor(config.data.class_weights, dtype=torch.float32, device=device)
    settings = Perturbation(noise_std=cfg.noise_std, brightness=cfg.brightness, flips=cfg.flips)
    n_tgt = cfg.target_batch_size or config.data.batch_size
    model.training = {
        "config": config.model_dump(mode="json"), "scenes": [s.source for s in source], "unlabeled": [s.source for s in target], "exported": "teacher",
    }  # fmt: skip
    check = {"tp": 0, "fp": 0, "fn": 0, "last_it": 0}  # the teacher's scores on the target crops with check masks, per epoch

    def step(it: int, gen: torch.Generator) -> dict[str, float]:
        with run.forward_precision():
            batch = sample_batch(src, config.data.batch_size, config.data.crop_px, aug, gen)
            terms = batch_losses(student(run.images(batch.image)), batch, config, weights, class_weights, device)
            loss = terms["total"]
            tb = sample_batch(tgt, n_tgt, config.data.crop_px, aug, gen)
            x_t = run.images(tb.image)
            t_prob = teacher_prediction(teacher, x_t, cfg.teacher_passes, settings, gen)
            if not cfg.uncertainty:
                w = torch.ones_like(t_prob[:, 0])
            elif cfg.weighting == "soft":
                w = uncertainty_weights(predictive_entropy(t_prob), t_prob.shape[1], soft=True)
            else:
                tau = entropy_threshold(it, cfg.threshold_start, cfg.threshold_end, cfg.rampup_iterations, t_prob.shape[1])
                w = uncertainty_weights(predictive_entropy(t_prob), t_prob.shape[1], threshold=tau)
            cons = torch.zeros((), device=device)
            if cfg.consistency_weight > 0:
                xs, flips = perturb(x_t, settings, gen)
                cons = consistency_loss(apply_flips(F.softmax(student(xs)["seg"], dim=1), flips), t_prob, w)
                loss = loss + cfg.consistency_weight * sigmoid_rampup(it, cfg.rampup_iterations) * cons
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema_update(teacher, student, cfg.ema_decay)
        known = tb.labels != IGNORE_INDEX
        if bool(known.any()):
            pred = (t_prob[:, 1] > 0.5).cpu() & known
            truth = (tb.labels == 1) & known
            check["tp"] += int((pred & truth).sum())
            check["fp"] += int((pred & ~truth).sum())
            check["fn"] += int((~pred & truth).sum())
        check["last_it"] = it
        return {"loss_total": float(loss.detach()), "loss_supervised": float(terms["total"].detach()), "loss_consistency": float(cons.detach()),
                "coverage": float(w.mean())}  # fmt: skip

    def summarize(_: int) -> dict[str, float]:
        out = {"consistency_ramp": sigmoid_rampup(check["last_it"], cfg.rampup_iterations)}
        tp, fp, fn = check["tp"], check["fp"], check["fn"]
        if tp + fp + fn:
            out["target_iou"] = tp / (tp + fp + fn)
        check.update(tp=0, fp=0, fn=0)
        return out

    total = config.epochs * config.iterations_per_epoch
    state = fit(
        step, FitPlan(total, config.iterations_per_epoch, config.seed, progress=progress), tracked=teacher, trained=student,
        schedule=(optimizer, lr_schedule(config.optimizer, total)), summarize=summarize,
        validate=(lambda: evaluate_iou(model, val_data, device)) if val_data else None, state=ck.state if ck is not None else None,
        on_epoch_end=epoch_writer(MODE, model, best_path=best_path, checkpoint_path=checkpoint_path, validated=bool(val_data),
                                  modules={"student": student}, optimizers={"student": optimizer}),
    )  # fmt: skip
    release(teacher)
    if best_path is not None:
        save_nn_model(best_path, model)
    return TrainResult(model=model, history=state.history, best_epoch=state.best_epoch, best_iou=state.best_score if val_data else float("nan"))
