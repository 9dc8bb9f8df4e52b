"""DST-CBC self-training (mode: ssl): class-balanced thresholds, dynamic loss, curriculum, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

import geoseg
from geoseg.cli.main import cli
from geoseg.errors import ConfigError
from geoseg.nn.arrays import IGNORE_INDEX
from geoseg.nn.config import load_train_config
from geoseg.nn.modelfile import load_nn_model
from geoseg.nn.selftrain import class_balanced_thresholds, curriculum_ratios, dynamic_loss, dynamic_weights, pseudo_labels
from geoseg.nn.unlabeled import pseudo_label_scores
from geoseg.steps import NNClassify
from tests.nn.conftest import SAMPLE
from tests.nn.test_uda import TINY_CLI


def test_class_balanced_thresholds_on_a_hand_made_map() -> None:
    road = np.array([[0.95, 0.9, 0.8, 0.7, 0.6], [0.4, 0.3, 0.2, 0.1, 0.05]])  # 5 road pixels, 5 background
    prob = np.stack([1 - road, road])
    # background confidences 0.6, 0.7, 0.8, 0.9, 0.95; road 0.95, 0.9, 0.8, 0.7, 0.6
    np.testing.assert_allclose(class_balanced_thresholds([prob], 0.4), [0.9, 0.9])  # top 2 of 5
    np.testing.assert_allclose(class_balanced_thresholds([prob], 0.5), [0.8, 0.8])  # ceil(2.5) = 3
    np.testing.assert_allclose(class_balanced_thresholds([prob], 1.0), [0.6, 0.6])
    labels = pseudo_labels(prob, class_balanced_thresholds([prob], 0.4))
    np.testing.assert_array_equal(labels, [[1, 1, 255, 255, 255], [255, 255, 255, 0, 0]])
    # a class nobody predicts keeps threshold 1; unconfident pixels stay ignored
    np.testing.assert_allclose(class_balanced_thresholds([np.stack([road * 0 + 0.3, road * 0 + 0.7])], 0.2), [1.0, 0.7])
    with pytest.raises(ValueError):
        class_balanced_thresholds([prob], 0.0)


def test_thresholds_select_the_expected_fraction_per_class() -> None:
    rng = np.random.default_rng(0)
    maps = []
    for _ in range(2):
        road = rng.beta(0.6, 2.0, size=(64, 48))  # imbalanced: few road pixels
        maps.append(np.stack([1 - road, road]))
    pred = np.concatenate([m.argmax(0).ravel() for m in maps])
    for r in (0.2, 0.5, 0.8):
        labels = np.concatenate([pseudo_labels(m, class_balanced_thresholds(maps, r)).ravel() for m in maps])
        for c in (0, 1):
            n_c = int((pred == c).sum())
            assert int((labels == c).sum()) == math.ceil(r * n_c)  # continuous values: no ties
        assert set(np.unique(labels)) <= {0, 1, IGNORE_INDEX}


def test_dynamic_loss_equals_the_formula() -> None:
    logits = torch.tensor([[[[2.0, 0.0, 1.0]], [[0.0, 1.0, -1.0]]]])  # (1, 2, 1, 3)
    labels = torch.tensor([[[0, 1, IGNORE_INDEX]]])
    p = F.softmax(logits, 1)
    p0, p1 = float(p[0, 0, 0, 0]), float(p[0, 1, 0, 1])
    w = dynamic_weights(logits, labels, 2.0)
    torch.testing.assert_close(w, torch.tensor([[[p0**2, p1**2, 0.0]]]))
    expected = (p0**2 * -math.log(p0) + p1**2 * -math.log(p1)) / 2
    assert float(dynamic_loss(logits, labels, 2.0)) == pytest.approx(expected, rel=1e-6)
    assert float(dynamic_loss(logits, labels, 0.0)) == pytest.approx((-math.log(p0) - math.log(p1)) / 2, rel=1e-6)
    assert float(dynamic_loss(logits, torch.full_like(labels, IGNORE_INDEX), 2.0)) == 0.0
    # the weight carries no gradient: d/dlogits equals the weighted cross-entropy gradient
    x = logits.clone().requires_grad_(True)
    dynamic_loss(x, labels, 2.0).backward()
    y = logits.clone().requires_grad_(True)
    ((w * F.cross_entropy(y, labels, ignore_index=IGNORE_INDEX, reduction="none")).sum() / 2).backward()
    torch.testing.assert_close(x.grad, y.grad)


def test_curriculum_and_pseudo_label_scores() -> None:
    np.testing.assert_allclose(curriculum_ratios(5, 0.2, 1.0), [0.2, 0.4, 0.6, 0.8, 1.0])
    assert curriculum_ratios(1, 0.2, 1.0) == [1.0]
    pseudo = np.array([[1, 1, 0, 255], [0, 255, 1, 0]], np.uint8)
    check = np.array([[1, 0, 0, 1], [1, 1, 255, 0]], np.uint8)
    s = pseudo_label_scores([pseudo], [check])
    assert s["coverage"] == 6 / 8 and s["road_fraction"] == 3 / 6
    assert s["iou"] == pytest.approx(1 / 3)  # checked: tp 1, fp 1, fn 1
    assert math.isnan(pseudo_label_scores([pseudo], [np.full_like(check, 255)])["iou"])


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match=r"ssl\.rounds"):
        load_train_config(None, ["ssl.rounds=0"])
    with pytest.raises(ConfigError, match=r"r_start must not exceed"):
        load_train_config(None, ["ssl.r_start=0.9", "ssl.r_end=0.5"])
    with pytest.raises(ConfigError, match=r"field 'ssl\.gama': unknown field"):
        load_train_config(None, ["ssl.gama=2"])
    root = Path(__file__).resolve().parents[2] / "pipelines" / "training"
    cfg = load_train_config(root / "road_ssl.yaml")
    assert cfg.mode == "ssl" and cfg.ssl.r_start == 0.2 and cfg.ssl.r_end == 1.0


def test_ssl_cli_writes_a_model_the_classifier_step_uses(tmp_path: Path) -> None:
    out = tmp_path / "ssl.nn.npz"
    args = [
        "train", "nn", "road_ssl", "--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif"),
        "--unlabeled", str(SAMPLE / "scene_a.tif"), "--unlabeled", str(SAMPLE / "tile_c.png"),
        "--unlabeled-masks", str(SAMPLE / "scene_a_mask.tif"), "-o", str(out), "--no-progress",
        "--val-images", str(SAMPLE / "tile_c.png"), "--val-masks", str(SAMPLE / "tile_c_mask.png"),
    ]  # fmt: skip
    for s in [*TINY_CLI, "epochs=1", "ssl.rounds=2", "ssl.epochs_per_round=1"]:
        args += ["--set", s]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    model = load_nn_model(out)
    rounds = [h for h in model.training["history"] if "pseudo_coverage" in h]
    assert [h["pseudo_r"] for h in rounds] == [0.2, 1.0]
    assert rounds[0]["pseudo_coverage"] < rounds[1]["pseudo_coverage"] == 1.0
    assert all(0.0 <= h["pseudo_iou"] <= 1.0 for h in rounds)  # scene_a has a check mask
    epochs = [h for h in model.training["history"] if "val_iou" in h]
    assert [h["round"] for h in epochs] == [0, 1, 2]
    assert model.training["best_val_iou"] == max(h["val_iou"] for h in epochs)
    result = geoseg.Pipeline([NNClassify(model=str(out), threads=1)], outputs=["probability"]).run(SAMPLE / "scene_a.tif")
    assert result.layers["probability"].shape == (512, 512)


def test_ssl_without_check_masks_saves_its_model(tmp_path: Path) -> None:
    # The usual case: unlabelled scenes have no masks, so there is no pseudo-label IoU to record
    # (it used to be NaN, which the model file refused after all the training).
    out = tmp_path / "ssl.nn.npz"
    args = ["train", "nn", "road_ssl", "--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif"),
            "--unlabeled", str(SAMPLE / "scene_a.tif"), "-o", str(out), "--no-progress"]  # fmt: skip
    for s in [*TINY_CLI, "epochs=1", "ssl.rounds=1", "ssl.epochs_per_round=1"]:
        args += ["--set", s]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    rounds = [h for h in load_nn_model(out).training["history"] if "pseudo_coverage" in h]
    assert len(rounds) == 1 and "pseudo_iou" not in rounds[0] and rounds[0]["pseudo_coverage"] == 1.0
