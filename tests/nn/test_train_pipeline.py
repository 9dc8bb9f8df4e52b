"""Training (config, determinism, resume), the nn_classify step and the deep pipeline end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from rasterio.crs import CRS

import geoseg
from geoseg.cli.main import cli
from geoseg.errors import ConfigError, InputMismatchError
from geoseg.nn.config import load_train_config
from geoseg.nn.modelfile import load_nn_model
from geoseg.nn.train import SceneData, train
from geoseg.steps import NNClassify
from tests.conftest import REPO, write_tif
from tests.nn.conftest import SAMPLE, TINY, scene_b

FAST = [*TINY, "epochs=2", "iterations_per_epoch=3", "data.crop_px=64", "data.batch_size=2"]


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  architecure: decouple\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: field 'model\.architecure': unknown field"):
        load_train_config(cfg)
    with pytest.raises(ConfigError, match=r"^--set data\.crop_px=100: field 'data\.crop_px'"):  # said of the --set, not of the file it changes
        load_train_config(None, ["data.crop_px=100"])
    with pytest.raises(ConfigError, match=r"^--set epoch=1: field 'epoch': unknown field \(got 1\)$"):
        load_train_config(REPO / "pipelines" / "training" / "road_decouple.yaml", ["epochs=2", "epoch=1"])
    assert load_train_config(None, ["optimizer.lr=0.01", "data.augment.scale=[1, 2]"]).data.augment.scale == (1.0, 2.0)


def test_shipped_training_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2] / "pipelines" / "training"
    for name in ("road_decouple", "road_baseline"):
        cfg = load_train_config(root / f"{name}.yaml")
        assert cfg.model.architecture == name.split("_")[1]
        # same budget for both: 0.5 m working grid, 30 x 50 batches of 8 crops of 160 px, turned by any angle, test-time augmentation
        budget = (cfg.data.work_gsd_m, cfg.epochs * cfg.iterations_per_epoch, cfg.data.batch_size, cfg.data.crop_px)
        assert budget == (0.5, 1500, 8, 160) and cfg.data.augment.free_rotation and cfg.inference.tta


def _weights(path: Path) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in load_nn_model(path).module.state_dict().items()}


def test_training_is_deterministic_and_resumable(tmp_path: Path) -> None:
    cfg = load_train_config(None, FAST)
    data = [scene_b()]
    train(cfg, data, best_path=tmp_path / "a.npz", checkpoint_path=tmp_path / "a.ckpt.npz", progress=False)
    train(cfg, data, best_path=tmp_path / "b.npz", progress=False)
    one = load_train_config(None, [*FAST, "epochs=1"])
    train(one, data, checkpoint_path=tmp_path / "c.ckpt.npz", progress=False)
    result = train(cfg, data, resume=tmp_path / "c.ckpt.npz", best_path=tmp_path / "c.npz", progress=False)
    assert [h["epoch"] for h in result.history] == [1, 2]
    a, b, c = _weights(tmp_path / "a.npz"), _weights(tmp_path / "b.npz"), _weights(tmp_path / "c.npz")
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        np.testing.assert_array_equal(a[name], c[name], err_msg=name)
    assert load_nn_model(tmp_path / "a.ckpt.npz").training["history"][-1]["epoch"] == 2  # a checkpoint is a model too


def test_cli_trains_with_validation(tmp_path: Path) -> None:
    out = tmp_path / "m.npz"
    args = ["train", "nn", "road_baseline", "--images", str(SAMPLE / "scene_b.tif"), "--masks", str(SAMPLE / "scene_b_mask.tif"),
            "--val-images", str(SAMPLE / "scene_a.tif"), "--val-masks", str(SAMPLE / "scene_a_mask.tif"), "-o", str(out), "--no-progress"]
    args += [f"--set={s}" for s in [*FAST, "epochs=1", "model.width=4"]]  # fmt: skip
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    model = load_nn_model(out)
    assert model.architecture == "baseline" and model.hyper["width"] == 4
    assert 0.0 <= model.training["history"][0]["val_iou"] <= 1.0
    assert (tmp_path / "m.ckpt.npz").is_file()
    res = CliRunner().invoke(cli, ["train", "nn", "--images", str(SAMPLE / "scene_b.tif"), "-o", str(out)])
    assert res.exit_code != 0 and "masks" in res.output


def test_deep_pipeline_from_the_cli(tiny_model: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["run", "deep_road_centerlines", str(SAMPLE / "scene_a.tif"), "-o", str(tmp_path), "--set", f"model={tiny_model}", "--set", "nn_classify.threads=1", "--progress", "none"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "scene_a.shp").is_file() and (tmp_path / "scene_a_nodes.shp").is_file()


def test_deep_pipeline_from_python(tiny_model: Path) -> None:
    result = geoseg.run("deep_road_centerlines", SAMPLE / "scene_a.tif", {"model": str(tiny_model), "nn_classify.threads": 1})
    prob = result.layers["probability"]
    truth = geoseg.read_raster(SAMPLE / "scene_a_mask.tif").array[0] > 0
    assert prob.shape == (512, 512) and 0.0 <= prob.min() and prob.max() <= 1.0
    assert prob[truth].mean() > prob[~truth].mean() + 0.2  # the tiny model has learnt something
    assert len(result.lines) > 0 and result.lines.crs == CRS.from_epsg(32633)


def test_step_refuses_band_and_gsd_mismatch(tiny_model: Path, tmp_path: Path) -> None:
    from affine import Affine

    one_band = write_tif(tmp_path / "pan.tif", np.zeros((64, 64), np.uint8), CRS.from_epsg(32633), Affine(0.3, 0, 0, 0, -0.3, 0))
    pipe = geoseg.Pipeline([NNClassify(model=str(tiny_model), threads=1)], outputs=["probability"])
    with pytest.raises(InputMismatchError, match=r"pan\.tif.*tiny\.nn\.npz.*1 band"):
        pipe.run(one_band)
    image = geoseg.read_raster(SAMPLE / "scene_a.tif").array[:, :128, :128]
    coarse = write_tif(tmp_path / "coarse.tif", image, CRS.from_epsg(32633), Affine(0.6, 0, 0, 0, -0.6, 0))
    with pytest.raises(InputMismatchError, match="resample"):
        pipe.run(coarse)
    resampled = geoseg.Pipeline([NNClassify(model=str(tiny_model), resample=True, threads=1)], outputs=["probability"]).run(coarse)
    assert resampled.layers["probability"].shape == (128, 128)


def test_centerline_head_and_edge_rasters(tmp_path: Path) -> None:
    from scipy import ndimage
    from skimage.morphology import skeletonize

    base = scene_b()
    road = base.labels == 1
    edges = road ^ ndimage.binary_erosion(road, iterations=2)
    data = [SceneData(base.image, base.labels, base.gsd_m, base.source, edges=edges.astype(np.uint8), centerlines=skeletonize(road).astype(np.uint8))]
    cfg = load_train_config(None, [*FAST, "model.centerline_head=true", "data.centerlines=[x]"])
    path = tmp_path / "cl.npz"
    train(cfg, data, best_path=path, progress=False)
    assert load_nn_model(path).heads == ["background", "road", "centerline"]
    result = geoseg.Pipeline([NNClassify(model=str(path), output="centerline", threads=1)], outputs=["probability"]).run(SAMPLE / "scene_a.tif")
    assert result.layers["probability"].shape == (512, 512)
    with pytest.raises(ConfigError, match="centerline_head needs data.centerlines"):
        load_train_config(None, ["model.centerline_head=true", "data.images=[x]"])
    with pytest.raises(InputMismatchError, match="centerline raster for every training scene"):
        train(load_train_config(None, [*FAST, "model.centerline_head=true"]), [base], progress=False)
