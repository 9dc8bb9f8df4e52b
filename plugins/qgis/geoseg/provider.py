"""The geoseg Processing provider: its executable setting and its algorithms."""

from __future__ import annotations

import os
import shutil

from processing.core.ProcessingConfig import ProcessingConfig, Setting
from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import (
    CompareWithRoadMapAlgorithm,
    EvaluateNetworkAlgorithm,
    ExtractCenterlinesAlgorithm,
    RunPipelineAlgorithm,
    TrainFromRoadMapAlgorithm,
    TrainMjcrAlgorithm,
)
from .config import EXECUTABLE_SETTING
from .runner import EXECUTABLE_ENV


class GeosegProvider(QgsProcessingProvider):
    """Processing provider ``geoseg``: road extraction algorithms run by the geoseg CLI."""

    def id(self) -> str:  # noqa: D102 - QgsProcessingProvider API
        return "geoseg"

    def name(self) -> str:  # noqa: D102
        return "geoseg"

    def longName(self) -> str:  # noqa: D102
        return "geoseg road centerline extraction"

    def icon(self) -> QIcon:  # noqa: D102
        return QIcon(os.path.join(os.path.dirname(__file__), "icon.svg"))

    def load(self) -> bool:
        """Register the executable setting (default: ``$GEOSEG_EXECUTABLE``, else ``geoseg`` on PATH)."""
        default = os.environ.get(EXECUTABLE_ENV, "") or shutil.which("geoseg") or ""
        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(
            Setting(
                self.name(),
                EXECUTABLE_SETTING,
                "Path to the geoseg executable of the Python environment (venv) where geoseg is installed, "
                "e.g. ~/geoseg-env/bin/geoseg after 'python -m venv ~/geoseg-env' and "
                "'~/geoseg-env/bin/pip install geoseg-VERSION-py3-none-any.whl' "
                "(Windows: ...\\geoseg-env\\Scripts\\geoseg.exe)",
                default,
                valuetype=Setting.FILE,
            )
        )
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        """Remove the provider's setting."""
        ProcessingConfig.removeSetting(EXECUTABLE_SETTING)

    def loadAlgorithms(self) -> None:  # noqa: D102
        for algorithm in (
            ExtractCenterlinesAlgorithm(),
            TrainMjcrAlgorithm(),
            TrainFromRoadMapAlgorithm(),
            RunPipelineAlgorithm(),
            EvaluateNetworkAlgorithm(),
            CompareWithRoadMapAlgorithm(),
        ):
            self.addAlgorithm(algorithm)

