"""The Ottawa RoadNet tiles as the deep-classifier benchmarks use them (``../shared/data``).

One split for every benchmark: train on the first 6 tiles (sorted names), test on the other 5
(4 with a RoadNet prediction, plus ``demo``). The tiles are 512² PNGs at 0.21 m without
georeferencing. Imported by the ``bench_*_ottawa.py`` scripts and ``bench_uda_ssl.py``
(run as scripts from the repository, so this folder is on ``sys.path``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine
from PIL import Image

from geoseg.nn.train import SceneData
from geoseg.raster import GeoInfo, Raster

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
DATA = SHARED / "ottawa_roadnet"
GSD_M = 0.21
TRAIN = ["1-0-12", "1-14-5", "1-15-3", "1-16-2", "1-17-11", "1-18-9"]
TEST = ["1-2-10", "1-5-10", "1-6-7", "1-6-9", "demo"]


def png(folder: str, tile: str) -> np.ndarray:
    """A tile's PNG from ``images``, ``masks``, ``centerlines``, ``edges`` or ``predictions``."""
    return np.asarray(Image.open(DATA / folder / f"{tile}.png"))


def scene(tile: str, *, centerlines: bool = False) -> SceneData:
    """A tile as training/test data: RGB bands, road mask (and the 1-px centerline raster)."""
    lines = (png("centerlines", tile) > 127).astype(np.uint8) if centerlines else None
    return SceneData(png("images", tile).transpose(2, 0, 1), (png("masks", tile) > 127).astype(np.uint8), GSD_M, tile, centerlines=lines)


def raster(tile: str) -> Raster:
    """A tile as a scene for pipelines (pixel coordinates, GSD 0.21 m)."""
    image = png("images", tile).transpose(2, 0, 1)
    geo = GeoInfo(image.shape[2], image.shape[1], None, Affine.identity(), (GSD_M, GSD_M), False)
    return Raster(image, geo, np.ones(image.shape[1:], bool), tile)
