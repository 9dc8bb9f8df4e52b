"""``geoseg eval`` reads road proposals in the SpaceNet submission format (``ImageId,WKT_Pix``
CSV in pixel coordinates), georeferenced by ``--image``; a real file and GeoTIFF here."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from click.testing import CliRunner
from affine import Affine

from geoseg.cli.main import cli

X0, Y0, GSD = 500000.0, 5000400.0, 0.5  # image corner (EPSG:32633), 400 x 400 px


def _image(path: Path) -> str:
    with rasterio.open(path, "w", driver="GTiff", width=400, height=400, count=1, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(GSD, 0, X0, 0, -GSD, Y0)) as dst:
        dst.write(np.zeros((1, 400, 400), np.uint8))
    return str(path)


def _truth(path: Path) -> str:
    # a road along row 200 (y = Y0 - 100 m) from column 0 to 400, and a side road at column 100
    lines = [[(0, 200), (100, 200), (400, 200)], [(100, 200), (100, 0)]]
    geoms = [shapely.LineString([(X0 + c * GSD, Y0 - r * GSD) for c, r in line]) for line in lines]
    gpd.GeoDataFrame(geometry=geoms, crs="EPSG:32633").to_file(path)
    return str(path)


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["eval", *args])
    return res.exit_code, res.output


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    csv = tmp_path / "submission.csv"
    csv.write_text(
        "ImageId,WKT_Pix\n"
        'AOI_9_Test_img7,"LINESTRING (0 200, 100 200, 400 200)"\n'
        'AOI_9_Test_img7,"LINESTRING (100 200, 100 0)"\n'
        'AOI_9_Test_img7,"LINESTRING (300 50, 305 50)"\n'  # 5 px: under 10 px, dropped
        "AOI_9_Test_img8,LINESTRING EMPTY\n"
    )
    return {"csv": str(csv), "image": _image(tmp_path / "RGB-PanSharpen_AOI_9_Test_img7.tif"), "truth": _truth(tmp_path / "truth.gpkg")}


def test_csv_proposal_placed_by_the_image_scores_like_the_truth(files: dict[str, str]) -> None:
    code, out = _run(files["csv"], files["truth"], "--image", files["image"], "--json")
    assert code == 0, out
    scores = json.loads(out)
    assert scores["apls"] == pytest.approx(1.0) and scores["quality"] == pytest.approx(1.0)
    assert scores["pred_length_m"] == pytest.approx(300.0)  # 400 px + 200 px at 0.5 m; the 5 px bit dropped
    assert scores["pred_junctions"] == 1 and scores["matched_junctions"] == 1
    # the id comes from the image's name when the CSV has several
    code, _ = _run(files["csv"], files["truth"], "--image", files["image"], "--image-id", "AOI_9_Test_img7")
    assert code == 0


def test_csv_errors_name_the_file_and_the_fix(files: dict[str, str], tmp_path: Path) -> None:
    code, out = _run(files["csv"], files["truth"])
    assert code == 1 and "submission.csv" in out and "--image" in out
    code, out = _run(files["csv"], files["truth"], "--image", files["image"], "--image-id", "nope")
    assert code == 1 and "no rows for image id 'nope'" in out and "AOI_9_Test_img7" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("id,wkt\nx,LINESTRING (0 0, 1 1)\n")
    code, out = _run(str(bad), files["truth"], "--image", files["image"])
    assert code == 1 and "bad.csv" in out and "ImageId" in out and "WKT_Pix" in out
    point = tmp_path / "point.csv"
    point.write_text('ImageId,WKT_Pix\nAOI_9_Test_img7,"POINT (1 1)"\n')
    code, out = _run(str(point), files["truth"], "--image", files["image"])
    assert code == 1 and "line 2" in out and "Point" in out
