"""Synthetic scenes, networks and ``geoseg run`` output folders (with their manifest) for report tests."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from rasterio.crs import CRS

from tests.conftest import write_tif

GREY = 128
#: 0.5 m pixels, upper-left corner at (500000, 5000000), EPSG:32633.
TRANSFORM = Affine(0.5, 0, 500000.0, 0, -0.5, 5000000.0)
EPSG = 32633


def pixel_to_crs(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Pixel-space (x = col, y = row) points to the CRS of :data:`TRANSFORM`."""
    return [TRANSFORM @ p for p in points]


def plus_network(size: int, confidence: tuple[float, float, float, float] = (0.1, 0.5, 0.9, float("nan"))) -> gpd.GeoDataFrame:
    """Four edges from the centre of a ``size`` px square to points 10 px inside its borders."""
    c, lo, hi = size / 2, 10.5, size - 10.5
    arms = [[(c, c), (lo, c)], [(c, c), (hi, c)], [(c, c), (c, lo)], [(c, c), (c, hi)]]
    lines = [shapely.LineString(pixel_to_crs(arm)) for arm in arms]
    return gpd.GeoDataFrame(
        {"length_m": [shapely.length(g) for g in lines], "confidence": list(confidence)},
        geometry=lines,
        crs=f"EPSG:{EPSG}",
    )


def grey_scene(path: Path, size: int, bands: int = 1, dtype: str = "uint8") -> Path:
    """A constant grey ``size`` x ``size`` GeoTIFF on :data:`TRANSFORM`."""
    return write_tif(path, np.full((bands, size, size), GREY, dtype=dtype), CRS.from_epsg(EPSG), TRANSFORM)


def write_manifest(outdir: Path, scenes: list[dict]) -> Path:
    """The manifest ``geoseg run`` writes (format version 1)."""
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / "geoseg-manifest.json"
    manifest = {"format": "geoseg-manifest", "version": 1, "pipeline": "road_centerlines", "format_ext": "shp", "scenes": scenes}
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def batch(tmp_path: Path) -> dict[str, Path]:
    """An output folder of three scenes: ``good`` (truth = its network), ``half`` (truth = two of
    its four arms), ``broken`` (failed). Truth files in ``truth/``: ``good_centerlines.geojson``
    and ``half.geojson``."""
    scenes, out, truth = tmp_path / "scenes", tmp_path / "out", tmp_path / "truth"
    for folder in (scenes, out, truth):
        folder.mkdir()
    entries = []
    for name in ("good", "half"):
        grey_scene(scenes / f"{name}.tif", 120, bands=3)
        plus_network(120).to_file(out / f"{name}.shp")
        entries.append({"input": str(scenes / f"{name}.tif"), "status": "done", "outputs": [str(out / f"{name}.shp")],
                        "seconds": 1.25, "error": None, "warnings": []})
    plus_network(120).to_file(truth / "good_centerlines.geojson")
    plus_network(120).iloc[:2].to_file(truth / "half.geojson")
    entries.append({"input": str(scenes / "broken.tif"), "status": "failed", "outputs": [], "seconds": 0.01,
                    "error": "broken.tif: not a readable raster", "warnings": []})
    write_manifest(out, entries)
    return {"out": out, "truth": truth, "scenes": scenes}

