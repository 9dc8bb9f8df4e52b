"""Tests of the remote-read test support: the byte-range server and the COG layout check."""

from __future__ import annotations

import http.client
import shutil
import struct
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import tifffile
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from tests.conftest import UTM_TRANSFORM
from tests.remote.cog_check import cog_problems
from tests.remote.range_server import (
    MULTI_RANGE,
    UNSATISFIABLE,
    RangeServer,
    parse_byte_range,
)

BIG = 2048  # px on a side of the remote-read scene
SMALL = 1024  # px on a side of the layouts that must fail the COG check
GDAL_HTTP = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MAX_RETRY": "0",
    "GDAL_HTTP_TIMEOUT": "10",
}


def _pattern(size: int) -> np.ndarray:
    """A uint8 image whose every 256-px tile differs from its neighbours."""
    rows, cols = np.indices((size, size))
    return ((rows * 7 + cols * 13 + (rows // 256) * 31) % 251).astype(np.uint8)


def _write(path: Path, array: np.ndarray, **profile: object) -> Path:
    """Write a one-band georeferenced raster (UTM 33N, 0.5 m) with the given creation profile."""
    with rasterio.open(path, "w", width=array.shape[1], height=array.shape[0], count=1,
                       dtype=array.dtype.name, crs=CRS.from_epsg(32633), transform=UTM_TRANSFORM,
                       **profile) as dst:
        dst.write(array, 1)
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a random byte file and a 2048 px uncompressed COG (256-px tiles)."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "data.bin").write_bytes(np.random.default_rng(0).bytes(100_000))
    tiled = _write(folder / "tiled_source.tif", _pattern(BIG), driver="GTiff", tiled=True,
                   blockxsize=256, blockysize=256)
    rasterio.shutil.copy(tiled, folder / "big.tif", driver="COG", BLOCKSIZE=256, COMPRESS="NONE")
    return folder


@pytest.fixture
def opener() -> urllib.request.OpenerDirector:
    """A urllib opener that never goes through a proxy."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- range parsing ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 100, None),
        ("bytes=0-9", 100, (0, 9)),
        ("bytes=90-", 100, (90, 99)),
        ("bytes=-10", 100, (90, 99)),
        ("bytes=-500", 100, (0, 99)),
        ("bytes=50-5000", 100, (50, 99)),
        ("bytes=100-", 100, UNSATISFIABLE),
        ("bytes=-0", 100, UNSATISFIABLE),
        ("bytes=-5", 0, UNSATISFIABLE),
        ("bytes=0-1,5-6", 100, MULTI_RANGE),
        ("bytes=9-3", 100, None),
        ("bytes=-", 100, None),
        ("items=0-9", 100, None),
        ("bytes=a-b", 100, None),
    ],
)
def test_parse_byte_range(header: str | None, size: int, expected: object) -> None:
    assert parse_byte_range(header, size) == expected


# -- the server, through urllib and http.client ---------------------------------------------------
def _get(opener: urllib.request.OpenerDirector, url: str, range_: str | None = None,
         method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, method=method, headers={"Range": range_} if range_ else {})
    try:
        with opener.open(request, timeout=5) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, dict(exc.headers), exc.read()


def test_ranges_counts_and_errors(range_server, scenes: Path, opener: urllib.request.OpenerDirector) -> None:
    data = (scenes / "data.bin").read_bytes()
    size = len(data)
    server = range_server(scenes)
    url = server.url("data.bin")
    assert url == f"http://127.0.0.1:{server.port}/data.bin"

    status, headers, body = _get(opener, url)
    assert (status, body, headers["Accept-Ranges"]) == (200, data, "bytes")
    assert headers["Content-Length"] == str(size)

    expected_bytes = size
    for range_, (start, end) in [("bytes=10-19", (10, 19)), (f"bytes={size - 7}-", (size - 7, size - 1)),
                                 ("bytes=-5", (size - 5, size - 1)), ("bytes=1000-999999999", (1000, size - 1))]:
        status, headers, body = _get(opener, url, range_)
        assert status == 206, range_
        assert body == data[start : end + 1], range_
        assert headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert headers["Content-Length"] == str(end - start + 1)
        assert headers["Accept-Ranges"] == "bytes"
        expected_bytes += end - start + 1

    status, headers, body = _get(opener, url, f"bytes={size}-")
    assert status == 416 and headers["Content-Range"] == f"bytes */{size}"
    assert headers["Accept-Ranges"] == "bytes"

    status, _, body = _get(opener, url, "bytes=0-1,10-11")
    assert (status, body) == (200, data)
    expected_bytes += size
    assert server.multi_range_requests("data.bin") == 1 and server.multi_range_requests() == 1

    status, headers, body = _get(opener, url, "bytes=0-9", method="HEAD")
    assert (status, body, headers["Content-Length"], headers["Accept-Ranges"]) == (200, b"", str(size), "bytes")

    assert server.requests("data.bin") == 8
    assert server.bytes_sent("data.bin") == expected_bytes
    assert server.total_bytes() == expected_bytes

    for missing in ("nope.tif", "data.bin.aux.xml", "data.bin.ovr", "data.bin.msk"):
        status, headers, _ = _get(opener, server.url(missing))
        assert status == 404 and headers["Accept-Ranges"] == "bytes", missing
        assert server.requests(missing) == 1 and server.bytes_sent(missing) == 0
    assert server.total_bytes() == expected_bytes

    server.fail("data.bin", 403)
    assert _get(opener, url, "bytes=0-9")[0] == 403
    server.fail("data.bin", 500)
    assert _get(opener, url)[0] == 500
    server.fail("data.bin", None)
    assert _get(opener, url, "bytes=0-9")[:3:2] == (206, data[:10])
    assert [r.status for r in server.history() if r.name == "data.bin"][-3:] == [403, 500, 206]

    server.reset_counts()
    assert (server.requests("data.bin"), server.bytes_sent("data.bin"), server.total_bytes()) == (0, 0, 0)
    assert server.multi_range_requests() == 0 and server.history() == []


def test_keep_alive_and_paths_outside_the_folder(range_server, scenes: Path) -> None:
    data = (scenes / "data.bin").read_bytes()
    server = range_server(scenes)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        answers = []
        for path, range_ in [("/data.bin", "bytes=0-99"), ("/missing.tif", None), ("/data.bin", "bytes=-100"),
                             ("/../conftest.py", None), ("/%2e%2e/conftest.py", None), ("/", None)]:
            conn.request("GET", path, headers={"Range": range_} if range_ else {})
            answer = conn.getresponse()
            answers.append((answer.status, answer.read()))
            if path == "/data.bin":
                sock = conn.sock
        assert conn.sock is sock, "the connection was not kept alive"
    finally:
        conn.close()
    assert answers[0] == (206, data[:100]) and answers[2] == (206, data[-100:])
    assert [status for status, _ in answers] == [206, 404, 206, 404, 404, 404]
    assert server.bytes_sent("data.bin") == 200


def test_stall_times_the_client_out_and_close_is_prompt(range_server, scenes: Path,
                                                        opener: urllib.request.OpenerDirector) -> None:
    server = range_server(scenes)
    server.stall("data.bin", 30)
    started = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        opener.open(server.url("data.bin"), timeout=0.3).read()
    assert time.monotonic() - started < 5
    server.close()  # wakes the stalled handler instead of waiting 30 s
    assert time.monotonic() - started < 5
    assert server.requests("data.bin") == 1 and server.bytes_sent("data.bin") == 0


def test_context_manager_serves_and_shuts_down(scenes: Path, opener: urllib.request.OpenerDirector) -> None:
    with RangeServer(scenes) as server:
        url = server.url("data.bin")
        assert _get(opener, url, "bytes=0-3")[0] == 206
        port = server.port
    with RangeServer(scenes) as other:
        assert other.port != port  # a fresh port: GDAL's per-URL cache cannot answer for it
    with pytest.raises(urllib.error.URLError):
        opener.open(url, timeout=2)


# -- GDAL /vsicurl/ through the server ----------------------------------------------------------------
def test_rasterio_reads_a_window_with_few_bytes(range_server, scenes: Path) -> None:
    local_path = scenes / "big.tif"
    window = Window(1000, 700, 100, 90)  # straddles four 256-px tiles
    with rasterio.open(local_path) as src:
        expected = src.read(1, window=window)
    server = range_server(scenes)
    with rasterio.Env(**GDAL_HTTP), rasterio.open("/vsicurl/" + server.url("big.tif")) as src:
        assert (src.width, src.height, src.block_shapes[0]) == (BIG, BIG, (256, 256))
        remote = src.read(1, window=window)
    np.testing.assert_array_equal(remote, expected)
    size = local_path.stat().st_size
    sent = server.bytes_sent("big.tif")
    assert 4 * 256 * 256 <= sent < size / 10, (sent, size)
    assert server.multi_range_requests() == 0
    assert {r.status for r in server.history()} <= {200, 206, 404}
    assert server.total_bytes() == sent


def test_rasterio_sees_http_errors_and_timeouts(range_server, scenes: Path) -> None:
    server = range_server(scenes)
    server.fail("big.tif", 403)
    with rasterio.Env(**GDAL_HTTP), pytest.raises(RasterioIOError):
        rasterio.open("/vsicurl/" + server.url("big.tif"))
    assert server.requests("big.tif") >= 1 and server.bytes_sent("big.tif") == 0

    server.stall("data.bin", 30)
    started = time.monotonic()
    with rasterio.Env(**{**GDAL_HTTP, "GDAL_HTTP_TIMEOUT": "1"}), pytest.raises(RasterioIOError):
        rasterio.open("/vsicurl/" + server.url("data.bin"))
    assert time.monotonic() - started < 10


# -- the COG layout check ------------------------------------------------------------------------------
@pytest.mark.parametrize("options", [{}, {"BIGTIFF": "YES", "COMPRESS": "DEFLATE"}])
def test_gdal_cog_is_valid(scenes: Path, tmp_path: Path, options: dict[str, str]) -> None:
    assert cog_problems(scenes / "big.tif") == []
    dst = tmp_path / "cog.tif"
    rasterio.shutil.copy(scenes / "tiled_source.tif", dst, driver="COG", BLOCKSIZE=512, **options)
    assert cog_problems(dst) == []


def test_gdal_cog_with_mask_and_small_cog_are_valid(tmp_path: Path) -> None:
    array = _pattern(SMALL)
    src = _write(tmp_path / "src.tif", array, driver="GTiff", tiled=True)
    with rasterio.open(src, "r+") as dst:
        dst.write_mask(np.where(array > 20, 255, 0).astype(np.uint8))
    rasterio.shutil.copy(src, tmp_path / "masked.tif", driver="COG", BLOCKSIZE=256)
    assert cog_problems(tmp_path / "masked.tif") == []
    # without a COG layout, the mask IFD GDAL appended after the data is reported
    assert any("mask" in p and "before the image data" in p for p in cog_problems(src))
    small = _write(tmp_path / "small.tif", array[:300, :200], driver="COG")
    assert cog_problems(small) == []


def test_non_cog_layouts_are_reported(tmp_path: Path) -> None:
    array = _pattern(SMALL)
    striped = _write(tmp_path / "striped.tif", array, driver="GTiff")
    problems = cog_problems(striped)
    assert any("full-resolution image is not tiled" in p for p in problems), problems

    tiled = _write(tmp_path / "tiled.tif", array, driver="GTiff", tiled=True, blockxsize=256, blockysize=256)
    problems = cog_problems(tiled)
    assert problems == [f"the image is {SMALL}x{SMALL} px, larger than 512 px on a side, but has no internal overviews"]

    appended = tmp_path / "appended.tif"
    shutil.copy(tiled, appended)
    with rasterio.open(appended, "r+") as dst:
        dst.build_overviews([2, 4], Resampling.average)
    problems = cog_problems(appended)
    assert any("overview 1 (512x512)" in p and "before the image data" in p for p in problems), problems
    assert any("smallest overview's data must come first" in p for p in problems), problems

    (tmp_path / "text.tif").write_bytes(b"not a tiff at all")
    assert cog_problems(tmp_path / "text.tif")[0].startswith("not a TIFF file")


def test_tiles_out_of_row_major_order_are_reported(scenes: Path, tmp_path: Path) -> None:
    shuffled = tmp_path / "shuffled.tif"
    shutil.copy(scenes / "big.tif", shuffled)
    with tifffile.TiffFile(shuffled) as tif:
        page = tif.pages[0]
        order = tif.byteorder
        tags = [page.tags["TileOffsets"], page.tags["TileByteCounts"]]
        layout = [(tag.valueoffset, {3: "H", 4: "I", 16: "Q"}[int(tag.dtype)], list(tag.value)) for tag in tags]
    with shuffled.open("r+b") as f:
        for valueoffset, code, values in layout:
            values[2], values[3] = values[3], values[2]  # swap the third and fourth tiles of row 0
            f.seek(valueoffset)
            f.write(struct.pack(f"{order}{len(values)}{code}", *values))
    problems = cog_problems(shuffled)
    expected = (
        "the full-resolution image: tile 3 (row 0, column 3) starts at byte "
        f"{layout[0][2][3]}, before tile 2 (row 0, column 2) (byte {layout[0][2][2]}): "
        "tiles must be stored in row-major order"
    )
    assert problems == [expected], problems
