"""Working GSD (training and inference on a resampled grid) and test-time augmentation."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from affine import Affine
from click.testing import CliRunner
from rasterio.crs import CRS

import geoseg
from geoseg.cli.main import cli
from geoseg.errors import ConfigError, InputMismatchError
from geoseg.nn.arrays import IGNORE_INDEX
from geoseg.nn.config import load_train_config
from geoseg.nn.fitting import crop_weights, evaluate_iou, training_scenes
from geoseg.nn.inference import predict, predict_scene, predict_tiled
from geoseg.nn.modelfile import NNModel, load_nn_model, save_nn_model
from geoseg.nn.models import build_model
from geoseg.nn.resample import resample_any, resample_bands, resample_labels, resize_bilinear, zoomed_shape
from geoseg.nn.train import SceneData, train
from geoseg.steps import NNClassify
from tests.conftest import write_tif
from tests.nn.conftest import SAMPLE, TINY, scene_b


def test_resample_bands_averages_areas_and_interpolates() -> None:
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    down = resample_bands(image, (2, 2))
    np.testing.assert_allclose(down[0], [[2.5, 4.5], [10.5, 12.5]])  # means of the 2x2 blocks
    up = resample_bands(np.array([[0.0, 1.0]], np.float32), (1, 4))
    assert up.shape == (1, 4) and up[0, 0] == 0.0 and up[0, -1] == 1.0 and 0.0 < up[0, 1] < up[0, 2] < 1.0
    assert zoomed_shape((3, 512, 500), 0.42) == (215, 210)


@pytest.mark.parametrize("seed", range(4))
def test_resampling_is_torchs_area_and_bilinear_interpolation(seed: int) -> None:
    """The numpy resampling (inference in onnxruntime runs without torch) equals torch's ``interpolate``, as training used it before."""
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(seed)
    for _ in range(40):
        rows, cols = (int(v) for v in rng.integers(1, 50, 2))
        size = (int(rng.integers(1, 70)), int(rng.integers(1, 70)))
        image = (rng.random((3, rows, cols)) * 255).astype(np.float32)
        t = torch.from_numpy(image)[None]
        shrinks = size[0] <= rows and size[1] <= cols
        expected = F.interpolate(t, size=size, mode="area")[0] if shrinks else F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0]
        np.testing.assert_allclose(resample_bands(image, size), expected.numpy(), atol=1e-3)
        bilinear = F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0].numpy()
        np.testing.assert_allclose(resize_bilinear(image, size), bilinear, atol=1e-3)


def test_resample_labels_majority_over_labelled_area() -> None:
    labels = np.array(
        [
            [1, 1, 0, 0, 255, 255],
            [1, 0, 0, 0, 255, 1],
        ],
        np.uint8,
    )
    out = resample_labels(labels, (1, 3))
    # block 1: 3 of 4 road -> road; block 2: no road -> background; block 3: 3 of 4 unlabelled -> unlabelled
    np.testing.assert_array_equal(out, [[1, 0, IGNORE_INDEX]])
    half = np.array([[1, 255], [0, 255]], np.uint8)  # half labelled, half of that road: not a majority
    np.testing.assert_array_equal(resample_labels(half, (1, 1)), [[0]])


def test_resample_any_keeps_thin_lines() -> None:
    line = np.zeros((60, 60), np.uint8)
    line[31, :] = 1  # a 1-px line that area averaging would thin to 0.33
    out = resample_any(line, (20, 20))
    assert out[10].all() and out.sum() == 20


def _model() -> NNModel:
    torch.manual_seed(3)
    hyper = {"in_channels": 3, "num_classes": 2, "width": 4, "centerline_head": True}
    return NNModel(build_model("decouple", **hyper), "decouple", hyper, [1, 2, 3], [0.0] * 3, [1.0] * 3, train_gsd_m=0.5, resample=True, tta=True)


def test_tta_prediction_does_not_depend_on_orientation(tiny_model: Path) -> None:
    module = load_nn_model(tiny_model).module
    x = np.random.default_rng(0).normal(size=(3, 64, 64)).astype(np.float32)
    x[:, 20:30, 5:] += 2.0  # a bright road-like band
    plain = predict(module, x)
    turned = predict(module, np.ascontiguousarray(np.rot90(x, 1, (1, 2))))
    assert np.abs(np.rot90(turned, -1, (1, 2)) - plain).max() > 0.02  # a plain CNN is not rotation invariant
    tta = predict(module, x, tta=True)
    for k in (1, 2, 3):
        for mirror in (False, True):
            view = np.rot90(x, k, (1, 2))
            view = view[:, :, ::-1] if mirror else view
            back = predict(module, np.ascontiguousarray(view), tta=True)
            back = back[:, :, ::-1] if mirror else back
            np.testing.assert_allclose(np.rot90(back, -k, (1, 2)), tta, atol=1e-5)
    np.testing.assert_allclose(tta[:2].sum(axis=0), 1.0, atol=1e-5)
    tiled = predict_tiled(module, x, tile_px=32, overlap_px=16, tta=True)
    assert tiled.shape == tta.shape and np.abs(tiled - tta).mean() < 0.05


def test_predict_scene_resamples_and_returns_the_scene_grid() -> None:
    model = _model()
    x = np.random.default_rng(1).normal(size=(3, 100, 130)).astype(np.float32)
    out = predict_scene(model, x, 0.4, tile_px=32, overlap_px=8)
    assert out.shape == (3, 100, 130)
    coarse = predict_tiled(model.module, resample_bands(x, zoomed_shape(x.shape, 0.4)), tile_px=32, overlap_px=8)
    assert coarse.shape == (3, 40, 52)
    # the scene-grid output is the coarse output interpolated: same range, same mean
    assert abs(out[1].mean() - coarse[1].mean()) < 0.01
    assert out.min() >= coarse.min() - 1e-6 and out.max() <= coarse.max() + 1e-6


def test_model_file_keeps_resample_and_tta(tmp_path: Path) -> None:
    back = load_nn_model(save_nn_model(tmp_path / "w.nn.npz", _model()))
    assert (back.resample, back.tta, back.train_gsd_m) == (True, True, 0.5)


def test_training_at_a_working_gsd(tmp_path: Path) -> None:
    base = scene_b()  # 0.3 m
    cfg = load_train_config(None, [*TINY, "data.work_gsd_m=0.6", "inference.tta=true", "epochs=1", "data.crop_px=64", "inference.tile_px=64"])
    scenes = training_scenes(cfg, [base], [1, 2, 3], np.zeros(3), np.ones(3))
    assert scenes[0].image.shape == (3, 256, 256) and scenes[0].labels.shape == (256, 256)
    assert abs((scenes[0].labels == 1).mean() - (base.labels == 1).mean()) < 0.01  # same road share on the coarse grid
    path = tmp_path / "work.nn.npz"
    run = train(cfg, [base], [base], best_path=path, progress=False)
    model = load_nn_model(path)
    assert (model.train_gsd_m, model.resample, model.tta) == (0.6, True, True)
    assert 0.0 <= run.best_iou <= 1.0 and run.best_iou == pytest.approx(evaluate_iou(model, [base]), abs=1e-6)
    # the step resamples the 0.3 m scene to 0.6 m by itself (no resample: true needed), output on the scene grid
    step = NNClassify(model=str(path), threads=1)
    result = geoseg.Pipeline([step], outputs=["probability"]).run(SAMPLE / "scene_a.tif")
    assert result.layers["probability"].shape == (512, 512)
    assert step.halo_px(result.geo) == int(np.ceil(model.overlap_px * 0.6 / result.geo.gsd_m))
    # an explicit resample: false gets the GSD mismatch error
    with pytest.raises(InputMismatchError, match="resample"):
        geoseg.Pipeline([NNClassify(model=str(path), resample=False, threads=1)], outputs=["probability"]).run(SAMPLE / "scene_a.tif")


def test_working_gsd_scene_close_to_it_is_not_resampled(tmp_path: Path) -> None:
    model = _model()
    model.train_gsd_m = 0.3
    path = save_nn_model(tmp_path / "m.nn.npz", model)
    image = geoseg.read_raster(SAMPLE / "scene_a.tif").array[:, :96, :96]
    scene = write_tif(tmp_path / "s.tif", image, CRS.from_epsg(32633), Affine(0.3, 0, 0, 0, -0.3, 0))
    prob = geoseg.Pipeline([NNClassify(model=str(path), threads=1, tta=False)], outputs=["probability"]).run(scene).layers["probability"]
    x = (image.astype(np.float32) - 0.0) / 1.0
    direct = predict_tiled(model.module, x, tile_px=model.tile_px, overlap_px=model.overlap_px)[1]
    np.testing.assert_allclose(prob, direct, atol=1e-5)


def test_training_data_of_unlabelled_border_stays_unlabelled() -> None:
    base = scene_b()
    labels = base.labels.copy()
    labels[:, :100] = IGNORE_INDEX
    cfg = load_train_config(None, [*TINY, "data.work_gsd_m=0.6"])
    out = training_scenes(cfg, [SceneData(base.image, labels, base.gsd_m, base.source)], [1, 2, 3], np.zeros(3), np.ones(3))[0]
    assert (out.labels[:, :50] == IGNORE_INDEX).all() and (out.labels[:, 51:] != IGNORE_INDEX).all()


def test_sources_at_several_gsds_in_one_run(tmp_path: Path) -> None:
    """PNG tiles carry no GSD: --source-gsd gives each source its own (Ottawa 0.21 m and Massachusetts 1 m in one run)."""
    for folder in ("ottawa", "mass"):
        (tmp_path / folder).mkdir()
        shutil.copy(SAMPLE / "tile_c.png", tmp_path / folder / "t.png")
        shutil.copy(SAMPLE / "tile_c_mask.png", tmp_path / folder / "t_mask.png")
    args = ["train", "nn", "--images", str(tmp_path / "*" / "t.png"), "--masks", str(tmp_path / "*" / "t_mask.png"), "--no-progress",
            "--source-gsd", "*/ottawa/*=0.21", "--source-gsd", "*/mass/*=1.0", "-o", str(tmp_path / "m.npz")]  # fmt: skip
    args += [f"--set={s}" for s in [*TINY, "epochs=1", "iterations_per_epoch=2", "data.crop_px=64"]]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert load_nn_model(tmp_path / "m.npz").train_gsd_m == pytest.approx((0.21 + 1.0) / 2)  # each tile read at its source's GSD
    assert "no georeferencing" not in res.output  # every file's GSD was given
    res = CliRunner().invoke(cli, [*args[:-2], "--source-gsd", "ottawa=x", "-o", str(tmp_path / "n.npz")])
    assert res.exit_code == 2 and "give PATTERN=METRES" in res.output


def test_crop_weights_split_each_source_share_among_its_scenes() -> None:
    sources = ["d/ottawa/a.png", "d/mass/b.png", "d/mass/c.png", "d/other/e.png"]
    weights = crop_weights(sources, {"*/ottawa/*": 2.0, "*/mass/*": 1.0})
    assert weights == pytest.approx([0.5, 0.125, 0.125, 0.25])  # the unmatched file is a source of weight 1
    assert crop_weights(sources, {}) == pytest.approx([0.25] * 4)
    with pytest.raises(ConfigError, match=r"no training scene matches '\*/osm/\*'"):
        crop_weights(sources, {"*/mass/*": 1.0, "*/osm/*": 1.0})


def test_source_weights_balance_sources_in_one_run(tmp_path: Path) -> None:
    """--source-weight draws half the crops from the one Ottawa tile however many Massachusetts tiles there are."""
    for folder, copies in (("ottawa", 1), ("mass", 3)):
        (tmp_path / folder).mkdir()
        for k in range(copies):
            shutil.copy(SAMPLE / "tile_c.png", tmp_path / folder / f"t{k}.png")
            shutil.copy(SAMPLE / "tile_c_mask.png", tmp_path / folder / f"t{k}_mask.png")
    cfg = load_train_config(None, [*TINY, "data.source_weights={'*/ottawa/*': 1, '*/mass/*': 1}"])
    base = scene_b()
    data = [SceneData(base.image, base.labels, base.gsd_m, str(p)) for p in sorted(tmp_path.glob("*/t?.png"))]
    scenes = training_scenes(cfg, data, [1, 2, 3], np.zeros(3), np.ones(3))
    assert [s.weight for s in scenes] == pytest.approx([1 / 6, 1 / 6, 1 / 6, 0.5])  # mass/t0..t2, ottawa/t0
    args = ["train", "nn", "--images", str(tmp_path / "*" / "t?.png"), "--masks", str(tmp_path / "*" / "t?_mask.png"), "--no-progress",
            "--source-gsd", "*/ottawa/*=0.21", "--source-gsd", "*/mass/*=1.0"]  # fmt: skip
    args += [f"--set={s}" for s in [*TINY, "epochs=1", "iterations_per_epoch=2", "data.crop_px=64"]]
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "m.npz"), "--source-weight", "*/ottawa/*=1", "--source-weight", "*/mass/*=1"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "n.npz"), "--source-weight", "*/osm/*=1"])
    assert res.exit_code == 1 and "no training scene matches '*/osm/*'" in res.output
    assert not (tmp_path / "n.npz").exists()
    res = CliRunner().invoke(cli, [*args, "-o", str(tmp_path / "n.npz"), "--source-weight", "ottawa=0"])
    assert res.exit_code == 2 and "give PATTERN=WEIGHT" in res.output
