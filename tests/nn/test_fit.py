"""The one training loop (geoseg.nn.fit) and the checkpoints of every mode (geoseg.nn.checkpoint)."""

from __future__ import annotations

import copy
import math
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from geoseg.errors import ModelFileError
from geoseg.modelfile import save_model
from geoseg.nn.checkpoint import read_checkpoint, save_checkpoint
from geoseg.nn.fit import FitPlan, FitState, LrSchedule, fit


@pytest.mark.parametrize("total", [300, 7, 2])
def test_one_cycle_equals_torch_one_cycle_lr_and_momentum(total: int) -> None:
    net, mine = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    opt, opt_mine = torch.optim.AdamW(net.parameters(), lr=3e-3), torch.optim.AdamW(mine.parameters(), lr=3e-3)
    reference = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=total, pct_start=0.15)
    schedule = LrSchedule(3e-3, total=total, kind="one_cycle")
    for it in range(total):
        schedule.apply(opt_mine, it)
        assert opt_mine.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"], rel=1e-12, abs=1e-18)
        assert opt_mine.param_groups[0]["betas"][0] == pytest.approx(opt.param_groups[0]["betas"][0], abs=1e-12)
        opt.step()
        if it < total - 1:
            reference.step()


def test_schedules_by_hand() -> None:
    poly = LrSchedule(1.0, total=110, warmup=10, kind="poly")
    assert [poly.rate(i) for i in (0, 9, 10)] == [0.1, 1.0, 1.0]
    assert poly.rate(60) == pytest.approx(0.5**0.9)
    cosine = LrSchedule(2.0, total=100, kind="cosine")
    assert cosine.rate(0) == 2.0 and cosine.rate(50) == pytest.approx(1.0) and cosine.rate(100) == pytest.approx(0.0)
    assert LrSchedule(0.3, total=5, warmup=2).rate(4) == 0.3


def _regression() -> tuple[torch.nn.Linear, torch.optim.Optimizer, Callable[[int, torch.Generator], dict[str, float]]]:
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.AdamW(net.parameters(), lr=0.05)

    def step(it: int, gen: torch.Generator) -> dict[str, float]:
        x = torch.rand(16, 3, generator=gen)
        loss = ((net(x)[:, 0] - x @ torch.tensor([1.0, -2.0, 0.5])) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        out = {"loss_total": float(loss.detach())}
        if it % 2 == 0:
            out["even"] = float(it)
        return out

    return net, opt, step


def test_epochs_records_and_averages() -> None:
    net, opt, step = _regression()
    state = fit(step, FitPlan(iterations=5, epoch_iterations=2, progress=False), tracked=net, schedule=(opt, LrSchedule(0.05, total=5)))
    assert [r["epoch"] for r in state.history] == [1, 2, 3] and state.epoch == 3
    # "even" is averaged over the steps that reported it: iterations 0 | 2 | 4
    assert [r["even"] for r in state.history] == [0.0, 2.0, 4.0]
    assert state.history[0]["loss_total"] > state.history[-1]["loss_total"]
    assert state.best_epoch == 3  # without validation the latest epoch is the best


def test_validation_keeps_and_restores_the_best_epoch() -> None:
    net, opt, step = _regression()
    scores = iter([0.2, 0.5, 0.3])
    after: list[dict[str, torch.Tensor]] = []
    state = fit(step, FitPlan(6, 2, progress=False), tracked=net, validate=lambda: next(scores),
                on_epoch_end=lambda s: after.append(copy.deepcopy(net.state_dict())), restore_best=True)  # fmt: skip
    assert state.best_epoch == 2 and state.best_score == 0.5 and [r["val_iou"] for r in state.history] == [0.2, 0.5, 0.3]
    for name, value in net.state_dict().items():
        torch.testing.assert_close(value, after[1][name], rtol=0, atol=0)
        assert not torch.equal(value, after[2][name])


def test_a_resumed_fit_ends_as_the_uninterrupted_one(tmp_path: Path) -> None:
    net, opt, step = _regression()
    plan = FitPlan(12, 4, seed=3, progress=False)
    saved: dict[int, Path] = {}

    def write(state: FitState) -> None:
        saved[state.epoch] = save_checkpoint(tmp_path / f"e{state.epoch}.npz", "demo", state, modules={"net": net}, optimizers={"net": opt})

    full = fit(step, plan, tracked=net, schedule=(opt, LrSchedule(0.05, total=12, kind="cosine")), on_epoch_end=write)
    expected = copy.deepcopy(net.state_dict())

    with zipfile.ZipFile(saved[1]) as z:  # rewritten every epoch: stored, not deflated
        assert {i.compress_type for i in z.infolist()} == {zipfile.ZIP_STORED}
    net2, opt2, step2 = _regression()
    ck = read_checkpoint(saved[1], "demo")
    ck.load_module("net", net2)
    ck.load_optimizer("net", opt2)
    resumed = fit(step2, plan, tracked=net2, schedule=(opt2, LrSchedule(0.05, total=12, kind="cosine")), state=ck.state)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert [r["loss_total"] for r in resumed.history] == [r["loss_total"] for r in full.history]
    for name, value in net2.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0)


def test_checkpoint_errors_name_the_file_and_the_problem(tmp_path: Path) -> None:
    net = torch.nn.Linear(2, 1)
    path = save_checkpoint(tmp_path / "c.npz", "uda", FitState(epoch=1, best_score=0.4, best_epoch=1, history=[{"epoch": 1}]), modules={"net": net})
    with pytest.raises(ModelFileError, match=r"c\.npz: a checkpoint of training mode 'uda', this run is 'ssl'"):
        read_checkpoint(path, "ssl")
    with pytest.raises(ModelFileError, match=r"c\.npz: weight weight has shape \(1, 2\), this run's net needs \(1, 3\)"):
        read_checkpoint(path, "uda").load_module("net", torch.nn.Linear(3, 1))
    with pytest.raises(ModelFileError, match=r"holds no state of the optimizer 'net'"):
        read_checkpoint(path, "uda").load_optimizer("net", torch.optim.SGD(net.parameters(), lr=0.1))
    model = save_model(tmp_path / "m.npz", {"w": np.zeros(2)}, {"kind": "nn"})
    with pytest.raises(ModelFileError, match=r"m\.npz: not a training checkpoint .*not the final model"):
        read_checkpoint(model, "uda")
    state = read_checkpoint(path, "uda").state
    assert (state.epoch, state.best_score, state.best_epoch, state.history) == (1, 0.4, 1, [{"epoch": 1}]) and math.isfinite(state.best_score)


def _timed_fit(seconds_by_threads: dict[int, float], threads: int | str, epochs: int = 2, busy_from: int | None = None) -> tuple[list[int], list[str]]:
    """Fit a step that takes ``seconds_by_threads[torch threads]`` (8 times as long with 2 threads
    from step ``busy_from`` on); the thread count of every step and the log."""
    import logging
    import time

    from geoseg.nn.fitting import torch_settings

    net = torch.nn.Linear(1, 1)
    counts: list[int] = []

    def step(it: int, gen: torch.Generator) -> dict[str, float]:
        counts.append(torch.get_num_threads())
        busy = busy_from is not None and len(counts) > busy_from and counts[-1] == 2
        time.sleep(seconds_by_threads[counts[-1]] * (8 if busy else 1))
        return {"loss_total": 0.0}

    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("geoseg.nn")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with torch_settings(threads):
            fit(step, FitPlan(iterations=16 * epochs, epoch_iterations=16, progress=False), tracked=net)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return counts, records


needs_two_cores = pytest.mark.skipif((__import__("os").cpu_count() or 1) < 2, reason="tuning the thread count needs 2 cores")


@needs_two_cores
def test_auto_threads_drop_to_the_faster_count_after_the_first_epochs_probes() -> None:
    counts, log = _timed_fit({2: 0.03, 1: 0.005}, "auto")
    assert counts[:3] == [2, 2, 2] and counts[3:6] == [1, 1, 1]  # the epoch's probes: current count, then one fewer
    assert set(counts[6:16]) == {1} and 1 in counts[16:]  # the rest of the epoch, and the next one, at the faster count
    assert any(line.startswith("threads: 2 -> 1") for line in log), log


@needs_two_cores
def test_auto_threads_keep_all_cores_when_they_are_faster() -> None:
    counts, log = _timed_fit({2: 0.005, 1: 0.03}, "auto")
    assert counts[3:6] == [1, 1, 1]  # probed
    assert set(counts[6:16]) == {2} and not any("threads:" in line for line in log)


@needs_two_cores
def test_auto_threads_probe_again_when_steps_slow_down() -> None:
    counts, log = _timed_fit({2: 0.02, 1: 0.06}, "auto", epochs=4, busy_from=32)  # another process from epoch 3 on
    assert set(counts[6:32]) == {2}  # epoch 1 probed and kept 2; epoch 2 had no reason to probe
    assert counts[32:38] == [2, 2, 2, 1, 1, 1] and set(counts[38:48]) == {1}  # epoch 3: slower, probed, dropped
    assert [line.split(" (")[0] for line in log if line.startswith("threads:")] == ["threads: 2 -> 1"]


@needs_two_cores
def test_a_fixed_thread_count_is_never_tuned() -> None:
    counts, _ = _timed_fit({2: 0.03, 1: 0.005}, 2)
    assert set(counts) == {2}


def test_threads_take_a_count_auto_or_null_and_say_so_otherwise() -> None:
    from geoseg.errors import ConfigError
    from geoseg.nn.config import load_train_config

    assert [load_train_config(None, [f"threads={v}"]).threads for v in ("auto", "3", "null")] == ["auto", 3, None]
    for bad in ("0", "many", "true"):
        with pytest.raises(ConfigError, match="threads.*a number of threads \\(1 or more\\), 'auto' or null"):
            load_train_config(None, [f"threads={bad}"])
