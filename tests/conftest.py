"""Shared fixtures: small real raster files written with rasterio."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SAMPLE_DATA = REPO / "sample_data"


def pytest_configure(config: pytest.Config) -> None:
    """Tests and the geoseg processes they start use a cache folder of their own, not the user's."""
    os.environ["GEOSEG_CACHE_DIR"] = tempfile.mkdtemp(prefix="geoseg-test-cache-")


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session's cache folder (one per test run would otherwise pile up in the temp folder)."""
    shutil.rmtree(os.environ.pop("GEOSEG_CACHE_DIR", ""), ignore_errors=True)


def plus_mask(size: int = 120, width: int = 12) -> np.ndarray:
    """A plus-shaped road mask: two bands crossing at the centre, reaching the borders."""
    m = np.zeros((size, size), dtype=np.uint8)
    c = size // 2
    m[c - width // 2 : c + width // 2, :] = 255
    m[:, c - width // 2 : c + width // 2] = 255
    return m


def write_tif(path: Path, array: np.ndarray, crs: CRS | None, transform: Affine | None, **extra) -> Path:
    """Write a (bands, rows, cols) or (rows, cols) array as a GeoTIFF."""
    data = array if array.ndim == 3 else array[None]
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1], "count": data.shape[0], "dtype": data.dtype.name}
    if crs is not None:
        profile.update(crs=crs, transform=transform)
    profile.update(extra)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


UTM_TRANSFORM = Affine(0.5, 0, 500000.0, 0, -0.5, 5000000.0)


@pytest.fixture
def plus_tif(tmp_path: Path) -> Path:
    """A plus-shaped 0/255 road mask, 120 px at 0.5 m, in UTM 33N."""
    return write_tif(tmp_path / "plus.tif", plus_mask(), CRS.from_epsg(32633), UTM_TRANSFORM)


@pytest.fixture
def shared_data() -> Path:
    """The real data beside the repository (skips when absent)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (it lies beside the repository in CI)")
    return SHARED_DATA
