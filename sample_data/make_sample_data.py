"""Render and write geoseg's committed sample data (deterministic).

Usage::

    python sample_data/make_sample_data.py [--out DIR]

Writes, into ``DIR`` (default: the folder of this script):

- ``scene_a.tif``, ``scene_b.tif``: 512 x 512 RGB GeoTIFFs at 0.3 m (JPEG in YCbCr, tiled),
  scene A in EPSG:32633 with an X-crossing, scene B in EPSG:25832 with T-junctions and curves;
- ``scene_a_mask.tif``, ``scene_b_mask.tif``: road masks, uint8 0/255, same grid (DEFLATE);
- ``scene_a_centerlines.geojson``, ``scene_b_centerlines.geojson``: centerlines in the scene
  CRS with attribute ``width_m``, as a network: lines end at junctions, where they share a
  vertex (as in OpenStreetMap and SpaceNet truths, which APLS needs);
- ``tile_c.png``, ``tile_c_mask.png``: a 256 x 256 RGB tile and its 0/255 road mask without
  georeferencing (pixel coordinates);
- ``roads.mjcr.npz``: a small MJCR road classifier trained on scene B only (so scene A and
  tile C are unseen scenes for it), used by the README's main command.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from PIL import Image
from rasterio.transform import Affine

from geoseg.classifiers.mjcr import MJCRClassifier
from geoseg.classifiers.training_data import mask_labels
from geoseg.metrics import join_line_ends
from geoseg.raster import read_raster
from geoseg.synthetic import SyntheticScene, render_scene

GSD_M = 0.3


@dataclass(frozen=True)
class GeoSample:
    """A georeferenced sample: file stem, CRS, upper-left corner and render arguments."""

    name: str
    crs: str
    west: float
    north: float
    seed: int
    n_through: tuple[int, int]
    n_branches: int


SAMPLES = (
    GeoSample("scene_a", "EPSG:32633", 533_000.0, 5_290_000.0, seed=1, n_through=(1, 1),
              n_branches=2),
    GeoSample("scene_b", "EPSG:25832", 690_000.0, 5_335_000.0, seed=2, n_through=(1, 0),
              n_branches=2),
)


def write_geotiff_scene(scene: SyntheticScene, sample: GeoSample, out: Path) -> None:
    """Write the image, mask and centerlines of a scene as GeoTIFFs and GeoJSON.

    Parameters
    ----------
    scene : SyntheticScene
        Rendered scene (pixel-space geometry).
    sample : GeoSample
        Name, CRS and upper-left corner of the scene.
    out : Path
        Output folder (must exist).
    """
    _, height, width = scene.image.shape
    transform = Affine(scene.gsd_m, 0.0, sample.west, 0.0, -scene.gsd_m, sample.north)
    profile = dict(driver="GTiff", height=height, width=width, crs=sample.crs,
                   transform=transform, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(out / f"{sample.name}.tif", "w", count=3, dtype="uint8",
                       compress="JPEG", photometric="YCBCR", jpeg_quality=85,
                       **profile) as dst:
        dst.write(scene.image)
    with rasterio.open(out / f"{sample.name}_mask.tif", "w", count=1, dtype="uint8",
                       compress="DEFLATE", nodata=None, **profile) as dst:
        dst.write(scene.road_mask.astype(np.uint8)[None] * 255)
    a, b, c, d, e, f = transform[:6]
    pieces, widths = noded_network(scene.centerlines, scene.road_width_m)
    lines = [shapely.affinity.affine_transform(line, (a, b, d, e, c, f)) for line in pieces]
    gdf = gpd.GeoDataFrame({"width_m": np.round(widths, 2)}, geometry=lines, crs=sample.crs)
    path = out / f"{sample.name}_centerlines.geojson"
    path.unlink(missing_ok=True)
    gdf.to_file(path, driver="GeoJSON", engine="pyogrio", layer_options={"COORDINATE_PRECISION": 3})


def noded_network(lines: list[shapely.LineString], widths: np.ndarray, join_px: float = 2.0) -> tuple[list[shapely.LineString], np.ndarray]:
    """Centerlines as a network: split where they cross or meet, each piece with its road's width.

    Branch roads end on the road they leave (within ``join_px``); crossings get a vertex shared
    by both roads.
    """
    joined = join_line_ends(lines, join_px)
    pieces = list(shapely.get_parts(shapely.node(shapely.MultiLineString(joined))))
    middles = [p.interpolate(0.5, normalized=True) for p in pieces]
    owner = [int(np.argmin([line.distance(m) for line in joined])) for m in middles]
    return pieces, np.asarray(widths, dtype=float)[owner]


def write_png_tile(scene: SyntheticScene, name: str, out: Path) -> None:
    """Write a scene as an RGB PNG and its road mask as a 0/255 greyscale PNG.

    Parameters
    ----------
    scene : SyntheticScene
        Rendered scene.
    name : str
        File stem.
    out : Path
        Output folder (must exist).
    """
    Image.fromarray(np.ascontiguousarray(scene.image.transpose(1, 2, 0)), "RGB").save(
        out / f"{name}.png", optimize=True)
    Image.fromarray(scene.road_mask.astype(np.uint8) * 255, "L").save(
        out / f"{name}_mask.png", optimize=True)


def main(argv: list[str] | None = None) -> None:
    """Render all samples into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="output folder (default: the folder of this script)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for sample in SAMPLES:
        scene = render_scene(512, 512, gsd_m=GSD_M, seed=sample.seed, n_through=sample.n_through,
                             n_branches=sample.n_branches)
        write_geotiff_scene(scene, sample, args.out)
    tile = render_scene(256, 256, gsd_m=GSD_M, seed=3, n_through=(1, 1), n_branches=1)
    write_png_tile(tile, "tile_c", args.out)
    train_sample_model(args.out)


def train_sample_model(out: Path) -> None:
    """Train the sample MJCR model on scene B and write ``roads.mjcr.npz`` (deterministic)."""
    scene = read_raster(out / "scene_b.tif")
    labels = mask_labels(scene, out / "scene_b_mask.tif")
    model = MJCRClassifier.train([scene.array], [labels], [scene.geo.gsd_m], seed=0, band_names=scene.band_names)
    model.provenance = {"scenes": ["sample_data/scene_b.tif"], "seed": 0}
    model.save(out / "roads.mjcr.npz")


if __name__ == "__main__":
    main()
