"""Overlays: drawn exactly where the lines are, read decimated, refused across CRSs."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.features
from rasterio.crs import CRS
from rasterio.windows import Window
from scipy import ndimage

from geoseg.errors import InputMismatchError
from geoseg.report import network_stats, render_overlay, save_overlay
from geoseg.report.overlay import confidence_colour
from tests.conftest import write_tif
from tests.report.conftest import EPSG, GREY, TRANSFORM, grey_scene, plus_network

SIZE = 120
WIDTH = 3


def drawn_pixels(image: np.ndarray) -> np.ndarray:
    """Pixels that are no longer the scene's grey."""
    return np.any(image != GREY, axis=-1)


def line_raster(network, shape: tuple[int, int], transform=TRANSFORM) -> np.ndarray:
    return rasterio.features.rasterize(((g, 1) for g in network.geometry), out_shape=shape, transform=transform, all_touched=True) > 0


def test_overlay_is_drawn_on_the_lines_and_nowhere_else(tmp_path: Path) -> None:
    scene = grey_scene(tmp_path / "grey.tif", SIZE)
    network = plus_network(SIZE)
    image = np.asarray(render_overlay(scene, network, line_width=WIDTH, legend=False))
    assert image.shape == (SIZE, SIZE, 3)  # one band shown grey as RGB, no legend
    lines = line_raster(network, (SIZE, SIZE))
    distance = ndimage.distance_transform_edt(~lines)
    drawn = drawn_pixels(image)
    marker = WIDTH + 2 + 1  # node marker radius and its outline
    ends = [(SIZE // 2, SIZE // 2), (SIZE // 2, 10), (SIZE // 2, SIZE - 11), (10, SIZE // 2), (SIZE - 11, SIZE // 2)]
    near_node = np.zeros_like(drawn)
    for r, c in ends:
        near_node[max(0, r - marker) : r + marker + 1, max(0, c - marker) : c + marker + 1] = True
    # Lines (with their 1 px halo) lie within 1.5 px of the rasterized lines; markers at nodes.
    assert drawn.sum() > 4 * 90 * WIDTH
    assert np.all(distance[drawn & ~near_node] <= WIDTH / 2 + 1.5)
    assert not drawn[distance > marker * 1.5].any()  # square corners: radius times sqrt(2)
    # Every line pixel away from the nodes is covered.
    assert drawn[lines & ~near_node].all()


def test_edges_are_coloured_by_confidence_on_a_fixed_scale_and_nodes_marked(tmp_path: Path) -> None:
    scene = grey_scene(tmp_path / "grey.tif", SIZE)
    network = plus_network(SIZE, confidence=(0.1, 0.5, 0.9, float("nan")))
    image = np.asarray(render_overlay(scene, network, line_width=WIDTH, legend=False))
    c = SIZE // 2
    # Middle of each arm (pixel centres on the line): left, right, up, down.
    assert tuple(image[c, 30]) == confidence_colour(0.1)
    assert tuple(image[c, 90]) == confidence_colour(0.5)
    assert tuple(image[30, c]) == confidence_colour(0.9)
    assert tuple(image[90, c]) == (205, 205, 205)  # no confidence: grey
    assert confidence_colour(0.1) != confidence_colour(0.9)
    assert tuple(image[c, c]) == (255, 255, 255)  # junction: white disc
    assert tuple(image[c, 10]) == (0, 0, 0)  # dead end: black square
    stats = network_stats(network)
    assert (stats.junctions, stats.dead_ends, stats.edges) == (1, 4, 4)
    assert stats.mean_confidence == pytest.approx(0.5)  # equal arm lengths; NaN ignored
    # the scale is fixed: the same confidence has the same colour in a network of weak edges
    weak = np.asarray(render_overlay(scene, plus_network(SIZE, confidence=(0.1, 0.1, 0.2, 0.2)), line_width=WIDTH, legend=False))
    assert tuple(weak[c, 30]) == confidence_colour(0.1) and tuple(weak[30, c]) == confidence_colour(0.2)
    assert stats.road_km == pytest.approx(4 * 49.5 * 0.5 / 1000)


def test_legend_strip_is_below_the_unchanged_scene(tmp_path: Path) -> None:
    scene = grey_scene(tmp_path / "grey.tif", 400, bands=3)
    network = plus_network(400)
    bare = np.asarray(render_overlay(scene, network, legend=False))
    framed = np.asarray(render_overlay(scene, network))
    assert framed.shape[1] == 400 and framed.shape[0] > 400 + 20
    assert np.array_equal(framed[:400], bare)


def test_uint16_is_stretched_by_percentiles(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(1000, 3000, 100), (100, 1)).astype(np.uint16)
    scene = write_tif(tmp_path / "u16.tif", ramp, CRS.from_epsg(EPSG), TRANSFORM)
    image = np.asarray(render_overlay(scene, None, legend=False))
    assert image[0, 0].tolist() == [0, 0, 0] and image[0, -1].tolist() == [255, 255, 255]
    assert 100 < image[0, 50, 0] < 155


def test_network_in_another_crs_is_refused(tmp_path: Path) -> None:
    scene = grey_scene(tmp_path / "grey.tif", SIZE)
    network = plus_network(SIZE).to_crs(4326)
    path = tmp_path / "wgs84.geojson"
    network.to_file(path)
    with pytest.raises(InputMismatchError, match=r"wgs84.geojson: its CRS \(EPSG:4326\) is not the CRS of the scene .*grey.tif \(EPSG:32633\)"):
        render_overlay(scene, path)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_pixel_scene_with_pixel_network(tmp_path: Path) -> None:
    scene = write_tif(tmp_path / "tile.tif", np.full((1, 50, 50), GREY, np.uint8), None, None)
    network = plus_network(50)
    pixel = network.set_geometry(network.geometry.affine_transform([2, 0, 0, -2, -1_000_000, 10_000_000])).set_crs(None, allow_override=True)
    drawn = drawn_pixels(np.asarray(render_overlay(scene, pixel, legend=False)))
    assert drawn[25, 15:35].all() and not drawn[:5, :5].any()
    with pytest.raises(InputMismatchError, match="none"):
        render_overlay(scene, network)


def write_large_scene(path: Path, size: int) -> Path:
    """A tiled, deflated 3-band scene written block by block (cheap constant data)."""
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "deflate", "crs": CRS.from_epsg(EPSG), "transform": TRANSFORM}
    block = np.full((3, 512, 512), GREY, np.uint8)
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 512):
            for col in range(0, size, 512):
                h, w = min(512, size - row), min(512, size - col)
                dst.write(block[:, :h, :w], window=Window(col, row, w, h))
    return path


def test_max_size_reads_decimated_never_the_full_array(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size, max_size = 6000, 500
    scene = write_large_scene(tmp_path / "large.tif", size)
    network = plus_network(size)
    shapes = []
    original = rasterio.io.DatasetReader.read

    def spy(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        shapes.append(kwargs.get("out_shape"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    tracemalloc.start()
    try:
        image = np.asarray(render_overlay(scene, network, max_size=max_size, legend=False))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert image.shape == (max_size, max_size, 3)
    assert shapes == [(3, max_size, max_size)]
    full = 3 * size * size
    assert peak < full / 20, f"peak {peak / 2**20:.1f} MiB for a {full / 2**20:.0f} MiB scene"
    # The network is scaled with the scene: the horizontal arm sits on the middle row.
    assert drawn_pixels(image)[max_size // 2, 100:400].all()


def test_save_overlay_writes_a_png(tmp_path: Path) -> None:
    scene = grey_scene(tmp_path / "grey.tif", SIZE)
    plus_network(SIZE).to_file(tmp_path / "net.gpkg", layer="edges")
    out = save_overlay(scene, tmp_path / "net.gpkg", tmp_path / "sub" / "overlay.png", max_size=60)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
