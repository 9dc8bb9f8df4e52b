"""geoseg QGIS plugin: road centerline extraction as a Processing provider.

The plugin is thin: it runs the ``geoseg`` command line of a separate Python environment as a
subprocess and never imports geoseg or its dependencies into QGIS's Python.
"""

from __future__ import annotations

from typing import Any


def classFactory(iface: Any) -> "GeosegPlugin":  # noqa: N802 - name required by QGIS
    """QGIS entry point: create the plugin for the QGIS interface ``iface``."""
    from .plugin import GeosegPlugin

    return GeosegPlugin(iface)
