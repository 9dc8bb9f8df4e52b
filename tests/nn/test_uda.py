"""Uncertainty-aware mean teacher (mode: uda): EMA, uncertainty weights, ramp-up, perturbations, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

import geoseg
from geoseg.cli.main import cli
from geoseg.errors import ConfigError
from geoseg.nn.config import load_train_config
from geoseg.nn.modelfile import load_nn_model
from geoseg.nn.perturb import Perturbation, apply_flips, perturb
from geoseg.nn.uda import (
    consistency_loss,
    ema_update,
    entropy_threshold,
    predictive_entropy,
    sigmoid_rampup,
    teacher_prediction,
    uncertainty_weights,
)
from geoseg.steps import NNClassify
from tests.nn.conftest import SAMPLE

#: A few-second CLI run of a mode on the sample scenes.
TINY_CLI = [
    "threads=1", "model.width=4", "epochs=2", "iterations_per_epoch=3", "data.batch_size=2", "data.crop_px=64",
    "optimizer.warmup_iterations=1", "inference.tile_px=128", "inference.overlap_px=32",
]  # fmt: skip


def _binary(p_road: list[float]) -> torch.Tensor:
    p = torch.tensor(p_road, dtype=torch.float64)
    return torch.stack([1 - p, p])[None, :, None, :]  # (1, 2, 1, W)


def test_uncertainty_weights_are_lower_where_the_teacher_is_uncertain() -> None:
    prob = _binary([0.99, 0.9, 0.6, 0.5])
    h = predictive_entropy(prob)[0, 0]
    expected_h = [-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in (0.99, 0.9, 0.6, 0.5)]
    np.testing.assert_allclose(h.numpy(), expected_h, rtol=1e-12)
    soft = uncertainty_weights(h, 2, soft=True).numpy()
    np.testing.assert_allclose(soft, [1 - e / math.log(2) for e in expected_h], atol=1e-12)
    assert np.all(np.diff(soft) < 0) and soft[-1] == pytest.approx(0.0, abs=1e-12)
    hard = uncertainty_weights(h, 2, threshold=0.75 * math.log(2)).numpy()
    np.testing.assert_array_equal(hard, [1, 1, 0, 0])  # H(0.9) = 0.325 < 0.52 <= H(0.6) = 0.673
    with pytest.raises(ValueError, match="threshold"):
        uncertainty_weights(h, 2)


def test_consistency_loss_weights_pixels() -> None:
    s, t = _binary([0.8, 0.3]), _binary([0.6, 0.3])
    # pixel 0: 2 * 0.2^2 = 0.08, pixel 1: 0; mean over 2 pixels
    assert float(consistency_loss(s, t)) == pytest.approx(0.04)
    assert float(consistency_loss(s, t, torch.tensor([[[0.5, 1.0]]], dtype=torch.float64))) == pytest.approx(0.02)
    assert float(consistency_loss(s, t, torch.tensor([[[0.0, 1.0]]], dtype=torch.float64))) == 0.0


def test_ema_update_matches_hand_computation() -> None:
    torch.manual_seed(0)
    student, teacher = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)), nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))
    student.train()(torch.randn(4, 2, 8, 8))  # move the student's running statistics and batch counter
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 0.9)
    for name, s_val in student.state_dict().items():
        t_val = teacher.state_dict()[name]
        if s_val.dtype.is_floating_point:
            torch.testing.assert_close(t_val, 0.9 * before[name] + 0.1 * s_val, rtol=0, atol=1e-7, msg=name)
        else:
            assert int(t_val) == int(s_val) == 1, name
    w_t, w_s, w_0 = teacher[0].weight[0, 0, 0, 0].item(), student[0].weight[0, 0, 0, 0].item(), before["0.weight"][0, 0, 0, 0].item()
    assert w_t == pytest.approx(0.9 * w_0 + 0.1 * w_s, abs=1e-7)


def test_sigmoid_rampup_and_threshold_schedule() -> None:
    assert sigmoid_rampup(0, 100) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(50, 100) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(100, 100) == sigmoid_rampup(500, 100) == 1.0
    assert sigmoid_rampup(3, 0) == 1.0
    values = [sigmoid_rampup(i, 10) for i in range(11)]
    assert all(a < b for a, b in zip(values, values[1:]))
    assert entropy_threshold(0, 0.75, 1.0, 100, 2) == pytest.approx((0.75 + 0.25 * math.exp(-5)) * math.log(2))
    assert entropy_threshold(100, 0.75, 1.0, 100, 2) == pytest.approx(math.log(2))


def test_flips_are_undone_before_comparing() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(6, 3, 8, 8, generator=gen)
    out, flips = perturb(x, Perturbation(noise_std=0.0, brightness=0.0, flips=True), gen)
    assert flips.any() and not flips.all()
    torch.testing.assert_close(apply_flips(out, flips), x)
    noisy, _ = perturb(x, Perturbation(noise_std=0.5, brightness=0.0, flips=False), gen)
    assert 0.3 < float((noisy - x).std()) < 0.7
    # a per-pixel model commutes with flips, so its flip-undone teacher prediction is the plain one
    conv = nn.Conv2d(3, 2, 1)

    class PerPixel(nn.Module):
        def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"seg": conv(z)}

    mean = teacher_prediction(PerPixel(), x, 5, Perturbation(noise_std=0.0, brightness=0.0, flips=True), gen)
    torch.testing.assert_close(mean, torch.softmax(conv(x), 1).detach())


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"mode"):
        load_train_config(None, ["mode=semi"])
    with pytest.raises(ConfigError, match=r"field 'uda\.uncertainy': unknown field"):
        load_train_config(None, ["uda.uncertainy=false"])
    with pytest.raises(ConfigError, match=r"threshold_start must not exceed"):
        load_train_config(None, ["uda.threshold_start=0.9", "uda.threshold_end=0.8"])
    with pytest.raises(ConfigError, match=r"uda\.weighting"):
        load_train_config(None, ["uda.weighting=gaussian"])
    root = Path(__file__).resolve().parents[2] / "pipelines" / "training"
    assert load_train_config(root / "road_uda.yaml").mode == "uda"


def _run_cli(tmp_path: Path, name: str, config: str, extra: list[str]) -> tuple[Path, object]:
    out = tmp_path / f"{name}.nn.npz"
    args = ["train", "nn", config, "--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif"), "-o", str(out), "--no-progress"]
    for s in [*TINY_CLI, *extra]:
        args += ["--set", s]
    return out, CliRunner().invoke(cli, args)


def test_uda_cli_writes_a_model_the_classifier_step_uses(tmp_path: Path) -> None:
    target = ["--unlabeled", str(SAMPLE / "tile_c.png"), "--unlabeled", str(SAMPLE / "scene_a.tif"), "--unlabeled-masks", str(SAMPLE / "scene_a_mask.tif")]
    out, res = _run_cli(tmp_path, "uda", "road_uda", ["uda.rampup_iterations=3", "uda.teacher_passes=2", "data.unlabeled_gsd_m=0.45"])
    assert res.exit_code != 0 and "--unlabeled" in res.output  # mode uda without target scenes
    args = ["train", "nn", "road_uda", "--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif"), *target, "-o", str(out)]
    for s in [*TINY_CLI, "uda.rampup_iterations=3", "uda.teacher_passes=2", "data.unlabeled_gsd_m=0.45"]:
        args += ["--set", s]
    res = CliRunner().invoke(cli, [*args, "--no-progress"])
    assert res.exit_code == 0, res.output
    model = load_nn_model(out)
    history = model.training["history"]
    assert model.training["exported"] == "teacher" and len(history) == 2
    assert 0.0 <= history[-1]["coverage"] <= 1.0 and "target_iou" in history[-1]
    assert model.train_gsd_m == pytest.approx(0.3, abs=1e-3)
    result = geoseg.Pipeline([NNClassify(model=str(out), threads=1)], outputs=["probability"]).run(SAMPLE / "scene_a.tif")
    prob = result.layers["probability"]
    assert prob.shape == (512, 512) and np.isfinite(prob).all() and 0 <= prob.min() <= prob.max() <= 1
    res = CliRunner().invoke(cli, [*args, "--set", "uda.uncertainty=false", "--no-progress"])  # plain mean teacher: every pixel counts
    assert res.exit_code == 0, res.output
    assert [h["coverage"] for h in load_nn_model(out).training["history"]] == [1.0, 1.0]
