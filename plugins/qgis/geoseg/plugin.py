"""The plugin object QGIS loads: it registers the geoseg Processing provider."""

from __future__ import annotations

from typing import Any, Optional

from qgis.core import QgsApplication

from .provider import GeosegProvider


class GeosegPlugin:
    """Registers :class:`GeosegProvider` with QGIS's Processing registry.

    Parameters
    ----------
    iface : QgisInterface
        The QGIS interface (unused: the plugin adds no menus of its own; its algorithms appear in
        the Processing Toolbox).
    """

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: Optional[GeosegProvider] = None

    def initProcessing(self) -> None:  # noqa: N802 - QGIS API
        """Add the provider to the Processing registry (also called by QGIS without a GUI)."""
        if self.provider is None:
            self.provider = GeosegProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802 - QGIS API
        """Called by QGIS when the GUI starts: make sure the provider is registered."""
        self.initProcessing()

    def unload(self) -> None:
        """Remove the provider when the plugin is unloaded."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
