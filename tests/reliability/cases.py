"""The bad-input catalogue: small files that users' disks hold, generated in a temporary folder.

Each :class:`SceneCase` is one input scene for one pipeline (``mask``: the shipped
``mask_to_centerlines``; ``seg``: ``road_segmentation`` with the sample MJCR model) and what
geoseg must do with it: finish (``done``, with a check of the result) or refuse it
(``failed``, with words the one-line message must hold besides the file name). Every case is
run through the Python API and through a real ``geoseg run`` subprocess
(``test_catalogue.py``); ``docs/RELIABILITY.md`` lists them with what the user sees.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from tests.conftest import SAMPLE_DATA, UTM_TRANSFORM, plus_mask, write_tif

UTM = CRS.from_epsg(32633)
MODEL = SAMPLE_DATA / "roads.mjcr.npz"
SIZE = 120  # the plus mask: 4 arms of 60 px at 0.5 m


@dataclass
class SceneCase:
    """One input scene and what geoseg must do with it."""

    id: str
    pipeline: str  # "mask" or "seg"
    make: Callable[[Path], Path]
    status: str  # "done" or "failed"
    needles: tuple[str, ...] = ()  # words of the error (failed) or of a warning (done)
    check: Callable[[gpd.GeoDataFrame | None, Path], None] | None = None  # (lines, main output)
    doc: str = ""
    user_sees: str = ""
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- makers
def _plus(path: Path, **kw) -> Path:
    return write_tif(path, plus_mask(SIZE), UTM, UTM_TRANSFORM, **kw)


def make_truncated(d: Path) -> Path:
    """A valid 256x256 uncompressed GeoTIFF cut to 40 % of its bytes (a broken download)."""
    full = write_tif(d / "full_src.tmp.tif", np.tile(plus_mask(256), (1, 1)), UTM, UTM_TRANSFORM, tiled=True, blockxsize=64, blockysize=64)
    data = full.read_bytes()
    full.unlink()
    path = d / "truncated.tif"
    path.write_bytes(data[: int(len(data) * 0.4)])
    return path


def make_corrupt(d: Path) -> Path:
    """A deflate-compressed GeoTIFF whose compressed tiles are overwritten with garbage."""
    path = write_tif(d / "corrupt.tif", plus_mask(256), UTM, UTM_TRANSFORM, tiled=True, blockxsize=128, blockysize=128, compress="deflate")
    with rasterio.open(path) as ds:
        offsets = [int(ds.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1)) for r in range(2) for c in range(2)]
    raw = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for off in offsets:
        raw[off : off + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(raw))
    return path


def make_text(d: Path) -> Path:
    path = d / "notes.tif"
    path.write_text("this is a text file, not a GeoTIFF\n" * 20)
    return path


def make_empty(d: Path) -> Path:
    path = d / "empty.tif"
    path.write_bytes(b"")
    return path


def make_missing(d: Path) -> Path:
    return d / "missing.tif"


def make_directory(d: Path) -> Path:
    path = d / "folder.tif"
    path.mkdir()
    return path


def make_no_crs(d: Path) -> Path:
    return write_tif(d / "no_crs.tif", plus_mask(SIZE), None, None)


def make_geographic(d: Path) -> Path:
    """The plus mask in EPSG:4326, pixels of ~0.5 m (in degrees) at 45 N."""
    lat = 45.0
    dy = 0.5 / 111_132.0
    dx = 0.5 / (111_320.0 * np.cos(np.radians(lat)))
    return write_tif(d / "geographic.tif", plus_mask(SIZE), CRS.from_epsg(4326), Affine(dx, 0, 15.0, 0, -dy, lat))


def make_all_nodata(d: Path) -> Path:
    """Every pixel is 255 (road, were nodata ignored) and 255 is the nodata value."""
    return write_tif(d / "all_nodata.tif", np.full((SIZE, SIZE), 255, np.uint8), UTM, UTM_TRANSFORM, nodata=255)


HOLE = (slice(40, 80), slice(85, 105))  # rows, cols: across the east arm


def make_nodata_holes(d: Path) -> Path:
    """0/1 plus mask with a nodata block (value 255) across the east arm."""
    m = (plus_mask(SIZE) > 0).astype(np.uint8)
    m[HOLE] = 255
    return write_tif(d / "nodata_holes.tif", m, UTM, UTM_TRANSFORM, nodata=255)


def make_pan11(d: Path) -> Path:
    """1-band uint16 11-bit (0..2047) mask, as a panchromatic product stores it."""
    return write_tif(d / "pan11.tif", (plus_mask(SIZE) > 0).astype(np.uint16) * 2047, UTM, UTM_TRANSFORM)


def make_pan11_image(d: Path) -> Path:
    """1-band uint16 11-bit panchromatic scene (a 3-band model cannot read it)."""
    rng = np.random.default_rng(1)
    img = (rng.integers(200, 600, (SIZE, SIZE)) + (plus_mask(SIZE) > 0) * 1200).astype(np.uint16)
    return write_tif(d / "pan_scene.tif", img, UTM, UTM_TRANSFORM)


def _rgb_crop(size: int = 96) -> tuple[np.ndarray, Affine]:
    """A 96 px crop of the sample scene where roads cover both halves (rows 288-383, cols 160-255)."""
    with rasterio.open(SAMPLE_DATA / "scene_a.tif") as ds:
        w = Window(160, 288, size, size)
        return ds.read(window=w), ds.window_transform(w)


def make_rgb(d: Path) -> Path:
    a, tr = _rgb_crop()
    return write_tif(d / "rgb.tif", a, UTM, tr)


ALPHA_ZERO = (slice(0, 96), slice(0, 48))  # the west half is transparent


def make_rgba(d: Path) -> Path:
    a, tr = _rgb_crop()
    alpha = np.full((1, *a.shape[1:]), 255, np.uint8)
    alpha[(0, *ALPHA_ZERO)] = 0
    return write_tif(d / "rgba.tif", np.concatenate([a, alpha]), UTM, tr, photometric="RGB", alpha="YES")


def make_rgb_no_crs(d: Path) -> Path:
    a, _ = _rgb_crop()
    return write_tif(d / "rgb_no_crs.tif", a, None, None)


def make_single_pixel(d: Path) -> Path:
    return write_tif(d / "single_pixel.tif", np.full((1, 1), 255, np.uint8), UTM, UTM_TRANSFORM)


def make_one_row(d: Path) -> Path:
    return write_tif(d / "one_row.tif", np.full((1, 200), 255, np.uint8), UTM, UTM_TRANSFORM)


def make_one_col(d: Path) -> Path:
    return write_tif(d / "one_col.tif", np.full((200, 1), 255, np.uint8), UTM, UTM_TRANSFORM)


HUGE = 200_000


def make_huge(d: Path) -> Path:
    """A GeoTIFF declaring 200000 x 200000 px (4e10 px) with no tile written: a few KB on disk."""
    path = d / "huge.tif"
    profile = {"driver": "GTiff", "width": HUGE, "height": HUGE, "count": 1, "dtype": "uint8", "crs": UTM,
               "transform": UTM_TRANSFORM, "tiled": True, "blockxsize": 4096, "blockysize": 4096,
               "sparse_ok": True, "BIGTIFF": "YES"}
    with rasterio.open(path, "w", **profile):
        pass
    return path


INF_BLOCK = (slice(5, 25), slice(5, 25))  # a background corner full of +Inf


def make_nan_inf(d: Path) -> Path:
    """float32 1/0 plus mask with NaN on an arm's end, +Inf in a corner, -Inf elsewhere."""
    m = (plus_mask(SIZE) > 0).astype(np.float32)
    m[INF_BLOCK] = np.inf
    m[100:110, 5:15] = -np.inf
    m[0:4, 54:66] = np.nan  # the tip of the north arm
    return write_tif(d / "nan_inf.tif", m, UTM, UTM_TRANSFORM)


def make_image_as_mask(d: Path) -> Path:
    """An RGB image given where a road mask is expected."""
    a, tr = _rgb_crop()
    return write_tif(d / "image_as_mask.tif", a, UTM, tr)


def make_uint16_4band(d: Path) -> Path:
    """A 4-band uint16 image (RGB values x8 and a near-infrared band), no alpha."""
    a, tr = _rgb_crop()
    return write_tif(d / "rgbn_uint16.tif", np.concatenate([a, a[:1]]).astype(np.uint16) * 8, UTM, tr)


def make_rgb_mask(d: Path) -> Path:
    """A road mask saved as 3 identical 0/255 bands (white roads on black, as an RGB export)."""
    return write_tif(d / "rgb_mask.tif", np.repeat(plus_mask(SIZE)[None], 3, axis=0), UTM, UTM_TRANSFORM)


def make_class_map(d: Path) -> Path:
    """A class map (0 background, 1 road, 2 building), not a road mask."""
    m = (plus_mask(SIZE) > 0).astype(np.uint8)
    m[10:40, 10:40] = 2
    return write_tif(d / "class_map.tif", m, UTM, UTM_TRANSFORM)


def make_probability(d: Path) -> Path:
    """float32 road probability in [0, 1]: 0 off the roads, 0.6 to 1 on them."""
    road = plus_mask(SIZE) > 0
    ramp = np.linspace(0.6, 1.0, SIZE, dtype=np.float32)[None, :].repeat(SIZE, axis=0)
    return write_tif(d / "probability.tif", np.where(road, ramp, np.float32(0)), UTM, UTM_TRANSFORM)


def make_rgbn(d: Path) -> Path:
    """A 4-band RGBN uint8 scene (no alpha band) for a model trained on RGB scenes."""
    a, tr = _rgb_crop()
    return write_tif(d / "rgbn.tif", np.concatenate([a, a[:1]]), UTM, tr, photometric="MINISBLACK")


def make_uint16_x8(d: Path) -> Path:
    """The RGB crop as uint16 with values x8 (up to 1480) for an 8-bit model."""
    a, tr = _rgb_crop()
    return write_tif(d / "rgb_uint16.tif", a.astype(np.uint16) * 8, UTM, tr)


def make_reflectance(d: Path) -> Path:
    """The RGB crop as float32 reflectance in [0, 1] for an 8-bit model."""
    a, tr = _rgb_crop()
    return write_tif(d / "reflectance.tif", (a / np.float32(255)).astype(np.float32), UTM, tr)


def make_mask_for_model(d: Path) -> Path:
    """A 1-band 0/255 road mask given to an image classifier."""
    return write_tif(d / "road_mask.tif", plus_mask(SIZE), UTM, UTM_TRANSFORM)


def make_jpeg(d: Path) -> Path:
    """An RGB photo as a plain JPEG (lossy, no georeferencing)."""
    path = d / "photo.jpg"
    a, _ = _rgb_crop()
    with rasterio.open(path, "w", driver="JPEG", width=a.shape[2], height=a.shape[1], count=3, dtype="uint8", QUALITY=90) as dst:
        dst.write(a)
    return path


# ----------------------------------------------------------------------------- checks
def _n_lines(lines: gpd.GeoDataFrame | None) -> int:
    return 0 if lines is None else len(lines)


def check_plus(lines, out) -> None:
    """Four arms of ~60 px meet at one junction."""
    assert len(lines) == 4, len(lines)
    assert sorted(lines["degree_u"].tolist() + lines["degree_v"].tolist()).count(4) == 4


def check_empty(lines, out) -> None:
    assert _n_lines(lines) == 0


def check_pixel_coords(lines, out) -> None:
    check_plus(lines, out)
    assert lines.crs is None
    x0, y0, x1, y1 = lines.total_bounds
    assert 0 <= x0 and x1 <= SIZE and 0 <= y0 and y1 <= SIZE  # x = column, y = row


def check_geographic(lines, out) -> None:
    check_plus(lines, out)
    assert lines.crs.to_epsg() == 4326
    # each arm runs ~60 px of 0.5 m from the centre: lengths in metres, not degrees
    assert all(20 < v < 32 for v in lines["length_m"]), lines["length_m"].tolist()


def check_hole(lines, out) -> None:
    """Nothing traced inside the nodata block: at most the connection step's straight bridge
    across it, on the road's axis (an occlusion of 10 m, shorter than the largest gap bridged)."""
    import shapely

    rows, cols = HOLE
    x0, y0 = UTM_TRANSFORM @ (cols.start, rows.start)
    x1, y1 = UTM_TRANSFORM @ (cols.stop, rows.stop)
    hole = shapely.box(min(x0, x1) + 0.25, min(y0, y1) + 0.25, max(x0, x1) - 0.25, max(y0, y1) - 0.25)
    check_plus(lines, out)
    vertices = shapely.points(shapely.get_coordinates(lines.geometry.values))
    assert not shapely.contains(hole, vertices).any()  # no vertex traced in the hole
    crossing = lines.geometry.intersection(hole)
    _, ymin, _, ymax = crossing[~crossing.is_empty].total_bounds
    road_top, road_bottom = (UTM_TRANSFORM @ (0, SIZE // 2 - 6))[1], (UTM_TRANSFORM @ (0, SIZE // 2 + 6))[1]
    assert road_bottom <= ymin and ymax <= road_top  # the bridge stays on the road


def check_nan_inf(lines, out) -> None:
    import shapely

    check_plus(lines, out)
    rows, cols = INF_BLOCK
    x0, y0 = UTM_TRANSFORM @ (cols.start, rows.start)
    x1, y1 = UTM_TRANSFORM @ (cols.stop, rows.stop)
    assert not lines.geometry.intersects(shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))).any()


def check_inside_raster(lines, out) -> None:
    assert _n_lines(lines) <= 1


def check_mask_written(expect_zero: tuple[slice, slice] | None = None, crs: CRS | None = UTM):
    def check(lines, tif: Path) -> None:
        with rasterio.open(tif) as ds:
            mask = ds.read(1)
            assert ds.crs == crs and mask.shape == (96, 96)
        assert set(np.unique(mask)) <= {0, 255} and (mask[:, 48:] == 255).sum() > 500  # roads found
        if expect_zero is not None:
            assert not mask[expect_zero].any()

    return check


# ----------------------------------------------------------------------------- the catalogue
FAILS_READ = ("not a readable raster", "truncated or corrupt")

SCENE_CASES: list[SceneCase] = [
    SceneCase("truncated_geotiff", "mask", make_truncated, "failed", ("truncated or corrupt",),
              doc="GeoTIFF cut to 40 % of its bytes", user_sees="`<file>: cannot read pixels, file truncated or corrupt (...)` or `<file>: not a readable raster (...)`"),
    SceneCase("corrupt_tiles", "mask", make_corrupt, "failed", ("truncated or corrupt",),
              doc="deflate tiles overwritten with random bytes", user_sees="`<file>: cannot read pixels, file truncated or corrupt (...)`"),
    SceneCase("text_named_tif", "mask", make_text, "failed", ("not a readable raster",),
              doc="a text file named .tif", user_sees="`<file>: not a readable raster (...)`"),
    SceneCase("zero_size", "mask", make_empty, "failed", ("empty (0 bytes)",),
              doc="0-byte file", user_sees="`<file>: the file is empty (0 bytes)`"),
    SceneCase("nonexistent", "mask", make_missing, "failed", ("no such file",),
              doc="path that does not exist", user_sees="`<file>: no such file`"),
    SceneCase("directory", "mask", make_directory, "failed", ("is a directory",),
              doc="a folder given as input", user_sees="`<file>: is a directory, not a raster file`"),
    SceneCase("no_crs", "mask", make_no_crs, "done", ("no georeferencing",), check_pixel_coords,
              doc="GeoTIFF without CRS/transform", user_sees="warning `<file>: no georeferencing; output coordinates are pixel coordinates ...`; output without CRS, x = column, y = row"),
    SceneCase("geographic_crs", "mask", make_geographic, "done", (), check_geographic,
              doc="EPSG:4326 (degrees)", user_sees="network in EPSG:4326; GSD and `length_m` geodesic (metres)"),
    SceneCase("all_nodata", "mask", make_all_nodata, "done", (), check_empty,
              doc="every pixel is nodata", user_sees="done; empty network files (0 lines)"),
    SceneCase("nodata_holes", "mask", make_nodata_holes, "done", (), check_hole,
              doc="nodata block across a road", user_sees="done; nothing traced in the hole (the connection step may bridge it straight, as an occlusion)"),
    SceneCase("uint16_11bit_mask", "mask", make_pan11, "done", (), check_plus,
              doc="1-band uint16, 11-bit values (0/2047)", user_sees="done; same network as the 8-bit mask"),
    SceneCase("single_pixel", "mask", make_single_pixel, "done", (), check_empty,
              doc="1x1 raster", user_sees="done; empty network"),
    SceneCase("one_row", "mask", make_one_row, "done", (), check_inside_raster,
              doc="1x200 raster", user_sees="done; at most one line"),
    SceneCase("one_column", "mask", make_one_col, "done", (), check_inside_raster,
              doc="200x1 raster", user_sees="done; at most one line"),
    SceneCase("huge_declared_size", "mask", make_huge, "failed", ("max_pixels",),
              doc="header declares 200000x200000 px (sparse, a few KB)", user_sees="`<file>: 200000 x 200000 px (40.0 Gpx) is more than max_pixels (...); cut the scene ... or --set max_pixels=...` (nothing allocated)"),
    SceneCase("nan_inf_float", "mask", make_nan_inf, "done", (), check_nan_inf,
              doc="float32 with NaN, +Inf, -Inf", user_sees="done; non-finite pixels are nodata"),
    SceneCase("rgb_scene", "seg", make_rgb, "done", (), check_mask_written(),
              doc="3-band RGB (reference)", user_sees="done; 0/255 mask GeoTIFF on the scene grid"),
    SceneCase("rgba_4band", "seg", make_rgba, "done", (), check_mask_written(ALPHA_ZERO),
              doc="4-band RGBA, alpha 0 in a part", user_sees="done; the model reads bands 1-3, alpha = 0 is nodata (mask 0 there)"),
    SceneCase("rgb_no_crs", "seg", make_rgb_no_crs, "done", ("no georeferencing",), check_mask_written(crs=None),
              doc="RGB GeoTIFF without CRS", user_sees="warning `<file>: no georeferencing; ...`; mask GeoTIFF without CRS"),
    SceneCase("jpeg_photo", "seg", make_jpeg, "done", ("no georeferencing",), check_mask_written(crs=None),
              doc="RGB JPEG (lossy, no georeferencing)", user_sees="warning as for no CRS; mask GeoTIFF in pixel coordinates"),
    SceneCase("pan_uint16_vs_rgb_model", "seg", make_pan11_image, "failed", ("band",),
              doc="1-band uint16 pan scene, 3-band model", user_sees="`<file>: the MJCR model <model> was trained on 3-band scenes (using band(s) [1, 2, 3]); this scene has 1 band(s): train a model on scenes like this one`"),
    # issue 20: the wrong kind of input, refused with what it looks like and what to do
    SceneCase("rgb_image_as_mask", "mask", make_image_as_mask, "failed", ("3 bands of uint8 with many grey levels: this looks like an image, not a road mask",),
              doc="RGB image given to the mask pipeline",
              user_sees="`<file>: 3 bands of uint8 with many grey levels: this looks like an image, not a road mask (one band, values 0/255, 0/1 or a probability in [0, 1]); for images use road_centerlines (MJCR model) or deep_road_centerlines (deep model)` (on the first tile)"),
    SceneCase("uint16_4band_as_mask", "mask", make_uint16_4band, "failed", ("4 bands of uint16 with many grey levels: this looks like an image",),
              doc="4-band uint16 image given to the mask pipeline", user_sees="`<file>: 4 bands of uint16 with many grey levels: this looks like an image, not a road mask (...); for images use ...`"),
    SceneCase("rgb_mask_3band", "mask", make_rgb_mask, "failed", ("a road mask has one band; choose the band that holds it with --set threshold_mask.band=N",),
              doc="0/255 road mask saved as 3 identical bands",
              user_sees="`<file>: 3 bands of uint8 with 2 levels (0, 255): a road mask has one band; choose the band that holds it with --set threshold_mask.band=N`"),
    SceneCase("class_map_as_mask", "mask", make_class_map, "failed", ("1 band of uint8 with 3 levels (0, 1, 2): this is not a road mask", "threshold_mask.check_input=false"),
              doc="class map 0/1/2 given to the mask pipeline",
              user_sees="`<file>: 1 band of uint8 with 3 levels (0, 1, 2): this is not a road mask (...); to threshold it as it is, --set threshold_mask.check_input=false (road where value > threshold_mask.threshold)` (scene-wide values, before any tile is processed)"),
    SceneCase("float_probability_mask", "mask", make_probability, "done", (), check_plus,
              doc="float32 road probability in [0, 1]", user_sees="done; accepted as a mask (road where value > threshold, default 0)"),
    SceneCase("rgbn_vs_rgb_model", "seg", make_rgbn, "failed", ("the model takes 3 bands: select them with --set mjcr_classify.bands=[1,2,3]",),
              doc="4-band RGBN scene (no alpha), model trained on RGB",
              user_sees="`<file>: 4 data bands, but the MJCR model <model> was trained on 3-band scenes (using band(s) [1, 2, 3]): the model takes 3 bands: select them with --set mjcr_classify.bands=[1,2,3]`"),
    SceneCase("uint16_x8_vs_uint8_model", "seg", make_uint16_x8, "failed", ("uint16 values up to 1480", "rescale with --set mjcr_classify.scale=0.125"),
              doc="3-band uint16 scene (values x8), model trained on uint8",
              user_sees="`<file>: uint16 values up to 1480, the MJCR model <model> was trained on uint8 scenes (values 0-221): rescale with --set mjcr_classify.scale=0.125, or train a model on scenes like this one`"),
    SceneCase("reflectance_vs_uint8_model", "seg", make_reflectance, "failed", ("float32 values up to 0.72549", "rescale with --set mjcr_classify.scale=255"),
              doc="float32 reflectance in [0, 1], model trained on uint8",
              user_sees="`<file>: float32 values up to 0.72549, the MJCR model <model> was trained on uint8 scenes (values 0-221): rescale with --set mjcr_classify.scale=255, or train a model on scenes like this one`"),
    SceneCase("road_mask_vs_rgb_model", "seg", make_mask_for_model, "failed", ("this looks like a road mask: use mask_to_centerlines",),
              doc="1-band 0/255 road mask given to the MJCR pipeline",
              user_sees="`<file>: 1 band of uint8 with 2 levels (0, 255): this looks like a road mask: use mask_to_centerlines`"),
]
