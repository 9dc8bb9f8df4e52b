"""The provider's setting: which geoseg executable to run."""

from __future__ import annotations

from processing.core.ProcessingConfig import ProcessingConfig

from .runner import find_executable

#: Processing setting (Settings > Options > Processing > Providers > geoseg) holding the executable.
EXECUTABLE_SETTING = "GEOSEG_EXECUTABLE_PATH"


def configured_executable() -> str:
    """The geoseg executable: the provider setting, else ``$GEOSEG_EXECUTABLE``, else PATH."""
    return find_executable(ProcessingConfig.getSetting(EXECUTABLE_SETTING) or "")
