"""Atomic outputs and vector writing: CRS kept exactly, no partial files on failure."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from PIL import Image
from rasterio.crs import CRS

import geoseg.vector as vector_module
from geoseg import Pipeline, steps
from geoseg.atomic import TEMP_PREFIX, atomic_path
from geoseg.errors import OutputWriteError, RasterReadError
from geoseg.vector import write_network
from tests.conftest import plus_mask


def _pipe():
    return Pipeline(
        [steps.ThresholdMask(), steps.TensorVoting(), steps.NonMaxSuppression(), steps.RoadNetwork(), steps.ConnectNetwork()],
        outputs=["network", "nodes"],
    )


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.shp") as tmp:
            tmp.write_bytes(b"partial")
            (tmp.with_suffix(".dbf")).write_bytes(b"partial")
            raise RuntimeError("disk died")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_old_output_and_its_stale_sidecars(tmp_path):
    (tmp_path / "x.shp").write_bytes(b"old")
    (tmp_path / "x.qix").write_bytes(b"old spatial index")
    with atomic_path(tmp_path / "x.shp") as tmp:
        tmp.write_bytes(b"new")
        tmp.with_suffix(".dbf").write_bytes(b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.dbf", "x.shp"]
    assert (tmp_path / "x.shp").read_bytes() == b"new"


def test_errors_inside_the_block_keep_what_failed(tmp_path):
    """An input that cannot be read while an output is written is reported as the read error it
    is; the writer's own OS errors become output errors. Nothing is left either way."""
    with pytest.raises(RasterReadError, match=r"^in\.tif: no such file$"):
        with atomic_path(tmp_path / "x.tif"):
            raise RasterReadError("in.tif: no such file")
    with pytest.raises(OutputWriteError, match=r"x\.tif: cannot write output \(Permission denied\)"):
        with atomic_path(tmp_path / "x.tif"):
            raise PermissionError(13, "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destination_is_an_output_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a folder")
    with pytest.raises(OutputWriteError, match=str(blocker)):
        with atomic_path(blocker / "out.shp"):
            pass


def test_failure_mid_write_leaves_no_partial_shapefile(plus_tif, tmp_path, monkeypatch):
    edges, nodes = _pipe().run(plus_tif).frames()
    real_write = vector_module._write_frame

    def write_then_die(frame, path, driver, layer, *rest):
        real_write(frame.iloc[:1], path, driver, layer, *rest)  # a real, partial shapefile in the temp folder
        assert path.exists()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vector_module, "_write_frame", write_then_die)
    out = tmp_path / "out"
    with pytest.raises(OutputWriteError, match="No space left"):
        write_network(edges, nodes, out / "scene.shp")
    assert [p.name for p in out.iterdir()] == []


def test_network_keeps_exact_input_crs_and_lies_on_the_road(plus_tif, tmp_path):
    result = _pipe().run(plus_tif)
    written = write_network(*result.frames(), tmp_path / "plus.shp")
    lines = gpd.read_file(written[0])
    assert CRS.from_user_input(lines.crs) == CRS.from_epsg(32633)
    # The road axes are x = 500030 and y = 4999970 (pixel 60 of 120 at 0.5 m).
    axes = shapely.union(shapely.LineString([(500000, 4999970), (500060, 4999970)]), shapely.LineString([(500030, 5000000), (500030, 4999940)]))
    assert shapely.hausdorff_distance(lines.union_all(), axes) < 2.0
    assert lines.length.sum() == pytest.approx(120.0, rel=0.06)
    assert np.allclose(lines["length_m"].sum(), 120.0 / 0.9996, rtol=0.06)
    nodes = gpd.read_file(tmp_path / "plus_nodes.shp")
    assert sorted(nodes["degree"]) == [1, 1, 1, 1, 4]


@pytest.mark.parametrize("fmt", ["gpkg", "geojson"])
def test_other_formats_read_back_with_the_crs(plus_tif, tmp_path, fmt):
    ext = vector_module.FORMATS[fmt][0]
    written = write_network(*_pipe().run(plus_tif).frames(), tmp_path / f"plus{ext}", fmt=fmt)
    lines = gpd.read_file(written[0], layer="edges" if fmt == "gpkg" else None)
    assert CRS.from_user_input(lines.crs) == CRS.from_epsg(32633)
    assert len(lines) == 4


def test_png_network_is_in_pixel_coordinates(tmp_path):
    path = tmp_path / "tile.png"
    Image.fromarray(plus_mask(120)).save(path)
    with pytest.warns(UserWarning, match="no georeferencing"):
        result = _pipe().run(path)
    lines = result.lines
    assert lines.crs is None
    xy = shapely.get_coordinates(lines.geometry.to_numpy())
    assert xy.min() >= 0 and xy.max() <= 120
    # The vertical road's axis is column 60 (pixel-space x = 60): x = column, y = row.
    vertical = lines[lines.geometry.apply(lambda g: abs(g.coords[0][0] - g.coords[-1][0]) < 3)]
    assert np.allclose(shapely.get_coordinates(vertical.geometry.to_numpy())[:, 0], 60.0, atol=2.0)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_geodesic_lengths_of_a_multi_line_leave_out_the_jumps_between_its_parts():
    """Two 100 m pieces 1 km apart are 200 m of road, not 1.2 km."""
    from affine import Affine

    from geoseg.raster import GeoInfo
    from geoseg.vector import lengths_m

    utm = GeoInfo(10, 10, CRS.from_epsg(32633), Affine(1, 0, 500000, 0, -1, 4000000), (1.0, 1.0), True)
    pieces = shapely.MultiLineString([[(500000, 4000000), (500100, 4000000)], [(500000, 4001000), (500100, 4001000)]])
    one = shapely.LineString([(500000, 4000000), (500100, 4000000)])
    got = lengths_m([pieces, one], utm)
    assert got[0] == pytest.approx(2 * got[1], rel=1e-9) and got[1] == pytest.approx(100.0, rel=2e-3)


def test_a_raster_output_gdal_cannot_create_is_an_output_error_and_leaves_nothing(tmp_path, monkeypatch):
    """A full disk or a refused file at the start of a raster output: one OutputWriteError
    naming the output (not GDAL's own exception), and no temporary folder left behind."""
    import rasterio
    from affine import Affine
    from rasterio.errors import RasterioIOError

    import geoseg.raster as raster_module
    from geoseg.raster import GeoInfo, RasterTileWriter

    def refuse(*args, **kwargs):
        raise RasterioIOError("No space left on device")

    geo = GeoInfo(8, 8, CRS.from_epsg(32633), Affine(1, 0, 500000, 0, -1, 4000000), (1.0, 1.0), True)
    monkeypatch.setattr(raster_module.rasterio, "open", refuse)
    with pytest.raises(OutputWriteError, match=r"mask\.tif: cannot write output \(No space left on device\)"):
        with RasterTileWriter(tmp_path / "mask.tif", geo, 1, "uint8"):
            pass
    monkeypatch.setattr(raster_module.rasterio, "open", rasterio.open)
    assert list(tmp_path.iterdir()) == []


def test_a_vector_output_gdal_refuses_is_an_output_error_and_leaves_nothing(tmp_path, monkeypatch):
    from pyogrio.errors import DataSourceError

    from geoseg.vector import write_vector

    def refuse(self, *args, **kwargs):
        raise DataSourceError("No space left on device\nmore GDAL detail")

    frame = gpd.GeoDataFrame(geometry=[shapely.LineString([(0, 0), (1, 1)])], crs=32633)
    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", refuse)
    with pytest.raises(OutputWriteError, match=r"^roads\.gpkg: cannot write output \(No space left on device\)$"):
        write_vector(frame, tmp_path / "roads.gpkg", fmt="gpkg")
    assert list(tmp_path.iterdir()) == []
