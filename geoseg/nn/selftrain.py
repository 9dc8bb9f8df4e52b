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
import time
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm import tqdm

from geoseg.nn.config import TrainConfig
from geoseg.nn.data import TrainingScene, sample_batch
from geoseg.nn.fitting import SceneData, TrainResult, batch_losses, evaluate_iou, loss_weights, new_model, optimizer_factory, set_learning_rate, training_scenes
from geoseg.nn.inference import predict_scene
from geoseg.nn.losses import IGNORE_INDEX
from geoseg.nn.modelfile import NNModel, save_nn_model
from geoseg.nn.unlabeled import UnlabeledScene, pseudo_label_scores, unlabeled_scenes

__all__ = ["class_balanced_thresholds", "curriculum_ratios", "dynamic_loss", "dynamic_weights", "pseudo_labels", "run_selftraining"]

log = logging.getLogger("geoseg.nn")


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


def run_selftraining(
    config: TrainConfig,
    labelled: Sequence[SceneData],
    unlabelled: Sequence[SceneData],
    val_data: Sequence[SceneData],
    bands: list[int],
    device: str,
    best_path: str | os.PathLike[str] | None,
    progress: bool,
) -> TrainResult:
    """DST-CBC training (called by :func:`geoseg.nn.train.train` for ``mode: ssl``).

    Parameters
    ----------
    config : TrainConfig
        ``config.ssl`` holds the curriculum; ``epochs`` is the supervised round's length.
    labelled : sequence of SceneData
        Labelled scenes.
    unlabelled : sequence of SceneData
        Unlabelled scenes (their labels, if any, are used only for the report).
    val_data : sequence of SceneData
        Validation scenes for model selection, may be empty.
    bands : list of int
        Bands read.
    device : str
        Torch device.
    best_path : path-like or None
        Where the final model is written.
    progress : bool
        Show a progress bar.

    Returns
    -------
    TrainResult
        ``history`` has one record per epoch (with ``round``) plus, per self-training round,
        the pseudo-label statistics (keys ``pseudo_*``).
    """
    model = new_model(config, labelled, bands)
    model.module.to(device)
    lab = training_scenes(config, labelled, bands, np.asarray(model.band_mean), np.asarray(model.band_std))
    unl = unlabeled_scenes(model, unlabelled)
    history: list[dict[str, float]] = []
    state = _Fit(config, model, lab, val_data, device, progress, history)
    state.fit(round_=0, epochs=config.epochs, pseudo=None)
    ratios = curriculum_ratios(config.ssl.rounds, config.ssl.r_start, config.ssl.r_end)
    for k, r in enumerate(ratios, start=1):
        model.module.load_state_dict(state.best_state)
        probs = _probabilities(model, unl, device)
        thresholds = class_balanced_thresholds(probs, r)
        pseudo = [pseudo_labels(p, thresholds) for p in probs]
        scores = pseudo_label_scores(pseudo, [s.check for s in unl])
        history.append(
            {
                "round": k,
                "pseudo_r": r,
                **{f"pseudo_threshold_{c}": float(t) for c, t in enumerate(thresholds)},
                **{f"pseudo_{n}": v for n, v in scores.items() if not math.isnan(v)},
            }
        )  # no IoU without check masks
        log.info(
            "round %d/%d: r %.2f, thresholds %s, pseudo-label coverage %.3f (road %.3f)%s",
            k, len(ratios), r, np.round(thresholds, 4).tolist(), scores["coverage"], scores["road_fraction"],
            "" if math.isnan(scores["iou"]) else f", pseudo-label road IoU {scores['iou']:.4f} (check masks)",
        )  # fmt: skip
        state.fit(round_=k, epochs=config.ssl.epochs_per_round, pseudo=[TrainingScene(s.image, p) for s, p in zip(unl, pseudo)])
    model.module.load_state_dict(state.overall_state)  # with validation: the best epoch of all rounds; else the last
    model.module.to("cpu").eval()
    model.training = {
        "config": config.model_dump(mode="json"), "scenes": [s.source for s in labelled], "unlabeled": [s.source for s in unlabelled],
        "history": history, "best_epoch": state.best_epoch, "best_val_iou": state.best_iou if val_data else None,
    }  # fmt: skip
    if best_path is not None:
        save_nn_model(best_path, model)
    return TrainResult(model=model, history=history, best_epoch=state.best_epoch, best_iou=state.best_iou if val_data else float("nan"))


class _Fit:
    """Epoch loop shared by the supervised round and the self-training rounds."""

    def __init__(
        self,
        config: TrainConfig,
        model: NNModel,
        lab: list[TrainingScene],
        val_data: Sequence[SceneData],
        device: str,
        progress: bool,
        history: list[dict[str, float]],
    ) -> None:
        self.config, self.model, self.lab, self.val, self.device, self.progress, self.history = config, model, lab, val_data, device, progress, history
        self.aug = config.data.augment.augmentation()
        self.weights = loss_weights(config)
        self.class_weights = torch.tensor(config.data.class_weights, dtype=torch.float32, device=device)
        self.best_state = copy.deepcopy(model.module.state_dict())
        self.overall_state = self.best_state
        self.best_iou, self.best_epoch, self.epoch = -1.0, 0, 0

    def fit(self, round_: int, epochs: int, pseudo: list[TrainingScene] | None) -> None:
        """Train ``epochs`` epochs with a fresh optimiser; keep the round's best (val IoU, else last) as ``best_state``."""
        cfg, module = self.config, self.model.module
        optimizer = optimizer_factory(cfg)(module)
        total_its = epochs * cfg.iterations_per_epoch
        n_pseudo = 0 if pseudo is None else min(cfg.data.batch_size - 1, max(1, round(cfg.ssl.pseudo_fraction * cfg.data.batch_size)))
        if pseudo is not None and cfg.data.batch_size == 1:
            n_pseudo = 1  # alternate: a pseudo crop is added to the single labelled crop
        round_best, round_state = -1.0, None
        peak_lr = cfg.optimizer.lr * (cfg.ssl.lr_scale if pseudo is not None else 1.0)
        for e in range(epochs):
            self.epoch += 1
            seed = cfg.seed * 100_003 + self.epoch - 1
            torch.manual_seed(seed)
            gen = torch.Generator().manual_seed(seed)
            module.train()
            t0 = time.perf_counter()
            sums = {"total": 0.0, "supervised": 0.0, "pseudo": 0.0}
            desc = f"round {round_} epoch {e + 1}/{epochs}" if pseudo is not None else f"epoch {e + 1}/{epochs}"
            bar = tqdm(range(cfg.iterations_per_epoch), desc=desc, leave=False, disable=not self.progress or None)
            for i in bar:
                it = e * cfg.iterations_per_epoch + i
                set_learning_rate(optimizer, peak_lr, it, total_its, cfg)
                n_lab = cfg.data.batch_size - n_pseudo if cfg.data.batch_size > 1 else 1
                batch = sample_batch(self.lab, n_lab, cfg.data.crop_px, self.aug, gen)
                image = batch.image
                if pseudo is not None:
                    pb = sample_batch(pseudo, n_pseudo, cfg.data.crop_px, self.aug, gen)
                    image = torch.cat([image, pb.image])
                outputs = module(image.to(self.device))
                lab_out = {k: v[:n_lab] for k, v in outputs.items()}
                terms = batch_losses(lab_out, batch, cfg, self.weights, self.class_weights, self.device)
                loss = terms["total"]
                if pseudo is not None:
                    p_loss = dynamic_loss(outputs["seg"][n_lab:], pb.labels.to(self.device), cfg.ssl.gamma)
                    loss = loss + p_loss
                    sums["pseudo"] += float(p_loss.detach())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                sums["total"] += float(loss.detach())
                sums["supervised"] += float(terms["total"].detach())
                bar.set_postfix(loss=f"{sums['total'] / (i + 1):.3f}")
            bar.close()
            n = cfg.iterations_per_epoch
            record: dict[str, float] = {
                "round": round_,
                "epoch": self.epoch,
                "seconds": time.perf_counter() - t0,
                **{f"loss_{k}": v / n for k, v in sums.items()},
            }
            if self.val:
                record["val_iou"] = evaluate_iou(self.model, self.val, self.device)
            score = record.get("val_iou", float(self.epoch))
            improved = score > round_best
            if improved:
                round_best, round_state = score, copy.deepcopy(module.state_dict())
                if score > self.best_iou:
                    self.best_iou, self.best_epoch, self.overall_state = score, self.epoch, round_state
            self.history.append(record)
            log.info(
                "round %d epoch %d/%d: loss %.4f (supervised %.4f%s)%s (%.1f s)%s", round_, e + 1, epochs, record["loss_total"], record["loss_supervised"],
                f", pseudo {record['loss_pseudo']:.4f}" if pseudo is not None else "",
                f", val road IoU {record['val_iou']:.4f}" if "val_iou" in record else "",
                record["seconds"],
                " *best of round*" if improved and self.val else "",
            )  # fmt: skip
        assert round_state is not None
        self.best_state = round_state
