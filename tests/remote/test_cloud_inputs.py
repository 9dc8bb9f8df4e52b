"""Scenes behind URLs, GDAL virtual paths and STAC items, and COG outputs (issue 26).

A loopback HTTP server with byte ranges (:mod:`tests.remote.range_server`) serves a COG; geoseg
reads it by ``/vsicurl/http://...`` and by the plain ``http://`` URL, through the CLI as a user
does, and the networks must equal the local run's. With ``--bbox`` over a quarter of the scene,
the bytes served must stay under 40 % of the file. No test needs the internet.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import shapely
from affine import Affine
from rasterio.crs import CRS

from geoseg.inputs import expand_scenes, is_remote, read_stac_item, scene_input
from geoseg.pipeline.batch import MANIFEST_NAME
from geoseg.errors import ConfigError, RasterReadError
from geoseg.pipeline import load_pipeline
from geoseg.pipeline.batch import run_batch
from geoseg.raster import GeoInfo, write_raster
from tests.cli.test_cli_basics import geoseg
from tests.conftest import SAMPLE_DATA
from tests.remote.cog_check import cog_problems

SIZE = 2048  # px on a side of the served scene
GSD = 0.5
ORIGIN = (500000.0, 5000000.0)
TRANSFORM = Affine(GSD, 0, ORIGIN[0], 0, -GSD, ORIGIN[1])
#: The top-left quarter of the scene, in its CRS (EPSG:32633).
QUARTER = (ORIGIN[0], ORIGIN[1] - SIZE * GSD / 2, ORIGIN[0] + SIZE * GSD / 2, ORIGIN[1])


def _road_grid(size: int) -> np.ndarray:
    """A 0/255 road mask: a grid of 8 m roads every 150 m or so, crossing the whole scene."""
    rng = np.random.default_rng(7)
    mask = np.zeros((size, size), dtype=np.uint8)
    for start in range(40, size, 300):
        offset = start + int(rng.integers(0, 60))
        mask[offset : offset + 16, :] = 255
        mask[:, offset : offset + 16] = 255
    return mask


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``roads.tif``: a 2048 px road mask as a COG of 256 px tiles.

    Uncompressed, so that the bytes served count the tiles fetched rather than how well each
    one compresses.
    """
    folder = tmp_path_factory.mktemp("served")
    plain = folder.parent / "roads_plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint8",
                       crs=CRS.from_epsg(32633), transform=TRANSFORM) as dst:  # fmt: skip
        dst.write(_road_grid(SIZE), 1)
    rasterio.shutil.copy(plain, folder / "roads.tif", driver="COG", BLOCKSIZE="256", COMPRESS="NONE")
    return folder


def _network(path: Path) -> list[str]:
    """The lines of a written network, as sorted WKT with coordinates rounded to 1 mm."""
    frame = gpd.read_file(path)
    assert len(frame) > 0, f"{path} holds no lines"
    return sorted(shapely.to_wkt(g, rounding_precision=3) for g in frame.geometry)


def _run(*args: object, cwd: Path) -> tuple[int, str]:
    """``geoseg run ...`` as a user types it; its exit code and stderr."""
    done = geoseg("run", *args, "--progress", "none", cwd=cwd)
    return done.returncode, done.stderr


def test_a_remote_cog_gives_the_local_network_by_vsicurl_and_by_url(served, range_server, tmp_path):
    server = range_server(served)
    code, err = _run("mask_to_centerlines", served / "roads.tif", "-o", "local", cwd=tmp_path)
    assert code == 0, err
    for name, url in (("vsicurl", "/vsicurl/" + server.url("roads.tif")), ("url", server.url("roads.tif"))):
        code, err = _run("mask_to_centerlines", url, "-o", name, cwd=tmp_path)
        assert code == 0, err
        assert _network(tmp_path / name / "roads.shp") == _network(tmp_path / "local" / "roads.shp")
        manifest = json.loads((tmp_path / name / MANIFEST_NAME).read_text())
        assert manifest["scenes"][0]["input"] == url  # as given: no folded double slash
    assert server.requests("roads.tif") > 2  # read window by window, not fetched whole


def test_a_bbox_over_a_quarter_reads_at_most_40_percent_of_the_remote_file(served, range_server, tmp_path):
    server = range_server(served)
    box = [str(v) for v in QUARTER]
    code, err = _run("mask_to_centerlines", "/vsicurl/" + server.url("roads.tif"), "-o", "remote", "--bbox", *box, cwd=tmp_path)
    assert code == 0, err
    share = server.bytes_sent("roads.tif") / (served / "roads.tif").stat().st_size
    assert share <= 0.40, f"a quarter of the scene fetched {share:.0%} of the file"
    code, err = _run("mask_to_centerlines", served / "roads.tif", "-o", "local", "--bbox", *box, cwd=tmp_path)
    assert code == 0, err
    assert _network(tmp_path / "remote" / "roads.shp") == _network(tmp_path / "local" / "roads.shp")


def _item(href: str, item_id: str = "roads-2026-12-05", **assets: dict) -> dict:
    """A STAC Item whose visual asset is ``href``."""
    x0, y0, x1, y1 = 14.99, 45.10, 15.02, 45.12
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": ["https://stac-extensions.github.io/projection/v1.1.0/schema.json"],
        "id": item_id,
        "bbox": [x0, y0, x1, y1],
        "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]},
        "properties": {"datetime": "2026-12-05T10:00:00Z", "proj:code": "EPSG:32633"},
        "assets": {"thumbnail": {"href": "thumb.png", "type": "image/png", "roles": ["thumbnail"]},
                   "visual": {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized", "roles": ["visual"]},
                   **assets},
        "links": [],
    }  # fmt: skip


def test_a_stac_item_runs_its_visual_asset_and_is_recorded(served, range_server, tmp_path):
    server = range_server(served)
    item = tmp_path / "item.json"
    signed = server.url("roads.tif") + "?sig=s3cr3t&se=2030-01-01"  # a signed href: its secret is never written down
    item.write_text(json.dumps(_item(signed)))
    code, err = _run("mask_to_centerlines", served / "roads.tif", "-o", "local", cwd=tmp_path)
    assert code == 0, err
    code, err = _run("mask_to_centerlines", item, "-o", "stac", "--report", cwd=tmp_path)
    assert code == 0, err
    assert _network(tmp_path / "stac" / "roads-2026-12-05.shp") == _network(tmp_path / "local" / "roads.shp")
    entry = json.loads((tmp_path / "stac" / MANIFEST_NAME).read_text())["scenes"][0]
    assert entry["input"] == str(item)
    assert entry["stac"] == {"item": "roads-2026-12-05", "asset": "visual", "href": server.url("roads.tif") + "?sig=***&se=***",
                             "bbox": [14.99, 45.10, 15.02, 45.12], "geometry": _item("x")["geometry"], "crs": "EPSG:32633"}  # fmt: skip
    report = (tmp_path / "stac" / "report.html").read_text()
    assert "STAC item roads-2026-12-05, asset visual" in report
    assert not [p for p in (tmp_path / "stac").rglob("*") if p.is_file() and b"s3cr3t" in p.read_bytes()]
    code, err = _run("mask_to_centerlines", item, "-o", "stac", "-v", cwd=tmp_path)
    assert code == 0 and "1 of 1 scene(s) already done" in err, err
    shutil.copy(served / "roads.tif", served / "roads_v2.tif")  # the item now points at another raster
    item.write_text(json.dumps(_item(server.url("roads_v2.tif"))))
    code, err = _run("mask_to_centerlines", item, "-o", "stac", "-v", cwd=tmp_path)
    assert code == 0 and "the raster it reads changed since the earlier run; redoing the scene" in err, err
    assert server.bytes_sent("roads_v2.tif") > 0


def test_a_stac_item_behind_a_url_with_a_relative_href(served, range_server, tmp_path):
    folder = tmp_path / "catalog"
    folder.mkdir()
    shutil.copy(served / "roads.tif", folder / "roads.tif")
    (folder / "item.json").write_text(json.dumps(_item("./roads.tif", item_id="rel")))
    server = range_server(folder)
    code, err = _run("mask_to_centerlines", server.url("item.json"), "-o", "out", "--bbox", *map(str, QUARTER), cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "out" / "rel.shp").is_file()
    assert server.bytes_sent("roads.tif") > 0  # the relative href was resolved against the item's URL


def test_asset_key_chooses_the_asset_and_a_missing_one_is_named(tmp_path):
    item = tmp_path / "item.json"
    mask = SAMPLE_DATA / "scene_a_mask.tif"
    item.write_text(json.dumps(_item("missing.tif", mask={"href": str(mask), "type": "image/tiff", "roles": ["data"]})))
    assert read_stac_item(str(item), asset="mask").href == str(mask)
    assert read_stac_item(str(item)).href == str(tmp_path / "missing.tif")  # visual, resolved beside the item
    code, err = _run("mask_to_centerlines", item, "-o", "out", "--asset", "nir", cwd=tmp_path)
    assert code != 0
    assert f"{item}: the item has no asset 'nir' (its assets: thumbnail, visual, mask)" in err
    code, err = _run("mask_to_centerlines", item, "-o", "out", "--asset", "mask", cwd=tmp_path)
    assert code == 0, err
    assert (tmp_path / "out" / "roads-2026-12-05.shp").is_file()


def test_an_item_that_cannot_be_used_fails_alone_in_one_line(served, range_server, tmp_path):
    collection = tmp_path / "collection.json"
    collection.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_item(str(SAMPLE_DATA / "scene_a_mask.tif"), item_id="good")))
    gone = range_server(served).url("gone.json")
    code, err = _run("mask_to_centerlines", collection, gone, good, "-o", "out", cwd=tmp_path)
    assert code == 1
    assert f"{collection}: not a STAC Item (a GeoJSON Feature with assets; this is a FeatureCollection); give one item of the collection" in err
    assert f"{gone}: the server answered HTTP 404" in err
    scenes = {e["input"]: e["status"] for e in json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["scenes"]}
    assert scenes == {str(collection): "failed", gone: "failed", str(good): "done"}
    assert (tmp_path / "out" / "good.shp").is_file()
    # the item cannot be read now (its server is down, say): what was done stays done
    good.write_text("{not json")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    code, err = _run("mask_to_centerlines", good, "a/item.json", "b/item.json", "-o", "out", "-v", cwd=tmp_path)
    assert code == 1 and "cannot check it now" in err and "keeping the earlier result" in err, err
    scenes = {e["input"]: e["status"] for e in json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["scenes"]}
    assert scenes[str(good)] == "done" and scenes["a/item.json"] == scenes["b/item.json"] == "failed"  # same stem, both fail alone


def test_secrets_of_urls_are_hidden_everywhere_they_are_written():
    from geoseg.inputs import redact

    assert redact("https://h/a(1).tif?sig=abc&se=2030") == "https://h/a(1).tif?sig=***&se=***"
    assert redact("GDAL: (https://h/a.tif?sig=abc) failed") == "GDAL: (https://h/a.tif?sig=***) failed"
    assert redact("/vsis3/b/k.tif?x=secret") == "/vsis3/b/k.tif?x=***"
    assert redact("/vsicurl?url=https%3A%2F%2Fh%2Fa.tif&header.Authorization=Bearer%20t0k") == "/vsicurl?url=***&header.Authorization=***"
    assert redact("https://h/a.tif?t0ken") == "https://h/a.tif?***"
    assert redact("https://me:pa55@h/a.tif and s3://b/c.tif") == "https://***@h/a.tif and s3://b/c.tif"
    with pytest.raises(ConfigError, match="differ only in the values of their query strings"):
        run_batch(load_pipeline("mask_to_centerlines"), ["https://h/a.tif?v=1", "https://h/a.tif?v=2"], "out")


def test_stac_api_item_urls_and_hrefs_from_the_server_root():
    from geoseg.inputs import _resolve_href, is_stac_name

    assert is_stac_name("https://h.example/api/stac/v1/collections/sentinel-2-l2a/items/S2B_T33TWM_20260101")
    assert not is_stac_name("https://h.example/api/stac/v1/collections/c/items/scene.tif")
    assert is_stac_name("/vsicurl/https://h.example/item.json")  # refused in words: items are read over http(s)
    for name in ("/vsicurl/https://h.example/item.json", "s3://bucket/item.json"):  # one plain line, not wrapped twice
        with pytest.raises(RasterReadError) as refused:
            read_stac_item(name)
        assert str(refused.value) == f"{name}: STAC items are read from local files or http(s) URLs; download it first"
    assert is_stac_name("catalog/item.geojson")
    assert _resolve_href("/data/a.tif", "https://h.example/stac/item.json") == "https://h.example/data/a.tif"
    assert _resolve_href("a.tif", "https://h.example/stac/item.json") == "https://h.example/stac/a.tif"
    assert _resolve_href("s3://b/a.tif", "https://h.example/stac/item.json") == "s3://b/a.tif"


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"assets": {"B04": "a.tif"}}, "'str' object has no attribute 'get'"),  # an asset that is not an object
        ({"properties": {"proj:epsg": "UTM 33"}}, "invalid literal for int()"),
        ({"bbox": ["west", 52, 14, 53]}, "could not convert string to float: 'west'"),
    ],
)
def test_a_malformed_stac_item_is_a_read_error_naming_it(tmp_path, change, detail):
    item = {"type": "Feature", "id": "x", "assets": {"visual": {"href": "a.tif", "type": "image/tiff"}}, **change}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    with pytest.raises(RasterReadError, match=f"^{re.escape(str(path))}: malformed STAC Item \\(.*{re.escape(detail)}"):
        read_stac_item(str(path))


def test_http_errors_become_one_line_naming_the_input_and_the_batch_goes_on(served, range_server, tmp_path):
    server = range_server(served)
    shutil.copy(served / "roads.tif", served / "denied.tif")
    server.fail("denied.tif", 403)
    missing, denied = server.url("nowhere.tif"), "/vsicurl/" + server.url("denied.tif")
    local = tmp_path / "a.tif"
    shutil.copy(SAMPLE_DATA / "scene_a_mask.tif", local)
    code, err = _run("mask_to_centerlines", missing, denied, local, "-o", "out", cwd=tmp_path)
    assert code == 1
    assert f"{missing}: not found on the server (HTTP 404)" in err
    assert f"{denied}: access denied" in err
    scenes = {e["input"]: e["status"] for e in json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["scenes"]}
    assert scenes == {missing: "failed", denied: "failed", str(local): "done"}


def test_http_errors_are_told_from_the_server_not_from_the_name_and_also_during_reads(served, range_server, monkeypatch):
    from geoseg.raster import open_dataset, read_dataset_window, read_geoinfo

    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    server = range_server(served)
    shutil.copy(served / "roads.tif", served / "timeout_500.tif")  # a name that looks like an error
    url = "/vsicurl/" + server.url("timeout_500.tif")
    server.fail("timeout_500.tif", 404)
    with pytest.raises(RasterReadError, match="not found on the server"):
        open_dataset(url)
    shutil.copy(served / "roads.tif", served / "timeout_404.tif")  # GDAL remembers the 404 of a URL: another file
    url = "/vsicurl/" + server.url("timeout_404.tif")
    geo, _ = read_geoinfo(url)
    with open_dataset(url) as dataset:
        read_dataset_window(dataset, url, geo, 0, 0, 256, 256)
        server.fail("timeout_404.tif", 503)  # the server fails once the scene is being read
        with pytest.raises(RasterReadError) as failed:
            read_dataset_window(dataset, url, geo, 1024, 1024, 256, 256)
    assert str(failed.value).startswith(f"{url}: cannot read pixels: the server failed (HTTP 503)")


def test_a_server_that_stops_answering_times_out_in_one_line(served, range_server, tmp_path, monkeypatch):
    server = range_server(served)
    server.stall("roads.tif", 30)
    monkeypatch.setenv("GDAL_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("GDAL_HTTP_MAX_RETRY", "0")
    url = server.url("roads.tif")
    done = geoseg("info", url, cwd=tmp_path)
    assert done.returncode != 0
    assert f"{url}: the server did not answer in time" in done.stderr


def test_a_member_of_a_zip_runs_and_is_named_after_the_member(tmp_path):
    archive = tmp_path / "scenes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(SAMPLE_DATA / "scene_a_mask.tif", "inner/scene_a_mask.tif")
    name = f"/vsizip/{archive}/inner/scene_a_mask.tif"  # /vsizip//tmp/...: the double slash is kept
    code, err = _run("mask_to_centerlines", name, SAMPLE_DATA / "scene_a_mask.tif", "-o", "zip", "--keep-folders", cwd=tmp_path)
    assert code == 0, err
    outputs = sorted(p.relative_to(tmp_path / "zip").as_posix() for p in (tmp_path / "zip").rglob("*.shp"))
    assert len(outputs) == 4 and all(o.endswith(("scene_a_mask.shp", "scene_a_mask_nodes.shp")) for o in outputs)
    assert _network(tmp_path / "zip" / [o for o in outputs if "inner" in o and "nodes" not in o][0]) == _network(
        tmp_path / "zip" / [o for o in outputs if "inner" not in o and "nodes" not in o][0]
    )
    code, err = _run("mask_to_centerlines", f"/vsizip/{archive}/nothere.tif", "-o", "zip2", cwd=tmp_path)
    assert code == 1 and "no such file (or no such member of the archive)" in err


def test_names_are_not_globbed_normalised_or_looked_up_on_disk():
    scenes = expand_scenes(["/vsicurl/https://h.example/a/b.tif?sig=x*y", "s3://bucket/c.tif", "/vsizip//data/s.zip/d.tif"])
    assert [(s.name, s.stem, s.remote) for s in scenes] == [
        ("/vsicurl/https://h.example/a/b.tif?sig=x*y", "b", True),
        ("s3://bucket/c.tif", "c", True),
        ("/vsizip//data/s.zip/d.tif", "d", True),
    ]
    assert all(s.exists() for s in scenes)  # not looked for locally
    assert not is_remote("scenes/a.tif") and not is_remote(os.path.abspath("a.tif"))
    assert scene_input("https://h.example/x/y.tif").folder.as_posix() == "/h.example/x"
    from geoseg.pipeline.batch import output_folders

    folders = output_folders(["https://user:pw@h.example:8443/a/x.tif", "https://h.example/b/y.tif?sig=1"], "out", keep_folders=True)
    assert folders == {"https://***@h.example:8443/a/x.tif": Path("out/a"), "https://h.example/b/y.tif?sig=***": Path("out/b")}
    item = Path("stac/items/item.json")  # a local STAC item: its local folder, whatever its asset's href
    assert scene_input(str(item), strict=False).folder == Path(os.path.abspath("stac/items"))
    with pytest.raises(RasterReadError, match="no file matches"):
        expand_scenes(["nowhere/*.tif"])
    with pytest.raises(RasterReadError, match="--asset visual: picks an asset of STAC items"):
        expand_scenes(["a.tif"], asset="visual")


def test_raster_outputs_are_cloud_optimized(served, range_server, tmp_path):
    server = range_server(SAMPLE_DATA)
    code, err = _run("road_segmentation", server.url("scene_a.tif"), "-o", "seg", "--set", f"model={SAMPLE_DATA / 'roads.mjcr.npz'}", cwd=tmp_path)
    assert code == 0, err
    assert cog_problems(tmp_path / "seg" / "scene_a.tif") == []
    with rasterio.open(tmp_path / "seg" / "scene_a.tif") as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.read(1).max() == 255  # roads found, written as 0/255


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_written_rasters_have_overviews_that_keep_their_values(tmp_path, dtype):
    geo = GeoInfo(1500, 1100, CRS.from_epsg(32633), TRANSFORM, (GSD, GSD), True)
    values = _road_grid(1500)[:1100] if dtype == "uint8" else np.linspace(0, 1, 1500 * 1100, dtype=np.float32).reshape(1100, 1500)
    path = write_raster(tmp_path / "out.tif", values, geo)
    assert cog_problems(path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]  # no staging file left
    with rasterio.open(path) as ds:
        assert ds.overviews(1) == [2, 4]
        np.testing.assert_array_equal(ds.read(1), values)
        overview = ds.read(1, out_shape=(275, 375))
    if dtype == "uint8":
        assert set(np.unique(overview)) <= {0, 255}  # nearest values: a mask stays a mask
    else:
        assert abs(float(overview.mean()) - float(values.mean())) < 1e-3  # averages


def test_an_item_declaring_another_crs_than_its_raster_is_warned_about(tmp_path):
    item = _item(str(SAMPLE_DATA / "scene_a_mask.tif"), item_id="wrong-crs")
    item["properties"]["proj:code"] = "EPSG:3857"
    (tmp_path / "item.json").write_text(json.dumps(item))
    code, err = _run("mask_to_centerlines", tmp_path / "item.json", "-o", "out", cwd=tmp_path)
    assert code == 0, err
    entry = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["scenes"][0]
    assert entry["crs"] == "EPSG:32633"  # the raster's own
    assert any("the STAC item declares EPSG:3857, but its visual asset has EPSG:32633" in w for w in entry["warnings"])
