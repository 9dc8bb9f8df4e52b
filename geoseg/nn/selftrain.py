"""Semi-supervised DST-CBC self-training (``mode: ssl``).

After Feng et al., "Semi-Supervised Semantic Segmentation via Dynamic Self-Training and
Class-Balanced Curriculum" (DST-CBC, arXiv 2004.08514; official code voldemortX/DST-CBC):

1. a supervised round trains on the labelled scenes only;
2. each following round ``k = 1..K`` pseudo-labels the unlabelled scenes with the best model
   so far. Class-balanced curriculum: for each class ``c``, the threshold ``k_c`` is the
   top-``r_k`` quantile of the max-probabilities of the pixels predicted as ``c`` (the
   ``⌈r_k·n_c⌉``-th largest); a pixel predicted as ``c`` is pseudo-labelled when its
   max-probability is at least ``k_c`` (``max_c p_c / k_c ≥ 1``), else ignored. ``r`` grows
   linearly from ``r_start`` to ``r_end`` over the rounds (0.2, 0.4, ..., 1.0 for 5 rounds);
3. the round restarts the optimiser and trains on batches that mix labelled and
   pseudo-labelled crops (1:1 by default). Dynamic loss: each pseudo-labelled pixel's
   cross-entropy is weighted by the *current* model's probability of its pseudo-label to
   the power ``γ`` (no gradient through the weight), averaged over the pseudo-labelled
   pixels of the batch; the labelled crops get the ordinary supervised loss;
4. the best model of the round (validation road IoU when validation scenes are given, else
   the round's last epoch) is carried into the next round.

Where geoseg differs: two classes (background, road) and the project's supervised losses
(OHEM / DecoupleSegNet terms) on the labelled crops; labelled and pseudo-labelled crops share
one forward pass (one batch); the rounds' peak learning rate can be scaled down
(``ssl.lr_scale``, 1 = the paper's restart; short CPU rounds that restart at the full rate
can wreck a weak model, so the shipped config fine-tunes at 0.3×); pseudo-labels are computed by tiled inference over the whole
unlabelled scenes at the model's GSD (scenes at another GSD are resampled as the
``nn_classify`` step does, :mod:`geoseg.nn.unlabeled`); the curriculum's budget is
``epochs`` for the supervised round plus ``epochs_per_round`` per self-training round.
Each round logs pseudo-label coverage and, when check masks are given for the unlabelled
scenes (used only for the report), the pseudo-labels' road IoU.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from geoseg.nn.arrays import IGNORE_INDEX
from geoseg.nn.checkpoint import Checkpoint, save_checkpoint
from geoseg.nn.config import TrainConfig
from geoseg.nn.data import TrainingScene, sample_batch
from geoseg.nn.fit import FitPlan, FitState, fit
from geoseg.nn.fitting import (
    SceneData,
    TrainingRun,
    TrainResult,
    batch_losses,
    evaluate_iou,
    loss_weights,
    lr_schedule,
    optimizer_factory,
    release,
    start_model,
    training_scenes,
)
from geoseg.nn.inference import predict_scene
from geoseg.nn.modelfile import NNModel, model_payload, save_nn_model
from geoseg.nn.unlabeled import UnlabeledScene, pseudo_label_scores, unlabeled_scenes

__all__ = ["class_balanced_thresholds", "curriculum_ratios", "dynamic_loss", "dynamic_weights", "pseudo_labels", "run_selftraining"]

log = logging.getLogger("geoseg.nn")

MODE = "ssl"


def curriculum_ratios(rounds: int, r_start: float, r_end: float) -> list[float]:
    """The fraction ``r`` of each self-training round: linear from ``r_start`` to ``r_end``."""
    if rounds == 1:
        return [r_end]
    return [r_end if k == rounds - 1 else r_start + (r_end - r_start) * k / (rounds - 1) for k in range(rounds)]


def class_balanced_thresholds(probs: Sequence[np.ndarray], r: float) -> np.ndarray:
    """Per-class confidence thresholds of the class-balanced curriculum.

    Parameters
    ----------
    probs : sequence of numpy.ndarray
        ``(C, rows, cols)`` class probabilities of each unlabelled scene (pooled).
    r : float
        Fraction in (0, 1] of each class's predicted pixels to keep.

    Returns
    -------
    numpy.ndarray
        ``(C,)`` thresholds: for class ``c``, the ``⌈r·n_c⌉``-th largest max-probability among
        the ``n_c`` pixels predicted as ``c``; 1.0 for a class that no pixel is predicted as.
    """
    if not 0 < r <= 1:
        raise ValueError(f"r must be in (0, 1], got {r}")
    n_classes = probs[0].shape[0]
    conf = np.concatenate([p.max(axis=0).ravel() for p in probs])
    pred = np.concatenate([p.argmax(axis=0).ravel() for p in probs])
    out = np.ones(n_classes, np.float64)
    for c in range(n_classes):
        values = conf[pred == c]
        if values.size:
            keep = min(values.size, max(1, math.ceil(r * values.size)))
            out[c] = float(np.partition(values, values.size - keep)[values.size - keep])
    return out


def pseudo_labels(prob: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Pseudo-labels of one scene: the predicted class where ``max p / k_class ≥ 1``, else :data:`IGNORE_INDEX`."""
    pred = prob.argmax(axis=0)
    conf = prob.max(axis=0)
    keep = conf >= thresholds[pred]
    return np.where(keep, pred, IGNORE_INDEX).astype(np.uint8)


def dynamic_weights(logits: Tensor, labels: Tensor, gamma: float) -> Tensor:
    """``p(label)^γ`` per pixel from ``(N, C, H, W)`` logits (no gradient; 0 where ``labels`` is ignored)."""
    with torch.no_grad():
        prob = F.softmax(logits, dim=1)
        valid = labels != IGNORE_INDEX
        p = prob.gather(1, labels.clamp(0, logits.shape[1] - 1).unsqueeze(1)).squeeze(1)
        return torch.where(valid, p.pow(gamma), torch.zeros_like(p))


def dynamic_loss(logits: Tensor, labels: Tensor, gamma: float) -> Tensor:
    """DST-CBC dynamic loss: ``Σ p(label)^γ · CE / (number of pseudo-labelled pixels)`` (0 when none)."""
    valid = labels != IGNORE_INDEX
    n = int(valid.sum())
    if n == 0:
        return logits.sum() * 0.0
    ce = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX, reduction="none")
    return (dynamic_weights(logits, labels, gamma) * ce).sum() / n


def _probabilities(model: NNModel, scenes: Sequence[UnlabeledScene], device: str) -> list[np.ndarray]:
    model.module.eval()
    return [predict_scene(model, s.image, device=device)[:2] for s in scenes]


def run_selftraining(run: TrainingRun) -> TrainResult:
    """DST-CBC training of ``run`` (``mode: ssl`` of :func:`geoseg.nn.train.train`).

    ``config.ssl`` holds the curriculum; ``epochs`` is the supervised round's length.
    ``run.unlabeled`` are the unlabelled scenes (their labels, if any, only for the report).
    A checkpoint holds the round, its model and optimizer, the model its pseudo-labels came
    from and the best model of all rounds. The returned ``history`` has one record per epoch
    (with ``round``) plus, per self-training round, the pseudo-label statistics (``pseudo_*``).
    """
    config, labelled, unlabelled, val_data, bands = run.config, run.train, run.unlabeled, run.val, run.bands
    checkpoint_path, best_path, progress = run.checkpoint_path, run.best_path, run.progress
    model, ck = start_model(run, MODE)
    run.place(model.module)
    model.training = {"config": config.model_dump(mode="json"), "scenes": [s.source for s in labelled], "unlabeled": [s.source for s in unlabelled]}
    lab = training_scenes(config, labelled, bands, np.asarray(model.band_mean), np.asarray(model.band_std))
    unl = unlabeled_scenes(model, unlabelled)
    ratios = curriculum_ratios(config.ssl.rounds, config.ssl.r_start, config.ssl.r_end)
    rounds = _Rounds(config, model, lab, unl, val_data, progress, checkpoint_path, run)
    first_round = 0
    if ck is not None:
        first_round = rounds.restore(ck)
        log.info("resuming in round %d", first_round)
    for k in range(first_round, len(ratios) + 1):
        rounds.round(k, ratios[k - 1] if k else None, state=ck.state if ck is not None and k == first_round else None)
    model.module.load_state_dict(rounds.overall_state)  # with validation: the best epoch of all rounds; else the last
    release(model.module)
    model.training.update(history=rounds.history, best_epoch=rounds.overall_epoch, best_val_iou=rounds.overall_score if val_data else None)
    if best_path is not None:
        save_nn_model(best_path, model)
    return TrainResult(model=model, history=rounds.history, best_epoch=rounds.overall_epoch, best_iou=rounds.overall_score if val_data else float("nan"))


class _Rounds:
    """The supervised round and the self-training rounds, each one :func:`~geoseg.nn.fit.fit`."""

    def __init__(
        self,
        config: TrainConfig,
        model: NNModel,
        lab: list[TrainingScene],
        unl: list[UnlabeledScene],
        val_data: Sequence[SceneData],
        progress: bool,
        checkpoint_path: str | os.PathLike[str] | None,
        run: TrainingRun,
    ) -> None:
        self.config, self.model, self.lab, self.unl, self.val = config, model, lab, unl, val_data
        self.run = run  # its device, arithmetic (forward_precision) and layout of images
        self.device, self.progress, self.checkpoint_path = run.device, progress, checkpoint_path
        self.aug = config.data.augment.augmentation()
        self.weights = loss_weights(config.loss)
        self.class_weights = torch.tensor(config.data.class_weights, dtype=torch.float32, device=run.device)
        self.history: list[dict[str, float]] = []
        self.source_state = copy.deepcopy(model.module.state_dict())  # the model that labels the round's unlabelled scenes
        self.overall_state, self.overall_score, self.overall_epoch = self.source_state, -math.inf, 0
        self.resumed: Checkpoint | None = None

    def restore(self, ck: Checkpoint) -> int:
        """Take over a checkpoint's rounds; returns the round it stopped in."""
        extra = ck.extra
        self.resumed = ck
        self.history = [dict(r) for r in extra["history"]]
        self.overall_score, self.overall_epoch = float(extra["overall_score"]), int(extra["overall_epoch"])
        for name, target in (("source", "source_state"), ("overall", "overall_state")):
            module = copy.deepcopy(self.model.module)
            ck.load_module(name, module)
            setattr(self, target, module.state_dict())
        return int(extra["round"])

    def round(self, k: int, r: float | None, state: FitState | None) -> None:
        """Round ``k`` (0: supervised), pseudo-labelling the top fraction ``r`` first; keeps the round's best as the next source."""
        cfg, module = self.config, self.model.module
        pseudo = None
        if r is not None:
            live = copy.deepcopy(module.state_dict())
            module.load_state_dict(self.source_state)
            pseudo = self._pseudo_labels(k, r, log_round=state is None)
            module.load_state_dict(live if state is not None else self.source_state)
        epochs = cfg.ssl.epochs_per_round if k else cfg.epochs
        optimizer = optimizer_factory(cfg)(module)
        if state is not None and self.resumed is not None:
            self.resumed.load_optimizer("model", optimizer)
        n_pseudo = 0 if pseudo is None else min(cfg.data.batch_size - 1, max(1, round(cfg.ssl.pseudo_fraction * cfg.data.batch_size)))
        if pseudo is not None and cfg.data.batch_size == 1:
            n_pseudo = 1  # alternate: a pseudo crop is added to the single labelled crop
        n_lab = cfg.data.batch_size - n_pseudo if cfg.data.batch_size > 1 else 1

        def step(it: int, gen: torch.Generator) -> dict[str, float]:
            with self.run.forward_precision():
                batch = sample_batch(self.lab, n_lab, cfg.data.crop_px, self.aug, gen)
                image = batch.image
                if pseudo is not None:
                    pb = sample_batch(pseudo, n_pseudo, cfg.data.crop_px, self.aug, gen)
                    image = torch.cat([image, pb.image])
                outputs = module(self.run.images(image))
                terms = batch_losses({n: v[:n_lab] for n, v in outputs.items()}, batch, cfg, self.weights, self.class_weights, self.device)
                loss, p_loss = terms["total"], torch.zeros(())
                if pseudo is not None:
                    p_loss = dynamic_loss(outputs["seg"][n_lab:], pb.labels.to(self.device), cfg.ssl.gamma)
                    loss = loss + p_loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return {"loss_total": float(loss.detach()), "loss_supervised": float(terms["total"].detach()), "loss_pseudo": float(p_loss.detach())}

        def write(fit_state: FitState) -> None:
            record = fit_state.history[-1]
            score = record["val_iou"] if self.val else record["epoch"]
            if score > self.overall_score:  # then also the round's best, whose weights fit has just copied
                assert fit_state.best_state is not None
                self.overall_score, self.overall_epoch, self.overall_state = score, int(record["epoch"]), fit_state.best_state
            if self.checkpoint_path is not None:
                extra = {"round": k, "history": self.history, "overall_score": self.overall_score, "overall_epoch": self.overall_epoch}
                modules = {"source": self.source_state, "overall": self.overall_state}
                save_checkpoint(
                    self.checkpoint_path, MODE, fit_state, model=model_payload(self.model), modules=modules, optimizers={"model": optimizer}, extra=extra
                )

        plan = FitPlan(epochs * cfg.iterations_per_epoch, cfg.iterations_per_epoch, cfg.seed, desc=f"round {k} epoch" if k else "epoch",
                       progress=self.progress, epoch_offset=cfg.epochs + (k - 1) * cfg.ssl.epochs_per_round if k else 0)  # fmt: skip
        peak = cfg.optimizer.lr * (cfg.ssl.lr_scale if pseudo is not None else 1.0)
        done = fit(
            step, plan, tracked=module, schedule=(optimizer, lr_schedule(cfg.optimizer, plan.iterations, peak)), summarize=lambda _: {"round": k},
            validate=(lambda: evaluate_iou(self.model, self.val, self.device)) if self.val else None, state=state, on_epoch_end=write, restore_best=False,
        )  # fmt: skip
        self.history.extend(done.history)
        assert done.best_state is not None
        self.source_state = done.best_state

    def _pseudo_labels(self, k: int, r: float, *, log_round: bool) -> list[TrainingScene]:
        probs = _probabilities(self.model, self.unl, self.device)
        thresholds = class_balanced_thresholds(probs, r)
        pseudo = [pseudo_labels(p, thresholds) for p in probs]
        if log_round:
            scores = pseudo_label_scores(pseudo, [s.check for s in self.unl])
            self.history.append(
                {
                    "round": k,
                    "pseudo_r": r,
                    **{f"pseudo_threshold_{c}": float(t) for c, t in enumerate(thresholds)},
                    **{f"pseudo_{n}": v for n, v in scores.items() if not math.isnan(v)},
                }
            )  # no IoU without check masks
            log.info(
                "round %d/%d: r %.2f, thresholds %s, pseudo-label coverage %.3f (road %.3f)%s",
                k, self.config.ssl.rounds, r, np.round(thresholds, 4).tolist(), scores["coverage"], scores["road_fraction"],
                "" if math.isnan(scores["iou"]) else f", pseudo-label road IoU {scores['iou']:.4f} (check masks)",
            )  # fmt: skip
        return [TrainingScene(s.image, p) for s, p in zip(self.unl, pseudo)]
