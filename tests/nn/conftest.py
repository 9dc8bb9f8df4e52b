"""Fixtures of the deep-classifier tests: a tiny model trained on sample scene B."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from geoseg.classifiers.training_data import mask_labels
from geoseg.nn.config import load_train_config
from geoseg.nn.train import SceneData, train
from geoseg.raster import read_raster

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"

#: A CPU-seconds training run: small decouple model, few crops.
TINY = [
    "threads=1", "model.width=8", "epochs=2", "iterations_per_epoch=20", "data.batch_size=4", "data.crop_px=128",
    "optimizer.lr=0.005", "optimizer.warmup_iterations=5", "inference.tile_px=128", "inference.overlap_px=32",
]  # fmt: skip


def scene_b() -> SceneData:
    """Sample scene B with its road mask as labels."""
    scene = read_raster(SAMPLE / "scene_b.tif")
    return SceneData(scene.array, mask_labels(scene, SAMPLE / "scene_b_mask.tif"), scene.geo.gsd_m, scene.source)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """One torch thread: multi-threaded torch crawls on a busy 2-core test machine."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DecoupleSegNet model file trained for a few seconds on scene B."""
    path = tmp_path_factory.mktemp("nn") / "tiny.nn.npz"
    train(load_train_config(None, TINY), [scene_b()], best_path=path, progress=False)
    return path
