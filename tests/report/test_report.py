"""The HTML batch report, ``geoseg report`` and ``geoseg overlay``: structure, order, errors, browser."""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from geoseg.cli.main import cli
from geoseg.errors import ConfigError, ManifestError
from geoseg.report import write_report
from geoseg.report.overlay import confidence_colour
from tests.report.conftest import grey_scene, plus_network, write_manifest

GEOSEG = ["geoseg"] if shutil.which("geoseg") else [sys.executable, "-m", "geoseg.cli"]
CHROMIUM = Path("/usr/bin/chromium")


class Page(HTMLParser):
    """The parts of the report the tests look at: summary header, rows (cells' data-value), images."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.headers: list[dict[str, str]] = []
        self.rows: list[dict[str, object]] = []
        self.images: list[str] = []
        self.scripts = 0
        self.table_classes: list[str] = []
        self._cell: dict[str, str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self.table_classes.append(a.get("class", ""))
        elif tag == "th":
            self.headers.append(a)
        elif tag == "tr" and "data-scene" in a:
            self.rows.append({"scene": a["data-scene"], "class": a.get("class"), "values": [], "text": ""})
        elif tag == "td" and self.rows:
            self.rows[-1]["values"].append(a.get("data-value", ""))  # type: ignore[union-attr]
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "script":
            self.scripts += 1

    def handle_data(self, data: str) -> None:
        if self.rows and self.lasttag in ("td", "span", "a", "br"):
            self.rows[-1]["text"] += data  # type: ignore[operator]

    def column(self, key: str) -> list[str]:
        index = [h["data-key"] for h in self.headers].index(key)
        return [row["values"][index] for row in self.rows]  # type: ignore[index]


def test_report_with_truth_worst_first(batch: dict[str, Path]) -> None:
    path = write_report(batch["out"], truth=batch["truth"], buffer_m=1.0)
    assert path == batch["out"] / "report.html"
    page = Page(path.read_text())
    assert page.table_classes == ["sortable"] and page.scripts == 1
    keys = [h["data-key"] for h in page.headers]
    assert {"scene", "overlay", "road_km", "junctions", "dead_ends", "seconds", "completeness", "correctness", "quality", "apls",
            "topo_f1", "junction_f1", "component_ratio"} <= set(keys)
    assert all(h["data-type"] in ("number", "text") for h in page.headers)
    # One row per scene: failed first, then by increasing quality.
    assert [row["scene"] for row in page.rows] == ["broken", "half", "good"]
    assert page.rows[0]["class"] == "failed" and "broken.tif: not a readable raster" in page.rows[0]["text"]
    quality = page.column("quality")
    assert quality[0] == "" and float(quality[1]) == pytest.approx(0.5, abs=0.05) and float(quality[2]) == pytest.approx(1.0)
    assert [float(v) for v in page.column("completeness")[1:]] == pytest.approx([1.0, 1.0])
    assert page.column("junctions")[1:] == ["1", "1"] and page.column("dead_ends")[1:] == ["4", "4"]
    assert float(page.column("road_km")[2]) == pytest.approx(4 * 49.5 * 0.5 / 1000)
    assert float(page.column("seconds")[2]) == pytest.approx(1.25)
    # Graph scores. half: the truth is the plus's horizontal road (24.75 m arms, 5 m samples: 11
    # points of the network's 21), so TOPO P 11/21, R 1; its centre has degree 2: no truth junction,
    # junction precision 0 of 1, recall undefined, F1 0. good: all 1.
    assert [float(v) for v in page.column("topo_f1")[1:]] == pytest.approx([2 * (11 / 21) / (1 + 11 / 21), 1.0])
    assert page.column("junction_f1") == ["", "0.0", "1.0"] and page.column("component_ratio") == ["", "1.0", "1.0"]
    text = path.read_text()
    half, good = (text.split(f'id="scene-{name}"')[1].split("</section>")[0] for name in ("half", "good"))
    assert "<dt>TOPO</dt><dd>P 0.524 R 1.000 F1 0.688 (1 seed(s))</dd>" in half
    assert "<dt>junctions</dt><dd>P 0.000 R &ndash; F1 0.000 (0 matched within 10 m; prediction 1, reference 0)</dd>" in half
    assert "<dt>junctions</dt><dd>P 1.000 R 1.000 F1 1.000 (1 matched within 10 m; prediction 1, reference 1)</dd>" in good
    assert "<dt>components</dt><dd>prediction 1, reference 1, ratio 1.000</dd>" in good
    # Overlays beside the page: a thumbnail and a card image per scene that has one.
    assert sorted(page.images) == sorted(f"report_files/{n}{s}.png" for n in ("half", "good") for s in ("", "_thumb"))
    for src in page.images:
        assert Image.open(batch["out"] / src).size[0] > 0


def test_report_without_truth_and_embedded(batch: dict[str, Path]) -> None:
    page = Page(write_report(batch["out"], embed=True).read_text())
    keys = [h["data-key"] for h in page.headers]
    assert "quality" not in keys and "completeness" not in keys
    assert [row["scene"] for row in page.rows] == ["broken", "good", "half"]  # failed first, then run order
    assert len(page.images) == 4 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert not (batch["out"] / "report_files").exists()
    card = np.asarray(Image.open(io.BytesIO(base64.b64decode(page.images[-1].split(",", 1)[1]))))
    assert card.shape == (120, 120, 3) and np.any(card != 128)


@pytest.mark.filterwarnings("ignore:.crs. was not provided")
def test_report_warns_about_missing_truth_and_pixel_scenes(tmp_path: Path) -> None:
    scene = tmp_path / "tile.png"
    Image.fromarray(np.full((64, 64), 128, np.uint8)).save(scene)
    net = plus_network(64).set_crs(None, allow_override=True)
    out = tmp_path / "out"
    out.mkdir()
    net.to_file(out / "tile.geojson")
    write_manifest(out, [{"input": str(scene), "status": "done", "outputs": [str(out / "tile.geojson")], "seconds": 0.5, "error": None, "warnings": []}])
    truth = tmp_path / "truth"
    truth.mkdir()
    plus_network(64).to_file(truth / "other.geojson")
    text = write_report(out, truth=str(truth / "*.geojson")).read_text()
    row = Page(text).rows[0]
    assert "no georeferencing" in row["text"] and "no truth file named tile.* or tile_centerlines.*" in row["text"]


def test_missing_manifest_and_bad_truth_are_errors(batch: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match=r"empty: no geoseg-manifest.json in this folder"):
        write_report(tmp_path / "empty")
    with pytest.raises(ManifestError, match=r"nowhere: no such output folder"):
        write_report(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "geoseg-manifest.json").write_text('{"format": "other"}')
    with pytest.raises(ManifestError, match="not a geoseg manifest"):
        write_report(tmp_path / "bad")
    with pytest.raises(ConfigError, match=r"--truth .*nothing\*: names no vector file"):
        write_report(batch["out"], truth=str(tmp_path / "nothing*"))


def geoseg(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([*GEOSEG, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_cli_report_and_overlay(batch: dict[str, Path], tmp_path: Path) -> None:
    done = geoseg("report", batch["out"], "--truth", batch["truth"], "--max-size", 64)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(batch["out"] / "report.html")
    assert Image.open(batch["out"] / "report_files" / "good.png").size == (64, 64)
    missing = geoseg("report", tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith("geoseg: error: ") and "no geoseg-manifest.json" in missing.stderr
    assert "Traceback" not in missing.stderr
    png = tmp_path / "overlay.png"
    drawn = geoseg("overlay", batch["scenes"] / "good.tif", batch["out"] / "good.shp", "-o", png, "--max-size", 60, "--no-legend")
    assert drawn.returncode == 0, drawn.stderr
    assert Image.open(png).size == (60, 60)
    # In-process from here on (the same click group, without a new interpreter each time).
    runner = CliRunner()
    wrong = runner.invoke(cli, ["overlay", str(batch["scenes"] / "good.tif"), str(batch["truth"] / "nope.shp"), "-o", str(png)])
    assert wrong.exit_code == 1 and "nope.shp: no such file" in wrong.output
    jpeg = runner.invoke(cli, ["overlay", str(batch["scenes"] / "good.tif"), str(batch["out"] / "good.shp"), "-o", str(tmp_path / "o.jpg")])
    assert jpeg.exit_code == 2 and "the overlay is a PNG image; name the file .png" in jpeg.output and not (tmp_path / "o.jpg").exists()
    cut = tmp_path / "cut.tif"
    cut.write_bytes((batch["scenes"] / "good.tif").read_bytes()[:2000])
    broken = runner.invoke(cli, ["overlay", str(cut), str(batch["out"] / "good.shp"), "-o", str(png)])
    assert broken.exit_code == 1 and f"{cut}: cannot read pixels, file truncated or corrupt (cut.tif, band 1: " in broken.output, broken.output
    for command in ("report", "overlay"):
        assert "Examples" in runner.invoke(cli, [command, "--help"]).output


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium) for the headless screenshot")
def test_report_renders_in_headless_chromium(batch: dict[str, Path], tmp_path: Path) -> None:
    """The page opens in a real browser and its screenshot shows the overlays' colours."""
    page = write_report(batch["out"], truth=batch["truth"])
    shot = tmp_path / "report.png"
    subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,1200", page.resolve().as_uri()],
        capture_output=True, timeout=120, check=True, cwd=tmp_path,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    for value in (0.1, 0.9):  # the red and the cyan arms of the synthetic networks
        colour = confidence_colour(value)
        assert np.any(np.abs(pixels - colour).sum(axis=1) < 30), f"no pixel of colour {colour} in the screenshot"


@pytest.mark.parametrize("sub", ["", "north"])  # outputs in OUTDIR, or in a subfolder kept by --keep-folders
def test_a_copied_output_folder_reports_its_own_networks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sub: str) -> None:
    """The manifest records ``r/tile.shp`` (as run from the parent folder); the report of a copy
    ``r_v1`` measures the copy's network, not ``r``'s file of the same name."""
    monkeypatch.chdir(tmp_path)
    scene = grey_scene(tmp_path / "tile.tif", 64)
    recorded = str(Path("r", sub, "tile.geojson"))
    for folder, arms in (("r", 4), ("r_v1", 2)):
        (tmp_path / folder / sub).mkdir(parents=True)
        plus_network(64).iloc[:arms].to_file(tmp_path / folder / sub / "tile.geojson")
        write_manifest(tmp_path / folder, [{"input": str(scene), "status": "done", "outputs": [recorded], "seconds": 0.5, "error": None, "warnings": []}])
    for folder, arms in (("r", 4), ("r_v1", 2)):
        page = Page(write_report(Path(folder)).read_text())
        assert float(page.column("edges")[0]) == arms
