"""Training of the sequence model on generated sequences.

Losses (one pass per frame pair): CenterNet focal loss on the centre heatmap and L1 on the log
box half-size (detector); an InfoNCE contrastive loss on mask-pooled embeddings, positives =
the same object in the previous and current frame, negatives = every other object of the
batch (re-identification); BCE + Dice on the masks of object queries and BCE on their
boundaries at 1/2 and 1/4 (mask head). Queries are drawn as at inference
(:mod:`geoseg.sequence.infer`): the object's previous-frame mask moved to where the object is
now (with noise), or its box (with noise), plus negative queries whose target is empty (a box
on background, the previous mask of an object that has left the view).
"""

from __future__ import annotations

import glob
import logging
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from geoseg.configfile import load_config
from geoseg.errors import ConfigError, InputMismatchError, NotGeoreferencedWarning
from geoseg.nn.checkpoint import read_checkpoint, save_checkpoint
from geoseg.nn.fit import FitPlan, FitState, LrSchedule, fit
from geoseg.nn.fitting import torch_settings
from geoseg.sequence.model import OVSNet, build_ovsnet
from geoseg.sequence.modelfile import SequenceModel
from geoseg.sequence.synthetic import SequenceSample, make_sequence, synthetic_background
from geoseg.shipped import resolve_file

__all__ = ["SequenceTrainConfig", "background_crops", "generate_sequences", "load_sequence_train_config", "train_sequence_model"]

log = logging.getLogger("geoseg.sequence")

MODE = "sequence"


class SequenceTrainConfig(BaseModel):
    """Settings of :func:`train_sequence_model` (YAML keys; unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field("", description="What the config is for (shown by `geoseg pipelines`).")
    seed: int = 0
    frame_size: int = Field(96, ge=32, multiple_of=8, description="Frame side in pixels (multiple of 8).")
    n_frames: int = Field(8, ge=2)
    n_sequences: int = Field(12, ge=1)
    objects_min: int = Field(2, ge=1)
    objects_max: int = Field(4, ge=1)
    iterations: int = Field(300, ge=1)
    batch_size: int = Field(4, ge=1)
    max_queries: int = Field(3, ge=1)
    lr: float = Field(3e-3, gt=0)
    widths: list[int] = Field(default_factory=lambda: [12, 20, 28], min_length=3, max_length=3)
    embed_dim: int = Field(16, ge=2)
    backgrounds: list[str] = Field(default_factory=list, description="Raster files/globs for background crops; empty: synthetic scenes.")
    threads: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _object_counts(self) -> SequenceTrainConfig:
        if self.objects_max < self.objects_min:
            raise ValueError(f"objects_max ({self.objects_max}) is below objects_min ({self.objects_min})")
        return self


def load_sequence_train_config(path: str | Path | None, overrides: Sequence[str] = ()) -> SequenceTrainConfig:
    """Read a training config (``None``: defaults) with ``KEY=VALUE`` overrides (values parsed as YAML).

    Raises
    ------
    ConfigError
        Unreadable YAML, an unknown or invalid key (the message names the file and key).
    """
    path = None if path is None else resolve_file(path, "training")
    return load_config(SequenceTrainConfig, path, overrides, "training config", command="geoseg train sequence")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    lo, hi = np.percentile(array, [1, 99])
    return np.clip((array.astype(np.float64) - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)


def background_crops(paths: Sequence[str | Path], size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """Random ``(3, size, size)`` uint8 crops of real images (first three bands; one band is repeated).

    Raises
    ------
    InputMismatchError
        An image smaller than ``size``.
    """
    from geoseg.raster import read_raster

    rng = np.random.default_rng(seed)
    images = []
    for p in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)  # only pixels are used
            arr = read_raster(p).array
        arr = np.repeat(arr[:1], 3, axis=0) if arr.shape[0] < 3 else arr[:3]
        if min(arr.shape[1:]) < size:
            raise InputMismatchError(f"{p}: image {arr.shape[1:]} is smaller than the frame size {size}")
        images.append(_to_uint8(arr))
    crops = []
    for k in range(count):
        img = images[k % len(images)]
        r = rng.integers(0, img.shape[1] - size + 1)
        c = rng.integers(0, img.shape[2] - size + 1)
        crops.append(img[:, r : r + size, c : c + size].copy())
    return crops


def generate_sequences(cfg: SequenceTrainConfig, *, seed_offset: int = 0) -> list[SequenceSample]:
    """The training sequences of ``cfg`` (backgrounds from ``cfg.backgrounds`` or synthetic scenes).

    Raises
    ------
    ConfigError
        A ``backgrounds`` pattern that matches no file.
    """
    rng = np.random.default_rng(cfg.seed + seed_offset)
    s = cfg.frame_size
    if cfg.backgrounds:
        files = []
        for pattern in cfg.backgrounds:
            found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not found or not all(Path(f).exists() for f in found):
                raise ConfigError(f"backgrounds: {pattern!r} matches no file")
            files += found
        bgs = background_crops(files, s, cfg.n_sequences, seed=cfg.seed + seed_offset)
    else:
        bgs = [synthetic_background(s, s, seed=cfg.seed + seed_offset + 1000 * k) for k in range(cfg.n_sequences)]
    out = []
    for bg in bgs:
        n_obj = int(rng.integers(cfg.objects_min, cfg.objects_max + 1))
        out.append(
            make_sequence(
                bg,
                cfg.n_frames,
                n_objects=n_obj,
                seed=int(rng.integers(1 << 31)),
                leave_and_return=int(rng.integers(0, 2)),
                crossing=bool(n_obj >= 2 and rng.random() < 0.3),
            )
        )
    return out


# ---------------------------------------------------------------------------------------------
# targets and queries


def shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """``mask`` moved by (dx, dy) pixels (rounded), zero-filled at the edges."""
    dx, dy = int(round(dx)), int(round(dy))
    out = np.zeros_like(mask)
    h, w = mask.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    if abs(dx) < w and abs(dy) < h:
        out[yd, xd] = mask[ys, xs]
    return out


def box_prior(h: int, w: int, centre: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Filled box prior (float32 0/1) of a detection."""
    prior = np.zeros((h, w), np.float32)
    x0, y0 = np.floor(centre - half).astype(int)
    x1, y1 = np.ceil(centre + half).astype(int)
    prior[max(y0, 0) : max(min(y1, h), 0), max(x0, 0) : max(min(x1, w), 0)] = 1
    return prior


def mask_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) and half size of a mask's bounding box, in pixels."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2]), np.array([(x1 - x0) / 2, (y1 - y0) / 2])


def _heat_targets(inst: np.ndarray, ids: list[int], stride: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h, w = inst.shape
    gh, gw = h // stride, w // stride
    gy, gx = (np.mgrid[0:gh, 0:gw] + 0.5) * stride
    heat = np.zeros((gh, gw), np.float32)
    size = np.zeros((2, gh, gw), np.float32)
    has = np.zeros((gh, gw), bool)
    for i in ids:
        m = inst == i
        if m.sum() < 4:
            continue
        c, half = mask_box(m)
        sigma = max(0.8, 0.5 * min(half) / stride) * stride
        g = np.exp(-((gx - c[0]) ** 2 + (gy - c[1]) ** 2) / (2 * sigma**2))
        r, k = min(int(c[1] // stride), gh - 1), min(int(c[0] // stride), gw - 1)
        g[r, k] = 1.0
        heat = np.maximum(heat, g)
        size[:, r, k] = np.log(np.maximum(half, 0.5))
        has[r, k] = True
    return heat, size, has


def _focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def _boundary(mask: torch.Tensor) -> torch.Tensor:
    return (mask - (-F.max_pool2d(-mask, 3, 1, 1))).clamp(0, 1)


def _augment(rng: np.random.Generator, arrays: list[np.ndarray]) -> list[np.ndarray]:
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        out.append(np.ascontiguousarray(a[..., ::-1] if flip else a))
    return out


def _make_batch(samples: list[SequenceSample], rng: np.random.Generator, cfg: SequenceTrainConfig, mean: np.ndarray, std: np.ndarray) -> dict[str, Any]:
    b = cfg.batch_size
    imgs, insts, keys = [], [], []
    pairs = []
    for _ in range(b):
        si = int(rng.integers(len(samples)))
        s = samples[si]
        t = int(rng.integers(1, len(s.frames)))
        f0, f1, i0, i1 = _augment(rng, [s.frames[t - 1], s.frames[t], s.instances[t - 1], s.instances[t]])
        pairs.append((si, f0, f1, i0, i1, s.ids))
    for which in (0, 1):  # previous frames first, then current frames
        for si, f0, f1, i0, i1, ids in pairs:
            imgs.append(f1 if which else f0)
            insts.append(i1 if which else i0)
            keys.append((si, ids))
    x = (np.stack(imgs).astype(np.float32) - mean[:, None, None]) / std[:, None, None]
    h, w = insts[0].shape
    heat, size, has = zip(*[_heat_targets(inst, ids) for inst, (_, ids) in zip(insts, keys)])
    # embedding items: (image index, object mask, global id)
    emb_items = []
    for n, (inst, (si, ids)) in enumerate(zip(insts, keys)):
        for i in ids:
            m = inst == i
            if m.sum() >= 8:
                emb_items.append((n, m, si * 10_000 + i))
    # mask queries on the current frames
    q_index, q_prior, q_target = [], [], []
    for bi, (_si, _f0, _f1, i0, i1, ids) in enumerate(pairs):
        visible = [i for i in ids if (i1 == i).sum() >= 4]
        chosen = list(rng.permutation(visible)[: cfg.max_queries])
        for i in chosen:
            m1 = i1 == i
            m0 = i0 == i
            c1, half1 = mask_box(m1)
            if m0.sum() >= 4 and rng.random() < 0.6:
                c0, _ = mask_box(m0)
                d = c1 - c0 + rng.normal(0, 1.5, 2)
                prior = shift_mask(m0, d[0], d[1]).astype(np.float32)
            else:
                prior = box_prior(h, w, c1 + rng.normal(0, 1.5, 2), half1 * rng.uniform(0.8, 1.25, 2))
            q_index.append(b + bi)
            q_prior.append(prior)
            q_target.append(m1.astype(np.float32))
        gone = [i for i in ids if (i0 == i).sum() >= 4 and (i1 == i).sum() == 0]
        if gone:  # stale prior of an object that left: empty target
            q_index.append(b + bi)
            q_prior.append((i0 == gone[0]).astype(np.float32))
            q_target.append(np.zeros((h, w), np.float32))
        if rng.random() < 0.3:  # a box on background: empty target
            c = rng.uniform(8, [w - 8, h - 8])
            prior = box_prior(h, w, c, rng.uniform(3, 9, 2))
            if not (prior.astype(bool) & (i1 > 0)).any():
                q_index.append(b + bi)
                q_prior.append(prior)
                q_target.append(np.zeros((h, w), np.float32))
    return {
        "x": torch.from_numpy(x),
        "heat": torch.from_numpy(np.stack(heat))[:, None],
        "size": torch.from_numpy(np.stack(size)),
        "has": torch.from_numpy(np.stack(has)),
        "emb_items": emb_items,
        "q_index": torch.tensor(q_index, dtype=torch.long),
        "q_prior": torch.from_numpy(np.stack(q_prior))[:, None] if q_prior else None,
        "q_target": torch.from_numpy(np.stack(q_target))[:, None] if q_target else None,
    }


def _losses(net: OVSNet, batch: dict[str, Any], temperature: float = 0.1) -> dict[str, torch.Tensor]:
    feats = net.features(batch["x"])
    out = {"heat": _focal(feats["heat"], batch["heat"])}
    has = batch["has"]
    out["size"] = F.l1_loss(feats["size"].permute(0, 2, 3, 1)[has], batch["size"].permute(0, 2, 3, 1)[has]) if has.any() else feats["size"].sum() * 0
    items = batch["emb_items"]
    if len(items) >= 2:
        emb = feats["embed"]
        pooled, labels = [], []
        for n, m, gid in items:
            w = F.adaptive_avg_pool2d(torch.from_numpy(m.astype(np.float32))[None, None], (emb.shape[-2], emb.shape[-1]))[0, 0]
            pooled.append((emb[n] * w).sum((1, 2)) / w.sum().clamp(min=1e-6))
            labels.append(gid)
        e = F.normalize(torch.stack(pooled), dim=1)
        lab = torch.tensor(labels)
        sim = e @ e.T / temperature
        eye = torch.eye(len(lab), dtype=torch.bool)
        sim = sim.masked_fill(eye, -1e9)
        pos = (lab[:, None] == lab[None, :]) & ~eye
        anchor = pos.any(1)
        if anchor.any():
            logp = sim - torch.logsumexp(sim, dim=1, keepdim=True)
            out["embed"] = -(logp.masked_fill(~pos, 0).sum(1)[anchor] / pos.sum(1)[anchor])
            out["embed"] = out["embed"].mean()
    if batch["q_prior"] is not None:
        logits, b1, b2 = net.masks(feats, batch["q_index"], batch["q_prior"])
        target = batch["q_target"]
        p = torch.sigmoid(logits)
        dice = 1 - (2 * (p * target).sum((1, 2, 3)) + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
        out["mask"] = F.binary_cross_entropy_with_logits(logits, target) + dice.mean()
        boundary = []
        for bmap in (b1, b2):
            t = _boundary((F.adaptive_avg_pool2d(target, (bmap.shape[-2], bmap.shape[-1])) > 0.5).float())
            boundary.append(F.binary_cross_entropy_with_logits(bmap, t, pos_weight=torch.tensor(4.0)))
        out["boundary"] = 0.5 * (boundary[0] + boundary[1])
    return out


def train_sequence_model(
    cfg: SequenceTrainConfig,
    samples: list[SequenceSample] | None = None,
    *,
    progress: bool = False,
    checkpoint_path: str | os.PathLike[str] | None = None,
    resume: str | os.PathLike[str] | None = None,
) -> SequenceModel:
    """Train an :class:`~geoseg.sequence.model.OVSNet` on generated sequences.

    The iterations run through :func:`geoseg.nn.fit.fit` in 10 epochs (one log line each), with
    AdamW under a one-cycle schedule.

    Parameters
    ----------
    cfg : SequenceTrainConfig
        Settings.
    samples : list of SequenceSample, optional
        Training sequences; generated from ``cfg`` when omitted.
    progress : bool
        Show a progress bar on stderr.
    checkpoint_path : path-like, optional
        Checkpoint written after every epoch (network, optimizer, the batch generator's state).
    resume : path-like, optional
        A checkpoint of the same config to continue from; the result equals the uninterrupted run's.

    Returns
    -------
    SequenceModel
        The trained model (save it with :func:`geoseg.sequence.modelfile.save_sequence_model`).
    """
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    samples = samples if samples is not None else generate_sequences(cfg)
    frames = np.concatenate([s.frames for s in samples]).astype(np.float64)
    mean = frames.mean(axis=(0, 2, 3)).astype(np.float32)
    std = np.maximum(frames.std(axis=(0, 2, 3)), 1.0).astype(np.float32)
    hyper = {"in_channels": 3, "widths": list(cfg.widths), "embed_dim": cfg.embed_dim}
    net = build_ovsnet(**hyper)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    state = None
    if resume is not None:
        ck = read_checkpoint(resume, MODE)
        ck.load_module("net", net)
        ck.load_optimizer("net", opt)
        rng.bit_generator.state = ck.extra["rng"]
        state = ck.state
        log.info("resuming from %s after epoch %d", resume, state.epoch)

    def step(it: int, gen: torch.Generator) -> dict[str, float]:
        losses = _losses(net, _make_batch(samples, rng, cfg, mean, std))
        total = losses["heat"] + 0.2 * losses["size"] + losses.get("embed", 0) + losses.get("mask", 0) + losses.get("boundary", 0)
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        return {k: float(v.detach()) for k, v in losses.items()}

    def write(fit_state: FitState) -> None:
        if checkpoint_path is not None:
            save_checkpoint(checkpoint_path, MODE, fit_state, modules={"net": net}, optimizers={"net": opt}, extra={"rng": rng.bit_generator.state})

    plan = FitPlan(cfg.iterations, max(1, cfg.iterations // 10), cfg.seed, desc="sequence training", progress=progress)
    with torch_settings(cfg.threads, deterministic=False):
        schedule = LrSchedule(cfg.lr, total=cfg.iterations, kind="one_cycle")
        history = fit(step, plan, tracked=net, schedule=(opt, schedule), state=state, on_epoch_end=write).history
    net.eval()
    final = {k: v for k, v in history[-1].items() if k not in ("epoch", "seconds")}
    training = {"config": cfg.model_dump(), "final_losses": final, "seconds": round(time.perf_counter() - start, 1),
                "sequences": len(samples), "frames": int(len(frames))}  # fmt: skip
    log.info("trained sequence model in %.1f s, final losses %s", training["seconds"], final)
    return SequenceModel(net, hyper, mean.tolist(), std.tolist(), training)
