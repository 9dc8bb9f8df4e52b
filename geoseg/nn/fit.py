"""The one training loop of geoseg: :func:`fit`.

Every training mode (supervised, mean-teacher domain adaptation, self-training rounds,
quantization-aware fine-tuning, bit-width search, architecture search and its retraining,
sequence models) runs its iterations through :func:`fit` and supplies only its **batch step**
(one optimisation step, returning the numbers to report) and, optionally, a **validation**
score. :func:`fit` owns everything else:

- seeding: before epoch ``e`` the global torch RNG and the batch generator handed to the step
  are seeded from ``(seed, e)``, so an epoch draws the same crops whether the run was resumed or
  not;
- the learning-rate schedule (:class:`LrSchedule`, computed from the global iteration, so a
  resumed run needs no scheduler state);
- the progress bar, one log line per epoch and the per-epoch history;
- keeping the best weights (validation score, else the latest epoch) and restoring them at the
  end;
- checkpoints: ``on_epoch_end`` is called after every epoch with the :class:`FitState`, which,
  saved with the modules and optimizers (:mod:`geoseg.nn.checkpoint`) and handed back as
  ``state``, continues the run exactly where it stopped.

The threads and determinism settings a training runs under are
:func:`geoseg.nn.fitting.torch_settings`. Under ``threads: auto`` (:data:`ADAPTIVE_THREADS`)
:func:`fit` also tunes torch's thread count while it runs: it times a few steps at the
current count and at a neighbouring one and keeps the faster, in the first epoch, when steps
slow down, and now and then while below the starting count (:class:`_ThreadTuner`). Another
process holding a core makes the parallel regions wait for the thread that shares it: on 2
cores a step of the shipped road_decouple took 0.37-0.47 s with 2 threads and 0.19 s with 1.

Examples
--------
>>> import torch
>>> net = torch.nn.Linear(1, 1)
>>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
>>> def step(it, gen):
...     x = torch.rand(8, 1, generator=gen)
...     loss = ((net(x) - 2 * x) ** 2).mean()
...     opt.zero_grad(); loss.backward(); opt.step()
...     return {"loss_total": float(loss.detach())}
>>> state = fit(step, FitPlan(iterations=40, epoch_iterations=20, progress=False), tracked=net,
...             schedule=(opt, LrSchedule(0.1, total=40, kind="cosine")))
>>> [r["epoch"] for r in state.history], state.best_epoch
([1, 2], 2)
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from tqdm import tqdm

__all__ = ["ADAPTIVE_THREADS", "SEED_STRIDE", "BatchStep", "FitPlan", "FitState", "LrSchedule", "epoch_seed", "fit"]

log = logging.getLogger("geoseg.nn")

#: Seeds of epoch ``e`` are ``seed * SEED_STRIDE + e`` (plus the plan's offsets).
SEED_STRIDE = 100_003

#: Whether :func:`fit` tunes torch's thread count as it runs (set by ``torch_settings("auto")``).
ADAPTIVE_THREADS: ContextVar[bool] = ContextVar("geoseg_adaptive_threads", default=False)

#: One optimisation step: ``step(iteration, generator) -> numbers to report`` (averaged per epoch).
BatchStep = Callable[[int, torch.Generator], Mapping[str, float]]

ScheduleKind = Literal["poly", "cosine", "constant", "one_cycle"]


@dataclass(frozen=True)
class LrSchedule:
    """Learning rate of every iteration: linear warm-up, then ``poly``, ``cosine`` or ``constant``;
    or ``one_cycle`` (torch's ``OneCycleLR`` defaults: cosine from ``peak/25`` up to ``peak`` over
    the first 15 %, then down to ``peak/25e4``, with Adam's beta1 cycled 0.95 → 0.85 → 0.95).

    Examples
    --------
    >>> s = LrSchedule(0.01, total=100, warmup=10, kind="poly")
    >>> round(s.rate(4), 4), round(s.rate(10), 4), round(s.rate(99), 6)
    (0.005, 0.01, 0.000174)
    """

    peak: float
    total: int
    warmup: int = 0
    kind: ScheduleKind = "constant"

    def factor(self, it: int) -> float:
        """Multiplier of :attr:`peak` at iteration ``it``."""
        if self.kind == "one_cycle":
            return self._one_cycle(it)[0]
        if it < self.warmup:
            return (it + 1) / self.warmup
        progress = (it - self.warmup) / max(self.total - self.warmup, 1)
        if self.kind == "poly":
            return float((1.0 - progress) ** 0.9)
        if self.kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return 1.0

    def rate(self, it: int) -> float:
        """The learning rate at iteration ``it``."""
        return self.peak * self.factor(it)

    def apply(self, optimizer: torch.optim.Optimizer, it: int) -> None:
        """Set every parameter group of ``optimizer`` to the rate (and, for one-cycle, the beta1) of iteration ``it``."""
        rate = self.rate(it)
        beta1 = self._one_cycle(it)[1] if self.kind == "one_cycle" else None
        for group in optimizer.param_groups:
            group["lr"] = rate
            if beta1 is not None and "betas" in group:
                group["betas"] = (beta1, group["betas"][1])

    def _one_cycle(self, it: int) -> tuple[float, float]:
        up_end = 0.15 * self.total - 1.0
        start, low = 1.0 / 25.0, 1.0 / 25.0 / 1e4
        if it <= up_end:
            pct = it / up_end if up_end > 0 else 1.0
            return _cos_between(start, 1.0, pct), _cos_between(0.95, 0.85, pct)
        pct = (it - up_end) / max(self.total - 1.0 - up_end, 1e-12)
        return _cos_between(1.0, low, pct), _cos_between(0.85, 0.95, pct)


def _cos_between(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * min(max(pct, 0.0), 1.0)) + 1.0)


@dataclass(frozen=True)
class FitPlan:
    """How long a fit runs and how it is seeded and shown.

    Attributes
    ----------
    iterations : int
        Optimisation steps in all.
    epoch_iterations : int
        Steps per epoch (validation, history record, checkpoint); the last epoch may be shorter.
    seed : int
        Base seed.
    desc : str
        Progress-bar and log label.
    progress : bool
        Show a progress bar on stderr.
    epoch_offset : int
        Added to the epoch number in seeds and records (a self-training round continues the
        epoch count of the rounds before it).
    generator_offset : int
        Added to the batch generator's seed only.
    """

    iterations: int
    epoch_iterations: int
    seed: int = 0
    desc: str = "epoch"
    progress: bool = True
    epoch_offset: int = 0
    generator_offset: int = 0

    @property
    def epochs(self) -> int:
        """Number of epochs."""
        return math.ceil(self.iterations / max(self.epoch_iterations, 1))


@dataclass
class FitState:
    """Where a fit stands: epochs done, the best score and its weights, the history.

    Attributes
    ----------
    epoch : int
        Epochs completed.
    best_score : float
        Best validation score so far (without validation: the latest epoch number).
    best_epoch : int
        Epoch (1-based, offset included) of the best score; 0 before the first.
    history : list of dict
        One record per epoch: ``epoch``, ``seconds``, the step's numbers averaged, ``val_iou``.
    best_state : dict, optional
        The tracked module's weights at the best epoch.
    """

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_state: dict[str, torch.Tensor] | None = None

    @property
    def improved(self) -> bool:
        """Whether the latest epoch is the best so far."""
        return bool(self.history) and self.best_epoch == self.history[-1]["epoch"]

    def to_json(self) -> dict[str, Any]:
        """Everything but the weights, JSON-serialisable (no best score yet: None)."""
        best = self.best_score if math.isfinite(self.best_score) else None
        return {"epoch": self.epoch, "best_score": best, "best_epoch": self.best_epoch, "history": self.history}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], best_state: dict[str, torch.Tensor] | None = None) -> FitState:
        """The state :meth:`to_json` wrote (with the best weights read separately)."""
        best = -math.inf if data["best_score"] is None else float(data["best_score"])
        return cls(int(data["epoch"]), best, int(data["best_epoch"]), [dict(r) for r in data["history"]], best_state)


def epoch_seed(plan: FitPlan, epoch: int) -> int:
    """Seed of the global torch RNG before ``epoch`` (0-based, without the plan's offset)."""
    return plan.seed * SEED_STRIDE + plan.epoch_offset + epoch


class _ThreadTuner:
    """Tune torch's thread count between 1 and the count the fit started with.

    Every epoch's first :attr:`PROBE` steps run at the current count. In the first epoch, when
    they took :attr:`RISE` times longer than the last time at that count (another process took
    a core), or every :attr:`RECHECK` epochs while below the starting count (to come back when
    the core is free again), the next :attr:`PROBE` steps run at one thread fewer (first epoch,
    rise) or one more (recheck), and the faster count is kept; a neighbour must be
    :attr:`MARGIN` faster to be taken, so that timing noise does not move the count. Probing
    is rare because a change of count costs oneDNN a new set of kernels (about a second).
    """

    PROBE = 3
    MARGIN = 0.9
    RISE = 1.3
    RECHECK = 5

    def __init__(self, most: int) -> None:
        self.most = self.current = self.other = most
        self.epoch = -1
        self.reference: dict[int, float] = {}
        self.times: dict[int, list[float]] = {}

    def before(self, index: int) -> None:
        """Set the thread count for the epoch's step ``index``."""
        if index == 0:
            self.epoch += 1
            self.times, self.other = {}, self.current
        count = self.other if self.PROBE <= index < 2 * self.PROBE else self.current
        if torch.get_num_threads() != count:
            torch.set_num_threads(count)

    def after(self, index: int, seconds: float) -> None:
        """Record step ``index``'s time; choose the count to probe, then the faster one."""
        if index >= 2 * self.PROBE:
            return
        self.times.setdefault(torch.get_num_threads(), []).append(seconds)
        if index == self.PROBE - 1:
            mine = statistics.median(self.times[self.current])
            risen = mine > self.RISE * self.reference.get(self.current, math.inf)
            if (self.epoch == 0 or risen) and self.current > 1:
                self.other = self.current - 1
            elif self.current < self.most and self.epoch % self.RECHECK == 0:
                self.other = self.current + 1
            self.reference[self.current] = mine
        elif index == 2 * self.PROBE - 1 and self.other != self.current:
            mine, theirs = self.reference[self.current], statistics.median(self.times[self.other])
            self.reference[self.other] = theirs
            if theirs < self.MARGIN * mine:
                log.info("threads: %d -> %d (a step took %.2f s with %d, %.2f s with %d)", self.current, self.other, mine, self.current, theirs, self.other)
                self.current = self.other


def fit(
    step: BatchStep,
    plan: FitPlan,
    *,
    tracked: nn.Module,
    trained: nn.Module | None = None,
    schedule: tuple[torch.optim.Optimizer, LrSchedule] | None = None,
    validate: Callable[[], float] | None = None,
    summarize: Callable[[int], Mapping[str, float]] | None = None,
    state: FitState | None = None,
    on_epoch_end: Callable[[FitState], None] | None = None,
    restore_best: bool = True,
) -> FitState:
    """Run ``plan.iterations`` steps of ``step`` in epochs, keeping the best weights of ``tracked``.

    Parameters
    ----------
    step : BatchStep
        One optimisation step: ``step(iteration, generator)`` returns the numbers to report
        (``loss_total`` first, by convention); each is averaged per epoch over the steps that
        returned it, into the history.
    plan : FitPlan
        Length, seeding and display.
    tracked : torch.nn.Module
        The module whose weights are scored, kept at the best epoch and restored at the end.
    trained : torch.nn.Module, optional
        The module put in training mode each epoch (default ``tracked``; a mean teacher trains
        its student and tracks its teacher).
    schedule : (Optimizer, LrSchedule), optional
        Learning rate set on that optimizer before every step.
    validate : callable, optional
        ``validate() -> score`` after each epoch (higher is better, recorded as ``val_iou``);
        without it the latest epoch is the best.
    summarize : callable, optional
        ``summarize(iteration_count) -> numbers`` added to each epoch's record (statistics the
        step gathered over the epoch).
    state : FitState, optional
        A checkpoint's state to continue from (its epochs are skipped).
    on_epoch_end : callable, optional
        Called with the state after every epoch (to write the best model and a checkpoint).
    restore_best : bool
        Load the best weights into ``tracked`` at the end.

    Returns
    -------
    FitState
    """
    state = state or FitState()
    trained = trained or tracked
    tuner = _ThreadTuner(torch.get_num_threads()) if ADAPTIVE_THREADS.get() and torch.get_num_threads() > 1 else None
    if state.best_state is None:
        state.best_state = copy.deepcopy(tracked.state_dict())
    for epoch in range(state.epoch, plan.epochs):
        seed = epoch_seed(plan, epoch)
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed + plan.generator_offset)
        first = epoch * plan.epoch_iterations
        steps = range(first, min(first + plan.epoch_iterations, plan.iterations))
        trained.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        number = plan.epoch_offset + epoch + 1
        bar = tqdm(steps, desc=f"{plan.desc} {epoch + 1}/{plan.epochs}", leave=False, disable=not plan.progress or None)
        tuning = tuner if tuner is not None and len(steps) >= 4 * tuner.PROBE else None  # an epoch long enough to probe in
        for index, it in enumerate(bar):
            if schedule is not None:
                schedule[1].apply(schedule[0], it)
            if tuning is not None:
                tuning.before(index)
            t_step = time.perf_counter()
            numbers = step(it, gen)
            if tuning is not None:
                tuning.after(index, time.perf_counter() - t_step)
            for key, value in numbers.items():
                sums[key] = sums.get(key, 0.0) + float(value)
                counts[key] = counts.get(key, 0) + 1
            if sums:
                key = next(iter(sums))
                bar.set_postfix({key: f"{sums[key] / counts[key]:.3f}"})
        bar.close()
        record: dict[str, float] = {"epoch": number, "seconds": time.perf_counter() - t0, **{k: v / counts[k] for k, v in sums.items()}}
        if summarize is not None:
            record.update(summarize(len(steps)))
        if validate is not None:
            record["val_iou"] = validate()
            trained.train()
        score = record.get("val_iou", float(number))
        if score > state.best_score:
            state.best_score, state.best_epoch, state.best_state = score, number, copy.deepcopy(tracked.state_dict())
        state.epoch = epoch + 1
        state.history.append(record)
        _log_epoch(plan, epoch, record, best=state.improved and validate is not None)
        if on_epoch_end is not None:
            on_epoch_end(state)
    if restore_best:
        tracked.load_state_dict(state.best_state)
    return state


def _log_epoch(plan: FitPlan, epoch: int, record: Mapping[str, float], *, best: bool) -> None:
    numbers = ", ".join(f"{k.removeprefix('loss_')} {v:.4f}" for k, v in record.items() if k not in ("epoch", "seconds", "round"))
    log.info("%s %d/%d: %s (%.1f s)%s", plan.desc, epoch + 1, plan.epochs, numbers, record["seconds"], " *best*" if best else "")
