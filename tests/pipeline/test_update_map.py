"""Map updating through pipelines: the shipped update_map on the sample scenes with stale maps, tiling, batches, GeoPackage output."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import LineString

import geoseg
from geoseg.pipeline.batch import run_batch
from geoseg.report import write_report

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
MODEL = SAMPLE / "roads.mjcr.npz"

#: Stale maps of the sample scenes: truth roads deleted (found again as new) and fake roads added (to be found missing), in the scene's CRS.
STALE = {
    "scene_a": ([6], [LineString([(533100, 5289990), (533150, 5289960)])]),
    "scene_b": ([4], [LineString([(690020, 5334990), (690100, 5334950)])]),
}


def stale_map(scene: str, path: Path, crs: str | int | None = 4326) -> tuple[Path, gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Write the stale map of a sample scene (in ``crs``); returns it, the deleted roads and the fakes (scene CRS)."""
    truth = gpd.read_file(SAMPLE / f"{scene}_centerlines.geojson")
    deleted, fakes = STALE[scene]
    fake = gpd.GeoDataFrame({"width_m": [8.0] * len(fakes)}, geometry=fakes, crs=truth.crs)
    stale = gpd.GeoDataFrame(pd.concat([truth.drop(index=deleted), fake], ignore_index=True), crs=truth.crs)
    (stale.to_crs(crs) if crs is not None else stale).to_file(path)
    return path, truth.loc[deleted], fake


def by_length(found: gpd.GeoDataFrame, target: gpd.GeoDataFrame, tolerance: float) -> tuple[float, float]:
    """Precision and recall by length of ``found`` lines against ``target`` lines, within ``tolerance`` (CRS units)."""
    found_lines = shapely.union_all(found.geometry.to_numpy()) if len(found) else shapely.LineString()
    target_lines = shapely.union_all(target.geometry.to_numpy())
    precision = shapely.intersection(found_lines, target_lines.buffer(tolerance)).length / found_lines.length if found_lines.length else 0.0
    recall = shapely.intersection(target_lines, found_lines.buffer(tolerance)).length / target_lines.length
    return precision, recall


@pytest.mark.parametrize("scene", ["scene_a", "scene_b"])
def test_the_comparison_finds_the_deleted_roads_as_new_and_the_fakes_as_missing(tmp_path: Path, scene: str) -> None:
    """The truth network against its stale map: what the comparison itself gets right, whatever the extraction."""
    from geoseg.map_update import compare_files

    road_map, deleted, fakes = stale_map(scene, tmp_path / "stale.geojson")
    summary = compare_files(SAMPLE / f"{scene}_centerlines.geojson", road_map, tmp_path / "out", image=SAMPLE / f"{scene}.tif", fmt="gpkg")
    layers = {name: gpd.read_file(summary.outputs[0], layer=name) for name in ("new", "missing", "matched")}
    assert min(by_length(layers["new"], deleted, 1.0)) >= 0.99
    assert min(by_length(layers["missing"], fakes, 1.0)) >= 0.99
    truth = gpd.read_file(SAMPLE / f"{scene}_centerlines.geojson")
    kept = truth.drop(index=deleted.index)
    assert layers["matched"]["length_m"].sum() == pytest.approx(kept.length.sum(), rel=0.01)
    assert layers["matched"]["offset_m"].max() < 0.01  # the map's kept roads are the truth itself
    assert any("reprojected from EPSG:4326" in note for note in summary.notes)


@pytest.mark.parametrize("scene", ["scene_a", "scene_b"])
def test_update_map_finds_the_deleted_roads_and_the_fakes_from_the_image(tmp_path: Path, scene: str) -> None:
    """The shipped pipeline, image to changes, with the sample MJCR model (scene A is unseen by it)."""
    road_map, deleted, fakes = stale_map(scene, tmp_path / "stale.geojson")
    pipe = geoseg.load_pipeline("update_map", {"model": str(MODEL), "map": str(road_map)})
    result = pipe.run(SAMPLE / f"{scene}.tif")
    assert any("stale.geojson: reprojected from EPSG:4326" in w for w in result.warnings)
    new, missing = result.features("new"), result.features("missing")
    p_new, r_new = by_length(new, deleted, 7.0)
    p_missing, r_missing = by_length(missing, fakes, 7.0)
    assert r_new >= 0.9 and r_missing >= 0.9
    # The extraction's own errors are changes too, and lower the precision below the comparison's
    # (1.0 above): in scene A a building edge traced as road (18 m of new road: precision 0.80), in
    # scene B a building's edge (19 m new: 0.84) and 22 m of road under trees not extracted
    # (missing: 0.78, flagged occluded).
    floors = {"scene_a": (0.78, 0.9), "scene_b": (0.8, 0.75)}[scene]
    assert p_new >= floors[0] and p_missing >= floors[1]
    if scene == "scene_b":
        hidden = missing[missing["map_id"] != missing["map_id"].max()]  # the real road the extraction missed
        assert (hidden["occluded"] > 0.4).all()
    assert missing["occluded"].between(0, 1).all() and missing["confidence"].between(0, 1).all()
    matched = result.features("matched")
    assert matched["offset_m"].between(0, 7.0).all() and (matched["map_id"] >= 0).all()


def _mask_chain(road_map: Path, **compare: object) -> geoseg.Pipeline:
    return geoseg.Pipeline(
        [
            {"type": "threshold_mask", "work_road_px": None},
            {"type": "tensor_voting"},
            {"type": "non_max_suppression"},
            {"type": "road_network"},
            {"type": "connect_network"},
            {"type": "compare_network", "map": str(road_map), **compare},
        ],
        outputs=["network", "new", "missing", "matched", "links"],
    )


def test_tiled_and_whole_scene_comparisons_agree(tmp_path: Path) -> None:
    road_map, _, _ = stale_map("scene_a", tmp_path / "stale.gpkg", crs=None)
    whole = _mask_chain(road_map).run(SAMPLE / "scene_a_mask.tif")
    tiled = _mask_chain(road_map).with_overrides({"tile_px": 160}).run(SAMPLE / "scene_a_mask.tif")
    assert tiled.tiles > 1
    for name in ("new", "missing", "matched"):
        assert tiled.features(name)["length_m"].sum() == pytest.approx(whole.features(name)["length_m"].sum(), rel=0.03), name


def test_missing_roads_are_cut_to_the_valid_data_area(tmp_path: Path) -> None:
    """A fake map road crossing a band without data is missing only where the scene has pixels."""
    import rasterio

    with rasterio.open(SAMPLE / "scene_a_mask.tif") as src:
        profile, mask = src.profile, src.read(1)
        transform = src.transform
    mask[:, 300:400] = 1  # nodata band (columns 300-399), 1 being the declared nodata below
    profile.update(nodata=1)
    scene = tmp_path / "holed.tif"
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(mask, 1)
    x0, y = transform @ (0, 20)
    x1, _ = transform @ (512, 20)
    road_map = tmp_path / "map.gpkg"
    gpd.GeoDataFrame(geometry=[LineString([(x0, y), (x1, y)])], crs=profile["crs"]).to_file(road_map)
    result = _mask_chain(road_map, tolerance_m=5.0).run(scene)
    missing = result.features("missing")
    # 512 px at 0.3 m, less the 100 px without data: two stretches, 300 px and 112 px long
    assert sorted(np.round(missing["length_m"].to_numpy(), 0).tolist()) == [34.0, 90.0]


def test_a_batch_compares_every_scene_with_one_map_and_the_report_shows_the_changes(tmp_path: Path) -> None:
    parts = [stale_map(scene, tmp_path / f"{scene}.gpkg", crs=4326)[0] for scene in ("scene_a", "scene_b")]
    both = pd.concat([gpd.read_file(p) for p in parts], ignore_index=True)
    road_map = tmp_path / "one_map.geojson"
    gpd.GeoDataFrame(both, crs=4326).to_file(road_map)
    pipe = geoseg.load_pipeline("update_map", {"model": str(MODEL), "map": str(road_map)})
    outdir = tmp_path / "out"
    reports = run_batch(pipe, [SAMPLE / "scene_a.tif", SAMPLE / "scene_b.tif"], outdir, fmt="gpkg")
    assert [r.status for r in reports] == ["done", "done"]
    for scene in ("scene_a", "scene_b"):
        import pyogrio

        layers = [name for name, _ in pyogrio.list_layers(outdir / f"{scene}.gpkg")]
        assert layers == ["edges", "new", "missing", "matched", "links"]
        matched = gpd.read_file(outdir / f"{scene}.gpkg", layer="matched")
        assert matched.crs == gpd.read_file(SAMPLE / f"{scene}_centerlines.geojson").crs  # in each scene's own CRS
    page = write_report(outdir).read_text()
    assert page.count("map: missing") == 2 and "scene_a_changes.png" in page and (outdir / "report_files" / "scene_b_changes.png").exists()


def test_an_extent_reports_only_inside_it_with_attributes_of_what_is_inside(tmp_path: Path) -> None:
    road_map, _, _ = stale_map("scene_a", tmp_path / "stale.gpkg", crs=None)
    extent = [533000, 5289900, 533100, 5290000]  # the north-west quarter and a bit
    result = _mask_chain(road_map, tolerance_m=5.0).with_overrides({"extent": extent}).run(SAMPLE / "scene_a_mask.tif")
    area = shapely.box(*extent)
    for name in ("new", "missing", "matched"):
        frame = result.features(name)
        assert all(area.buffer(0.01).contains(g) for g in frame.geometry), name
        assert np.allclose(frame["length_m"], frame.length * (1 / 0.9996), rtol=2e-3), name  # lengths are of what is inside
    matched = result.features("matched")
    assert len(matched) and (matched["offset_max"] <= 5.0 + 0.01).all()  # offsets measured inside the extent, within the tolerance


def test_outputs_of_two_scenes_may_not_collide(tmp_path: Path) -> None:
    from geoseg.errors import ConfigError

    road_map, _, _ = stale_map("scene_a", tmp_path / "stale.gpkg", crs=None)
    scenes = tmp_path / "in"
    scenes.mkdir()
    for name in ("a.tif", "a_new.tif"):
        (scenes / name).write_bytes((SAMPLE / "scene_a_mask.tif").read_bytes())
    with pytest.raises(ConfigError, match=r"a\.tif and .*a_new\.tif would both write .*a_new\.shp"):
        run_batch(_mask_chain(road_map), [scenes / "a.tif", scenes / "a_new.tif"], tmp_path / "out")
    assert not (tmp_path / "out" / "a.shp").exists()


def test_occlusion_mask_tiles_as_a_whole(tmp_path: Path) -> None:
    pipe = geoseg.Pipeline([{"type": "occlusion_mask"}], outputs=["occlusion"])
    whole = pipe.run(SAMPLE / "scene_a.tif").layers["occlusion"]
    tiled = pipe.with_overrides({"tile_px": 96}).run(SAMPLE / "scene_a.tif")
    assert tiled.tiles > 1 and np.array_equal(tiled.layers["occlusion"], whole)
    assert 0.05 < whole.mean() < 0.4  # crowns and shadows, not the fields


def test_a_scene_in_degrees_is_compared_in_metres(tmp_path: Path) -> None:
    """Non-square pixels (EPSG:4326 at 48 N): a map 2 m east of the truth reads as far off as on the scene in UTM."""
    import rasterio
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    with rasterio.open(SAMPLE / "scene_a_mask.tif") as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        profile = src.profile | {"crs": "EPSG:4326", "transform": transform, "width": width, "height": height, "tiled": False}
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        scene = tmp_path / "degrees.tif"
        with rasterio.open(scene, "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.nearest)
    truth = gpd.read_file(SAMPLE / "scene_a_centerlines.geojson")
    shifted = truth.set_geometry(truth.geometry.translate(2.0, 0.0)).to_crs(4326)
    shifted.to_file(tmp_path / "east.gpkg")
    in_degrees = _mask_chain(tmp_path / "east.gpkg", tolerance_m=6.0).run(scene).features("matched").set_index("map_id")
    in_metres = _mask_chain(tmp_path / "east.gpkg", tolerance_m=6.0).run(SAMPLE / "scene_a_mask.tif").features("matched").set_index("map_id")
    north_south = in_metres.index[in_metres["offset_m"] > 1.5]  # the roads the 2 m shift moved across
    assert len(north_south) >= 3
    # the same offsets as on the UTM scene (pixels 0.255 m wide, 0.379 m high: a single GSD would read them 22 % off)
    assert np.allclose(in_degrees.loc[north_south, "offset_m"], in_metres.loc[north_south, "offset_m"], atol=0.25)
