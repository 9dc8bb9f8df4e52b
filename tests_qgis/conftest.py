"""Headless QGIS for the plugin tests: one QgsApplication, Processing, and the plugin installed and
loaded as a user's QGIS does it: the zip that ``plugins/build_zip.py`` builds is unpacked into the
profile's ``python/plugins`` folder ("Install from ZIP"), found by QGIS's plugin scan and started
with ``qgis.utils.startProcessingPlugin`` (what QGIS does for Processing plugins without a GUI).

Run with Debian's QGIS Python, not the project's environment:
``QT_QPA_PLATFORM=offscreen /usr/bin/python3 -m pytest tests_qgis -q`` (see ``.ci/qgis_tests.sh``).
The geoseg executable comes from ``$GEOSEG_EXECUTABLE`` (CI: the wheel installed in a fresh venv),
else ``geoseg`` on PATH.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Iterator, List, Tuple

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_ZIP = REPO / "plugins" / "build_zip.py"
GSD_M = 0.3
ORIGIN = (500000.0, 5000000.0)  # upper-left corner, EPSG:32633
EPSG = 32633

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.append("/usr/share/qgis/python/plugins")

from osgeo import gdal, osr  # noqa: E402  (after sys.path set-up; ships with QGIS)

gdal.UseExceptions()


def geoseg_executable() -> str:
    """The geoseg executable the tests configure the provider with."""
    found = os.environ.get("GEOSEG_EXECUTABLE") or shutil.which("geoseg") or "/root/.pyenv/shims/geoseg"
    if not os.path.isfile(found):
        pytest.exit(f"no geoseg executable (set GEOSEG_EXECUTABLE); tried {found}", returncode=2)
    return found


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A started QgsApplication with Processing initialised, its profile in a temporary folder."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtCore import QCoreApplication, QSettings

    profile = tmp_path_factory.mktemp("qgis_profile")
    # Keep settings (the provider's executable path included) out of the user's home.
    QCoreApplication.setOrganizationName("geoseg-qgis-tests")
    QCoreApplication.setApplicationName("geoseg-qgis-tests")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(profile))
    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False, str(profile))
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app
    app.exitQgis()


@pytest.fixture(scope="session")
def installed_plugin_dir(qgis_app: object, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The plugin unpacked from its built zip into the profile's ``python/plugins`` folder."""
    from qgis.core import QgsApplication

    archive = tmp_path_factory.mktemp("zip") / "geoseg_qgis_plugin.zip"
    subprocess.run([sys.executable, str(BUILD_ZIP), "--out", str(archive)], check=True, capture_output=True)
    plugins_dir = Path(QgsApplication.qgisSettingsDirPath()) / "python" / "plugins"
    plugins_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(plugins_dir)
    return plugins_dir / "geoseg"


@pytest.fixture(scope="session")
def plugin(installed_plugin_dir: Path) -> Iterator[object]:
    """The installed plugin, found and started by QGIS, its executable setting pointing at geoseg."""
    import qgis.utils
    from processing.core.ProcessingConfig import ProcessingConfig

    plugins_dir = str(installed_plugin_dir.parent)
    # What QGIS does at start-up for the profile's plugin folder, then for an enabled plugin.
    qgis.utils.plugin_paths.insert(0, plugins_dir)
    sys.path.insert(0, plugins_dir)
    qgis.utils.updateAvailablePlugins()
    assert "geoseg" in qgis.utils.available_plugins, qgis.utils.available_plugins
    assert qgis.utils.loadPlugin("geoseg") and qgis.utils.startProcessingPlugin("geoseg")
    import geoseg as plugin_package

    # The plugin package is named ``geoseg`` like the library: this must be the installed plugin.
    assert Path(plugin_package.__file__).parent == installed_plugin_dir, "imported the wrong 'geoseg'"
    from geoseg.config import EXECUTABLE_SETTING

    ProcessingConfig.setSettingValue(EXECUTABLE_SETTING, geoseg_executable())
    yield qgis.utils.plugins["geoseg"]
    qgis.utils.unloadPlugin("geoseg")


def write_mask(path: Path, mask: np.ndarray) -> Path:
    """Write ``mask`` (uint8, 255 = road) as a GeoTIFF at 0.3 m in EPSG:32633."""
    rows, cols = mask.shape
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, 1, gdal.GDT_Byte, ["COMPRESS=DEFLATE", "TILED=YES"])
    dataset.SetGeoTransform((ORIGIN[0], GSD_M, 0.0, ORIGIN[1], 0.0, -GSD_M))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(EPSG)
    dataset.SetProjection(srs.ExportToWkt())
    dataset.GetRasterBand(1).WriteArray(mask)
    dataset.FlushCache()
    dataset = None
    return path


def cross_mask(size: int, road_px: int = 20) -> np.ndarray:
    """A horizontal road through the middle row and a vertical road at a third of the width."""
    mask = np.zeros((size, size), np.uint8)
    centre, third = size // 2, size // 3
    mask[centre - road_px // 2 : centre + road_px // 2, :] = 255
    mask[:, third - road_px // 2 : third + road_px // 2] = 255
    return mask


@pytest.fixture(scope="session")
def road_mask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 300 x 300 px road mask (90 m square): two roads crossing, each 90 m long, 6 m wide."""
    return write_mask(tmp_path_factory.mktemp("mask") / "cross.tif", cross_mask(300))


@pytest.fixture(scope="session")
def large_mask(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6000 x 6000 px grid of roads: mask_to_centerlines needs about 4 s on it (2-core machine), long enough to cancel."""
    mask = np.zeros((6000, 6000), np.uint8)
    for start in range(200, 6000, 400):
        mask[start : start + 20, :] = 255
        mask[:, start : start + 20] = 255
    return write_mask(tmp_path_factory.mktemp("large") / "grid.tif", mask)


def mask_values_at(mask_path: Path, points: List[Tuple[float, float]]) -> np.ndarray:
    """Mask values under map coordinates ``points`` (x, y), read with GDAL."""
    dataset = gdal.Open(str(mask_path))
    x0, dx, _, y0, _, dy = dataset.GetGeoTransform()
    array = dataset.GetRasterBand(1).ReadAsArray()
    xy = np.asarray(points, dtype=float)
    cols = np.clip(np.floor((xy[:, 0] - x0) / dx).astype(int), 0, array.shape[1] - 1)
    rows = np.clip(np.floor((xy[:, 1] - y0) / dy).astype(int), 0, array.shape[0] - 1)
    return array[rows, cols]


def cli_has(*command: str) -> bool:
    """Whether ``geoseg COMMAND... --help`` succeeds (a command another engineer may still be writing)."""
    result = subprocess.run([geoseg_executable(), *command, "--help"], capture_output=True, check=False)
    return result.returncode == 0
