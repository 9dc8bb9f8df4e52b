"""Raster I/O: georeferencing kept, GSD in metres, pixel coordinates without CRS."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from PIL import Image
from rasterio.crs import CRS

from geoseg.errors import NotGeoreferencedWarning, RasterReadError
from geoseg.raster import ground_sample_distance, read_raster, write_raster
from tests.conftest import UTM_TRANSFORM, plus_mask, write_tif


def test_gsd_projected_utm_is_pixel_size():
    gx, gy = ground_sample_distance(CRS.from_epsg(32633), UTM_TRANSFORM, 100, 100)
    # UTM scale factor near the central meridian is 0.9996: the ground pixel is 0.5 / 0.9996 m there.
    assert gx == pytest.approx(0.5 / 0.9996, rel=2e-4)
    assert gy == pytest.approx(0.5 / 0.9996, rel=2e-4)


def test_gsd_geographic_is_in_metres_not_degrees():
    # SpaceNet Vegas pixel: 2.7e-6 degrees at 36.2 N, ~0.24 m east-west and ~0.30 m north-south.
    t = Affine(2.7e-6, 0, -115.3, 0, -2.7e-6, 36.2)
    gx, gy = ground_sample_distance(CRS.from_epsg(4326), t, 1300, 1300)
    assert gx == pytest.approx(2.7e-6 * 111320 * np.cos(np.radians(36.2)), rel=5e-3)
    assert gy == pytest.approx(0.2997, rel=5e-3)


def test_gsd_web_mercator_is_scaled_by_latitude():
    # At 60 N a Web Mercator metre is half a ground metre.
    y60 = 8399737.89
    t = Affine(1.0, 0, 1000000.0, 0, -1.0, y60)
    gx, gy = ground_sample_distance(CRS.from_epsg(3857), t, 10, 10)
    assert gx == pytest.approx(0.5, rel=5e-3) and gy == pytest.approx(0.5, rel=5e-3)


def test_read_keeps_crs_transform_and_nodata(tmp_path):
    arr = np.arange(36, dtype=np.uint16).reshape(1, 6, 6)
    path = write_tif(tmp_path / "a.tif", arr, CRS.from_epsg(32633), UTM_TRANSFORM, nodata=0)
    r = read_raster(path)
    assert r.geo.crs == CRS.from_epsg(32633)
    assert r.geo.transform == UTM_TRANSFORM
    assert r.geo.nodata == 0
    assert not r.valid[0, 0] and r.valid[0, 1]
    assert r.array.dtype == np.uint16 and r.array.shape == (1, 6, 6)


def test_png_without_georeferencing_warns_and_uses_identity(tmp_path):
    path = tmp_path / "tile.png"
    Image.fromarray(plus_mask(40)).save(path)
    with pytest.warns(NotGeoreferencedWarning, match="pixel coordinates"):
        r = read_raster(path, assume_gsd_m=0.21)
    assert not r.geo.georeferenced and r.geo.crs is None
    assert r.geo.transform == Affine.identity()
    assert r.geo.gsd_m == pytest.approx(0.21)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"", "empty"), (b"this is not a tiff at all" * 10, "not a readable raster")],
)
def test_bad_files_raise_read_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.tif"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(RasterReadError, match=message) as info:
        read_raster(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, OSError)


def test_directory_is_refused(tmp_path):
    with pytest.raises(RasterReadError, match="directory"):
        read_raster(tmp_path)


def test_truncated_geotiff_is_refused(tmp_path):
    arr = np.random.default_rng(0).integers(0, 255, (3, 300, 300), dtype=np.uint8)
    path = write_tif(tmp_path / "t.tif", arr, CRS.from_epsg(32633), UTM_TRANSFORM)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RasterReadError, match=str(path).replace("\\", "\\\\")):
        read_raster(path)


def test_write_raster_is_tiled_compressed_and_on_the_input_grid(tmp_path):
    src = write_tif(tmp_path / "s.tif", plus_mask(300), CRS.from_epsg(32633), UTM_TRANSFORM)
    r = read_raster(src)
    out = write_raster(tmp_path / "out" / "m.tif", r.array[0] > 0, r.geo)
    with rasterio.open(out) as ds:
        assert ds.crs == r.geo.crs and ds.transform == r.geo.transform
        assert ds.profile["tiled"] and ds.compression is not None
        assert ds.read(1).max() == 1
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_float_nan_marks_invalid(tmp_path):
    arr = np.ones((1, 4, 4), dtype=np.float32)
    arr[0, 1, 1] = np.nan
    arr[0, 2, 2] = np.inf
    path = write_tif(tmp_path / "f.tif", arr, CRS.from_epsg(32633), UTM_TRANSFORM)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = read_raster(path)
    assert r.valid.sum() == 14
